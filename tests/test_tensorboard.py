"""TensorBoard event files beside metrics.jsonl, read back with TensorBoard's own reader: every
evaluation row's scalars equal metrics.jsonl's, training points are finer than evaluations, the
pretraining cache has its `offline/` tags, and a stopped, killed and resumed run ends with the
very events of an uninterrupted one (no step twice)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from o2omarl.benchmark.jobs import plan
from o2omarl.benchmark.results import read_jsonl
from o2omarl.benchmark.runner import StopFlag, run_job
from o2omarl.errors import Interrupted

STEPS, INTERVAL, PRETRAIN = 2000, 500, 40
SETTINGS = {"eval_interval": INTERVAL, "eval_episodes": 8, "num_envs": 4, "hidden": 16,
            "batch_size": 4}  # a batch its budget fills: updates happen
TIMING = ("eval/wall_s", "eval/env_steps_per_s")


def _job(dataset):
    (job,) = plan(["ft-qmix"], "3m", dataset.dataset_id, [0], STEPS, PRETRAIN,
                  overrides=SETTINGS)
    return job


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of the event files in `folder`: [(step, value)] in file order."""
    acc = event_accumulator.EventAccumulator(str(folder),
                                             size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def f32(x) -> float:
    return float(np.float32(x))  # event files hold scalars as float32


@pytest.fixture(scope="module")
def reference(heuristic_3m, tmp_path_factory):
    """One uninterrupted run: (job, runs dir, pretraining cache)."""
    runs = tmp_path_factory.mktemp("tb") / "runs"
    job = _job(heuristic_3m)
    run_job(job, runs, say=lambda msg: None)
    return job, runs, runs / ".pretrained"


@pytest.mark.slow
def test_events_hold_every_row_and_finer_training_points(reference):
    job, runs, cache = reference
    run_dir = job.run_dir(runs)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    tb = scalars(run_dir)

    for key in {k for r in rows for k in r} - {"env_step"}:
        assert tb[f"eval/{key}"] == [(r["env_step"], f32(r[key])) for r in rows if key in r]
    assert {"train/loss", "train/q_taken_mean", "train/grad_norm", "train/return",
            "train/win_rate", "train/episodes", "train/epsilon"} <= set(tb)
    evals = [r["env_step"] for r in rows]
    for tag in (t for t in tb if t.startswith("train/")):
        steps = [s for s, _ in tb[tag]]
        assert steps == sorted(set(steps)) and steps[-1] <= STEPS, tag
    assert len(tb["train/loss"]) > 2 * len(rows)
    # The points split each evaluation window: their episodes add up to the row's.
    for prev, row in zip(rows, rows[1:]):
        points = [v for s, v in tb["train/episodes"] if prev["env_step"] < s <= row["env_step"]]
        assert sum(points) == row["train_episodes"]
    assert tb["train/epsilon"][-1][1] == pytest.approx(rows[-1]["epsilon"])
    assert evals[0] == 0 and evals[-1] == STEPS

    (folder,) = {p.parent for p in cache.rglob("pretrain.jsonl")}
    offline, logged = scalars(folder), read_jsonl(folder / "pretrain.jsonl")
    assert offline["offline/eval/test_win_rate"] == [(r["update"], f32(r["test_win_rate"]))
                                                     for r in logged]
    losses = offline["offline/train/loss"]
    assert [s for s, _ in losses] == list(range(4, PRETRAIN + 1, 4))  # 10 points per interval
    assert not any(t.startswith(("eval/", "train/")) for t in offline)


class StopAfter(StopFlag):
    """Stops the run as Ctrl-C would, after `polls` batched steps (so between evaluations)."""

    def __init__(self, polls: int):
        super().__init__()
        self.polls = polls

    def __call__(self) -> bool:
        self.polls -= 1
        return self.polls < 0


@pytest.mark.slow
def test_stopped_killed_and_resumed_run_has_the_uninterrupted_events(reference, tmp_path):
    job, ref_runs, cache = reference
    run_dir = job.run_dir(tmp_path)
    quiet = lambda msg: None  # noqa: E731

    # Stopped at env step 820 (4 envs x 205 steps): between evaluations, and between points.
    with pytest.raises(Interrupted):
        run_job(job, tmp_path, quiet, cache, stop=StopAfter(205))
    early = tmp_path / "checkpoint_at_820.pt"
    shutil.copy(run_dir / "checkpoint.pt", early)
    # Resumed, then stopped at 1780: events up to there are written ...
    with pytest.raises(Interrupted):
        run_job(job, tmp_path, quiet, cache, stop=StopAfter(240))
    assert max(s for s, _ in scalars(run_dir)["train/loss"]) > 1500
    # ... and a kill is the same as the last checkpoint being the older one at 820.
    shutil.copy(early, run_dir / "checkpoint.pt")
    run_job(job, tmp_path, quiet, cache)

    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 3  # one per session
    got, want = scalars(run_dir), scalars(job.run_dir(ref_runs))
    assert set(got) == set(want)
    for tag in set(want) - set(TIMING):
        assert got[tag] == want[tag], tag
