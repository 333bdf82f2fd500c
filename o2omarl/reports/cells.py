"""What a report compares: runs grouped into cells, cells into tasks.

A cell is every finished seed of one (map, dataset, method, budget, pretrain_steps); a task is
a map + dataset at one budget and pretraining length, the unit inside which methods are
compared (one figure, one bold row group). Runs that differ in any of these are never pooled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from o2omarl.benchmark.results import RunRecord
from o2omarl.reports.metrics import run_metrics

# Baselines first, then the ablations, OVMSE last; a method not listed here follows, by name.
METHOD_ORDER = ("qmix", "ft-qmix", "cql-ft", "hybrid", "ovm", "se", "ovmse")
THRESHOLD = 0.8  # win rate for "steps to threshold"


def method_rank(method: str) -> tuple:
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (99, method)


@dataclass(frozen=True, order=True)
class Task:
    map: str
    dataset: str  # dataset id, or "<backend>/<map>/online" for a run without one
    budget: int
    pretrain_steps: int

    @property
    def dataset_name(self) -> str:
        return self.dataset.rsplit("/", 1)[1]

    @property
    def label(self) -> str:
        return (f"{self.map}, {self.dataset_name} ({self.budget:,} env steps, "
                f"{self.pretrain_steps:,} pretraining updates)")

    @property
    def slug(self) -> str:
        """A file-name-safe id, unique per task."""
        return f"{self.dataset.replace('/', '-')}_b{self.budget}_p{self.pretrain_steps}"


@dataclass
class Cell:
    task: Task
    method: str
    runs: list[RunRecord] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)  # run_metrics() of each run, same order

    def values(self, name: str) -> np.ndarray:
        return np.array([m[name] for m in self.metrics], dtype=float)

    def curves(self, column: str) -> list[tuple[np.ndarray, np.ndarray]]:
        """(steps, values) of each seed, for rows that hold `column`."""
        out = []
        for r in self.runs:
            rows = [row for row in r.rows if row.get(column) is not None]
            out.append((np.array([row["env_step"] for row in rows], dtype=float),
                        np.array([row[column] for row in rows], dtype=float)))
        return out


def task_of(run: RunRecord) -> Task:
    dataset = run.dataset or f"{run.backend}/{run.map}/online"
    return Task(run.map, dataset, run.budget, run.pretrain_steps)


def exclusion_reason(run: RunRecord) -> str | None:
    """Why a run is not averaged in, or None if it is."""
    if run.state != "done":
        return f"{run.state}: {run.error}" if run.error else run.state
    if not run.rows:
        return "done but metrics.jsonl holds no evaluation"
    if any("env_step" not in r or "test_win_rate" not in r for r in run.rows):
        return "metrics.jsonl rows lack env_step or test_win_rate"
    if run.rows[0]["env_step"] != 0:
        return "no evaluation at step 0 (the offline policy)"
    return None


def group(runs: list[RunRecord]) -> tuple[list[Cell], list[tuple[RunRecord, str]]]:
    """Finished runs as cells (sorted by task, then method order); the rest with a reason."""
    cells: dict[tuple[Task, str], Cell] = {}
    excluded = []
    for run in runs:
        why = exclusion_reason(run)
        if why:
            excluded.append((run, why))
            continue
        task = task_of(run)
        cell = cells.setdefault((task, run.method), Cell(task, run.method))
        cell.runs.append(run)
        cell.metrics.append(run_metrics(run.rows, run.budget, THRESHOLD))
    ordered = sorted(cells.values(), key=lambda c: (c.task, method_rank(c.method)))
    return ordered, excluded


def by_task(cells: list[Cell]) -> dict[Task, list[Cell]]:
    out: dict[Task, list[Cell]] = {}
    for c in cells:
        out.setdefault(c.task, []).append(c)
    return out
