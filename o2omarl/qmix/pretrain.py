"""Offline pretraining: QMIX updates on dataset episodes, the learner carrying the
conservative term (`qmix/conservative.py`); evaluated in the env every `eval_interval` updates."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

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


def pretrain(
    learner: Learner,
    data: ReplayBuffer,
    cfg: PretrainConfig,
    seed: int,
    log: Log,
    eval_env: VecEnv | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Offline training on dataset episodes (the learner carries the conservative loss term).
    `should_stop()` is polled between updates (Ctrl-C, SIGTERM): Interrupted, nothing kept
    (pretraining reruns deterministically from its seed)."""
    rng = np.random.default_rng(stream(seed, "offline_batches"))
    window, row = Window(), {}
    bar = Progress("pretrain", cfg.steps, "updates")
    divergence = Divergence("pretrain")
    scalars = getattr(log, "scalars", None)  # training points between evaluations (Log)
    every = points_every(min(cfg.eval_interval or cfg.steps, cfg.steps))
    start = time.monotonic()
    for i, batch in enumerate(_prefetched(data, cfg.batch_size, rng, learner.device,
                                          cfg.steps), start=1):
        if should_stop is not None and should_stop():
            bar.close()
            raise Interrupted(f"stopped during offline pretraining, at update {i - 1:,} of "
                              f"{cfg.steps:,}; pretraining is not kept midway: the same command "
                              "starts it again")
        metrics = learner.update(batch)
        check_finite(metrics, f"offline update {i}", "no pretrained weights were cached")
        for k, v in metrics.items():
            window.metrics[k].append(v)
        at_eval = i == cfg.steps or (cfg.eval_interval and i % cfg.eval_interval == 0)
        if scalars and (at_eval or i % every == 0):
            scalars(i, window.tail())
        if at_eval:
            row = {"update": i, **window.flush(),
                   "updates_per_s": i / (time.monotonic() - start)}
            if eval_env is not None:
                row.update(evaluate(learner.agent, eval_env, cfg.eval_episodes, eval_seed(seed),
                                    learner.device, values=learner))
            log(row)
            divergence.check(row, f"offline update {i:,}")
            bar.update(i, summary(row), force=True)
        else:
            bar.update(i)
    bar.close()
    check_calibration(row, "pretraining")
    return row


def _prefetched(data: ReplayBuffer, batch_size: int, rng: np.random.Generator, device,
                count: int):
    """`count` batches sampled as `data.sample` would, each built (agent inputs included) in a
    side thread while the learner trains on the one before: ~6% of an offline update. One
    thread draws them all, in order, so the batches are the same as sampled inline."""
    def make() -> Batch:
        batch = data.sample(batch_size, rng, device)
        batch.agent_inputs  # noqa: B018 - built here, off the learner's thread
        return batch

    with ThreadPoolExecutor(1, thread_name_prefix="o2omarl-batches") as pool:
        nxt = pool.submit(make) if count > 0 else None
        for i in range(count):
            batch = nxt.result()
            if i + 1 < count:
                nxt = pool.submit(make)
            yield batch
