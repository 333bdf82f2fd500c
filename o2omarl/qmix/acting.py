"""Batched action selection over N envs with per-env hidden states, exploration rules, and
greedy evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from o2omarl.envs.base import EnvInfo, Obs, VecEnv
from o2omarl.episodes import Episode, Rollout, uniform_available
from o2omarl.protocol import stream
from o2omarl.qmix.buffer import ReplayBuffer
from o2omarl.qmix.learner import Learner, masked_q
from o2omarl.qmix.networks import RNNAgent, build_inputs

MIXER_PREFIX = "mixer."  # acting weights' keys for the mixer, beside the agent's own


class ExplorationRule(Protocol):
    """(greedy actions (N, n), avail (N, n, A), epsilon, rng) -> actions, exploring mask."""

    def __call__(self, greedy: np.ndarray, avail: np.ndarray, epsilon: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


def epsilon_greedy(greedy, avail, epsilon, rng):
    """Every agent independently explores with probability epsilon (~eps*n agents at once)."""
    explore = rng.random(greedy.shape) < epsilon
    return np.where(explore, uniform_available(avail, rng), greedy), explore


@dataclass
class Schedule:
    """`start` at step 0 -> `end` at `steps` and after, the one schedule type (epsilon, OVM's
    lambda): linear; exponential (down by e^-5, 0.7% of the gap, by `steps`, then exactly
    `end`); or constant (`start` until `steps`, then `end`)."""

    start: float
    end: float
    steps: int
    kind: str = "linear"

    KINDS: ClassVar[tuple] = ("linear", "exponential", "constant")

    def __post_init__(self):
        if self.kind not in self.KINDS:  # configs refuse it first, naming the setting
            raise ValueError(f"unknown schedule {self.kind!r}; accepted: {', '.join(self.KINDS)}")

    def __call__(self, step: int) -> float:
        if step >= self.steps:
            return self.end
        frac = max(step, 0) / self.steps
        if self.kind == "linear":
            return self.start + frac * (self.end - self.start)
        if self.kind == "exponential":
            return self.end + (self.start - self.end) * math.exp(-5.0 * frac)
        return self.start


class Actor:
    """A `Policy` (obs, first -> actions) backed by the shared GRU agent."""

    def __init__(self, agent: RNNAgent, num_envs: int, n_agents: int, n_actions: int,
                 explore: ExplorationRule | None = None, seed: int = 0, device="cpu"):
        self.agent, self.explore = agent, explore
        self.n_actions, self.device = n_actions, torch.device(device)
        self.h = torch.zeros(num_envs * n_agents, agent.hidden, device=self.device)
        self.prev = torch.full((num_envs, n_agents), -1, dtype=torch.long, device=self.device)
        self.rng = np.random.default_rng(stream(seed, "actor"))
        self.epsilon = 0.0
        self.explored = np.zeros((num_envs, n_agents), bool)  # last step's exploring agents

    def with_epsilon(self, epsilon: float) -> "Actor":
        """Epsilon-greedy from here on (used for dataset rollouts of a trained policy)."""
        self.explore, self.epsilon = self.explore or epsilon_greedy, epsilon
        return self

    def state_dict(self) -> dict:
        """Hidden states, last actions and the exploration RNG: what exact resume needs."""
        return {"h": self.h.cpu().clone(), "prev": self.prev.cpu().clone(),
                "rng": self.rng.bit_generator.state, "epsilon": self.epsilon,
                "explored": self.explored.copy()}

    def load_state_dict(self, sd: dict) -> None:
        self.h, self.prev = sd["h"].to(self.device), sd["prev"].to(self.device)
        self.rng.bit_generator.state = sd["rng"]
        self.epsilon, self.explored = sd["epsilon"], sd["explored"].copy()

    # Whether the actor scores joint actions with its own (lagged) copy of the mixer: then the
    # learner sends the mixer's weights with the agent's (`updates.acting_weights`).
    holds_mixer: ClassVar[bool] = False

    def weights(self) -> dict:
        """The weights it acts with (a checkpoint keeps them: they lag the learner's)."""
        return {k: v.clone() for k, v in self.agent.state_dict().items()}

    def load_weights(self, weights: dict) -> None:
        self.agent.load_state_dict({k: v for k, v in weights.items()
                                    if not k.startswith(MIXER_PREFIX)})

    @torch.no_grad()
    def q_values(self, obs: Obs, first: np.ndarray) -> torch.Tensor:
        """Each agent's Q_i over its actions, unavailable ones at NEG_INF: (N, n, A); advances
        the hidden states."""
        N, n = obs.avail.shape[:2]
        if first.any():
            f = torch.as_tensor(first, device=self.device)
            self.h.view(N, n, -1)[f] = 0.0
            self.prev[f] = -1
        x = build_inputs(torch.tensor(obs.obs, device=self.device), self.prev, self.n_actions)
        q, self.h = self.agent(x.view(N * n, -1), self.h)
        avail = torch.tensor(obs.avail, device=self.device)
        return masked_q(q.view(N, n, -1), avail)

    def greedy(self, obs: Obs, first: np.ndarray) -> np.ndarray:
        return self.q_values(obs, first).argmax(-1).cpu().numpy()

    def __call__(self, obs: Obs, first: np.ndarray) -> np.ndarray:
        actions = self.greedy(obs, first)
        if self.explore is not None and self.epsilon > 0:
            actions, self.explored = self.explore(actions, obs.avail, self.epsilon, self.rng)
        else:
            self.explored = np.zeros(actions.shape, bool)
        self.prev = torch.as_tensor(actions, device=self.device)
        return actions


def greedy_episodes(agent: RNNAgent, env: VecEnv, episodes: int, seed: int,
                    device="cpu") -> list[Episode]:
    """The greedy policy's `episodes` episodes, run on the envs in parallel."""
    actor = Actor(agent, env.num_envs, env.info.n_agents, env.info.n_actions, None, seed, device)
    return Rollout(env, actor, seed).collect(episodes)


def evaluate(agent: RNNAgent, env: VecEnv, episodes: int, seed: int, device="cpu",
             values: Learner | None = None) -> dict:
    """Greedy policy for `episodes` episodes in parallel: win rate, mean return and length;
    with `values` (the learner of `agent`), also its calibration on those battles
    (`greedy_values`). Offline only: online, this process's mixer lags the learner process."""
    eps = greedy_episodes(agent, env, episodes, seed, device)
    return {
        "test_win_rate": float(np.mean([e.won for e in eps])),
        "test_return": float(np.mean([e.ret for e in eps])),
        "test_length": float(np.mean([e.length for e in eps])),
        **(greedy_values(values, eps, env.info) if values is not None else {}),
    }


def greedy_values(learner: Learner, eps: list[Episode], info: EnvInfo) -> dict:
    """Mean Q_tot of the greedy policy's own actions along its battles, and the discounted
    return that followed them. Their ratio (`protocol.greedy_calibration`) tests the values
    against their own policy, which Q_tot estimates, on any data; Q_tot of a dataset's actions
    against what the behaviour earned after them only agrees where the two policies do."""
    store = ReplayBuffer(info, len(eps))
    for ep in eps:
        store.add(ep)
    q, earned = learner.value_check(store.batch(np.arange(len(eps)), learner.device))
    return {"test_q_mean": q, "test_earned_mean": earned}
