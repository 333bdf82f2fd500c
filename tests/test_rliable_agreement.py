"""The report's estimators (o2omarl/reports/stats.py) against values computed by rliable 1.2.0.

tests/data/rliable_reference.json was written by scripts/rliable_reference.py in a side
environment (rliable cannot be installed next to pandas 3). It drew rliable's bootstrap indices
from `np.random.default_rng(seed)`, the generator stats.py draws from, and stats.py draws them in
rliable's order, so the resamples are the same: points and intervals must agree up to float
rounding (sums taken in another order), not within a Monte Carlo error. TOL is far above that
rounding (~1e-16) and far below any real difference: the estimates move in steps of 1/60 here,
and a bootstrap drawn in another order or trimmed differently moves an endpoint by > 1e-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from o2omarl.reports import stats

REF = json.loads((Path(__file__).parent / "data" / "rliable_reference.json").read_text())
TOL = 1e-9


def tasks(name: str) -> list[np.ndarray]:
    """A method's (runs x tasks) scores as the report passes them: one array of runs per task."""
    return list(np.array(REF["scores"][name]).T)


def check(got, want: dict) -> None:
    np.testing.assert_allclose(np.array(got, dtype=float),
                               np.array([want["point"], want["lo"], want["hi"]]),
                               rtol=0, atol=TOL)


def test_reference_is_what_the_report_computes_with():
    assert REF["versions"]["rliable"] == "1.2.0"
    assert REF["reps"] == stats.N_BOOT and REF["level"] == stats.LEVEL


@pytest.mark.parametrize("name", sorted(REF["aggregate"]))
@pytest.mark.parametrize("stat", ["mean", "iqm"])
def test_aggregate_mean_and_iqm_match_rliable(name, stat):
    fn = {"mean": np.mean, "iqm": stats.iqm}[stat]
    got = stats.stratified_ci(tasks(name), fn, seed=REF["seed"], n_boot=REF["reps"],
                              level=REF["level"])
    check(got, REF["aggregate"][name][stat])


@pytest.mark.parametrize("pair", REF["improvement"], ids=lambda p: f"{p['x']}>{p['y']}")
def test_probability_of_improvement_matches_rliable(pair):
    got = stats.probability_of_improvement(tasks(pair["x"]), tasks(pair["y"]), seed=REF["seed"],
                                           n_boot=REF["reps"], level=REF["level"])
    check(got, pair)


@pytest.mark.parametrize("name", sorted(REF["profile"]))
def test_performance_profile_matches_rliable(name):
    frac, lo, hi = stats.performance_profile(tasks(name), np.array(REF["taus"]),
                                             seed=REF["seed"], n_boot=REF["reps"],
                                             level=REF["level"])
    want = REF["profile"][name]
    for got, key in ((frac, "point"), (lo, "lo"), (hi, "hi")):
        np.testing.assert_allclose(got, want[key], rtol=0, atol=TOL)
