"""Datasets out of and back into the suite, read by the real readers: flashbax's Vault (what
OG-MARL loads) and h5py for the PettingZoo-style per-agent file; and the Minari metadata stock
Minari users rely on (normalised scores, the env, no false hints).

The source is conftest's `heuristic_3m` (60 heuristic episodes on 3m); imports go to an empty
`fresh_root`.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import io
import json
import shutil
import sys
from pathlib import Path

import h5py
import minari
import numpy as np
import pytest

from o2omarl import datasets
from o2omarl.datasets import exchange, store
from o2omarl.datasets.reference import RANDOM_RETURN, measure_random_return
from o2omarl.envs import MAX_RETURN, env_info, list_maps
from test_cli_datasets import assert_clean, one_error_line
from test_cli_datasets import bench as bench_process
from test_errors import bench, leftovers, one_line

MAP = "3m"


def source_episodes(record):
    """The source dataset as stock Minari reads it."""
    return list(minari.load_dataset(record.dataset_id).iterate_episodes())


@pytest.fixture(scope="module")
def exports(heuristic_3m, tmp_path_factory):
    """`heuristic_3m` exported in both formats (the vault in 100-step chunks, so that writing it
    in pieces is exercised too), plus the source episodes as Minari reads them."""
    out = tmp_path_factory.mktemp("exports")
    paths = {"pettingzoo": exchange.export(heuristic_3m.dataset_id, "pettingzoo", out,
                                           show_progress=False)[1]}
    if _has_flashbax():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(exchange, "CHUNK_STEPS", 100)
            paths["og-marl"] = exchange.export(heuristic_3m.dataset_id, "og-marl", out,
                                               show_progress=False)[1]
    return {"paths": paths, "episodes": source_episodes(heuristic_3m), "out": out}


def _has_flashbax() -> bool:
    return importlib.util.find_spec("flashbax") is not None


needs_flashbax = pytest.mark.skipif(not _has_flashbax(), reason=exchange.FLASHBAX_HINT)


def read_vault(path: Path) -> dict:
    """As OG-MARL's `populate_from_vault` does: Vault(vault_name='<env>/<scenario>.vlt', ...)."""
    from flashbax.vault import Vault

    with contextlib.redirect_stdout(io.StringIO()):  # "Loading vault found at ..."
        return Vault(vault_name=f"{path.parent.parent.name}/{path.parent.name}",
                     vault_uid=path.name, rel_dir=str(path.parents[2])).read().experience


# ------------------------------------------------------------------------- the real readers
@needs_flashbax
@pytest.mark.slow
def test_og_marl_vault_as_flashbax_reads_it(exports, heuristic_3m):
    path, eps = exports["paths"]["og-marl"], exports["episodes"]
    assert path == exports["out"] / "smax" / "3m.vlt" / "heuristic-v0"
    exp = read_vault(path)
    info, S = heuristic_3m.env, heuristic_3m.stats["steps"]
    n = info.n_agents
    assert set(exp) == {"observations", "actions", "rewards", "terminals", "truncations", "infos"}
    assert set(exp["infos"]) == {"legals", "state"}
    assert exp["observations"].shape == (1, S, n, info.obs_dim)
    assert exp["actions"].shape == (1, S, n) and exp["actions"].dtype == np.int32
    assert exp["infos"]["legals"].shape == (1, S, n, info.n_actions)
    assert exp["infos"]["state"].shape == (1, S, info.state_dim)
    # One row per step, episodes back to back, the terminal observation dropped (OG-MARL's
    # layout); team reward and end flags on every agent.
    np.testing.assert_array_equal(exp["observations"][0],
                                  np.concatenate([e.observations[:-1] for e in eps]))
    np.testing.assert_array_equal(exp["infos"]["legals"][0],
                                  np.concatenate([e.infos["avail_actions"][:-1] for e in eps]))
    np.testing.assert_array_equal(exp["actions"][0], np.concatenate([e.actions for e in eps]))
    rewards = np.asarray(exp["rewards"][0])
    assert (rewards == rewards[:, :1]).all()
    ends = np.flatnonzero(np.asarray(exp["terminals"][0, :, 0] | exp["truncations"][0, :, 0]))
    assert list(np.diff(np.r_[-1, ends])) == [len(e.rewards) for e in eps]
    # Episode returns as OG-MARL's analysis computes them (sum of rewards up to each end).
    returns = np.add.reduceat(rewards[:, 0], np.r_[0, ends[:-1] + 1])
    np.testing.assert_allclose(returns, [e.rewards.sum() for e in eps], rtol=1e-5)
    header = json.loads((path / "metadata.json").read_text())["o2omarl"]
    assert header["dataset_id"] == "smax/3m/heuristic-v0" and header["env"]["map_name"] == MAP


def test_pettingzoo_file_holds_per_agent_arrays(exports, heuristic_3m):
    path, eps = exports["paths"]["pettingzoo"], exports["episodes"]
    assert path == exports["out"] / "smax" / "3m" / "heuristic-v0.hdf5"
    with h5py.File(path, "r") as f:
        agents = list(f.attrs["agents"])
        assert agents == ["agent_0", "agent_1", "agent_2"]
        assert len([k for k in f if k.startswith("episode_")]) == len(eps)
        for e in (0, len(eps) - 1):
            g, ep = f[f"episode_{e}"], eps[e]
            np.testing.assert_array_equal(g["state"][()], ep.infos["state"])
            np.testing.assert_array_equal(g["battle_won"][()], ep.infos["battle_won"])
            for i, name in enumerate(agents):
                np.testing.assert_array_equal(g[name]["observations"][()], ep.observations[:, i])
                np.testing.assert_array_equal(g[name]["action_mask"][()],
                                              ep.infos["avail_actions"][:, i])
                assert g[name]["action_mask"].dtype == np.bool_
                np.testing.assert_array_equal(g[name]["actions"][()], ep.actions[:, i])
                np.testing.assert_array_equal(g[name]["rewards"][()], ep.rewards)
                np.testing.assert_array_equal(g[name]["terminations"][()], ep.terminations)
                np.testing.assert_array_equal(g[name]["truncations"][()], ep.truncations)


# --------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("fmt", [pytest.param("og-marl", marks=needs_flashbax), "pettingzoo"])
@pytest.mark.slow
def test_import_gives_back_the_same_dataset(exports, heuristic_3m, fresh_root, capsys, fmt):
    path = exports["paths"][fmt]
    code, out, err = bench(["datasets", "import", str(path), "--format", fmt], capsys)
    assert code == 0, err
    assert "as smax/3m/heuristic-v0: 60 episodes" in out and "filled in" not in out
    rec = store.get("smax/3m/heuristic-v0")
    # Byte for byte the source's episode file: nothing was lost or changed on the way.
    assert rec.meta["files"]["data/main_data.hdf5"] == \
        heuristic_3m.meta["files"]["data/main_data.hdf5"]
    assert datasets.verify(rec) == []
    assert rec.stats == heuristic_3m.stats
    assert rec.meta["behaviour"] == heuristic_3m.meta["behaviour"]
    assert rec.meta["imported"]["dataset_id"] == heuristic_3m.dataset_id
    assert len(datasets.load(rec, env_info(MAP))) == 60
    # The same bytes again: that version, nothing new.
    code, out, _ = bench(["datasets", "import", str(path), "--format", fmt], capsys)
    assert code == 0 and "already stored as smax/3m/heuristic-v0" in out
    assert store.list_ids() == ["smax/3m/heuristic-v0"]


@needs_flashbax
@pytest.mark.slow
def test_export_and_import_on_the_command_line(heuristic_3m, tmp_path, minari_root):
    """The installed `bench`: summaries on stdout, nothing else (no flashbax or jaxmarl noise)."""
    out = tmp_path / "out"
    res = bench_process("datasets", "export", "smax/3m/heuristic-v0", "--format", "og-marl",
                        str(out), root=minari_root)
    assert res.returncode == 0, res.stderr
    assert_clean(res)
    vault = out / "smax" / "3m.vlt" / "heuristic-v0"
    assert res.stdout.splitlines() == [
        f"exported smax/3m/heuristic-v0 (60 episodes, {heuristic_3m.stats['steps']} steps) as "
        f"og-marl to {vault}",
        f"read it with OG-MARL: FlashbaxReplayBuffer(...).populate_from_vault('smax', '3m', "
        f"'heuristic-v0', rel_dir={str(out)!r})"]
    again = bench_process("datasets", "export", "smax/3m/heuristic-v0", "--format", "og-marl",
                          str(out), root=minari_root)
    assert again.returncode == 2 and str(vault) in one_error_line(again)
    res = bench_process("datasets", "import", str(vault), "--format", "og-marl", "--tier",
                        "copy", root=tmp_path / "root")
    assert res.returncode == 0, res.stderr
    assert_clean(res)
    assert res.stdout.startswith(f"imported {vault} as smax/3m/copy-v0: 60 episodes")


@needs_flashbax
def test_a_vault_from_elsewhere_needs_the_map_and_says_what_it_filled_in(
        exports, fresh_root, tmp_path, capsys):
    """A vault as OG-MARL writes it: its keys only, no o2omarl header, no terminal rows."""
    vault = write_vault(tmp_path, read_vault(exports["paths"]["og-marl"]))
    code, _, err = bench(["datasets", "import", str(vault), "--format", "og-marl"], capsys)
    assert code == 2 and "give --map" in one_line(err)
    code, out, err = bench(["datasets", "import", str(vault), "--format", "og-marl", "--map",
                            MAP, "--tier", "good"], capsys)
    assert code == 0, err
    assert "as smax/3m/good-v0" in out and out.count("filled in: ") == 2
    got = minari.load_dataset("smax/3m/good-v0").iterate_episodes()
    for ep, src in zip(got, exports["episodes"]):
        np.testing.assert_array_equal(ep.observations[:-1], src.observations[:-1])
        np.testing.assert_array_equal(ep.observations[-1], src.observations[-2])  # repeated
        np.testing.assert_array_equal(ep.actions, src.actions)
        np.testing.assert_array_equal(ep.rewards, src.rewards)
        assert not ep.infos["battle_won"].any()


def write_vault(folder: Path, experience: dict, uid: str = "Good") -> Path:
    """A vault written by flashbax itself, as OG-MARL's recorders do."""
    from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
    from flashbax.vault import Vault

    experience = {k: (v if k != "infos" else dict(v)) for k, v in experience.items()}
    T = experience["rewards"].shape[1]
    with contextlib.redirect_stdout(io.StringIO()):  # "New vault created at ..."
        Vault(vault_name="smac_v1/3m.vlt", experience_structure=experience,
              rel_dir=str(folder), vault_uid=uid).write(
            TrajectoryBufferState(experience=experience, current_index=T, is_full=False),
            source_interval=(0, T))
    return folder / "smac_v1" / "3m.vlt" / uid


# ------------------------------------------------------------------- refusals: one line each
def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy" / src.name
    dst.parent.mkdir(parents=True)
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    return dst


def _edit_pettingzoo(exports, tmp_path, edit) -> Path:
    path = _copy(exports["paths"]["pettingzoo"], tmp_path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _unavailable(f):
    g = f["episode_2/agent_1"]
    mask = g["action_mask"][()]
    mask[4, g["actions"][4]] = False
    g["action_mask"][...] = mask


def _nan(f):
    f["episode_0/state"][3, 0] = np.nan


def _one_agent_reward(f):
    f["episode_1/agent_2/rewards"][0] += 1


def _one_agent_ends(f):
    f["episode_0/agent_0/terminations"][0] = True


def _early_end(f):
    for name in f.attrs["agents"]:
        f[f"episode_0/{name}/terminations"][0] = True


@pytest.mark.parametrize("edit, code, named", [
    (_unavailable, 2, "episode 2 step 4 agent 1: action"),
    (_nan, 2, "episode 0 has non-finite (NaN or inf) state"),
    (_one_agent_reward, 2, "episode_1: rewards differ between agents at step 0"),
    (_one_agent_ends, 2, "episode_0: terminations differ between agents at step 0"),
    (_early_end, 2, "episode 0: expected exactly one end flag"),
])
def test_bad_content_is_refused_and_nothing_is_written(exports, fresh_root, tmp_path, capsys,
                                                       edit, code, named):
    path = _edit_pettingzoo(exports, tmp_path, edit)
    got, _, err = bench(["datasets", "import", str(path), "--format", "pettingzoo"], capsys)
    assert got == code and named in one_line(err) and str(path) in err
    assert store.list_ids() == [] and leftovers(fresh_root) == []


@pytest.mark.parametrize("argv, named", [
    (["--format", "csv"], ["'csv'", "og-marl", "pettingzoo"]),
    ([], ["--format", "og-marl, pettingzoo"]),
    (["--format", "pettingzoo", "--map", "8m"], ["'3m'", "'8m'"]),
    (["--format", "pettingzoo", "--map", "4m"], ["'4m'", "3m", "2s3z"]),
    (["--format", "pettingzoo", "--tier", "good-v3"], ["'good-v3'", "-v<N>"]),
    (["--format", "og-marl"], ["not a flashbax Vault folder", "<uid>"]),
])
def test_usage_errors_name_the_value_and_what_is_accepted(exports, fresh_root, capsys, argv,
                                                          named):
    path = exports["paths"]["pettingzoo"]
    code, _, err = bench(["datasets", "import", str(path), *argv], capsys)
    line = one_line(err)
    assert code == 2 and all(n in line for n in named), line
    assert store.list_ids() == []


def test_not_hdf5_and_damaged_hdf5(exports, fresh_root, tmp_path, capsys):
    text = tmp_path / "notes.hdf5"
    text.write_text("not data")
    code, _, err = bench(["datasets", "import", str(text), "--format", "pettingzoo"], capsys)
    assert code == 2 and "is not an HDF5 file" in one_line(err)
    damaged = _copy(exports["paths"]["pettingzoo"], tmp_path)
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) // 2])  # the header survives, the episodes do not
    code, _, err = bench(["datasets", "import", str(damaged), "--format", "pettingzoo"], capsys)
    assert code == 1 and "damaged" in one_line(err)
    assert store.list_ids() == [] and leftovers(fresh_root) == []


@needs_flashbax
def test_damaged_or_partial_vault(exports, fresh_root, tmp_path, capsys):
    vault = _copy(exports["paths"]["og-marl"], tmp_path)
    for chunk in (vault / "d").iterdir():
        chunk.write_bytes(b"\0" * 16)
    code, _, err = bench(["datasets", "import", str(vault), "--format", "og-marl"], capsys)
    assert code == 1 and "cannot read the vault" in one_line(err)
    whole = read_vault(exports["paths"]["og-marl"])
    cut = {k: (v[:, :-3] if k != "infos" else {i: w[:, :-3] for i, w in v.items()})
           for k, v in whole.items()}
    partial = write_vault(tmp_path / "partial", cut)
    code, _, err = bench(["datasets", "import", str(partial), "--format", "og-marl", "--map",
                          MAP], capsys)
    rest = len(exports["episodes"][-1].rewards) - 3  # what is left of the last episode
    assert code == 2 and f"its last {rest} steps end no episode" in one_line(err)
    code, _, err = bench(["datasets", "import", str(partial), "--format", "og-marl", "--map",
                          "2s3z"], capsys)
    assert code == 2 and "observations has shape (1, " in one_line(err)
    assert ", 3, 75), expected (1, " in err and ", 5, 127) on smax map 2s3z" in err
    assert store.list_ids() == [] and leftovers(fresh_root) == []


def test_without_flashbax_og_marl_is_one_line_naming_the_install(heuristic_3m, tmp_path,
                                                                 capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "flashbax.vault", None)  # import fails as if not installed
    code, _, err = bench(["datasets", "export", heuristic_3m.dataset_id, "--format", "og-marl",
                          str(tmp_path)], capsys)
    assert code == 1 and 'pip install "flashbax==0.1.3"' in one_line(err)
    assert list(tmp_path.iterdir()) == []


@needs_flashbax
def test_a_failed_export_leaves_nothing(heuristic_3m, tmp_path, capsys, monkeypatch):
    from flashbax.vault import Vault

    write = Vault.write
    calls = []

    def full_disk_on_second_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", "d/chunk")
        return write(self, *args, **kwargs)

    monkeypatch.setattr(exchange, "CHUNK_STEPS", 100)
    monkeypatch.setattr(Vault, "write", full_disk_on_second_chunk)
    code, _, err = bench(["datasets", "export", heuristic_3m.dataset_id, "--format", "og-marl",
                          str(tmp_path)], capsys)
    assert code == 1 and "no space left on device" in one_line(err)
    assert list((tmp_path / "smax" / "3m.vlt").iterdir()) == []


def test_a_damaged_dataset_is_not_exported(fresh_root, tmp_path, capsys):
    rec = datasets.collect(MAP, "random", episodes=8, seed=0, num_envs=16,
                           show_progress=False).record
    data = rec.path / "data" / "main_data.hdf5"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    code, _, err = bench(["datasets", "export", rec.dataset_id, "--format", "pettingzoo",
                          str(tmp_path / "out")], capsys)
    assert code == 1 and "fails its sha256 checksum" in one_line(err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.hdf5"))


# ------------------------------------------------------------------------- Minari metadata
def test_minari_normalised_scores_env_and_no_false_hints(heuristic_3m):
    ds = minari.load_dataset(heuristic_3m.dataset_id)
    random_return = RANDOM_RETURN[("smax", MAP)][0]
    np.testing.assert_allclose(
        minari.get_normalized_score(ds, np.array([random_return, MAX_RETURN])), [0.0, 1.0])
    heuristic = minari.get_normalized_score(ds, np.array(heuristic_3m.stats["return_mean"]))
    assert 0.3 < heuristic < 1.0  # the heuristic beats random, and nothing beats the best return
    meta = ds.storage.metadata
    assert "code_permalink" not in meta  # no made-up address
    assert "not hosted anywhere: `minari download` does not apply" in meta["description"]
    assert f"bench datasets show {heuristic_3m.dataset_id}" in meta["description"]
    assert heuristic_3m.meta["reference_scores"]["ref_min_score"] == random_return

    env = ds.recover_environment()
    assert env.observation_space == ds.observation_space
    assert env.action_space == ds.action_space
    obs, info = env.reset(seed=0)
    assert obs in ds.observation_space and info["avail_actions"].shape == (3, 8)
    rng, ret = np.random.default_rng(0), 0.0
    for _ in range(env_info(MAP).episode_limit):
        action = np.argmax(rng.random((3, 8)) * info["avail_actions"], axis=-1)
        obs, reward, terminated, truncated, info = env.step(action)
        ret += reward
        if terminated or truncated:
            break
    assert terminated or truncated
    assert set(info) == {"state", "avail_actions", "battle_won"}
    assert 0.0 <= ret <= MAX_RETURN + 0.01


@pytest.mark.slow
def test_the_random_reference_is_what_the_env_gives_now():
    """The table is a measurement; measured again, 3m gives the same within 3 standard errors."""
    mean, _ = measure_random_return(MAP)
    stored, sem = RANDOM_RETURN[("smax", MAP)]
    assert mean == pytest.approx(stored, abs=3 * sem)


def test_every_smax_map_has_a_random_reference():
    assert {m for b, m in RANDOM_RETURN if b == "smax"} == set(list_maps("smax"))


def test_an_export_imported_into_its_own_store_is_that_version(fresh_root, tmp_path, capsys):
    """Re-importing an export made a byte-identical second version (heuristic-v1), and
    `--dataset heuristic` then resolved to the duplicate: runs pretrained again, elsewhere."""
    datasets.collect("3m", "random", episodes=6, seed=0, num_envs=4, show_progress=False)
    code, _, err = bench(["datasets", "export", "smax/3m/random-v0", "--format", "pettingzoo",
                          str(tmp_path / "out")], capsys)
    assert code == 0, err
    (path,) = (tmp_path / "out").rglob("*.hdf5")
    code, out, err = bench(["datasets", "import", str(path), "--format", "pettingzoo"], capsys)
    assert code == 0 and "already stored as smax/3m/random-v0" in out, (out, err)
    assert store.list_ids() == ["smax/3m/random-v0"]
    # other episodes under the same header are new data: a version of their own
    with h5py.File(path, "r+") as f:
        state = f["episode_0/state"]
        state[0, 0] = 0.25 if state[0, 0] != 0.25 else 0.5
    code, out, err = bench(["datasets", "import", str(path), "--format", "pettingzoo"], capsys)
    assert code == 0, err
    assert store.list_ids() == ["smax/3m/random-v0", "smax/3m/random-v1"]
