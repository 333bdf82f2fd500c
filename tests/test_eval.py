"""`bench eval` on a real finished run: it replays the run's evaluation battles (the same
numbers), with intervals; `--render` writes a real GIF drawn by SMAX's renderer; bad input
gets one line, a non-zero exit and no file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image, ImageChops

from o2omarl.benchmark.evaluation import BattleRecorder, ffmpeg_binary, load_policy
from o2omarl.benchmark.jobs import plan
from o2omarl.benchmark.results import read_jsonl
from o2omarl.benchmark.runner import run_job
from o2omarl.envs import make_env
from o2omarl.qmix.acting import greedy_episodes
from test_errors import bench

EVAL_EPISODES = 8


@pytest.fixture(scope="module")
def run_dir(heuristic_3m, tmp_path_factory):
    """A finished ft-qmix run on 3m (model.pt, metrics.jsonl)."""
    (job,) = plan(["ft-qmix"], "3m", heuristic_3m.dataset_id, [0], 400, 20,
                  overrides={"eval_interval": 200, "eval_episodes": EVAL_EPISODES,
                             "num_envs": 4, "hidden": 16, "batch_size": 4})
    runs = tmp_path_factory.mktemp("eval") / "runs"
    run_job(job, runs, say=lambda msg: None)
    return job.run_dir(runs)


@pytest.mark.slow
def test_eval_plays_the_runs_evaluation_battles_with_intervals(run_dir, capsys):
    last = read_jsonl(run_dir / "metrics.jsonl")[-1]
    code, out, err = bench(["eval", str(run_dir / "model.pt"), "--episodes",
                            str(EVAL_EPISODES), "--seed", "0", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert (res["method"], res["map_name"], res["episodes"]) == ("ft-qmix", "3m", EVAL_EPISODES)
    # The same weights on the battles of the run's evaluations: the run's last numbers.
    assert res["win_rate"]["mean"] == last["test_win_rate"]
    assert res["ret"]["mean"] == pytest.approx(last["test_return"])
    assert res["length"]["mean"] == pytest.approx(last["test_length"])
    for key in ("win_rate", "ret", "length"):
        est = res[key]
        assert est["lo"] <= est["mean"] <= est["hi"] and est["lo"] < est["hi"], key
    assert 0.0 <= res["win_rate"]["lo"] and res["win_rate"]["hi"] <= 1.0
    assert res["replay"] is None

    code, out, _ = bench(["eval", str(run_dir / "model.pt"), "--episodes", "3"], capsys)
    lines = out.splitlines()
    assert code == 0 and "3 greedy episodes" in lines[0]
    assert lines[1].startswith("win rate") and "95% [" in lines[1] and "(Wilson)" in lines[1]
    assert lines[2].startswith("return") and lines[3].startswith("length")


@pytest.mark.slow
def test_eval_of_pretrained_weights_gives_their_last_pretraining_evaluation(run_dir, capsys):
    """The cached offline weights on the battles of the run's evaluations: the pretraining
    log's last greedy numbers, its values on those battles (Q_tot and earned) included."""
    (cache,) = (run_dir.parents[3] / ".pretrained").rglob("model.pt")
    last = read_jsonl(cache.parent / "pretrain.jsonl")[-1]
    code, out, err = bench(["eval", str(cache), "--episodes", str(EVAL_EPISODES), "--seed", "0",
                            "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["ret"]["mean"] == pytest.approx(last["test_return"])
    assert res["q_tot"] == pytest.approx(last["test_q_mean"], rel=1e-5)
    assert res["earned"] == pytest.approx(last["test_earned_mean"], rel=1e-5)
    assert res["calibration"] == pytest.approx(last["test_q_mean"] / last["test_earned_mean"],
                                               rel=1e-4)
    code, out, _ = bench(["eval", str(cache), "--episodes", str(EVAL_EPISODES)], capsys)
    assert f"Q_tot     {res['q_tot']:.2f} vs {res['earned']:.2f} earned" in out


@pytest.mark.slow
def test_render_writes_a_gif_of_one_battle(run_dir, tmp_path, capsys):
    out = tmp_path / "replays" / "battle.gif"  # the folder is made
    code, stdout, err = bench(["eval", str(run_dir / "checkpoint.pt"), "--episodes", "2",
                               "--render", str(out), "--json"], capsys)
    assert code == 0, err
    replay = json.loads(stdout)["replay"]
    assert replay["path"] == str(out) and 1 <= replay["steps"] <= 60
    with Image.open(out) as gif:
        assert gif.format == "GIF" and gif.size == (300, 250)
        # The opening state, then 2 of SMAX's 8 world ticks per env step
        assert gif.n_frames == replay["frames"] == 1 + 2 * replay["steps"]
        first = gif.convert("RGB")
        gif.seek(gif.n_frames - 1)
        assert ImageChops.difference(first, gif.convert("RGB")).getbbox() is not None
    assert sorted(p.name for p in out.parent.iterdir()) == ["battle.gif"]  # no temporary


def test_recorded_ticks_are_the_battle_played(run_dir):
    """The world ticks replayed for drawing end each step where the battle played went: the
    last tick's health and positions are the episode's next world state (envs/smax.py's
    `_world_state`: per unit health / maximum, x / width, y / height, ...; 0 when dead)."""
    policy, _ = load_policy(run_dir / "model.pt")
    env = BattleRecorder(make_env("3m", 1))
    (episode,) = greedy_episodes(policy.learner.agent, env, 1, seed=5)
    frames = env.frames(per_step=8)
    assert len(frames) == 1 + 8 * episode.length
    smax = env.smax
    ends = [state for tick, _, (_, state, _) in frames if tick == 7]
    units = smax.num_allies + smax.num_enemies
    for t, end in enumerate(ends):
        alive = end.unit_alive[:, None]
        drawn = np.concatenate([
            end.unit_health[:, None] / np.asarray(smax.unit_type_health)[end.unit_types][:, None],
            np.clip(end.unit_positions / [smax.map_width, smax.map_height], 0, 1)], 1) * alive
        played = episode.state[t + 1][:units * 10].reshape(units, 10)[:, :3]
        np.testing.assert_allclose(drawn, played, atol=1e-5, err_msg=f"step {t}")


@pytest.mark.parametrize("case", ["missing", "corrupt", "foreign", "other map", "episodes",
                                  "suffix"])
def test_bad_input_gets_one_line_and_no_file(run_dir, tmp_path, capsys, case):
    model = tmp_path / "model.pt"
    shutil.copy(run_dir / "model.pt", model)
    out = tmp_path / "replay.gif"
    argv = ["eval", str(model), "--episodes", "2", "--render", str(out)]
    if case == "missing":
        model.unlink()
        want, named = 1, [str(model), "does not exist"]
    elif case == "corrupt":
        model.write_bytes(model.read_bytes()[:1000])
        want, named = 1, [str(model), "unreadable"]
    elif case == "foreign":
        torch.save({"weights": torch.zeros(3)}, model)
        want, named = 1, [str(model), "not an o2omarl checkpoint"]
    elif case == "other map":
        argv += ["--map", "8m"]
        want, named = 2, ["'3m'", "'8m'"]
    elif case == "episodes":
        argv[argv.index("2")] = "-3"
        want, named = 2, ["--episodes", "-3", "positive"]
    else:
        out = tmp_path / "replay.avi"
        argv[-1] = str(out)
        want, named = 2, ["replay.avi", "'.avi'", "FILE.gif, FILE.mp4"]
    code, _, err = bench(argv, capsys)
    assert code == want, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for text in named:
        assert text in lines[0], (text, lines[0])
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["model.pt"] if model.exists() else [])


def test_mp4_is_written_with_ffmpeg_and_refused_in_one_line_without(run_dir, tmp_path, capsys):
    out = tmp_path / "battle.mp4"
    code, stdout, err = bench(["eval", str(run_dir / "model.pt"), "--episodes", "2",
                               "--render", str(out), "--json"], capsys)
    ffmpeg = ffmpeg_binary()
    if ffmpeg is None:
        assert code == 2 and err.count("\n") == 1 and "install ffmpeg" in err, err
        assert not out.exists() and not list(tmp_path.iterdir())
        return
    assert code == 0, err
    counted = subprocess.run([ffmpeg, "-i", str(out), "-map", "0:v:0", "-c", "copy", "-f",
                              "null", "-"], capture_output=True, text=True).stderr
    frames = int(re.findall(r"frame=\s*(\d+)", counted)[-1])
    assert frames == json.loads(stdout)["replay"]["frames"] and "300x250" in counted


@pytest.mark.slow
def test_report_embeds_a_replay_of_the_best_and_the_worst_run(run_dir, heuristic_3m, tmp_path):
    from o2omarl.benchmark.results import scan_store
    from o2omarl.reports import build_report
    from o2omarl.reports.metrics import run_metrics

    runs = run_dir.parents[3]  # runs/<map>/<dataset>/<method>/seed_0
    (job,) = plan(["ft-qmix"], "3m", heuristic_3m.dataset_id, [1], 400, 20,
                  overrides={"eval_interval": 200, "eval_episodes": EVAL_EPISODES,
                             "num_envs": 4, "hidden": 16, "batch_size": 4})
    run_job(job, runs, say=lambda msg: None)
    auc = {r.seed: run_metrics(r.rows, r.budget)["auc"] for r in scan_store(runs)}
    assert set(auc) == {0, 1}

    index = build_report(runs, tmp_path / "rep", formats=["png"], n_boot=50, replays=True,
                         say=lambda msg: None)
    gifs = sorted((tmp_path / "rep" / "replays").glob("*.gif"))
    assert [g.stem.rsplit("_", 1)[1] for g in gifs] == ["best", "worst"]
    page = index.read_text()
    seeds = {}
    for gif in gifs:
        assert f'src="replays/{gif.name}"' in page
        with Image.open(gif) as im:
            assert im.n_frames > 1 and im.size == (300, 250)
        caption = page.split(f'src="replays/{gif.name}" alt="', 1)[1]
        seeds[gif.stem.rsplit("_", 1)[1]] = int(re.search(r"seed (\d+)", caption).group(1))
    assert seeds["best"] != seeds["worst"] and auc[seeds["best"]] >= auc[seeds["worst"]]
