"""What an offline update costs per conservative term, side by side in one process (issue 27,
item 4; an experiment, not a test).

    python benchmarks/offline_update_cost.py --map 2s3z --dataset medium

Times `Learner.update` on the same pre-built batches (32 episodes) for per-agent CQL, CFCQL
with its fitted behaviour policy (temperature 0.5) and CFCQL with equal weights (temperature 0,
no behaviour policy), in alternating rounds so that the load of a shared machine hits each
alike; prints ms per update (best round) and the ratio to CQL.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from o2omarl.datasets import loader
from o2omarl.envs import env_info
from o2omarl.qmix.buffer import ReplayBuffer
from o2omarl.qmix.conservative import offline_loss
from o2omarl.qmix.learner import Learner, LearnerConfig

VARIANTS = {"cql": ("cql", 0.5), "cfcql": ("cfcql", 0.5), "cfcql, temperature 0": ("cfcql", 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--dataset", default="medium")
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    info = env_info(args.map)
    buffer = ReplayBuffer.from_arrays(loader.load(args.dataset, info), info)
    rng = np.random.default_rng(0)
    batches = [buffer.sample(32, rng, "cpu") for _ in range(args.batches)]
    for b in batches:
        b.agent_inputs  # noqa: B018 - built before timing, as the prefetching thread does
    learners = {}
    for name, (kind, temperature) in VARIANTS.items():
        torch.manual_seed(0)
        learners[name] = Learner(info, LearnerConfig(), "cpu",
                                 extra_losses=(offline_loss(kind, 5.0, 50.0, temperature),))
        learners[name].update(batches[0])  # warm-up
    times = {k: [] for k in learners}
    for _ in range(args.rounds):
        for name, learner in learners.items():
            start = time.perf_counter()
            for b in batches:
                learner.update(b)
            times[name].append((time.perf_counter() - start) / len(batches))
    base = min(times["cql"])
    print(f"{args.map} {args.dataset}: ms per offline update (best of {args.rounds} rounds "
          f"of {args.batches}), ratio to per-agent CQL")
    for name, t in times.items():
        print(f"  {name:22s} {min(t) * 1000:6.0f} ms  {min(t) / base:.2f}x")


if __name__ == "__main__":
    main()
