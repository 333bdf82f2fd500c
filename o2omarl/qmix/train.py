"""The one online training loop (offline pretraining: `pretrain.py`).

Online: vectorized collection -> replay buffer -> updates (a configurable number per collected
episode; run here or in a learner process, on the schedule of `updates.py`) -> greedy
evaluation every `eval_interval` env steps (default: scaled to the budget) and at step 0, one
metrics row per evaluation. Methods differ only by the parts they pass in (`Parts`, and the
learner's target rule and loss terms); there is no second copy of this loop.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from o2omarl.envs.base import VecEnv
from o2omarl.episodes import Rollout
from o2omarl.progress import Progress
from o2omarl.protocol import EVAL_EPISODES, default_eval_interval, eval_seed, stream
from o2omarl.qmix.acting import Actor, ExplorationRule, Schedule, epsilon_greedy, evaluate
from o2omarl.qmix.buffer import ReplayBuffer
from o2omarl.qmix.learner import Learner, UpdateContext
from o2omarl.qmix.monitor import Divergence, Log, Window, check_finite, points_every, summary
from o2omarl.qmix.updates import UpdateSchedule, acting_weights, make_transport
from o2omarl.qmix.updates import learner_mode as resolve_learner_mode
from o2omarl.settings import setting


@dataclass
class OnlineConfig:
    steps: int = setting(100_000, "online env steps per run (--steps)")
    num_envs: int = setting(8, "parallel training envs")
    batch_size: int = setting(32, "episodes per update")
    buffer_episodes: int = setting(5000, "replay capacity in episodes")
    # 0.5 x batch 32 = each episode replayed ~16 times, as PyMARL2's batch 128 every 8 episodes
    # (0.25 learned 2s3z about half as fast per step)
    updates_per_episode: float = setting(0.5, "learner updates per collected episode")
    # 0: so that every run has >= 20 evaluations and >= 3 in the unlearning window
    eval_interval: int = setting(0, "env steps between greedy evaluations (the same battles "
                                    "every time); 0: min(10,000, budget / 20)")
    eval_episodes: int = setting(EVAL_EPISODES, "battles per evaluation (run in parallel)")


@dataclass
class Parts:
    """What one method's online phase changes; everything else is shared."""

    explore: ExplorationRule = epsilon_greedy
    epsilon: Schedule = field(default_factory=lambda: Schedule(1.0, 0.05, 50_000))
    offline_fraction: float = 0.0  # share of each batch drawn from the offline dataset
    # Extra schedule values to log at each evaluation: (env_step, budget) -> {name: value}.
    schedules: Callable[[int, int], dict] | None = None
    # Env steps before the first update: until then the replay fills with the policy as it
    # started, unchanged (WSRL's warm-up; 0: learning starts with the first full batch).
    learning_starts: int = 0
    # The collecting policy, made from the learner: (learner, num_envs, seed) -> an `Actor`
    # acting on its own copies of the learner's networks (None: the epsilon-greedy `Actor`
    # with `explore`; Sim2O composes joint actions instead).
    actor: Callable[[Learner, int, int], Actor] | None = None

    def make_actor(self, learner: Learner, num_envs: int, seed: int) -> Actor:
        if self.actor is not None:
            return self.actor(learner, num_envs, seed)
        info = learner.info
        return Actor(copy.deepcopy(learner.agent), num_envs, info.n_agents, info.n_actions,
                     self.explore, seed, learner.device)


class OnlineTraining:
    """The online loop as an object, so a run can checkpoint it between steps and continue
    exactly where it stopped.

    `state_dict()` holds everything but the learner (saved by the method) and the replay
    episodes, which the caller persists incrementally with `buffer.episodes(since=...)`:
    rewriting the whole buffer at every checkpoint would cost hundreds of MB each time.

    Updates follow the one schedule of `qmix/updates.py`: the actor acts with its own copy of
    the agent, which gets the learner's weights one submission late, whether the updates run
    here or in a learner process (`learner_mode`: "inline" or "process"; None: as
    O2OMARL_LEARNER and the cores available decide, `updates.learner_mode`).
    """

    def __init__(self, learner: Learner, parts: Parts, cfg: OnlineConfig, env: VecEnv,
                 eval_env: VecEnv, budget: int, seed: int, log: Log,
                 offline: ReplayBuffer | None = None, label: str = "train",
                 buffer: ReplayBuffer | None = None, learner_mode: str | None = None):
        info = env.info
        self.learner, self.parts, self.cfg = learner, parts, cfg
        self.eval_env, self.budget, self.seed, self.log, self.label = (
            eval_env, budget, seed, log, label)
        self.actor = parts.make_actor(learner, env.num_envs, seed)
        self.rollout = Rollout(env, self.actor, seed)
        self.buffer = buffer if buffer is not None else ReplayBuffer(info, cfg.buffer_episodes)
        self.offline = offline
        mode = learner_mode or resolve_learner_mode(str(learner.device))
        self.learning = UpdateSchedule(make_transport(learner, self.buffer, mode,
                                                      self.actor.holds_mixer))
        self.rng = np.random.default_rng(stream(seed, "online_batches"))
        self.n_off = round(cfg.batch_size * parts.offline_fraction) if offline is not None else 0
        self.window, self.pending, self.episodes = Window(), 0.0, 0
        self.next_eval, self.last_eval, self.row = 0, -1, {}
        self.elapsed = 0.0  # wall seconds of training so far, earlier sessions included
        self.divergence = Divergence(label)
        self.eval_interval = cfg.eval_interval or default_eval_interval(budget)
        # Training points between evaluations, for a log that takes them (TensorBoard)
        self.scalars = getattr(log, "scalars", None)
        self.points_every = points_every(self.eval_interval)

    @property
    def env_step(self) -> int:
        return self.rollout.env_steps

    @property
    def finished(self) -> bool:
        return self.last_eval >= self.budget

    def state_dict(self) -> dict:
        assert self.learning.idle, "checkpoint between steps, after run() returns or on_eval"
        return {"rollout": self.rollout.state_dict(), "rng": self.rng.bit_generator.state,
                "pending": self.pending, "episodes": self.episodes,
                "next_eval": self.next_eval, "last_eval": self.last_eval, "row": self.row,
                "elapsed": self.elapsed,
                "acting": self.actor.weights(),
                "fresh": self.learning.fresh, "window": self.window.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        self.rollout.load_state_dict(sd["rollout"])
        self.rng.bit_generator.state = sd["rng"]
        self.pending, self.episodes = sd["pending"], sd["episodes"]
        self.next_eval, self.last_eval, self.row = sd["next_eval"], sd["last_eval"], sd["row"]
        self.elapsed = sd["elapsed"]
        # Checkpoints from before the lagged schedule: the actor acted with the learner's agent.
        self.actor.load_weights(sd.get("acting") or
                                acting_weights(self.learner, self.actor.holds_mixer))
        self.learning.fresh = sd.get("fresh")
        self.window.load_state_dict(sd["window"])

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
            before = self.env_step
            self._collect_and_learn()
            # A training point at each boundary, unless an evaluation is due there (it adds one)
            if (self.env_step // self.points_every > before // self.points_every
                    and self.env_step < min(self.next_eval, self.budget)):
                self._training_point(self.env_step)
            bar.update(self.env_step, rate=self.rollout.steady_rate())
        self._sync()
        if self.finished:
            self.learning.close()
        bar.close()
        return self.row

    def close(self) -> None:
        """End a learner process now rather than when this object is collected."""
        self.learning.close()

    def _training_point(self, step: int) -> None:
        """The window's metrics since the previous point, to a log that takes them. The
        updates submitted before it are waited for first, so that each point holds the same
        updates whether or not a stop (which waits for them) came between: without it, a run
        resumed from a stop put an in-flight submission's metrics one point early."""
        if not self.scalars:
            return
        self._record(*self.learning.finish())
        point = self.window.tail()
        if point:
            self.scalars(step, {**point, **self._schedules(step)})

    def _schedules(self, step: int) -> dict:
        """The schedules at this very step (not window means): eps_t, lambda_t."""
        parts = self.parts
        return {"epsilon": parts.epsilon(step),
                **(parts.schedules(step, self.budget) if parts.schedules else {})}

    def _evaluate(self, step: int) -> None:
        cfg, learner = self.cfg, self.learner
        self._training_point(step)  # the last stretch before the window is flushed
        self.row = {"env_step": step, "episodes": self.episodes, "updates": learner.updates,
                    **evaluate(learner.agent, self.eval_env, cfg.eval_episodes,
                               eval_seed(self.seed), learner.device),
                    **self.window.flush(),
                    **self._schedules(step),
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
        if self.buffer.size < n_on or self.env_step < self.parts.learning_starts:
            self.pending = 0.0  # PyMARL: learning starts once a full batch of episodes is stored
        if self.pending < 1.0:
            return
        # The updates now due: their batches are drawn here, in order, whatever runs them.
        requests = []
        while self.pending >= 1.0:
            idx = self.buffer.draw(n_on, self.rng)
            off = self.offline.sample(self.n_off, self.rng, learner.device) if self.n_off else None
            requests.append((idx, off))
            self.pending -= 1.0
        weights = self.learning.run_due(
            requests, UpdateContext(env_step=self.env_step, budget=self.budget), self._record)
        if weights is not None:  # the previous submission's: the actor acts on them from now
            self.actor.load_weights(weights)

    def _record(self, metrics: list[dict], step: int) -> None:
        """Log finished updates' metrics into the window; a non-finite loss stops the run."""
        for m in metrics:
            check_finite(m, f"env step {step}", "the last good checkpoint is kept")
            for k, v in m.items():
                self.window.metrics[k].append(v)

    def _sync(self) -> None:
        """Nothing in flight, and the learner here up to date (evaluation, checkpoints)."""
        self._record(*self.learning.sync())
