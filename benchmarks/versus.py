"""Old vs new, side by side in one process (not a test): the speed ratios docs/performance.md
quotes.

    python benchmarks/versus.py --ref 338f161 [--map 2s3z] [--rounds 3]

Imports the package as it was at git commit REF (extracted with `git archive` into a temporary
folder as `o2omarl_ref`) next to the working tree's `o2omarl`, and times the two alternately on
the same machine at the same moment, so the load of a shared machine hits both alike:

- offline updates/s (TD + conservative term, batch 32, the same batches and weights);
- online env-steps/s end to end (ft-qmix, ovmse, qmix; the same seeds, so the same updates);
- collection env-steps/s with the heuristic and an untrained QMIX policy, and raw;
- dataset load time (the same dataset file).
Prints new/old per figure. Only APIs present on both sides are used.
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

import o2omarl.benchmark.perf as perf
from o2omarl.benchmark.perf import quiet_progress

REPO = Path(__file__).resolve().parents[1]


def import_ref(ref: str, where: Path):
    """The package at commit `ref`, importable as `o2omarl_ref`."""
    raw = subprocess.run(["git", "-C", str(REPO), "archive", ref, "o2omarl"],
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        tar.extractall(where, filter="data")
    (where / "o2omarl").rename(where / "o2omarl_ref")
    for py in (where / "o2omarl_ref").rglob("*.py"):  # its imports only, not its file names
        py.write_text(re.sub(r"(?m)^(\s*)(from|import) o2omarl\b", r"\1\2 o2omarl_ref",
                             py.read_text()))
    sys.path.insert(0, str(where))
    return importlib.import_module("o2omarl_ref")


def mod(pkg, name: str):
    """Submodule `name` of either side's package."""
    return importlib.import_module(f"{pkg.__name__}.{name}")


def alternate(fns: dict, rounds: int) -> dict:
    """Total seconds of each zero-argument fn, called in alternation `rounds` times."""
    spent = dict.fromkeys(fns, 0.0)
    for _ in range(rounds):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            spent[k] += time.perf_counter() - start
    return spent


def offline(pkgs: dict, info, data, rounds: int) -> None:
    learners, stores = {}, {}
    for side, pkg in pkgs.items():
        q = mod(pkg, "qmix")
        learners[side] = q.Learner(info, q.QmixConfig(), "cpu",
                                   extra_losses=(q.ConservativeLoss(5.0),))
        stores[side] = q.ReplayBuffer.from_arrays(data, info)
    learners["new"].load_state_dict(learners["ref"].state_dict())  # the same weights
    rng = np.random.default_rng(0)
    idx = [np.sort(rng.integers(0, len(data), 32)) for _ in range(5)]  # the same batches

    def run(side):
        return lambda: [learners[side].update(stores[side].batch(i)) for i in idx]

    spent = alternate({s: run(s) for s in pkgs}, rounds)
    show("offline updates/s", {s: rounds * len(idx) / t for s, t in spent.items()})


def online(pkgs: dict, map_name: str, steps: int, rounds: int) -> None:
    chunk = max(1, steps // rounds)

    def run(t):
        def chunk_of_training():
            goal = t.env_step + chunk
            t.run(should_stop=lambda: t.env_step >= goal)
        return chunk_of_training

    for name in ("ft-qmix", "ovmse", "qmix"):
        trainers = {}
        for side, pkg in pkgs.items():
            envs, cls = mod(pkg, "envs"), mod(pkg, "benchmark.registry").get(name)
            m = cls(envs.env_info(map_name), cls.Config(), 0, "cpu")
            if m.uses_offline_init:
                m.load_pretrained(m.learner.state_dict())
            trainers[side] = m.online(envs.make_env(map_name, m.cfg.num_envs),
                                      envs.make_env(map_name, m.cfg.eval_episodes),
                                      10 * (steps + 10_000), lambda row: None)
        with quiet_progress(), _quiet(pkgs["ref"]):
            for t in trainers.values():
                t.run(should_stop=lambda t=t: t.learner.updates >= 2)
            start = {s: t.env_step for s, t in trainers.items()}
            spent = alternate({s: run(t) for s, t in trainers.items()}, rounds)
        updates = [t.learner.updates for t in trainers.values()]
        show(f"online {name} env-steps/s",
             {s: (t.env_step - start[s]) / spent[s] for s, t in trainers.items()},
             extra=f"updates {updates[0]} vs {updates[1]}")


def collection(pkgs: dict, map_name: str, steps: int, rounds: int) -> None:
    n = 32
    runners = {}
    for side, pkg in pkgs.items():
        envs, pol, q = mod(pkg, "envs"), mod(pkg, "datasets.policies"), mod(pkg, "qmix")
        rollout = mod(pkg, "datasets").Rollout  # exported there before and after the move
        e = [envs.make_env(map_name, n) for _ in range(3)]
        runners[f"raw {side}"] = perf.raw_runner(e[0], 0)
        for k, env, policy in (("heuristic", e[1], pol.HeuristicPolicy(e[1], 0)),
                               ("qmix", e[2], q.QmixO2O(envs.env_info(map_name))
                                .actor(n).with_epsilon(0.05))):
            r = rollout(env, policy, 0)
            runners[f"{k} {side}"] = lambda b, r=r: [r.step() for _ in range(b)]
    rates = perf.interleaved(runners, max(1, steps // n), n, rounds, warmup=110)
    for k in ("raw", "heuristic", "qmix"):
        show(f"collection {k} env-steps/s (32 envs)", {s: rates[f"{k} {s}"] for s in pkgs},
             extra=f"vs raw: {rates[f'{k} ref'] / rates['raw ref']:.2f} -> "
                   f"{rates[f'{k} new'] / rates['raw new']:.2f}")


def load(pkgs: dict, info, record, rounds: int) -> None:
    loaders = {s: mod(p, "datasets.loader") for s, p in pkgs.items()}
    spent = alternate({s: lambda m=m: m.load(record, info) for s, m in loaders.items()}, rounds)
    steps = record.stats["steps"]
    show("dataset load, s per 100k steps",
         {s: t / rounds * 100_000 / steps for s, t in spent.items()}, lower_is_better=True)


def show(label, values, extra="", lower_is_better=False):
    ratio = values["ref"] / values["new"] if lower_is_better else values["new"] / values["ref"]
    print(f"{label:42s} ref {values['ref']:10,.2f}  new {values['new']:10,.2f}  "
          f"speed-up {ratio:5.2f}x  {extra}", flush=True)


class _quiet:
    """The reference package's progress lines too."""

    def __init__(self, pkg):
        self.progress = mod(pkg, "progress")

    def __enter__(self):
        self.progress.set_sink(lambda label, line: None)

    def __exit__(self, *exc):
        self.progress.set_sink(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="git commit to compare the working tree with")
    ap.add_argument("--map", default="2s3z")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--online-steps", type=int, default=12_000)
    ap.add_argument("--steps", type=int, default=20_000, help="collection env steps per variant")
    ap.add_argument("--episodes", type=int, default=1000, help="dataset episodes to load")
    args = ap.parse_args()
    import o2omarl
    from o2omarl import datasets
    from o2omarl.envs import env_info

    info = env_info(args.map)
    with tempfile.TemporaryDirectory() as tmp, perf.temporary_minari_root():
        pkgs = {"ref": import_ref(args.ref, Path(tmp)), "new": o2omarl}
        print(f"{args.map}: ref = {args.ref}, new = working tree; alternating, "
              f"{args.rounds} rounds", flush=True)
        rec = datasets.collect(args.map, "heuristic", episodes=args.episodes,
                               show_progress=False).record
        load(pkgs, info, rec, args.rounds)
        offline(pkgs, info, datasets.load(rec, info), args.rounds)
        collection(pkgs, args.map, args.steps, args.rounds)
        online(pkgs, args.map, args.online_steps, args.rounds)


if __name__ == "__main__":
    main()
