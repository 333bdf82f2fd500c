"""What a report compares: runs grouped into cells, cells into tasks.

A cell is every finished seed of one (map, dataset, method, budget, pretrain_steps); a task is
a map + dataset at one budget and pretraining length, the unit inside which methods are
compared (one figure, one bold row group). Runs that differ in any of these are never pooled.

A method's runs on one task pool only when their settings match (config.json's method and
`config`). Runs of one name with other settings (the same method from two run stores, say
ft-qmix with eps_start 1.0 and 0.2) become variants named after what differs,
`ft-qmix_eps_start:1.0` and `ft-qmix_eps_start:0.2`, the way a labelled variant
(`ft-qmix_eps0.2`) is named; one seed in two folders with the same settings is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from o2omarl.benchmark.results import RunRecord
from o2omarl.errors import UsageError
from o2omarl.methods import DISPLAY_NAMES, ORDER, SHARED_SETTINGS
from o2omarl.reports.metrics import run_metrics

THRESHOLD = 0.8  # win rate for "steps to threshold"


def base_method(name: str) -> str:
    """The method of a variant name: `ft-qmix` for `ft-qmix_eps0.2`."""
    return name.partition("_")[0]


def method_rank(method: str) -> tuple:
    """Sort key: the methods table's order (a method not in it after, by name), each variant
    right after its method."""
    base = base_method(method)
    return (ORDER.index(base) if base in ORDER else 99, method)


def display_name(method: str, names: dict[str, str] | None = None) -> str:
    """A method's name in tables and figures: `names` (default DISPLAY_NAMES) by exact name,
    else a variant as its method's display name and its suffix: `FT-QMIX eps0.2`."""
    names = DISPLAY_NAMES if names is None else names
    base, sep, suffix = method.partition("_")
    if method in names or not (sep and base in names):
        return names.get(method, method)
    return f"{names[base]} {suffix}"


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
    # shared settings (methods.SHARED_SETTINGS) where it differs from the rest of its task,
    # e.g. "lr 0.0005 (the others: 0.001)"; reports mark its rows
    differs: str = ""

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


def _settings(run: RunRecord) -> dict:
    """What must match for runs to be seeds of one method (the task aside), as JSON text."""
    raw = {"method": run.config.get("method"), "backend": run.backend,
           **(run.config.get("config") or {})}
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in raw.items()}


def _names(runs: list[RunRecord]) -> list[str]:
    """Each run's name in the report: its method (or label), plus `_key:value,...` for the
    settings that differ among the runs of that name on that task."""
    names = [r.method for r in runs]
    same_name: dict[tuple[Task, str], list[int]] = {}
    for i, r in enumerate(runs):
        same_name.setdefault((task_of(r), r.method), []).append(i)
    for (_, method), idx in same_name.items():
        settings = [_settings(runs[i]) for i in idx]
        # keys every run records: a field added in a later version is no difference
        shared = set.intersection(*(set(s) for s in settings))
        differ = sorted(k for k in shared if len({s[k] for s in settings}) > 1)
        for i, s in zip(idx, settings):
            if differ:
                names[i] = f"{method}_" + ",".join(f"{k}:{s[k]}" for k in differ)
    return names


def group(runs: list[RunRecord]) -> tuple[list[Cell], list[tuple[RunRecord, str]]]:
    """Finished runs as cells (sorted by task, then method order); the rest with a reason.

    One seed of one cell in two run folders (two stores pooled) counts once when both hold
    the same evaluations (a store and its copy or archive, `bench runs archive`), and is a
    usage error otherwise: pooling it would count one seed twice. An unfinished run in two
    stores with the same record is listed once."""
    cells: dict[tuple[Task, str], Cell] = {}
    excluded, finished, copies = [], [], set()
    for run in runs:
        why = exclusion_reason(run)
        if not why:
            finished.append(run)
        elif (key := _record(run)) is None or key not in copies:
            copies.add(key)
            excluded.append((run, why))
    for run, name in zip(finished, _names(finished)):
        task = task_of(run)
        cell = cells.setdefault((task, name), Cell(task, name))
        twin = next((r for r in cell.runs if r.seed == run.seed), None)
        if twin is not None:
            if twin.rows == run.rows:  # the same run again
                continue
            raise UsageError(f"seed {run.seed} of {name} on {task.label} is in two run "
                             f"folders, {twin.path} and {run.path}; pooling would count it "
                             "twice: give --runs-dir only one of them")
        cell.runs.append(run)
        cell.metrics.append(run_metrics(run.rows, run.budget, THRESHOLD))
    ordered = sorted(cells.values(), key=lambda c: (c.task, method_rank(c.method)))
    _mark_differing(ordered)
    return ordered, excluded


def _record(run: RunRecord) -> str | None:
    """What makes two folders one run's copies: the same config, status and evaluations
    (None for a damaged folder, whose config cannot tell it from another)."""
    if not run.config:
        return None
    return json.dumps([run.config, run.state, run.error, run.stopped_at, run.rows],
                      sort_keys=True, default=str)


def _mark_differing(cells: list[Cell]) -> None:
    """Set `differs` on each cell whose shared settings are not its task's usual ones (those
    of most cells): two methods at different learning rates are not a comparison of methods."""
    for task_cells in by_task(cells).values():
        values = [_settings(c.runs[0]) for c in task_cells]
        for key in SHARED_SETTINGS:
            seen = [v.get(key) for v in values]
            present = [s for s in seen if s is not None]
            if len(set(present)) < 2:
                continue
            usual = max(set(present), key=present.count)
            for c, s in zip(task_cells, seen):
                if s is not None and s != usual:
                    note = f"{key} {s} (the others: {usual})"
                    c.differs = f"{c.differs}; {note}" if c.differs else note


def across_tasks(cells: list[Cell]) -> tuple[list[Cell], str]:
    """The cells an across-task aggregate compares, and a sentence saying which tasks: those
    every method ran, since a method's mean over its own tasks rises or falls with which tasks
    it skipped (a partial benchmark, a method not run on a hard map). With no task shared by
    all, every cell, with a caution."""
    tasks_of: dict[str, set[Task]] = {}
    for c in cells:
        tasks_of.setdefault(c.method, set()).add(c.task)
    every = {c.task for c in cells}
    shared = set.intersection(*tasks_of.values()) if tasks_of else set()
    if shared == every:
        return cells, ""
    if not shared:
        return cells, " Methods ran on different tasks and share none: compare with care."
    left = sorted(every - shared)
    return [c for c in cells if c.task in shared], (
        f" On the {len(shared)} task(s) every method ran; left out, as not every method ran "
        f"there: {'; '.join(f'{t.map} {t.dataset_name} ({t.budget:,} steps)' for t in left)} "
        "(`--method`, repeated, narrows the methods compared).")


def by_task(cells: list[Cell]) -> dict[Task, list[Cell]]:
    out: dict[Task, list[Cell]] = {}
    for c in cells:
        out.setdefault(c.task, []).append(c)
    return out
