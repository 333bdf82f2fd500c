"""Proof that a refactor changes no number: two run stores of the same command on fixed seeds
(one from a worktree at the old commit, one from the new) compared row by row.

    PYTHONPATH=<old worktree> bench run ovmse ft-qmix --map 3m --dataset heuristic --seed 0 \
        --steps 3000 --pretrain-steps 100 --runs-dir /tmp/before
    bench run ... --runs-dir /tmp/after
    python benchmarks/same_metrics.py /tmp/before /tmp/after

Every metrics.jsonl and pretrain.jsonl row must hold the same keys and values (timings and
throughputs excluded: they measure the machine, not the method). Exits 1 naming the first
differing row of each file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# measurements of the machine, not of learning
TIMING_SUFFIXES = ("_s", "_per_s")


def differences(a: Path, b: Path) -> list[str]:
    out = []
    files = sorted(p.relative_to(a) for p in a.rglob("*.jsonl"))
    if not files:
        return [f"{a} holds no metrics"]
    for rel in files:
        if not (b / rel).exists():
            out.append(f"{rel}: only in {a}")
            continue
        ra, rb = ([json.loads(line) for line in (root / rel).read_text().splitlines()]
                  for root in (a, b))
        if len(ra) != len(rb):
            out.append(f"{rel}: {len(ra)} rows against {len(rb)}")
            continue
        for i, (x, y) in enumerate(zip(ra, rb)):
            keys = {k for k in x.keys() | y.keys() if not k.endswith(TIMING_SUFFIXES)}
            diff = {k: (x.get(k), y.get(k)) for k in sorted(keys) if x.get(k) != y.get(k)}
            if diff:
                out.append(f"{rel}: row {i} differs: {diff}")
                break
    return out + [f"{rel}: only in {b}" for rel in sorted(p.relative_to(b)
                                                           for p in b.rglob("*.jsonl"))
                  if not (a / rel).exists()]


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python benchmarks/same_metrics.py RUNS_BEFORE RUNS_AFTER")
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    found = differences(a, b)
    n = len(list(a.rglob("*.jsonl")))
    print("\n".join(found) if found else f"{n} metric files, every row identical")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
