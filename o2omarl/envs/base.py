"""The one multi-agent environment contract every backend implements (DESIGN.md section 3).

Everything is batched: the leading axis of every array is the N parallel environments. Arrays are
numpy, so learners and dataset writers never see which backend produced them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Protocol

import numpy as np

# SMAC's reward_scale_rate: the best possible episode return is ~20 on every map, so returns are
# comparable across maps and with published SMAC datasets.
MAX_RETURN = 20.0


@dataclass(frozen=True)
class EnvInfo:
    """Static facts about one map of one backend; what a dataset or a network must agree with."""

    backend: str
    map_name: str
    n_agents: int
    n_enemies: int
    obs_dim: int
    state_dim: int
    n_actions: int
    episode_limit: int
    # Version of the observation/state encoding; data or weights of another format do not fit.
    # SMAX 2: world-state positions divided by the map size (SMAC-like, in [0, 1]).
    state_format: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    def shapes(self) -> dict:
        """The shape-defining fields, compared when a dataset or checkpoint meets an env."""
        return {k: v for k, v in asdict(self).items() if k not in ("backend", "map_name")}


class Obs(NamedTuple):
    """What the agents see at one step, for N envs."""

    obs: np.ndarray  # (N, n_agents, obs_dim) float32
    state: np.ndarray  # (N, state_dim) float32
    avail: np.ndarray  # (N, n_agents, n_actions) bool


class Step(NamedTuple):
    """The outcome of one batched step.

    `next` is the true successor observation (for an env whose episode just ended it is the
    terminal observation, which datasets must record). `cont` is what to act on next: equal to
    `next`, except that envs whose episode ended have already been reset.
    """

    reward: np.ndarray  # (N,) float32 team reward, SMAC-scaled
    terminated: np.ndarray  # (N,) bool: battle decided
    truncated: np.ndarray  # (N,) bool: time limit reached, battle undecided (bootstraps)
    battle_won: np.ndarray  # (N,) bool
    next: Obs
    cont: Obs

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class VecEnv(Protocol):
    """N parallel copies of one map. Episodes that end are reset automatically (see `Step`)."""

    info: EnvInfo
    num_envs: int

    def reset(self, seed: int) -> Obs: ...

    def step(self, actions: np.ndarray) -> Step: ...

    # Optional, for exact resume of training: backends without them (SMAC, whose battles live
    # in the StarCraft II process) restart their battles when a run resumes.
    # def state_dict(self) -> dict: ...
    # def load_state_dict(self, sd: dict) -> None: ...
