"""Orchestration: the Algorithm interface, the method registry, and the run harness.

Imports are deferred (functions import what they use; `plan`, `seed_list` and `run_job` load on
first use), so commands that only read the run store, such as `bench runs list` and `bench
report`, do not load torch through this package.
"""

from __future__ import annotations

from pathlib import Path

from o2omarl.errors import BenchError


def run_all(methods, map_name, dataset, seeds, steps, pretrain_steps=None, runs_dir="runs",
            device="cpu", overrides=None, backend="smax", workers=1, executor="local",
            address=None, say=print) -> list[dict]:
    """Plan every job (all validation first, so bad input leaves no folder), run them, and
    return one summary row per job (`state` done or failed: one failure does not stop the
    others)."""
    from o2omarl.benchmark.sweep import Sweep

    return run_sweep(Sweep(list(methods), [(map_name, dataset)], list(seeds), steps,
                           pretrain_steps, dict(overrides or {}), runs_dir=str(runs_dir),
                           backend=backend, device=device, workers=workers, executor=executor,
                           address=address), say)


def run_sweep(sweep, say=print, dry_run: bool = False) -> list[dict]:
    """`run_all` for a `Sweep` (several tasks, variants; `bench run --config`). `dry_run`:
    every check, then rows whose state says what each job would do (`planned_action`), and
    nothing started or written."""
    from o2omarl.benchmark.sweep import plan_sweep

    jobs = plan_sweep(sweep, say)  # first: its cheap checks answer before torch is loaded
    from o2omarl.benchmark.executors import JobResult, check_executor, default_workers, run_jobs
    from o2omarl.benchmark.rundir import check_run_dirs, last_row, planned_action, read_state
    from o2omarl.benchmark.runner import run_job

    workers = default_workers() if sweep.workers is None else sweep.workers
    check_executor(sweep.executor, workers)
    runs_dir = Path(sweep.runs_dir)
    check_run_dirs(jobs, runs_dir)
    # Finished jobs are skipped here: a rerun of a finished sweep starts no worker process,
    # no Ray and no simulator.
    done = [read_state(job.run_dir(runs_dir)) == "done" for job in jobs]
    say(plan_line(jobs, sum(done), workers))
    if dry_run:
        return [_row(JobResult(job, planned_action(job, runs_dir),
                               last_row(job.run_dir(runs_dir)) if d else {}), runs_dir)
                for job, d in zip(jobs, done)]
    skipped = [JobResult(job, "done", run_job(job, runs_dir, say))
               for job, d in zip(jobs, done) if d]
    todo = [job for job, d in zip(jobs, done) if not d]
    ran = run_jobs(todo, runs_dir, workers, sweep.executor, sweep.address, say) if todo else []
    order = {job.run_dir(runs_dir): i for i, job in enumerate(jobs)}
    results = sorted(skipped + ran, key=lambda r: order[r.job.run_dir(runs_dir)])
    return [_row(r, runs_dir) for r in results]


def _row(r, runs_dir: Path) -> dict:
    """A job's line in `bench run`'s closing table."""
    return {"method": r.job.name, "map": r.job.map_name, "dataset": r.job.dataset_label,
            "seed": r.job.seed, "state": r.state,
            "win rate": f"{r.row['test_win_rate']:.3f}" if r.row else "-",
            "return": f"{r.row['test_return']:.2f}" if r.row else "-",
            "run dir": str(r.job.run_dir(runs_dir)), "error": r.error}


def plan_line(jobs, finished: int, workers: int) -> str:
    """What is about to run, before the first job: `6 jobs (2 methods x 3 seeds x 1 task),
    100,000 online env steps each, 5,000 offline updates (cached per seed); 2 done, 2 at a
    time`."""
    names = sorted({j.name for j in jobs})
    seeds = sorted({j.seed for j in jobs})
    tasks = sorted({(j.map_name, j.dataset_label) for j in jobs})
    budgets = sorted({j.steps for j in jobs})
    offline = sorted({j.pretrain_steps for j in jobs if j.config.init == "offline"})
    count = lambda n, what: f"{n} {what}{'s' if n != 1 else ''}"  # noqa: E731
    line = (f"{count(len(jobs), 'job')} ({count(len(names), 'method')} x "
            f"{count(len(seeds), 'seed')} x {count(len(tasks), 'task')}), "
            f"{' / '.join(f'{b:,}' for b in budgets)} online env steps each")
    if offline:
        line += (f", {' / '.join(f'{b:,}' for b in offline)} offline updates (cached per "
                 "dataset, settings and seed)")
    return line + (f"; {finished} already done" if finished else "") + \
        f"; {workers} at a time"


def check_failed(rows: list[dict]) -> None:
    """BenchError (exit 1) naming the first failed job of `run_all`'s rows, if any failed."""
    failed = [r for r in rows if r["state"] == "failed"]
    if failed:
        first = f"{failed[0]['method']} seed {failed[0]['seed']}: {failed[0]['error']}"
        raise BenchError(first if len(rows) == 1 else
                         f"{len(failed)} of {len(rows)} jobs failed; first: {first}")


def __getattr__(name):
    """`plan`, `seed_list`, `run_job`: imported when first asked for (they load torch)."""
    if name in ("plan", "seed_list"):
        from o2omarl.benchmark import jobs

        return getattr(jobs, name)
    if name == "run_job":
        from o2omarl.benchmark import runner

        return runner.run_job
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["check_failed", "plan", "plan_line", "registry", "run_all", "run_job", "run_sweep",
           "seed_list"]
