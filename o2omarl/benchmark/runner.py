"""`bench run`: offline pretraining (cached) then online fine-tuning, one job per method x seed.

Run store (one folder per job, DESIGN.md section 6):

    runs/<map>/<tier>-v<N>/<method>/seed_<k>/
        config.json      resolved settings, dataset, package versions, git commit
        status.json      running | done | failed (+ error)
        metrics.jsonl    one row per evaluation (env_step 0 = the offline policy)
        checkpoint.pt    latest checkpoint, rewritten atomically at every evaluation
        model.pt         final weights
    runs/.pretrained/<map>/<tier>-v<N>/<key>/seed_<k>/   cached offline weights + their log
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

from o2omarl import datasets
from o2omarl.benchmark import registry
from o2omarl.datasets import DatasetRecord, store
from o2omarl.envs import DEFAULT_BACKEND, env_info, make_env
from o2omarl.errors import BenchError, UsageError, positive

DEFAULT_TIER = "medium"


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


class JsonLines:
    """Append-only metrics file: one complete line per row, flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn last line from a kill
            rows.append(json.loads(line))
    return rows


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@contextlib.contextmanager
def file_lock(path: Path, what: str, wait: bool):
    """An exclusive lock on `path`; with wait=False a holder means a clear error, not a wait."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise BenchError(f"{what} is in use by another `bench run` process; wait for it "
                             "to finish or use another --runs-dir") from None
        yield


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

    @property
    def data_dir(self) -> str:
        return self.dataset.dataset_id.rsplit("/", 1)[1] if self.dataset else "online"

    def run_dir(self, runs_dir: Path) -> Path:
        map_dir = self.map_name if self.backend == "smax" else f"{self.backend}_{self.map_name}"
        return Path(runs_dir) / map_dir / self.data_dir / self.method / f"seed_{self.seed}"


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
    known = set().union(*({f.name for f in fields(c.Config)} for c in classes))
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise UsageError(f"unknown setting {unknown[0]!r} for {', '.join(methods)}; accepted: "
                         f"{', '.join(sorted(known))}")
    jobs = []
    for m in resolve_maps(map_name, dataset, backend):
        info = env_info(m, backend)
        record = None
        try:
            record = datasets.resolve(dataset or DEFAULT_TIER, m, backend)
            datasets.check_fits(record, info)
        except UsageError:
            # A dataset the user named must exist and fit; the default tier only matters to
            # methods that use offline data (the error names the `bench collect` command).
            if dataset is not None or any(_needs_data(c) for c in classes):
                raise
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


def _pretrained(method, job: JobSpec, cache_dir: Path, data, eval_env, say) -> None:
    """Load cached offline weights for (dataset version, settings, seed), or train and cache."""
    key = {"dataset": job.dataset.dataset_id, "files": job.dataset.meta["files"],
           "settings": method.cfg.pretrain_key(), "seed": job.seed}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) / job.map_name / job.data_dir / digest / f"seed_{job.seed}"
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
        method.pretrain(data, JsonLines(log_path), eval_env)
        write_json(folder / "key.json", key)
        method.save(model)


def run_job(job: JobSpec, runs_dir: Path, say=print, cache_dir: Path | None = None) -> dict:
    """Run one job to completion; returns its final metrics row. A finished job is skipped.

    Pretrained weights are cached under `cache_dir` (default `<runs_dir>/.pretrained`).
    """
    cache_dir = Path(cache_dir) if cache_dir else Path(runs_dir) / ".pretrained"
    run_dir = job.run_dir(runs_dir)
    status_path = run_dir / "status.json"
    if status_path.exists() and json.loads(status_path.read_text()).get("state") == "done":
        say(f"{run_dir}: already done, skipped")
        rows = read_jsonl(run_dir / "metrics.jsonl")
        return rows[-1] if rows else {}
    method = _make_method(job)
    run_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(run_dir / ".lock", f"run directory {run_dir}", wait=False):
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        config = {"method": job.method, "map": job.map_name, "backend": job.backend,
                  "seed": job.seed, "steps": job.steps, "pretrain_steps": job.pretrain_steps,
                  "dataset": job.dataset.dataset_id if job.dataset else None,
                  "config": method.cfg.to_dict(), "env": method.info.to_dict(),
                  "packages": store.package_versions(), "git_commit": git_commit(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json(run_dir / "config.json", config)
        write_json(status_path, {"state": "running", "pid": os.getpid()})
        try:
            row = _execute(method, job, cache_dir, run_dir, say)
        except BaseException as e:
            msg = str(e) or type(e).__name__
            write_json(status_path, {"state": "failed", "error": msg})
            raise
        write_json(status_path, {"state": "done", "final": row})
    return row


def _execute(method, job: JobSpec, cache_dir: Path, run_dir: Path, say) -> dict:
    info = method.info
    eval_env = make_env(job.map_name, method.cfg.eval_episodes, job.backend)
    data = None
    if job.dataset is not None and (method.uses_offline_init or method.uses_offline_data):
        data = datasets.load(job.dataset, info)
    if method.uses_offline_init:
        _pretrained(method, job, cache_dir, data, eval_env, say)
    env = make_env(job.map_name, method.cfg.num_envs, job.backend)
    checkpoint = run_dir / "checkpoint.pt"
    row = method.finetune(env, eval_env, job.steps, JsonLines(run_dir / "metrics.jsonl"),
                          data, on_eval=lambda step, row: method.save(checkpoint))
    method.save(run_dir / "model.pt")
    return row
