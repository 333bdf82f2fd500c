"""The offline phase's selection rule (docs/results/offline_calibration.md), applied to the
confirmation's runs: per variant and pretraining length, calibration on every task and the
score (greedy return / the dataset's mean return, averaged over tasks).

    python benchmarks/offline_select.py --variants cql:1,cql:5 --seeds 3 \
        --tasks 2s3z:medium,2s3z:replay,6h_vs_8z:medium,5m_vs_6m:poor

Reads the pretraining logs that `offline_screen.py` wrote (same --runs-dir, --pretrain-steps,
--eval-every); a task whose runs are unfinished counts only the seeds and lengths it has, and
the table says how many seeds each cell holds.

The calibration measure (`--measure`): `greedy` (the default) is Q_tot of the greedy policy's
own actions along its evaluation battles against the return that followed
(`protocol.greedy_calibration`); `data` is Q_tot of the dataset's actions against what the
behaviour earned (`protocol.calibration`), which a right Q_tot exceeds wherever the greedy
policy is far better than the data. Logs written before the greedy measure existed lack it: the
cached final weights are then evaluated again on the same battles (`bench eval`'s measure),
which gives that last row's win rate and return again, and its greedy values.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from o2omarl.benchmark import plan
from o2omarl.benchmark.evaluation import evaluate_checkpoint
from o2omarl.benchmark.pretrained import cache_folder
from o2omarl.protocol import calibration, greedy_calibration

sys.path.insert(0, str(Path(__file__).parent))
from offline_losses import ONLINE_STEPS  # noqa: E402
from offline_screen import ALPHA_KEY, parse_variants, pretrain_rows  # noqa: E402

MEASURES = {"greedy": greedy_calibration, "data": calibration}

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
    ap.add_argument("--measure", choices=sorted(MEASURES), default="greedy")
    args = ap.parse_args()
    ratio_of = MEASURES[args.measure]
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
            if args.measure == "greedy":
                for job, log in zip(jobs, logs):
                    final = log.get(args.pretrain_steps)
                    if final is not None and "test_q_mean" not in final:
                        final.update(greedy_values_again(store, job, final))
            per_task[(map_name, tier)] = (data_return, [log for log in logs if log])
        updates = sorted({u for _, logs in per_task.values() for log in logs for u in log})
        scores = []
        for u in updates:
            rel, ratios, seeds = [], [], []
            for data_return, logs in per_task.values():
                at = [log[u] for log in logs if u in log
                      and not math.isnan(ratio_of(log[u]))]
                seeds.append(len(at))
                if at:
                    rel.append(sum(r["test_return"] for r in at) / len(at) / data_return)
                    ratios.append(sum(ratio_of(r) for r in at) / len(at))
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


def greedy_values_again(store: Path, job, final: dict) -> dict:
    """The greedy measure of the cached final weights, on the battles of the log's last row
    (refused if they no longer give that row's return: then they are other weights)."""
    folder = cache_folder(SimpleNamespace(cfg=job.config), job, store / ".pretrained")
    ev = evaluate_checkpoint(folder / "model.pt", job.config.eval_episodes, job.seed)
    if abs(ev.ret.mean - final["test_return"]) > 1e-4:
        sys.exit(f"{folder}: greedy return {ev.ret.mean:.4f} now, {final['test_return']:.4f} "
                 "in its log: not the weights that log describes")
    print(f"  {job.map_name} {job.dataset_label} {job.label} seed {job.seed}: greedy Q_tot "
          f"{ev.q_tot:.2f} vs {ev.earned:.2f} earned ({ev.calibration:.2f}x); data's "
          f"{calibration(final):.2f}x", file=sys.stderr, flush=True)
    return {"test_q_mean": ev.q_tot, "test_earned_mean": ev.earned}


if __name__ == "__main__":
    main()
