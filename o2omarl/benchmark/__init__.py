"""Orchestration: the Algorithm interface, the method registry, and the run harness."""

from __future__ import annotations

from pathlib import Path

from o2omarl.benchmark import registry
from o2omarl.benchmark.executors import check_executor, run_jobs
from o2omarl.benchmark.jobs import plan, seed_list
from o2omarl.errors import BenchError
from o2omarl.benchmark.rundir import check_run_dirs
from o2omarl.benchmark.runner import run_job


def run_all(methods, map_name, dataset, seeds, steps, pretrain_steps, runs_dir="runs",
            device="cpu", overrides=None, backend="smax", workers=1, executor="local",
            address=None, say=print) -> list[dict]:
    """Plan every job (all validation first, so bad input leaves no folder), run them, and
    return one summary row per job (`state` done or failed: one failure does not stop the
    others)."""
    from o2omarl.devices import resolve_device

    check_executor(executor, workers)
    jobs = plan(methods, map_name, dataset, seeds, steps, pretrain_steps, backend,
                resolve_device(device, say), overrides)
    check_run_dirs(jobs, Path(runs_dir))
    results = run_jobs(jobs, Path(runs_dir), workers, executor, address, say)
    summary = [{"method": r.job.name, "map": r.job.map_name, "dataset": r.job.dataset_label,
                "seed": r.job.seed, "state": r.state,
                "win rate": f"{r.row['test_win_rate']:.3f}" if r.row else "-",
                "return": f"{r.row['test_return']:.2f}" if r.row else "-",
                "run dir": str(r.job.run_dir(Path(runs_dir))), "error": r.error}
               for r in results]
    return summary


def check_failed(rows: list[dict]) -> None:
    """BenchError (exit 1) naming the first failed job of `run_all`'s rows, if any failed."""
    failed = [r for r in rows if r["state"] == "failed"]
    if failed:
        first = f"{failed[0]['method']} seed {failed[0]['seed']}: {failed[0]['error']}"
        raise BenchError(first if len(rows) == 1 else
                         f"{len(failed)} of {len(rows)} jobs failed; first: {first}")


__all__ = ["check_failed", "plan", "registry", "run_all", "run_job", "seed_list"]
