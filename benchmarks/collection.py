"""Collection-speed benchmark (not a test): what recording costs on top of the raw SMAX step.

    python benchmarks/collection.py [--map 2s3z] [--num-envs 32] [--steps 50000] [--json]

Measures, side by side in one process (each variant on its own `SmaxVecEnv` of the same map and
num_envs, since an env's battles belong to whoever steps it):

1. raw: `SmaxVecEnv.step` with numpy uniform-available random actions: the env's own limit at
   this num_envs (one jitted vmap call + device_get per batched step);
2. rollout-random: `o2omarl.datasets.collect.Rollout.step` with the random policy, i.e. the same
   env stepping plus the per-env episode buffers and episode cutting used by `bench collect`;
3. rollout-heuristic: the same with SMAX's scripted heuristic policy (a second jitted call per
   batched step).

Each is warmed up first (compilation of the reset and step paths excluded; the warm-up runs past
an episode end, so the in-jit reset path has run too), then timed over --steps env steps
(`--repeats` times, interleaved; the median is reported). Rates are env-steps/s (one env-step =
one step of one of the N battles), with their ratio to the raw rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from o2omarl.datasets.collect import Rollout
from o2omarl.datasets.policies import HeuristicPolicy, RandomPolicy, uniform_available
from o2omarl.envs.smax import SmaxVecEnv


def raw_runner(env: SmaxVecEnv, seed: int):
    rng = np.random.default_rng(seed)
    obs = env.reset(seed)

    def run(batched_steps: int) -> None:
        nonlocal obs
        for _ in range(batched_steps):
            obs = env.step(uniform_available(obs.avail, rng)).cont

    return run


def rollout_runner(env: SmaxVecEnv, policy, seed: int):
    rollout = Rollout(env, policy, seed)

    def run(batched_steps: int) -> None:
        for _ in range(batched_steps):
            rollout.step()

    return run


def timed(run, batched_steps: int, num_envs: int) -> float:
    t = time.perf_counter()
    run(batched_steps)
    return batched_steps * num_envs / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--num-envs", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50_000, help="env steps timed per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="timings per variant (median kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    envs = [SmaxVecEnv(args.map, args.num_envs) for _ in range(3)]
    info = envs[0].info
    runners = {
        "raw": raw_runner(envs[0], args.seed),
        "rollout-random": rollout_runner(envs[1], RandomPolicy(args.seed), args.seed),
        "rollout-heuristic": rollout_runner(
            envs[2], HeuristicPolicy(envs[2], args.seed), args.seed),
    }
    # Warm-up: more than one episode limit, so every compiled path (reset, step, in-jit reset of
    # ended envs, the heuristic's jitted call) has run before any timing.
    t = time.perf_counter()
    for run in runners.values():
        run(info.episode_limit + 10)
    warmup_s = time.perf_counter() - t

    batched = max(1, args.steps // args.num_envs)
    rates: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():  # interleaved, so drift hits every variant alike
            rates[name].append(timed(run, batched, args.num_envs))
    median = {k: statistics.median(v) for k, v in rates.items()}

    import jax

    out = {
        "map": args.map, "num_envs": args.num_envs, "env_steps_timed": batched * args.num_envs,
        "repeats": args.repeats, "n_agents": info.n_agents, "n_actions": info.n_actions,
        "jax_backend": jax.default_backend(), "cpu_count": os.cpu_count(),
        "warmup_s": round(warmup_s, 2),
        "env_steps_per_s": {k: round(v, 1) for k, v in median.items()},
        "ratio_to_raw": {k: round(v / median["raw"], 3) for k, v in median.items()},
        "all_timings": {k: [round(x, 1) for x in v] for k, v in rates.items()},
    }
    if args.json:
        print(json.dumps(out))
        return
    print(f"map {args.map}, {args.num_envs} envs, {out['env_steps_timed']:,} env steps per "
          f"timing, median of {args.repeats} ({out['jax_backend']}, {out['cpu_count']} CPUs; "
          f"warm-up incl. compilation {warmup_s:.1f} s)")
    print(f"{'variant':<20}{'env-steps/s':>14}{'vs raw':>9}")
    for name in runners:
        print(f"{name:<20}{median[name]:>14,.0f}{median[name] / median['raw']:>9.2f}")


if __name__ == "__main__":
    main()
