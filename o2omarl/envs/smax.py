"""SMAX backend: JaxMARL's JAX re-implementation of SMAC, batched with vmap + jit.

Episodes are recorded with `step_env` (the plain `step` auto-resets and overwrites the terminal
observation), the time limit is split out of SMAX's `is_terminal` (a truncation must bootstrap),
and ended envs are reset inside the same jitted call so a batched step is one device round trip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from functools import lru_cache

import numpy as np

from o2omarl.envs.base import MAX_RETURN, EnvInfo, Obs, Step
from o2omarl.envs.smax_maps import MAPS
from o2omarl.errors import one_of

BACKEND = "smax"
# SMAX's best return is 2.0: enemy health removed (sums to 1) plus the win bonus (1).
SMAX_MAX_RETURN = 2.0
REWARD_SCALE = MAX_RETURN / SMAX_MAX_RETURN
# 3: every world-state feature in [0, 1] (`_world_state`). 2 left SMAX's raw weapon cooldowns
# in (they count down without a floor while a unit holds fire: -50 under random play on 2s3z),
# which blew up QMIX's hypernetworks on 2s3z; 1 was SMAX's raw state (map units, type ids).
STATE_FORMAT = 3


@contextlib.contextmanager
def _quiet_stdout():
    """Silence file descriptor 1: one of jaxmarl's imports resets sys.stdout, so
    contextlib.redirect_stdout alone does not catch its import-time prints. The same import
    resets sys.stderr to the process's own, which would silently undo a caller's redirect
    (a log capture, pytest's capsys): it is put back."""
    sys.stdout.flush()
    stderr = sys.stderr
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        with contextlib.redirect_stdout(open(os.devnull, "w")):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr = stderr
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _without_jaxmarls_other_envs():
    """Import `jaxmarl.environments.smax` without running `jaxmarl/__init__.py`: that imports
    every JaxMARL environment (STORM, coin game, Overcooked, JaxNav...), some of which run JAX
    code at import, ~3.6 s of the ~4.5 s the import takes, in every `bench` process. Empty
    packages stand in for the two parents while the submodules load, then go, so a later
    `import jaxmarl` imports the real package and reuses the SMAX modules loaded here (the
    same classes; reach them by `from jaxmarl.environments.smax import ...`, as the real
    package then lacks the `.smax` attribute)."""
    if "jaxmarl" in sys.modules:  # already imported for real: nothing to save
        yield
        return
    spec = importlib.util.find_spec("jaxmarl")
    root = spec.submodule_search_locations[0] if spec else None
    stubs = {"jaxmarl": root, "jaxmarl.environments": root and os.path.join(root, "environments")}
    for name, path in stubs.items():
        if path:
            sys.modules[name] = module = types.ModuleType(name)
            module.__path__ = [path]
    try:
        yield
    finally:
        for name in stubs:
            sys.modules.pop(name, None)


@lru_cache(maxsize=1)
def _jaxmarl():
    """Import SMAX once, lazily. A full `import jaxmarl` prints two lines to stdout that must
    not reach the CLI: guarded here too, in case the package is imported for real."""
    with _quiet_stdout(), _without_jaxmarls_other_envs():
        import jax

        # The environment runs on JAX's CPU backend even where jax sees a GPU: the GPU is the
        # learner's (`--device cuda`), and SMAX's small per-step kernels gain nothing from it.
        # JAX_PLATFORMS, when set, decides instead.
        if "JAX_PLATFORMS" not in os.environ:
            jax.config.update("jax_platforms", "cpu")
        # A persistent XLA cache: every `bench` command would otherwise recompile the env's
        # step function (~3 s per map and batch size). JAX_COMPILATION_CACHE_DIR overrides.
        jax.config.update("jax_compilation_cache_dir", os.environ.get(
            "JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/o2omarl/jax")))
        from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
        from jaxmarl.environments.smax.heuristic_enemy import (
            create_heuristic_policy,
            get_heuristic_policy_initial_state,
        )
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO
    return {
        "jax": jax,
        "HeuristicEnemySMAX": HeuristicEnemySMAX,
        "map_name_to_scenario": map_name_to_scenario,
        "create_heuristic_policy": create_heuristic_policy,
        "heuristic_initial_state": get_heuristic_policy_initial_state,
        "scenarios": MAP_NAME_TO_SCENARIO,
    }


def map_names() -> list[str]:
    return list(MAPS)


@lru_cache(maxsize=None)
def _make_smax(map_name: str):
    if map_name not in MAPS:
        raise one_of("map", map_name, map_names())
    jm = _jaxmarl()
    return jm["HeuristicEnemySMAX"](scenario=jm["map_name_to_scenario"](map_name))


def env_info(map_name: str) -> EnvInfo:
    """From the map table (no simulator import); `measured_env_info` reads SMAX itself."""
    if map_name not in MAPS:
        raise one_of("map", map_name, map_names())
    n_agents, n_enemies, obs_dim, state_dim, n_actions, limit = MAPS[map_name]
    return EnvInfo(BACKEND, map_name, n_agents, n_enemies, obs_dim, state_dim, n_actions, limit,
                   state_format=STATE_FORMAT)


def measured_env_info(map_name: str) -> EnvInfo:
    """`env_info` as SMAX reports it (tests keep the map table equal to this)."""
    env = _make_smax(map_name)
    return EnvInfo(
        backend=BACKEND,
        map_name=map_name,
        n_agents=env.num_agents,
        n_enemies=env.num_enemies,
        obs_dim=int(env.observation_spaces[env.agents[0]].shape[0]),
        state_dim=int(env.state_size),
        n_actions=int(env.num_ally_actions),
        episode_limit=int(env.max_steps),
        state_format=STATE_FORMAT,
    )


def _world_state(env, inner):
    """The global state fed to the mixer, every feature in [0, 1] (SMAC's scale).

    SMAX's layout (per unit: health, x, y, weapon cooldown, unit-type bits; then every unit's
    team; then every unit's type), normalised the way SMAX normalises its own observations:
    health / the type's maximum, positions / the map size, the cooldown / the type's cooldown
    clipped to [0, 1], and types / the largest type. SMAX's `get_world_state` leaves positions,
    types and the cooldown raw; the cooldown keeps counting down while a unit holds fire, so under
    random play it reached -50 and made QMIX's mixer diverge (docs/results/learning.md).
    Dead units are all zeros, as in SMAX.
    """
    jnp = _jaxmarl()["jax"].numpy
    jax_nn = _jaxmarl()["jax"].nn
    types = inner.unit_types
    per_unit = jnp.concatenate([
        (inner.unit_health / env.unit_type_health[types])[:, None],
        # clipped: SMAX pushes colliding units apart after clamping them to the map, so a
        # position can sit a hair outside it
        jnp.clip(inner.unit_positions / jnp.array([env.map_width, env.map_height]), 0.0, 1.0),
        jnp.clip(inner.unit_weapon_cooldowns / env.unit_type_weapon_cooldowns[types],
                 0.0, 1.0)[:, None],
        jax_nn.one_hot(types, env.unit_type_bits),
    ], axis=-1) * inner.unit_alive[:, None]
    max_type = max(len(env.unit_type_names) - 1, 1)
    return jnp.concatenate([per_unit.reshape(-1), inner.unit_teams.astype(jnp.float32),
                            types / max_type]).astype(jnp.float32)


def split_step_key(key):
    """(SMAX's step_env key, the auto-reset key, the next step's key) of one env step: the
    one rule, which a replay of a recorded battle (benchmark/evaluation.py) follows too."""
    return _jaxmarl()["jax"].random.split(key, 3)


@lru_cache(maxsize=None)
def _jitted(map_name: str):
    """The batched reset and step of a map, traced once per process: every env of the map
    (training, evaluation, collection) shares them; jit keeps one executable per N."""
    jax = _jaxmarl()["jax"]
    jnp = jax.numpy
    env = _make_smax(map_name)
    n_allies = env.num_allies

    def observe(obs, state):
        return (
            # SMAX's declared observation space is [-1, 1]; own positions can overshoot it by a
            # hair (see `_world_state`)
            jnp.clip(jnp.stack([obs[a] for a in env.agents]).astype(jnp.float32), -1.0, 1.0),
            _world_state(env, state.state),
            jnp.stack([v for v in env.get_avail_actions(state).values()]).astype(bool),
        )

    def reset_one(key):
        obs, state = env.reset(key)
        # Strip weak types so the state from reset has the exact types of the state from
        # step; otherwise the step function compiles twice (~3 s each).
        state = jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), state)
        return state, observe(obs, state)

    def step_one(key, state, actions):
        k_step, k_reset, k_next = split_step_key(key)
        acts = {a: actions[i] for i, a in enumerate(env.agents)}
        obs, state, rewards, _, _ = env.step_env(k_step, state, acts)
        inner = state.state
        allies_dead = ~jnp.any(inner.unit_alive[:n_allies])
        enemies_dead = ~jnp.any(inner.unit_alive[n_allies:])
        terminated = allies_dead | enemies_dead
        truncated = (inner.step >= env.max_steps) & ~terminated
        won = enemies_dead & ~allies_dead
        nxt = observe(obs, state)
        reset_state, reset_obs = reset_one(k_reset)
        done = terminated | truncated
        pick = lambda r, n: jnp.where(done, r, n)  # noqa: E731 - select per leaf
        cont_state = jax.tree.map(pick, reset_state, state)
        cont = jax.tree.map(pick, reset_obs, nxt)
        reward = rewards[env.agents[0]] * REWARD_SCALE
        return k_next, cont_state, (reward, terminated, truncated, won, nxt, cont)

    return jax.jit(jax.vmap(reset_one)), jax.jit(jax.vmap(step_one))


@lru_cache(maxsize=None)
def _heuristic(map_name: str):
    """The batched heuristic step of a map: reset the script's memory of envs starting an
    episode, draw per-agent keys, act. Fused, it costs a third of the op-by-op version."""
    jm = _jaxmarl()
    jax = jm["jax"]
    jnp = jax.numpy
    policy = jax.vmap(jax.vmap(jm["create_heuristic_policy"](_make_smax(map_name)._env, team=0)))

    def step(key, pstate, init, first, obs):
        n, a = obs.shape[:2]
        pstate = jax.tree.map(
            lambda i, s: jnp.where(first.reshape((n,) + (1,) * (s.ndim - 1)), i, s), init, pstate)
        key, sub = jax.random.split(key)
        actions, pstate = policy(jax.random.split(sub, n * a).reshape(n, a, -1), pstate, obs)
        return key, actions, pstate

    return jax.jit(step)


class SmaxVecEnv:
    """N parallel SMAX battles on one map, stepped by a single jitted call."""

    def __init__(self, map_name: str, num_envs: int):
        self.info = env_info(map_name)
        self.num_envs = num_envs
        self._env = _make_smax(map_name)
        self._jax_state = None
        self._keys = None

    @property
    def smax(self):
        """The jaxmarl SMAX env underneath (its step_env and renderer, for replays)."""
        return self._env

    def reset(self, seed: int) -> Obs:
        jax = _jaxmarl()["jax"]
        keys = jax.random.split(jax.random.PRNGKey(seed), self.num_envs + 1)
        self._keys = keys[1:]
        reset_fn, _ = _jitted(self.info.map_name)
        self._jax_state, obs = reset_fn(jax.random.split(keys[0], self.num_envs))
        return Obs(*jax.device_get(obs))

    def step(self, actions: np.ndarray) -> Step:
        if self._jax_state is None:
            raise RuntimeError("call reset() before step()")
        _, step_fn = _jitted(self.info.map_name)
        self._keys, self._jax_state, out = step_fn(
            self._keys, self._jax_state, np.asarray(actions, dtype=np.int32)
        )
        reward, terminated, truncated, won, nxt, cont = _jaxmarl()["jax"].device_get(out)
        return Step(
            reward=reward.astype(np.float32),
            terminated=terminated,
            truncated=truncated,
            battle_won=won,
            next=Obs(*nxt),
            cont=Obs(*cont),
        )

    def state_dict(self) -> dict:
        """The battles in progress (JAX state leaves + PRNG keys) as numpy, for checkpoints."""
        jax = _jaxmarl()["jax"]
        if self._jax_state is None:
            raise RuntimeError("call reset() before state_dict()")
        return {"keys": np.asarray(self._keys),
                "leaves": [np.asarray(x) for x in jax.tree.leaves(self._jax_state)]}

    def load_state_dict(self, sd: dict) -> None:
        """Continue the exact battles saved by `state_dict` (same map and env count)."""
        jax = _jaxmarl()["jax"]
        if self._jax_state is None:
            self.reset(0)  # only to learn the state's tree structure
        treedef = jax.tree.structure(self._jax_state)
        self._jax_state = jax.tree.unflatten(treedef, [jax.numpy.asarray(x)
                                                       for x in sd["leaves"]])
        self._keys = jax.numpy.asarray(sd["keys"])

    def heuristic_step(self, key, pstate, init, first, obs):
        """SMAX's scripted allied micro for all N envs in one jitted call (one dispatch per
        step): (key, policy state, initial state, first (N,), obs) -> (key, actions, state)."""
        return _heuristic(self.info.map_name)(key, pstate, init, first, obs)

    def heuristic_initial_state(self):
        jm = _jaxmarl()
        jax = jm["jax"]
        one = jm["heuristic_initial_state"]()
        return jax.tree.map(
            lambda x: jax.numpy.broadcast_to(
                jax.numpy.asarray(x), (self.num_envs, self.info.n_agents) + jax.numpy.shape(x)
            ),
            one,
        )
