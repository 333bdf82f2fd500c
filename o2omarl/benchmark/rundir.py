"""One job's run folder: its provenance (config.json), its state (status.json), its logs, and
the rule that a folder is only ever resumed or skipped by the very job that made it."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from o2omarl import atomic
from o2omarl.benchmark.jobs import JobSpec, needs_data
from o2omarl.benchmark.results import STORE_VERSION, read_jsonl
from o2omarl.datasets import store
from o2omarl.envs import env_info
from o2omarl.errors import UsageError
from o2omarl.locks import is_held


class JsonLines:
    """Append-only metrics file: one complete line per row, flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


EVENT_FILES = "events.out.tfevents.*"  # TensorBoard's names; one file per writer (session)


class TensorBoardLog:
    """A metrics log that also writes TensorBoard event files into `folder`
    (`tensorboard --logdir runs`).

    Each row goes to `rows` (metrics.jsonl) and, every numeric field of it, to the tag
    `<prefix>eval/<key>` at the row's `step_key`; the training points the loop hands
    `scalars` between rows (`qmix.monitor.Window.tail`) go to `<prefix>train/<key>` (without
    a `train_` in the key). torch's writer queues events for its own thread, so logging costs
    the loop next to nothing; `flush` (before each checkpoint) puts them on disk.
    """

    def __init__(self, folder: Path, rows, step_key: str, prefix: str = ""):
        from torch.utils.tensorboard import SummaryWriter  # ~1 s to import: only when used

        self.rows, self.step_key, self.prefix = rows, step_key, prefix
        # A queue that holds a whole row, so `add_scalar` never waits for the writer thread.
        self.writer = SummaryWriter(str(folder), max_queue=1000)

    def __call__(self, row: dict) -> None:
        self.rows(row)
        self._write("eval/", row[self.step_key], row)

    def scalars(self, step: int, metrics: dict) -> None:
        self._write("train/", step, {k.removeprefix("train_"): v for k, v in metrics.items()})

    def _write(self, group: str, step: int, values: dict) -> None:
        for key, value in values.items():
            if key != self.step_key and isinstance(value, (int, float)):
                self.writer.add_scalar(f"{self.prefix}{group}{key}", value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def remove_event_files(folder: Path) -> None:
    """A fresh start: TensorBoard events of an abandoned earlier attempt go."""
    for path in Path(folder).glob(EVENT_FILES):
        path.unlink()


def truncate_events(folder: Path, last_step: int) -> None:
    """Drop the TensorBoard events logged after `last_step`, as `truncate_metrics` drops rows:
    a resumed run logs them again, so none is doubled. (TensorBoard's own `purge_step` is not
    honoured by every reader of event files; this is.)"""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in sorted(Path(folder).glob(EVENT_FILES)):
        # A record cut by a kill ends the reading: it is dropped as well.
        records = [r for r in RawEventFileLoader(str(path)).Load()
                   if Event.FromString(r).step <= last_step]
        with atomic.replacing(path) as tmp, open(tmp, "wb") as f:
            writer = RecordWriter(f)
            for record in records:
                writer.write(record)


class RunLog:
    """`say` that also appends to the run's log file, with times."""

    def __init__(self, path: Path, say):
        self.path, self.say = path, say

    def __call__(self, msg: str) -> None:
        self.say(msg)
        self.file_only(msg)

    def file_only(self, msg: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")


def job_config(job: JobSpec) -> dict:
    """config.json: the resolved settings of one job and where it ran."""
    return {"method": job.method, "label": job.name, "map": job.map_name, "backend": job.backend,
            "seed": job.seed, "steps": job.steps, "pretrain_steps": job.pretrain_steps,
            "dataset": job.dataset.dataset_id if job.dataset else None,
            # the bytes behind the id: a store where that id holds others is flagged
            "dataset_files": job.dataset.meta.get("files") if job.dataset else None,
            "config": job.config.to_dict(),
            "env": env_info(job.map_name, job.backend).to_dict(),
            "store_version": STORE_VERSION, "packages": store.package_versions(),
            "git_commit": store.git_commit(), "device": job.device}


def config_defaults(job: JobSpec) -> dict:
    return type(job.config)().to_dict()


def fingerprint(job_config: dict) -> dict:
    """What must match for an existing run folder to be this job (resume or skip)."""
    keys = ("method", "label", "map", "backend", "seed", "steps", "pretrain_steps", "dataset",
            "config")
    out = {k: job_config.get(k) for k in keys}
    out["label"] = out["label"] or out["method"]  # folders from before labels existed
    return json.loads(json.dumps(out, default=str))


def check_runs_dir(runs_dir: Path, name: str = "--runs-dir") -> None:
    """Before any job starts, once every other input is checked: the run store is a writable
    folder, or one that can be made (and is made here)."""
    path = Path(runs_dir).absolute()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"{name} {str(runs_dir)!r} is not a usable folder ({probe} is a file); "
                         "accepted: a folder that exists or can be made, and can be written")
    why = None if os.access(probe, os.W_OK | os.X_OK) else f"{probe} is not writable"
    if why is None:
        try:  # every input is checked by now: the store may be made (a virtual fs refuses)
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = e.strerror or str(e)
    if why:
        raise UsageError(f"{name} {str(runs_dir)!r} is not a usable folder ({why}); accepted: "
                         "a folder that exists or can be made, and can be written")


def check_run_dirs(jobs: list[JobSpec], runs_dir: Path) -> None:
    """Before any job starts: no job may land in a folder holding other settings."""
    check_runs_dir(runs_dir)
    for job in jobs:
        if job.run_dir(runs_dir).exists():
            check_same(job.run_dir(runs_dir), job_config(job), config_defaults(job))


def check_same(run_dir: Path, config: dict, defaults: dict | None = None) -> None:
    """Refuse to skip or resume a folder that holds a run with other settings (`defaults`: the
    config's defaults, for settings added since that folder was written)."""
    try:
        old = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return  # no usable config: the folder never got past its start; start afresh
    if not isinstance(old, dict):
        return
    version = old.get("store_version", 0)  # 0: written before the store was versioned
    if not isinstance(version, int) or version > STORE_VERSION:
        raise UsageError(f"{run_dir} was written by a newer o2omarl (run store version "
                         f"{version}, this one reads up to {STORE_VERSION}); upgrade, or use "
                         "another --runs-dir")
    a, b = fingerprint(old), fingerprint(config)
    # A setting added since that folder was written (its config lacks the key) counts as
    # equal when the folder's top level holds the same value (the budgets `steps` and
    # `pretrain_steps` were there first) or it is at its default now.
    if isinstance(a["config"], dict) and isinstance(b["config"], dict):
        for key in b["config"].keys() - a["config"].keys():
            if b["config"][key] in (old.get(key), (defaults or {}).get(key)):
                a["config"][key] = b["config"][key]
    if a != b:
        diff = [k for k in a if a[k] != b[k]]
        if "config" in diff:
            diff = [k for k in a["config"] if a["config"].get(k) != b["config"].get(k)] or diff
        first = diff[0]
        was, now = (a[first], b[first]) if first in a else (a["config"].get(first),
                                                             b["config"].get(first))
        raise UsageError(f"{run_dir} holds a run with other settings ({first}: {was} there, "
                         f"{now} now); name this one as a variant (--label NAME, or variants: "
                         "in a sweep file), use another --runs-dir, or delete that folder")


def finished_twin(job: JobSpec, runs_dir: Path) -> Path | None:
    """A finished run of this job under another dataset of its map, with the same method,
    seed and settings: what `bench run` copies instead of running the job. Only for a job that
    reads no data (`needs_data`; that run is the one this job would make, its metrics the same
    but for wall-clock times) and has no folder yet (one there is resumed, never replaced)."""
    run_dir = job.run_dir(runs_dir)
    if needs_data(job.config) or run_dir.exists():
        return None
    mine = fingerprint(job_config(job))
    for other in sorted(run_dir.parents[2].glob(f"*/{run_dir.parent.name}/{run_dir.name}")):
        if other == run_dir or read_state(other) != "done":
            continue
        try:
            theirs = fingerprint(json.loads((other / "config.json").read_text()))
        except (OSError, ValueError, AttributeError):
            continue
        if {**theirs, "dataset": mine["dataset"]} == mine:
            return other
    return None


def last_row(run_dir: Path) -> dict:
    """A run's last metrics row (its final evaluation once done), {} if none."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    return rows[-1] if rows else {}


def planned_action(job: JobSpec, runs_dir: Path) -> str:
    """What `bench run` would do with this job now (`--dry-run`): done (skip it), running
    (another process holds it), resume (an unfinished folder: from its last checkpoint), copy
    (a finished twin's record, `finished_twin`) or new."""
    run_dir = job.run_dir(runs_dir)
    if read_state(run_dir) == "done":
        return "done"
    if run_dir.exists():
        return "running" if is_held(run_dir / ".lock") else "resume"
    return "copy" if finished_twin(job, runs_dir) else "new"


def copy_run(src: Path, run_dir: Path, config: dict) -> None:
    """`run_dir` as a finished copy of `src` (its record and final weights) under this job's
    config.json, which names the source (relative to the run store, which moves whole);
    made beside it and renamed, so never half there."""
    source = str(src.relative_to(run_dir.parents[3]))
    tmp = run_dir.with_name(f".{run_dir.name}.copying.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    # what a resume needs, and the source's lock, are not part of a finished run
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(
        "config.json", ".lock", "checkpoint.pt", "replay"))
    atomic.write_json(tmp / "config.json", {**config, "copied_from": source})
    with open(tmp / "run.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} copied from {source}: the method reads no "
                "data, so the run is the same on every dataset of the map\n")
    try:
        tmp.rename(run_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not run_dir.is_dir():
            raise
        # another `bench run` on this store made the folder meanwhile: the same copy, kept


def read_state(run_dir: Path) -> str | None:
    """status.json's state (running | stopped | done | failed), None if unreadable."""
    try:
        return json.loads((run_dir / "status.json").read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None


def write_status(run_dir: Path, state: str, **fields) -> None:
    atomic.write_json(run_dir / "status.json", {"state": state, **fields})


def truncate_metrics(path: Path, last_step: int, key: str = "env_step") -> None:
    """Drop rows logged after `last_step` of `key` (a resumed run, or pretraining with
    key="update", recomputes them, identically)."""
    rows = [r for r in read_jsonl(path) if r[key] <= last_step]
    atomic.write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
