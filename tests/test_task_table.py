"""benchmarks/task_table.py: which method wins where (--by-task) and across tasks (--across)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "task_table.py"


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def table(tmp_path: Path, rows: list[dict], *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "main.csv"
    write_csv(path, rows)
    return subprocess.run([sys.executable, str(SCRIPT), str(path), *args], capture_output=True,
                          text=True)


def test_methods_down_tasks_across_best_bold_fewer_seeds_marked_missing_dashed(tmp_path):
    cells = [("smax/8m/medium-v0", "ovmse", 3, 0.7), ("smax/8m/medium-v0", "qmix", 3, 0.9),
             ("smax/3s5z/medium-v0", "ovmse", 1, 0.6), ("smax/3s5z/medium-v0", "qmix", 3, 0.4),
             ("smax/8m/medium-v0", "ft-qmix_eps0.2", 3, 0.5)]
    rows = [{"dataset": d, "method": m, "pretrain_steps": 2500, "seeds": s, "auc_mean": v}
            for d, m, s, v in cells]
    res = table(tmp_path, rows, "--by-task", "auc")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "| method | 3s5z/medium | 8m/medium |",
        "|---|---|---|",
        "| QMIX | 0.400 | **0.900** |",  # the methods table's order, a variant after its method
        "| FT-QMIX eps 0.2 | - | 0.500 |",
        "| OVMSE | **0.600** (1) | 0.700 |",
    ]
    # a lower-is-better metric bolds the lowest (the direction the report's tables rank by)
    low = table(tmp_path, [{**r, "regret_mean": r["auc_mean"]} for r in rows], "--by-task",
                "regret")
    assert low.returncode == 0, low.stderr
    assert low.stdout.splitlines()[2:] == [
        "| QMIX | **0.400** | 0.900 |",
        "| FT-QMIX eps 0.2 | - | **0.500** |",
        "| OVMSE | 0.600 (1) | 0.700 |",
    ]
    bad = table(tmp_path, rows, "--by-task", "largest_fall_step")  # unranked: nothing to bold
    assert bad.returncode != 0 and "not a ranked metric" in bad.stderr and "auc" in bad.stderr
    bad = table(tmp_path, rows, "--by-task", "regret")
    assert bad.returncode != 0 and "no column regret_mean" in bad.stderr
    # a second pretraining length would overwrite a cell unseen: refused, --pretrain-steps picks
    twice = rows + [{**rows[0], "pretrain_steps": 6000}]
    bad = table(tmp_path, twice, "--by-task", "auc")
    assert bad.returncode != 0 and "ovmse on 8m/medium has two rows" in bad.stderr
    assert table(tmp_path, twice, "--by-task", "auc", "--pretrain-steps", "2500").stdout == \
        res.stdout


def test_by_task_bolds_ties_as_displayed(tmp_path):
    """Two means that print alike are both bold, as in the report's own tables."""
    rows = [{"dataset": "smax/8m/medium-v0", "method": m, "pretrain_steps": 2500, "seeds": 3,
             "auc_mean": v} for m, v in (("ovm", 0.59266), ("se", 0.59271), ("qmix", 0.5))]
    res = table(tmp_path, rows, "--by-task", "auc")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[2:] == ["| QMIX | 0.500 |", "| OVM | **0.593** |",
                                           "| SE | **0.593** |"]


def test_across_gives_the_cross_task_table_with_p_improvement(tmp_path):
    def agg(method, auc, iqm, final, final_iqm):
        row = {"method": method, "tasks": 8, "runs": 24}
        for k, v in (("auc_mean", auc), ("auc_iqm", iqm), ("wr_final_mean", final),
                     ("wr_final_iqm", final_iqm)):
            row.update({k: v, f"{k}_lo": v - 0.01, f"{k}_hi": v + 0.02})
        return row

    write_csv(tmp_path / "aggregate.csv", [agg("ovmse", 0.558, 0.5916, 0.655, 0.73),
                                           agg("qmix", 0.414, 0.4, 0.642, 0.703),
                                           agg("wsrl", 0.532, 0.59249, 0.68, 0.761)])
    path = tmp_path / "aggregate.csv"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), str(path), *args],
                              capture_output=True, text=True)

    res = run("--across")  # no improvement.csv beside it: no P(improvement) columns
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "| method | mean AUC | IQM AUC | mean final win rate | IQM final win rate |",
        "|---|---|---|---|---|",
        "| QMIX | 0.414 [0.404, 0.434] | 0.400 [0.390, 0.420] | 0.642 | 0.703 |",
        # 0.59249 and 0.5916 both print 0.592: both bold
        "| WSRL | 0.532 [0.522, 0.552] | **0.592 [0.582, 0.612]** | **0.680** | **0.761** |",
        "| OVMSE | **0.558 [0.548, 0.578]** | **0.592 [0.582, 0.612]** | 0.655 | 0.730 |",
    ]
    poi = (("qmix", 0.75, 0.465), ("wsrl", 0.625, 0.33))
    write_csv(tmp_path / "improvement.csv", [
        {"method": "ovmse", "other": o, "shared_tasks": 8, "auc_poi": a, "auc_poi_lo": a - 0.1,
         "auc_poi_hi": a + 0.1, "wr_final_poi": w, "wr_final_poi_lo": w - 0.15,
         "wr_final_poi_hi": w + 0.15} for o, a, w in poi])
    lines = run("--across").stdout.splitlines()
    assert lines[0].endswith("| P(OVMSE > it), AUC | P(OVMSE > it), final win rate |")
    assert lines[1] == "|---" * 7 + "|"
    assert lines[2].endswith("| 0.75 [0.65, 0.85] | 0.47 [0.32, 0.61] |")
    assert lines[4].endswith("| 0.730 | - | - |")  # the reference against itself
    write_csv(tmp_path / "improvement.csv", [{"method": "ovmse", "versus": "qmix"}])
    bad = run("--across")
    assert bad.returncode != 0 and "is not a report's improvement.csv" in bad.stderr
    bad = run("--across", "--by-task", "auc")
    assert bad.returncode != 0 and "--across takes neither" in bad.stderr
    path = tmp_path / "main.csv"
    write_csv(path, [{"dataset": "smax/8m/medium-v0", "method": "qmix", "auc_mean": 0.5}])
    bad = run("--across")
    assert bad.returncode != 0 and "is not a report's aggregate.csv" in bad.stderr
