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
from o2omarl.qmix import conservative
from o2omarl.qmix.buffer import ReplayBuffer
from o2omarl.qmix.conservative import offline_loss
from o2omarl.qmix.learner import Learner, LearnerConfig, mix_filled

VARIANTS = {"cql": ("cql", 0.5), "cfcql": ("cfcql", 0.5), "cfcql, temperature 0": ("cfcql", 0.0),
            "cfcql, joint mixing": ("cfcql", 0.5)}


def joint_mixing(mixer, taken, q, state, filled):
    """The mixing before the rank-one deviations (3d74bba^): every one-agent deviation built as
    a joint action and mixed by `forward`, for the side-by-side timing only."""
    B, T, n, A = q.shape
    swap = torch.eye(n, dtype=torch.bool, device=q.device).view(n, 1, n)
    joint = torch.where(swap, q.unsqueeze(-1), taken[:, :, None, None, :])
    dev = mix_filled(mixer, joint.view(B, T, n * A, n), state, filled).view(B, T, n, A)
    return dev, mix_filled(mixer, taken, state, filled)


def update(name: str, learner: Learner, batch) -> None:
    fast = conservative.mix_deviations_filled
    if name.endswith("joint mixing"):
        conservative.mix_deviations_filled = joint_mixing
    try:
        learner.update(batch)
    finally:
        conservative.mix_deviations_filled = fast


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
        update(name, learners[name], batches[0])  # warm-up
    times = {k: [] for k in learners}
    for _ in range(args.rounds):
        for name, learner in learners.items():
            start = time.perf_counter()
            for b in batches:
                update(name, learner, b)
            times[name].append((time.perf_counter() - start) / len(batches))
    base = min(times["cql"])
    print(f"{args.map} {args.dataset}: ms per offline update (best of {args.rounds} rounds "
          f"of {args.batches}), ratio to per-agent CQL")
    for name, t in times.items():
        print(f"  {name:22s} {min(t) * 1000:6.0f} ms  {min(t) / base:.2f}x")


if __name__ == "__main__":
    main()
