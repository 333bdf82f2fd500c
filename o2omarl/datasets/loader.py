"""Read stored versions back: padded episode arrays for training, and integrity checks.

Reads the HDF5 file with h5py directly (the layout Minari wrote) rather than iterating Minari
episode objects: one array copy per field per episode, fast enough for millions of steps.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np

from o2omarl.datasets.store import (
    DATA_FILES,
    SACO_DECIMALS,
    DatasetRecord,
    resolve,
    saco,
    sha256,
)
from o2omarl.envs.base import EnvInfo
from o2omarl.episodes import FIELDS, MINARI_KEYS, PER_OBSERVATION, SPEC, EpisodeArrays
from o2omarl.errors import BenchError, UsageError

# Why data of an older state format cannot be mixed with the current one, by new format.
STATE_FORMAT_CHANGES = {
    3: " (every world-state feature in [0, 1]; format 2 left SMAX's raw weapon cooldown, which "
       "falls without a floor while a unit holds fire and made QMIX's mixer diverge)",
}


def check_fits(record: DatasetRecord, env: EnvInfo) -> None:
    """Refuse a dataset recorded on another map or with other shapes than `env`."""
    data_env = record.env
    if (data_env.backend, data_env.map_name) != (env.backend, env.map_name):
        raise UsageError(
            f"dataset {record.dataset_id} is from {data_env.backend} map {data_env.map_name!r}, "
            f"but the environment is {env.backend} map {env.map_name!r}"
        )
    if data_env.state_format != env.state_format:
        raise UsageError(
            f"dataset {record.dataset_id} was recorded in state format {data_env.state_format}, "
            f"but this o2omarl encodes format {env.state_format}"
            + (STATE_FORMAT_CHANGES.get(env.state_format, "") if data_env.state_format
               < env.state_format else "")
            + f"; collect it again (`bench collect --map {env.map_name} ...`), which makes a "
            "new version")
    if data_env.shapes() != env.shapes():
        diff = {k: (v, env.shapes()[k]) for k, v in data_env.shapes().items()
                if env.shapes()[k] != v}
        raise UsageError(
            f"dataset {record.dataset_id} does not fit map {env.map_name!r}: "
            + ", ".join(f"{k} {a} in the dataset vs {b} in the env" for k, (a, b) in diff.items())
        )


# A stored field may be any width of its kind (float64 obs read into float32 arrays).
_KINDS = {"f": np.floating, "i": np.integer, "b": np.bool_}


def _expected(info: EnvInfo, T: int) -> dict:
    """Stored key -> (shape, dtype kind) of an episode of T steps (from episodes.SPEC)."""
    return {field.stored: (field.shape(info, T), _KINDS[np.dtype(field.dtype).kind])
            for field in SPEC.values()}


# Training needs no battle_won per step (the episode's last reward and termination say it);
# opening a dataset costs as much as reading a small one. `verify` still checks it.
_NOT_LOADED = ("infos/battle_won",)


def _open_episode(f: h5py.File, e: int, info: EnvInfo, skip=()) -> dict:
    """Episode e's datasets as low-level h5py ids (those that exist), by key. The high-level
    Group/Dataset objects cost ~2 ms per episode in Python; these ids a fraction of that."""
    try:
        group = h5py.h5g.open(f.id, f"episode_{e}".encode())
    except KeyError:
        return {}
    found = {}
    for key in _expected(info, 1):
        if key in skip:
            continue
        try:
            found[key] = h5py.h5d.open(group, key.encode())
        except KeyError:
            pass
    return found


def _episode_problem(ep, info: EnvInfo, dtypes: bool = True, skip=()) -> str | None:
    """What is wrong with one episode (`ep`: a Group or `_open_episode`'s dict), or None.

    `dtypes=False` checks presence and shapes only (what reading into fixed arrays needs);
    keys in `skip` are not checked."""
    if "rewards" not in ep:
        return "has no rewards"
    T = ep["rewards"].shape[0]
    if T == 0 or T > info.episode_limit:
        return f"has {T} steps (limit {info.episode_limit})"
    for key, (shape, kind) in _expected(info, T).items():
        if key in skip:
            continue
        if key not in ep:
            return f"lacks {key}"
        ds = ep[key]
        if ds.shape != shape:
            return f"{key} has shape {ds.shape}, expected {shape}"
        if dtypes and not np.issubdtype(ds.dtype, kind):
            return f"{key} has dtype {ds.dtype}, expected {kind.__name__}"
    return None


def load(record: DatasetRecord | str, env: EnvInfo | None = None,
         map_name: str | None = None) -> EpisodeArrays:
    """All episodes of a version as padded arrays ready for episode-batch sampling.

    `record`: a stored version, or what `bench run --dataset` accepts: a full id
    (`smax/3m/heuristic-v0`), an id without version (the newest), or a bare tier (`medium`) of
    `map_name` (default: `env`'s map).

    Refuses a version whose files fail their checksums (a flipped byte can decode silently) or
    whose values are not finite (NaN/inf would poison every update); a failed checksum wins
    over any other problem found while reading.

    The episodes are read in a thread of their own while this one computes the checksum
    (hashlib releases the GIL; hashing first cost a third of the load time). The thread is not
    only for overlap: HDF5's many small allocations fragment the malloc arena of the thread
    that makes them (glibc gives threads their own), and in the main thread's arena they made
    every later torch allocation ~5x slower and offline updates ~20% slower.
    """
    if isinstance(record, str):
        record = resolve(record, map_name or (env.map_name if env else None),
                         env.backend if env else "smax")
    if env is not None:
        check_fits(record, env)
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(_read_episodes, record, stop)
        try:
            problems = _checksum_problems(record)
            try:
                out = reading.result()
            except BenchError:
                _raise_checksum(record, problems)
                raise
        except BaseException:  # Ctrl-C included: the reader stops at its next episode
            stop.set()
            raise
    _raise_checksum(record, problems)
    return out


def _read_episodes(record: DatasetRecord, stop: threading.Event) -> EpisodeArrays:
    info = record.env
    E = int(record.stats["episodes"])
    out = EpisodeArrays.zeros(E, info)
    fields = [(MINARI_KEYS[f], getattr(out, f), int(f in PER_OBSERVATION)) for f in FIELDS
              if MINARI_KEYS[f] not in _NOT_LOADED]
    path = record.path / DATA_FILES[0]
    try:
        with h5py.File(path, "r") as f:
            if len(f) != E:
                raise BenchError(f"dataset {record.dataset_id} holds {len(f)} episodes, "
                                 f"its metadata says {E}; run `bench datasets verify`")
            for e in range(E):
                if stop.is_set():
                    raise BenchError("loading stopped")
                ep = _open_episode(f, e, info, skip=_NOT_LOADED)
                # One writer wrote every episode and the checksum proves the file unchanged:
                # dtypes are checked on the first episode, shapes (which the reads rely on) on all.
                problem = _episode_problem(ep, info, dtypes=e == 0, skip=_NOT_LOADED)
                if problem:
                    raise BenchError(f"dataset {record.dataset_id}: episode {e} {problem}")
                L = ep["rewards"].shape[0]
                for key, arr, extra in fields:
                    # Straight into the padded array (shapes were checked just above).
                    ep[key].read(h5py.h5s.ALL, h5py.h5s.ALL, arr[e, : L + extra])
                out.filled[e, :L] = True
                _check_finite(record, e, out.reward[e, :L], out.obs[e, : L + 1],
                              out.state[e, : L + 1])
    except (OSError, KeyError) as exc:
        raise BenchError(f"dataset {record.dataset_id} is corrupt ({path}: {exc}); "
                         "run `bench datasets verify` and collect it again") from None
    return out


def _checksum_problems(record: DatasetRecord) -> list[str]:
    problems = []
    for rel, digest in record.meta.get("files", {}).items():
        p = record.path / rel
        if not p.is_file():
            problems.append(f"{rel} is missing")
        elif sha256(p) != digest:
            problems.append(f"{rel} fails its sha256 checksum")
    return problems


def _raise_checksum(record: DatasetRecord, problems: list[str]) -> None:
    if problems:
        raise BenchError(f"dataset {record.dataset_id}: {problems[0]}; run `bench datasets "
                         "verify --all` and collect it again")


def _check_finite(record: DatasetRecord, e: int, reward, obs, state) -> None:
    """Episode by episode, while its arrays are still in the cache."""
    for name, arr in (("reward", reward), ("obs", obs), ("state", state)):
        if not np.isfinite(arr).all():
            raise BenchError(f"dataset {record.dataset_id}: episode {e} has non-finite (NaN or "
                             f"inf) {name} values; collect the dataset again")


def verify(record: DatasetRecord) -> list[str]:
    """Every problem found, first the checksums, then structure and counts. Empty if intact."""
    problems = _checksum_problems(record)
    if problems:
        return problems
    info, stats = record.env, record.stats
    try:
        minari_meta = json.loads((record.path / DATA_FILES[1]).read_text())
        with h5py.File(record.path / DATA_FILES[0], "r") as f:
            steps = 0
            for e in range(len(f)):
                key = f"episode_{e}"
                if key not in f:
                    return [f"episode {e} is missing"]
                problem = _episode_problem(f[key], info)
                if problem:
                    return [f"episode {e} {problem}"]
                for field in ("rewards", "observations", "infos/state"):
                    if not np.isfinite(f[key][field][()]).all():
                        return [f"episode {e} has non-finite (NaN or inf) {field}"]
                steps += f[key]["rewards"].shape[0]
            counts = {"episodes": len(f), "steps": steps}
    except (OSError, ValueError, KeyError) as exc:
        return [f"cannot be read: {exc}"]
    for name, got in counts.items():
        if got != stats[name]:
            problems.append(f"holds {got} {name}, metadata says {stats[name]}")
        minari_key = f"total_{name}"
        if minari_meta.get(minari_key) != got:
            problems.append(f"holds {got} {name}, Minari's metadata says "
                            f"{minari_meta.get(minari_key)}")
    if minari_meta.get("dataset_id") != record.dataset_id:
        problems.append(f"Minari's metadata names {minari_meta.get('dataset_id')!r}")
    return problems


def card(record: DatasetRecord) -> dict:
    """The dataset card: the stats written at collection, with what versions written before a
    card field existed lack (SACo) computed from their episodes; the stored metadata is never
    changed (it is checksummed with the data)."""
    stats = dict(record.stats)
    if "saco" not in stats:
        arrays = load(record)
        T = arrays.filled.shape[1]
        stats.update(saco=saco(arrays.state[:, :T][arrays.filled], arrays.actions[arrays.filled]),
                     saco_decimals=SACO_DECIMALS)
    return stats
