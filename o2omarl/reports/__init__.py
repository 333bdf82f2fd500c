"""Tables and figures from the run store (DESIGN.md section 6).

    from o2omarl.reports import build_report
    build_report("runs", "reports")   # -> reports/index.html

Modules: `metrics` (per-run O2O metrics), `cells` (grouping runs that may be pooled), `stats`
(bootstrap, IQM, probability of improvement, performance profiles), `tables`, `figures`,
`build` (the report folder and its index).
"""

__all__ = ["FORMATS", "build_report"]


def __getattr__(name):
    # Imported on first use, so `o2omarl.reports.metrics` stays light (no matplotlib, no run
    # store machinery) for code that only needs the per-run metrics.
    if name in __all__:
        from o2omarl.reports import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
