"""The batched environment contract (DESIGN.md section 3) on real SMAX battles on 3m.

Every test drives the real jitted SMAX simulator. Ground truth for "who is alive" comes from the
global state vector, whose SMAX layout is one block of F features per unit (health fraction first,
then x, y divided by the map size; all zeros for a dead unit), followed by the unit teams and unit
types (tests/smax_helpers.py reads it).
"""

from __future__ import annotations

import numpy as np
import pytest

from o2omarl.envs import MAX_RETURN, env_info, list_maps, make_env
from o2omarl.envs.smax import SmaxVecEnv
from o2omarl.errors import UsageError
from smax_helpers import MAP_SIZE, STOP, FleePolicy, StopPolicy, side_alive, units

MAP = "3m"
N = 16  # the same num_envs as the session fixture `heuristic_3m`: one compiled shape
@pytest.fixture(scope="module")
def env():
    return SmaxVecEnv(MAP, N)


def check_obs(o, info, n=N):
    assert o.obs.shape == (n, info.n_agents, info.obs_dim) and o.obs.dtype == np.float32
    assert o.state.shape == (n, info.state_dim) and o.state.dtype == np.float32
    assert o.avail.shape == (n, info.n_agents, info.n_actions) and o.avail.dtype == np.bool_
    assert o.avail[..., STOP].all(), "stop must always be available"


def first_episodes(env, policy, seed):
    """Step until every env has finished its first episode, checking the per-step contract.

    Returns per env: length, terminated, truncated, battle_won, return, terminal state.
    """
    info, n = env.info, env.num_envs
    o = env.reset(seed)
    check_obs(o, info, n)
    t = np.zeros(n, int)
    first = np.ones(n, bool)
    out = {"length": np.zeros(n, int), "terminated": np.zeros(n, bool),
           "truncated": np.zeros(n, bool), "won": np.zeros(n, bool),
           "ret": np.zeros(n, np.float64), "final_state": np.zeros((n, info.state_dim))}
    ended = np.zeros(n, bool)
    for _ in range(info.episode_limit):
        acts = policy(o, first)
        assert np.take_along_axis(o.avail, acts[..., None], -1).all()
        s = env.step(acts)
        t += 1
        for k in ("terminated", "truncated", "battle_won"):
            assert getattr(s, k).shape == (n,) and getattr(s, k).dtype == np.bool_
        assert s.reward.shape == (n,) and s.reward.dtype == np.float32
        check_obs(s.next, info, n)
        check_obs(s.cont, info, n)
        assert not (s.terminated & s.truncated).any(), "terminated and truncated both true"
        assert not (s.battle_won & ~s.terminated).any(), "a win must be a decided battle"
        # A time-limit end happens exactly at the limit, and the limit always ends an episode.
        np.testing.assert_array_equal(s.truncated, (t == info.episode_limit) & ~s.terminated)
        assert s.done[t == info.episode_limit].all()
        # Decided means one side is wiped out in the terminal state; undecided means neither.
        allies, enemies = side_alive(s.next.state, info)
        np.testing.assert_array_equal(s.terminated, ~allies | ~enemies)
        np.testing.assert_array_equal(s.battle_won, ~enemies & allies)
        # `cont` equals `next` where the episode goes on; ended envs were reset to a fresh battle.
        go = ~s.done
        for a, b in zip(s.cont, s.next):
            np.testing.assert_array_equal(a[go], b[go])
        if s.done.any():
            d = s.done
            assert (s.cont.obs[d] != s.next.obs[d]).reshape(d.sum(), -1).any(-1).all()
            health, _ = units(s.cont.state[d], info)
            np.testing.assert_array_equal(health, 1.0)  # every unit alive at full health
        now = s.done & ~ended
        out["length"][now] = t[now]
        out["terminated"][now] = s.terminated[now]
        out["truncated"][now] = s.truncated[now]
        out["won"][now] = s.battle_won[now]
        out["final_state"][now] = s.next.state[now]
        out["ret"] += np.where(ended, 0.0, s.reward)
        ended |= s.done
        t[s.done] = 0
        first = s.done.copy()
        o = s.cont
        if ended.all():
            break
    assert ended.all(), "the time limit must end every episode"
    return out


def test_list_maps_and_env_info():
    maps = list_maps()
    assert "3m" in maps and "2s3z" in maps
    info = env_info(MAP)
    assert (info.backend, info.map_name) == ("smax", "3m")
    assert (info.n_agents, info.n_enemies, info.episode_limit) == (3, 3, 100)
    assert info.n_actions == 5 + info.n_enemies  # 4 moves, stop, one attack per enemy
    assert info.obs_dim > 0 and info.state_dim > 0
    two = env_info("2s3z")
    assert (two.n_agents, two.n_enemies, two.n_actions) == (5, 5, 10)
    assert make_env(MAP, 2).info == info


@pytest.mark.parametrize("call", [
    lambda: env_info("4m"),
    lambda: SmaxVecEnv("4m", 2),
    lambda: make_env("4m", 2),
])
def test_unknown_map_lists_valid_maps(call):
    with pytest.raises(UsageError) as e:
        call()
    msg = str(e.value)
    assert "'4m'" in msg and "3m" in msg and "2s3z" in msg
    assert "\n" not in msg
    assert e.value.exit_code == 2


def test_the_map_table_is_what_smax_says():
    """Map facts come from a table (no simulator import); every row must match SMAX's own
    numbers, and every SMAX map must have a row."""
    from o2omarl.envs import smax

    assert list(smax._jaxmarl()["scenarios"]) == list_maps()
    for name in list_maps():
        assert env_info(name) == smax.measured_env_info(name), name


HEAVY = ("jax", "jaxmarl", "torch")
SIMULATOR = {"jax", "jaxmarl"}


def bench_in_fresh_python(argv: list[str], cwd) -> tuple[int, str, str, set[str]]:
    """`bench ARGV` in a new interpreter: exit code, stdout, stderr, and which of HEAVY it
    imported (sys.modules after the command), so a heavy import that creeps back fails."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from o2omarl.cli import main\n"
            "try:\n"
            "    main(sys.argv[1:])\n"
            "    rc = 0\n"
            "except SystemExit as e:\n"
            "    rc = e.code\n"
            f"print('imported:', *[m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
            "sys.exit(rc)\n")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         timeout=300, cwd=cwd)
    *err, last = out.stderr.splitlines()
    assert last.startswith("imported:"), out.stderr
    return out.returncode, out.stdout, "\n".join(err), set(last.split()[1:])


# (argv, what it says, which heavy modules it may import): everything here answers from data.
# Method names and map facts are data (checked against the registry and SMAX by tests).
NO_SIMULATION = [
    (["maps"], "2s3z", set()),
    (["run", "qmix", "--map", "4m"], "unknown map '4m'", set()),
    (["run", "qmix", "--map", "3m", "--steps", "0"], "--steps must be a positive", set()),
    (["run", "qmix", "--map", "3m", "--dataset", "nope"], "no dataset 'smax/3m/nope'", set()),
    (["run", "--config", "bad.yaml"], "bad.yaml: unknown key 'sed'", set()),
    (["run", "qmxi", "--map", "3m"], "unknown method 'qmxi'", set()),
    (["collect", "--map", "4m"], "unknown map '4m'", set()),
    (["runs", "list", "--runs-dir", "none"], "'none' does not exist", set()),
    (["report", "--runs-dir", "none"], "'none' does not exist", set()),
    (["datasets", "list"], "", set()),
    (["datasets", "show", "DATASET"], "episodes", set()),
    (["datasets", "verify", "DATASET"], "ok", set()),
]


@pytest.mark.parametrize("argv, says, may_import", NO_SIMULATION,
                         ids=[" ".join(argv) for argv, _, _ in NO_SIMULATION])
@pytest.mark.slow
def test_commands_that_simulate_nothing_do_not_import_the_simulator(argv, says, may_import,
                                                                    tmp_path, request):
    """Map facts, the run store and dataset metadata are data: no jax (nor torch)."""
    (tmp_path / "bad.yaml").write_text("sed: 3\n")
    if "DATASET" in argv:
        dataset_id = request.getfixturevalue("heuristic_3m").dataset_id
        argv = [dataset_id if a == "DATASET" else a for a in argv]
    code, out, err, imported = bench_in_fresh_python(argv, tmp_path)
    assert says in out + err
    assert code == (0 if argv[0] in ("maps", "datasets") else 2), err
    assert imported <= may_import, f"bench {' '.join(argv)} imported {imported - may_import}"


def _in_a_fresh_interpreter(code: str):
    """Run `code` in a new Python, where nothing of SMAX or jaxmarl is imported yet."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_loading_the_simulator_keeps_the_callers_stdout_and_stderr():
    """jaxmarl's import resets sys.stdout/sys.stderr to the process's own; a caller's redirect
    (a log capture, pytest's capsys) must survive the first env made in a fresh interpreter."""
    code = ("import io, sys\n"
            "out, err = io.StringIO(), io.StringIO()\n"
            "sys.stdout, sys.stderr = out, err\n"
            "try:\n"
            "    from o2omarl.envs import make_env\n"
            f"    make_env({MAP!r}, num_envs=1)\n"
            "finally:\n"
            "    kept = sys.stdout is out and sys.stderr is err\n"
            "    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__\n"
            "    print(kept, repr(out.getvalue()), err.getvalue(), sep='\\n')\n")
    res = _in_a_fresh_interpreter(code)
    assert res.stdout.splitlines()[:2] == ["True", "''"], res.stdout + res.stderr


@pytest.mark.slow
def test_the_simulator_loads_without_jaxmarls_other_envs_and_jaxmarl_still_imports():
    """Making an env imports SMAX alone (the other JaxMARL environments cost ~3.6 s at import,
    in every `bench` process); a later `import jaxmarl` is the real package, with the same
    SMAX classes."""
    code = ("import sys\n"
            "from o2omarl.envs import make_env\n"
            f"make_env({MAP!r}, num_envs=1)\n"
            "print(sorted({k.split('.')[2] for k in sys.modules\n"
            "              if k.startswith('jaxmarl.environments.')}))\n"
            "from o2omarl.envs.smax import _jaxmarl\n"
            "import jaxmarl\n"
            "from jaxmarl.environments.smax import HeuristicEnemySMAX\n"
            "print(HeuristicEnemySMAX is _jaxmarl()['HeuristicEnemySMAX'],\n"
            "      type(jaxmarl.make('HeuristicEnemySMAX')) is HeuristicEnemySMAX)\n")
    res = _in_a_fresh_interpreter(code)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "['multi_agent_env', 'smax', 'spaces']", res.stdout
    assert lines[-1] == "True True", res.stdout


def test_unknown_backend():
    with pytest.raises(UsageError, match="'nope'.*smax"):
        env_info(MAP, backend="nope")


def test_reset_contract_and_determinism(env):
    info = env.info
    a = env.reset(7)
    check_obs(a, info)
    # 16 units apart at the start, attack range 5: nobody can shoot yet; all moves possible.
    assert not a.avail[..., 5:].any()
    assert a.avail[..., :5].all()
    health, pos = units(a.state, info)
    np.testing.assert_array_equal(health, 1.0)
    assert ((pos > 0) & (pos < MAP_SIZE)).all()
    b = env.reset(7)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = env.reset(8)
    assert not np.array_equal(a.obs, c.obs)
    # Parallel envs are different battles, not copies.
    assert not np.array_equal(a.state[0], a.state[1])


@pytest.mark.parametrize("map_name, types_vary", [("smacv2_5_units", True), ("2s3z", False)])
def test_smacv2_tasks_draw_unit_types_and_positions_per_battle(map_name, types_vary):
    """SMACv2's scenarios (issue 30's new tasks) generate every battle: unit types and start
    positions differ between parallel battles and resets, while a SMAC map's line-up is fixed.
    The state ends with every unit's type (`smax._world_state`)."""
    env = SmaxVecEnv(map_name, 8)
    info = env.info
    units_ = info.n_agents + info.n_enemies
    states = np.concatenate([env.reset(seed).state for seed in (0, 1)])
    types = states[:, -units_:]
    assert (len(np.unique(types, axis=0)) > 1) == types_vary
    assert len(np.unique(states[:, :-units_], axis=0)) == len(states)  # no two battles alike


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        SmaxVecEnv(MAP, 2).step(np.full((2, 3), STOP))


def test_stop_policy_loses_every_battle(env):
    """Units that only `stop` are shot by the heuristic enemies: a decided battle (terminated),
    lost, with no damage dealt (reward exactly 0), long before the time limit."""
    r = first_episodes(env, StopPolicy(), seed=0)
    assert r["terminated"].all() and not r["truncated"].any() and not r["won"].any()
    assert (r["length"] < env.info.episode_limit).all()
    np.testing.assert_array_equal(r["ret"], 0.0)
    allies, enemies = side_alive(r["final_state"], env.info)
    assert not allies.any() and enemies.all()


def test_time_limit_is_truncation_not_termination(env):
    """Battles that reach the limit undecided end truncated at exactly step 100 (=
    info.episode_limit), never terminated, never won; `cont` holds the reset battle."""
    # Seed 1: most battles reach the limit while a few envs were caught and reset earlier, so
    # one batch mixes both kinds of end (seed-determined: SMAX on CPU is deterministic).
    r = first_episodes(env, FleePolicy(env.info), seed=1)
    trunc = r["truncated"]
    assert trunc.sum() >= N // 2, f"only {trunc.sum()} of {N} battles reached the time limit"
    assert (~trunc).any(), "expected some battles decided before the limit"
    assert (r["length"][trunc] == env.info.episode_limit).all()
    assert not r["terminated"][trunc].any() and not r["won"].any()
    allies, enemies = side_alive(r["final_state"], env.info)
    assert allies[trunc].all() and enemies[trunc].all()
    # The others were caught: decided before the limit, lost.
    assert r["terminated"][~trunc].all() and (r["length"][~trunc] < env.info.episode_limit).all()
    assert not allies[~trunc].any()
    np.testing.assert_array_equal(r["ret"], 0.0)  # never attacks, so never damages


def test_heuristic_wins_are_terminated_with_return_20(env):
    from o2omarl.datasets.policies import HeuristicPolicy

    r = first_episodes(env, HeuristicPolicy(env, 0), seed=0)
    won = r["won"]
    assert won.any() and (~won).any(), "expected both wins and losses from 16 heuristic battles"
    assert r["terminated"][won].all() and not r["truncated"][won].any()
    # SMAC scale: enemy health removed (10) + win bonus (10) = 20 for every win.
    np.testing.assert_allclose(r["ret"][won], MAX_RETURN, atol=0.01)
    assert (r["ret"] <= MAX_RETURN + 0.01).all()
    assert (r["ret"][~won] < MAX_RETURN - 1).all()
    # A loss earns only the damage dealt: at most 10 (all enemy health), no bonus.
    lost = r["terminated"] & ~won
    assert ((r["ret"][lost] >= 0) & (r["ret"][lost] <= MAX_RETURN / 2 + 0.01)).all()
    _, enemies = side_alive(r["final_state"], env.info)
    assert not enemies[won].any()


@pytest.mark.parametrize("map_name", ["3m", "2s3z", "6h_vs_8z"])
@pytest.mark.slow
def test_every_state_and_observation_feature_stays_in_its_documented_range(map_name):
    """Observations in [-1, 1], world-state features in [0, 1], on symmetric and asymmetric
    maps, under uniform random play, SMAX's heuristic (fires all the time) and a policy that
    never fires (SMAX's raw weapon cooldown keeps counting down then: it reached -32 and made
    QMIX's mixer diverge on 2s3z under format 2)."""
    from o2omarl.datasets.policies import HeuristicPolicy, RandomPolicy

    env = SmaxVecEnv(map_name, 8)
    info = env.info
    for policy in (RandomPolicy(0), HeuristicPolicy(env, 0), StopPolicy()):
        o, first = env.reset(1), np.ones(8, bool)
        obs, states = [o.obs], [o.state]
        for _ in range(info.episode_limit + 10):  # past the longest episode: resets included
            step = env.step(policy(o, first))
            o, first = step.cont, step.done
            obs += [step.next.obs, o.obs]
            states += [step.next.state, o.state]
        obs, states = np.stack(obs), np.stack(states)
        name = type(policy).__name__
        assert -1.0 <= obs.min() and obs.max() <= 1.0, (name, obs.min(), obs.max())
        bad = np.flatnonzero((states < 0).any((0, 1)) | (states > 1).any((0, 1)))
        assert bad.size == 0, f"{name}: state columns {bad} leave [0, 1]"
    # The cooldown column really varies under fire (not zeroed away), on the [0, 1] scale.
    u = info.n_agents + info.n_enemies
    f = (info.state_dim - 2 * u) // u
    cooldown = states[..., : u * f].reshape(states.shape[:-1] + (u, f))[..., 3]
    assert 0.2 < cooldown.max() <= 1.0
    assert info.state_format == 3


def test_world_state_is_smaxs_own_state_normalised(env):
    """Same layout and values as SMAX's `get_world_state`, each feature divided by its scale:
    health (already a fraction), positions / map size, cooldown / the unit type's cooldown
    (clipped to [0, 1]), type bits, teams, unit types / the largest type."""
    from o2omarl.envs.smax import _make_smax

    smax = _make_smax(MAP)
    o = env.reset(5)
    for _ in range(12):
        o = env.step(np.random.default_rng(1).integers(0, 6, (N, env.info.n_agents)) % 5).cont
    inner = jax_state_of(env, 0)
    raw = np.asarray(smax._env.get_world_state(inner))
    u = env.info.n_agents + env.info.n_enemies
    f = (env.info.state_dim - 2 * u) // u
    want = raw[: u * f].reshape(u, f).copy()
    want[:, 1] /= smax.map_width
    want[:, 2] /= smax.map_height
    types = np.asarray(inner.unit_types)
    want[:, 3] = np.clip(want[:, 3] / np.asarray(smax.unit_type_weapon_cooldowns)[types], 0, 1)
    got = o.state[0]
    np.testing.assert_allclose(got[: u * f].reshape(u, f), np.clip(want, 0, 1), atol=1e-6)
    np.testing.assert_array_equal(got[u * f: u * f + u], raw[u * f: u * f + u])  # teams
    np.testing.assert_allclose(got[u * f + u:],
                               raw[u * f + u:] / max(len(smax.unit_type_names) - 1, 1))


def jax_state_of(env, i):
    """The inner SMAX state of env `i` of a batched env."""
    import jax

    return jax.tree.map(lambda x: x[i], env._jax_state).state
