"""Per-run O2O metrics from a run's evaluation rows (DESIGN.md section 6).

Rows are metrics.jsonl entries with `env_step` and `test_win_rate`; step 0 is the offline policy.
"""

from __future__ import annotations

import numpy as np

from o2omarl.protocol import FINAL_EVALS, MIN_EVALUATIONS, UNLEARNING_WINDOW


def run_metrics(rows: list[dict], budget: int, threshold: float = 0.8) -> dict:
    """Before -> after, unlearning drop, largest fall, AUC, steps to `threshold` win rate,
    regret, and the largest overestimation of Q_tot over what the data earned (NaN for rows
    without it); and the same window metrics of the test return (`ret_*`: on maps where no
    method wins, the return still ranks them), NaN where rows lack `test_return`.

    "After" is the mean of the last 3 evaluations after step 0; the unlearning window is the
    first 10% of the budget, step 0 included. The largest fall is the drop to the lowest
    evaluation of the whole run, with its step: a collapse postponed past the early window
    (OVM's lambda reaching 0) shows there. Steps to `threshold` is the first evaluation from
    which every later one stays at or above it: a touch followed by a collapse is no arrival.
    Each window metric is NaN when its window holds fewer than MIN_EVALUATIONS evaluations;
    `after_evals` and `early_evals` say how many it holds."""
    steps = np.array([r["env_step"] for r in rows], dtype=float)
    wr = np.array([r["test_win_rate"] for r in rows], dtype=float)
    ret = np.array([r.get("test_return", np.nan) for r in rows], dtype=float)
    win, rtn = _window_metrics(steps, wr, budget), _window_metrics(steps, ret, budget)
    below = np.flatnonzero(wr < threshold)
    stays = below[-1] + 1 if len(below) else 0  # first index of the final run at/above it
    train = [(r["train_win_rate"], r.get("train_episodes")) for r in rows
             if "train_win_rate" in r]
    return {
        "wr_start": win["start"],
        "wr_final": win["final"],
        "after_evals": int((steps > 0).sum()),
        "wr_min_early": win["min_early"],
        "unlearning_drop": win["drop"],
        "early_evals": int((steps <= UNLEARNING_WINDOW * budget).sum()),
        "largest_fall": win["fall"],
        "largest_fall_step": win["fall_step"],
        "auc": win["auc"],
        "steps_to_threshold": float(steps[stays]) if stays < len(steps) else float("nan"),
        "regret": _regret(train),
        "q_overestimation": _max_overestimation(rows),
        "ret_start": rtn["start"],
        "ret_final": rtn["final"],
        "ret_drop": rtn["drop"],
        "ret_fall": rtn["fall"],
        "ret_auc": rtn["auc"],
    }


def _window_metrics(steps: np.ndarray, values: np.ndarray, budget: int) -> dict:
    """Start, final (mean of the last 3 evaluations after step 0), the minimum over the first
    10% of the budget and the drop to it from the start, and the AUC of one test series."""
    early = values[steps <= UNLEARNING_WINDOW * budget]
    after = values[steps > 0]
    resolved_early = len(early) >= MIN_EVALUATIONS
    resolved = len(after) >= MIN_EVALUATIONS and not np.isnan(after).all()
    fall = float(np.maximum(0.0, values[0] - np.nanmin(after))) if resolved else np.nan
    return {
        "start": float(values[0]),
        # never the step-0 (offline) evaluation
        "final": float(after[-FINAL_EVALS:].mean()) if len(after) >= MIN_EVALUATIONS else np.nan,
        "min_early": float(early.min()) if resolved_early else np.nan,
        # np.maximum, not max: a series without values stays NaN
        "drop": float(np.maximum(0.0, values[0] - early.min())) if resolved_early else np.nan,
        # where the lowest evaluation after step 0 is; NaN when nothing fell
        "fall": fall,
        "fall_step": float(steps[steps > 0][np.nanargmin(after)]) if fall > 0 else np.nan,
        "auc": _auc(steps, values),
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


def _auc(steps: np.ndarray, values: np.ndarray) -> float:
    """Mean of a test series over the online budget (trapezoid over evaluation points)."""
    if len(steps) < 2:
        return float(values[0])
    return float(np.trapezoid(values, steps) / max(steps[-1] - steps[0], 1))
