"""Trained dataset tiers: the snapshot -> rollout -> versioned dataset pipeline, for real.

Reaching real tier targets takes a long behaviour-training run, so the targets are lowered for
the test (the mechanics are the same): every snapshot, rollout, the replay tier and the metadata
that ties them together run on real SMAX, real networks and real HDF5 files.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import minari
import pytest

from o2omarl.benchmark import tiers
from o2omarl.datasets import store
from o2omarl.errors import UsageError

SMALL = {"num_envs": 4, "eval_episodes": 8, "eval_interval": 500, "hidden": 16,
         "buffer_episodes": 200}


@pytest.mark.slow
def test_tiers_are_snapshotted_rolled_out_and_referenced(fresh_root, monkeypatch):
    # poor and medium are reached at the first evaluation after step 0 (return >= 0): one
    # snapshot, so one dataset, as the higher tier (two tiers with one sha256 were written);
    # good never (its target is above the maximum return).
    monkeypatch.setattr(tiers, "TIER_TARGETS", {"poor": 0.0, "medium": 0.0, "good": 1.01})
    said = []
    report = tiers.collect_tiers("3m", ["poor", "medium", "good", "replay"], episodes=12,
                                 seed=0, train_steps=1500, num_envs=4, overrides=SMALL,
                                 say=said.append)
    assert set(report.produced) == {"medium", "replay"}
    assert report.missing["poor"] == ("the same snapshot as medium (step 500: the return passed "
                                      "both targets within one evaluation); written once, as "
                                      "medium")
    assert "good" in report.missing and "not reached within 1,500" in report.missing["good"]
    for tier in ("medium",):
        rec = report.produced[tier].record
        assert rec.dataset_id == f"smax/3m/{tier}-v0"
        assert rec.stats["episodes"] == 12
        beh = rec.meta["behaviour"]
        snap = Path(beh["checkpoint"])
        assert snap.is_file() and store.sha256(snap) == beh["sha256"]  # snapshot kept + named
        assert rec.meta["settings"]["epsilon"] == tiers.ROLLOUT_EPSILON
        assert beh["snapshot"]["env_step"] == 500  # first evaluation after step 0
        # decided on rollouts as the dataset is collected (epsilon 0.05), not on greedy play
        assert beh["snapshot"]["rollout_epsilon"] == tiers.ROLLOUT_EPSILON
        assert beh["snapshot"]["rollout_episodes"] == 2 * tiers.SNAPSHOT_EPISODES  # confirmed
    replay = report.produced["replay"].record
    ds = minari.load_dataset(replay.dataset_id)
    assert ds.total_episodes == replay.stats["episodes"]
    assert replay.meta["behaviour"]["behaviour_run"] == \
        report.produced["medium"].record.meta["behaviour"]["behaviour_run"]

    # Same command again: snapshots and datasets are reused, no training.
    said.clear()
    again = tiers.collect_tiers("3m", ["poor", "medium"], episodes=12, seed=0,
                                train_steps=1500, num_envs=4, overrides=SMALL, say=said.append)
    assert all(r.reused for r in again.produced.values())
    assert not any("training the behaviour" in s for s in said)


def test_replay_tier_holds_the_buffer_at_the_medium_snapshot(fresh_root, monkeypatch):
    """The replay tier is exactly the behaviour run's stored episodes at the medium snapshot."""
    monkeypatch.setattr(tiers, "TIER_TARGETS", {"poor": 1.01, "medium": 0.0, "good": 1.01})
    stored = {}
    real_write = tiers._write_replay

    def spy(info, buffer, *args):
        stored["episodes"] = buffer.size
        real_write(info, buffer, *args)

    monkeypatch.setattr(tiers, "_write_replay", spy)
    report = tiers.collect_tiers("3m", ["replay"], episodes=5, seed=1, train_steps=1000,
                                 num_envs=4, overrides=SMALL, say=lambda s: None)
    rec = report.produced["replay"].record
    assert rec.meta["behaviour"]["snapshot"]["env_step"] == 500  # first evaluation after 0
    assert stored["episodes"] > 0 and rec.stats["episodes"] == stored["episodes"]
    with h5py.File(rec.path / "data/main_data.hdf5") as f:
        ends = [f[f"episode_{e}/terminations"][-1] or f[f"episode_{e}/truncations"][-1]
                for e in range(rec.stats["episodes"])]
        won = [f[f"episode_{e}/infos/battle_won"][()] for e in range(rec.stats["episodes"])]
    assert all(ends)  # whole episodes only
    assert not any(w[:-1].any() for w in won)  # battle_won only ever on the last step
    assert "poor" not in report.produced and "good" not in report.produced
    # training stopped at the medium snapshot: tiers not asked for are not reported missing
    assert report.missing == {}


def test_unknown_tier_is_a_usage_error():
    with pytest.raises(UsageError, match="accepted: poor, medium, good, replay"):
        tiers.parse_tiers("poor,excellent")


@pytest.mark.slow
def test_interrupted_behaviour_training_resumes_where_it_stopped(fresh_root, monkeypatch):
    """Behaviour training is a job of `bench run`'s harness: stopped mid-way (as by Ctrl-C), it
    keeps its checkpoint, and the same command continues from there instead of from zero."""
    from o2omarl.benchmark.results import read_jsonl
    from o2omarl.benchmark.runner import StopFlag
    from o2omarl.errors import Interrupted

    monkeypatch.setattr(tiers, "TIER_TARGETS", {"poor": 1.01, "medium": 1.01, "good": 1.01})

    class StopAfter(StopFlag):  # what Ctrl-C does, after `polls` batched steps (4 envs each)
        def __init__(self, polls):
            super().__init__()
            self.polls = polls

        def __call__(self):
            self.polls -= 1
            return self.polls < 0

    real = tiers.run_job
    monkeypatch.setattr(tiers, "run_job", lambda *a, **kw: real(*a, stop=StopAfter(200), **kw))
    said = []
    kwargs = dict(episodes=5, seed=0, train_steps=1500, num_envs=4, overrides=SMALL,
                  say=said.append)
    with pytest.raises(Interrupted, match="stopped behaviour seed 0 at env step"):
        tiers.collect_tiers("3m", ["poor"], **kwargs)
    metrics = next(fresh_root.rglob("behaviour/seed_0/metrics.jsonl"))
    assert [r["env_step"] for r in read_jsonl(metrics)] == [0, 500]

    monkeypatch.setattr(tiers, "run_job", real)
    said.clear()
    report = tiers.collect_tiers("3m", ["poor"], **kwargs)
    assert any("resuming from the checkpoint at env step" in s for s in said)
    assert [r["env_step"] for r in read_jsonl(metrics)] == [0, 500, 1000, 1500]
    assert "best return" in report.missing["poor"] and "with epsilon 0.05" in report.missing["poor"]
    assert "n/a" not in report.missing["poor"]  # the rollouts before the stop count too


@pytest.mark.slow
def test_bench_collect_summary_lists_each_tier_and_the_training_time(fresh_root, monkeypatch,
                                                                     capsys):
    from o2omarl.cli import main

    monkeypatch.setattr(tiers, "TIER_TARGETS", {"poor": 0.0, "medium": 1.01, "good": 1.01})
    code = 0
    try:
        main(["collect", "--map", "3m", "--tiers", "poor", "--episodes", "6",
              "--train-steps", "800", "--num-envs", "4"])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr().out
    assert code in (0, None), out
    table = out[out.index("tier  "):].splitlines()
    assert table[0].split() == ["tier", "id", "episodes", "return", "win", "rate"]
    poor = table[2].split()
    assert poor[:3] == ["poor", "smax/3m/poor-v0", "6"]
    rec = store.get("smax/3m/poor-v0")
    assert float(poor[3]) == pytest.approx(rec.stats["return_mean"], abs=0.005)
    assert "behaviour training: 800 env steps in 0:" in out
    assert "\ntotal: " in out
