"""Kill collection, pretraining, fine-tuning and report writing with SIGKILL at random points,
rerun the same command, and end with exactly what an uninterrupted run produces."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from o2omarl.benchmark.results import read_jsonl

TIMING = ("wall_s", "env_steps_per_s")


def bench(args, root: Path, kill_after: float | None = None) -> int | None:
    """Run `bench ARGS` with datasets under `root`; with `kill_after`, SIGKILL it after that
    many seconds (returns None if it was killed, else its exit code)."""
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "o2omarl.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        return 0
    deadline = time.monotonic() + kill_after
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is not None:
        return proc.returncode  # finished before the kill: a valid outcome too
    proc.kill()
    proc.communicate()
    return None


def workflow(root: Path, runs: Path, out: Path) -> list[list[str]]:
    collect = ["collect", "--map", "3m", "--behaviour", "random", "--episodes", "200",
               "--num-envs", "16", "--seed", "1"]
    run = ["run", "ft-qmix", "--map", "3m", "--dataset", "random", "--steps", "3000",
           "--pretrain-steps", "150", "--seed", "0", "--runs-dir", str(runs),
           "--set", "eval_interval=500", "--set", "eval_episodes=8", "--set", "num_envs=4",
           "--set", "hidden=16", "--set", "pretrain_eval_interval=50"]
    report = ["report", "--runs-dir", str(runs), "--out", str(out), "--format", "png,pdf"]
    return [collect, run, report]


def results(root: Path, runs: Path, out: Path) -> dict:
    data = root / "smax" / "3m" / "random-v0" / "data" / "main_data.hdf5"
    run_dir = runs / "3m" / "random-v0" / "ft-qmix" / "seed_0"
    metrics = [{k: v for k, v in r.items() if k not in TIMING}
               for r in read_jsonl(run_dir / "metrics.jsonl")]
    pretrain = next((runs / ".pretrained").rglob("pretrain.jsonl"))
    pre = [{k: v for k, v in r.items() if k not in ("updates_per_s",)}
           for r in read_jsonl(pretrain)]
    return {"dataset": hashlib.sha256(data.read_bytes()).hexdigest(), "metrics": metrics,
            "pretrain": pre, "main_table": (out / "tables" / "main.csv").read_text(),
            "versions": sorted(p.name for p in data.parents[2].iterdir())}


@pytest.mark.slow
def test_sigkill_anywhere_then_rerun_gives_the_uninterrupted_results(tmp_path):
    ref = [tmp_path / "ref" / d for d in ("minari", "runs", "reports")]
    durations = []
    for args in workflow(*ref):
        start = time.monotonic()
        bench(args, ref[0])
        durations.append(time.monotonic() - start)
    want = results(*ref)

    got = [tmp_path / "faulty" / d for d in ("minari", "runs", "reports")]
    rng = random.Random(0)
    kills = 0
    for args, took in zip(workflow(*got), durations):
        for _ in range(2):  # two kills at random points of each stage, then a full run
            # After the first kill a rerun has less left to do: aim within what remains.
            kills += bench(args, got[0], kill_after=took * rng.uniform(0.3, 0.8)) is None
        bench(args, got[0])
    assert kills >= 4, kills  # the kills hit work in progress, not finished commands
    assert results(*got) == want
