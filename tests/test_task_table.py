"""benchmarks/task_table.py --by-task: which method wins where, from a report's CSV."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "task_table.py"


def table(tmp_path: Path, rows: list[dict], *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "main.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
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
