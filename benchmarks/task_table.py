"""A compact per-task table of a report's main cells, for results pages and the README:

    python benchmarks/task_table.py docs/results/calibrated/tables/main.csv --pretrain-steps 6000

One row per task and method (in the methods table's order): seeds, win rate before, after,
AUC, the largest fall below the offline win rate and the largest Q_tot overestimation, with the
report's 95% intervals where it gives them.
"""

from __future__ import annotations

import argparse
import csv

from o2omarl.methods import DISPLAY_NAMES, ORDER


def interval(row: dict, key: str, digits: int) -> str:
    lo, mean, hi = (float(row[f"{key}_{p}"]) for p in ("lo", "mean", "hi"))
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def name(method: str) -> str:
    base, _, suffix = method.partition("_")
    return DISPLAY_NAMES.get(base, base) + (f" {suffix.replace('eps', 'eps ')}" if suffix else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("main_csv")
    ap.add_argument("--pretrain-steps", help="only cells with this pretraining length")
    args = ap.parse_args()
    with open(args.main_csv) as f:
        rows = [r for r in csv.DictReader(f)
                if args.pretrain_steps in (None, r["pretrain_steps"])]
    rank = {m: i for i, m in enumerate(ORDER)}
    rows.sort(key=lambda r: (r["dataset"], rank.get(r["method"].partition("_")[0], 99),
                             r["method"]))
    print("| task | method | seeds | win rate before | after | AUC | largest fall | "
          "Q_tot overestimation |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        task = r["dataset"].split("/", 1)[-1].rsplit("-v", 1)[0]
        print(f"| {task} | {name(r['method'])} | {r['seeds']} | {float(r['wr_start_mean']):.2f} "
              f"| {interval(r, 'wr_final', 2)} | {interval(r, 'auc', 3)} | "
              f"{float(r['largest_fall_mean']):.2f} | {float(r['q_overestimation_mean']):.2f} |")


if __name__ == "__main__":
    main()
