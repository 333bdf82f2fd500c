"""A compact per-task table of a report's main cells, for results pages and the README:

    python benchmarks/task_table.py docs/results/calibrated/tables/main.csv --pretrain-steps 6000
    python benchmarks/task_table.py docs/results/benchmark/tables/main.csv --by-task auc
    python benchmarks/task_table.py docs/results/benchmark/tables/aggregate.csv --across

One row per task and method (in the methods table's order): seeds, win rate before, after,
AUC, the largest fall below the offline win rate and the largest Q_tot overestimation, with the
report's 95% intervals where it gives them. `--by-task METRIC`: instead one row per method and
one column per task, the mean of METRIC (a column `METRIC_mean` of the CSV, e.g. auc, regret,
or ret_auc of returns.csv), the best of each task in bold (highest or lowest, as the report's
tables rank it): which method wins where. `--across` (given aggregate.csv): the cross-task
table of a benchmark page, the mean and IQM of AUC and of the final win rate, and from
improvement.csv beside it the probability that its reference method improves on each.
Bold, as in the report: the best value as displayed, ties all bold.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from o2omarl.methods import DISPLAY_NAMES
from o2omarl.reports.cells import method_rank
from o2omarl.reports.tables import MAIN_METRICS, RETURN_METRICS

# +1 / -1 where higher / lower is better, from the report's own tables (one place for the fact)
DIRECTION = {key: better for key, _, better, _ in MAIN_METRICS + RETURN_METRICS if better}


def interval(row: dict, key: str, digits: int, point: str | None = None) -> str:
    """`point [lo, hi]` from the columns POINT (KEY_mean unless named), KEY_lo and KEY_hi."""
    lo, mean, hi = (float(row[c]) for c in (f"{key}_lo", point or f"{key}_mean", f"{key}_hi"))
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def name(method: str) -> str:
    base, _, suffix = method.partition("_")
    return DISPLAY_NAMES.get(base, base) + (f" {suffix.replace('eps', 'eps ')}" if suffix else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("main_csv")
    ap.add_argument("--pretrain-steps", help="only cells with this pretraining length")
    ap.add_argument("--by-task", metavar="METRIC",
                    help="a method x task table of METRIC, the best bold: "
                         + ", ".join(DIRECTION))
    ap.add_argument("--across", action="store_true",
                    help="MAIN_CSV is a report's aggregate.csv: the cross-task table, with "
                         "P(improvement) from improvement.csv beside it")
    args = ap.parse_args()
    if args.across:
        if args.by_task or args.pretrain_steps:
            raise SystemExit("--across takes neither --by-task nor --pretrain-steps: "
                             "aggregate.csv has one row per method, over every task")
        return across(Path(args.main_csv))
    with open(args.main_csv) as f:
        rows = [r for r in csv.DictReader(f)
                if args.pretrain_steps in (None, r["pretrain_steps"])]
    rows.sort(key=lambda r: (r["dataset"], method_rank(r["method"])))
    if args.by_task:
        return by_task(rows, args.by_task)
    print("| task | method | seeds | win rate before | after | AUC | largest fall | "
          "Q_tot overestimation |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {task_name(r)} | {name(r['method'])} | {r['seeds']} | "
              f"{float(r['wr_start_mean']):.2f} | {interval(r, 'wr_final', 2)} | "
              f"{interval(r, 'auc', 3)} | "
              f"{float(r['largest_fall_mean']):.2f} | {float(r['q_overestimation_mean']):.2f} |")


def by_task(rows: list[dict], metric: str) -> None:
    """Methods down, tasks across, METRIC's mean in each cell, the best bold (the highest, or
    the lowest where lower is better); `(n)` after a cell run with fewer seeds than the table's
    most."""
    if metric not in DIRECTION:
        raise SystemExit(f"--by-task {metric!r}: not a ranked metric; accepted: "
                         + ", ".join(DIRECTION))
    if not rows:
        raise SystemExit("--by-task: the CSV has no rows (or none at --pretrain-steps)")
    if f"{metric}_mean" not in rows[0]:
        raise SystemExit(f"--by-task {metric!r}: the CSV has no column {metric}_mean")
    tasks = list(dict.fromkeys(task_name(r) for r in rows))
    methods = sorted({r["method"] for r in rows}, key=method_rank)
    cell: dict[tuple[str, str], dict] = {}
    for r in rows:  # one cell per task and method, or a column would hide a row
        key = (task_name(r), r["method"])
        if key in cell:
            raise SystemExit(f"--by-task: {key[1]} on {key[0]} has two rows (another budget or "
                             "pretraining length); choose one with --pretrain-steps")
        cell[key] = r
    most = max(int(r["seeds"]) for r in rows)
    sign = DIRECTION[metric]
    best = {t: sign * max(sign * round(float(r[f"{metric}_mean"]), 3)
                          for (t2, _), r in cell.items() if t2 == t)
            for t in tasks}
    print("| method | " + " | ".join(tasks) + " |")
    print("|---" * (len(tasks) + 1) + "|")
    for m in methods:
        out = []
        for t in tasks:
            r = cell.get((t, m))
            if r is None:
                out.append("-")
                continue
            v = round(float(r[f"{metric}_mean"]), 3)
            text = f"**{v:.3f}**" if v == best[t] else f"{v:.3f}"
            out.append(text + (f" ({r['seeds']})" if int(r["seeds"]) < most else ""))
        print(f"| {name(m)} | " + " | ".join(out) + " |")


def across(aggregate_csv: Path) -> None:
    """Methods down; mean and IQM AUC with intervals, mean and IQM final win rate, the best of
    each bold; then P(reference > method) on AUC and the final win rate where improvement.csv
    is beside aggregate.csv (its `method` column is the reference, `-` on its own row)."""
    try:
        with open(aggregate_csv) as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise SystemExit(f"--across: cannot read {aggregate_csv}: {e.strerror}") from None
    stats = ("auc_mean", "auc_iqm", "wr_final_mean", "wr_final_iqm")
    if not rows or any(f"{k}_lo" not in rows[0] for k in stats):
        raise SystemExit(f"--across: {aggregate_csv} is not a report's aggregate.csv (columns "
                         + ", ".join(f"{k}, {k}_lo, {k}_hi" for k in stats) + ")")
    improvement = aggregate_csv.with_name("improvement.csv")
    poi: dict[str, dict] = {}
    if improvement.exists():
        with open(improvement) as f:
            rows_poi = list(csv.DictReader(f))
        need = ("method", "other", *(f"{k}_poi{p}" for k in ("auc", "wr_final")
                                     for p in ("", "_lo", "_hi")))
        if rows_poi and any(c not in rows_poi[0] for c in need):
            raise SystemExit(f"--across: {improvement} is not a report's improvement.csv "
                             "(columns " + ", ".join(need) + ")")
        poi = {r["other"]: r for r in rows_poi}
    reference = next(iter(poi.values()))["method"] if poi else None
    best = {k: max(round(float(r[k]), 3) for r in rows) for k in stats}

    def stat(r: dict, k: str, ci: bool) -> str:
        v = round(float(r[k]), 3)
        text = interval(r, k, 3, point=k) if ci else f"{v:.3f}"
        return f"**{text}**" if v == best[k] else text

    columns = ["method", "mean AUC", "IQM AUC", "mean final win rate", "IQM final win rate"]
    if reference:
        columns += [f"P({name(reference)} > it), AUC", f"P({name(reference)} > it), final win rate"]
    print("| " + " | ".join(columns) + " |")
    print("|---" * len(columns) + "|")
    for r in sorted(rows, key=lambda r: method_rank(r["method"])):
        out = [name(r["method"]), stat(r, "auc_mean", True), stat(r, "auc_iqm", True),
               stat(r, "wr_final_mean", False), stat(r, "wr_final_iqm", False)]
        if reference:
            p = poi.get(r["method"])
            out += [interval(p, f"{k}_poi", 2, point=f"{k}_poi") if p else "-"
                    for k in ("auc", "wr_final")]
        print("| " + " | ".join(out) + " |")


def task_name(row: dict) -> str:
    return row["dataset"].split("/", 1)[-1].rsplit("-v", 1)[0]


if __name__ == "__main__":
    main()
