"""Learning-speed benchmark (not a test): offline updates/s and online env-steps/s, one process.

    python benchmarks/learning.py --map 2s3z [--json]

Measures, side by side on one map: offline QMIX+CQL updates/s at batch 32 episodes (on a
heuristic dataset collected first), and end-to-end online env-steps/s of `qmix` and `ovmse` with
the default update ratio (collection + updates + evaluation), plus the wall time that implies
for 1M online steps. Compilation is excluded (a warm-up precedes each timing).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace

from o2omarl import datasets
from o2omarl.benchmark.registry import get
from o2omarl.envs import env_info, make_env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--updates", type=int, default=200, help="offline updates timed")
    ap.add_argument("--steps", type=int, default=30_000, help="online env steps timed per method")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="o2omarl-bench-"))
    info = env_info(args.map)
    record = datasets.collect(args.map, "heuristic", episodes=300, seed=0,
                              show_progress=False).record
    data = datasets.load(record, info)
    out = {"map": args.map, "cpu_count": os.cpu_count()}

    # Offline updates/s (batch 32 episodes) after a short warm-up.
    method = get("ft-qmix")(info, replace(get("ft-qmix").Config(), pretrain_steps=10,
                                          pretrain_eval_interval=0))
    method.pretrain(data, lambda row: None)
    method.cfg.pretrain_steps = args.updates
    t = time.perf_counter()
    method.pretrain(data, lambda row: None)
    out["offline_updates_per_s"] = args.updates / (time.perf_counter() - t)

    eval_env = make_env(args.map, 32)
    for name in ("qmix", "ovmse"):
        cls = get(name)
        cfg = replace(cls.Config(), eval_interval=10 * args.steps)  # evals at 0 and the end only
        m = cls(info, cfg)
        if m.uses_offline_init:
            m.load_pretrained(method.learner.state_dict())
        env = make_env(args.map, cfg.num_envs)
        m.finetune(env, eval_env, 2000, lambda row: None)  # warm-up: compile, fill the buffer
        rows = []
        t = time.perf_counter()
        m.finetune(env, eval_env, args.steps, rows.append)
        rate = args.steps / (time.perf_counter() - t)
        out[f"online_{name}_env_steps_per_s"] = rate
        out[f"online_{name}_1M_steps_minutes"] = 1e6 / rate / 60
    out["ovmse_over_qmix_wall_time"] = (out["online_qmix_env_steps_per_s"]
                                        / out["online_ovmse_env_steps_per_s"])
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:36s} {v:,.2f}" if isinstance(v, float) else f"{k:36s} {v}")


if __name__ == "__main__":
    main()
