"""`bench run`: offline pretraining (cached) then online fine-tuning, one job per method x seed.

Run store (one folder per job, DESIGN.md section 6):

    runs/<map>/<tier>-v<N>/<method>/seed_<k>/
        config.json      resolved settings, dataset, package versions, git commit
        status.json      running | stopped | done | failed (+ error)
        metrics.jsonl    one row per evaluation (env_step 0 = the offline policy)
        events.out.tfevents.*  TensorBoard: the rows, and training points between them
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
import os
import shutil
import socket
import traceback
from pathlib import Path

from o2omarl import datasets, interrupts
from o2omarl.atomic import write_json, write_text
from o2omarl.benchmark.jobs import JobSpec, make_method, plan
from o2omarl.benchmark.pretrained import load_or_pretrain, reads_dataset
from o2omarl.benchmark.results import read_jsonl
from o2omarl.benchmark.resume import ReplayLog, load_resume
from o2omarl.benchmark.rundir import (
    JsonLines,
    RunLog,
    TensorBoardLog,
    check_run_dirs,
    check_same,
    config_defaults,
    copy_run,
    finished_twin,
    job_config,
    last_row,
    read_state,
    remove_event_files,
    truncate_events,
    truncate_metrics,
    write_status,
)
from o2omarl.datasets.store import git_commit
from o2omarl.envs import make_env
from o2omarl.errors import BenchError, Interrupted
from o2omarl.locks import file_lock

# Re-exported: the names callers of the runner have always imported from here.
__all__ = ["JobSpec", "JsonLines", "StopFlag", "check_run_dirs", "git_commit", "plan",
           "read_jsonl", "run_job"]


class StopFlag:
    """Ctrl-C / SIGTERM sets a flag that the loops poll (pretraining between updates, the
    online loop between steps, the job between its phases), so a job stops within seconds in a
    state it can report, and online where a checkpoint can hold it. The handler never raises:
    an exception raised there can land in XLA's garbage-collection callback, which prints and
    swallows it, and the job would run its whole budget."""

    def __init__(self, parent_pid: int | None = None):
        self.set = False
        self.parent_pid = parent_pid  # a pool worker also stops if its parent has died

    def __call__(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.set = True
        return self.set

    def check(self, where: str) -> None:
        """Interrupted here if a stop was asked for (between a job's phases)."""
        if self():
            raise Interrupted(f"stopped {where}; the same command resumes")

    def _handle(self, signum, frame):
        self.set = True

    @contextlib.contextmanager
    def installed(self):
        with interrupts.handling(self._handle):
            yield self


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
    if run_dir.exists():
        check_same(run_dir, config, config_defaults(job))
    if read_state(run_dir) == "done":
        say(f"{run_dir}: already done, skipped")
        return last_row(run_dir)
    # qmix from scratch on two tiers of one map is one run: the second is copied, not rerun
    twin = finished_twin(job, runs_dir)
    if twin is not None:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        copy_run(twin, run_dir, config)
        say(f"{run_dir}: the same run as {twin} ({job.name} reads no data), copied")
        return read_jsonl(run_dir / "metrics.jsonl")[-1]
    method = make_method(job)
    # The dataset is read only if something needs its episodes: with the pretrained weights
    # cached, ft-qmix/ovm/se/ovmse jobs skip loading (and checksumming) it altogether. When it
    # is needed, it is read before the run folder exists, so a damaged dataset leaves none.
    dataset = functools.cache(lambda: datasets.load(job.dataset, method.info))
    if not run_dir.exists() and reads_dataset(method, job, cache_dir):
        dataset()
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or StopFlag()
    with file_lock(run_dir / ".lock", f"run directory {run_dir}", wait=False), stop.installed():
        log = RunLog(run_dir / "run.log", say)
        resume = load_resume(run_dir, job, log)
        if resume is None:
            for stale in ("metrics.jsonl", "checkpoint.pt", "model.pt"):
                (run_dir / stale).unlink(missing_ok=True)
            remove_event_files(run_dir)
            shutil.rmtree(run_dir / "replay", ignore_errors=True)
            write_json(run_dir / "config.json", config)
        write_status(run_dir, "running", pid=os.getpid(), host=socket.gethostname())
        try:
            training, complete = _train(method, job, cache_dir, run_dir, log, resume, stop,
                                        dataset, on_eval)
        except BaseException as e:
            stopped = isinstance(e, (KeyboardInterrupt, Interrupted))
            state = "stopped" if stopped else "failed"
            write_status(run_dir, state, error=str(e) or type(e).__name__)
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
            write_status(run_dir, "stopped", env_step=training.env_step)
            raise Interrupted(f"stopped {job.name} seed {job.seed} at env step "
                              f"{training.env_step:,} after writing a checkpoint; run the "
                              "same command to resume")
        # its budget spent without learning anything (a behaviour run that `on_eval` ended,
        # its snapshots taken, is complete whatever it learned)
        if training.finished and method.learner.updates == 0:
            error = (f"made no update in its {training.env_step:,} env steps "
                     f"({training.episodes} episodes; learning starts once "
                     f"batch_size={method.cfg.batch_size} are stored): not a result, so not "
                     "done; give a larger --steps or a smaller batch_size")
            write_status(run_dir, "failed", error=error)
            log(f"failed: {error}")
            raise BenchError(error)
        row = training.row
        write_status(run_dir, "done", final=row)
        shutil.rmtree(run_dir / "replay", ignore_errors=True)  # only needed to resume
        log(f"done: win rate {row.get('test_win_rate', 0):.3f}")
    return row


def _train(method, job: JobSpec, cache_dir: Path, run_dir: Path, say, resume,
           stop: StopFlag, dataset, on_eval=None):
    """Pretrain (or load the cache), then fine-tune, checkpointing after every evaluation;
    returns the `OnlineTraining` and whether the job is complete (budget spent, or `on_eval`
    ended it); if not, it was stopped and checkpointed where it stopped."""
    stop.check(f"{job.name} seed {job.seed} before it started")
    eval_env = make_env(job.map_name, method.cfg.eval_episodes, job.backend)
    if method.uses_offline_init:
        cached = load_or_pretrain(method, job, cache_dir, dataset, eval_env, say, stop)
        stop.check(f"{job.name} seed {job.seed} after pretraining (its weights are cached)")
        # the run carries its pretraining's log (the report's pretraining table reads it)
        log_path = cached / "pretrain.jsonl"
        if log_path.exists():
            write_text(run_dir / "pretrain.jsonl", log_path.read_text())
    env = make_env(job.map_name, method.cfg.num_envs, job.backend)
    metrics = run_dir / "metrics.jsonl"
    if resume is not None:
        # Events after the checkpoint are logged again: drop them before a writer opens a file.
        truncate_events(run_dir, resume.training["rollout"]["env_steps"])
    with contextlib.closing(TensorBoardLog(run_dir, JsonLines(metrics), "env_step")) as log:
        training = method.online(env, eval_env, job.steps, log,
                                 dataset() if method.uses_offline_data else None,
                                 learner_mode=job.learner_mode)
        replay = ReplayLog(run_dir / "replay")
        if resume is not None:
            method.learner.load_state_dict(resume.learner)
            replay.restore(training.buffer, resume.replay_chunks)
            training.load_state_dict(resume.training)
            # Rows logged after the checkpoint are recomputed: drop them so none is duplicated.
            truncate_metrics(metrics, training.last_eval)
        else:
            metrics.unlink(missing_ok=True)

        def checkpoint() -> None:
            log.flush()  # every event the checkpoint covers is on disk before it
            chunks = replay.save_new(training.buffer)  # first: the checkpoint refers to them
            method.save(run_dir / "checkpoint.pt", training, replay_chunks=chunks)

        ended = False

        def after_eval(step: int, row: dict) -> bool:
            nonlocal ended
            checkpoint()
            ended = bool(on_eval and on_eval(method, training, step, row))
            return ended

        training.run(on_eval=after_eval, should_stop=stop)
        if ended:
            training.close()  # the learner process, if any: run() keeps it for a resume
        if training.finished or ended:
            method.save(run_dir / "model.pt")
        else:
            checkpoint()
    return training, training.finished or ended
