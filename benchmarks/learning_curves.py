"""Learning curves of QMIX from scratch (an experiment, not a test): does the learner learn?

    python benchmarks/learning_curves.py --map 3m --steps 300000 --seeds 3 --name 3m
    python benchmarks/learning_curves.py --map 2s3z --steps 300000 --seeds 1 --name probes \
        --variant default --variant one-step:td_lambda=0 --variant upe0.25:updates_per_episode=0.25
    python benchmarks/learning_curves.py --map 2s3z --steps 300000 --name probes \
        --compare old-state=runs/p_old/2s3z/online/qmix --compare new=runs/p_new/2s3z/online/qmix

Each variant is `bench run qmix` (random init, epsilon-greedy) with the shared learner defaults
plus its overrides, as a labelled job of the harness in one run store, so every variant runs on
the same seeds, side by side, and a killed sweep resumes. Writes docs/results/learning_<name>.md
(the command, the commit, one table row per map x variant) and learning_<name>.png: per map, the
greedy test win rate, the greedy test return, and the learner's mean Q_tot against the
discounted return its sampled data actually earned (a gap that grows is overestimation); mean
over seeds, shaded min-max. `--compare NAME=FOLDER` tabulates finished runs made elsewhere (e.g.
by `bench run` at another commit: FOLDER holds their seed_k/ folders) instead of running any.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from o2omarl.benchmark import plan
from o2omarl.benchmark.executors import run_jobs
from o2omarl.benchmark.results import read_jsonl
from o2omarl.benchmark.runner import git_commit
from o2omarl.reports.metrics import run_metrics

COLUMNS = ("seeds", "final win rate", "best win rate", "steps to 80%", "steps to 90%",
           "return at 200k",
           "AUC", "max Q_tot", "max Q_tot - earned", "env steps/s")


def parse_variant(text: str) -> tuple[str, dict]:
    """`NAME` or `NAME:KEY=VALUE,KEY=VALUE` -> (name, overrides)."""
    name, _, sets = text.partition(":")
    over = dict(kv.split("=", 1) for kv in sets.split(",") if kv)
    return name, over


def summarise(runs: list[list[dict]], budget: int) -> list[str]:
    """One table row's cells from each seed's metrics rows."""
    m = [run_metrics(rows, budget) for rows in runs]
    at = [min(rows, key=lambda r: abs(r["env_step"] - 200_000))["test_return"] for rows in runs
          if rows[-1]["env_step"] >= 200_000]
    rate = [rows[-1]["env_steps_per_s"] for rows in runs]

    def ms(values, fmt=".2f"):
        values = [v for v in values if np.isfinite(v)]  # runs from before a metric existed
        return f"{np.mean(values):{fmt}} +- {np.std(values):{fmt}}" if values else "-"

    return [str(len(runs)), ms([x["wr_final"] for x in m]),
            ms([max(r["test_win_rate"] for r in rows) for rows in runs]),
            first_reached(runs, 0.8), first_reached(runs, 0.9),
            ms(at, ".1f"), ms([x["auc"] for x in m]),
            ms([max(r.get("q_taken_mean", np.nan) for r in rows[1:]) for rows in runs], ".1f"),
            ms([x["q_overestimation"] for x in m], ".1f"), ms(rate, ",.0f")]


def first_reached(runs: list[list[dict]], threshold: float) -> str:
    """Mean env step of the first evaluation at >= threshold, over the seeds that reach it."""
    steps = [next(r["env_step"] for r in rows if r["test_win_rate"] >= threshold)
             for rows in runs if any(r["test_win_rate"] >= threshold for r in rows)]
    if not steps:
        return f"never (0/{len(runs)})"
    return f"{np.mean(steps):,.0f} ({len(steps)}/{len(runs)} seeds)"


def figure(curves: dict, path: Path) -> None:
    """curves[map][variant] = list of metrics rows per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maps = list(curves)
    fig, axes = plt.subplots(len(maps), 3, figsize=(13, 3.2 * len(maps)), squeeze=False)
    for i, map_name in enumerate(maps):
        for k, (variant, runs) in enumerate(curves[map_name].items()):
            color = f"C{k}"
            n = min(len(rows) for rows in runs)
            steps = np.array([r["env_step"] for r in runs[0][:n]])

            def band(ax, key, label, style="-", rows_from=0):
                v = np.array([[r.get(key, np.nan) for r in rows[:n]] for rows in runs])
                ax.plot(steps[rows_from:], v.mean(0)[rows_from:], style, color=color, label=label)
                ax.fill_between(steps[rows_from:], v.min(0)[rows_from:], v.max(0)[rows_from:],
                                color=color, alpha=0.15)

            band(axes[i, 0], "test_win_rate", variant)
            band(axes[i, 1], "test_return", variant)
            band(axes[i, 2], "q_taken_mean", f"{variant}: Q_tot", rows_from=1)
            band(axes[i, 2], "return_to_go_mean", f"{variant}: earned", ":", rows_from=1)
        for ax, title in zip(axes[i], ("greedy test win rate", "greedy test return (max ~20)",
                                       "mean Q_tot vs discounted return earned")):
            ax.set_title(f"{map_name}: {title}", fontsize=10)
            ax.set_xlabel("env steps")
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylim(-0.02, 1.02)
        axes[i, 0].legend(fontsize=8)
        axes[i, 2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", dest="maps", action="append", required=True,
                    help="a map (repeatable)")
    ap.add_argument("--steps", type=int, default=300_000, help="online env steps per run")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variant", dest="variants", action="append", default=None,
                    help="NAME or NAME:KEY=VALUE,KEY=VALUE (repeatable; default: `default`, "
                         "the shared learner settings unchanged)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--runs-dir", default="runs/learning")
    ap.add_argument("--name", required=True, help="results file suffix")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--table-only", action="store_true",
                    help="only (re)write the page from the runs finished so far")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=FOLDER",
                    help="tabulate the finished runs in FOLDER/seed_*/ as variant NAME of the "
                         "(single) --map, running nothing (repeatable)")
    args = ap.parse_args()
    if args.compare:
        curves, commits = {args.maps[0]: {}}, set()
        for item in args.compare:
            name, folder = item.split("=", 1)
            curves[args.maps[0]][name] = []
            for seed_dir in sorted(Path(folder).glob("seed_*")):
                rows = read_jsonl(seed_dir / "metrics.jsonl")
                if rows and rows[-1]["env_step"] >= args.steps:
                    curves[args.maps[0]][name].append(rows)
                    commits.add(json.loads((seed_dir / "config.json").read_text())
                                .get("git_commit"))
        write_page(args, curves, [(item.split("=", 1)[0], {"runs": item.split("=", 1)[1]})
                                  for item in args.compare], commits)
        return
    variants = [parse_variant(v) for v in (args.variants or ["default"])]
    jobs = []
    for map_name in args.maps:
        for name, over in variants:
            for job in plan(["qmix"], map_name, None, list(range(args.seeds)), args.steps, 1,
                            overrides=over):
                job.label = f"qmix_{name}"
                jobs.append(job)
    runs_dir = Path(args.runs_dir)
    if not args.table_only:
        run_jobs(jobs, runs_dir, workers=args.workers)
    curves: dict = {}
    commits = set()
    for job in jobs:
        rows = read_jsonl(job.run_dir(runs_dir) / "metrics.jsonl")
        if rows and rows[-1]["env_step"] >= args.steps:
            curves.setdefault(job.map_name, {}).setdefault(job.name[5:], []).append(rows)
            commits.add(json.loads((job.run_dir(runs_dir) / "config.json").read_text())
                        .get("git_commit"))
    write_page(args, curves, variants, commits)


def write_page(args, curves: dict, variants: list[tuple[str, dict]],
               commits: set | None = None) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"learning_{args.name}.png"
    lines = [f"# Learning curves: {args.name}", "",
             # --table-only rewrites the page of runs that the same command without it made
             "Command: `python " + " ".join(shlex.quote(a) for a in sys.argv
                                            if a != "--table-only") + "`  ",
             "Runs made at commit: " + (", ".join(sorted(str(c) for c in commits))
                                        if commits else "(see the runs' config.json)"),
             f"Page written at commit: {git_commit() or 'unknown'}", "",
             f"`qmix` from scratch, {args.steps:,} env steps, greedy evaluation (32 battles) "
             "every `eval_interval` steps; mean +- std over seeds. Per variant: "
             + "; ".join(f"`{n}` {o or '(none)'}" for n, o in variants) + ".", "",
             "| map | variant | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    curves = {m: {v: runs for v, runs in by.items() if runs} for m, by in curves.items()}
    curves = {m: by for m, by in curves.items() if by}  # only what has finished runs
    for map_name, by_variant in curves.items():
        for variant, runs in by_variant.items():
            lines.append(f"| {map_name} | {variant} | "
                         + " | ".join(summarise(runs, args.steps)) + " |")
    if curves:
        figure(curves, png)
        lines += ["", f"![learning curves]({png.name})"]
    (out / f"learning_{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
