"""Which conservative term pretrains better: per-agent CQL or CFCQL (an experiment, not a test).

    python benchmarks/offline_losses.py --map 2s3z --dataset medium --seeds 3 --workers 2

For each offline loss (`--set offline_loss=cql|cfcql`, every other setting at its default),
pretrains on the map's dataset with `bench run ft-qmix`'s harness (one run store per loss,
RUNS_DIR/<loss>, so a killed sweep resumes; same seeds and dataset for both), then
reads the greedy evaluations the pretraining logged (32 battles every 1,000 offline updates, the
same battles for every run). The online phase is a token 1,000 steps: only the pretrained
policy is measured. Writes docs/results/offline_losses_<map>.md: the command, the dataset, and
per loss the greedy win rate and return after pretraining (mean +- std and per seed), the win
rate at each evaluation, the conservative gap and the offline updates/s.
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
from o2omarl.benchmark.runner import git_commit

LOSSES = ("cql", "cfcql")
ONLINE_STEPS = 1000


def pretrain_rows(runs_dir: Path, job) -> list[dict]:
    """The pretraining log of `job`'s cached weights (each loss has its own run store, so
    one cache entry per seed)."""
    found = list((runs_dir / ".pretrained" / job.map_name).glob(f"*/*/seed_{job.seed}/"
                                                                "pretrain.jsonl"))
    return read_jsonl(found[0]) if len(found) == 1 else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--dataset", default="medium")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pretrain-steps", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs/offline_losses")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    jobs = {loss: plan(["ft-qmix"], args.map, args.dataset, list(range(args.seeds)), ONLINE_STEPS,
                       args.pretrain_steps,
                       overrides={"offline_loss": loss, "eval_interval": ONLINE_STEPS})
            for loss in LOSSES}
    if not args.table_only:
        for loss in LOSSES:
            run_jobs(jobs[loss], Path(args.runs_dir) / loss, workers=args.workers)
    dataset = jobs[LOSSES[0]][0].dataset
    lines = [f"# Offline losses on {args.map}: per-agent CQL vs CFCQL", "",
             f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ",
             f"Commit: {git_commit() or 'unknown'}", "",
             f"Dataset `{dataset.dataset_id}`. {args.pretrain_steps:,} offline updates (batch 32 "
             "episodes), every other setting at its default; greedy evaluation over 32 battles, "
             "the same battles for every run. Mean +- std over seeds.", "",
             "| offline loss | seeds | win rate after pretraining | per seed | return | "
             "win rate at each evaluation (mean) | conservative gap | offline updates/s |",
             "|---|---|---|---|---|---|---|---|"]
    for loss in LOSSES:
        runs = [rows for rows in (pretrain_rows(Path(args.runs_dir) / loss, j)
                                  for j in jobs[loss])
                if rows and rows[-1]["update"] >= args.pretrain_steps]
        if not runs:
            continue
        final = [rows[-1] for rows in runs]
        win = [r["test_win_rate"] for r in final]
        ret = [r["test_return"] for r in final]
        by_eval = np.mean([[r["test_win_rate"] for r in rows] for rows in runs], axis=0)
        gap = [r.get("cfcql_gap", r.get("cql_gap", np.nan)) for r in final]
        speed = [r["updates_per_s"] for r in final]
        lines.append(
            f"| {loss} | {len(runs)} | {np.mean(win):.2f} +- {np.std(win):.2f} | "
            f"{' / '.join(f'{w:.2f}' for w in win)} | {np.mean(ret):.1f} +- {np.std(ret):.1f} | "
            f"{' -> '.join(f'{w:.2f}' for w in by_eval)} | {np.mean(gap):.2f} | "
            f"{np.mean(speed):.1f} |")
    out = Path(args.out) / f"offline_losses_{args.map}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
