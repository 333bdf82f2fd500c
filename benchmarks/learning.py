"""Learning-speed benchmark (not a test): offline updates/s and online env-steps/s, one process.

    python benchmarks/learning.py --map 2s3z [--json]

The learning part of `bench perf` (o2omarl/benchmark/perf.py, which documents the method):
offline QMIX + conservative-term updates/s at batch 32 episodes on a heuristic dataset, and
end-to-end online env-steps/s of `qmix`, `ft-qmix` and `ovmse` at the default update ratio,
timed in alternating chunks, with the wall time that implies for 1M online steps.
"""

from __future__ import annotations

import argparse
import json

from o2omarl.benchmark.perf import PerfConfig, measure_dataset_io, measure_offline, measure_online
from o2omarl.datasets.policies import HeuristicPolicy
from o2omarl.envs import env_info, make_env
from o2omarl.episodes import Rollout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--updates", type=int, default=100, help="offline updates timed")
    ap.add_argument("--steps", type=int, default=20_000, help="online env steps timed per method")
    ap.add_argument("--repeats", type=int, default=3, help="alternating chunks per method")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cfg = PerfConfig(args.map, online_steps=args.steps, updates=args.updates,
                     repeats=args.repeats)
    info = env_info(args.map)
    env = make_env(args.map, 32)
    episodes = Rollout(env, HeuristicPolicy(env, 0), 0).collect(300)
    _, _, data = measure_dataset_io(info, episodes)  # written under a temporary Minari root
    out = {"map": args.map, "offline_updates_per_s": measure_offline(info, data, cfg)}
    for name, rate in measure_online(cfg).items():
        name = name.replace("-", "_")
        out[f"online_{name}_env_steps_per_s"] = rate
        if name != "raw":
            out[f"online_{name}_1M_steps_minutes"] = 1e6 / rate / 60
    out["ovmse_over_ft_qmix_wall_time"] = (out["online_ft_qmix_env_steps_per_s"]
                                           / out["online_ovmse_env_steps_per_s"])
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:36s} {v:,.2f}" if isinstance(v, float) else f"{k:36s} {v}")


if __name__ == "__main__":
    main()
