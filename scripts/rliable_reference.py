"""Reference values from rliable itself for tests/test_rliable_agreement.py.

o2omarl/reports/stats.py re-implements rliable's estimators in numpy because rliable 1.2.0 cannot
join this stack (its `arch` dependency fails to import with pandas 3). This script runs rliable in
a side environment on fixed scores and writes tests/data/rliable_reference.json: the inputs, the
seed, the bootstrap size, the package versions and rliable's point estimates and 95% intervals
(aggregate mean and IQM, probability of improvement, performance profile).

Recreate the side environment (outside the repository) and rerun, from the repository root:

    python3.11 -m venv /work/rliable-venv
    /work/rliable-venv/bin/pip install rliable==1.2.0 "pandas<3" numpy==2.4.6 scipy==1.17.1 \
        arch==7.2.0
    /work/rliable-venv/bin/python scripts/rliable_reference.py

(the file was written with pandas 2.3.3, statsmodels 0.15.0; the JSON records what ran).

Seeding: rliable 1.2.0 draws its bootstrap indices from `np.random.choice` and ignores its
`random_state` argument (StratifiedBootstrap.update_indices). Before each estimate this script
points `np.random.choice` at a fresh `np.random.default_rng(SEED)`, the generator the report
draws from, so that the resamples are the same draws and the intervals must agree exactly. Only
the source of random integers is swapped; rliable's resampling, estimators and arch's percentile
intervals run unchanged.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
from rliable import library, metrics

SEED = 0
REPS = 2000  # the report's bootstrap size (stats.N_BOOT)
LEVEL = 0.95
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "rliable_reference.json"

# Scores (runs x tasks) shaped like final win rates: ties within and across methods, and C with
# one run fewer (15 and 12 pooled runs: IQM trims 3 from each end in both).
SCORES = {
    "A": [[0.90, 0.55, 0.30],
          [0.75, 0.60, 0.45],
          [0.80, 0.40, 0.30],
          [1.00, 0.65, 0.20],
          [0.85, 0.50, 0.35]],
    "B": [[0.70, 0.55, 0.25],
          [0.80, 0.35, 0.10],
          [0.60, 0.45, 0.30],
          [0.75, 0.50, 0.05],
          [0.65, 0.30, 0.15]],
    "C": [[0.85, 0.50, 0.40],
          [0.90, 0.20, 0.00],
          [0.40, 0.60, 0.35],
          [0.70, 0.45, 0.30]],
}
PAIRS = [("A", "B"), ("A", "C"), ("B", "C")]
TAUS = [0.0, 0.25, 0.5, 0.75, 1.0]


def estimate(scores, func):
    """(point, lo, hi) from rliable's get_interval_estimates, drawing from default_rng(SEED)."""
    np.random.choice = np.random.default_rng(SEED).choice  # see the module docstring
    points, intervals = library.get_interval_estimates(
        {"key": scores}, func, reps=REPS, confidence_interval_size=LEVEL)
    point, (lo, hi) = np.asarray(points["key"]), np.asarray(intervals["key"])
    return point.tolist(), lo.tolist(), hi.tolist()


def main() -> None:
    arrays = {k: np.array(v) for k, v in SCORES.items()}
    aggregate = {}
    for name, x in arrays.items():
        aggregate[name] = {}
        for stat, fn in (("mean", metrics.aggregate_mean), ("iqm", metrics.aggregate_iqm)):
            (point,), (lo,), (hi,) = estimate(x, lambda s, fn=fn: np.array([fn(s)]))
            aggregate[name][stat] = {"point": point, "lo": lo, "hi": hi}
    improvement = []
    for a, b in PAIRS:
        (point,), (lo,), (hi,) = estimate(
            (arrays[a], arrays[b]),
            lambda x, y: np.array([metrics.probability_of_improvement(x, y)]))
        improvement.append({"x": a, "y": b, "point": point, "lo": lo, "hi": hi})
    profile = {}
    for name, x in arrays.items():
        point, lo, hi = estimate(x, lambda s: library.score_distributions(s, np.array(TAUS)))
        profile[name] = {"point": point, "lo": lo, "hi": hi}
    record = {
        "written_by": "scripts/rliable_reference.py (see its docstring to rerun)",
        "versions": {p: version(p) for p in ("rliable", "numpy", "scipy", "arch", "pandas")},
        "seed": SEED, "reps": REPS, "level": LEVEL,
        "scores": SCORES, "taus": TAUS,
        "aggregate": aggregate, "improvement": improvement, "profile": profile,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
