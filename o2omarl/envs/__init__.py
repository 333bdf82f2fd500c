"""Environment backends behind one batched contract (see `base.py`).

`smax` (default) runs everywhere; `smac` needs the StarCraft II binary and oxwhirl/smac.
"""

from __future__ import annotations

from o2omarl.envs.base import MAX_RETURN, EnvInfo, Obs, Step, VecEnv
from o2omarl.errors import one_of

BACKENDS = ("smax", "smac")
DEFAULT_BACKEND = "smax"


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise one_of("backend", backend, BACKENDS)


def list_maps(backend: str = DEFAULT_BACKEND) -> list[str]:
    _check_backend(backend)
    if backend == "smax":
        from o2omarl.envs import smax

        return smax.map_names()
    from o2omarl.envs import smac

    return smac.map_names()


def map_table(backend: str = DEFAULT_BACKEND) -> list[dict]:
    """One row per map of `backend` (`bench maps`): agents, enemies, dims, actions, limit."""
    return [{"map": name, "agents": i.n_agents, "enemies": i.n_enemies, "obs dim": i.obs_dim,
             "state dim": i.state_dim, "actions": i.n_actions, "episode limit": i.episode_limit}
            for name in list_maps(backend) for i in [env_info(name, backend)]]


def env_info(map_name: str, backend: str = DEFAULT_BACKEND) -> EnvInfo:
    """Static facts about a map (agents, dims, actions, limit) without starting a battle."""
    _check_backend(backend)
    if backend == "smax":
        from o2omarl.envs import smax

        return smax.env_info(map_name)
    from o2omarl.envs import smac

    return smac.env_info(map_name)


def make_env(map_name: str, num_envs: int, backend: str = DEFAULT_BACKEND) -> VecEnv:
    """N parallel environments on one map, behind the contract of `base.VecEnv`."""
    _check_backend(backend)
    if backend == "smax":
        from o2omarl.envs.smax import SmaxVecEnv

        return SmaxVecEnv(map_name, num_envs)
    from o2omarl.envs.smac import SmacVecEnv

    return SmacVecEnv(map_name, num_envs)


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "MAX_RETURN",
    "EnvInfo",
    "Obs",
    "Step",
    "VecEnv",
    "env_info",
    "map_table",
    "list_maps",
    "make_env",
]
