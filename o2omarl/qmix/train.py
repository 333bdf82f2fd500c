"""The one online training loop, and the offline pretraining loop.

Online: vectorized collection -> replay buffer -> updates (a configurable number per collected
episode; run here or in a learner process, on the schedule of `updates.py`) -> greedy
evaluation every `eval_interval` env steps (default: scaled to the budget) and at step 0, one
metrics row per evaluation. Methods differ only by the parts they pass in (`Parts`, and the learner's target
rule and loss terms); there is no second copy of this loop.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from o2omarl.datasets.collect import Rollout
from o2omarl.envs.base import MAX_RETURN, VecEnv
from o2omarl.errors import BenchError
from o2omarl.progress import Progress, warn
from o2omarl.qmix.acting import Actor, ExplorationRule, Schedule, epsilon_greedy, evaluate
from o2omarl.qmix.buffer import Batch, EpisodeStore
from o2omarl.qmix.learner import Learner, UpdateContext
from o2omarl.qmix.updates import Updates, make_updates

Log = Callable[[dict], None]


class Diverged(BenchError):
    pass


@dataclass
class OnlineConfig:
    num_envs: int = 8  # parallel training envs
    batch_size: int = 32  # episodes per update
    buffer_episodes: int = 5000  # replay capacity in episodes
    # learner updates per collected episode: 0.5 x batch 32 = each episode replayed ~16 times,
    # as PyMARL2's batch 128 every 8 episodes (0.25 learned 2s3z about half as fast per step)
    updates_per_episode: float = 0.5
    # env steps between greedy evaluations; 0: min(10,000, budget / 20), so that every run has
    # >= 20 evaluations and >= 3 in the unlearning window (the first 10% of the budget)
    eval_interval: int = 0
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


# Q_tot above this many times the best possible return (~20) is no estimate of any return: the
# targets are chasing themselves upward (DESIGN.md section 5). A warning, not a stop.
DIVERGED_FACTOR = 1.5


class _Divergence:
    """Says once per run, in one line, when the mean Q_tot leaves the return scale."""

    def __init__(self, label: str):
        self.label, self.said = label, False

    def check(self, row: dict, where: str) -> None:
        q = row.get("q_taken_mean")
        if self.said or q is None or q <= DIVERGED_FACTOR * MAX_RETURN:
            return
        self.said = True
        warn(f"{self.label}: Q_tot mean {q:.1f} at {where} is above the best possible return "
             f"(~{MAX_RETURN:.0f}) by a wide margin, while the data earned "
             f"{row.get('return_to_go_mean', float('nan')):.1f}: the values are diverging")


def summary(row: dict) -> str:
    """The progress line's metrics: win rate, and Q_tot against what the data earned."""
    text = f"win rate {row.get('test_win_rate', float('nan')):.2f}"
    if "q_taken_mean" in row and "return_to_go_mean" in row:
        text += f" | Q_tot {row['q_taken_mean']:.2f} vs {row['return_to_go_mean']:.2f} earned"
    return text


def eval_seed(seed: int) -> int:
    """The battles every evaluation of a run plays (offline and online alike), so the same
    weights evaluated twice on as many episodes give the same number."""
    return seed + 1_000_003


def default_eval_interval(budget: int) -> int:
    """min(10,000, budget / 20): >= 20 evaluations per run, >= 3 in its first 10%."""
    return max(1, min(10_000, budget // 20))


def _check_finite(metrics: dict, where: str, kept: str) -> None:
    if not math.isfinite(metrics["loss"]):
        raise Diverged(f"training diverged at {where}: loss is {metrics['loss']}; {kept}")


class OnlineTraining:
    """The online loop as an object, so a run can checkpoint it between steps and continue
    exactly where it stopped.

    `state_dict()` holds everything but the learner (saved by the method) and the replay
    episodes, which the caller persists incrementally with `buffer.episodes(since=...)`:
    rewriting the whole buffer at every checkpoint would cost hundreds of MB each time.

    Updates follow the schedule of `qmix/updates.py`: the actor acts with its own copy of the
    agent, which gets the learner's weights one submission late, whether the updates run here
    or in a learner process (`updates`; default: `make_updates`, O2OMARL_LEARNER).
    """

    def __init__(self, learner: Learner, parts: Parts, cfg: OnlineConfig, env: VecEnv,
                 eval_env: VecEnv, budget: int, seed: int, log: Log,
                 offline: EpisodeStore | None = None, label: str = "train",
                 buffer: EpisodeStore | None = None, updates: Updates | None = None):
        info = env.info
        self.learner, self.parts, self.cfg = learner, parts, cfg
        self.eval_env, self.budget, self.seed, self.log, self.label = (
            eval_env, budget, seed, log, label)
        self.actor = Actor(copy.deepcopy(learner.agent), env.num_envs, info.n_agents,
                           info.n_actions, parts.explore, seed, learner.device)
        self.in_flight: int | None = None  # env step of the submitted, unfinished updates
        self.fresh: dict | None = None  # weights the actor gets at the next submission
        self.rollout = Rollout(env, self.actor, seed)
        self.buffer = buffer if buffer is not None else EpisodeStore(info, cfg.buffer_episodes)
        self.offline = offline
        self.updates = updates if updates is not None else make_updates(learner, self.buffer)
        self.rng = np.random.default_rng([seed, 3])
        self.n_off = round(cfg.batch_size * parts.offline_fraction) if offline is not None else 0
        self.window, self.pending, self.episodes = _Window(), 0.0, 0
        self.next_eval, self.last_eval, self.row = 0, -1, {}
        self.elapsed = 0.0  # wall seconds of training so far, earlier sessions included
        self.divergence = _Divergence(label)
        self.eval_interval = cfg.eval_interval or default_eval_interval(budget)

    @property
    def env_step(self) -> int:
        return self.rollout.env_steps

    @property
    def finished(self) -> bool:
        return self.last_eval >= self.budget

    def state_dict(self) -> dict:
        assert self.in_flight is None, "checkpoint between steps, after run() returns or on_eval"
        w = self.window
        return {"rollout": self.rollout.state_dict(), "rng": self.rng.bit_generator.state,
                "pending": self.pending, "episodes": self.episodes,
                "next_eval": self.next_eval, "last_eval": self.last_eval, "row": self.row,
                "elapsed": self.elapsed,
                "acting": {k: v.clone() for k, v in self.actor.agent.state_dict().items()},
                "fresh": self.fresh,
                "window": {"returns": list(w.returns), "wins": list(w.wins),
                           "metrics": {k: list(v) for k, v in w.metrics.items()},
                           "explorers": list(w.explorers)}}

    def load_state_dict(self, sd: dict) -> None:
        self.rollout.load_state_dict(sd["rollout"])
        self.rng.bit_generator.state = sd["rng"]
        self.pending, self.episodes = sd["pending"], sd["episodes"]
        self.next_eval, self.last_eval, self.row = sd["next_eval"], sd["last_eval"], sd["row"]
        self.elapsed = sd["elapsed"]
        # Checkpoints from before the lagged schedule: the actor acted with the learner's agent.
        self.actor.agent.load_state_dict(sd.get("acting") or self.learner.agent.state_dict())
        self.fresh = sd.get("fresh")
        w = sd["window"]
        self.window.returns, self.window.wins = list(w["returns"]), list(w["wins"])
        self.window.metrics = defaultdict(list, {k: list(v) for k, v in w["metrics"].items()})
        self.window.explorers = list(w["explorers"])

    def run(self, on_eval: Callable[[int, dict], bool | None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict:
        """Train until the budget is spent; returns the last metrics row.

        `on_eval(step, row)` runs after each evaluation is logged (checkpoints, snapshots);
        returning True stops there. `should_stop()` is polled between steps (Ctrl-C): the loop
        then returns at once, in a state `state_dict()` can save, with `finished` False.
        """
        start = time.monotonic() - self.elapsed
        bar = Progress(self.label, self.budget, "env steps", start_at=self.env_step)
        while True:
            self.elapsed = time.monotonic() - start
            if should_stop is not None and should_stop():
                break
            step = self.env_step
            if (step >= self.next_eval or step >= self.budget) and step != self.last_eval:
                self._sync()
                self._evaluate(step)
                self.divergence.check(self.row, f"env step {step:,}")
                bar.update(step, summary(self.row), rate=self.rollout.steady_rate(), force=True)
                if on_eval and on_eval(step, self.row):
                    break
            if step >= self.budget:
                break
            self._collect_and_learn()
            bar.update(self.env_step, rate=self.rollout.steady_rate())
        self._sync()
        if self.finished:
            self.updates.close()
        bar.close()
        return self.row

    def close(self) -> None:
        """End a learner process now rather than when this object is collected."""
        self.updates.close()

    def _evaluate(self, step: int) -> None:
        cfg, parts, learner = self.cfg, self.parts, self.learner
        self.row = {"env_step": step, "episodes": self.episodes, "updates": learner.updates,
                    **evaluate(learner.agent, self.eval_env, cfg.eval_episodes,
                               eval_seed(self.seed), learner.device),
                    **self.window.flush(),
                    # schedules at this very step (not window means): eps_t, lambda_t
                    "epsilon": parts.epsilon(step),
                    **(parts.schedules(step, self.budget) if parts.schedules else {}),
                    "wall_s": self.elapsed,
                    "env_steps_per_s": self.rollout.steady_rate()}
        self.log(self.row)
        self.last_eval = step
        self.next_eval = (step // self.eval_interval + 1) * self.eval_interval

    def _collect_and_learn(self) -> None:
        cfg, learner, window = self.cfg, self.learner, self.window
        self.actor.epsilon = self.parts.epsilon(self.env_step)
        for _, ep in self.rollout.step():
            self.buffer.add(ep)
            self.episodes += 1
            window.returns.append(ep.ret)
            window.wins.append(ep.won)
            self.pending += cfg.updates_per_episode
        window.explorers.append(float(self.actor.explored.sum(-1).mean()))
        n_on = cfg.batch_size - self.n_off
        if self.buffer.size < n_on:
            self.pending = 0.0  # PyMARL: learning starts once a full batch of episodes is stored
        if self.pending < 1.0:
            return
        # A submission: the actor first gets the previous one's weights, then the updates now
        # due start (here, or in the learner process while collection goes on).
        self._finish()
        if self.fresh is not None:
            self.actor.agent.load_state_dict(self.fresh)
            self.fresh = None
        requests = []
        while self.pending >= 1.0:
            idx = self.buffer.draw(n_on, self.rng)
            off = self.offline.sample(self.n_off, self.rng, learner.device) if self.n_off else None
            requests.append((idx, off))
            self.pending -= 1.0
        self.updates.submit(requests, UpdateContext(env_step=self.env_step, budget=self.budget))
        self.in_flight = self.env_step

    def _finish(self) -> None:
        """Wait for the submitted updates; log their metrics and keep their weights."""
        if self.in_flight is None:
            return
        results, self.fresh = self.updates.wait()
        for metrics in results:
            _check_finite(metrics, f"env step {self.in_flight}",
                          "the last good checkpoint is kept")
            for k, v in metrics.items():
                self.window.metrics[k].append(v)
        self.in_flight = None

    def _sync(self) -> None:
        """Nothing in flight, and the learner here up to date (evaluation, checkpoints)."""
        self._finish()
        self.updates.sync()


@dataclass
class PretrainConfig:
    steps: int = 5000  # offline updates
    batch_size: int = 32  # episodes per update
    eval_interval: int = 1000  # updates between evaluations in the env (0: only at the end)
    eval_episodes: int = 32


def pretrain(
    learner: Learner,
    data: EpisodeStore,
    cfg: PretrainConfig,
    seed: int,
    log: Log,
    eval_env: VecEnv | None = None,
) -> dict:
    """Offline training on dataset episodes (the learner carries the conservative loss term)."""
    rng = np.random.default_rng([seed, 4])
    window, row = _Window(), {}
    bar = Progress("pretrain", cfg.steps, "updates")
    divergence = _Divergence("pretrain")
    start = time.monotonic()
    for i, batch in enumerate(_prefetched(data, cfg.batch_size, rng, learner.device,
                                          cfg.steps), start=1):
        metrics = learner.update(batch)
        _check_finite(metrics, f"offline update {i}", "no pretrained weights were cached")
        for k, v in metrics.items():
            window.metrics[k].append(v)
        at_eval = i == cfg.steps or (cfg.eval_interval and i % cfg.eval_interval == 0)
        if at_eval:
            row = {"update": i, **window.flush(),
                   "updates_per_s": i / (time.monotonic() - start)}
            if eval_env is not None:
                row.update(evaluate(learner.agent, eval_env, cfg.eval_episodes, eval_seed(seed),
                                    learner.device))
            log(row)
            divergence.check(row, f"offline update {i:,}")
            bar.update(i, summary(row), force=True)
        else:
            bar.update(i)
    bar.close()
    return row


def _prefetched(data: EpisodeStore, batch_size: int, rng: np.random.Generator, device,
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
