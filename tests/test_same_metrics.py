"""benchmarks/same_metrics.py, the refactor proof: timings may differ, nothing else may."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "same_metrics.py"


def store(root: Path, rows: list[dict]) -> Path:
    path = root / "3m" / "heuristic-v0" / "ovmse" / "seed_0"
    path.mkdir(parents=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True,
                          text=True)


def test_only_timings_may_differ(tmp_path):
    row = {"env_step": 100, "test_win_rate": 0.5, "wall_s": 3.0, "env_steps_per_s": 90.0}
    a = store(tmp_path / "a", [row])
    same = compare(a, store(tmp_path / "b", [{**row, "wall_s": 9.0, "env_steps_per_s": 1.0}]))
    assert same.returncode == 0 and "every row identical" in same.stdout
    other = compare(a, store(tmp_path / "c", [{**row, "test_win_rate": 0.53125}]))
    assert other.returncode == 1
    assert "row 0 differs: {'test_win_rate': (0.5, 0.53125)}" in other.stdout
    missing = compare(a, store(tmp_path / "d", [row, row]))
    assert missing.returncode == 1 and "1 rows against 2" in missing.stdout
