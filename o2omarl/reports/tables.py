"""Report tables: built once as text cells + full-precision CSV rows, rendered as Markdown,
LaTeX, HTML and CSV.

A displayed statistic is `mean [lo, hi]`: the mean over seeds and its 95% bootstrap interval
(`stats.stratified_ci`). Bold marks the best value of a column within a row group (the methods
of one task) when the group has at least two rows; ties are all bold. "Best" compares the share
of a cell's seeds that have a value first (steps to 80% is missing for seeds that never reach
80%), then the mean as displayed (rounded), higher or lower per the column; a cell with fewer
seeds is not ranked lower for that.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field

import numpy as np

from o2omarl.benchmark.results import RunRecord
from o2omarl.errors import BenchError
from o2omarl.protocol import (
    CALIBRATED,
    EVAL_EPISODES,
    MIN_EVALUATIONS,
    calibration,
    greedy_calibration,
)
from o2omarl.reports import stats
from o2omarl.reports.cells import Cell, Task, across_tasks, by_task, display_name, method_rank
from o2omarl.reports.stats import iqm

# run_metrics key, column header, +1 if higher is better (-1 lower), decimals shown
MAIN_METRICS = (
    ("wr_start", "win rate before", +1, 3),
    ("wr_final", "win rate after", +1, 3),
    ("auc", "AUC", +1, 3),
    ("unlearning_drop", "unlearning drop", -1, 3),
    # the whole run's lowest point: a collapse postponed past the first 10% shows here
    ("largest_fall", "largest fall", -1, 3),
    ("largest_fall_step", "fall at step", 0, 0),
    # the first evaluation from which the win rate stays at or above 0.8
    ("steps_to_threshold", "steps to 80%", -1, 0),
    ("regret", "regret", -1, 3),
    # Q_tot - what the data earned, worst evaluation window: far above 0 means diverging values
    ("q_overestimation", "Q_tot overestimation", -1, 2),
)
# The same window metrics of the test return: where no method wins (5m_vs_6m from `poor`),
# the win-rate table is all zeros and the return still ranks the methods
RETURN_METRICS = (
    ("ret_start", "return before", +1, 2),
    ("ret_final", "return after", +1, 2),
    ("ret_auc", "return AUC", +1, 2),
    ("ret_drop", "return drop", -1, 2),
    ("ret_fall", "largest return fall", -1, 2),
)
# Across-task aggregates: (metric key, its name in headers)
AGGREGATE_METRICS = (("auc", "AUC"), ("wr_final", "final win rate"))
# P(improvement) needs no common scale, so the return AUC joins it: it still ranks methods on
# a map nobody wins, where both win-rate columns compare zeros
IMPROVEMENT_METRICS = AGGREGATE_METRICS + (("ret_auc", "return AUC"),)
REFERENCE = "ovmse"  # the method whose probability of improvement over the others is reported


UP, DOWN = "\u2191", "\u2193"  # header arrows: higher / lower is better


@dataclass
class Table:
    name: str  # file stem; the LaTeX label is tab:<name>
    caption: str  # one line, for the index and the LaTeX caption
    columns: list[str]
    fields: list[str]  # CSV columns
    rows: list[list[str]]  # display text
    data: list[dict]  # the same rows at full precision (keys: fields), for the CSV
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column)
    # Per column: +1 / -1 when higher / lower is better (an arrow in the header), else 0.
    # Cells of such columns are `mean [lo, hi]`: HTML and LaTeX set the interval apart.
    better: list[int] = field(default_factory=list)
    # The first k columns name a row group (the task). HTML and LaTeX show them once, in a row
    # spanning the table above the group, so that a wide table fits a window or a page.
    group_columns: int = 0

    def __post_init__(self):
        self.better = self.better or [0] * len(self.columns)

    def legend(self, up: str = UP, down: str = DOWN, escape=lambda v: v) -> str:
        """The caption, plus what the header arrows mean when there are any."""
        note = f" {up}/{down}: higher/lower is better." if any(self.better) else ""
        return escape(self.caption) + note

    def _headers(self, up: str, down: str, escape) -> list[str]:
        return [escape(c) + {1: f" {up}", -1: f" {down}"}.get(b, "")
                for c, b in zip(self.columns, self.better)]

    def _cells(self, escape, embolden, ci=None) -> list[list[str]]:
        """Every cell escaped (bold where marked); `ci(point, interval)` joins the parts of a
        directed column's `mean [lo, hi]` (other text stays as it is)."""
        def text(v: str, j: int) -> str:
            point, sep, interval = v.partition(" [")
            if ci and self.better[j] and sep:
                return ci(escape(point), escape("[" + interval))
            return escape(v)
        return [[embolden(text(v, j)) if (i, j) in self.bold else text(v, j)
                 for j, v in enumerate(row)] for i, row in enumerate(self.rows)]

    def _groups(self, cells: list[list[str]]) -> list[tuple[str, list[list[str]]]]:
        """(title, rows without the group columns) for each run of rows of one group."""
        k, out = self.group_columns, []
        for raw, row in zip(self.rows, cells):
            if not out or out[-1][0] != raw[:k]:
                out.append((raw[:k], []))
            out[-1][1].append(row[k:])
        return [(", ".join(f"{c} {v}" for c, v in zip(self.columns, key)), rows)
                for key, rows in out]

    def markdown(self) -> str:
        rows = self._cells(lambda v: v.replace("|", r"\|"), lambda v: f"**{v}**")
        head = self._headers(UP, DOWN, lambda v: v.replace("|", r"\|"))
        lines = [head, ["---"] * len(head)] + rows
        return "\n".join("| " + " | ".join(r) + " |" for r in lines) + "\n"

    def latex(self) -> str:
        """A booktabs table float with caption and label; tables over 6 columns span both
        columns of a two-column paper (table*)."""
        cells = self._cells(_latex_escape, lambda v: rf"\textbf{{{v}}}",
                            lambda point, ci: rf"{point} {{\scriptsize {ci}}}")
        head = self._headers(r"$\uparrow$", r"$\downarrow$", _latex_escape)[self.group_columns:]
        body = [" & ".join(head) + r" \\"]
        for title, rows in self._groups(cells):
            body.append(r"\midrule")
            if title:
                body.append(rf"\multicolumn{{{len(head)}}}{{l}}{{\textit{{"
                            rf"{_latex_escape(title)}}}}} \\")
            body += [" & ".join(r) + r" \\" for r in rows]
        env = "table*" if len(head) > 6 else "table"
        caption = self.legend(r"$\uparrow$", r"$\downarrow$", _latex_escape)
        return "\n".join([r"% Needs \usepackage{booktabs}.", rf"\begin{{{env}}}[t]",
                          r"\centering", r"\small", rf"\caption{{{caption}}}",
                          rf"\label{{tab:{self.name}}}",
                          rf"\begin{{tabular}}{{l{'c' * (len(head) - 1)}}}", r"\toprule",
                          *body, r"\bottomrule", r"\end{tabular}", rf"\end{{{env}}}"]) + "\n"

    def html(self) -> str:
        cells = self._cells(html.escape, lambda v: f"<b>{v}</b>",
                            lambda point, ci: f'{point}<br><span class="ci">{ci}</span>')
        head = self._headers(UP, DOWN, html.escape)[self.group_columns:]
        parts = ["<table>", "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
                 + "</tr></thead>", "<tbody>"]
        for title, rows in self._groups(cells):
            if title:
                parts.append(f'<tr class="group"><td colspan="{len(head)}">'
                             f"{html.escape(title)}</td></tr>")
            parts += ["<tr>" + "".join(f"<td>{v}</td>" for v in r) + "</tr>" for r in rows]
        return "\n".join(parts + ["</tbody>", "</table>"]) + "\n"

    def csv(self) -> str:
        out = io.StringIO()
        w = csv.DictWriter(out, self.fields, lineterminator="\n")
        w.writeheader()
        w.writerows(self.data)
        return out.getvalue()


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"}
_LATEX_SPECIAL.update({"\\": r"\textbackslash{}", "~": r"\textasciitilde{}",
                       "^": r"\textasciicircum{}"})


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _fmt(x: float, decimals: int) -> str:
    return "-" if math.isnan(x) else f"{x:,.{decimals}f}"


def _ci_text(point: float, lo: float, hi: float, decimals: int) -> str:
    return f"{_fmt(point, decimals)} [{_fmt(lo, decimals)}, {_fmt(hi, decimals)}]"


@dataclass
class _Stat:
    """One displayed statistic, with what bolding compares."""
    text: str
    point: float
    lo: float
    hi: float
    n: int  # seeds (or runs) with a value
    rank: tuple  # larger is better


def _mean_stat(values: np.ndarray, better: int, decimals: int, seed: int, n_boot: int,
               n_all: int) -> _Stat:
    finite = values[~np.isnan(values)]
    if len(finite) == 0:
        return _Stat("-", math.nan, math.nan, math.nan, 0, (0, -math.inf))
    point, lo, hi = (float(v) for v in stats.stratified_ci([finite], np.mean, seed, n_boot))
    text = _ci_text(point, lo, hi, decimals)
    if len(finite) < n_all:
        text += f" ({len(finite)}/{n_all} seeds)"
    # the share of the cell's seeds with a value first (a seed that never reaches 80% counts
    # against it), not their number: a cell with fewer seeds so far is not worse for that
    return _Stat(text, point, lo, hi, len(finite),
                 (len(finite) / n_all, better * round(point, decimals)))


def _bold_best(stats_by_row: list[_Stat], row_ids: list[int], col: int, bold: set) -> None:
    candidates = [(s.rank, i) for s, i in zip(stats_by_row, row_ids) if s.n]
    if len(row_ids) < 2 or not candidates:
        return
    best = max(rank for rank, _ in candidates)
    bold.update((i, col) for rank, i in candidates if rank == best)


# Window metrics and the run_metrics count of evaluations in their window
RESOLUTION = {"wr_final": "after_evals", "unlearning_drop": "early_evals",
              "largest_fall": "after_evals", "ret_final": "after_evals",
              "ret_drop": "early_evals", "ret_fall": "after_evals"}


def _unresolved(cell: Cell, key: str) -> _Stat | None:
    """`n/a (k evaluations)`, never bold, when a run's window holds too few evaluations."""
    if key not in RESOLUTION:
        return None
    k = int(np.nanmin(cell.values(RESOLUTION[key])))
    if k >= MIN_EVALUATIONS:
        return None
    return _Stat(f"n/a ({k} evaluation{'s' if k != 1 else ''})", math.nan, math.nan, math.nan,
                 0, (0, -math.inf))


def main_table(cells: list[Cell], seed: int = 0, n_boot: int = stats.N_BOOT,
               names: dict[str, str] | None = None) -> Table:
    """Per map x dataset x method (x budget x pretraining): every O2O metric, mean [95% CI].

    `names`: display names of methods (cells.display_name)."""
    caption = ("Per task and method: mean over seeds [95% bootstrap interval]; best per task "
               "in bold. AUC = mean test win rate over the online budget.")
    return _task_table(cells, "main", caption, MAIN_METRICS, seed, n_boot, names)


def returns_table(cells: list[Cell], seed: int = 0, n_boot: int = stats.N_BOOT,
                  names: dict[str, str] | None = None) -> Table:
    """The main table's window metrics on the test return (max ~20) instead of the win rate."""
    caption = ("Test return (max ~20) per task and method: before -> after, mean over the "
               "online budget (return AUC) and the drop in the first 10% of it; mean over seeds "
               "[95% bootstrap interval], best per task in bold.")
    return _task_table(cells, "returns", caption, RETURN_METRICS, seed, n_boot, names)


def _task_table(cells: list[Cell], name: str, caption: str, metrics: tuple, seed: int,
                n_boot: int, names: dict[str, str] | None) -> Table:
    """One row per cell, grouped by task: each of `metrics` as mean [95% CI]."""
    fixed = ["map", "dataset", "budget", "pretrain", "method", "seeds"]  # the task first
    columns = fixed + [header for _, header, _, _ in metrics]
    rows, data, bold = [], [], set()
    for task, group_cells in by_task(cells).items():
        first = len(rows)
        per_metric = []
        for c in group_cells:
            n = len(c.runs)
            cell_stats = [_unresolved(c, key) or _mean_stat(c.values(key), better, dec, seed,
                                                            n_boot, n)
                          for key, _, better, dec in metrics]
            per_metric.append(cell_stats)
            rows.append([task.map, task.dataset, f"{task.budget:,}", f"{task.pretrain_steps:,}",
                         display_name(c.method, names) + (" *" if c.differs else ""), str(n)]
                        + [s.text for s in cell_stats])
            record = {"map": task.map, "dataset": task.dataset, "method": c.method,
                      "budget": task.budget, "pretrain_steps": task.pretrain_steps,
                      "seeds": n, "seed_list": " ".join(str(r.seed) for r in c.runs),
                      "settings_differ": c.differs}
            for (key, *_), s in zip(metrics, cell_stats):
                record.update({f"{key}_mean": s.point, f"{key}_lo": s.lo, f"{key}_hi": s.hi,
                               f"{key}_n": s.n})
            data.append(record)
        row_ids = list(range(first, len(rows)))
        for k in range(len(metrics)):
            if metrics[k][2] == 0:  # a column with no better direction (a step) is never bold
                continue
            _bold_best([m[k] for m in per_metric], row_ids, len(fixed) + k, bold)
    fields = ["map", "dataset", "method", "budget", "pretrain_steps", "seeds", "seed_list",
              "settings_differ"]
    fields += [f"{key}_{s}" for key, *_ in metrics for s in ("mean", "lo", "hi", "n")]
    marked = [f"{display_name(c.method, names)} on {c.task.label}: {c.differs}" for c in cells
              if c.differs]
    if marked:
        caption += (" * Shared settings (learner, loop, evaluation, pretraining) differ from "
                    "the rest of the task, so the row is no like-for-like comparison: "
                    + "; ".join(marked) + ".")
    better = [0] * len(fixed) + [b for _, _, b, _ in metrics]
    return Table(name, caption, columns, fields, rows, data, bold, better, group_columns=4)


def _scores(cells: list[Cell], method: str, key: str) -> dict[Task, np.ndarray]:
    return {c.task: c.values(key) for c in cells if c.method == method}


def _methods(cells: list[Cell]) -> list[str]:
    return sorted({c.method for c in cells}, key=method_rank)


def aggregate_table(cells: list[Cell], seed: int = 0, n_boot: int = stats.N_BOOT,
                    names: dict[str, str] | None = None) -> Table:
    """Per method, across the tasks every method ran (`cells.across_tasks`): mean and IQM of
    AUC and final win rate.

    Both are already in [0, 1] (win rates), so they are their own normalised scores.
    """
    cells, which = across_tasks(cells)
    columns = ["method", "tasks", "runs"]
    for _, name in AGGREGATE_METRICS:
        columns += [f"mean {name}", f"IQM {name}"]
    rows, data, per_method = [], [], []
    for method in _methods(cells):
        row_stats, record = [], {"method": method}
        for key, _ in AGGREGATE_METRICS:
            per_task = list(_scores(cells, method, key).values())
            for stat_name, fn in (("mean", np.mean), ("iqm", iqm)):
                point, lo, hi = (float(v) for v in stats.stratified_ci(per_task, fn, seed,
                                                                        n_boot))
                row_stats.append(_Stat(_ci_text(point, lo, hi, 3), point, lo, hi, 1,
                                       (1, round(point, 3))))
                record.update({f"{key}_{stat_name}": point, f"{key}_{stat_name}_lo": lo,
                               f"{key}_{stat_name}_hi": hi})
        n_tasks, n_runs = len(per_task), sum(len(x) for x in per_task)
        record.update(tasks=n_tasks, runs=n_runs)
        rows.append([display_name(method, names), str(n_tasks), str(n_runs)]
                    + [s.text for s in row_stats])
        data.append(record)
        per_method.append(row_stats)
    bold: set = set()
    for k in range(2 * len(AGGREGATE_METRICS)):
        _bold_best([m[k] for m in per_method], list(range(len(rows))), 3 + k, bold)
    caption = ("Across tasks: mean and IQM of AUC and final win rate (already in [0, 1], so "
               "normalised) [95% stratified bootstrap]; best in bold." + which)
    fields = ["method", "tasks", "runs"] + [f"{key}_{stat}{end}" for key, _ in AGGREGATE_METRICS
                                            for stat in ("mean", "iqm")
                                            for end in ("", "_lo", "_hi")]
    return Table("aggregate", caption, columns, fields, rows, data, bold,
                 [0, 0, 0] + [+1] * 2 * len(AGGREGATE_METRICS))


def improvement_table(cells: list[Cell], reference: str = REFERENCE, seed: int = 0,
                      n_boot: int = stats.N_BOOT, names: dict[str, str] | None = None) -> Table:
    """P(reference > other) on the tasks both ran, for AUC, final win rate and return AUC."""
    columns = ["comparison", "shared tasks"] + [f"P(improvement) {n}" for _, n in
                                                 IMPROVEMENT_METRICS]
    rows, data = [], []
    ref_tasks = {c.task for c in cells if c.method == reference}
    others = [m for m in _methods(cells) if m != reference] if ref_tasks else []
    for other in others:
        shared = sorted(ref_tasks & {c.task for c in cells if c.method == other})
        texts, record = [], {"method": reference, "other": other, "shared_tasks": len(shared)}
        for key, _ in IMPROVEMENT_METRICS:
            ref, oth = _scores(cells, reference, key), _scores(cells, other, key)
            x, y = [ref[t] for t in shared], [oth[t] for t in shared]
            point = lo = hi = math.nan
            # a run without the metric (no test_return logged) would count as losing every pair
            known = shared and not any(np.isnan(v).any() for v in x + y)
            if known:
                point, lo, hi = stats.probability_of_improvement(x, y, seed, n_boot)
            texts.append(_ci_text(point, lo, hi, 3) if known else "-")
            record.update({f"{key}_poi": point, f"{key}_poi_lo": lo, f"{key}_poi_hi": hi})
        rows.append([f"{display_name(reference, names)} > {display_name(other, names)}",
                     str(len(shared))] + texts)
        data.append(record)
    caption = (f"Probability that a run of {display_name(reference, names)} beats a run of "
               "the other method on the "
               "same task (0.5 = no difference) [95% stratified bootstrap].")
    if not rows:
        caption += (f" Needs {display_name(reference, names)} and at least one other method "
                    "on a shared task.")
    fields = ["method", "other", "shared_tasks"] + [
        f"{key}_poi{end}" for key, _ in IMPROVEMENT_METRICS for end in ("", "_lo", "_hi")]
    return Table("improvement", caption, columns, fields, rows, data,
                 better=[0, 0] + [+1] * len(IMPROVEMENT_METRICS))


def offline_setting(config: dict) -> str:
    """The conservative term a run pretrained with, as the pretraining table names it."""
    loss = config.get("offline_loss", "cql")
    alpha = config.get(f"{loss}_alpha")
    return f"{loss} alpha {alpha:g}" if isinstance(alpha, (int, float)) else loss


def pretraining_table(cells: list[Cell]) -> Table:
    """Per task and offline setting, each pretraining evaluation: greedy win rate and return,
    Q_tot of the data's actions, the discounted return those steps earned, and their ratio,
    then the same on the greedy policy's battles (`protocol.greedy_calibration`; "-" in logs
    from before it), means over the seeds (one pretraining per seed, however many methods
    started from it)."""
    columns = ["map", "dataset", "pretrain", "offline loss", "updates", "seeds", "greedy win",
               "return", "Q_tot", "earned", "ratio", "greedy Q_tot", "greedy earned",
               "greedy ratio"]
    keys = ["test_win_rate", "test_return", "q_taken_mean", "return_to_go_mean",
            "test_q_mean", "test_earned_mean"]
    rows, data = [], []
    for task, group_cells in by_task(cells).items():
        logs: dict[str, dict[int, list[dict]]] = {}  # setting -> seed -> rows
        for c in group_cells:
            for r in c.runs:
                if r.pretrain_rows:
                    logs.setdefault(offline_setting(r.config.get("config") or {}), {}) \
                        .setdefault(r.seed, r.pretrain_rows)
        for setting, by_seed in sorted(logs.items()):
            updates = sorted({row["update"] for rs in by_seed.values() for row in rs})
            for u in updates:
                at = [row for rs in by_seed.values() for row in rs if row["update"] == u]
                mean = {k: float(np.mean([row.get(k, np.nan) for row in at])) for k in keys}
                ratio = float(np.mean([calibration(row) for row in at]))
                greedy = float(np.mean([greedy_calibration(row) for row in at]))
                rows.append([task.map, task.dataset, f"{task.pretrain_steps:,}", setting,
                             f"{u:,}", str(len(at)), _fmt(mean["test_win_rate"], 2),
                             _fmt(mean["test_return"], 2), _fmt(mean["q_taken_mean"], 2),
                             _fmt(mean["return_to_go_mean"], 2), _fmt(ratio, 2),
                             _fmt(mean["test_q_mean"], 2), _fmt(mean["test_earned_mean"], 2),
                             _fmt(greedy, 2)])
                data.append({"map": task.map, "dataset": task.dataset,
                             "pretrain_steps": task.pretrain_steps, "offline_loss": setting,
                             "update": u, "seeds": len(at), **mean, "ratio": ratio,
                             "greedy_ratio": greedy})
    fields = ["map", "dataset", "pretrain_steps", "offline_loss", "update", "seeds", *keys,
              "ratio", "greedy_ratio"]
    caption = ("Offline pretraining at each of its evaluations, per task and conservative term: "
               f"greedy win rate and return ({EVAL_EPISODES} battles by default), Q_tot of the "
               "data's actions and the "
               "discounted return those steps earned (means over the updates since the "
               "previous evaluation) and their ratio; then Q_tot of the greedy actions along "
               "the evaluation battles against the discounted return that followed, and "
               "their ratio (calibrated: ~1; a warning outside "
               f"[{CALIBRATED[0]}, {CALIBRATED[1]}] at the end). The data's ratio exceeds 1 "
               "for right values wherever the greedy policy beats the data's behaviour; the "
               "greedy ratio does not. Means over seeds.")
    return Table("pretraining", caption, columns, fields, rows, data, group_columns=3)


def dataset_table(dataset_ids: list[str]) -> Table:
    """Every dataset the runs used, from its stored statistics; unreadable ones as missing."""
    from o2omarl.datasets import store

    columns = ["id", "tier", "episodes", "steps", "mean return", "win rate", "status"]
    fields = ["id", "tier", "episodes", "steps", "return_mean", "win_rate", "status"]
    rows, data = [], []
    for dataset_id in dataset_ids:
        try:
            rec = store.get(dataset_id)
            s = rec.stats
            values = [dataset_id, rec.tier, s["episodes"], s["steps"], s["return_mean"],
                      s["win_rate"], "ok"]
            text = values[:2] + [f"{s['episodes']:,}", f"{s['steps']:,}",
                                 f"{s['return_mean']:.2f}", f"{s['win_rate']:.3f}", "ok"]
        except (BenchError, OSError, KeyError, TypeError, ValueError) as e:
            values = [dataset_id] + [""] * 5 + [f"missing: {e}".splitlines()[0]]
            text = [dataset_id] + ["-"] * 5 + values[-1:]
        rows.append(text)
        data.append(dict(zip(fields, values)))
    caption = "Datasets used by the runs: size, mean return (~20 max) and win rate."
    return Table("datasets", caption, columns, fields, rows, data)


def excluded_table(excluded: list[tuple[RunRecord, str]], runs_dirs) -> Table:
    """Runs not averaged in (not done, or done without evaluations), with the reason; each
    run's folder relative to its store when the report reads one store."""
    columns = ["run", "map", "dataset", "method", "seed", "budget", "steps done", "reason"]
    fields = [c.replace(" ", "_") for c in columns]
    rows, data = [], []
    for run, why in excluded:
        where = str(run.path)
        if len(runs_dirs) == 1 and run.path.is_relative_to(runs_dirs[0]):
            where = str(run.path.relative_to(runs_dirs[0]))
        values = [where, run.map, run.dataset or "-", run.method, run.seed, run.budget,
                  run.steps_done, why]
        rows.append([str(v) for v in values[:5]] + [f"{run.budget:,}", f"{run.steps_done:,}",
                                                    why])
        data.append(dict(zip(fields, values)))
    caption = "Runs not included in any table or figure (unfinished, failed or damaged)."
    return Table("not_included", caption, columns, fields, rows, data)
