"""Datasets end to end: real SMAX collection, real HDF5 files, read back by stock Minari and h5py.

The shared read-only dataset is conftest's `heuristic_3m` (60 heuristic episodes, 16 envs, seed 0);
tests that write, delete, corrupt or kill writers use an empty `fresh_root`.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import minari
import numpy as np
import pytest
from gymnasium.spaces import Box, MultiDiscrete

from o2omarl import datasets
from o2omarl.datasets import store
from o2omarl.datasets.policies import make_builtin
from o2omarl.envs import MAX_RETURN, env_info, make_env
from o2omarl.episodes import Rollout
from o2omarl.errors import UsageError
from smax_helpers import FleePolicy, units

MAP, N = "3m", 16  # N as in `heuristic_3m`: one compiled shape for the whole session


def bench_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "bench"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "o2omarl.cli"]


def bench(*args, root: Path, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root)}
    return subprocess.run(bench_cmd() + list(args), capture_output=True, text=True, env=env,
                          timeout=timeout)


def minari_episodes(dataset_id):
    return list(minari.load_dataset(dataset_id).iterate_episodes())


@pytest.fixture(scope="module")
def env16():
    return make_env(MAP, N)


# ---------------------------------------------------------------- format: Minari and h5py


@pytest.mark.slow
def test_minari_loads_joint_spaces_and_episode_arrays(heuristic_3m):
    rec, info = heuristic_3m, heuristic_3m.env
    assert rec.dataset_id == "smax/3m/heuristic-v0"
    assert rec.dataset_id in minari.list_local_datasets()
    ds = minari.load_dataset(rec.dataset_id)
    n, d, a = info.n_agents, info.obs_dim, info.n_actions
    assert ds.observation_space == Box(-np.inf, np.inf, (n, d), np.float32)
    assert ds.observation_space.dtype == np.float32
    assert ds.action_space == MultiDiscrete([a] * n)
    steps, returns, wins = 0, [], []
    for ep in ds.iterate_episodes():
        T = len(ep.rewards)
        assert 1 <= T <= info.episode_limit
        assert ep.observations.shape == (T + 1, n, d) and ep.observations.dtype == np.float32
        assert ep.actions.shape == (T, n) and np.issubdtype(ep.actions.dtype, np.integer)
        assert ep.rewards.shape == (T,)
        assert ep.terminations.shape == (T,) and ep.terminations.dtype == np.bool_
        assert ep.truncations.shape == (T,) and ep.truncations.dtype == np.bool_
        assert set(ep.infos) == {"state", "avail_actions", "battle_won"}
        assert ep.infos["state"].shape == (T + 1, info.state_dim)
        assert ep.infos["state"].dtype == np.float32
        assert ep.infos["avail_actions"].shape == (T + 1, n, a)
        assert ep.infos["avail_actions"].dtype == np.bool_
        assert ep.infos["battle_won"].shape == (T,) and ep.infos["battle_won"].dtype == np.bool_
        # Exactly one end flag, on the last step.
        assert (ep.terminations[:-1] | ep.truncations[:-1]).sum() == 0
        assert ep.terminations[-1] != ep.truncations[-1]
        steps += T
        returns.append(float(ep.rewards.sum()))
        wins.append(bool(ep.infos["battle_won"][-1]))
    s = rec.stats
    assert len(returns) == s["episodes"] == ds.total_episodes == 60
    assert steps == s["steps"] == ds.total_steps
    meta = json.loads((rec.path / "data" / "metadata.json").read_text())
    assert (meta["total_episodes"], meta["total_steps"]) == (60, steps)
    assert meta["dataset_id"] == rec.dataset_id
    assert s["return_mean"] == pytest.approx(np.mean(returns), abs=1e-4)
    assert s["win_rate"] == pytest.approx(np.mean(wins))
    assert max(returns) <= MAX_RETURN + 0.01


def test_plain_h5py_read_matches_minari(heuristic_3m):
    eps = minari_episodes(heuristic_3m.dataset_id)
    with h5py.File(heuristic_3m.path / "data" / "main_data.hdf5", "r") as f:
        assert len(f) == len(eps)
        for i, ep in enumerate(eps):
            g = f[f"episode_{i}"]
            avail = g["infos/avail_actions"][()]
            assert avail.dtype == np.bool_  # stored as bool, never JPEG-encoded uint8
            np.testing.assert_array_equal(avail, ep.infos["avail_actions"])
            np.testing.assert_array_equal(g["observations"][()], ep.observations)
            np.testing.assert_array_equal(g["actions"][()], ep.actions)


def test_avail_actions_exact_and_consistent_with_actions(heuristic_3m, env16):
    """Recollecting with the same seed, env count and policy reproduces the stored episodes
    exactly: the avail masks on disk are what the env reported, and every action taken was
    available in them."""
    eps = minari_episodes(heuristic_3m.dataset_id)
    s = heuristic_3m.meta["settings"]
    assert (s["map"], s["num_envs"], s["seed"], s["epsilon"]) == (MAP, N, 0, 0.0)
    again = Rollout(env16, make_builtin("heuristic", env16, s["seed"]), s["seed"]).collect(
        s["episodes"])
    assert len(again) == len(eps)
    for ep, ref in zip(eps, again):
        np.testing.assert_array_equal(ep.infos["avail_actions"], ref.avail)
        np.testing.assert_array_equal(ep.observations, ref.obs)
        np.testing.assert_array_equal(ep.infos["state"], ref.state)
        np.testing.assert_array_equal(ep.actions, ref.actions)
        np.testing.assert_array_equal(ep.rewards, ref.reward)
        np.testing.assert_array_equal(ep.terminations, ref.terminated)
        np.testing.assert_array_equal(ep.truncations, ref.truncated)
        np.testing.assert_array_equal(ep.infos["battle_won"], ref.battle_won)
        taken = np.take_along_axis(ep.infos["avail_actions"][:-1], ep.actions[..., None], -1)
        assert taken.all()
        # Masks carry information: attacks become available only as units close in.
        assert not ep.infos["avail_actions"][0, :, 5:].any()
    assert any(ep.infos["avail_actions"][:, :, 5:].any() for ep in eps)


def test_loader_padded_arrays_equal_minari(heuristic_3m):
    arr = datasets.load(heuristic_3m, env_info(MAP))
    eps = minari_episodes(heuristic_3m.dataset_id)
    info = heuristic_3m.env
    T = info.episode_limit
    assert len(arr) == len(eps) == heuristic_3m.stats["episodes"]
    assert arr.obs.shape == (len(eps), T + 1, info.n_agents, info.obs_dim)
    assert arr.avail.dtype == np.bool_ and arr.actions.shape == (len(eps), T, info.n_agents)
    lengths = np.array([len(ep.rewards) for ep in eps])
    np.testing.assert_array_equal(arr.filled.sum(1), lengths)
    assert arr.steps == heuristic_3m.stats["steps"]
    for e, ep in enumerate(eps):
        L = lengths[e]
        assert arr.filled[e, :L].all() and not arr.filled[e, L:].any()
        np.testing.assert_array_equal(arr.obs[e, : L + 1], ep.observations)
        np.testing.assert_array_equal(arr.state[e, : L + 1], ep.infos["state"])
        np.testing.assert_array_equal(arr.avail[e, : L + 1], ep.infos["avail_actions"])
        np.testing.assert_array_equal(arr.actions[e, :L], ep.actions)
        np.testing.assert_array_equal(arr.reward[e, :L], ep.rewards)
        np.testing.assert_array_equal(arr.terminated[e, :L], ep.terminations)
        np.testing.assert_array_equal(arr.truncated[e, :L], ep.truncations)
        assert not arr.reward[e, L:].any() and not arr.terminated[e, L:].any()


def test_loader_refuses_dataset_from_another_map(heuristic_3m):
    with pytest.raises(UsageError) as e:
        datasets.load(heuristic_3m, env_info("2s3z"))
    msg = str(e.value)
    assert "'3m'" in msg and "'2s3z'" in msg and heuristic_3m.dataset_id in msg
    with pytest.raises(UsageError, match="2s3z"):
        datasets.resolve("heuristic", map_name="2s3z")  # no such dataset for that map


# ---------------------------------------------------------------- ends: truncated vs terminated


def test_heuristic_wins_end_terminated_with_return_20(heuristic_3m):
    eps = minari_episodes(heuristic_3m.dataset_id)
    won = [ep for ep in eps if ep.infos["battle_won"][-1]]
    assert 0 < len(won) < len(eps)
    for ep in eps:
        assert ep.terminations[-1] and not ep.truncations.any()  # heuristic battles are decided
        assert not ep.infos["battle_won"][:-1].any()
    for ep in won:
        assert float(ep.rewards.sum()) == pytest.approx(MAX_RETURN, abs=0.01)
        health, _ = units(ep.infos["state"][-1], heuristic_3m.env)
        assert not (health[3:] > 0).any()  # every enemy dead in the terminal state


def test_time_limit_episodes_are_stored_truncated(fresh_root, env16):
    """Battles that reach the limit undecided are stored as truncations (not terminations):
    recorded by `Rollout`, written by `store.write`, read back by Minari and the loader."""
    info = env16.info
    rollout = Rollout(env16, FleePolicy(info), seed=1)
    eps: dict[int, object] = {}
    while len(eps) < N:
        for i, ep in rollout.step():
            eps.setdefault(int(i), ep)
        assert rollout.env_steps <= N * info.episode_limit
    eps = [eps[i] for i in range(N)]
    settings = {"map": MAP, "tier": "flee", "seed": 1, "num_envs": N, "episodes": N}
    with store.claim("smax", MAP, "flee"):
        rec = store.write(info, "flee", settings, eps, {"name": "flee"})
    assert rec.dataset_id == "smax/3m/flee-v0"
    loaded = minari_episodes(rec.dataset_id)
    assert len(loaded) == N
    truncated = [ep for ep in loaded if ep.truncations[-1]]
    assert N // 2 <= len(truncated) < N  # seed 1: most reach the limit, a few are caught
    for ep, orig in zip(loaded, eps):
        T = len(ep.rewards)
        assert T == orig.length
        np.testing.assert_array_equal(ep.truncations, orig.truncated)
        np.testing.assert_array_equal(ep.terminations, orig.terminated)
        health, _ = units(ep.infos["state"][-1], info)
        assert not ep.infos["battle_won"].any() and not ep.rewards.any()
        assert not (ep.terminations[:-1] | ep.truncations[:-1]).any()
        if ep.truncations[-1]:  # the time limit, undecided: both sides still standing
            assert T == info.episode_limit and not ep.terminations.any()
            assert (health[:3] > 0).any() and (health[3:] > 0).any()
        else:  # caught: decided before the limit, allies wiped out
            assert ep.terminations[-1] and T < info.episode_limit
            assert not (health[:3] > 0).any()
    assert rec.stats["terminated_fraction"] == pytest.approx(1 - len(truncated) / N)
    arr = datasets.load(rec, info)
    np.testing.assert_array_equal(arr.truncated.any(1), [bool(e.truncations[-1]) for e in loaded])
    assert not (arr.terminated & arr.truncated).any()
    assert datasets.verify(rec) == []


class StepBudget:
    """Wraps a policy and fails once called more than `limit` times (bounds a runaway loop)."""

    def __init__(self, policy, limit):
        self.policy, self.limit, self.calls = policy, limit, 0

    def __call__(self, obs, first):
        self.calls += 1
        if self.calls > self.limit:
            raise RuntimeError(f"collection still running after {self.limit} batched steps")
        return self.policy(obs, first)


def test_collect_keeps_each_envs_first_episode(env16):
    """With episodes == num_envs, `Rollout.collect` must return exactly each env's first episode
    (it promises not to favour short battles) and stop when the longest of them ends."""
    pol = lambda: make_builtin("heuristic", env16, 0)  # noqa: E731
    ref = Rollout(env16, pol(), 0)
    first: dict[int, object] = {}
    while len(first) < N:
        for i, ep in ref.step():
            first.setdefault(int(i), ep)
    longest = max(ep.length for ep in first.values())
    got_rollout = Rollout(env16, StepBudget(pol(), 4 * env16.info.episode_limit), 0)
    got = got_rollout.collect(N)
    key = lambda e: (e.length, round(e.ret, 4), e.actions.tobytes())  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, first.values()))
    assert got_rollout.env_steps == N * longest


def test_collect_with_a_custom_policy_stores_time_limit_ends(fresh_root):
    """`datasets.collect(policy=..., behaviour_meta=...)`: the time-limit ends of a policy that
    never fights are stored truncated."""
    info = env_info(MAP)
    policy = StepBudget(FleePolicy(info), 2 * info.episode_limit)
    res = datasets.collect(MAP, behaviour="flee", tier="flee", policy=policy,
                           behaviour_meta={"name": "flee", "note": "test policy"},
                           episodes=N, num_envs=N, seed=1, show_progress=False)
    rec = res.record
    assert rec.dataset_id == "smax/3m/flee-v0"
    assert rec.meta["behaviour"] == {"name": "flee", "note": "test policy"}
    loaded = minari_episodes(rec.dataset_id)
    assert len(loaded) == N
    assert sum(bool(ep.truncations[-1]) for ep in loaded) >= N // 2
    for ep in loaded:
        assert ep.truncations[-1] == (len(ep.rewards) == info.episode_limit)
        assert not ep.terminations[-1] or len(ep.rewards) < info.episode_limit


# ---------------------------------------------------------------- versions, verify, delete


def small(seed=0, **kw):
    return datasets.collect(MAP, "random", episodes=20, seed=seed, num_envs=N,
                            show_progress=False, **kw)


def test_versions_reuse_identical_settings_and_bump_on_change(fresh_root):
    r0 = small(seed=0)
    assert (r0.record.dataset_id, r0.reused) == ("smax/3m/random-v0", False)
    data = r0.record.path / "data" / "main_data.hdf5"
    stamp = (data.stat().st_mtime_ns, (r0.record.path / store.SIDECAR).stat().st_mtime_ns)
    side = r0.record.meta
    assert side["settings"] == {"backend": "smax", "map": MAP, "tier": "random",
                                "behaviour": {"name": "random"}, "episodes": 20,
                                "epsilon": 0.0, "seed": 0, "num_envs": N, "state_format": 3}
    assert {"minari", "jaxmarl", "jax", "h5py", "numpy"} <= set(side["packages"])
    assert side["git_commit"] == store.git_commit() and len(side["git_commit"] or "x" * 40) == 40
    for rel, digest in side["files"].items():
        assert hashlib.sha256((r0.record.path / rel).read_bytes()).hexdigest() == digest

    again = small(seed=0)
    assert again.reused and again.record.dataset_id == r0.record.dataset_id
    assert (data.stat().st_mtime_ns,
            (r0.record.path / store.SIDECAR).stat().st_mtime_ns) == stamp
    assert store.versions("smax", MAP, "random") == [0]

    r1 = small(seed=1)
    assert (r1.record.dataset_id, r1.reused) == ("smax/3m/random-v1", False)
    assert r1.record.meta["settings"]["seed"] == 1
    assert store.list_ids() == ["smax/3m/random-v0", "smax/3m/random-v1"]
    assert sorted(minari.list_local_datasets()) == store.list_ids()
    assert data.stat().st_mtime_ns == stamp[0]  # v0 is immutable
    # Different data, not a copy of v0.
    assert r1.record.meta["files"] != r0.record.meta["files"]

    back = small(seed=0)  # the old settings find the old version, not a new v2
    assert back.reused and back.record.dataset_id == "smax/3m/random-v0"
    assert datasets.resolve("random", map_name=MAP).dataset_id == "smax/3m/random-v1"


def test_verify_passes_intact_and_catches_a_flipped_byte(fresh_root):
    rec = small(seed=0).record
    assert datasets.verify(rec) == []
    ok = bench("datasets", "verify", rec.dataset_id, root=fresh_root)
    assert ok.returncode == 0 and f"ok      {rec.dataset_id}" in ok.stdout

    data = rec.path / "data" / "main_data.hdf5"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))

    problems = datasets.verify(store.get(rec.dataset_id))
    assert problems == ["data/main_data.hdf5 fails its sha256 checksum"]
    for args in (["datasets", "verify", rec.dataset_id], ["datasets", "verify", "--all"]):
        bad = bench(*args, root=fresh_root)
        assert bad.returncode == 1, bad
        assert f"DAMAGED {rec.dataset_id}: data/main_data.hdf5 fails its sha256 checksum" \
            in bad.stdout
        assert bad.stderr.strip().splitlines() == ["error: 1 of 1 dataset(s) failed verification"]
        assert "Traceback" not in bad.stderr


def test_verify_catches_missing_file_and_count_mismatch(fresh_root):
    rec = small(seed=0).record
    side = rec.path / store.SIDECAR
    meta = json.loads(side.read_text())
    meta["stats"]["episodes"] = 21
    side.write_text(json.dumps(meta))
    assert datasets.verify(store.get(rec.dataset_id)) == [
        "holds 20 episodes, metadata says 21"]
    (rec.path / "data" / "metadata.json").unlink()
    assert datasets.verify(store.get(rec.dataset_id)) == ["data/metadata.json is missing"]


def test_delete_removes_id_everywhere(fresh_root):
    rec = small(seed=0).record
    assert rec.dataset_id in store.list_ids()
    assert rec.dataset_id in minari.list_local_datasets()
    store.delete(rec.dataset_id)
    assert rec.dataset_id not in store.list_ids()
    assert rec.dataset_id not in minari.list_local_datasets()
    assert not rec.path.exists()
    with pytest.raises(UsageError, match="does not exist"):
        store.get(rec.dataset_id)
    # The next collection with the same settings starts again at v0.
    assert small(seed=0).record.dataset_id == "smax/3m/random-v0"


# ---------------------------------------------------------------- killed writers


def _assert_no_dataset(root: Path):
    assert store.list_ids() == []
    assert minari.list_local_datasets() == {}
    listing = bench("datasets", "list", root=root)
    assert listing.returncode == 0 and listing.stdout.startswith("no datasets")
    assert not (root / "smax" / MAP / "random-v0").exists()


def _rerun_succeeds(root: Path):
    small_run = bench("collect", "--map", MAP, "--behaviour", "random", "--episodes", "20",
                      "--num-envs", str(N), root=root)
    assert small_run.returncode == 0, small_run.stderr
    assert re.search(r"^id:\s+smax/3m/random-v0$", small_run.stdout, re.M), small_run.stdout
    assert store.list_ids() == ["smax/3m/random-v0"]
    assert datasets.verify(store.get("smax/3m/random-v0")) == []


def _popen_collect(root: Path, episodes: int) -> subprocess.Popen:
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root)}
    return subprocess.Popen(
        bench_cmd() + ["collect", "--map", MAP, "--behaviour", "random", "--episodes",
                       str(episodes), "--num-envs", str(N)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_sigkill_during_collection_leaves_nothing(fresh_root):
    proc = _popen_collect(fresh_root, 20000)
    lines: queue.Queue = queue.Queue()

    def read():
        for x in proc.stderr:
            lines.put(x)
        lines.put(None)  # end of stream: the process exited

    threading.Thread(target=read, daemon=True).start()
    seen = []
    try:
        # The progress line appears only once episodes are being collected (after >= 5 s).
        deadline = time.monotonic() + 90
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                pytest.fail(f"no progress line within 90 s; stderr so far: {seen}")
            if line is None:
                pytest.fail(f"collect exited before it could be killed; stderr: {seen}")
            seen.append(line)
            if line.startswith("collect smax/3m/random:"):
                break
        assert proc.poll() is None, "collection finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    _assert_no_dataset(fresh_root)
    _rerun_succeeds(fresh_root)


@pytest.mark.slow
def test_sigkill_during_write_leaves_nothing(fresh_root):
    """Killed while Minari writes the staging copy: the id never appears."""
    proc = _popen_collect(fresh_root, 1000)  # ~1 s to collect, ~2 s to write (~50 MB)
    staging = fresh_root / ".o2omarl" / "staging"
    try:
        deadline = time.monotonic() + 90
        while not (staging.is_dir() and any(staging.iterdir())):
            assert proc.poll() is None, "collect exited before writing started"
            assert time.monotonic() < deadline, "writing never started"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    leftover = list(staging.iterdir())
    assert leftover  # the half-written copy stayed behind, hidden in staging
    _assert_no_dataset(fresh_root)
    # The next collection (in-process here; the CLI rerun is covered above) is not disturbed
    # by the leftover and still starts at v0.
    res = small(seed=0)
    assert (res.record.dataset_id, res.reused) == ("smax/3m/random-v0", False)
    assert store.list_ids() == ["smax/3m/random-v0"]
    assert sorted(minari.list_local_datasets()) == ["smax/3m/random-v0"]
    assert datasets.verify(res.record) == []


def test_load_takes_what_bench_run_dataset_takes(heuristic_3m):
    """A full id, an id without version, or a bare tier with a map: the same arrays."""
    from o2omarl.envs import env_info

    by_record = datasets.load(heuristic_3m)
    for spec, kw in ((heuristic_3m.dataset_id, {}), ("smax/3m/heuristic", {}),
                     ("heuristic", {"map_name": "3m"}), ("heuristic", {"env": env_info("3m")})):
        arrays = datasets.load(spec, **kw)
        np.testing.assert_array_equal(arrays.reward, by_record.reward)
    with pytest.raises(UsageError, match="bare tier"):
        datasets.load("heuristic")


# both signals, both moments: each pair is the same handler (the suite's time is counted)
@pytest.mark.parametrize("sig, moment", [(signal.SIGINT, "win rate"),
                                         (signal.SIGTERM, "starting the simulator")])
@pytest.mark.slow
def test_ctrl_c_during_collection_stops_it_with_nothing_written(fresh_root, sig, moment):
    """The signal is honoured between steps wherever it lands, while the simulator starts and
    compiles or while it collects (a KeyboardInterrupt raised in XLA's garbage-collection
    callback used to be swallowed, and collection carried on to write the whole dataset)."""
    env = dict(os.environ, MINARI_DATASETS_PATH=str(fresh_root), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(bench_cmd() + ["collect", "--map", MAP, "--behaviour", "heuristic",
                                           "--episodes", "20000"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait for that moment
        if moment in line:
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-500:]
    assert "interrupted: collection of smax/3m/heuristic stopped after" in err
    assert "nothing was written" in err and "Traceback" not in err
    assert store.list_ids() == []
