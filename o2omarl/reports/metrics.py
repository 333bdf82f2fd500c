"""Per-run O2O metrics from a run's evaluation rows (DESIGN.md section 6).

Rows are metrics.jsonl entries with `env_step` and `test_win_rate`; step 0 is the offline policy.
"""

from __future__ import annotations

import numpy as np


# A window metric needs at least this many evaluations in its window to be a number
MIN_EVALUATIONS = 3


def run_metrics(rows: list[dict], budget: int, threshold: float = 0.8) -> dict:
    """Before -> after, unlearning drop, AUC, steps to `threshold` win rate, regret, and the
    largest overestimation of Q_tot over what the data earned (NaN for rows without it).

    "After" is the mean of the last 3 evaluations after step 0; the unlearning window is the
    first 10% of the budget, step 0 included. Each is NaN when its window holds fewer than
    MIN_EVALUATIONS evaluations; `after_evals` and `early_evals` say how many it holds."""
    steps = np.array([r["env_step"] for r in rows], dtype=float)
    wr = np.array([r["test_win_rate"] for r in rows], dtype=float)
    early = wr[steps <= 0.1 * budget]
    after = wr[steps > 0]
    resolved_early = len(early) >= MIN_EVALUATIONS
    reached = steps[wr >= threshold]
    train = [(r["train_win_rate"], r.get("train_episodes")) for r in rows
             if "train_win_rate" in r]
    return {
        "wr_start": float(wr[0]),
        # mean over the last 3 evaluations, never the step-0 (offline) one
        "wr_final": float(after[-3:].mean()) if len(after) >= MIN_EVALUATIONS else np.nan,
        "after_evals": len(after),
        # min over the first 10% of the budget
        "wr_min_early": float(early.min()) if resolved_early else np.nan,
        "unlearning_drop": float(max(0.0, wr[0] - early.min())) if resolved_early else np.nan,
        "early_evals": len(early),
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
