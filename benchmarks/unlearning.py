"""The unlearning experiment OVMSE is about (an experiment, not a test).

    python benchmarks/unlearning.py --map 2s3z --seeds 3 --steps 200000 --workers 2

On the map's newest `medium` dataset (collected with `bench collect --map MAP --tiers medium`
first if missing), runs `ft-qmix` with epsilon restarting at 1.0 (as a naive user would),
`ft-qmix` with the O2O schedule (0.2 -> 0.05), `ovm`, `se` and `ovmse`, each over the same seeds
and online budget, all starting from the same cached offline weights. Every variant is a
labelled job of `bench run`'s harness in one run store (so the run is resumable, parallel, and
`bench report --runs-dir RUNS` draws its figures). Writes a Markdown table (win rate at step 0,
min over the first 10% of the budget, unlearning drop, AUC, final win rate; mean +- std over
seeds) to docs/results/unlearning_<map>.md with the exact command.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np

from o2omarl.benchmark import plan
from o2omarl.benchmark.executors import run_jobs
from o2omarl.benchmark.results import read_jsonl
from o2omarl.benchmark.tiers import collect_tiers
from o2omarl.datasets import store
from o2omarl.reports.metrics import run_metrics

VARIANTS = {  # label -> (method, config overrides)
    "ft-qmix_eps1.0": ("ft-qmix", {}),
    "ft-qmix_eps0.2": ("ft-qmix", {"eps_start": 0.2}),
    "ovm": ("ovm", {}),
    "se": ("se", {}),
    "ovmse": ("ovmse", {}),
}
# The investigation's knobs, one change from the default ovmse each (--variants picks them).
VARIANTS.update({
    "ovmse_lambda0.5": ("ovmse", {"lambda_0": 0.5}),
    "ovmse_horizon0.5": ("ovmse", {"memory_horizon": 0.5}),
    "ovmse_horizon1.0": ("ovmse", {"memory_horizon": 1.0}),
    "ovmse_exponential": ("ovmse", {"lambda_schedule": "exponential"}),
    "ovmse_centralized": ("ovmse", {"se_mode": "centralized"}),
    "ovmse_eps0.1": ("ovmse", {"eps_start": 0.1}),
})
DEFAULT_VARIANTS = "ft-qmix_eps1.0,ft-qmix_eps0.2,ovm,se,ovmse"
COLUMNS = ["wr_start", "wr_min_early", "unlearning_drop", "auc", "wr_final"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--dataset", default="medium")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--pretrain-steps", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs/unlearning")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="extra KEY=VALUE config override for every variant")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS,
                    help=f"comma-separated labels of {', '.join(VARIANTS)} (default: the five "
                         "of the issue)")
    ap.add_argument("--name", default=None,
                    help="results file suffix (default: the map), e.g. for an investigation")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--table-only", action="store_true",
                    help="only (re)write the table from finished runs")
    args = ap.parse_args()
    extra = {k: _value(v) for k, v in (s.split("=", 1) for s in args.sets)}
    if "/" not in args.dataset and not store.versions("smax", args.map, args.dataset):
        collect_tiers(args.map, [args.dataset])
    jobs = []
    for label in args.variants.split(","):
        method, over = VARIANTS[label.strip()]
        for job in plan([method], args.map, args.dataset, list(range(args.seeds)), args.steps,
                        args.pretrain_steps, overrides={**extra, **over}):
            job.label = label.strip()
            jobs.append(job)
    runs_dir = Path(args.runs_dir)
    if not args.table_only:
        # Variant-major order: the first variant's seeds pretrain side by side; every later
        # job loads its seed's weights from the shared cache.
        run_jobs(jobs, runs_dir, workers=args.workers)
    results: dict[str, list[dict]] = {}
    for job in jobs:
        rows = read_jsonl(job.run_dir(runs_dir) / "metrics.jsonl")
        if rows and rows[-1]["env_step"] >= args.steps:
            results.setdefault(job.name, []).append(run_metrics(rows, args.steps))
    dataset_id = jobs[0].dataset.dataset_id
    out = Path(args.out) / f"unlearning_{args.name or args.map}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# Unlearning on {args.map} ({dataset_id})", "",
             f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`", "",
             f"{args.seeds} seeds, {args.steps:,} online env steps, {args.pretrain_steps:,} "
             f"offline updates. Win rates are "
             "greedy test win rates over 32 episodes; mean +- std over seeds.", "",
             "| variant | seeds | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for label, ms in results.items():
        cells = [f"{np.mean([m[c] for m in ms]):.3f} +- {np.std([m[c] for m in ms]):.3f}"
                 for c in COLUMNS]
        lines.append(f"| {label} | {len(ms)} | " + " | ".join(cells) + " |")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    main()
