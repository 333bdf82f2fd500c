"""Offline pretraining: QMIX updates on dataset episodes, the learner carrying the
conservative term (`qmix/conservative.py`); evaluated in the env every `eval_interval` updates."""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from o2omarl import atomic
from o2omarl.envs.base import VecEnv
from o2omarl.errors import Interrupted
from o2omarl.progress import Progress
from o2omarl.protocol import EVAL_EPISODES, eval_seed, stream
from o2omarl.qmix.acting import evaluate
from o2omarl.qmix.buffer import Batch, ReplayBuffer
from o2omarl.qmix.learner import Learner
from o2omarl.qmix.monitor import (
    Divergence,
    Log,
    Window,
    check_calibration,
    check_finite,
    points_every,
    summary,
)


@dataclass
class PretrainConfig:
    """What the offline loop reads; built from a method's config (`QmixConfig.pretrain_config`,
    where the defaults are stated)."""

    steps: int  # offline updates
    batch_size: int  # episodes per update
    eval_interval: int  # updates between evaluations in the env (0: only at the end)
    eval_episodes: int = EVAL_EPISODES


class Resume:
    """Where pretraining keeps the state that resumes it (`path`, written atomically at each
    evaluation): the learner, its loss terms' own state (CFCQL's behaviour policy), the batch
    generator and the last row. Resumed from it, the numbers are those of a run never
    stopped; it is deleted once the final weights are saved (`clear`)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict | None:
        """The kept state; None if there is none, or if it cannot be read (a kill cut it, a
        foreign file): pretraining then starts again, as it did before states were kept."""
        try:
            return torch.load(self.path, weights_only=False) if self.path.exists() else None
        except Exception:  # noqa: BLE001 - any unreadable state is no state
            return None

    def save(self, state: dict) -> None:
        with atomic.replacing(self.path) as tmp:
            torch.save(state, tmp)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def _stateful(learner: Learner) -> list:
    return [t for t in learner.extra_losses if hasattr(t, "state_dict")]


def pretrain(
    learner: Learner,
    data: ReplayBuffer,
    cfg: PretrainConfig,
    seed: int,
    log: Log,
    eval_env: VecEnv | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: Resume | None = None,
) -> dict:
    """Offline training on dataset episodes (the learner carries the conservative loss term).
    `should_stop()` is polled between updates (Ctrl-C, SIGTERM): Interrupted. With `resume`,
    the state at each evaluation is kept there, and a pretraining that finds one continues
    from it (the caller keeps the log rows up to its update)."""
    rng = np.random.default_rng(stream(seed, "offline_batches"))
    window, row, done = Window(), {}, 0
    divergence = Divergence("pretrain")
    state = resume.load() if resume is not None else None
    if state is not None:
        learner.load_state_dict(state["learner"])
        for term, sd in zip(_stateful(learner), state["terms"]):
            term.load_state_dict(sd, learner)
        rng.bit_generator.state = state["rng"]
        done, row, divergence.said = state["update"], state["row"], state["diverged"]
    bar = Progress("pretrain", cfg.steps, "updates", start_at=done)
    scalars = getattr(log, "scalars", None)  # training points between evaluations (Log)
    every = points_every(min(cfg.eval_interval or cfg.steps, cfg.steps))
    start = time.monotonic()
    for i, (batch, drawn) in enumerate(_prefetched(data, cfg.batch_size, rng, learner.device,
                                                   cfg.steps - done), start=done + 1):
        if should_stop is not None and should_stop():
            bar.close()
            kept = (f"its evaluation at update {row['update']:,} is kept: the same command "
                    "resumes from there" if resume is not None and row else
                    "nothing of it is kept: the same command starts it again")
            raise Interrupted(f"stopped during offline pretraining, at update {i - 1:,} of "
                              f"{cfg.steps:,}; {kept}")
        metrics = learner.update(batch)
        check_finite(metrics, f"offline update {i}", "no pretrained weights were cached")
        for k, v in metrics.items():
            window.metrics[k].append(v)
        at_eval = i == cfg.steps or (cfg.eval_interval and i % cfg.eval_interval == 0)
        if scalars and (at_eval or i % every == 0):
            scalars(i, window.tail())
        if at_eval:
            row = {"update": i, **window.flush(),
                   "updates_per_s": (i - done) / (time.monotonic() - start)}
            if eval_env is not None:
                row.update(evaluate(learner.agent, eval_env, cfg.eval_episodes, eval_seed(seed),
                                    learner.device, values=learner))
            log(row)
            divergence.check(row, f"offline update {i:,}")
            if resume is not None and i < cfg.steps:
                resume.save({"update": i, "learner": learner.state_dict(),
                             "terms": [t.state_dict() for t in _stateful(learner)],
                             "rng": drawn, "row": row, "diverged": divergence.said})
            bar.update(i, summary(row), force=True)
        else:
            bar.update(i)
    bar.close()
    check_calibration(row, "pretraining")
    return row


def _prefetched(data: ReplayBuffer, batch_size: int, rng: np.random.Generator, device,
                count: int):
    """`count` (batch, generator state after drawing it) sampled as `data.sample` would, each
    built (agent inputs included) in a side thread while the learner trains on the one before:
    ~6% of an offline update. One thread draws them all, in order, so the batches are the same
    as sampled inline; the state is read in that thread right after each draw (the next draw
    may already be under way when the batch is used)."""
    def make() -> tuple[Batch, dict]:
        batch = data.sample(batch_size, rng, device)
        batch.agent_inputs  # noqa: B018 - built here, off the learner's thread
        return batch, copy.deepcopy(rng.bit_generator.state)

    with ThreadPoolExecutor(1, thread_name_prefix="o2omarl-batches") as pool:
        nxt = pool.submit(make) if count > 0 else None
        for i in range(count):
            batch = nxt.result()
            if i + 1 < count:
                nxt = pool.submit(make)
            yield batch
