"""Statistics for reports: IQM, stratified bootstrap intervals, probability of improvement,
performance profiles, mean learning curves (the estimators of rliable, Agarwal et al. 2021,
written with numpy: rliable itself pulls in arch, statsmodels and seaborn).

Every interval is a percentile bootstrap that draws from a fresh `numpy.random.default_rng(seed)`,
so a number in a report depends only on its own data and the seed, not on what else was computed
before it. Scores are grouped by task (map, dataset, budget); the stratified bootstrap resamples
the seeds of each task separately, so every resample keeps every task.

Seed indices are drawn in rliable's order: per bootstrap sample, one (seeds, tasks) block for
each method compared. Given the same generator (rliable 1.2.0 draws from `np.random.choice`),
rliable's intervals and these are equal: tests/test_rliable_agreement.py checks it against
values computed by rliable itself (scripts/rliable_reference.py).

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


def _indices(groups: Sequence[Sequence[np.ndarray]], rng, n_boot: int) -> list[np.ndarray]:
    """Per group (one method's tasks), seed indices of shape (n_boot, most seeds, tasks).

    Column j draws from range(len(task j)) and only its first len(task j) rows are used. Per
    bootstrap sample one block per group, in group order: rliable's draw order, so with equal
    seed counts the resamples are rliable's.
    """
    shapes = [(max(len(x) for x in g), len(g)) for g in groups]
    highs = [np.broadcast_to([len(x) for x in g], s).ravel() for g, s in zip(groups, shapes)]
    flat = rng.integers(0, np.concatenate(highs), size=(n_boot, sum(h.size for h in highs)))
    blocks = np.split(flat, np.cumsum([h.size for h in highs])[:-1], axis=1)
    return [b.reshape(n_boot, *s) for b, s in zip(blocks, shapes)]


def _resample(tasks: Sequence[np.ndarray], idx: np.ndarray) -> list[np.ndarray]:
    """Each task's seeds drawn by its column of `idx`: (n_boot, its seeds, ...) per task."""
    return [x[idx[:, :len(x), j]] for j, x in enumerate(tasks)]


def _interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1 - level) / 2  # as arch computes the percentiles (so equal to the last bit)
    lo, hi = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return lo, hi


def _across_tasks(stat: Stat, tasks: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """`stat` over every task's seeds (on `axis`). The mean is the mean of the per-task means,
    so a task run with more seeds does not weigh more; other statistics (IQM) pool the runs, as
    rliable does. With equal seed counts (all rliable accepts) the two readings are equal."""
    if stat is np.mean:
        return np.mean([x.mean(axis=axis) for x in tasks], axis=0)
    return stat(np.concatenate(tasks, axis=axis), axis=axis)


def stratified_ci(per_task: Sequence[np.ndarray], stat: Stat = np.mean, seed: int = 0,
                  n_boot: int = N_BOOT, level: float = LEVEL):
    """(point, lo, hi) of `stat` over the scores of all tasks (see `_across_tasks`).

    Each task's array has the seeds on axis 0; trailing axes (e.g. the steps of a learning
    curve) are kept, so the same function gives a curve's band.
    """
    per_task = [np.asarray(x, dtype=float) for x in per_task]
    point = _across_tasks(stat, per_task, axis=0)
    idx = _indices([per_task], np.random.default_rng(seed), n_boot)[0]
    boot = _across_tasks(stat, _resample(per_task, idx), axis=1)
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
    x_tasks = [np.asarray(x, dtype=float) for x in x_tasks]
    y_tasks = [np.asarray(y, dtype=float) for y in y_tasks]
    point = np.mean([_poi(x, y) for x, y in zip(x_tasks, y_tasks)])
    ix, iy = _indices([x_tasks, y_tasks], np.random.default_rng(seed), n_boot)
    boot = np.mean([_poi(bx, by) for bx, by in zip(_resample(x_tasks, ix),
                                                     _resample(y_tasks, iy))], axis=0)
    lo, hi = _interval(boot, level)
    return float(point), float(lo), float(hi)


def performance_profile(per_task: Sequence[np.ndarray], taus: np.ndarray, seed: int = 0,
                        n_boot: int = N_BOOT, level: float = LEVEL):
    """(fraction, lo, hi) of runs whose score exceeds each tau, every task weighing the same."""
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
