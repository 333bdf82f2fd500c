"""Per-run O2O metrics from a run's evaluation rows (DESIGN.md section 6).

Rows are metrics.jsonl entries with `env_step` and `test_win_rate`; step 0 is the offline policy.
"""

from __future__ import annotations

import numpy as np


def run_metrics(rows: list[dict], budget: int, threshold: float = 0.8) -> dict:
    """Before -> after, unlearning drop, AUC, steps to `threshold` win rate, regret, and the
    largest overestimation of Q_tot over what the data earned (NaN for rows without it)."""
    steps = np.array([r["env_step"] for r in rows], dtype=float)
    wr = np.array([r["test_win_rate"] for r in rows], dtype=float)
    early = wr[steps <= 0.1 * budget]
    reached = steps[wr >= threshold]
    train = [(r["train_win_rate"], r.get("train_episodes")) for r in rows
             if "train_win_rate" in r]
    return {
        "wr_start": float(wr[0]),
        "wr_final": float(wr[-3:].mean()),  # mean over the last 3 evaluations
        "wr_min_early": float(early.min()),  # min over the first 10% of the budget
        "unlearning_drop": float(max(0.0, wr[0] - early.min())),
        "auc": _auc(steps, wr, budget),
        "steps_to_threshold": float(reached[0]) if len(reached) else float("nan"),
        "regret": _regret(train),
        "q_overestimation": _max_overestimation(rows),
    }


def _max_overestimation(rows: list[dict]) -> float:
    """Largest mean Q_tot - discounted return-to-go over the evaluation windows: a learner
    whose values diverge shows it here long before its win rate says why."""
    gaps = [r["q_overestimation"] for r in rows if "q_overestimation" in r]
    return float(max(gaps)) if gaps else float("nan")


def _regret(train: list[tuple[float, int | None]]) -> float:
    """1 - win rate over all training episodes (CORL's regret).

    Each row's train win rate covers the episodes since the previous evaluation, so rows are
    weighted by their `train_episodes` when every row has it (else equally).
    """
    if not train:
        return float("nan")
    wr = np.array([w for w, _ in train], dtype=float)
    n = [k for _, k in train]
    if all(k is not None for k in n) and sum(n) > 0:
        return float(1.0 - np.average(wr, weights=np.array(n, dtype=float)))
    return float(1.0 - wr.mean())


def _auc(steps: np.ndarray, wr: np.ndarray, budget: int) -> float:
    """Mean test win rate over the online budget (trapezoid over evaluation points)."""
    if len(steps) < 2:
        return float(wr[0])
    return float(np.trapezoid(wr, steps) / max(steps[-1] - steps[0], 1))
