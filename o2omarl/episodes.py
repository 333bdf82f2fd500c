"""The episode model shared by datasets and the learner, and the one way episodes are made.

Each field is declared once (`SPEC`: rows per observation or per step, dtype, row shape, stored
key); the padded training arrays (`EpisodeArrays`), the recorder, the replay buffer and the
dataset loader's shape checks are derived from it.

`Rollout` runs a policy in N parallel envs and cuts the stream of steps into whole episodes;
collection (`datasets/`) and online training (`qmix/`) both record with it, so both hold the
same thing: T actions and T+1 observations, the terminal observation included.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from o2omarl.envs.base import EnvInfo, Obs, VecEnv

# policy(obs, first: (N,) bool, True where an episode starts) -> actions (N, n_agents) int
Policy = Callable[[Obs, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Field:
    """One episode field, declared once: the buffer, the loader, the recorder and the dataset
    checks all derive their arrays and shapes from these."""

    per_observation: bool  # T+1 rows (the terminal observation included), else T
    dtype: type
    row: Callable[[EnvInfo], tuple]  # the shape of one row
    stored: str  # its key in a stored (Minari) episode; "infos/..." are Minari's infos

    def shape(self, info: EnvInfo, T: int) -> tuple:
        """The shape of this field in an episode of T steps."""
        return (T + self.per_observation,) + self.row(info)


SPEC = {
    "obs": Field(True, np.float32, lambda i: (i.n_agents, i.obs_dim), "observations"),
    "state": Field(True, np.float32, lambda i: (i.state_dim,), "infos/state"),
    "avail": Field(True, np.bool_, lambda i: (i.n_agents, i.n_actions), "infos/avail_actions"),
    "actions": Field(False, np.int64, lambda i: (i.n_agents,), "actions"),
    "reward": Field(False, np.float32, lambda i: (), "rewards"),
    "terminated": Field(False, np.bool_, lambda i: (), "terminations"),
    "truncated": Field(False, np.bool_, lambda i: (), "truncations"),
    "battle_won": Field(False, np.bool_, lambda i: (), "infos/battle_won"),
}
FIELDS = tuple(SPEC)
PER_OBSERVATION = tuple(f for f in FIELDS if SPEC[f].per_observation)
PER_STEP = tuple(f for f in FIELDS if not SPEC[f].per_observation)
MINARI_KEYS = {f: SPEC[f].stored for f in FIELDS}
# What training keeps of an episode: battle_won is true only on the last step, so the padded
# arrays hold it per episode (`ReplayBuffer.won`), not per step.
TRAINING_FIELDS = tuple(f for f in FIELDS if f != "battle_won")


@dataclass
class Episode:
    """One whole episode of T steps: the fields of SPEC, in its order."""

    obs: np.ndarray  # (T+1, n_agents, obs_dim) float32
    state: np.ndarray  # (T+1, state_dim) float32
    avail: np.ndarray  # (T+1, n_agents, n_actions) bool
    actions: np.ndarray  # (T, n_agents) int64
    reward: np.ndarray  # (T,) float32
    terminated: np.ndarray  # (T,) bool
    truncated: np.ndarray  # (T,) bool
    battle_won: np.ndarray  # (T,) bool

    @property
    def length(self) -> int:
        return len(self.reward)

    @property
    def ret(self) -> float:
        return float(self.reward.sum())

    @property
    def won(self) -> bool:
        return bool(self.battle_won[-1])


@dataclass
class EpisodeArrays:
    """E episodes padded to T = episode limit (the TRAINING_FIELDS); `filled[e, t]` marks real
    steps."""

    obs: np.ndarray  # (E, T+1, n_agents, obs_dim) float32
    state: np.ndarray  # (E, T+1, state_dim) float32
    avail: np.ndarray  # (E, T+1, n_agents, n_actions) bool
    actions: np.ndarray  # (E, T, n_agents) int64
    reward: np.ndarray  # (E, T) float32
    terminated: np.ndarray  # (E, T) bool
    truncated: np.ndarray  # (E, T) bool
    filled: np.ndarray  # (E, T) bool

    def __len__(self) -> int:
        return len(self.reward)

    @property
    def steps(self) -> int:
        return int(self.filled.sum())

    @staticmethod
    def nbytes(E: int, info: EnvInfo) -> int:
        """What `zeros(E, info)` holds once every episode is written (padded to the limit)."""
        T = info.episode_limit
        per = sum(int(np.prod(SPEC[f].shape(info, T))) * np.dtype(SPEC[f].dtype).itemsize
                  for f in TRAINING_FIELDS) + T  # + filled (bool)
        return E * per

    @classmethod
    def zeros(cls, E: int, info: EnvInfo) -> "EpisodeArrays":
        """E empty episodes; padded steps keep an available no-op so that masked maxima over
        them stay finite."""
        T = info.episode_limit
        with small_pages():
            out = cls(**{f: np.zeros((E,) + SPEC[f].shape(info, T), SPEC[f].dtype)
                         for f in TRAINING_FIELDS}, filled=np.zeros((E, T), bool))
        out.avail[..., 0] = True
        return out


@contextmanager
def small_pages():
    """Allocate without numpy's transparent-huge-page advice.

    numpy asks the kernel for huge pages for every array over 4 MB. Where THP's defrag setting
    is `madvise` (the default on many distributions) each first touch of such memory then
    tries to compact memory for a huge page, and on VMs that cannot supply one every 4 KB page
    fault pays for a failed attempt: loading 1M transitions took 20.5 s with the advice and
    13.3 s without (2s3z, side by side)."""
    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 / numpy 1
    set_advice = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if set_advice is None:  # a private numpy switch: without it, allocate as numpy does
        yield
        return
    before = set_advice(False)
    try:
        yield
    finally:
        set_advice(before)


def uniform_available(avail: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform draw among each agent's available actions (argmax of masked uniform noise)."""
    return np.argmax(rng.random(avail.shape) * avail, axis=-1)


class Rollout:
    """Steps N envs with a policy; `step()` returns the episodes that ended at that step.

    Per-env episode buffers are preallocated to the episode limit and written with one fancy
    index per field per step, so recording costs little next to the env step itself.
    """

    def __init__(self, env: VecEnv, policy: Policy, seed: int):
        info, n = env.info, env.num_envs
        self.env, self.policy, self.n = env, policy, n
        buf = {f: np.zeros((n,) + SPEC[f].shape(info, info.episode_limit), SPEC[f].dtype)
               for f in FIELDS}
        self._obs, self._state, self._avail = buf["obs"], buf["state"], buf["avail"]
        self._actions = buf["actions"]
        self._scalars = {k: buf[k] for k in PER_STEP if k != "actions"}
        self._t = np.zeros(n, np.int64)
        self._rows = np.arange(n)
        self.seed = seed
        self._start_battles()
        self.env_steps = 0
        self._clock: tuple[float, int] | None = None  # (time, env_steps) after the first step

    def _start_battles(self) -> None:
        self.current: Obs = self.env.reset(self.seed)
        self._t[:] = 0
        self._record_obs(self.current)
        self.first = np.ones(self.n, bool)

    def _record_obs(self, o: Obs) -> None:
        self._obs[self._rows, self._t] = o.obs
        self._state[self._rows, self._t] = o.state
        self._avail[self._rows, self._t] = o.avail

    def step(self, actions: np.ndarray | None = None) -> list[tuple[int, Episode]]:
        """One batched step (with the policy's actions unless given); returns the episodes that
        ended, as (env index, episode) pairs in env order."""
        if actions is None:
            actions = self.policy(self.current, self.first)
        out = self.env.step(actions)
        rows, t = self._rows, self._t
        self._actions[rows, t] = actions
        for k in self._scalars:
            self._scalars[k][rows, t] = getattr(out, k)
        self._t += 1
        self._record_obs(out.next)
        self.env_steps += self.n
        if self._clock is None:  # the first step compiled the jitted env and policy
            self._clock = (time.monotonic(), self.env_steps)
        done = np.flatnonzero(out.done)
        finished = [(int(i), self._cut(i)) for i in done]
        self._t[done] = 0
        self.current, self.first = out.cont, out.done.copy()
        if len(done):
            # Ended envs were reset by the env: their new first observation starts the buffer.
            self._record_obs(self.current)
        return finished

    def steady_rate(self) -> float:
        """Env-steps/s since the first step, i.e. excluding JIT compilation."""
        if self._clock is None:
            return 0.0
        t0, s0 = self._clock
        return (self.env_steps - s0) / max(time.monotonic() - t0, 1e-9)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: battles in progress, partial episodes, the
        policy's state (if it has `state_dict`) and the step count."""
        sd = {"t": self._t, "obs": self._obs, "state": self._state, "avail": self._avail,
              "actions": self._actions, "scalars": self._scalars, "first": self.first,
              "current": tuple(self.current), "env_steps": self.env_steps}
        if hasattr(self.env, "state_dict"):
            sd["env"] = self.env.state_dict()
        if hasattr(self.policy, "state_dict"):
            sd["policy"] = self.policy.state_dict()
        return {k: _copy(v) for k, v in sd.items()}

    def load_state_dict(self, sd: dict) -> None:
        """Restore `state_dict`; an env that cannot save its battles starts new ones (the
        partial episodes are dropped, finished ones were already handed out)."""
        self.env_steps = sd["env_steps"]
        if "policy" in sd:
            self.policy.load_state_dict(sd["policy"])
        if "env" not in sd or not hasattr(self.env, "load_state_dict"):
            self._start_battles()
            return
        self.env.load_state_dict(sd["env"])
        self._t[:], self.first = sd["t"], sd["first"].copy()
        self._obs[:], self._state[:], self._avail[:] = sd["obs"], sd["state"], sd["avail"]
        self._actions[:] = sd["actions"]
        for k, v in sd["scalars"].items():
            self._scalars[k][:] = v
        self.current = Obs(*(x.copy() for x in sd["current"]))

    def _cut(self, i: int) -> Episode:
        T = int(self._t[i])
        return Episode(
            obs=self._obs[i, : T + 1].copy(),
            state=self._state[i, : T + 1].copy(),
            avail=self._avail[i, : T + 1].copy(),
            actions=self._actions[i, :T].copy(),
            **{k: v[i, :T].copy() for k, v in self._scalars.items()},
        )

    def collect(self, episodes: int, on_episode=None, interrupt=None) -> list[Episode]:
        """Exactly `episodes` whole episodes, without favouring short ones.

        Only episodes started while fewer than `episodes` have been started are kept, so every
        kept episode ran to its natural end and the sample is not biased towards quick battles.
        `interrupt` (an `o2omarl.interrupts.Deferred`) is checked between steps.
        """
        started = min(episodes, self.n)
        wanted = np.zeros(self.n, bool)
        wanted[:started] = True
        kept: list[Episode] = []
        while wanted.any():
            if interrupt is not None:
                interrupt.check()
            for i, ep in self.step():
                if wanted[i]:
                    kept.append(ep)
                    if on_episode:
                        on_episode(ep)
                wanted[i] = started < episodes
                started += int(wanted[i])
        return kept


def _copy(v):
    """Deep copy of nested numpy containers, so a saved state is not mutated by later steps."""
    if isinstance(v, np.ndarray):
        return v.copy()
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_copy(x) for x in v)
    return v
