"""The pretraining cache: offline weights are computed once per (dataset version, settings that
shape them, seed) and shared by every method and run that starts from them.

    <cache>/<map>/<tier>-v<N>/<key digest>/seed_<k>/  model.pt, pretrain.jsonl, key.json,
                                                      TensorBoard events (offline/ tags)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from o2omarl.atomic import write_json
from o2omarl.benchmark.jobs import JobSpec
from o2omarl.benchmark.rundir import (
    JsonLines,
    TensorBoardLog,
    remove_event_files,
    truncate_events,
    truncate_metrics,
)
from o2omarl.locks import file_lock
from o2omarl.qmix.checkpoint import Checkpoint

RESUME = "pretrain_state.pt"  # the state an interrupted pretraining resumes from

def cache_key(method, job: JobSpec) -> dict:
    """What determines pretrained weights: the dataset version, the settings, the seed."""
    return {"dataset": job.dataset.dataset_id, "files": job.dataset.meta["files"],
            "settings": method.cfg.pretrain_key(), "seed": job.seed}


def cache_folder(method, job: JobSpec, cache_dir: Path) -> Path:
    digest = hashlib.sha256(json.dumps(cache_key(method, job), sort_keys=True)
                            .encode()).hexdigest()[:16]
    return Path(cache_dir) / job.map_name / job.dataset_label / digest / f"seed_{job.seed}"


def reads_dataset(method, job: JobSpec, cache_dir: Path) -> bool:
    """Whether the job needs the dataset's episodes: to mix them online, or to pretrain on
    them because no cached weights exist yet."""
    if job.dataset is None:
        return False
    uncached = not (cache_folder(method, job, cache_dir) / "model.pt").exists()
    return method.uses_offline_data or (method.uses_offline_init and uncached)


def load_or_pretrain(method, job: JobSpec, cache_dir: Path, dataset, eval_env, say,
                     should_stop=None) -> Path:
    """Load cached offline weights into `method`, or train them on `dataset()` and cache them
    (`should_stop()` polled between updates); returns the cache folder (its pretrain.jsonl is
    the pretraining's log)."""
    from o2omarl.qmix.pretrain import Resume

    folder = cache_folder(method, job, cache_dir)
    model = folder / "model.pt"
    # Waiting on the lock lets a second job needing the same weights reuse the first's work.
    with file_lock(folder.parent / f"seed_{job.seed}.lock", "pretraining cache", wait=True):
        if model.exists():
            method.load_pretrained(Checkpoint.read(model).learner)
            say(f"pretrained weights loaded from cache {folder} (no offline training)")
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        log_path = folder / "pretrain.jsonl"
        state = folder / RESUME
        kept = Resume(state).load()
        if kept is None:  # from scratch, and so are its logs
            log_path.unlink(missing_ok=True)
            remove_event_files(folder)
            say(f"offline pretraining on {job.dataset.dataset_id}: {job.pretrain_steps} "
                "updates")
        else:  # the rows and events after the kept evaluation are computed again
            done = kept["update"]
            truncate_metrics(log_path, done, key="update")
            truncate_events(folder, done)
            say(f"offline pretraining on {job.dataset.dataset_id} resumed at update {done:,} "
                f"of {job.pretrain_steps:,}")
        with contextlib.closing(TensorBoardLog(folder, JsonLines(log_path), "update",
                                               prefix="offline/")) as log:
            method.pretrain(dataset(), log, eval_env, should_stop, resume=state)
        write_json(folder / "key.json", cache_key(method, job))
        method.save(model)
        Resume(state).clear()  # the weights are whole: nothing to resume
    return folder
