"""One battle as a gymnasium env with the datasets' joint spaces: what Minari's
`dataset.recover_environment()` builds from the `env_spec` every dataset records.

Observations (n_agents, obs_dim) float32 and actions MultiDiscrete([n_actions] * n_agents), as in
the dataset; `info` carries `state`, `avail_actions` (bool) and, after a step, `battle_won`, the
same keys as the dataset's infos. Agents must pick available actions (`info["avail_actions"]`).
The suite itself runs the batched `o2omarl.envs.make_env(map, N)`; this wrapper is for users of
stock Minari who want to evaluate a policy on the env a dataset came from.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from o2omarl.envs.base import EnvInfo, Obs

ENTRY_POINT = "o2omarl.datasets.gym_env:JointEnv"


def env_spec(info: EnvInfo) -> gym.envs.registration.EnvSpec:
    """The spec Minari stores (as JSON) and `gym.make` turns back into a `JointEnv`."""
    return gym.envs.registration.EnvSpec(
        id=f"o2omarl/{info.backend}-{info.map_name}-v0", entry_point=ENTRY_POINT,
        kwargs={"map_name": info.map_name, "backend": info.backend})


class JointEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, map_name: str, backend: str = "smax"):
        from o2omarl.envs import make_env

        self._env = make_env(map_name, 1, backend)
        info = self._env.info
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (info.n_agents, info.obs_dim),
                                                np.float32)
        self.action_space = gym.spaces.MultiDiscrete([info.n_actions] * info.n_agents)

    @staticmethod
    def _first(o: Obs) -> tuple[np.ndarray, dict]:
        return o.obs[0], {"state": o.state[0], "avail_actions": o.avail[0].astype(bool)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        # The batched env is seeded per reset; draw that seed from gymnasium's generator.
        return self._first(self._env.reset(int(self.np_random.integers(2**31))))

    def step(self, action):
        out = self._env.step(np.asarray(action, dtype=np.int64)[None])
        obs, info = self._first(out.next)  # the true successor, the terminal one included
        info["battle_won"] = bool(out.battle_won[0])
        return obs, float(out.reward[0]), bool(out.terminated[0]), bool(out.truncated[0]), info
