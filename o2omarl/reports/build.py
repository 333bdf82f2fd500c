"""`bench report`: every table and figure of a run store, and an index page showing them all.

Output (under `out`):

    index.md, index.html            every table and figure, one-line captions (written last)
    tables/<name>.{md,tex,csv}      main, aggregate, improvement, datasets, not_included
    figures/<name>.{png,pdf}        win_<task>, return_<task>, ablation_<task>, profile

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
from o2omarl.benchmark.results import RunRecord, scan_store
from o2omarl.errors import BenchError, UsageError, one_of
from o2omarl.reports import figures, stats, tables
from o2omarl.reports.cells import by_task, group
from o2omarl.reports.tables import Table

FORMATS = ("png", "pdf")


@dataclass
class _Figure:
    stem: str  # path relative to the report folder, without the suffix
    caption: str


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


def select_runs(runs_dir: Path, maps=None, methods=None) -> list[RunRecord]:
    """The runs of the store that match the filters; a filter that matches nothing is an error
    naming the value and what exists."""
    runs = scan_store(runs_dir)
    for what, wanted, attr in (("map", maps, "map"), ("method", methods, "method")):
        have = sorted({getattr(r, attr) for r in runs} - {"?"})  # "?": a damaged config
        for w in wanted or ():
            if w not in have:
                raise UsageError(f"no runs for {what} {w!r} in {runs_dir}; "
                                 f"{what}s with runs: {', '.join(have)}")
    chosen = [r for r in runs if (not maps or r.map in maps)
              and (not methods or r.method in methods)]
    if not chosen:
        raise UsageError(f"no run in {runs_dir} is on map {', '.join(maps)} with method "
                         f"{', '.join(methods)}; see `bench runs list --runs-dir {runs_dir}`")
    return chosen


def build_report(runs_dir="runs", out="reports", maps=None, methods=None,
                 formats=FORMATS, say: Callable[[str], None] = print, seed: int = 0,
                 n_boot: int = stats.N_BOOT) -> Path:
    """Write every table and figure of the runs in `runs_dir` to `out`; return index.html.

    Only finished runs are averaged; the others are listed in the not-included table.
    `seed` and `n_boot` set the bootstrap (a fresh generator per interval).
    """
    runs_dir, out = Path(runs_dir), Path(out)
    formats = check_formats(formats)
    runs = select_runs(runs_dir, maps, methods)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    cells, excluded = group(runs)
    intro = (f"{len(runs)} runs from {runs_dir}: {sum(len(c.runs) for c in cells)} finished "
             f"in {len(cells)} cells (map, dataset, method, budget, pretraining), "
             f"{len(excluded)} not included.")
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
        return _Figure(stem, caption)

    curves, ablations = [], []
    for task, task_cells in by_task(cells).items():
        for column, name, unit in (("test_win_rate", "win", True),
                                   ("test_return", "return", False)):
            bands = figures.curve_bands(task_cells, column, seed, n_boot)
            if not bands:
                continue
            label = "test win rate" if unit else "test return (max ~20)"
            curves.append(figure(figures.curve_figure(bands, label, task.label, unit),
                                 f"figures/{name}_{task.slug}",
                                 f"{task.label}: {label}, mean over seeds with 95% bootstrap "
                                 "band; the marker at step 0 is the offline policy."))
            # A labelled variant (ft-qmix_eps0.2, benchmarks/unlearning.py) joins its method.
            part = [b for b in bands if b.method.split("_")[0] in figures.ABLATION]
            if unit and len(part) >= 2:
                ablations.append(figure(
                    figures.curve_figure(part, label, f"Ablation: {task.label}", True),
                    f"figures/ablation_{task.slug}",
                    f"{task.label}: OVMSE and its ablations (ovm = without SE, se = without "
                    "OVM, ft-qmix = neither)."))
        say(f"figures for {task.label}")

    across = [table(tables.aggregate_table(cells, seed, n_boot)),
              table(tables.improvement_table(cells, seed=seed, n_boot=n_boot))]
    if cells:
        panels = {name: figures.profile_bands(cells, key, seed, n_boot)
                  for key, name in tables.AGGREGATE_METRICS}
        across.append(figure(figures.profile_figure(panels), "figures/profile",
                             "Performance profiles: fraction of runs (all tasks pooled) whose "
                             "score exceeds each threshold, with 95% stratified bootstrap band."))
    dataset_ids = sorted({r.dataset for r in runs if r.dataset})
    sections = [
        _Section("Main table", [table(tables.main_table(cells, seed, n_boot))]),
        _Section("Learning curves", curves, "No finished run."),
        _Section("Ablation", ablations,
                 "Needs at least two of ovmse, ovm, se, ft-qmix on one task."),
        _Section("Across tasks", across),
        _Section("Datasets", [table(tables.dataset_table(dataset_ids))]),
        _Section("Not included", [table(tables.excluded_table(excluded, runs_dir))]),
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


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    with atomic.replacing(path) as tmp:
        write(tmp)


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _files(t: Table) -> list[tuple[str, str]]:
    return [(s, f"tables/{t.name}.{s}") for s in ("md", "tex", "csv")]


def _index_md(sections: list[_Section], intro: str, formats: list[str]) -> str:
    lines = ["# o2omarl report", "", intro, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        if not s.items:
            lines += [s.empty, ""]
        for item in s.items:
            if isinstance(item, Table):
                files = ", ".join(f"[{k}]({p})" for k, p in _files(item))
                lines += [f"{item.caption} ({files})", ""]
                lines += [item.markdown().rstrip("\n") if item.rows else "None.", ""]
            else:
                if "png" in formats:
                    lines += [f"![{Path(item.stem).name}]({item.stem}.png)", ""]
                files = ", ".join(f"[{f}]({item.stem}.{f})" for f in formats)
                lines += [f"{item.caption} ({files})", ""]
    return "\n".join(lines)


_STYLE = """body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; white-space: nowrap; }
.wide { overflow-x: auto; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; max-width: 570px; }
figcaption, .caption { font-size: 0.9em; color: #333; }
img { max-width: 100%; }"""


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
                parts.append(f'<p class="caption">{esc(item.caption)} ({files})</p>')
                parts.append(f'<div class="wide">{item.html()}</div>' if item.rows
                             else "<p>None.</p>")
            else:
                files = ", ".join(f'<a href="{esc(item.stem)}.{f}">{f}</a>' for f in formats)
                img = (f'<img src="{esc(item.stem)}.png" alt="{esc(item.caption)}">'
                       if "png" in formats else "")
                parts.append(f"<figure>{img}<figcaption>{esc(item.caption)} ({files})"
                             "</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
