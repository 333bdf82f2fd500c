"""`bench run` end to end on 3m: the run store's files, the skip of a finished run, and the
refusal of a run directory another process holds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import torch

from o2omarl.benchmark.runner import file_lock, read_jsonl
from o2omarl.cli import main
from o2omarl.qmix import load_checkpoint

STEPS, INTERVAL, NUM_ENVS, PRETRAIN = 2600, 1000, 4, 60
SETTINGS = ["--set", f"eval_interval={INTERVAL}", "--set", "eval_episodes=8",
            "--set", f"num_envs={NUM_ENVS}", "--set", "hidden=16"]


def _argv(dataset_id, runs, steps=STEPS):
    return ["run", "ft-qmix", "--map", "3m", "--dataset", dataset_id, "--steps", str(steps),
            "--pretrain-steps", str(PRETRAIN), "--seed", "0", "--runs-dir", str(runs),
            *SETTINGS]


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

    for name in ("checkpoint.pt", "model.pt"):
        ckpt = load_checkpoint(run_dir / name)
        assert ckpt["method"] == "ft-qmix" and ckpt["env"]["map_name"] == "3m"
        assert ckpt["config"]["hidden"] == 16
        assert ckpt["learner"]["updates"] == rows[-1]["updates"]
        assert ckpt["learner"]["agent"]["fc1.weight"].shape[0] == 16
    final = load_checkpoint(run_dir / "model.pt")["learner"]["agent"]
    last = load_checkpoint(run_dir / "checkpoint.pt")["learner"]["agent"]
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
