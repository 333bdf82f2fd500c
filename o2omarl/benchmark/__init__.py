"""Orchestration: the Algorithm interface, the method registry, and the run harness."""

from __future__ import annotations

from pathlib import Path

from o2omarl.benchmark import registry
from o2omarl.benchmark.runner import plan, run_job


def run_all(methods, map_name, dataset, seeds, steps, pretrain_steps, runs_dir="runs",
            device="cpu", overrides=None, backend="smax", say=print) -> list[dict]:
    """Plan every job (all validation first, so bad input leaves no folder), then run them."""
    from o2omarl.devices import resolve_device

    jobs = plan(methods, map_name, dataset, seeds, steps, pretrain_steps, backend,
                resolve_device(device, say), overrides)
    summary = []
    for job in jobs:
        row = run_job(job, Path(runs_dir), say)
        summary.append({"method": job.method, "map": job.map_name, "dataset": job.data_dir,
                        "seed": job.seed, "win rate": f"{row.get('test_win_rate', 0):.3f}",
                        "return": f"{row.get('test_return', 0):.2f}",
                        "run dir": str(job.run_dir(Path(runs_dir)))})
    return summary


__all__ = ["plan", "registry", "run_all", "run_job"]
