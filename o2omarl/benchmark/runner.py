"""`bench run`: offline pretraining (cached) then online fine-tuning, one job per method x seed.

Run store (one folder per job, DESIGN.md section 6):

    runs/<map>/<tier>-v<N>/<method>/seed_<k>/
        config.json      resolved settings, dataset, package versions, git commit
        status.json      running | stopped | done | failed (+ error)
        metrics.jsonl    one row per evaluation (env_step 0 = the offline policy)
        checkpoint.pt    learner + online-loop state at the last evaluation (atomic rewrite)
        replay/          the replay buffer in chunks, for resuming (removed when done)
        model.pt         final weights
        run.log          what the job said, with times
    runs/summary.json, runs/results.csv   marl-eval summary and tidy table (results.py)
    runs/.pretrained/<map>/<tier>-v<N>/<key>/seed_<k>/   cached offline weights + their log

A killed job loses at most one evaluation interval: rerunning the command resumes it from
checkpoint.pt and continues exactly as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import traceback
from dataclasses import dataclass, fields, replace
from pathlib import Path

from o2omarl import atomic, datasets, interrupts
from o2omarl.atomic import write_json
from o2omarl.benchmark import registry
from o2omarl.benchmark.results import STORE_VERSION, read_jsonl
from o2omarl.datasets import DatasetRecord, store
from o2omarl.envs import DEFAULT_BACKEND, env_info, make_env
from o2omarl.errors import BenchError, Interrupted, UsageError, positive
from o2omarl.locks import file_lock

DEFAULT_TIER = "medium"


class JsonLines:
    """Append-only metrics file: one complete line per row, flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class JobSpec:
    method: str
    map_name: str
    seed: int
    steps: int
    pretrain_steps: int
    dataset: DatasetRecord | None
    backend: str = DEFAULT_BACKEND
    device: str = "cpu"
    config: object = None  # the method's resolved config dataclass
    # A variant's name (e.g. "ft-qmix_eps0.2" for ft-qmix with other settings): its folder and
    # its name in reports, so variants of one method sit side by side in one run store.
    label: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.method

    @property
    def data_dir(self) -> str:
        return self.dataset.dataset_id.rsplit("/", 1)[1] if self.dataset else "online"

    def run_dir(self, runs_dir: Path) -> Path:
        map_dir = self.map_name if self.backend == "smax" else f"{self.backend}_{self.map_name}"
        return Path(runs_dir) / map_dir / self.data_dir / self.name / f"seed_{self.seed}"


def resolve_maps(map_name: str | None, dataset: str | None, backend: str) -> list[str]:
    """`--map` given: that map. Omitted: every map that has the requested tier."""
    if map_name is not None:
        env_info(map_name, backend)  # unknown map -> UsageError listing the valid ones
        return [map_name]
    tier = dataset or DEFAULT_TIER
    if "/" in tier:
        return [store.parse_id(tier)["map"]]
    maps = sorted({store.parse_id(i)["map"] for i in store.list_ids()
                   if store.parse_id(i)["tier"] == tier and i.startswith(backend + "/")})
    if not maps:
        raise UsageError(f"no map has a {tier!r} dataset under {store.root()}; make one with "
                         "`bench collect --map 2s3z` (or name the map with --map)")
    return maps


def plan(methods: list[str], map_name: str | None, dataset: str | None, seeds: list[int],
         steps: int, pretrain_steps: int, backend: str = DEFAULT_BACKEND, device: str = "cpu",
         overrides: dict | None = None) -> list[JobSpec]:
    """Validate everything before any folder is made; one JobSpec per map x method x seed."""
    if not methods:
        accepted = ", ".join(sorted(registry.METHODS))
        raise UsageError(f"name at least one method; accepted: {accepted}")
    classes = [registry.get(m) for m in methods]
    positive("--steps", steps)
    positive("--pretrain-steps", pretrain_steps)
    if not seeds:
        raise UsageError("--seeds must be a positive integer")
    if min(seeds) < 0:
        raise UsageError(f"seed {min(seeds)} is negative; --seed and --seed-offset accept "
                         "integers >= 0")
    known = set().union(*({f.name for f in fields(c.Config)} for c in classes))
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]!r} for {', '.join(methods)}; accepted: "
                         f"{', '.join(sorted(known))}")
    jobs = []
    for m in resolve_maps(map_name, dataset, backend):
        info = env_info(m, backend)
        try:
            record = datasets.resolve(dataset or DEFAULT_TIER, m, backend)
            datasets.check_fits(record, info)
        except UsageError:
            # A dataset the user named must exist and fit; the default tier only matters to
            # methods that use offline data (the error names the `bench collect` command).
            if dataset is not None or any(_needs_data(c) for c in classes):
                raise
            record = None  # e.g. `qmix` alone beside a medium tier of an older state format
        for cls in classes:
            config = _config(cls, pretrain_steps, overrides or {})
            for seed in seeds:
                jobs.append(JobSpec(cls.name, m, seed, steps, pretrain_steps, record,
                                    backend, device, config))
    return jobs


def _needs_data(cls) -> bool:
    cfg = cls.Config()
    return cfg.init == "offline" or getattr(cfg, "offline_fraction", 0) > 0


def _config(cls, pretrain_steps: int, overrides: dict):
    """A method's config: its defaults, the overrides it has fields for, the budget."""
    mine = {k: v for k, v in overrides.items() if k in {f.name for f in fields(cls.Config)}}
    return replace(cls.Config.build(**mine), pretrain_steps=pretrain_steps)


def _make_method(job: JobSpec):
    cls = registry.get(job.method)
    return cls(env_info(job.map_name, job.backend), job.config, job.seed, job.device)


def _cache_key(method, job: JobSpec) -> dict:
    """What determines pretrained weights: the dataset version, the settings, the seed."""
    return {"dataset": job.dataset.dataset_id, "files": job.dataset.meta["files"],
            "settings": method.cfg.pretrain_key(), "seed": job.seed}


def _cache_folder(method, job: JobSpec, cache_dir: Path) -> Path:
    digest = hashlib.sha256(json.dumps(_cache_key(method, job), sort_keys=True)
                            .encode()).hexdigest()[:16]
    return Path(cache_dir) / job.map_name / job.data_dir / digest / f"seed_{job.seed}"


def _reads_dataset(method, job: JobSpec, cache_dir: Path) -> bool:
    """Whether the job needs the dataset's episodes: to mix them online, or to pretrain on
    them because no cached weights exist yet."""
    if job.dataset is None:
        return False
    uncached = not (_cache_folder(method, job, cache_dir) / "model.pt").exists()
    return method.uses_offline_data or (method.uses_offline_init and uncached)


def _pretrained(method, job: JobSpec, cache_dir: Path, dataset, eval_env, say) -> None:
    """Load cached offline weights for (dataset version, settings, seed), or train on
    `dataset()` and cache them."""
    key = _cache_key(method, job)
    folder = _cache_folder(method, job, cache_dir)
    model = folder / "model.pt"
    # Waiting on the lock lets a second job needing the same weights reuse the first's work.
    with file_lock(folder.parent / f"seed_{job.seed}.lock", "pretraining cache", wait=True):
        if model.exists():
            from o2omarl.qmix import load_checkpoint

            method.load_pretrained(load_checkpoint(model)["learner"])
            say(f"pretrained weights loaded from cache {folder} (no offline training)")
            return
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / "pretrain.jsonl"
        log_path.unlink(missing_ok=True)
        say(f"offline pretraining on {job.dataset.dataset_id}: {job.pretrain_steps} updates")
        method.pretrain(dataset(), JsonLines(log_path), eval_env)
        write_json(folder / "key.json", key)
        method.save(model)


class StopFlag:
    """Ctrl-C / SIGTERM while armed sets a flag the training loop polls between steps, so it
    stops in a state a checkpoint can hold. Unarmed (or a second signal), the usual
    KeyboardInterrupt: nothing in progress is worth saving there (e.g. pretraining, which
    reruns deterministically)."""

    def __init__(self, parent_pid: int | None = None):
        self.armed = self.set = False
        self.parent_pid = parent_pid  # a pool worker also stops if its parent has died

    def __call__(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.set = True
        return self.set

    def _handle(self, signum, frame):
        if not self.armed or self.set:
            raise KeyboardInterrupt
        self.set = True

    @contextlib.contextmanager
    def installed(self):
        with interrupts.handling(self._handle):
            yield self


def fingerprint(job_config: dict) -> dict:
    """What must match for an existing run folder to be this job (resume or skip)."""
    keys = ("method", "label", "map", "backend", "seed", "steps", "pretrain_steps", "dataset",
            "config")
    out = {k: job_config.get(k) for k in keys}
    out["label"] = out["label"] or out["method"]  # folders from before labels existed
    return json.loads(json.dumps(out, default=str))


def job_config(job: JobSpec) -> dict:
    """config.json: the resolved settings of one job and where it ran."""
    return {"method": job.method, "label": job.name, "map": job.map_name, "backend": job.backend,
            "seed": job.seed, "steps": job.steps, "pretrain_steps": job.pretrain_steps,
            "dataset": job.dataset.dataset_id if job.dataset else None,
            "config": job.config.to_dict(),
            "env": env_info(job.map_name, job.backend).to_dict(),
            "store_version": STORE_VERSION, "packages": store.package_versions(),
            "git_commit": git_commit(), "device": job.device}


def check_run_dirs(jobs: list[JobSpec], runs_dir: Path) -> None:
    """Before any job starts: no job may land in a folder holding other settings."""
    for job in jobs:
        if job.run_dir(runs_dir).exists():
            _check_same(job.run_dir(runs_dir), job_config(job))


def _check_same(run_dir: Path, config: dict) -> None:
    """Refuse to skip or resume a folder that holds a run with other settings."""
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
    if a != b:
        diff = [k for k in a if a[k] != b[k]]
        if "config" in diff:
            diff = [k for k in a["config"] if a["config"].get(k) != b["config"].get(k)] or diff
        first = diff[0]
        was, now = (a[first], b[first]) if first in a else (a["config"].get(first),
                                                             b["config"].get(first))
        raise UsageError(f"{run_dir} holds a run with other settings ({first}: {was} there, "
                         f"{now} now); use another --runs-dir, or delete that folder")


def run_job(job: JobSpec, runs_dir: Path, say=print, cache_dir: Path | None = None,
            stop: StopFlag | None = None, on_eval=None) -> dict:
    """Run one job; returns its final metrics row.

    A finished job is skipped; an unfinished one resumes from its last checkpoint (metrics
    rows after that checkpoint are dropped and recomputed, identically). Pretrained weights are
    cached under `cache_dir` (default `<runs_dir>/.pretrained`). `on_eval(method, training,
    step, row)` runs after each evaluation's checkpoint (the behaviour run of `bench collect`
    snapshots its tiers there); returning True ends the job there, as done.
    """
    cache_dir = Path(cache_dir) if cache_dir else Path(runs_dir) / ".pretrained"
    run_dir = job.run_dir(runs_dir)
    config = job_config(job)
    status_path = run_dir / "status.json"
    if run_dir.exists():
        _check_same(run_dir, config)
    if _state(status_path) == "done":
        say(f"{run_dir}: already done, skipped")
        rows = read_jsonl(run_dir / "metrics.jsonl")
        return rows[-1] if rows else {}
    method = _make_method(job)
    # The dataset is read only if something needs its episodes: with the pretrained weights
    # cached, ft-qmix/ovm/se/ovmse jobs skip loading (and checksumming) it altogether. When it
    # is needed, it is read before the run folder exists, so a damaged dataset leaves none.
    dataset = functools.cache(lambda: datasets.load(job.dataset, method.info))
    if not run_dir.exists() and _reads_dataset(method, job, cache_dir):
        dataset()
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or StopFlag()
    with file_lock(run_dir / ".lock", f"run directory {run_dir}", wait=False), stop.installed():
        log = _RunLog(run_dir / "run.log", say)
        resume = _load_resume(run_dir, job, log)
        if resume is None:
            for stale in ("metrics.jsonl", "checkpoint.pt", "model.pt"):
                (run_dir / stale).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "replay", ignore_errors=True)
            write_json(run_dir / "config.json", config)
        write_json(status_path, {"state": "running", "pid": os.getpid(), "host":
                                 socket.gethostname()})
        try:
            training, complete = _execute(method, job, cache_dir, run_dir, log, resume, stop,
                                          dataset, on_eval)
        except BaseException as e:
            state = "stopped" if isinstance(e, KeyboardInterrupt) else "failed"
            write_json(status_path, {"state": state, "error": str(e) or type(e).__name__})
            full_disk = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
            if isinstance(e, (BenchError, KeyboardInterrupt)) or full_disk:  # said as they are
                log(f"{state}: {str(e) or type(e).__name__}")
                raise
            # A bug or an environment failure: the traceback goes to the log, one line out.
            log.file_only("".join(traceback.format_exception(e)))
            raise BenchError(f"{job.name} seed {job.seed} failed unexpectedly "
                             f"({type(e).__name__}: {e}); the traceback is in "
                             f"{run_dir / 'run.log'}") from None
        if not complete:
            write_json(status_path, {"state": "stopped", "env_step": training.env_step})
            raise Interrupted(f"stopped {job.name} seed {job.seed} at env step "
                              f"{training.env_step:,} after writing a checkpoint; run the "
                              "same command to resume")
        row = training.row
        write_json(status_path, {"state": "done", "final": row})
        shutil.rmtree(run_dir / "replay", ignore_errors=True)  # only needed to resume
        log(f"done: win rate {row.get('test_win_rate', 0):.3f}")
    return row


def _state(status_path: Path) -> str | None:
    try:
        return json.loads(status_path.read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        return None


class _RunLog:
    """`say` that also appends to the run's log file."""

    def __init__(self, path: Path, say):
        self.path, self.say = path, say

    def __call__(self, msg: str) -> None:
        self.say(msg)
        self.file_only(msg)

    def file_only(self, msg: str) -> None:
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")


def _load_resume(run_dir: Path, job: JobSpec, say) -> dict | None:
    """The last checkpoint with its training state, or None (start afresh, saying why)."""
    from o2omarl.qmix import load_checkpoint

    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return None
    try:
        ckpt = load_checkpoint(path)
    except BenchError as e:
        say(f"{e}; starting the run afresh")
        return None
    env = env_info(job.map_name, job.backend).to_dict()
    if ckpt.get("method") != job.method or ckpt.get("env") != env:
        say(f"checkpoint {path} is from method {ckpt.get('method')!r} on "
            f"{(ckpt.get('env') or {}).get('map_name')!r}, not {job.method!r} on "
            f"{job.map_name!r}; starting the run afresh")
        return None
    if "training" not in ckpt:
        say(f"checkpoint {path} holds no training state (an older o2omarl); starting afresh")
        return None
    say(f"resuming from the checkpoint at env step {ckpt['training']['last_eval']:,}")
    return ckpt


def _execute(method, job: JobSpec, cache_dir: Path, run_dir: Path, say, resume,
             stop: StopFlag, dataset, on_eval=None):
    """Pretrain (or load the cache), then fine-tune; returns the `OnlineTraining` and whether
    the job is complete (budget spent, or `on_eval` ended it); if not, it was stopped and
    checkpointed where it stopped."""
    eval_env = make_env(job.map_name, method.cfg.eval_episodes, job.backend)
    if method.uses_offline_init:
        _pretrained(method, job, cache_dir, dataset, eval_env, say)
    env = make_env(job.map_name, method.cfg.num_envs, job.backend)
    metrics = run_dir / "metrics.jsonl"
    training = method.online(env, eval_env, job.steps, JsonLines(metrics),
                             dataset() if method.uses_offline_data else None)
    replay = _ReplayLog(run_dir / "replay")
    if resume is not None:
        method.learner.load_state_dict(resume["learner"])
        replay.restore(training.buffer, resume["replay_chunks"])
        training.load_state_dict(resume["training"])
        # Rows logged after the checkpoint are recomputed: drop them so none is duplicated.
        _truncate_metrics(metrics, training.last_eval)
    else:
        metrics.unlink(missing_ok=True)

    def checkpoint() -> None:
        chunks = replay.save_new(training.buffer)  # first: the checkpoint refers to them
        method.save(run_dir / "checkpoint.pt", training, replay_chunks=chunks)

    ended = False

    def after_eval(step: int, row: dict) -> bool:
        nonlocal ended
        checkpoint()
        ended = bool(on_eval and on_eval(method, training, step, row))
        return ended

    stop.armed = True
    try:
        training.run(on_eval=after_eval, should_stop=stop)
    finally:
        stop.armed = False
    if ended:
        training.close()  # the learner process, if any: run() keeps it for a resume
    if training.finished or ended:
        method.save(run_dir / "model.pt")
    else:
        checkpoint()
    return training, training.finished or ended


def _truncate_metrics(path: Path, last_step: int) -> None:
    rows = [r for r in read_jsonl(path) if r["env_step"] <= last_step]
    atomic.write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


class _ReplayLog:
    """The online replay buffer on disk as numbered chunks, each holding the episodes added
    since the previous checkpoint, so a checkpoint costs only the new episodes."""

    def __init__(self, folder: Path):
        self.folder, self.chunks, self.saved = folder, 0, 0

    def _path(self, k: int) -> Path:
        return self.folder / f"chunk_{k:06d}.npz"

    def save_new(self, buffer) -> int:
        from o2omarl.qmix.buffer import save_episodes

        new = list(buffer.episodes(since=self.saved))
        if new:
            self.folder.mkdir(exist_ok=True)
            save_episodes(self._path(self.chunks), buffer.added - len(new), new)
            self.chunks, self.saved = self.chunks + 1, buffer.added
        return self.chunks

    def restore(self, buffer, chunks: int) -> None:
        from o2omarl.qmix.buffer import load_episodes

        for k in range(chunks):
            first, eps = load_episodes(self._path(k))
            for g, ep in enumerate(eps, first):
                buffer.put(g, ep)
        # Chunks written after the checkpoint, and any write a kill cut short, are stale.
        for path in self.folder.glob("*.npz"):
            if path.name not in {self._path(k).name for k in range(chunks)}:
                path.unlink()
        self.chunks, self.saved = chunks, buffer.added
