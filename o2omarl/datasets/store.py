"""Versioned Minari datasets: write atomically, reuse identical settings, list, verify, delete.

Layout (Minari's own, so `minari list local` / `minari show` / `minari.load_dataset` work):

    $MINARI_DATASETS_PATH/smax/3m/heuristic-v0/data/main_data.hdf5   Minari's HDF5 episodes
    $MINARI_DATASETS_PATH/smax/3m/heuristic-v0/data/metadata.json    Minari's metadata
    $MINARI_DATASETS_PATH/smax/3m/heuristic-v0/o2omarl.json          ours: settings, statistics,
                                                                     versions, sha256 of data/*

A version is built in a hidden staging folder (Minari skips dot-folders) and renamed into place
only when complete, so a killed collection never leaves a dataset id behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from o2omarl.datasets.reference import reference_scores
from o2omarl.envs.base import EnvInfo
from o2omarl.episodes import FIELDS, MINARI_KEYS, Episode
from o2omarl.errors import BenchError, UsageError, did_you_mean
from o2omarl.locks import file_lock

SIDECAR = "o2omarl.json"
FORMAT = "o2omarl-dataset/1"
DATA_FILES = ("data/main_data.hdf5", "data/metadata.json")
_ID = re.compile(r"^(?P<backend>[^/]+)/(?P<map>[^/]+)/(?P<tier>[^/]+?)(-v(?P<version>\d+))?$")
PACKAGES = ("o2omarl", "jaxmarl", "jax", "minari", "h5py", "numpy", "torch")


def root(write: bool = False) -> Path:
    """Minari's dataset root: MINARI_DATASETS_PATH, else ~/.minari/datasets. Reading (list,
    show, verify, load, run) needs only a readable folder, so a shared read-only mount works, as
    with stock Minari; `write` (collect, import, delete) needs a writable one."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    path = Path(env) if env else Path.home() / ".minari" / "datasets"
    what = "MINARI_DATASETS_PATH" if env else "the default dataset root"
    try:
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
        if write and not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError("not writable")
        if not os.access(path, os.R_OK | os.X_OK):
            raise PermissionError("not readable")
    except OSError as e:  # a file in the way, no permission, a read-only or virtual filesystem
        why = e.strerror or str(e)
        fix = ("set MINARI_DATASETS_PATH to a writable folder to write datasets (reading works "
               "from a read-only one)") if write and path.is_dir() else \
            "set MINARI_DATASETS_PATH to a usable folder"
        raise UsageError(f"{what} {str(path)!r} is not a usable folder ({why}); {fix}") from None
    return path


def _private() -> Path:
    """Staging, locks and trash: a dot-folder inside the root (same filesystem, so renames are
    atomic) that Minari's listing skips."""
    path = root(write=True) / ".o2omarl"
    path.mkdir(exist_ok=True)
    return path


def make_id(backend: str, map_name: str, tier: str, version: int) -> str:
    return f"{backend}/{map_name}/{tier}-v{version}"


def parse_id(dataset_id: str) -> dict:
    m = _ID.match(dataset_id)
    if not m:
        raise UsageError(
            f"bad dataset id {dataset_id!r}; expected <backend>/<map>/<tier>-v<N>, "
            "e.g. smax/3m/heuristic-v0"
        )
    d = m.groupdict()
    d["version"] = None if d["version"] is None else int(d["version"])
    return d


@functools.cache  # one `git` call per process, not one per job of a sweep
def git_commit() -> str | None:
    """The commit of the o2omarl checkout that is running (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class DatasetRecord:
    """One stored version, as `bench datasets list/show` and the loader see it."""

    dataset_id: str
    path: Path
    meta: dict  # the sidecar

    @property
    def tier(self) -> str:
        return parse_id(self.dataset_id)["tier"]

    @property
    def version(self) -> int:
        return parse_id(self.dataset_id)["version"]

    @property
    def env(self) -> EnvInfo:
        return EnvInfo(**self.meta["env"])

    @property
    def stats(self) -> dict:
        return self.meta["stats"]

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


def _read_sidecar(path: Path) -> dict:
    try:
        return json.loads((path / SIDECAR).read_text())
    except FileNotFoundError:
        raise BenchError(f"dataset at {path} has no {SIDECAR}: not written by o2omarl") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"dataset at {path}: {SIDECAR} is not valid JSON ({e})") from None


def get(dataset_id: str) -> DatasetRecord:
    parse_id(dataset_id)
    path = root() / dataset_id
    if not path.is_dir():
        d = parse_id(dataset_id)
        raise UsageError(
            f"dataset {dataset_id!r} does not exist under {root()}; make it with "
            f"`bench collect --map {d['map']}` (see `bench datasets list`)"
        )
    return DatasetRecord(dataset_id, path, _read_sidecar(path))


def versions(backend: str, map_name: str, tier: str) -> list[int]:
    folder = root() / backend / map_name
    if not folder.is_dir():
        return []
    pat = re.compile(rf"^{re.escape(tier)}-v(\d+)$")
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := pat.match(p.name)))


def list_ids() -> list[str]:
    """Every o2omarl dataset id under the root (folders holding our sidecar)."""
    base = root()
    ids = [str(p.parent.relative_to(base)) for p in base.glob(f"*/*/*/{SIDECAR}")]
    return sorted(ids, key=lambda i: (i.rsplit("-v", 1)[0], int(i.rsplit("-v", 1)[1])))


def resolve(spec: str, map_name: str | None = None, backend: str = "smax") -> DatasetRecord:
    """A full id, an id without version (newest), or a bare tier of `map_name` (newest)."""
    if "/" not in spec:
        if map_name is None:
            raise UsageError(f"dataset {spec!r} is a bare tier; give --map or a full id")
        spec = f"{backend}/{map_name}/{spec}"
    d = parse_id(spec)
    if d["version"] is None:
        found = versions(d["backend"], d["map"], d["tier"])
        if not found:
            hint = f"--behaviour {d['tier']}" if d["tier"] in ("heuristic", "random") else (
                f"--tiers {d['tier']}")
            folder = root() / d["backend"] / d["map"]
            stored = sorted({p.name.rsplit("-v", 1)[0] for p in folder.glob("*-v*")})
            raise UsageError(
                f"no dataset {spec!r}{did_you_mean(d['tier'], stored)} under {root()}; "
                f"make it with `bench collect --map {d['map']} {hint}`"
            )
        spec = make_id(d["backend"], d["map"], d["tier"], found[-1])
    record = get(spec)
    if map_name is not None and record.env.map_name != map_name:
        raise UsageError(
            f"dataset {spec} is from map {record.env.map_name!r}, not {map_name!r}"
        )
    return record


def find_same(backend: str, map_name: str, tier: str, settings: dict) -> DatasetRecord | None:
    for v in versions(backend, map_name, tier):
        dataset_id = make_id(backend, map_name, tier, v)
        try:
            rec = get(dataset_id)
        except BenchError:
            continue  # damaged versions are never reused; `datasets verify` reports them
        if rec.meta.get("settings") == settings and all(
                (rec.path / f).is_file() and sha256(rec.path / f) == digest
                for f, digest in rec.meta.get("files", {}).items()):
            return rec
    return None


# SACo's discretisation: state features rounded to this many decimals. OG-MARL counts exact
# float states, all distinct on SMAX's continuous positions. SMAX's state features lie in
# [0, 1] (state format 3), so 0 splits each at 0.5. Measured on the four stored tiers: a 0.1
# grid gives 0.97-0.999 everywhere (no tier differs); this one separates 2s3z replay (0.99)
# from the medium tiers (0.87).
SACO_DECIMALS = 0


def saco(states: np.ndarray, actions: np.ndarray, decimals: int = SACO_DECIMALS) -> float:
    """Joint state-action coverage (SACo, Formanek et al. 2024, "Putting data at the centre of
    offline MARL"): distinct (state on a `decimals` grid, joint action) pairs / transitions.
    states (N, state_dim), actions (N, n_agents); 1: no pair repeats, near 0: a few pairs
    repeated over and over."""
    if len(states) == 0:
        return float("nan")
    cells = np.rint(np.asarray(states, np.float64) * 10**decimals).astype(np.int32)
    rows = np.ascontiguousarray(np.concatenate([cells, np.asarray(actions, np.int32)], axis=1))
    # each row as one opaque value: a 1-D unique, not a lexicographic sort of columns
    return len(np.unique(rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))))) \
        / len(rows)


def episode_stats(episodes: list[Episode]) -> dict:
    """The dataset card (`bench datasets show`, Minari's metadata, docs/results/tiers.md)."""
    returns = np.array([e.ret for e in episodes])
    lengths = np.array([e.length for e in episodes])
    ends = [e.terminated[-1] for e in episodes]
    return {
        "episodes": len(episodes),
        "steps": int(lengths.sum()),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "win_rate": float(np.mean([e.won for e in episodes])),
        "length_mean": float(lengths.mean()),
        "terminated_fraction": float(np.mean(ends)),
        "saco": saco(np.concatenate([e.state[:e.length] for e in episodes]),
                     np.concatenate([e.actions for e in episodes])),
        "saco_decimals": SACO_DECIMALS,
    }


def _minari_description(dataset_id: str, info: EnvInfo, text: str) -> str:
    """What `minari show` prints first: what the data is, and what Minari's fixed `Download`
    line (printed for every dataset) cannot say: this one is local, made by o2omarl."""
    ref = reference_scores(info)
    score = (f"`minari.get_normalized_score` maps the uniform-random policy's mean return "
             f"({ref['ref_min_score']:.2f}) to 0 and the best possible return "
             f"({ref['ref_max_score']:g}) to 1." if ref else
             f"No reference scores: the random return of {info.backend} map {info.map_name} "
             "has not been measured (o2omarl/datasets/reference.py).")
    return (f"{text}. A local o2omarl dataset, not hosted anywhere: `minari download` does not "
            f"apply; how it was made (settings, behaviour, source): `bench datasets show "
            f"{dataset_id}`. Spaces are joint over the {info.n_agents} "
            "agents; infos hold the global state, the available actions and battle_won. "
            "`recover_environment()` gives one battle with these spaces (needs o2omarl "
            f"installed); the suite's batched env is `o2omarl.envs.make_env({info.map_name!r}, "
            f"N, {info.backend!r})`. {score}")


def _minari_write(data_dir: Path, dataset_id: str, info: EnvInfo, episodes, description):
    import gymnasium as gym
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    from o2omarl.datasets.gym_env import env_spec

    obs_space = gym.spaces.Box(-np.inf, np.inf, (info.n_agents, info.obs_dim), np.float32)
    act_space = gym.spaces.MultiDiscrete([info.n_actions] * info.n_agents)
    # jpeg_encoding=False: Minari would otherwise treat 2-3D uint8 arrays as images, lossy.
    storage = MinariStorage.new(
        data_dir, observation_space=obs_space, action_space=act_space,
        env_spec=env_spec(info), data_format="hdf5", jpeg_encoding=False,
    )
    # No code_permalink: the suite has no public address yet, and a made-up one misleads.
    storage.update_metadata({
        "dataset_id": dataset_id,
        "minari_version": importlib_metadata.version("minari"),
        "algorithm_name": description["behaviour"],
        "author": {"o2omarl"},
        "description": _minari_description(dataset_id, info, description["text"]),
        "requirements": [f"jaxmarl=={importlib_metadata.version('jaxmarl')}"],
        "dataset_card": description["card"],  # the numbers `bench datasets show` gives
        **(reference_scores(info) or {}),
    })
    def stored(e: Episode) -> EpisodeBuffer:
        keys = {MINARI_KEYS[f]: getattr(e, f) for f in FIELDS}
        infos = {k.split("/", 1)[1]: v for k, v in keys.items() if k.startswith("infos/")}
        return EpisodeBuffer(infos=infos,
                             **{k: v for k, v in keys.items() if not k.startswith("infos/")})

    storage.update_episodes(stored(e) for e in episodes)


def write(
    info: EnvInfo,
    tier: str,
    settings: dict,
    episodes: list[Episode],
    behaviour: dict,
    extra: dict | None = None,
    text: str | None = None,
) -> DatasetRecord:
    """Store `episodes` as the next version of `<backend>/<map>/<tier>`, atomically.

    Call under `claim()` so that the settings check and the new version are one step.
    `text` opens Minari's description (default: tier, map, episodes, behaviour, epsilon).
    """
    versions_now = versions(info.backend, info.map_name, tier)
    version = versions_now[-1] + 1 if versions_now else 0
    dataset_id = make_id(info.backend, info.map_name, tier, version)
    stage = _private() / "staging" / uuid.uuid4().hex
    try:
        stage.mkdir(parents=True)
        text = text or (f"{tier} tier on {info.backend} map {info.map_name}: {len(episodes)} "
                        f"episodes of behaviour {behaviour['name']}, epsilon "
                        f"{settings.get('epsilon', 0)}")
        stats = episode_stats(episodes)
        _minari_write(stage / "data", dataset_id, info, episodes,
                      {"behaviour": behaviour["name"], "text": text, "card": stats})
        meta = {
            "format": FORMAT,
            "dataset_id": dataset_id,
            "tier": tier,
            "settings": settings,
            "env": info.to_dict(),
            "behaviour": behaviour,
            "stats": stats,
            "reference_scores": reference_scores(info),  # as in Minari's metadata; None: none
            "packages": package_versions(),
            "git_commit": git_commit(),  # the code that wrote it (None: not a git checkout)
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {f: sha256(stage / f) for f in DATA_FILES},
            **(extra or {}),
        }
        tmp = stage / (SIDECAR + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp, stage / SIDECAR)
        final = root(write=True) / dataset_id
        final.parent.mkdir(parents=True, exist_ok=True)
        _ensure_namespace(f"{info.backend}/{info.map_name}")
        os.rename(stage, final)  # atomic; fails rather than overwrite an existing version
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return DatasetRecord(dataset_id, final, meta)


def _ensure_namespace(namespace: str) -> None:
    """Give Minari its namespace metadata file, as `minari.create_dataset_from_buffers` would."""
    from minari.namespace import create_namespace, list_local_namespaces

    if namespace not in list_local_namespaces():
        with contextlib.suppress(ValueError):  # created meanwhile by another process
            create_namespace(namespace, description=f"o2omarl datasets for {namespace}")


def claim(backend: str, map_name: str, tier: str):
    """Hold the writer lock of one dataset family (reuse check + write as one step): a second
    `bench collect` of the same tier waits, then finds the first one's version."""
    return file_lock(_private() / "locks" / f"{backend}__{map_name}__{tier}.lock",
                     f"dataset family {backend}/{map_name}/{tier}", wait=True)


def delete(dataset_id: str) -> Path:
    rec = get(dataset_id)
    trash = _private() / "trash" / uuid.uuid4().hex
    trash.parent.mkdir(parents=True, exist_ok=True)
    os.rename(rec.path, trash)  # the id disappears at once; the bytes go after
    shutil.rmtree(trash, ignore_errors=True)
    return rec.path


def clean_staging(max_age_s: float = 3600) -> None:
    """Remove what killed writers left in staging (older than an hour: not still being written)."""
    stage = _private() / "staging"
    if stage.is_dir():
        for p in stage.iterdir():
            if time.time() - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p, ignore_errors=True)
