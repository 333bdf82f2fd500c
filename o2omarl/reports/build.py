"""`bench report`: every table and figure of a run store, and an index page showing them all.

Output (under `out`):

    index.md, index.html            every table and figure, one-line captions (written last)
    tables/<name>.{md,tex,csv}      main, aggregate, improvement, datasets, not_included
    figures/<name>.{png,pdf}        win_<task>, return_<task>, ablation_<task>, grid_win,
                                    profile
    replays/<task>_<method>_<which>.gif   with replays=True: one battle of the best and the
                                    worst run of each cell (by AUC), drawn by SMAX

Every file is written to a temporary name in its folder and renamed into place, so a killed
report leaves old or new files, never half-written ones. Files of an earlier report that this
one does not produce (a task no longer selected) are left alone and not linked.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from o2omarl import atomic
from o2omarl.benchmark.results import RunRecord, changed_datasets, scan_store
from o2omarl.errors import BenchError, UsageError, one_of
from o2omarl.methods import DISPLAY_NAMES
from o2omarl.reports import figures, stats, tables
from o2omarl.reports.cells import across_tasks, by_task, display_name, group
from o2omarl.reports.tables import Table

FORMATS = ("png", "pdf")
# Figures sit two a row, each at most this wide in the page; one that would shrink below 80%
# of its own width there (the profiles, the grid) gets a row of its own at full size.
HALF_WIDTH_PX = 570


@dataclass
class _Figure:
    stem: str  # path relative to the report folder, without the suffix
    caption: str
    full: bool = False  # shown a row of its own, at its own size
    image: str | None = None  # the one file, by suffix, when not the figure formats (a GIF)


@dataclass
class _Section:
    title: str
    items: list  # Table | _Figure
    empty: str = "None."  # shown when there are no items


def check_formats(formats: Iterable[str]) -> list[str]:
    """Figure formats in the order given, without repeats; unknown ones are a usage error."""
    chosen = []
    for f in formats:
        f = f.strip().lower()
        if not f:  # "png," or "png,,pdf"
            continue
        if f not in FORMATS:
            raise one_of("format", f, FORMATS)
        if f not in chosen:
            chosen.append(f)
    if not chosen:
        raise UsageError(f"no figure format given; accepted: {', '.join(FORMATS)}")
    return chosen


def parse_names(items: Iterable[str]) -> dict[str, str]:
    """`--names ovmse=OVMSE,ft-qmix=FT-QMIX` (repeatable) as {method: display name}."""
    names = {}
    for item in (i for text in items for i in text.split(",")):
        method, sep, name = (x.strip() for x in item.partition("="))
        if not (sep and method and name):
            raise UsageError(f"--names expects METHOD=NAME pairs separated by commas "
                             f"(e.g. ovmse=OVMSE,ft-qmix=FT-QMIX), got {item.strip()!r}")
        names[method] = name
    return names


def _display_names(names: dict[str, str], methods: set[str]) -> dict[str, str]:
    """DISPLAY_NAMES with the user's `names` over it, for a report of `methods`. A name for a
    method that is neither in the runs nor a known method is a typo; two methods shown under
    one name are refused."""
    accepted = sorted(set(DISPLAY_NAMES) | methods)
    for method in names:
        if method not in accepted:
            raise one_of("method in --names", method, accepted)
    merged = {**DISPLAY_NAMES, **names}
    seen: dict[str, str] = {}
    for method in sorted(methods):
        other = seen.setdefault(display_name(method, merged), method)
        if other != method:
            raise UsageError(f"--names shows {other!r} and {method!r} both as "
                             f"{display_name(method, merged)!r}; give each its own name")
    return merged


def select_runs(runs_dirs: list[Path], maps=None, methods=None) -> list[RunRecord]:
    """The runs of the stores that match the filters; a filter that matches nothing is an
    error naming the value and what exists. A run folder reached through two stores (one
    inside the other, or one given twice) counts once; a copy of a run in another store (an
    archive) is `cells.group`'s to count once."""
    runs, seen = [], set()
    for runs_dir in runs_dirs:
        for r in scan_store(runs_dir):
            if r.path.resolve() not in seen:
                seen.add(r.path.resolve())
                runs.append(r)
    where = ", ".join(map(str, runs_dirs))
    for what, wanted, attr in (("map", maps, "map"), ("method", methods, "method")):
        have = sorted({getattr(r, attr) for r in runs} - {"?"})  # "?": a damaged config
        for w in wanted or ():
            if w not in have:
                raise UsageError(f"no runs for {what} {w!r} in {where}; "
                                 f"{what}s with runs: {', '.join(have)}")
    chosen = [r for r in runs if (not maps or r.map in maps)
              and (not methods or r.method in methods)]
    if not chosen:
        raise UsageError(f"no run in {where} is on map {', '.join(maps)} with method "
                         f"{', '.join(methods)}; see `bench runs list --runs-dir "
                         f"{runs_dirs[0]}`")
    return chosen


def build_report(runs_dir="runs", out="reports", maps=None, methods=None,
                 formats=FORMATS, say: Callable[[str], None] = print, seed: int = 0,
                 n_boot: int = stats.N_BOOT, names: dict[str, str] | None = None,
                 replays: bool = False, reference: str | None = None) -> Path:
    """Write every table and figure of the runs in `runs_dir` (one store or a list of them,
    pooled) to `out`; return index.html.

    Only finished runs are averaged; the others are listed in the not-included table.
    `seed` and `n_boot` set the bootstrap (a fresh generator per interval). `names` maps
    methods to display names over DISPLAY_NAMES (`parse_names` reads `--names`).
    `replays` adds a GIF of one battle of the best and the worst run of each cell (this
    starts the simulator: about half a minute a battle on a CPU). `reference`: the method
    (or variant) whose probability of improvement over each other one is tabled (default
    OVMSE, the suite's subject).
    """
    stores: list[Path] = []
    for d in [runs_dir] if isinstance(runs_dir, (str, Path)) else runs_dir:
        if Path(d).resolve() not in {s.resolve() for s in stores}:  # a store given twice
            stores.append(Path(d))
    out = Path(out)
    formats = check_formats(formats)
    runs = select_runs(stores, maps, methods)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    cells, excluded = group(runs)
    reported = sorted({c.method for c in cells})
    if reference is not None and reference not in reported:
        raise UsageError(f"--reference {reference!r} ran no finished cell here; accepted: "
                         f"{', '.join(reported) or 'none (no finished run)'}")
    names = _display_names(names or {}, {r.method for r in runs} | {c.method for c in cells})
    intro = (f"{len(runs)} runs from {', '.join(map(str, stores))}: "
             f"{sum(len(c.runs) for c in cells)} finished in {len(cells)} cells (map, dataset, "
             f"method, budget, pretraining), {len(excluded)} not included.")
    variants = sorted({c.method for c in cells if c.method != c.runs[0].method})
    if variants:
        intro += (" Runs of one method with other settings on one task are shown apart, "
                  f"named by the settings that differ: {', '.join(variants)}.")
    marked = [c for c in cells if c.differs]
    if marked:
        intro += (f" Warning: {len(marked)} cell(s) ran with shared settings other than the "
                  "rest of their task (marked * in the tables): "
                  + "; ".join(f"{c.method} on {c.task.label}: {c.differs}" for c in marked) + ".")
    changed = changed_datasets(runs)
    if changed:
        ids = sorted({note.split()[1] for note in changed.values()})
        intro += (f" Warning: {len(changed)} run(s) trained on dataset ids that now hold other "
                  f"bytes in this dataset store ({', '.join(ids)}); `bench runs list` names "
                  "them.")
    say(intro)
    try:
        (out / "tables").mkdir(parents=True, exist_ok=True)
        (out / "figures").mkdir(exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot write the report to {out}: {e}") from None

    def table(t: Table) -> Table:
        for suffix, text in (("md", t.markdown()), ("tex", t.latex()), ("csv", t.csv())):
            _write_text(out / "tables" / f"{t.name}.{suffix}", text)
        return t

    def figure(fig, stem: str, caption: str) -> _Figure:
        for fmt in formats:
            _atomic(out / f"{stem}.{fmt}", lambda tmp, fmt=fmt: fig.savefig(
                tmp, format=fmt, metadata={"CreationDate": None} if fmt == "pdf" else None))
        width_px = fig.get_figwidth() * fig.dpi
        return _Figure(stem, caption, full=0.8 * width_px > HALF_WIDTH_PX)

    curves, ablations, grid = [], [], []
    for task, task_cells in by_task(cells).items():
        for column, name, unit in (("test_win_rate", "win", True),
                                   ("test_return", "return", False)):
            bands = figures.curve_bands(task_cells, column, seed, n_boot, names)
            if not bands:
                continue
            label = "test win rate" if unit else "test return (max ~20)"
            curves.append(figure(figures.curve_figure(bands, label, task.label, unit),
                                 f"figures/{name}_{task.slug}",
                                 f"{task.label}: {label}, mean over seeds with 95% bootstrap "
                                 "band; the marker at step 0 is the offline policy."))
            part = figures.ablation_bands(bands) if unit else []
            if part:
                ablations.append(figure(
                    figures.curve_figure(part, label, f"Ablation: {task.label}", True),
                    f"figures/ablation_{task.slug}",
                    f"{task.label}: OVMSE and its ablations (OVM = without SE, SE = without "
                    "OVM, FT-QMIX = neither)."))
            if unit:
                grid.append((task, bands))
        say(f"figures for {task.label}")
    if len(grid) >= 2:  # with one task the grid would repeat its learning-curve figure
        titles = figures.panel_titles([t for t, _ in grid])
        curves.insert(0, figure(
            figures.grid_figure([(title, b) for title, (_, b) in zip(titles, grid)], names),
            "figures/grid_win", "Test win rate on every task, one panel each (for a paper): "
            "mean over seeds with 95% bootstrap band; the marker at step 0 is the offline "
            "policy; seeds per method and task in the main table."))

    across = [table(tables.aggregate_table(cells, seed, n_boot, names)),
              table(tables.improvement_table(cells, reference or tables.REFERENCE, seed,
                                             n_boot, names))]
    if cells:
        compared, which = across_tasks(cells)  # the aggregate table's tasks
        panels = {name: figures.profile_bands(compared, key, seed, n_boot, names)
                  for key, name in tables.AGGREGATE_METRICS}
        across.append(figure(figures.profile_figure(panels), "figures/profile",
                             "Performance profiles: fraction of runs (each task weighing the same) "
                             "whose score exceeds each threshold, with 95% stratified bootstrap "
                             "band." + which))
    dataset_ids = sorted({r.dataset for r in runs if r.dataset})
    battles = _replays(cells, out, names, say) if replays else []
    sections = [
        _Section("Main table", [table(tables.main_table(cells, seed, n_boot, names)),
                                table(tables.returns_table(cells, seed, n_boot, names))]),
        _Section("Pretraining", [table(tables.pretraining_table(cells))]),
        _Section("Learning curves", curves, "No finished run."),
        _Section("Ablation", ablations,
                 "Drawn for a task with at least two of ovmse, ovm, se and a method outside "
                 "the ablation (ovmse, ovm, se, ft-qmix); where the ablation's methods are all "
                 "that ran, the learning curves above are the ablation."),
        _Section("Across tasks", across),
        *([_Section("Replays", battles)] if replays else []),
        _Section("Datasets", [table(tables.dataset_table(dataset_ids))]),
        _Section("Not included", [table(tables.excluded_table(excluded, stores))]),
    ]
    intro += f" Intervals: 95% percentile bootstrap, {n_boot} resamples, seed {seed}."
    few = sorted({len(c.runs) for c in cells if len(c.runs) < 3})
    if few:
        intro += (f" Caution: {sum(len(c.runs) < 3 for c in cells)} of {len(cells)} cells have "
                  f"fewer than 3 seeds ({', '.join(map(str, few))}); their intervals are not "
                  "meaningful (with 2 seeds the bootstrap interval is the min-max).")
    _write_text(out / "index.md", _index_md(sections, intro, formats))
    index = out / "index.html"
    _write_text(index, _index_html(sections, intro, formats))
    return index


def _replays(cells, out: Path, names: dict[str, str], say) -> list[_Figure]:
    """One greedy battle of the best and the worst finished run of each cell, ranked by AUC
    (the run's final weights, model.pt; the first battle of the run's own evaluations)."""
    from o2omarl.benchmark.evaluation import render_replay  # the simulator: only when asked

    items = []
    for c in cells:
        ranked = sorted(zip(c.values("auc"), c.runs), key=lambda p: (p[0], -p[1].seed))
        picks = [("worst", ranked[0][1]), ("best", ranked[-1][1])] if len(ranked) > 1 else \
            [("only", ranked[0][1])]
        for which, run in picks:
            stem = f"replays/{c.task.slug}_{c.method.replace(':', '-')}_{which}"
            rep = render_replay(run.path / "model.pt", out / f"{stem}.gif", seed=run.seed)
            items.append(_Figure(stem, f"{c.task.label}, {display_name(c.method, names)}: "
                                 f"the {which} run (seed {run.seed}, by AUC), one greedy battle: "
                                 f"{'won' if rep.won else 'lost'}, return {rep.ret:.1f}, "
                                 f"{rep.steps} steps.", image="gif"))
            say(f"replay {stem}.gif")
    return items


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    with atomic.replacing(path) as tmp:
        write(tmp)


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _files(t: Table) -> list[tuple[str, str]]:
    return [(s, f"tables/{t.name}.{s}") for s in ("md", "tex", "csv")]


def _suffixes(item: _Figure, formats: list[str]) -> list[str]:
    return [item.image] if item.image else formats


def _shown(item: _Figure, formats: list[str]) -> str | None:
    """The file a page shows for a figure: its own image, else the PNG (a PDF is linked)."""
    return item.image or ("png" if "png" in formats else None)


def _index_md(sections: list[_Section], intro: str, formats: list[str]) -> str:
    lines = ["# o2omarl report", "", intro, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if not s.items:
            lines += [s.empty, ""]
        for item in s.items:
            if isinstance(item, Table):
                files = ", ".join(f"[{k}]({p})" for k, p in _files(item))
                lines += [f"{item.legend()} ({files})", ""]
                lines += [item.markdown().rstrip("\n") if item.rows else "None.", ""]
            else:
                shown = _shown(item, formats)
                if shown:
                    lines += [f"![{Path(item.stem).name}]({item.stem}.{shown})", ""]
                files = ", ".join(f"[{f}]({item.stem}.{f})" for f in _suffixes(item, formats))
                lines += [f"{item.caption} ({files})", ""]
    return "\n".join(lines)


# Tables: the task of a row group is a spanning row and each interval a second, smaller line,
# so the main table fits a 1280 px window; whatever is still wider scrolls inside its own
# box (.wide), never the page. Headers may wrap; cells do not.
_STYLE = f"""body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }}
td {{ white-space: nowrap; }}
.wide {{ overflow-x: auto; max-width: 100%; }}
th {{ background: #f2f2f2; }}
tr.group td {{ background: #fafafa; font-style: italic; }}
.ci {{ font-size: 0.85em; color: #555; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; max-width: {HALF_WIDTH_PX}px; }}
figure.full {{ display: block; max-width: 100%; }}
figcaption, .caption {{ font-size: 0.9em; color: #333; }}
img {{ max-width: 100%; }}"""  # noqa: E501 (CSS rules read best one per line)


def _index_html(sections: list[_Section], intro: str, formats: list[str]) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             "<title>o2omarl report</title>", f"<style>\n{_STYLE}\n</style>", "</head>",
             "<body>", "<h1>o2omarl report</h1>", f"<p>{esc(intro)}</p>"]
    for s in sections:
        parts.append(f"<h2>{esc(s.title)}</h2>")
        if not s.items:
            parts.append(f"<p>{esc(s.empty)}</p>")
        for item in s.items:
            if isinstance(item, Table):
                files = ", ".join(f'<a href="{esc(p)}">{k}</a>' for k, p in _files(item))
                parts.append(f'<p class="caption">{esc(item.legend())} ({files})</p>')
                parts.append(f'<div class="wide" data-table="{esc(item.name)}">{item.html()}'
                             "</div>" if item.rows else "<p>None.</p>")
            else:
                files = ", ".join(f'<a href="{esc(item.stem)}.{f}">{f}</a>'
                                  for f in _suffixes(item, formats))
                shown = _shown(item, formats)
                img = (f'<img src="{esc(item.stem)}.{shown}" alt="{esc(item.caption)}">'
                       if shown else "")
                cls = ' class="full"' if item.full else ""
                parts.append(f"<figure{cls}>{img}<figcaption>{esc(item.caption)} ({files})"
                             "</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
