"""Datasets in and out of the suite: OG-MARL's flashbax Vault and a PettingZoo-style HDF5 file
with per-agent arrays (both layouts: README, "Export and import").

`export` writes a stored version (checked by `verify` first: a damaged one is refused) under
DIR, built under a hidden name beside its final one and renamed into place when complete.
`import_dataset` reads such a vault or file, checks every episode against the map (shapes, one
end flag on the last step, actions in range and available, finite values, one team reward and
end per step), and stores it through `store.write` as the next version of a tier: atomic and
checksummed like a collection; importing the same bytes again reuses that version.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from o2omarl.atomic import replacing
from o2omarl.datasets import store
from o2omarl.datasets.loader import check_fits, verify
from o2omarl.datasets.store import DATA_FILES, DatasetRecord
from o2omarl.envs import DEFAULT_BACKEND, env_info
from o2omarl.envs.base import EnvInfo
from o2omarl.episodes import FIELDS, MINARI_KEYS, Episode
from o2omarl.errors import BenchError, UsageError, one_of
from o2omarl.progress import Progress

FORMATS = ("og-marl", "pettingzoo")
HEADER_FORMAT = {"og-marl": "o2omarl-og-marl/1", "pettingzoo": "o2omarl-pettingzoo/1"}
# What OG-MARL's vault layout has no place for (terminal observations, battle_won), beside the
# vault's own files, so that a round trip through OG-MARL's format loses nothing.
VAULT_EXTRAS = "o2omarl_extras.npz"
VAULT_KEYS = ("observations", "actions", "rewards", "terminals", "truncations", "infos/legals",
              "infos/state")
AGENT_KEYS = ("observations", "action_mask", "actions", "rewards", "terminations", "truncations")
CHUNK_STEPS = 1 << 16  # the vault is written ~65k steps at a time: memory stays bounded
FLASHBAX_HINT = ('--format og-marl needs flashbax (OG-MARL\'s Vault): pip install '
                 '"flashbax==0.1.3"')


def agent_names(n_agents: int) -> list[str]:
    """PettingZoo-style agent names (OG-MARL's SMAC wrapper uses the same)."""
    return [f"agent_{i}" for i in range(n_agents)]


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise one_of("format", fmt, FORMATS)


def _flashbax():
    try:
        from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
        from flashbax.vault import Vault
    except ImportError:
        raise BenchError(FLASHBAX_HINT) from None
    return Vault, TrajectoryBufferState


@contextlib.contextmanager
def _quiet():
    """flashbax's Vault prints where it writes and reads; the CLI prints that itself."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# ------------------------------------------------------------------------------------- export
def export_path(dataset_id: str, fmt: str, out_dir: Path) -> Path:
    """Where `export` puts a version: OG-MARL's `<env>/<scenario>.vlt/<uid>` vault folder, or
    `<backend>/<map>/<tier>-vN.hdf5`."""
    d = store.parse_id(dataset_id)
    version = f"{d['tier']}-v{d['version']}"
    if fmt == "og-marl":
        return out_dir / d["backend"] / f"{d['map']}.vlt" / version
    return out_dir / d["backend"] / d["map"] / f"{version}.hdf5"


def export(dataset_id: str, fmt: str, out_dir,
           show_progress: bool = True) -> tuple[DatasetRecord, Path]:
    """Write stored version `dataset_id` (without version: the newest) in format `fmt` under
    `out_dir`; returns the version exported and the path written."""
    _check_format(fmt)
    if fmt == "og-marl":
        _flashbax()  # before any work
    record = store.resolve(dataset_id)  # an id without version: the newest
    dataset_id = record.dataset_id
    problems = verify(record)
    if problems:
        raise BenchError(f"dataset {dataset_id} is damaged ({problems[0]}); nothing was "
                         f"exported; run `bench datasets verify {dataset_id}`")
    out_dir = Path(out_dir)
    target = export_path(dataset_id, fmt, out_dir)
    if target.exists():
        raise UsageError(f"{target} already exists; delete it or export to another DIR")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"DIR {str(out_dir)!r} is not a usable folder ({e.strerror or e})") \
            from None
    header = {"format": HEADER_FORMAT[fmt], "dataset_id": dataset_id, "tier": record.tier,
              "agents": agent_names(record.env.n_agents),
              **{k: record.meta[k] for k in ("env", "behaviour", "settings", "stats", "files")}}
    bar = Progress(f"export {dataset_id} as {fmt}", record.stats["episodes"], "episodes") \
        if show_progress else None
    episodes = _stored_episodes(record, bar)
    if fmt == "og-marl":
        _write_vault(episodes, target, header)
    else:
        _write_pettingzoo(episodes, target, header)
    if bar:
        bar.close()
    return record, target


def _stored_episodes(record: DatasetRecord, bar: Progress | None = None):
    """Every episode of a stored version, whole (battle_won included), in order."""
    with h5py.File(record.path / DATA_FILES[0], "r") as f:
        for e in range(len(f)):
            group = f[f"episode_{e}"]
            yield Episode(**{field: group[MINARI_KEYS[field]][()] for field in FIELDS})
            if bar:
                bar.update(e + 1)


def _write_pettingzoo(episodes, target: Path, header: dict) -> None:
    agents = header["agents"]
    with replacing(target) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = header["format"]
        f.attrs["agents"] = agents
        f.attrs["o2omarl"] = json.dumps(header)
        for e, ep in enumerate(episodes):
            group = f.create_group(f"episode_{e}")
            group["state"], group["battle_won"] = ep.state, ep.battle_won
            for i, name in enumerate(agents):
                per_agent = (ep.obs[:, i], ep.avail[:, i], ep.actions[:, i], ep.reward,
                             ep.terminated, ep.truncated)
                for key, value in zip(AGENT_KEYS, per_agent):
                    group[f"{name}/{key}"] = value


def _vault_chunk(episodes: list[Episode]) -> dict:
    """OG-MARL's experience tree for consecutive episodes: (1, steps, ...) arrays, one row per
    step, the terminal observation dropped; team reward and end flags repeated per agent."""
    def steps(field):
        return np.concatenate([getattr(e, field)[: e.length] for e in episodes])[None]

    n = episodes[0].obs.shape[1]

    def per_agent(field, dtype):
        return np.repeat(steps(field)[..., None], n, axis=-1).astype(dtype)

    return {"observations": steps("obs"), "actions": steps("actions").astype(np.int32),
            "rewards": per_agent("reward", np.float32),
            "terminals": per_agent("terminated", bool), "truncations": per_agent("truncated", bool),
            "infos": {"legals": steps("avail").astype(np.float32), "state": steps("state")}}


def _write_vault(episodes, target: Path, header: dict) -> None:
    Vault, BufferState = _flashbax()
    stage = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    extras: dict[str, list] = {k: [] for k in ("final_observations", "final_state",
                                                "final_legals", "battle_won", "lengths")}
    vault, chunk = None, []

    def flush():
        nonlocal vault
        exp = _vault_chunk(chunk)
        length = exp["rewards"].shape[1]
        with _quiet():
            if vault is None:
                vault = Vault(vault_name=target.parent.name,
                              rel_dir=str(target.parent.parent.resolve()),
                              vault_uid=stage.name, experience_structure=exp,
                              metadata={"o2omarl": header})
            vault.write(BufferState(experience=exp, current_index=np.int32(length),
                                    is_full=np.bool_(False)), source_interval=(0, length))
        chunk.clear()

    try:
        steps = 0
        for ep in episodes:
            chunk.append(ep)
            extras["final_observations"].append(ep.obs[-1])
            extras["final_state"].append(ep.state[-1])
            extras["final_legals"].append(ep.avail[-1])
            extras["battle_won"].append(ep.battle_won)
            extras["lengths"].append(ep.length)
            steps += ep.length
            if steps >= CHUNK_STEPS:
                flush()
                steps = 0
        if chunk:
            flush()
        won = np.concatenate(extras.pop("battle_won"))  # per step, like the vault's rows
        np.savez(stage / VAULT_EXTRAS, battle_won=won,
                 **{k: np.stack(v) for k, v in extras.items()})
        os.rename(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------- import
@dataclass
class ImportResult:
    record: DatasetRecord
    reused: bool  # the same bytes were imported before: that version, nothing written
    filled_in: list[str]  # what the source lacked and how it was filled in


def import_dataset(path, fmt: str, map_name: str | None = None, tier: str | None = None,
                   backend: str | None = None) -> ImportResult:
    """Store the vault folder or HDF5 file at `path` (format `fmt`) as a new dataset version.

    The map comes from the o2omarl header an export wrote, else from `map_name`; the tier from
    `tier`, else the header, else `imported`."""
    _check_format(fmt)
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give the vault folder or .hdf5 file that "
                         "`bench datasets export` printed")
    header = _vault_header(path) if fmt == "og-marl" else _pettingzoo_header(path)
    info = _target_env(header, map_name, backend, path)
    tier = tier or (header or {}).get("tier") or "imported"
    if not re.fullmatch(r"[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*", tier) or re.search(r"-v\d+$", tier):
        raise UsageError(f"bad --tier {tier!r}; expected letters, digits, _ . and inner dashes, "
                         "not ending in -v<N> (the version is added), e.g. medium-replay")
    if fmt == "og-marl":
        episodes, filled_in = _vault_episodes(path, info)
    else:
        episodes, filled_in = _pettingzoo_episodes(path, info), []
    _check_episodes(episodes, info, path)
    source = _stored_source(header, episodes)
    if source is not None:  # an export of a version this store holds: that version
        return ImportResult(source, True, filled_in)
    digest = _content_sha256(path)
    settings = {"backend": info.backend, "map": info.map_name, "tier": tier,
                "imported": {"format": fmt, "sha256": digest},
                "state_format": info.state_format}
    source = {"format": fmt, "path": str(path.resolve()), "sha256": digest,
              "dataset_id": (header or {}).get("dataset_id"), "filled_in": filled_in}
    behaviour = dict((header or {}).get("behaviour") or {"name": f"unknown ({fmt} import)"})
    text = (f"{tier} tier on {info.backend} map {info.map_name}: {len(episodes)} episodes "
            f"imported from {fmt} (behaviour {behaviour['name']})")
    store.clean_staging()
    with store.claim(info.backend, info.map_name, tier):
        same = store.find_same(info.backend, info.map_name, tier, settings)
        if same is not None:
            return ImportResult(same, True, same.meta.get("imported", {}).get("filled_in", []))
        record = store.write(info, tier, settings, episodes, behaviour,
                             extra={"imported": source}, text=text)
    return ImportResult(record, False, filled_in)


def _stored_source(header: dict | None, episodes: list[Episode]) -> DatasetRecord | None:
    """The stored version this file was exported from, if this store holds it unchanged and
    the file's episodes are its episodes: importing it again made a byte-identical duplicate
    version, to which `--dataset TIER` then resolved."""
    dataset_id, files = (header or {}).get("dataset_id"), (header or {}).get("files")
    if not dataset_id or not files:
        return None
    try:
        record = store.get(dataset_id)
    except BenchError:
        return None
    if record.meta.get("files") != files or verify(record):
        return None
    stored = list(_stored_episodes(record))
    if len(stored) != len(episodes):
        return None
    same = all(np.array_equal(getattr(a, f), getattr(b, f))
               for a, b in zip(stored, episodes) for f in FIELDS)
    return record if same else None


def _target_env(header: dict | None, map_name, backend, path: Path) -> EnvInfo:
    """The map to check and store against: `--map` (checked against the header if both)."""
    src = (header or {}).get("env")
    if map_name is None and src is None:
        raise UsageError(f"{path} does not say which map it was recorded on; give --map "
                         "(`bench maps` lists them)")
    try:
        info = env_info(map_name or src["map_name"],
                        backend or (src or {}).get("backend", DEFAULT_BACKEND))
        if src is not None:
            check_fits(DatasetRecord(str(path), path, {"env": src}), info)
    except (TypeError, KeyError) as e:
        raise UsageError(f"{path}: its o2omarl header is malformed ({e!r})") from None
    return info


def _content_sha256(path: Path) -> str:
    """Of a file, or of every file of a folder (names and bytes): what makes two imports equal."""
    h = hashlib.sha256()
    for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
        h.update(str(f.relative_to(path) if f != path else "").encode() + b"\0")
        h.update(store.sha256(f).encode())
    return h.hexdigest()


def _check_shape(where: str, name: str, array, want: tuple, info: EnvInfo) -> None:
    if array.shape != want:
        raise UsageError(
            f"{where}: {name} has shape {array.shape}, expected {want} on {info.backend} map "
            f"{info.map_name} ({info.n_agents} agents, obs_dim {info.obs_dim}, state_dim "
            f"{info.state_dim}, {info.n_actions} actions)")


def _team(where: str, name: str, per_agent: np.ndarray) -> np.ndarray:
    """(T, n_agents) -> (T,): o2omarl datasets hold one team reward and one end per step."""
    differ = np.flatnonzero((per_agent != per_agent[:, :1]).any(axis=1))
    if len(differ):
        raise UsageError(f"{where}: {name} differ between agents at step {differ[0]}; o2omarl "
                         f"datasets hold one team value per step")
    return per_agent[:, 0]


def _integers(where: str, name: str, array: np.ndarray) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.integer):
        raise UsageError(f"{where}: {name} has dtype {array.dtype}; expected integer actions")
    return array.astype(np.int64)


def _vault_header(path: Path) -> dict | None:
    meta = path / "metadata.json"
    if not (path.is_dir() and meta.is_file()):
        raise UsageError(f"{path} is not a flashbax Vault folder (no metadata.json); --format "
                         "og-marl takes DIR/<env>/<scenario>.vlt/<uid>, as `bench datasets "
                         "export` prints it")
    try:
        vault_meta = json.loads(meta.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{meta} is not valid JSON ({e}); the vault is damaged") from None
    if "structure_shape" not in vault_meta:
        raise UsageError(f"{meta} is not a flashbax Vault's metadata (no structure_shape)")
    return vault_meta.get("o2omarl")


def _read_vault(path: Path) -> dict:
    """The whole vault as numpy arrays by `VAULT_KEYS` name, read by flashbax's own Vault."""
    Vault, _ = _flashbax()
    try:
        with _quiet():
            tree = Vault(vault_name=path.parent.name, rel_dir=str(path.parent.parent.resolve()),
                         vault_uid=path.name).read().experience
    except Exception as e:  # noqa: BLE001 - tensorstore, orbax and asserts all mean "unreadable"
        raise BenchError(f"cannot read the vault at {path} ({type(e).__name__}: "
                         f"{(str(e).splitlines() or [''])[0]}); it is damaged or not a vault") \
            from None
    arrays = {}
    for key in VAULT_KEYS:
        node = tree
        for part in key.split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise UsageError(f"vault {path} has no {key.replace('/', '.')}; an OG-MARL vault "
                             f"holds {', '.join(k.replace('/', '.') for k in VAULT_KEYS)}")
        arrays[key] = np.asarray(node)
    return arrays


def _vault_episodes(path: Path, info: EnvInfo) -> tuple[list[Episode], list[str]]:
    x = _read_vault(path)
    n, where = info.n_agents, f"vault {path}"
    B, S = x["observations"].shape[:2] if x["observations"].ndim >= 2 else (0, 0)
    for key, tail in (("observations", (n, info.obs_dim)), ("actions", (n,)),
                      ("rewards", (n,)), ("terminals", (n,)), ("truncations", (n,)),
                      ("infos/legals", (n, info.n_actions)), ("infos/state", (info.state_dim,))):
        _check_shape(where, key.replace("/", "."), x[key], (B, S) + tail, info)
    steps = []  # one (start, end, row) per episode
    for b in range(B):
        done = _team(where, "terminals", x["terminals"][b] != 0) | \
            _team(where, "truncations", x["truncations"][b] != 0)
        ends = np.flatnonzero(done)
        if not len(ends) or ends[-1] != S - 1:
            rest = S - 1 - (ends[-1] if len(ends) else -1)
            raise UsageError(f"{where}: its last {rest} steps end no episode (no terminal or "
                             "truncation); an importable vault holds whole episodes")
        steps += [(s, e + 1, b) for s, e in zip(np.r_[0, ends[:-1] + 1], ends)]
    extras = _vault_extras(path, steps, info)
    episodes = []
    for k, (s, e, b) in enumerate(steps):
        rows = slice(s, e)
        last = (x["observations"][b, e - 1], x["infos/state"][b, e - 1],
                x["infos/legals"][b, e - 1] != 0)
        final = tuple(extras[key][k] for key in ("final_observations", "final_state",
                                                  "final_legals")) if extras else last
        episodes.append(Episode(
            obs=np.concatenate([x["observations"][b, rows], final[0][None]]).astype(np.float32),
            state=np.concatenate([x["infos/state"][b, rows], final[1][None]]).astype(np.float32),
            avail=np.concatenate([x["infos/legals"][b, rows] != 0, final[2][None] != 0]),
            actions=_integers(where, "actions", x["actions"][b, rows]),
            reward=_team(where, "rewards", x["rewards"][b, rows]).astype(np.float32),
            terminated=x["terminals"][b, rows, 0] != 0,
            truncated=x["truncations"][b, rows, 0] != 0,
            battle_won=(extras["battle_won"][s:e] if extras else np.zeros(e - s, bool))))
    filled_in = [] if extras else [
        "the terminal observation, state and legals (the last step's repeated; the vault has "
        "none)", "battle_won (False: the vault does not record it)"]
    return episodes, filled_in


def _vault_extras(path: Path, steps: list, info: EnvInfo) -> dict | None:
    """The export's extras, checked against the vault's episodes; None for a vault without."""
    file = path / VAULT_EXTRAS
    if not file.exists():
        return None
    where = f"vault {path}: {VAULT_EXTRAS}"
    try:
        with np.load(file) as z:
            extras = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise BenchError(f"{where} cannot be read ({e}); the vault is damaged") from None
    E, n = len(steps), info.n_agents
    want = {"final_observations": (E, n, info.obs_dim), "final_state": (E, info.state_dim),
            "final_legals": (E, n, info.n_actions), "lengths": (E,),
            "battle_won": (sum(e - s for s, e, _ in steps),)}
    for key, shape in want.items():
        if key not in extras:
            raise UsageError(f"{where} lacks {key}")
        _check_shape(where, key, extras[key], shape, info)
    if (extras["lengths"] != [e - s for s, e, _ in steps]).any():
        raise UsageError(f"{where} does not match the vault's episode lengths")
    return extras


def _pettingzoo_header(path: Path) -> dict | None:
    if not path.is_file() or not h5py.is_hdf5(path):
        raise UsageError(f"{path} is not an HDF5 file; --format pettingzoo takes the .hdf5 file "
                         "that `bench datasets export ID --format pettingzoo DIR` printed")
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("o2omarl")
        return json.loads(raw) if raw is not None else None
    except OSError as e:
        raise BenchError(f"{path} cannot be read ({e}); the file is damaged") from None
    except (json.JSONDecodeError, TypeError) as e:
        raise UsageError(f"{path}: its o2omarl attribute is not JSON ({e})") from None


def _pettingzoo_episodes(path: Path, info: EnvInfo) -> list[Episode]:
    n = info.n_agents
    episodes = []
    try:
        with h5py.File(path, "r") as f:
            agents = [a.decode() if isinstance(a, bytes) else str(a)
                      for a in f.attrs.get("agents", agent_names(n))]
            if len(agents) != n:
                raise UsageError(f"{path} has {len(agents)} agents ({', '.join(agents)}); "
                                 f"{info.backend} map {info.map_name} has {n}")
            names = [k for k in f if k.startswith("episode_")]
            if sorted(names) != sorted(f"episode_{e}" for e in range(len(names))) or not names:
                raise UsageError(f"{path} holds no episode_0 ... episode_<E-1> groups; the "
                                 "layout: README, Datasets, Export and import")
            for e in range(len(names)):
                episodes.append(_pettingzoo_episode(f[f"episode_{e}"], agents, info,
                                                    f"{path}: episode_{e}"))
    except KeyError as e:
        raise UsageError(f"{path} lacks a dataset of the layout ({e}); the layout: README, "
                         "Datasets, Export and import") from None
    except OSError as e:
        raise BenchError(f"{path} cannot be read ({e}); the file is damaged") from None
    return episodes


def _pettingzoo_episode(group, agents: list[str], info: EnvInfo, where: str) -> Episode:
    T = group[f"{agents[0]}/rewards"].shape[0]
    want = {"observations": (T + 1, info.obs_dim), "action_mask": (T + 1, info.n_actions),
            "actions": (T,), "rewards": (T,), "terminations": (T,), "truncations": (T,)}
    per_agent = {}
    for key, shape in want.items():
        for name in agents:
            _check_shape(where, f"{name}/{key}", group[f"{name}/{key}"], shape, info)
        per_agent[key] = np.stack([group[f"{name}/{key}"][()] for name in agents], axis=1)
    for key, shape in (("state", (T + 1, info.state_dim)), ("battle_won", (T,))):
        _check_shape(where, key, group[key], shape, info)
    return Episode(obs=per_agent["observations"].astype(np.float32),
                   state=group["state"][()].astype(np.float32),
                   avail=per_agent["action_mask"] != 0,
                   actions=_integers(where, "actions", per_agent["actions"]),
                   reward=_team(where, "rewards", per_agent["rewards"]).astype(np.float32),
                   terminated=_team(where, "terminations", per_agent["terminations"] != 0),
                   truncated=_team(where, "truncations", per_agent["truncations"] != 0),
                   battle_won=group["battle_won"][()] != 0)


def _check_episodes(episodes: list[Episode], info: EnvInfo, path: Path) -> None:
    """What a stored dataset guarantees, checked before anything is written."""
    if not episodes:
        raise UsageError(f"{path} holds no episodes")
    for e, ep in enumerate(episodes):
        where, T = f"{path}: episode {e}", ep.length
        if not 1 <= T <= info.episode_limit:
            raise UsageError(f"{where} has {T} steps; map {info.map_name} allows 1 to "
                             f"{info.episode_limit}")
        ends = ep.terminated | ep.truncated
        if ends[:-1].any() or not ep.terminated[-1] ^ ep.truncated[-1]:
            raise UsageError(f"{where}: expected exactly one end flag (terminal or truncation) "
                             f"on its last step, found terminals at {np.flatnonzero(ep.terminated)}"
                             f" and truncations at {np.flatnonzero(ep.truncated)}")
        bad = np.argwhere((ep.actions < 0) | (ep.actions >= info.n_actions))
        if len(bad):
            t, i = bad[0]
            raise UsageError(f"{where} step {t} agent {i}: action {ep.actions[t, i]} is not in "
                             f"0..{info.n_actions - 1}")
        taken = np.take_along_axis(ep.avail[:T], ep.actions[..., None], -1)[..., 0]
        bad = np.argwhere(~taken)
        if len(bad):
            t, i = bad[0]
            raise UsageError(f"{where} step {t} agent {i}: action {ep.actions[t, i]} is marked "
                             "unavailable by its action mask (masks misaligned by a step?)")
        for name, arr in (("observations", ep.obs), ("state", ep.state), ("rewards", ep.reward)):
            if not np.isfinite(arr).all():
                raise UsageError(f"{where} has non-finite (NaN or inf) {name}")
