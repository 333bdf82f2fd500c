"""Report figures: learning curves, a grid of them over tasks, and performance profiles.

Drawn on plain `matplotlib.figure.Figure` objects, never pyplot: no GUI backend is chosen or
needed (savefig renders PNG with Agg and PDF with matplotlib's PDF backend), and no global
figure registry keeps every figure of a large report alive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from o2omarl.methods import ABLATION, COLOURS, OVMSE_FAMILY
from o2omarl.reports import stats
from o2omarl.reports.cells import Cell, Task, base_method, display_name, method_rank

# One colour per method in every figure (o2omarl.methods; its variants share it, in other
# line styles).
SPARE_COLOURS = ("C8", "C9", "C6")  # for methods not listed above
# Within one method's colour: the plain method solid, its variants in these styles after it.
LINE_STYLES = ("-", "--", ":", "-.", (0, (8, 2, 1, 2, 1, 2)), (0, (1, 3)), (0, (12, 3)))
TAUS = np.linspace(0.0, 1.0, 101)  # performance-profile thresholds


@dataclass
class Band:
    """A mean line with its 95% bootstrap band."""
    method: str
    label: str
    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _plural(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def curve_bands(cells: list[Cell], column: str, seed: int = 0, n_boot: int = stats.N_BOOT,
                names: dict[str, str] | None = None) -> list[Band]:
    """Mean over seeds of a metrics.jsonl column against env steps, one band per cell;
    labelled with the method's display name (cells.display_name) and its seed count."""
    out = []
    for c in cells:
        curves = [(s, v) for s, v in c.curves(column) if len(s)]
        if curves:
            x, mean, lo, hi = stats.mean_curve(curves, seed, n_boot)
            out.append(Band(c.method, f"{display_name(c.method, names)} "
                                      f"({_plural(len(curves), 'seed')})", x, mean, lo, hi))
    return out


def profile_bands(cells: list[Cell], key: str, seed: int = 0, n_boot: int = stats.N_BOOT,
                  names: dict[str, str] | None = None) -> list[Band]:
    """Performance profile of a run_metrics score per method, over all its tasks."""
    out = []
    for method in sorted({c.method for c in cells}, key=method_rank):
        per_task = [c.values(key) for c in cells if c.method == method]
        frac, lo, hi = stats.performance_profile(per_task, TAUS, seed, n_boot)
        n = sum(len(x) for x in per_task)
        out.append(Band(method, f"{display_name(method, names)} ({_plural(n, 'run')})", TAUS,
                        frac, lo, hi))
    return out


def ablation_bands(bands: list[Band]) -> list[Band]:
    """The bands of an ablation figure for one task, or [] when it would say nothing new:
    fewer than two OVMSE variants (ovmse, ovm, se, or a labelled variant of one), or no
    method beside the ablation's (the task's learning-curve figure already is the ablation)."""
    part = [b for b in bands if base_method(b.method) in ABLATION]
    if sum(base_method(b.method) in OVMSE_FAMILY for b in part) < 2 or len(part) == len(bands):
        return []
    return part


def method_styles(methods: list[str]) -> dict[str, tuple[str, object]]:
    """(colour, line style) per method: a variant takes its method's colour (a family reads as
    one hue) and the next line style within it, so no two lines of a figure look alike (up to
    len(LINE_STYLES) per method, and up to len(SPARE_COLOURS) methods outside COLOURS)."""
    bases = [base_method(m) for m in methods]
    unknown = [b for b in dict.fromkeys(bases) if b not in COLOURS]
    spare = {b: SPARE_COLOURS[i % len(SPARE_COLOURS)] for i, b in enumerate(unknown)}
    out, count = {}, {}
    for m, b in sorted(zip(methods, bases), key=lambda mb: method_rank(mb[0])):
        count[b] = count.get(b, -1) + 1
        out[m] = (COLOURS.get(b) or spare[b], LINE_STYLES[count[b] % len(LINE_STYLES)])
    return out


def _draw(ax, bands: list[Band], first_marker: bool,
          styles: dict[str, tuple[str, object]] | None = None, legend: bool = True) -> None:
    styles = styles or method_styles([b.method for b in bands])
    for b in bands:
        c, ls = styles[b.method]
        # markevery=[0]: the first point (step 0, the offline policy) gets a marker; one
        # Line2D per method
        ax.plot(b.x, b.mean, color=c, linestyle=ls, label=b.label, linewidth=1.6,
                marker="o" if first_marker else None, markevery=[0])
        ax.fill_between(b.x, b.lo, b.hi, color=c, alpha=0.18, linewidth=0)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(fontsize="small", frameon=False)


def steps_label(x: float, _pos=None) -> str:
    """An env-step tick as a reader says it: 0, 50k, 300k, 1.5M (a panel's full numbers ran
    into one another)."""
    for scale, unit in ((1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.4g}{unit}"
    return f"{x:.4g}"


def _steps_axis(ax, nbins: int) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(steps_label))


def curve_figure(bands: list[Band], ylabel: str, title: str, unit_range: bool) -> Figure:
    """Test metric against online env steps, one line per method; the marker is step 0."""
    fig = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    _draw(ax, bands, first_marker=True)
    _steps_axis(ax, nbins=6)
    ax.set_xlabel("online env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize="medium")
    if unit_range:
        ax.set_ylim(-0.02, 1.02)
    return fig


def profile_figure(panels: dict[str, list[Band]]) -> Figure:
    """Performance profiles: fraction of runs whose score exceeds tau, one panel per score."""
    fig = Figure(figsize=(5.2 * len(panels), 4.0), dpi=100, layout="constrained")
    for ax, (name, bands) in zip(fig.subplots(1, len(panels), squeeze=False)[0],
                                 panels.items()):
        _draw(ax, bands, first_marker=False)
        ax.set_xlabel(f"{name} threshold \N{GREEK SMALL LETTER TAU}")
        ax.set_ylabel(f"fraction of runs with {name} > \N{GREEK SMALL LETTER TAU}")
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.02, 1.02)
    return fig


def panel_titles(tasks: list[Task]) -> list[str]:
    """Short panel titles (`3m, medium-v0`); tasks that would share one add their budget and
    pretraining length."""
    short = [f"{t.map}, {t.dataset_name}" for t in tasks]
    return [s if short.count(s) == 1 else
            f"{s}\n{t.budget:,} steps, {t.pretrain_steps:,} pretraining"
            for s, t in zip(short, tasks)]


def grid_figure(panels: list[tuple[str, list[Band]]], names: dict[str, str] | None = None,
                ncols: int = 3) -> Figure:
    """Test win rate, one small panel per task (a paper's multi-map figure), up to `ncols` a
    row with rows filled evenly (4 tasks: 2 x 2), one shared legend above with each method's
    display name, and one colour per method in every panel."""
    nrows = -(-len(panels) // ncols)
    ncols = -(-len(panels) // nrows)
    fig = Figure(figsize=(3.0 * ncols, 2.4 * nrows + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True).ravel()
    methods = sorted({b.method for _, bands in panels for b in bands}, key=method_rank)
    styles = method_styles(methods)
    for ax, (title, bands) in zip(axes, panels):
        _draw(ax, bands, first_marker=True, styles=styles, legend=False)
        ax.set_title(title, fontsize="medium")
        ax.tick_params(labelsize="small")
        _steps_axis(ax, nbins=4)
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=styles[m][0], linestyle=styles[m][1], linewidth=1.6)
               for m in methods]
    fig.legend(handles, [display_name(m, names) for m in methods], loc="outside upper center",
               ncols=min(len(methods), 2 * ncols), frameon=False)  # ~1.5 in an entry
    fig.supxlabel("online env steps", fontsize="medium")
    fig.supylabel("test win rate", fontsize="medium")
    return fig
