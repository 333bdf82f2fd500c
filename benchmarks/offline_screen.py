"""The offline phase screened by measurement (issue 27, item 5): loss x alpha x length.

    python benchmarks/offline_screen.py --map 2s3z --dataset medium \
        --variants cql:0.5,cql:2,cql:5,cfcql:0.1,cfcql:1,cfcql:10 --pretrain-steps 6000

Each variant (`offline_loss`:alpha, every other setting at its default) pretrains with `bench
run ft-qmix`'s harness in a run store of its own (RUNS_DIR/<map>/<loss>_a<alpha>, so a killed
screen resumes), evaluated greedily every `--eval-every` updates (32 battles, the same for
every run). The online phase is a token 1,000 steps: only pretraining is measured. Writes
docs/results/offline_screen_<map>_<dataset>.md: per variant and evaluation, the greedy win
rate and return, Q_tot of the data's actions, the discounted return those episodes earned and
their ratio (both averaged over the updates since the previous evaluation), and updates/s.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from o2omarl.benchmark import plan
from o2omarl.benchmark.executors import run_jobs
from o2omarl.benchmark.pretrained import cache_folder
from o2omarl.benchmark.results import read_jsonl
from o2omarl.benchmark.runner import git_commit

sys.path.insert(0, str(Path(__file__).parent))
from offline_losses import ONLINE_STEPS  # noqa: E402

ALPHA_KEY = {"cql": "cql_alpha", "cfcql": "cfcql_alpha"}


def parse_variants(text: str) -> list[tuple[str, float]]:
    out = []
    for item in text.split(","):
        loss, _, alpha = item.partition(":")
        if loss not in ALPHA_KEY or not alpha:
            raise SystemExit(f"--variants {item!r}: expected LOSS:ALPHA, LOSS one of "
                             f"{', '.join(ALPHA_KEY)}")
        out.append((loss, float(alpha)))
    return out


def pretrain_rows(store: Path, job) -> list[dict]:
    """The pretraining log of `job`'s cached weights (also while they are being trained)."""
    log = cache_folder(SimpleNamespace(cfg=job.config), job, store / ".pretrained")
    return read_jsonl(log / "pretrain.jsonl") if (log / "pretrain.jsonl").exists() else []


def seed_means(logs: dict) -> list[str]:
    """Per variant with 2+ seeds, at each evaluation every seed reached: the mean greedy win
    rate, return and ratio, with the seeds' range (the spread the choice of length must beat)."""
    variants: dict = {}
    for (loss, alpha, seed), rows in logs.items():
        if rows:
            variants.setdefault((loss, alpha), {})[seed] = {r["update"]: r for r in rows}
    lines = []
    for (loss, alpha), by_seed in variants.items():
        if len(by_seed) < 2:
            continue
        lines += [f"## {loss}, alpha {alpha:g}: means over seeds {', '.join(map(str, by_seed))}",
                  "", "| updates | greedy win [min, max] | return [min, max] | "
                  "ratio [min, max] |", "|---|---|---|---|"]
        common = sorted(set.intersection(*(set(at) for at in by_seed.values())))
        for u in common:
            at = [rows[u] for rows in by_seed.values()]
            cells = []
            for values in ([r["test_win_rate"] for r in at], [r["test_return"] for r in at],
                           [r["q_taken_mean"] / r["return_to_go_mean"] for r in at]):
                cells.append(f"{sum(values) / len(values):.2f} [{min(values):.2f}, "
                             f"{max(values):.2f}]")
            lines.append(f"| {u:,} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--dataset", default="medium")
    ap.add_argument("--variants", default="cql:0.5,cql:2,cql:5,cfcql:0.1,cfcql:1,cfcql:10")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--pretrain-steps", type=int, default=6000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs-dir", default="runs/offline_screen")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    variants = parse_variants(args.variants)
    jobs = {}
    for loss, alpha in variants:
        overrides = {"offline_loss": loss, ALPHA_KEY[loss]: alpha,
                     "pretrain_eval_interval": args.eval_every, "eval_interval": ONLINE_STEPS}
        # a label per variant: one store, one run folder per variant and seed
        jobs[(loss, alpha)] = [replace(j, label=f"{loss}_a{alpha:g}") for j in plan(
            ["ft-qmix"], args.map, args.dataset, list(range(args.seeds)), ONLINE_STEPS,
            args.pretrain_steps, overrides=overrides)]
    store = Path(args.runs_dir) / args.map
    if not args.table_only:
        # every variant's jobs in one pool: the two workers stay busy to the end
        run_jobs([j for js in jobs.values() for j in js], store, workers=args.workers)
    dataset = next(iter(jobs.values()))[0].dataset
    lines = [f"# Offline phase screen on {args.map} {args.dataset} (issue 27, item 5)", "",
             f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ",
             f"Commit: {git_commit() or 'unknown'}", "",
             f"Dataset `{dataset.dataset_id}` (mean return "
             f"{dataset.stats.get('return_mean', float('nan')):.2f}). "
             f"Up to {args.pretrain_steps:,} offline updates (batch 32 episodes), greedy "
             f"evaluation over 32 battles every {args.eval_every} updates, the same battles for "
             "every run. Q_tot and 'earned' (the discounted return-to-go of the sampled "
             "steps) are means over the updates since the previous evaluation; ratio = Q_tot / "
             "earned.", ""]
    logs = {(loss, alpha, job.seed): pretrain_rows(store, job)
            for (loss, alpha), js in jobs.items() for job in js}
    lines += ["| loss | alpha | seed | updates done | ratio at the end | greedy return at "
              "1k / 3k / end | best greedy return (at) | greedy win at the end |",
              "|---|---|---|---|---|---|---|---|"]
    for (loss, alpha, seed), rows in logs.items():
        if not rows:
            continue
        at = {r["update"]: r for r in rows}
        end = rows[-1]
        best = max(rows, key=lambda r: r["test_return"])
        picks = " / ".join(f"{at[u]['test_return']:.2f}" if u in at else "-"
                           for u in (1000, 3000)) + f" / {end['test_return']:.2f}"
        lines.append(f"| {loss} | {alpha:g} | {seed} | {end['update']:,} | "
                     f"{end['q_taken_mean'] / end['return_to_go_mean']:.2f} | {picks} | "
                     f"{best['test_return']:.2f} ({best['update']:,}) | "
                     f"{end['test_win_rate']:.2f} |")
    lines.append("")
    lines += seed_means(logs)
    for (loss, alpha, seed), rows in logs.items():
        if rows:
            lines += [f"## {loss}, alpha {alpha:g}, seed {seed}", "",
                      "| updates | greedy win | return | Q_tot | earned | ratio | updates/s |",
                      "|---|---|---|---|---|---|---|"]
            for r in rows:
                q, g = r.get("q_taken_mean", float("nan")), r.get("return_to_go_mean", float("nan"))
                lines.append(f"| {r['update']:,} | {r.get('test_win_rate', float('nan')):.2f} | "
                             f"{r.get('test_return', float('nan')):.2f} | {q:.2f} | {g:.2f} | "
                             f"{q / g if g else float('nan'):.2f} | {r['updates_per_s']:.1f} |")
            lines.append("")
    # one page per task: two tiers of one map must not overwrite each other
    out = Path(args.out) / f"offline_screen_{args.map}_{args.dataset}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
