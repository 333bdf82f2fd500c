"""Behaviour policies for collection. To `datasets/` a policy is only a callable:

    policy(obs: Obs, first: (N,) bool) -> actions (N, n_agents) int

`first` marks envs whose episode starts at this step, so stateful policies (SMAX's heuristic, a
recurrent Q-network) reset their per-env memory there. Every policy returns available actions only.
"""

from __future__ import annotations

import numpy as np

from o2omarl.envs.base import Obs, VecEnv
from o2omarl.episodes import Policy, uniform_available
from o2omarl.errors import one_of
from o2omarl.protocol import stream

BUILTIN_BEHAVIOURS = ("random", "heuristic")


class RandomPolicy:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Obs, first: np.ndarray) -> np.ndarray:
        return uniform_available(obs.avail, self.rng)


class HeuristicPolicy:
    """SMAX's scripted micro for the allied team (`create_heuristic_policy(env, team=0)`)."""

    def __init__(self, env: VecEnv, seed: int):
        if not hasattr(env, "heuristic_step"):
            raise one_of("behaviour for this backend", "heuristic", ["random", "qmix"])
        import jax

        self.env = env
        self.key = jax.random.PRNGKey(seed)
        self.init = env.heuristic_initial_state()
        self.state = self.init
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Obs, first: np.ndarray) -> np.ndarray:
        self.key, actions, self.state = self.env.heuristic_step(
            self.key, self.state, self.init, first, obs.obs)
        actions = np.asarray(actions)
        # The script ignores the mask (dead units, a target that just left range): replace
        # what it picked outside the mask by a uniform available action.
        ok = np.take_along_axis(obs.avail, actions[..., None], -1)[..., 0]
        return np.where(ok, actions, uniform_available(obs.avail, self.rng))


class EpsilonMix:
    """Each agent independently takes a uniform available action with probability epsilon."""

    def __init__(self, policy: Policy, epsilon: float, seed: int):
        self.policy, self.epsilon = policy, epsilon
        self.rng = np.random.default_rng(stream(seed, "epsilon_mix"))

    def __call__(self, obs: Obs, first: np.ndarray) -> np.ndarray:
        actions = self.policy(obs, first)
        if self.epsilon <= 0:
            return actions
        explore = self.rng.random(actions.shape) < self.epsilon
        return np.where(explore, uniform_available(obs.avail, self.rng), actions)


def make_builtin(name: str, env: VecEnv, seed: int) -> Policy:
    if name == "random":
        return RandomPolicy(seed)
    if name == "heuristic":
        return HeuristicPolicy(env, seed)
    raise one_of("behaviour", name, BUILTIN_BEHAVIOURS)
