"""`bench run` end to end on 3m: the run store's files, the skip of a finished run, and the
refusal of a run directory another process holds."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from o2omarl.benchmark.results import read_jsonl
from o2omarl.cli import main
from o2omarl.locks import file_lock
from o2omarl.qmix import Checkpoint

STEPS, INTERVAL, NUM_ENVS, PRETRAIN = 2600, 1000, 4, 60
SETTINGS = ["--set", f"eval_interval={INTERVAL}", "--set", "eval_episodes=8",
            "--set", f"num_envs={NUM_ENVS}", "--set", "hidden=16",
            "--set", "batch_size=2"]  # a batch every budget here fills: no run ends unlearned


def _argv(dataset_id, runs, steps=STEPS):
    return ["run", "ft-qmix", "--map", "3m", "--dataset", dataset_id, "--steps", str(steps),
            "--pretrain-steps", str(PRETRAIN), "--seed", "0", "--runs-dir", str(runs),
            *SETTINGS]


@pytest.mark.slow
def test_bench_run_writes_the_run_store_and_skips_a_finished_run(heuristic_3m, tmp_path, capsys):
    runs = tmp_path / "runs"
    main(_argv(heuristic_3m.dataset_id, runs))
    out = capsys.readouterr().out
    run_dir = runs / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0"
    assert str(run_dir) in out

    config = json.loads((run_dir / "config.json").read_text())
    assert (config["method"], config["map"], config["seed"]) == ("ft-qmix", "3m", 0)
    assert config["dataset"] == heuristic_3m.dataset_id
    assert config["steps"] == STEPS and config["pretrain_steps"] == PRETRAIN
    assert {"torch", "jax", "jaxmarl", "minari"} <= set(config["packages"])
    resolved = config["config"]
    assert resolved["pretrain_steps"] == PRETRAIN and resolved["hidden"] == 16
    assert resolved["eval_interval"] == INTERVAL and resolved["num_envs"] == NUM_ENVS
    assert resolved["eps_start"] == 1.0 and resolved["init"] == "offline"  # defaults resolved

    rows = read_jsonl(run_dir / "metrics.jsonl")
    steps = [r["env_step"] for r in rows]
    # Step 0 (the offline policy), the first env step at or past every interval, and the end.
    crossings = [math.ceil(k / NUM_ENVS) * NUM_ENVS for k in range(INTERVAL, STEPS, INTERVAL)]
    assert steps == [0, *crossings, STEPS]
    assert all(a < b for a, b in zip(steps, steps[1:]))
    for r in rows:
        assert 0.0 <= r["test_win_rate"] <= 1.0 and math.isfinite(r["test_return"])
    assert rows[-1]["updates"] > 0
    # The end of pretraining and step 0 evaluate the same weights on the same battles.
    (pretrain_log,) = (runs / ".pretrained").rglob("pretrain.jsonl")
    last_offline = read_jsonl(pretrain_log)[-1]
    assert (last_offline["test_win_rate"], last_offline["test_return"]) == (
        rows[0]["test_win_rate"], rows[0]["test_return"])
    # the run carries its pretraining's log, for the report's pretraining table
    assert read_jsonl(run_dir / "pretrain.jsonl") == read_jsonl(pretrain_log)

    for name in ("checkpoint.pt", "model.pt"):
        ckpt = Checkpoint.read(run_dir / name)
        assert ckpt.method == "ft-qmix" and ckpt.env["map_name"] == "3m"
        assert ckpt.config["hidden"] == 16
        assert ckpt.learner["updates"] == rows[-1]["updates"]
        assert ckpt.learner["agent"]["fc1.weight"].shape[0] == 16
    final = Checkpoint.read(run_dir / "model.pt").learner["agent"]
    last = Checkpoint.read(run_dir / "checkpoint.pt").learner["agent"]
    assert all(torch.equal(final[k], last[k]) for k in final)

    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done"
    assert status["final"]["env_step"] == STEPS

    metrics = run_dir / "metrics.jsonl"
    before = (metrics.stat().st_mtime_ns, metrics.read_bytes())
    model_before = (run_dir / "model.pt").read_bytes()
    main(_argv(heuristic_3m.dataset_id, runs))
    out = capsys.readouterr().out
    assert "already done" in out
    assert (metrics.stat().st_mtime_ns, metrics.read_bytes()) == before
    assert (run_dir / "model.pt").read_bytes() == model_before
    # A folder written before `steps` was a config field (its config lacks the key, the top
    # level has it) is still this run; with another budget there, it is not.
    written = json.loads((run_dir / "config.json").read_text())
    del written["config"]["steps"]
    (run_dir / "config.json").write_text(json.dumps(written))
    main(_argv(heuristic_3m.dataset_id, runs))
    assert "already done" in capsys.readouterr().out
    (run_dir / "config.json").write_text(json.dumps({**written, "steps": STEPS + 1}))
    with pytest.raises(SystemExit) as stop:
        main(_argv(heuristic_3m.dataset_id, runs))
    assert stop.value.code == 2
    assert f"holds a run with other settings (steps: {STEPS + 1} there, {STEPS} now)" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_bench_run_on_a_locked_run_dir_fails_with_one_line(heuristic_3m, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0"
    cmd = [sys.executable, "-m", "o2omarl.cli", *_argv(heuristic_3m.dataset_id, runs, 100)]
    with file_lock(run_dir / ".lock", "test holder", wait=False):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ),
                              timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error:") and "in use" in lines[0] and str(run_dir) in lines[0]
    assert "Traceback" not in proc.stderr
    # The refused process wrote nothing: no config, status, metrics, nor pretraining.
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]
    assert not (runs / ".pretrained").exists()


TIMING = ("wall_s", "env_steps_per_s")


def _curve(run_dir):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in read_jsonl(run_dir / "metrics.jsonl")]


def _start(argv, run_dir, rows):
    """Start `bench run` and return it once metrics.jsonl holds `rows` rows."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(read_jsonl(run_dir / "metrics.jsonl")) < rows:
        assert proc.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.02)
    return proc


@pytest.mark.slow
def test_ctrl_c_then_sigkill_then_rerun_resumes_exactly(heuristic_3m, tmp_path):
    """Ctrl-C stops with a checkpoint; SIGKILL loses at most one interval; each rerun resumes,
    metrics.jsonl ends with each evaluation step exactly once, in order, and every number equals
    an uninterrupted run's."""
    steps = 5000  # the kill comes at ~3,000: room left for it on a fast machine
    stopped, ref = tmp_path / "stopped", tmp_path / "ref"
    argv = lambda runs: [sys.executable, "-m", "o2omarl.cli",  # noqa: E731
                         *_argv(heuristic_3m.dataset_id, runs, steps)]
    run_dir = stopped / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0"

    proc = _start(argv(stopped), run_dir, 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("interrupted: stopped ft-qmix seed 0")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "stopped" and 0 < status["env_step"] < steps
    # The checkpoint is where it stopped, not only at the last evaluation.
    ckpt = Checkpoint.read(run_dir / "checkpoint.pt")
    assert ckpt.training["rollout"]["env_steps"] == status["env_step"]

    proc = _start(argv(stopped), run_dir, len(read_jsonl(run_dir / "metrics.jsonl")) + 2)
    proc.kill()
    proc.communicate()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"
    assert Checkpoint.read(run_dir / "checkpoint.pt").training["last_eval"] < steps

    resumed = subprocess.run(argv(stopped), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from the checkpoint at env step" in resumed.stdout
    assert subprocess.run(argv(ref), capture_output=True, timeout=600).returncode == 0

    got = _curve(run_dir)
    want = _curve(ref / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0")
    steps_logged = [r["env_step"] for r in got]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == steps
    assert got == want
    assert not (run_dir / "replay").exists()  # resume data goes once the run is done


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(heuristic_3m, tmp_path):
    runs_a, runs_b = tmp_path / "a", tmp_path / "b"
    main(_argv(heuristic_3m.dataset_id, runs_a, 1200))
    main(_argv(heuristic_3m.dataset_id, runs_b, 1200))
    argv = _argv(heuristic_3m.dataset_id, runs_a, 1200)
    argv[argv.index("--seed") + 1] = "1"
    main(argv)
    seed0 = runs_a / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0"
    assert _curve(seed0) == _curve(runs_b / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0")
    assert _curve(seed0) != _curve(runs_a / "3m" / "heuristic-v0" / "ft-qmix" / "seed_1")


@pytest.mark.slow
def test_two_workers_give_the_same_results_as_one(heuristic_3m, tmp_path, capsys):
    def run(workers):
        runs = tmp_path / f"w{workers}"
        argv = _argv(heuristic_3m.dataset_id, runs, 1200)
        i = argv.index("--seed")
        argv[i:i + 2] = ["--seeds", "2", "--workers", str(workers)]
        main(argv)
        return {s: _curve(runs / "3m" / "heuristic-v0" / "ft-qmix" / f"seed_{s}")
                for s in (0, 1)}

    one, two = run(1), run(2)
    assert one == two and one[0] and one[1]
    capsys.readouterr()


@pytest.mark.slow
def test_seed_offset_and_runs_list(heuristic_3m, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = _argv(heuristic_3m.dataset_id, runs, 400)
    i = argv.index("--seed")
    argv[i:i + 2] = ["--seeds", "1", "--seed-offset", "3"]
    main(argv)
    base = runs / "3m" / "heuristic-v0" / "ft-qmix"
    assert sorted(p.name for p in base.iterdir()) == ["seed_3"]
    # A killed run (status "running", nobody holds its lock) and a damaged folder.
    killed = base / "seed_7"
    killed.mkdir()
    (killed / "config.json").write_text((base / "seed_3" / "config.json").read_text()
                                        .replace('"seed": 3', '"seed": 7'))
    (killed / "status.json").write_text('{"state": "running", "pid": 1}')
    damaged = base / "seed_9"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    # Stopped by Ctrl-C at env step 300, before its first evaluation after step 0.
    stopped = base / "seed_8"
    stopped.mkdir()
    (stopped / "config.json").write_text((base / "seed_3" / "config.json").read_text()
                                         .replace('"seed": 3', '"seed": 8'))
    (stopped / "status.json").write_text('{"state": "stopped", "env_step": 300}')
    (stopped / "metrics.jsonl").write_text('{"env_step": 0, "test_win_rate": 0.5}\n')
    capsys.readouterr()
    main(["runs", "list", "--runs-dir", str(runs)])
    lines = capsys.readouterr().out.splitlines()
    row = {line.split()[3]: line for line in lines[2:]}
    assert "done" in row["3"] and "400/400" in row["3"]
    assert "stopped" in row["7"] and "killed" in row["7"]
    assert "stopped" in row["8"] and "300/400" in row["8"]
    assert "damaged" in row["?"] and "config.json" in row["?"]
    # The summaries tools read: marl-eval JSON and the tidy CSV, finished runs only.
    summary = json.loads((runs / "summary.json").read_text())
    run = summary["smax"]["3m/heuristic-v0"]["ft-qmix"]["seed_3"]
    assert [run[f"step_{k}"]["step_count"] for k in range(2)] == [0, 400]
    # one evaluation after step 0: too few for a final win rate (the report says n/a too)
    assert run["absolute_metrics"] == {"win_rate": [None], "return": [None]}
    rows = list(csv.DictReader(open(runs / "results.csv")))
    assert [int(r["env_step"]) for r in rows] == [0, 400]
    assert {r["method"] for r in rows} == {"ft-qmix"} and {r["seed"] for r in rows} == {"3"}


@pytest.mark.slow
def test_rerun_with_other_settings_is_refused(heuristic_3m, tmp_path, capsys):
    runs = tmp_path / "runs"
    main(_argv(heuristic_3m.dataset_id, runs, 400))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(_argv(heuristic_3m.dataset_id, runs, 800))
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "other settings" in err and "steps: 400 there, 800 now" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, named", [
    (["--seeds", "0"], "--seeds"),
    (["--seeds", "2", "--workers", "0"], "--workers"),
    (["--seeds", "2", "--executor", "dask"], "local, ray"),
])
def test_bad_harness_input_leaves_no_run_folder(heuristic_3m, tmp_path, capsys, extra, named):
    runs = tmp_path / "runs"
    argv = _argv(heuristic_3m.dataset_id, runs, 400)
    i = argv.index("--seed")
    argv[i:i + 2] = extra
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and named in err
    assert len(err.strip().splitlines()) == 1
    assert not runs.exists()


def test_ray_missing_says_how_to_install(heuristic_3m, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    runs = tmp_path / "runs"
    argv = _argv(heuristic_3m.dataset_id, runs, 400) + ["--executor", "ray"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "pip install 'o2omarl[ray]'" in err
    assert not runs.exists()


@pytest.mark.slow
def test_ray_executor_runs_two_jobs_on_a_local_ray(heuristic_3m, tmp_path, capsys):
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    runs, ref = tmp_path / "ray", tmp_path / "ref"
    argv = _argv(heuristic_3m.dataset_id, runs, 400)
    i = argv.index("--seed")
    argv[i:i + 2] = ["--seeds", "2", "--executor", "ray", "--workers", "2"]
    main(argv)
    out = capsys.readouterr().out
    assert "submitted to Ray" in out
    assert "1 of 2 jobs finished | ETA" in out and "2 of 2 jobs finished" in out
    main(_argv(heuristic_3m.dataset_id, ref, 400))  # seed 0 in this process
    base = runs / "3m" / "heuristic-v0" / "ft-qmix"
    for seed in (0, 1):
        status = json.loads((base / f"seed_{seed}" / "status.json").read_text())
        assert status["state"] == "done" and status["final"]["env_step"] == 400
    assert _curve(base / "seed_0") == _curve(ref / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0")


@pytest.mark.slow
def test_dry_run_says_what_each_job_would_do_and_starts_nothing(heuristic_3m, tmp_path, capsys):
    runs = tmp_path / "runs"
    main(_argv(heuristic_3m.dataset_id, runs, 400))  # seed 0: done
    base = runs / "3m" / "heuristic-v0" / "ft-qmix"
    (base / "seed_1").mkdir()  # seed 1: a folder another process holds, then an unfinished one
    argv = _argv(heuristic_3m.dataset_id, runs, 400)
    i = argv.index("--seed")
    argv[i:i + 2] = ["--seeds", "3"]
    files = sorted(runs.rglob("*"))
    capsys.readouterr()

    def states() -> tuple[dict, str]:
        main(argv + ["--dry-run"])
        lines = capsys.readouterr().out.splitlines()
        assert sorted(runs.rglob("*")) == files  # nothing written, nothing started
        return {int(ln.split()[3]): ln.split()[4] for ln in lines if ln.startswith("ft-qmix ")}, \
            lines[-1]

    with file_lock(base / "seed_1" / ".lock", "test"):
        files = sorted(runs.rglob("*"))
        assert states() == ({0: "done", 1: "running", 2: "new"},
                            "dry run, nothing started: 1 done, 1 running, 1 new")
    assert states() == ({0: "done", 1: "resume", 2: "new"},
                        "dry run, nothing started: 1 done, 1 resume, 1 new")
    main(argv + ["--workers", "1"])  # the real run does what the dry run said
    assert "seed_0: already done, skipped" in capsys.readouterr().out
    for seed in (1, 2):
        assert json.loads((base / f"seed_{seed}" / "status.json").read_text())["state"] == "done"


def _stop_group(proc) -> tuple[str, str]:
    """SIGTERM to the whole process group, as `timeout` and schedulers send it."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=90)  # the old handler ran the whole budget first
    finally:
        proc.kill()


@pytest.mark.slow
def test_sigterm_to_the_group_during_pretraining_stops_it(heuristic_3m, tmp_path):
    """A stop during pretraining used to be raised from the signal handler, where XLA's gc
    callback could swallow it: the job then trained its whole budget before exiting."""
    runs = tmp_path / "runs"
    argv = _argv(heuristic_3m.dataset_id, runs, 1000)
    argv[argv.index("--pretrain-steps") + 1] = "100000"
    argv += ["--set", "pretrain_eval_interval=20"]
    proc = subprocess.Popen([sys.executable, "-m", "o2omarl.cli", *argv], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    cache = runs / ".pretrained"
    while not any(read_jsonl(p) for p in cache.rglob("pretrain.jsonl")):  # under way
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    out, err = _stop_group(proc)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(
        "interrupted: stopped during offline pretraining, at update "), err[-2000:]
    assert "Traceback" not in err and "Exception ignored" not in err
    run_dir = runs / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "stopped"
    assert not list(cache.rglob("model.pt"))  # nothing half-trained is cached


@pytest.mark.parametrize("learner", ["inline", "process"])
@pytest.mark.slow
def test_sigterm_to_the_group_while_fine_tuning_checkpoints(heuristic_3m, tmp_path, learner):
    """`timeout`/a scheduler signal every process of the group: the learner process used to
    die of it first, and the job ended `failed` ("the learner process died (exit code
    -15)"). It is the parent's to stop: the job checkpoints and ends `stopped`, exit 130."""
    runs = tmp_path / "runs"
    run_dir = runs / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0"
    env = dict(os.environ, O2OMARL_LEARNER=learner)
    proc = subprocess.Popen([sys.executable, "-m", "o2omarl.cli",
                             *_argv(heuristic_3m.dataset_id, runs, 8000)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    while len(read_jsonl(run_dir / "metrics.jsonl")) < 2:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    out, err = _stop_group(proc)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: stopped ft-qmix seed 0"), err
    assert "learner process died" not in err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "stopped" and 0 < status["env_step"] < 8000
    assert Checkpoint.read(run_dir / "checkpoint.pt").training["rollout"]["env_steps"] == \
        status["env_step"]

@pytest.mark.slow
def test_sigterm_to_a_parallel_run_checkpoints_every_worker(heuristic_3m, tmp_path):
    """SIGTERM reaches only the parent; it passes the stop on, each worker checkpoints, the
    command exits 130 (it used to wait forever on the job not yet started), and the rerun
    finishes all three jobs."""
    runs = tmp_path / "runs"
    argv = _argv(heuristic_3m.dataset_id, runs, 5000)
    i = argv.index("--seed")
    argv[i:i + 2] = ["--seeds", "3", "--workers", "2"]
    cmd = [sys.executable, "-m", "o2omarl.cli", *argv]
    base = runs / "3m" / "heuristic-v0" / "ft-qmix"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not all(len(read_jsonl(base / f"seed_{s}" / "metrics.jsonl")) >= 2 for s in (0, 1)):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    for s in (0, 1):
        status = json.loads((base / f"seed_{s}" / "status.json").read_text())
        assert status["state"] == "stopped", status
        ckpt = Checkpoint.read(base / f"seed_{s}" / "checkpoint.pt")
        assert ckpt.training["rollout"]["env_steps"] == status["env_step"]
    assert not (base / "seed_2" / "status.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("resuming from the checkpoint") == 2
    assert json.loads((base / "seed_2" / "status.json").read_text())["state"] == "done"


def test_qmix_beside_a_default_tier_that_does_not_fit_runs_online(fresh_root, monkeypatch):
    """`bench run qmix` needs no data: a medium tier of an older state format beside it is
    not attached to the run (it used to be, and the run was filed under that dataset)."""
    import json as _json

    from o2omarl import datasets
    from o2omarl.benchmark import plan
    from o2omarl.datasets import store

    rec = datasets.collect("3m", "random", episodes=4, seed=0, num_envs=4,
                           show_progress=False, tier="medium").record
    meta = _json.loads((rec.path / store.SIDECAR).read_text())
    meta["env"]["state_format"] = 2
    (rec.path / store.SIDECAR).write_text(_json.dumps(meta))
    (job,) = plan(["qmix"], "3m", None, [0], 100, 1)
    assert job.dataset is None and job.dataset_label == "online"


@pytest.mark.slow
def test_qmix_on_a_second_tier_of_its_map_is_copied_not_rerun(fresh_root, tmp_path, capsys):
    """qmix reads no data: its run on one tier is its run on every tier of the map, so a
    finished one is copied (same metrics to the byte; a rerun's wall-clock times differ).
    Another budget is another run, and a method that reads data is never copied."""
    from o2omarl import datasets
    from o2omarl.benchmark import registry
    from o2omarl.benchmark.jobs import needs_data
    from o2omarl.methods import NAMES

    assert [m for m in NAMES if not needs_data(registry.get(m).Config())] == ["qmix"]

    for tier in ("medium", "replay"):
        datasets.collect("3m", "random", episodes=4, seed=0, num_envs=4, show_progress=False,
                         tier=tier)
    runs = tmp_path / "runs"

    def run(tier, steps=400):
        main(["run", "qmix", "--map", "3m", "--dataset", tier, "--steps", str(steps), "--seed",
              "0", "--runs-dir", str(runs), *SETTINGS, "--set", "eval_interval=200"])
        return runs / "3m" / f"{tier}-v0" / "qmix" / "seed_0"

    first = run("medium")
    assert "copied" not in capsys.readouterr().out
    main(["run", "qmix", "--map", "3m", "--dataset", "replay", "--steps", "400", "--seed", "0",
          "--runs-dir", str(runs), *SETTINGS, "--set", "eval_interval=200", "--dry-run"])
    assert "dry run, nothing started: 1 copy" in capsys.readouterr().out
    assert not (runs / "3m" / "replay-v0").exists()
    second = run("replay")
    assert "reads no data), copied" in capsys.readouterr().out
    assert (second / "metrics.jsonl").read_bytes() == (first / "metrics.jsonl").read_bytes()
    assert (second / "model.pt").read_bytes() == (first / "model.pt").read_bytes()
    config = json.loads((second / "config.json").read_text())
    assert config["dataset"] == "smax/3m/replay-v0"
    assert config["copied_from"] == "3m/medium-v0/qmix/seed_0"
    assert json.loads((second / "status.json").read_text())["state"] == "done"
    assert not (second / "checkpoint.pt").exists()
    assert not list(second.parent.glob(".*copying*"))
    run("replay")
    assert "already done" in capsys.readouterr().out
    # another budget: no twin, a run of its own
    shutil.rmtree(second)
    other = run("replay", steps=404)
    assert "copied" not in capsys.readouterr().out
    assert read_jsonl(other / "metrics.jsonl")[-1]["env_step"] == 404
    assert "copied_from" not in json.loads((other / "config.json").read_text())


def test_a_copy_that_finds_its_folder_made_meanwhile_keeps_it(tmp_path):
    """Two `bench run` on one store copying one job: the second copy leaves the first's folder
    as it is, and nothing half-made beside it."""
    from o2omarl.benchmark.rundir import copy_run

    src = tmp_path / "runs" / "3m" / "medium-v0" / "qmix" / "seed_0"
    dst = tmp_path / "runs" / "3m" / "replay-v0" / "qmix" / "seed_0"
    for folder, text in ((src, "the source\n"), (dst, "made meanwhile\n")):
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text(text)
    copy_run(src, dst, {"dataset": "smax/3m/replay-v0"})
    assert (dst / "metrics.jsonl").read_text() == "made meanwhile\n"
    assert [p.name for p in dst.parent.iterdir()] == ["seed_0"]
    (dst / "metrics.jsonl").unlink()
    dst.rmdir()
    copy_run(src, dst, {"dataset": "smax/3m/replay-v0"})
    assert (dst / "metrics.jsonl").read_text() == "the source\n"
    assert json.loads((dst / "config.json").read_text())["copied_from"] == \
        "3m/medium-v0/qmix/seed_0"


@pytest.mark.parametrize("make", ["missing", "empty", "foreign"])
def test_runs_list_and_report_treat_a_store_without_runs_alike(tmp_path, capsys, make):
    store_dir = tmp_path / "store"
    if make != "missing":
        store_dir.mkdir()
    if make == "foreign":
        (store_dir / "notes.txt").write_text("not a run store")
    errors = []
    for argv in (["runs", "list"], ["report", "--out", str(tmp_path / "rep")]):
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--runs-dir", str(store_dir)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1
        errors.append(err[0])
    assert errors[0] == errors[1]
    assert ("does not exist" if make == "missing" else "holds no runs") in errors[0]


def test_default_evaluation_spacing_scales_with_the_budget():
    from o2omarl.protocol import default_eval_interval

    assert default_eval_interval(20_000) == 1000  # 21 evaluations, 3 in the first 2,000 steps
    assert default_eval_interval(100_000) == 5000
    assert default_eval_interval(2_000_000) == 10_000  # long runs: every 10k, as before
    assert default_eval_interval(7) == 1


@pytest.mark.slow
def test_a_run_whose_dataset_id_now_holds_other_bytes_is_flagged(heuristic_3m, tmp_path,
                                                                  capsys, monkeypatch):
    """Under another MINARI_DATASETS_PATH, `smax/3m/heuristic-v0` can be other data: the run
    records the bytes it trained on, and `runs list` and `report` say when the id's differ."""
    runs = tmp_path / "runs"
    main(_argv(heuristic_3m.dataset_id, runs, 100))
    capsys.readouterr()

    def listed() -> dict:
        main(["runs", "list", "--runs-dir", str(runs), "--json"])
        (run,) = json.loads(capsys.readouterr().out)
        return run

    assert listed()["dataset_changed"] is False  # the store it trained on
    # The same episodes whose Minari metadata a newer o2omarl wrote otherwise (the card's
    # text): not other data.
    import shutil

    from o2omarl.datasets import store
    same = tmp_path / "same_episodes" / "smax" / "3m" / "heuristic-v0"
    shutil.copytree(heuristic_3m.path, same)
    meta = same / "data" / "metadata.json"
    meta.write_text(meta.read_text().replace('"description": "', '"description": "Newer. '))
    sidecar = json.loads((same / store.SIDECAR).read_text())
    assert sidecar["files"]["data/metadata.json"] != store.sha256(meta)
    sidecar["files"]["data/metadata.json"] = store.sha256(meta)
    (same / store.SIDECAR).write_text(json.dumps(sidecar))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "same_episodes"))
    assert listed()["dataset_changed"] is False

    other = tmp_path / "other_store"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(other))
    main(["collect", "--map", "3m", "--behaviour", "heuristic", "--episodes", "6", "--seed",
          "1", "--num-envs", "4"])
    capsys.readouterr()
    assert listed()["dataset_changed"] is True
    main(["runs", "list", "--runs-dir", str(runs)])
    assert "dataset smax/3m/heuristic-v0 now holds other bytes" in capsys.readouterr().out
    main(["report", "--runs-dir", str(runs), "--out", str(tmp_path / "report")])
    assert "trained on dataset ids that now hold other bytes in this dataset store " \
           "(smax/3m/heuristic-v0)" in capsys.readouterr().out


@pytest.mark.slow
def test_an_archived_run_rebuilds_its_report_and_a_store_seeded_with_it_skips_the_job(
        heuristic_3m, tmp_path, capsys):
    """`bench runs archive`: the record of finished runs only, for git; the report from it is
    the store's, pooling both counts each run once, and a fresh store seeded with it skips."""
    import shutil

    from o2omarl.reports import build_report
    from test_report import make_run, read_csv

    runs, archive = tmp_path / "runs", tmp_path / "archive"
    main(_argv(heuristic_3m.dataset_id, runs))
    stopped = make_run(runs, "ovmse", 0, [0.5, 0.6], state="stopped", budget=STEPS)
    stale = archive / "3m" / "heuristic-v0" / "ft-qmix" / ".seed_0.99999.tmp"  # a killed copy
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{")
    capsys.readouterr()
    main(["runs", "archive", str(archive), "--runs-dir", str(runs)])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"1 run(s) archived to {archive}, 0 already there; 1 unfinished left out")
    run = runs / "3m" / "heuristic-v0" / "ft-qmix" / "seed_0"
    kept = archive / run.relative_to(runs)
    assert sorted(p.name for p in kept.iterdir()) == sorted(
        ["config.json", "status.json", "metrics.jsonl", "pretrain.jsonl", "run.log"])
    assert (kept / "metrics.jsonl").read_bytes() == (run / "metrics.jsonl").read_bytes()
    assert (run / "model.pt").exists() and not (archive / stopped.relative_to(runs)).exists()
    assert not list(archive.rglob(".*"))  # no temporary folder left behind, nor a stale one

    tables = {}
    for name, stores in (("runs", [runs]), ("archive", [archive]), ("both", [runs, archive])):
        index = build_report(stores, tmp_path / name, formats=("png",), say=lambda _: None)
        tables[name] = read_csv(index.parent / "tables" / "main.csv")
    assert tables["archive"] == tables["runs"] == tables["both"] and tables["runs"]
    assert tables["both"][0]["seeds"] == "1"  # the archived copy is not a second seed

    main(["runs", "archive", str(archive), "--runs-dir", str(runs)])  # again: nothing new
    assert capsys.readouterr().out.strip() == (
        f"0 run(s) archived to {archive}, 1 already there; 1 unfinished left out")

    fresh = tmp_path / "fresh"  # another machine: the archive copied in, the same command
    shutil.copytree(archive, fresh)
    main(_argv(heuristic_3m.dataset_id, fresh))
    assert "already done, skipped" in capsys.readouterr().out
    assert not (fresh / ".pretrained").exists()  # nothing was trained

    # A different record at the same path, or an archive inside the store: one line, exit 2.
    with open(kept / "metrics.jsonl", "a") as f:
        f.write("{}\n")
    before = {p: p.read_bytes() for p in archive.rglob("*") if p.is_file()}
    for dest in (archive, runs / "archive"):
        with pytest.raises(SystemExit) as e:
            main(["runs", "archive", str(dest), "--runs-dir", str(runs)])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and str(dest) in err, err
    assert {p: p.read_bytes() for p in archive.rglob("*") if p.is_file()} == before
    assert not (runs / "archive").exists()
