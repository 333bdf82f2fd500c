"""The SMAC adapter's translation, driven through SMAC's interface by real SMAX battles.

StarCraft II cannot run here, so `FakeStarCraft2Env` puts a real SMAX battle behind SMAC's method
names and conventions, and is installed as `smac.env.StarCraft2Env`: the adapter's own default
factory (and the arguments it passes) is what runs.
"""

from __future__ import annotations

import functools
import sys
import types

import numpy as np
import pytest

from o2omarl.envs.base import MAX_RETURN, EnvInfo, Obs
from o2omarl.envs.smac import SmacVecEnv, env_info, split_end
from o2omarl.envs.smax import SmaxVecEnv
from o2omarl.errors import BenchError, UsageError

MAP = "3m"
# SMAX's ally actions (the fake keeps SMAX's indices): moves north, east, south, west; stop; then
# one attack per enemy.
EAST, STOP, N_NON_ATTACK = 1, 4, 5
# Under the stop policy the heuristic enemies need more steps than this to win, so a time limit
# this short ends every battle undecided (asserted step by step, not assumed).
SHORT_LIMIT = 8


class FakeStarCraft2Env:
    """Stands in for the StarCraft II binary, which cannot run here.

    SMAC's `StarCraft2Env` interface over one real SMAX battle, faithful where the adapter depends
    on it: `step` returns `(reward, terminated, info)`; a time-limit end is `terminated=True`,
    flagged with `info["episode_limit"]` only when `continuing_episode=True` (SMAC's default is
    False); after an end the getters show the terminal view until `reset()`; stepping an ended
    episode or choosing an unavailable action is an error. Rewards are SmaxVecEnv's, which are
    already on SMAC's scale. The time limit is counted here, as SMAC counts it, so a test can
    shorten it.
    """

    # Each SmaxVecEnv compiles its own step function (~3 s), so closed fakes hand their SMAX
    # battle back here for the next fake on the same map.
    _idle: dict[str, list[SmaxVecEnv]] = {}

    def __init__(
        self,
        map_name: str = "8m",
        seed: int | None = None,
        continuing_episode: bool = False,
        episode_limit: int | None = None,
    ):
        idle = self._idle.setdefault(map_name, [])
        self._smax = idle.pop() if idle else SmaxVecEnv(map_name, 1)
        info = self._smax.info
        self.map_name = map_name
        self.n_agents, self.n_enemies = info.n_agents, info.n_enemies
        self.episode_limit = episode_limit or info.episode_limit
        # Past SMAX's own limit SmaxVecEnv would reset the battle underneath the fake.
        assert self.episode_limit <= info.episode_limit
        self.continuing_episode = continuing_episode
        self._seed = seed or 0
        self._episodes = 0
        self._steps = 0
        self._view: Obs | None = None
        self._ended = False

    def get_env_info(self) -> dict:
        info = self._smax.info
        return {
            "state_shape": info.state_dim,
            "obs_shape": info.obs_dim,
            "n_actions": info.n_actions,
            "n_agents": info.n_agents,
            "episode_limit": self.episode_limit,
        }

    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        # SMAC's reset takes no seed; each episode of a seeded game differs.
        self._view = self._smax.reset(seed=self._seed * 1000 + self._episodes)
        self._episodes += 1
        self._steps = 0
        self._ended = False
        return self.get_obs(), self.get_state()

    def step(self, actions: list[int]) -> tuple[float, bool, dict]:
        if self._view is None or self._ended:
            raise RuntimeError("SMAC needs reset() before the first step and after an episode ends")
        for agent, (action, avail) in enumerate(zip(actions, self.get_avail_actions())):
            if not avail[action]:
                raise AssertionError(f"Agent {agent} cannot perform action {action}")
        out = self._smax.step(np.asarray(actions, dtype=np.int32)[None])
        self._steps += 1
        self._view = out.next  # SmaxVecEnv already reset in out.cont; SMAC waits for reset()
        decided = bool(out.terminated[0])
        info = {"battle_won": bool(out.battle_won[0])}
        time_up = not decided and self._steps >= self.episode_limit
        if time_up and self.continuing_episode:
            info["episode_limit"] = True
        self._ended = decided or time_up
        return float(out.reward[0]), self._ended, info

    def get_obs(self) -> list[np.ndarray]:
        return list(self._view.obs[0])

    def get_state(self) -> np.ndarray:
        return self._view.state[0]

    def get_avail_actions(self) -> list[list[int]]:
        return self._view.avail[0].astype(int).tolist()  # SMAC's are lists of 0/1 ints

    def close(self) -> None:
        if self._smax is not None:
            self._idle[self.map_name].append(self._smax)
            self._smax = None


@pytest.fixture
def make_vec(monkeypatch):
    """SmacVecEnv(MAP, n) with the fake installed as `smac.env`; closed after the test."""
    made: list[SmacVecEnv] = []

    def make(num_envs: int, episode_limit: int | None = None) -> SmacVecEnv:
        env_mod = types.ModuleType("smac.env")
        env_mod.StarCraft2Env = functools.partial(FakeStarCraft2Env, episode_limit=episode_limit)
        pkg = types.ModuleType("smac")
        pkg.env = env_mod
        monkeypatch.setitem(sys.modules, "smac", pkg)
        monkeypatch.setitem(sys.modules, "smac.env", env_mod)
        made.append(SmacVecEnv(MAP, num_envs))
        return made[-1]

    yield make
    for vec in made:
        vec.close()


def assert_obs_fits(obs: Obs, info: EnvInfo, n: int) -> None:
    assert obs.obs.shape == (n, info.n_agents, info.obs_dim) and obs.obs.dtype == np.float32
    assert obs.state.shape == (n, info.state_dim) and obs.state.dtype == np.float32
    assert obs.avail.shape == (n, info.n_agents, info.n_actions) and obs.avail.dtype == bool


def attack_or_advance(avail: np.ndarray) -> np.ndarray:
    """Shoot the first enemy in range, else walk east towards them (allies start in the west)."""
    can_attack = avail[..., N_NON_ATTACK:]
    move = np.where(avail[..., EAST], EAST, STOP)  # dead agents may only stop
    return np.where(can_attack.any(-1), N_NON_ATTACK + can_attack.argmax(-1), move)


def test_reset_and_step_match_env_info(make_vec):
    vec = make_vec(2)
    info = vec.info
    assert info == env_info(MAP)  # the same facts from a throwaway env
    assert (info.backend, info.n_agents, info.n_enemies, info.n_actions) == ("smac", 3, 3, 8)

    first = vec.reset(seed=0)
    step = vec.step(np.full((2, info.n_agents), STOP))
    for obs in (first, step.next, step.cont):
        assert_obs_fits(obs, info, n=2)
    assert first.avail[..., STOP].all()  # stop is always available in SMAX
    assert step.reward.shape == (2,) and step.reward.dtype == np.float32
    for flags in (step.terminated, step.truncated, step.battle_won):
        assert flags.shape == (2,) and flags.dtype == bool


def test_time_limit_is_a_truncation_and_the_env_restarts(make_vec):
    vec = make_vec(2, episode_limit=SHORT_LIMIT)
    vec.reset(seed=0)
    stop = np.full((2, vec.info.n_agents), STOP)
    for episode in range(2):  # the second episode only runs if the adapter reset the envs
        for _ in range(SHORT_LIMIT - 1):
            assert not vec.step(stop).done.any()
        step = vec.step(stop)
        assert step.truncated.all(), episode
        assert not step.terminated.any() and not step.battle_won.any()
        # next is the last view of the old battle, cont the first of the new one.
        assert not np.array_equal(step.next.state, step.cont.state)


def test_a_won_battle_is_terminated_and_won(make_vec):
    vec = make_vec(2)
    obs = vec.reset(seed=0)
    returns = np.zeros(2)
    won_returns = []
    for _ in range(300):
        step = vec.step(attack_or_advance(obs.avail))
        returns += step.reward
        # SMAX's own time limit is never reached by this policy: every end is a decided battle.
        assert (step.terminated == step.done).all() and not step.truncated.any()
        won_returns += list(returns[step.battle_won])
        returns[step.done] = 0.0
        obs = step.cont
        if won_returns:
            break
    assert won_returns, "the attacking policy never won in 300 steps"
    # A won battle removes all enemy health and earns the win bonus: SMAC's best return, passed
    # through unscaled.
    assert won_returns[0] == pytest.approx(MAX_RETURN, rel=1e-3)


@pytest.mark.parametrize(
    ("terminated", "info", "expected"),
    [
        (False, {"battle_won": False}, (False, False, False)),
        (True, {"battle_won": True}, (True, False, True)),
        (True, {"battle_won": False}, (True, False, False)),
        (True, {"battle_won": False, "episode_limit": True}, (False, True, False)),
        (True, {}, (False, True, False)),  # SC2 failed and was restarted mid-battle
    ],
)
def test_split_end(terminated, info, expected):
    assert split_end(terminated, info) == expected


def test_missing_smac_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "smac", None)  # `import smac` fails, whatever is installed
    for build in (lambda: SmacVecEnv(MAP, 1), lambda: env_info(MAP)):
        with pytest.raises(BenchError) as err:
            build()
        message = str(err.value)
        assert "git+https://github.com/oxwhirl/smac" in message and "SC2PATH" in message
        assert "\n" not in message


def test_unknown_map_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown map"):
        SmacVecEnv("4m", 1)
