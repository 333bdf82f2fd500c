"""Statistics for reports: IQM, stratified bootstrap intervals, probability of improvement,
performance profiles, mean learning curves (the estimators of rliable, Agarwal et al. 2021,
written with numpy: rliable itself pulls in arch, statsmodels and seaborn).

Every interval is a percentile bootstrap that draws from a fresh `numpy.random.default_rng(seed)`,
so a number in a report depends only on its own data and the seed, not on what else was computed
before it. Scores are grouped by task (map, dataset, budget); the stratified bootstrap resamples
the seeds of each task separately, so every resample keeps every task.

For one task, `stratified_ci([x], np.mean)` is the plain bootstrap of a mean:

    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

N_BOOT = 2000
LEVEL = 0.95

Stat = Callable[..., np.ndarray]  # stat(array, axis=k) -> array with axis k reduced


def iqm(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (as scipy.stats.trim_mean(x, 0.25))."""
    x = np.sort(np.asarray(x, dtype=float), axis=axis)
    n = x.shape[axis]
    cut = int(0.25 * n)
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def _resample(per_task: Sequence[np.ndarray], rng, n_boot: int) -> np.ndarray:
    """(n_boot, sum of task sizes, ...): each task's seeds drawn with replacement, pooled."""
    return np.concatenate(
        [x[rng.integers(0, len(x), size=(n_boot, len(x)))] for x in per_task], axis=1)


def _interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boot, [tail, 100 - tail], axis=0)
    return lo, hi


def stratified_ci(per_task: Sequence[np.ndarray], stat: Stat = np.mean, seed: int = 0,
                  n_boot: int = N_BOOT, level: float = LEVEL):
    """(point, lo, hi) of `stat` over the scores of all tasks pooled (as rliable pools them).

    Each task's array has the seeds on axis 0; trailing axes (e.g. the steps of a learning
    curve) are kept, so the same function gives a curve's band.
    """
    per_task = [np.asarray(x, dtype=float) for x in per_task]
    point = stat(np.concatenate(per_task, axis=0), axis=0)
    boot = stat(_resample(per_task, np.random.default_rng(seed), n_boot), axis=1)
    lo, hi = _interval(boot, level)
    return point, lo, hi


def _poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y)/2 over all seed pairs; leading axes are bootstrap samples."""
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(x_tasks: Sequence[np.ndarray], y_tasks: Sequence[np.ndarray],
                               seed: int = 0, n_boot: int = N_BOOT, level: float = LEVEL):
    """(point, lo, hi) of P(X > Y), averaged over tasks; X and Y list the same tasks in order.

    Within a task it is the Mann-Whitney U statistic over (m * n) run pairs, ties counted half;
    the bootstrap resamples X's and Y's seeds of each task independently.
    """
    rng = np.random.default_rng(seed)
    points, boots = [], []
    for x, y in zip(x_tasks, y_tasks):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        points.append(_poi(x, y))
        bx = x[rng.integers(0, len(x), size=(n_boot, len(x)))]
        by = y[rng.integers(0, len(y), size=(n_boot, len(y)))]
        boots.append(_poi(bx, by))
    lo, hi = _interval(np.mean(boots, axis=0), level)
    return float(np.mean(points)), float(lo), float(hi)


def performance_profile(per_task: Sequence[np.ndarray], taus: np.ndarray, seed: int = 0,
                        n_boot: int = N_BOOT, level: float = LEVEL):
    """(fraction, lo, hi) of runs (all tasks pooled) whose score exceeds each tau."""
    above = [(np.asarray(x, dtype=float)[:, None] > taus[None, :]) for x in per_task]
    return stratified_ci(above, np.mean, seed, n_boot, level)


def mean_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0,
               n_boot: int = N_BOOT, level: float = LEVEL):
    """(steps, mean, lo, hi) over seeds of (steps, values) curves.

    Seeds evaluated at different steps are interpolated onto the union of their evaluation
    steps, up to the last step every seed reached (no extrapolation).
    """
    end = min(s[-1] for s, _ in curves)
    steps = np.unique(np.concatenate([s[s <= end] for s, _ in curves]))
    values = np.stack([np.interp(steps, s, v) for s, v in curves])
    mean, lo, hi = stratified_ci([values], np.mean, seed, n_boot, level)
    return steps, mean, lo, hi
