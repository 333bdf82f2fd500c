"""SMAC backend (optional): oxwhirl/smac's `StarCraft2Env` on the real StarCraft II binary.

SMAC envs are single, stateful processes, so N of them are stepped one after another. The adapter's
job is translation (DESIGN.md section 3):

- SMAC's `step(actions) -> (reward, terminated, info)` folds the time limit into `terminated`; the
  limit is split back out as `truncated` (a truncation must bootstrap).
- SMAC only flags the time limit (`info["episode_limit"]`) when built with
  `continuing_episode=True`, so the default factory builds it that way.
- Rewards pass through unchanged: SMAC's defaults (reward_scale=True, reward_scale_rate=20) already
  put the best episode return at ~20 = `MAX_RETURN`. A custom factory that changes them breaks the
  comparability of returns.
- Action indices are SMAC's own (0 no-op, 1 stop, 2-5 move, 6+ attack), not SMAX's; the two
  backends' datasets live in separate namespaces and are never mixed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from o2omarl.envs.base import EnvInfo, Obs, Step
from o2omarl.errors import BenchError, one_of

BACKEND = "smac"

# The standard SMAC maps (smac/env/starcraft2/maps/smac_maps.py); static, so listing them needs no
# StarCraft II.
MAP_NAMES = (
    "3m", "8m", "25m", "5m_vs_6m", "8m_vs_9m", "10m_vs_11m", "27m_vs_30m",
    "MMM", "MMM2", "2s3z", "3s5z", "3s5z_vs_3s6z", "3s_vs_3z", "3s_vs_4z", "3s_vs_5z",
    "1c3s5z", "2m_vs_1z", "corridor", "6h_vs_8z", "2s_vs_1sc", "so_many_baneling",
    "bane_vs_bane", "2c_vs_64zg",
)  # fmt: skip

# SMAC's actions before the per-enemy attacks: no-op, stop, and 4 moves.
SMAC_NON_ATTACK_ACTIONS = 6

INSTALL_HINT = (
    "the smac backend needs oxwhirl/smac and StarCraft II: "
    'pip install "smac @ git+https://github.com/oxwhirl/smac.git" and the StarCraft II binary at '
    "SC2PATH (the PyPI package named smac is SMAC3, an unrelated optimiser; pysc2 does not import "
    "on Python 3.11)"
)

# (map_name, seed) -> an object with StarCraft2Env's methods.
EnvFactory = Callable[[str, int], Any]


def map_names() -> list[str]:
    return list(MAP_NAMES)


def default_env_factory(map_name: str, seed: int) -> Any:
    """A real `smac.env.StarCraft2Env`, imported lazily so SMAX users never need pysc2."""
    try:
        from smac.env import StarCraft2Env
    except Exception as e:  # noqa: BLE001 - pysc2 on 3.11 fails at import with non-ImportErrors
        cause = (str(e).splitlines() or [""])[0]
        raise BenchError(f"{INSTALL_HINT} [import failed: {type(e).__name__}: {cause}]") from e
    # continuing_episode=True is what makes SMAC mark a time-limit end with info["episode_limit"];
    # with its default (False) a timeout looks exactly like a decided battle.
    return StarCraft2Env(map_name=map_name, seed=seed, continuing_episode=True)


def split_end(terminated: bool, info: dict) -> tuple[bool, bool, bool]:
    """SMAC's `(terminated, info)` -> the contract's `(terminated, truncated, battle_won)`.

    SMAC sets `terminated` for two undecided ends as well as for a decided battle: the time limit
    (`info["episode_limit"]`) and a restart after the SC2 process failed (`0, True, {}`, empty
    info). Both are truncations: the battle was not decided, so targets bootstrap through them.
    """
    ended = bool(terminated)
    truncated = ended and (bool(info.get("episode_limit", False)) or not info)
    decided = ended and not truncated
    return decided, truncated, decided and bool(info.get("battle_won", False))


def _check_map(map_name: str) -> None:
    if map_name not in MAP_NAMES:
        raise one_of("map", map_name, MAP_NAMES)


def _info_from(env: Any, map_name: str) -> EnvInfo:
    """EnvInfo from SMAC's get_env_info(); computed from the map's parameters, SC2 not started."""
    info = env.get_env_info()
    n_enemies = getattr(env, "n_enemies", info["n_actions"] - SMAC_NON_ATTACK_ACTIONS)
    return EnvInfo(
        backend=BACKEND,
        map_name=map_name,
        n_agents=int(info["n_agents"]),
        n_enemies=int(n_enemies),
        obs_dim=int(info["obs_shape"]),
        state_dim=int(info["state_shape"]),
        n_actions=int(info["n_actions"]),
        episode_limit=int(info["episode_limit"]),
    )


def env_info(map_name: str, env_factory: EnvFactory | None = None) -> EnvInfo:
    _check_map(map_name)
    env = (env_factory or default_env_factory)(map_name, 0)
    try:
        return _info_from(env, map_name)
    finally:
        env.close()


def _observe(env: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One env's current view in the contract's dtypes (SMAC gives lists of arrays and 0/1 ints)."""
    return (
        np.asarray(env.get_obs(), dtype=np.float32),
        np.asarray(env.get_state(), dtype=np.float32),
        np.asarray(env.get_avail_actions()).astype(bool),
    )


def _stack(views: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Obs:
    return Obs(*(np.stack(part) for part in zip(*views)))


class SmacVecEnv:
    """N SMAC envs on one map behind the batched contract of `base.VecEnv`.

    SMAC's `reset()` takes no seed: SC2 is seeded when an env is built. So env i is built with
    `seed + i`, and `reset(seed)` rebuilds the envs only when the seed changes (relaunching SC2 is
    slow); a repeated reset with the same seed starts the next episode of the same seeded games.
    """

    def __init__(self, map_name: str, num_envs: int, env_factory: EnvFactory | None = None):
        _check_map(map_name)
        self.map_name = map_name
        self.num_envs = num_envs
        self._factory = env_factory or default_env_factory
        self._envs: list[Any] = []
        self._seed: int | None = None
        # Built now, not at the first reset, so a missing SMAC fails at construction; SMAC starts
        # SC2 only at reset(), so this is cheap.
        self._build(seed=0)
        self.info = _info_from(self._envs[0], map_name)

    def _build(self, seed: int) -> None:
        self.close()
        self._envs = [self._factory(self.map_name, seed + i) for i in range(self.num_envs)]
        self._seed = seed

    def reset(self, seed: int) -> Obs:
        if seed != self._seed:
            self._build(seed)
        views = []
        for env in self._envs:
            env.reset()
            views.append(_observe(env))
        return _stack(views)

    def step(self, actions: np.ndarray) -> Step:
        actions = np.asarray(actions)
        reward = np.zeros(self.num_envs, dtype=np.float32)
        terminated, truncated, won = (np.zeros(self.num_envs, dtype=bool) for _ in range(3))
        nxt, cont = [], []
        for i, env in enumerate(self._envs):
            r, term, info = env.step([int(a) for a in actions[i]])
            reward[i] = r  # already SMAC-scaled (see module docstring)
            terminated[i], truncated[i], won[i] = split_end(term, info)
            # Read before reset: SMAC keeps showing the terminal observation until reset().
            nxt.append(_observe(env))
            if term:
                env.reset()
                cont.append(_observe(env))
            else:
                cont.append(nxt[-1])
        return Step(reward, terminated, truncated, won, next=_stack(nxt), cont=_stack(cont))

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []
