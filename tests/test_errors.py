"""One test per row of docs/errors.md not covered next to its feature: the message, the exit
code and what is left on disk. Rows covered elsewhere are named in docs/errors.md."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from o2omarl import datasets
from o2omarl.cli import main
from o2omarl.datasets import store
from o2omarl.envs import env_info

MAP, N = "3m", 16  # N as in the session fixture: one compiled env shape


def bench(argv, capsys):
    """Run `bench` in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The one line an error is, besides progress lines (long work shows them on stderr)."""
    lines = [line for line in err.strip().splitlines() if " | ETA " not in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def run_argv(dataset, runs, *extra):
    return ["run", "ft-qmix", "--map", MAP, "--dataset", dataset, "--steps", "200",
            "--pretrain-steps", "5", "--seed", "0", "--runs-dir", str(runs),
            "--set", "eval_episodes=4", "--set", "num_envs=4", "--set", "hidden=8",
            "--set", "batch_size=2", *extra]  # a batch the 200 steps fill: updates happen


@pytest.fixture
def small(fresh_root):
    """A fresh root holding one small random dataset on 3m."""
    return datasets.collect(MAP, "random", episodes=20, seed=0, num_envs=N,
                            show_progress=False).record


def leftovers(folder: pathlib.Path) -> list[str]:
    """Temporary files a writer left behind (there must be none)."""
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name]


# -- bad input: usage errors (exit 2), nothing written ------------------------------------------
@pytest.mark.parametrize("extra, named", [
    (["--pretrain-steps", "0"], "--pretrain-steps"),
    (["--workers", "-1"], "--workers"),
])
def test_non_positive_counts(small, tmp_path, capsys, extra, named):
    runs = tmp_path / "runs"
    code, _, err = bench(run_argv(small.dataset_id, runs) + extra, capsys)
    assert code == 2 and named in one_line(err)
    assert not runs.exists()



@pytest.mark.parametrize("method", ["ovmse", "ovm"])
def test_the_memory_without_offline_weights_is_refused(small, tmp_path, capsys, method):
    """`--set init=random` once made OVM a silent no-op (nothing to freeze, so the memory never
    took part); SE has no memory and trains from scratch as asked."""
    runs = tmp_path / "runs"
    argv = run_argv(small.dataset_id, runs, "--set", "init=random")
    argv[1] = method
    code, _, err = bench(argv, capsys)
    assert code == 2 and "use_ovm=true needs offline weights (init=offline), not " \
        "init=random" in one_line(err), err
    assert not runs.exists()
    from o2omarl.benchmark import plan

    (job,) = plan(["se"], MAP, small.dataset_id, [0], 200, overrides={"init": "random"})
    assert (job.config.init, job.config.use_ovm) == ("random", False)



@pytest.mark.parametrize("seed", ["-1", str(2**31), "99999999999999999999999"])
@pytest.mark.parametrize("command", ["collect", "run", "eval"])
def test_a_seed_no_generator_takes_is_one_line(small, tmp_path, capsys, seed, command):
    """Negative seeds and seeds beyond 64 bits were numpy/C tracebacks."""
    runs = tmp_path / "runs"
    argv = {"collect": ["collect", "--map", MAP, "--behaviour", "heuristic", "--episodes", "5"],
            "run": ["run", "ft-qmix", "--map", MAP, "--dataset", small.dataset_id, "--steps",
                    "200", "--runs-dir", str(runs)],
            "eval": ["eval", str(tmp_path / "model.pt")]}[command]
    code, _, err = bench(argv + ["--seed", seed], capsys)
    assert code == 2, err
    expected = f"{seed} is not accepted; accepted: an integer in [0, 2,147,483,647]"
    if command == "run" and seed == "-1":  # bench run's own line (test_qmix)
        expected = "seed -1 is negative; --seed and --seed-offset accept integers >= 0"
    assert one_line(err).endswith(expected), err
    assert not runs.exists()


@pytest.mark.parametrize("extra, behaviour, flag", [
    (["--tiers", "medium"], "heuristic", "--tiers applies to --behaviour qmix only"),
    (["--train-steps", "10k"], "random", "--train-steps applies to --behaviour qmix only"),
    (["--tier", "mine"], "heuristic", "--tier applies to --behaviour checkpoint:PATH only"),
])
def test_a_collect_flag_the_behaviour_ignores_is_refused(fresh_root, capsys, extra, behaviour,
                                                         flag):
    code, _, err = bench(["collect", "--map", MAP, "--behaviour", behaviour, "--episodes", "5",
                          *extra], capsys)
    assert code == 2 and one_line(err).startswith(f"error: {flag}"), err
    assert store.list_ids() == []


@pytest.fixture
def immutable_dir(tmp_path):
    """A folder nobody may write, root included (the immutable flag: a chmod does not stop
    root), as a shared read-only mount."""
    folder = tmp_path / "shared_runs"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available or not permitted here")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)


@pytest.mark.parametrize("where", ["under a file", "virtual filesystem", "sweep file",
                                   "read-only"])
def test_an_unusable_runs_dir_is_one_line(small, tmp_path, capsys, request, where):
    """A run store under a regular file, where nothing can be made, or that nobody may write,
    was a traceback."""
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    runs = str(blocker / "runs")
    if where == "virtual filesystem":
        runs = "/proc/o2omarl_runs"
    elif where == "read-only":
        runs = str(request.getfixturevalue("immutable_dir"))
    argv = run_argv(small.dataset_id, runs)
    if where == "sweep file":
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(f"runs_dir: {runs}\nmaps: {{{MAP}: {small.dataset_id}}}\n"
                         "seeds: [0]\nsteps: 200\nmethods: [ft-qmix]\n")
        argv = ["run", "--config", str(sweep)]
    code, _, err = bench(argv, capsys)
    assert code == 2, err
    assert one_line(err).startswith(f"error: --runs-dir {runs!r} is not a usable folder ("), err
    assert one_line(err).endswith("accepted: a folder that exists or can be made, and can be "
                                  "written")
    if where == "read-only":
        assert list(pathlib.Path(runs).iterdir()) == []  # nothing half-written


@pytest.mark.parametrize("typo, named", [
    (["run", "ovmes"], "unknown method 'ovmes' (did you mean 'ovmse'?); accepted:"),
    (["run", "ft-qmix", "--set", "hiden=8"], "unknown setting 'hiden' (did you mean 'hidden'?)"),
    (["run", "ft-qmix", "--dataset", "randm"], "no dataset 'smax/3m/randm' (did you mean "
                                              "'random'?)"),
    (["collect", "--behaviour", "heurstic"], "unknown behaviour 'heurstic' (did you mean "
                                             "'heuristic'?)"),
])
def test_typos_get_a_suggestion(small, tmp_path, capsys, typo, named):
    """A near miss names the closest accepted value, in the same one line, exit 2."""
    runs = tmp_path / "runs"
    extra = ["--runs-dir", str(runs), "--steps", "100"] if typo[0] == "run" else []
    code, _, err = bench(typo + ["--map", MAP] + extra, capsys)
    assert code == 2 and named in one_line(err), err
    assert not runs.exists()


def test_version(capsys):
    from importlib.metadata import version

    import o2omarl

    code, out, _ = bench(["--version"], capsys)
    assert code == 0 and out.strip() == f"bench (o2omarl) {version('o2omarl')}"
    assert o2omarl.__version__ == version("o2omarl")


def test_dataset_id_that_does_not_exist(fresh_root, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, _, err = bench(run_argv("smax/3m/nope-v0", runs), capsys)
    line = one_line(err)
    assert code == 2 and "'smax/3m/nope-v0' does not exist" in line
    assert "bench collect --map 3m" in line
    assert not runs.exists()


def test_dataset_with_other_shapes(small, tmp_path, capsys):
    sidecar = small.path / store.SIDECAR
    meta = json.loads(sidecar.read_text())
    meta["env"]["obs_dim"] += 3
    sidecar.write_text(json.dumps(meta))
    runs = tmp_path / "runs"
    code, _, err = bench(run_argv(small.dataset_id, runs), capsys)
    line = one_line(err)
    assert code == 2 and "does not fit map '3m'" in line and "obs_dim" in line
    assert not runs.exists()


def test_dataset_of_an_older_state_format_is_refused_naming_the_fix(small, tmp_path, capsys):
    """Data recorded with the raw weapon cooldown (format 2) must never be mixed with format 3."""
    sidecar = small.path / store.SIDECAR
    original = sidecar.read_text()
    meta = json.loads(original)
    meta["env"]["state_format"] = 2
    sidecar.write_text(json.dumps(meta))
    runs = tmp_path / "runs"
    try:
        code, _, err = bench(run_argv(small.dataset_id, runs), capsys)
    finally:
        sidecar.write_text(original)
    line = one_line(err)
    assert code == 2 and "recorded in state format 2" in line and "format 3" in line
    assert "weapon cooldown" in line and "bench collect --map 3m" in line
    assert not runs.exists()


def test_a_run_that_made_no_update_is_failed_not_done(small, tmp_path, capsys):
    """200 steps of 4 envs never store a batch of 64 episodes: the run ends its budget with
    no update; once marked done (and averaged into reports), it now fails in one line."""
    runs = tmp_path / "runs"
    argv = run_argv(small.dataset_id, runs)
    argv[argv.index("batch_size=2")] = "batch_size=64"
    code, _, err = bench(argv, capsys)
    last = err.strip().splitlines()[-1]  # (after pretraining's calibration warning)
    assert code == 1 and last.startswith("error: ft-qmix seed 0: made no update in its 200 env")
    assert "batch_size=64" in err and "not done" in err
    status = json.loads(next(runs.rglob("status.json")).read_text())
    assert status["state"] == "failed" and "made no update" in status["error"]
    code, out, _ = bench(["runs", "list", "--runs-dir", str(runs)], capsys)
    assert code == 0 and "failed" in out and "done" not in out
    assert out.strip().splitlines()[-1] == "1 run: 1 failed"


def test_newer_run_store_is_refused(small, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert bench(run_argv(small.dataset_id, runs), capsys)[0] == 0
    cfg_path = next(runs.rglob("config.json"))
    cfg = json.loads(cfg_path.read_text())
    cfg["store_version"] = 99
    cfg_path.write_text(json.dumps(cfg))
    before = sorted(p.name for p in cfg_path.parent.iterdir())
    code, _, err = bench(run_argv(small.dataset_id, runs), capsys)
    assert code == 2 and "newer o2omarl" in one_line(err) and "99" in err
    assert sorted(p.name for p in cfg_path.parent.iterdir()) == before
    code, out, _ = bench(["runs", "list", "--runs-dir", str(runs)], capsys)
    assert code == 0 and "damaged" in out and "newer o2omarl" in out
    assert out.strip().splitlines()[-1] == "1 run: 1 damaged"  # counted, not only listed


@pytest.mark.slow
def test_checkpoint_from_another_map(small, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert bench(run_argv(small.dataset_id, runs), capsys)[0] == 0
    model = next(runs.rglob("model.pt"))
    code, _, err = bench(["collect", "--map", "2s3z", "--behaviour", f"checkpoint:{model}",
                          "--episodes", "4"], capsys)
    assert code == 2 and "is for map '3m'" in one_line(err)
    assert store.versions("smax", "2s3z", "checkpoint") == []


# -- damaged files: failures (exit 1), nothing used ----------------------------------------------
def test_flipped_byte_in_hdf5_is_refused_by_run_and_flagged_by_verify(small, tmp_path, capsys):
    data = small.path / "data" / "main_data.hdf5"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    runs = tmp_path / "runs"
    code, _, err = bench(run_argv(small.dataset_id, runs), capsys)
    line = one_line(err)
    assert code == 1 and "fails its sha256 checksum" in line and "verify" in line
    assert list(runs.rglob("seed_*")) == []  # found before any run folder was made
    code, out, err = bench(["datasets", "verify", "--all"], capsys)
    assert code == 1 and f"DAMAGED {small.dataset_id}" in out


def test_truncated_hdf5(small, tmp_path, capsys):
    data = small.path / "data" / "main_data.hdf5"
    data.write_bytes(data.read_bytes()[:1000])
    code, _, err = bench(run_argv(small.dataset_id, tmp_path / "runs"), capsys)
    assert code == 1 and "checksum" in one_line(err)
    assert list((tmp_path / "runs").rglob("seed_*")) == []
    code, out, _ = bench(["datasets", "verify", small.dataset_id], capsys)
    assert code == 1 and "DAMAGED" in out


@pytest.mark.parametrize("name", [store.SIDECAR, "data/metadata.json"])
def test_metadata_that_is_not_json(small, capsys, name):
    (small.path / name).write_text("{not json")
    code, out, err = bench(["datasets", "verify", "--all"], capsys)
    assert code == 1 and "DAMAGED" in out
    code, out, err = bench(["datasets", "list"], capsys)
    assert code == 0  # listing never crashes on a damaged version
    if name == store.SIDECAR:
        assert "DAMAGED" in out
        assert out.strip().splitlines()[-1].startswith("1 dataset, 1 DAMAGED")


def _write_dataset(tier: str, edit) -> str:
    """A dataset whose episodes were edited before writing (so its checksums are valid)."""
    info = env_info(MAP)
    from o2omarl.datasets.policies import make_builtin
    from o2omarl.envs import make_env
    from o2omarl.episodes import Rollout

    env = make_env(MAP, N)
    eps = Rollout(env, make_builtin("random", env, 0), 0).collect(8)
    edit(eps)
    settings = {"map": MAP, "tier": tier}
    with store.claim("smax", MAP, tier):
        return store.write(info, tier, settings, eps, {"name": "edited"}).dataset_id


@pytest.mark.parametrize("field", ["reward", "obs"])
def test_nan_in_a_dataset(fresh_root, tmp_path, capsys, field):
    def poison(eps):
        getattr(eps[3], field)[1] = np.nan

    dataset_id = _write_dataset("poisoned", poison)
    runs = tmp_path / "runs"
    code, _, err = bench(run_argv(dataset_id, runs), capsys)
    line = one_line(err)
    assert code == 1 and "episode 3 has non-finite" in line
    assert list(runs.rglob("seed_*")) == []
    code, out, _ = bench(["datasets", "verify", dataset_id], capsys)
    assert code == 1 and "non-finite" in out


def test_nan_loss_during_pretraining(fresh_root, tmp_path, capsys):
    """Finite but absurd rewards overflow the float32 loss: the run stops with one line naming
    the divergence, its status says failed, and no pretrained weights are cached."""
    def huge(eps):
        for e in eps:
            e.reward[:] = 3e38

    dataset_id = _write_dataset("huge", huge)
    runs = tmp_path / "runs"
    code, _, err = bench(run_argv(dataset_id, runs), capsys)
    assert code == 1 and "diverged at offline update 1" in one_line(err)
    status = json.loads(next(runs.rglob("status.json")).read_text())
    assert status["state"] == "failed" and "diverged" in status["error"]
    assert list(runs.rglob("model.pt")) == []


def test_truncated_checkpoint_as_a_behaviour(small, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert bench(run_argv(small.dataset_id, runs), capsys)[0] == 0
    model = next(runs.rglob("model.pt"))
    model.write_bytes(model.read_bytes()[:500])
    code, _, err = bench(["collect", "--map", MAP, "--behaviour", f"checkpoint:{model}",
                          "--episodes", "4"], capsys)
    assert code == 1 and "is unreadable" in one_line(err)
    assert store.versions("smax", MAP, "checkpoint") == []


# -- a full disk ---------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "main_data.hdf5")


def test_full_disk_while_writing_a_dataset(fresh_root, capsys, monkeypatch):
    monkeypatch.setattr(store, "_minari_write", _enospc)
    code, _, err = bench(["collect", "--map", MAP, "--behaviour", "random", "--episodes", "8",
                          "--num-envs", str(N)], capsys)
    assert code == 1 and "no space left on device" in one_line(err)
    assert store.list_ids() == []
    staging = fresh_root / ".o2omarl" / "staging"
    assert not staging.exists() or list(staging.iterdir()) == []


def _half_then_enospc(self, data, *args, **kwargs):
    """Path.write_bytes/write_text that writes half, then finds the disk full."""
    with open(self, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data[: len(data) // 2])
    raise OSError(errno.ENOSPC, "No space left on device", str(self))


@pytest.mark.slow
def test_full_disk_while_writing_a_checkpoint(small, tmp_path, capsys, monkeypatch):
    runs = tmp_path / "runs"
    write_bytes = pathlib.Path.write_bytes
    monkeypatch.setattr(pathlib.Path, "write_bytes", _half_then_enospc)
    code, _, err = bench(run_argv(small.dataset_id, runs), capsys)
    assert code == 1 and "no space left on device" in err.strip().splitlines()[-1]
    run_dir = next(runs.rglob("config.json")).parent
    assert not (run_dir / "checkpoint.pt").exists() and leftovers(runs) == []
    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    code, _, err = bench(run_argv(small.dataset_id, runs), capsys)  # space again: it completes
    assert code == 0 and (run_dir / "model.pt").exists(), err


@pytest.mark.slow
def test_full_disk_while_writing_a_report(small, tmp_path, capsys, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    assert bench(run_argv(small.dataset_id, runs), capsys)[0] == 0
    monkeypatch.setattr(pathlib.Path, "write_text", _half_then_enospc)
    code, _, err = bench(["report", "--runs-dir", str(runs), "--out", str(out),
                          "--format", "png"], capsys)
    assert code == 1 and "no space left on device" in one_line(err)
    assert leftovers(out) == [] and not (out / "index.html").exists()


# -- concurrency ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_collects_of_the_same_dataset_at_once(fresh_root):
    cmd = [sys.executable, "-m", "o2omarl.cli", "collect", "--map", MAP, "--behaviour",
           "random", "--episodes", "40", "--num-envs", str(N), "--seed", "5"]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(fresh_root)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert store.versions("smax", MAP, "random") == [0]  # one version, written once
    assert sum("already holds these settings" in o for o, _ in outs) == 1


# -- resuming from damaged or foreign checkpoints, and old run stores -----------------------------
def _killed_run(dataset_id, runs):
    """A run killed after its first checkpoints (so it would resume)."""
    argv = [sys.executable, "-m", "o2omarl.cli", *run_argv(dataset_id, runs)]
    argv[argv.index("200")] = "4000"  # --steps
    argv += ["--set", "eval_interval=400"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = runs / "3m" / dataset_id.rsplit("/", 1)[1] / "ft-qmix" / "seed_0"
    from o2omarl.benchmark.results import read_jsonl

    while len(read_jsonl(run_dir / "metrics.jsonl")) < 3:
        assert proc.poll() is None
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    return argv[3:], run_dir


@pytest.mark.parametrize("damage", ["truncated", "other method"])
@pytest.mark.slow
def test_unusable_resume_checkpoint_restarts_the_run(small, tmp_path, capsys, damage):
    argv, run_dir = _killed_run(small.dataset_id, tmp_path / "runs")
    ckpt = run_dir / "checkpoint.pt"
    if damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    else:
        import torch

        state = torch.load(ckpt, weights_only=False)
        state["method"] = "ovmse"
        torch.save(state, ckpt)
    code, out, err = bench(argv, capsys)
    assert code == 0, err
    assert "starting the run afresh" in out
    assert ("unreadable" if damage == "truncated" else "from method 'ovmse'") in out
    from o2omarl.benchmark.results import read_jsonl

    steps = [r["env_step"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps[0] == 0 and steps == sorted(set(steps)) and steps[-1] == 4000


@pytest.mark.slow
def test_run_store_from_before_versioning_is_still_read(small, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert bench(run_argv(small.dataset_id, runs), capsys)[0] == 0
    cfg_path = next(runs.rglob("config.json"))
    cfg = json.loads(cfg_path.read_text())
    del cfg["store_version"], cfg["label"]
    cfg_path.write_text(json.dumps(cfg))
    code, out, _ = bench(run_argv(small.dataset_id, runs), capsys)
    assert code == 0 and "already done, skipped" in out
    code, out, _ = bench(["runs", "list", "--runs-dir", str(runs)], capsys)
    assert code == 0 and "done" in out and "200/200" in out


@pytest.mark.slow
def test_an_unexpected_failure_is_one_line_naming_the_log_and_the_other_jobs_go_on(
        small, tmp_path, capsys, monkeypatch):
    """A bug inside one job (here: ovmse's online phase raises RuntimeError) ends that job as
    one line naming its run folder's log, with the traceback in the log; ft-qmix still runs."""
    from o2omarl.ovmse import Ovmse

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Ovmse, "online", broken)
    runs = tmp_path / "runs"
    argv = run_argv(small.dataset_id, runs, "--workers", "1")
    argv[1:2] = ["ovmse", "ft-qmix"]
    code, out, err = bench(argv, capsys)
    log = runs / "3m" / "random-v0" / "ovmse" / "seed_0" / "run.log"
    said = [line for line in out.splitlines() if "failed unexpectedly" in line]
    assert len(said) == 1 and "RuntimeError: boom" in said[0] and str(log) in said[0]
    assert err.strip().splitlines()[-1].startswith("error: 1 of 2 jobs failed")
    assert "Traceback" not in out + err and "Traceback" in log.read_text()
    status = json.loads((log.parent / "status.json").read_text())
    assert status["state"] == "failed"
    done = json.loads((runs / "3m/random-v0/ft-qmix/seed_0/status.json").read_text())
    assert done["state"] == "done" and code == 1
