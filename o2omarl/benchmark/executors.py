"""Where `bench run` jobs execute: in this process, in a local pool of worker processes
(`--workers K`), or as Ray tasks (`--executor ray`). Every executor runs the same `run_job`
into the same run store, so results never depend on how they were scheduled.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

from o2omarl import progress
from o2omarl.benchmark.jobs import JobSpec, needs_data
from o2omarl.benchmark.results import write_summaries
from o2omarl.benchmark.runner import StopFlag, run_job
from o2omarl.errors import BenchError, Interrupted, UsageError

EXECUTORS = ("local", "ray")


@dataclass
class JobResult:
    job: JobSpec
    state: str  # done | stopped | failed
    row: dict
    error: str | None = None


def default_workers() -> int:
    return os.cpu_count() or 1


def check_executor(executor: str, workers: int) -> None:
    """Validate before any job starts (no run folder for a job that never ran)."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; accepted: {', '.join(EXECUTORS)}")
    if workers is None or workers <= 0:
        raise UsageError(f"--workers must be a positive integer, got {workers}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--executor ray needs Ray, which is not installed; install it with "
                             "`pip install 'o2omarl[ray]'` (or `pip install ray`)") from None


def run_jobs(jobs: list[JobSpec], runs_dir: Path, workers: int = 1, executor: str = "local",
             address: str | None = None, say=print) -> list[JobResult]:
    runs_dir = Path(runs_dir).resolve()
    if executor == "ray":
        # A task has one CPU, and a pool worker (daemonic) may not start processes: their
        # updates run inline. Same numbers either way (qmix/updates.py).
        return _run_ray([replace(j, learner_mode="inline") for j in jobs], runs_dir, workers,
                        address, say)
    if workers == 1 or len(jobs) == 1:
        return _run_here(jobs, runs_dir, say)
    return _run_pool([replace(j, learner_mode="inline") for j in jobs], runs_dir, workers, say)


def _key(job: JobSpec) -> str:
    """A job's name in progress lines and the pool's books: its folder in the run store, the
    one thing no two jobs of a sweep share (two tiers of a map can hold one method and seed)."""
    return job.run_dir(Path()).as_posix()


class SweepPace:
    """The line said as each job of several ends: `3 of 70 jobs finished | ETA 5:10:00`, the
    ETA being the mean duration of the jobs finished so far times the jobs left, shared among
    the workers (a sweep of a benchmark runs for hours; each job's own line has its own ETA)."""

    def __init__(self, total: int, workers: int):
        self.total, self.workers = total, workers
        self.starts: dict[str, float] = {}
        self.durations: list[float] = []

    def started(self, key: str) -> None:
        self.starts[key] = time.monotonic()

    def finished(self, key: str) -> str | None:
        """The line, or None for a single job (its own line says it all)."""
        return self.took(time.monotonic() - self.starts.pop(key))

    def took(self, seconds: float) -> str | None:
        """`finished` for a job timed where it ran (a Ray task: its start is not seen here)."""
        self.durations.append(seconds)
        if self.total < 2:
            return None
        left = self.total - len(self.durations)
        mean = sum(self.durations) / len(self.durations)
        eta = f" | ETA {progress.fmt_duration(left * mean / self.workers)}" if left else ""
        return f"{len(self.durations)} of {self.total} jobs finished{eta}"


def _run_here(jobs, runs_dir, say) -> list[JobResult]:
    results = []
    pace = SweepPace(len(jobs), 1)
    for job in jobs:
        pace.started(_key(job))
        try:
            row = run_job(job, runs_dir, say)
            results.append(JobResult(job, "done", row))
        except Interrupted:
            raise
        except BenchError as e:  # one failed job does not stop the others
            say(f"error: {_key(job)}: {e}")
            results.append(JobResult(job, "failed", {}, str(e)))
        finally:
            write_summaries(runs_dir)
        line = pace.finished(_key(job))
        if line:
            say(line)
    return results


# -- local process pool ---------------------------------------------------------------------------
def _limit_threads(threads: int) -> None:
    """Before JAX or torch start their thread pools: K workers share K cores without
    oversubscribing them (torch reads O2OMARL_TORCH_THREADS, XLA its flags, and a job starts
    a learner process only with two cores of its own: O2OMARL_CORES)."""
    os.environ["O2OMARL_TORCH_THREADS"] = os.environ["O2OMARL_CORES"] = str(threads)
    flags = os.environ.get("XLA_FLAGS", "")
    if threads == 1 and "multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when its parent dies (even by SIGKILL), so no orphan keeps
    computing; the worker then stops like on Ctrl-C (a checkpoint if it is fine-tuning)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _worker(job: JobSpec, runs_dir: Path, threads: int, out) -> None:
    _die_with_parent()
    _limit_threads(threads)
    key = _key(job)
    progress.set_sink(lambda label, line: out.put(("progress", key, line)))
    # Stop (with a checkpoint) on Ctrl-C, on SIGTERM from the parent, or if the parent dies.
    parent = os.getppid()
    stop = StopFlag(parent_pid=parent)
    try:
        row = run_job(job, runs_dir, lambda msg: out.put(("say", key, msg)), stop=stop)
        out.put(("done", key, row))
    except (Interrupted, KeyboardInterrupt) as e:  # Ctrl-C (while pretraining: no checkpoint)
        out.put(("stopped", key, str(e) or "stopped before fine-tuning started"))
    except BaseException as e:  # reported to the parent, which decides the exit code
        out.put(("failed", key, str(e) or type(e).__name__))


def _run_pool(jobs, runs_dir, workers, say) -> list[JobResult]:
    ctx = mp.get_context("spawn")  # fork after JAX/torch threads exist can deadlock
    out = ctx.Queue()
    threads = max(1, default_workers() // workers)
    pending, running, results = list(jobs), {}, {}
    board = progress.Board()
    pace = SweepPace(len(jobs), workers)
    stopping = {"flag": False}
    gone: set[str] = set()  # workers seen exited, not yet reported

    def on_signal(signum, frame):
        # Ctrl-C reaches the workers too (same process group); SIGTERM only this process, so
        # pass it on. A second signal hurries them (they still checkpoint).
        if stopping["flag"] or signum == signal.SIGTERM:
            for p, _ in running.values():
                p.terminate()
        stopping["flag"] = True
        board.say("stopping: workers write a checkpoint and exit; no new jobs start "
                  "(Ctrl-C again to hurry them)")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # once stopping, jobs not yet started stay pending (the rerun starts them): waiting on
        # them too would wait forever
        while running or (pending and not stopping["flag"]):
            while len(running) < workers and not stopping["flag"]:
                ready = [i for i, j in enumerate(pending) if not _twin_running(j, running)]
                if not ready:
                    break
                job = pending.pop(ready[0])
                p = ctx.Process(target=_worker, args=(job, runs_dir, threads, out), daemon=True)
                p.start()
                running[_key(job)] = (p, job)
                pace.started(_key(job))
            try:
                kind, key, payload = out.get(timeout=0.5)
            except queue_mod.Empty:
                for key, (p, job) in list(running.items()):
                    if p.is_alive() or key in results:
                        continue
                    # an exited worker's last message can still be in the pipe (a starved
                    # parent): it died without reporting only if a whole wait brought nothing
                    if key not in gone:
                        gone.add(key)
                        continue
                    # killed: whatever it checkpointed is kept
                    results[key] = JobResult(job, "failed", {},
                                             f"worker exited with code {p.exitcode}")
                    _finish(key, running, board, runs_dir, pace)
                continue
            if kind == "progress":
                board.update(key, f"[{key}] {payload}")
            elif kind == "say":
                board.say(f"[{key}] {payload}")
            else:
                job = running[key][1]
                row = payload if kind == "done" else {}
                error = None if kind == "done" else payload
                results[key] = JobResult(job, kind, row, error)
                if error:
                    board.say(f"[{key}] {kind}: {error}")
                running[key][0].join()
                _finish(key, running, board, runs_dir, pace)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        board.close()
    if stopping["flag"] or any(r.state == "stopped" for r in results.values()):
        raise Interrupted("stopped; finished jobs are kept and unfinished ones checkpointed: "
                          "run the same command to resume")
    return [results[_key(j)] for j in jobs if _key(j) in results]


def _twin_running(job: JobSpec, running: dict) -> bool:
    """A job that reads no data waits while the same method and seed runs on another tier of
    its map: once that ends, the job is a copy of it (`runner.run_job`), not a second run."""
    return not needs_data(job.config) and any(
        (j.map_name, j.backend, j.name, j.seed) == (job.map_name, job.backend, job.name, job.seed)
        for _, j in running.values())


def _finish(key, running, board, runs_dir, pace) -> None:
    running.pop(key)
    board.remove(key)
    write_summaries(runs_dir)
    line = pace.finished(key)
    if line:
        board.say(line)


# -- Ray ------------------------------------------------------------------------------------------
def _ray_task(job: JobSpec, runs_dir: str) -> tuple[str, dict, str | None, float]:
    """(state, row, error, seconds): the task times itself, since it may wait in Ray's queue."""
    _limit_threads(1)
    start = time.monotonic()
    try:
        return "done", run_job(job, Path(runs_dir), print), None, time.monotonic() - start
    except BaseException as e:
        return "failed", {}, str(e) or type(e).__name__, time.monotonic() - start


def _run_ray(jobs, runs_dir, workers, address, say) -> list[JobResult]:
    """One Ray task per job (1 CPU each). With `address`, jobs go to that cluster and the runs
    directory must be on storage every node shares; without, a local Ray with `workers` CPUs."""
    import ray

    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=True)
    else:
        ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=True)
    task = ray.remote(num_cpus=1)(_ray_task)
    refs = {task.remote(job, str(runs_dir)): job for job in jobs}
    say(f"{len(refs)} job(s) submitted to Ray ({'cluster ' + address if address else 'local'})")
    # A cluster runs as many jobs at once as it has CPUs (one each), not --workers.
    slots = int(ray.cluster_resources().get("CPU", 1)) if address else workers
    pace = SweepPace(len(jobs), max(1, slots))
    results = {}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                job = refs.pop(ref)
                state, row, error, seconds = ray.get(ref)
                results[_key(job)] = JobResult(job, state, row, error)
                say(f"[{_key(job)}] {state}" + (f": {error}" if error else ""))
                write_summaries(runs_dir)
                line = pace.took(seconds)
                if line:
                    say(line)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)
        raise Interrupted("stopped; cancelled Ray tasks resume from their last checkpoint "
                          "when the same command runs again") from None
    finally:
        if not address:
            ray.shutdown()
    return [results[_key(j)] for j in jobs]
