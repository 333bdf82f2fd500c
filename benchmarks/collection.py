"""Collection-speed benchmark (not a test): what recording costs on top of the raw SMAX step.

    python benchmarks/collection.py [--map 2s3z] [--num-envs 32] [--steps 50000] [--json]

The collection part of `bench perf` (o2omarl/benchmark/perf.py, which documents the method):
raw batched steps with random actions, then `Rollout.step` as `bench collect` runs it with the
random, heuristic and an untrained QMIX (epsilon 0.05) behaviour, each on its own env, timed in
alternating rounds (median kept), compilation excluded.
"""

from __future__ import annotations

import argparse
import json

from o2omarl.benchmark.perf import PerfConfig, measure_collection


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--num-envs", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50_000, help="env steps timed per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="timings per variant (median kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    cfg = PerfConfig(args.map, args.num_envs, args.steps, repeats=args.repeats, seed=args.seed)
    rates = measure_collection(cfg)
    out = {"map": args.map, "num_envs": args.num_envs, "env_steps_per_s": rates,
           "ratio_to_raw": {k: v / rates["raw"] for k, v in rates.items()}}
    if args.json:
        print(json.dumps(out))
        return
    print(f"map {args.map}, {args.num_envs} envs, ~{args.steps:,} env steps per timing, "
          f"median of {args.repeats}")
    print(f"{'variant':<12}{'env-steps/s':>14}{'vs raw':>9}")
    for name, rate in rates.items():
        print(f"{name:<12}{rate:>14,.0f}{rate / rates['raw']:>9.2f}")


if __name__ == "__main__":
    main()
