"""The one online training loop, and the offline pretraining loop.

Online: vectorized collection -> replay buffer -> updates (a configurable number per collected
episode) -> greedy evaluation every `eval_interval` env steps and at step 0, one metrics row per
evaluation. Methods differ only by the parts they pass in (`Parts`, and the learner's target
rule and loss terms); there is no second copy of this loop.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from o2omarl.datasets.collect import Rollout
from o2omarl.envs.base import VecEnv
from o2omarl.errors import BenchError
from o2omarl.progress import Progress
from o2omarl.qmix.acting import Actor, ExplorationRule, Schedule, epsilon_greedy, evaluate
from o2omarl.qmix.buffer import Batch, EpisodeStore
from o2omarl.qmix.learner import Learner, UpdateContext

Log = Callable[[dict], None]


class Diverged(BenchError):
    pass


@dataclass
class OnlineConfig:
    num_envs: int = 8  # parallel training envs
    batch_size: int = 32  # episodes per update
    buffer_episodes: int = 5000  # replay capacity in episodes
    updates_per_episode: float = 0.25  # learner updates per collected episode
    eval_interval: int = 10_000  # env steps between greedy evaluations
    eval_episodes: int = 32  # episodes per evaluation (run in parallel)


@dataclass
class Parts:
    """What one method's online phase changes; everything else is shared."""

    explore: ExplorationRule = epsilon_greedy
    epsilon: Schedule = field(default_factory=lambda: Schedule(1.0, 0.05, 50_000))
    offline_fraction: float = 0.0  # share of each batch drawn from the offline dataset
    # Extra schedule values to log at each evaluation: (env_step, budget) -> {name: value}.
    schedules: Callable[[int, int], dict] | None = None


class _Window:
    """Averages of training episodes and update metrics between two evaluations."""

    def __init__(self):
        self.returns, self.wins, self.metrics = [], [], defaultdict(list)
        self.explorers: list[float] = []

    def flush(self) -> dict:
        row = {k: float(np.mean(v)) for k, v in self.metrics.items()}
        if self.returns:
            row.update(train_return=float(np.mean(self.returns)),
                       train_win_rate=float(np.mean(self.wins)), train_episodes=len(self.wins))
        if self.explorers:
            row["exploring_agents"] = float(np.mean(self.explorers))
        self.__init__()
        return row


def _check_finite(metrics: dict, step: int) -> None:
    if not math.isfinite(metrics["loss"]):
        raise Diverged(f"training diverged at env step {step}: loss is {metrics['loss']}; "
                       "the last good checkpoint is kept")


def train_online(
    learner: Learner,
    parts: Parts,
    cfg: OnlineConfig,
    env: VecEnv,
    eval_env: VecEnv,
    budget: int,
    seed: int,
    log: Log,
    offline: EpisodeStore | None = None,
    label: str = "train",
    on_eval: Callable[[int, dict], bool | None] | None = None,
    buffer: EpisodeStore | None = None,
) -> dict:
    """Fine-tune (or train from scratch) for `budget` env steps; returns the last metrics row.

    `on_eval(step, row)` runs after each evaluation (checkpoints, snapshots); returning True
    stops training there. Pass `buffer` to keep a handle on the replay episodes.
    """
    info = env.info
    actor = Actor(learner.agent, env.num_envs, info.n_agents, info.n_actions, parts.explore,
                  seed, learner.device)
    rollout = Rollout(env, actor, seed)
    buffer = buffer if buffer is not None else EpisodeStore(info, cfg.buffer_episodes)
    rng = np.random.default_rng([seed, 3])
    n_off = round(cfg.batch_size * parts.offline_fraction) if offline is not None else 0
    n_on = cfg.batch_size - n_off
    window, pending, episodes = _Window(), 0.0, 0
    next_eval, row = 0, {}
    start = time.monotonic()
    bar = Progress(label, budget, "env steps")
    while True:
        step = rollout.env_steps
        if step >= next_eval or step >= budget:
            row = {"env_step": step, "episodes": episodes, "updates": learner.updates,
                   **evaluate(learner.agent, eval_env, cfg.eval_episodes, seed + 1_000_003,
                              learner.device),
                   **window.flush(),
                   # schedules at this very step (not window means): eps_t, lambda_t
                   "epsilon": parts.epsilon(step),
                   **(parts.schedules(step, budget) if parts.schedules else {}),
                   "wall_s": time.monotonic() - start,
                   "env_steps_per_s": rollout.steady_rate()}
            log(row)
            bar.update(step, f"win rate {row['test_win_rate']:.2f}",
                       rate=rollout.steady_rate(), force=True)
            next_eval = (step // cfg.eval_interval + 1) * cfg.eval_interval
            if on_eval and on_eval(step, row):
                break
        if step >= budget:
            break
        actor.epsilon = parts.epsilon(step)
        for ep in rollout.step():
            buffer.add(ep)
            episodes += 1
            window.returns.append(ep.ret)
            window.wins.append(ep.won)
            pending += cfg.updates_per_episode
        window.explorers.append(actor.explored.sum(-1).mean())
        if buffer.size < n_on:
            pending = 0.0  # PyMARL: learning starts once a full batch of episodes is stored
        ctx = UpdateContext(env_step=rollout.env_steps, budget=budget)
        while pending >= 1.0:
            batch = buffer.sample(n_on, rng, learner.device)
            if n_off:
                batch = Batch.cat(offline.sample(n_off, rng, learner.device), batch)
            metrics = learner.update(batch, ctx)
            _check_finite(metrics, rollout.env_steps)
            for k, v in metrics.items():
                window.metrics[k].append(v)
            pending -= 1.0
        bar.update(rollout.env_steps, rate=rollout.steady_rate())
    bar.close()
    return row


@dataclass
class PretrainConfig:
    steps: int = 5000  # offline updates
    batch_size: int = 32  # episodes per update
    cql_alpha: float = 5.0  # weight of the conservative term
    eval_interval: int = 1000  # updates between evaluations in the env (0: only at the end)
    eval_episodes: int = 32


def pretrain(
    learner: Learner,
    data: EpisodeStore,
    cfg: PretrainConfig,
    seed: int,
    log: Log,
    eval_env: VecEnv | None = None,
    on_eval: Callable[[int], None] | None = None,
) -> dict:
    """Offline training on dataset episodes (the learner carries the conservative loss term)."""
    rng = np.random.default_rng([seed, 4])
    window, row = _Window(), {}
    bar = Progress("pretrain", cfg.steps, "updates")
    start = time.monotonic()
    for i in range(1, cfg.steps + 1):
        metrics = learner.update(data.sample(cfg.batch_size, rng, learner.device))
        _check_finite(metrics, 0)
        for k, v in metrics.items():
            window.metrics[k].append(v)
        at_eval = i == cfg.steps or (cfg.eval_interval and i % cfg.eval_interval == 0)
        if at_eval:
            row = {"update": i, **window.flush(),
                   "updates_per_s": i / (time.monotonic() - start)}
            if eval_env is not None:
                row.update(evaluate(learner.agent, eval_env, cfg.eval_episodes, seed + 7,
                                    learner.device))
            log(row)
            if on_eval:
                on_eval(i)
            bar.update(i, f"win rate {row.get('test_win_rate', float('nan')):.2f}", force=True)
        else:
            bar.update(i)
    bar.close()
    return row
