"""The offline phase's selection rule (docs/results/offline_calibration.md), applied to the
confirmation's runs: per variant and pretraining length, calibration on every task and the
score (greedy return / the dataset's mean return, averaged over tasks).

    python benchmarks/offline_select.py --variants cql:1,cql:5 --seeds 3 \
        --tasks 2s3z:medium,2s3z:replay,6h_vs_8z:medium,5m_vs_6m:poor

Reads the pretraining logs that `offline_screen.py` wrote (same --runs-dir, --pretrain-steps,
--eval-every); a task whose runs are unfinished counts only the seeds and lengths it has, and
the table says how many seeds each cell holds.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from o2omarl.benchmark import plan

sys.path.insert(0, str(Path(__file__).parent))
from offline_losses import ONLINE_STEPS  # noqa: E402
from offline_screen import ALPHA_KEY, parse_variants, pretrain_rows  # noqa: E402

BAND = (0.8, 1.25)  # the rule's calibration band (tighter than the warning's)
NOISE = 0.05  # one evaluation's noise in relative return (32 battles)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="cql:1,cql:5")
    ap.add_argument("--tasks", default="2s3z:medium,2s3z:replay,6h_vs_8z:medium,5m_vs_6m:poor")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pretrain-steps", type=int, default=6000)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--runs-dir", default="runs/offline_screen")
    args = ap.parse_args()
    tasks = [tuple(t.split(":")) for t in args.tasks.split(",")]
    lines = ["| variant | updates | score (greedy / data return) | ratio: lowest task mean, "
             "highest | calibrated on every task | seeds per task |", "|---|---|---|---|---|---|"]
    best = {}
    for loss, alpha in parse_variants(args.variants):
        overrides = {"offline_loss": loss, ALPHA_KEY[loss]: alpha,
                     "pretrain_eval_interval": args.eval_every, "eval_interval": ONLINE_STEPS}
        per_task = {}
        for map_name, tier in tasks:
            jobs = [replace(j, label=f"{loss}_a{alpha:g}") for j in plan(
                ["ft-qmix"], map_name, tier, list(range(args.seeds)), ONLINE_STEPS,
                args.pretrain_steps, overrides=overrides)]
            store = Path(args.runs_dir) / map_name
            data_return = jobs[0].dataset.stats["return_mean"]
            logs = [{r["update"]: r for r in pretrain_rows(store, j)} for j in jobs]
            per_task[(map_name, tier)] = (data_return, [log for log in logs if log])
        updates = sorted({u for _, logs in per_task.values() for log in logs for u in log})
        scores = []
        for u in updates:
            rel, ratios, seeds = [], [], []
            for data_return, logs in per_task.values():
                at = [log[u] for log in logs if u in log]
                seeds.append(len(at))
                if at:
                    rel.append(sum(r["test_return"] for r in at) / len(at) / data_return)
                    ratios.append(sum(r["q_taken_mean"] / r["return_to_go_mean"]
                                      for r in at) / len(at))
            if not rel:
                continue
            score = sum(rel) / len(rel)
            ok = len(ratios) == len(tasks) and all(BAND[0] <= q <= BAND[1] for q in ratios)
            scores.append((u, score, ok))
            lines.append(f"| {loss} {alpha:g} | {u:,} | {score:.3f} | {min(ratios):.2f}, "
                         f"{max(ratios):.2f} | {'yes' if ok else 'no'} | "
                         f"{'/'.join(map(str, seeds))} |")
        calibrated = [(u, s) for u, s, ok in scores if ok]
        if calibrated:
            u, s = max(calibrated, key=lambda x: x[1])
            top = max(s for _, s, _ in scores)
            best[(loss, alpha)] = (u, s, top)
    print("\n".join(lines) + "\n")
    for (loss, alpha), (u, s, top) in sorted(best.items(), key=lambda x: -x[1][1]):
        print(f"{loss} {alpha:g}: best calibrated length {u:,} updates, score {s:.3f} "
              f"(best seen {top:.3f}; within noise {NOISE}: {'yes' if top - s <= NOISE else 'no'})")


if __name__ == "__main__":
    main()
