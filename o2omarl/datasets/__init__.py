"""Offline datasets: behaviour policies, collection, versioned Minari storage, loading."""

from __future__ import annotations

import time
from dataclasses import dataclass

from o2omarl import interrupts
from o2omarl.datasets import store
from o2omarl.datasets.loader import card, check_fits, load, verify
from o2omarl.datasets.policies import BUILTIN_BEHAVIOURS, EpsilonMix, Policy, make_builtin
from o2omarl.datasets.store import DatasetRecord, resolve
from o2omarl.envs import DEFAULT_BACKEND, env_info, make_env
from o2omarl.episodes import Episode, Rollout
from o2omarl.errors import Interrupted, UsageError, check_seed, one_of, positive
from o2omarl.progress import Progress
from o2omarl.protocol import COLLECT_ENVS

DEFAULT_NUM_ENVS = COLLECT_ENVS


@dataclass
class CollectResult:
    record: DatasetRecord
    reused: bool
    elapsed_s: float = 0.0
    env_steps_per_s: float = 0.0


def collect(
    map_name: str,
    behaviour: str = "heuristic",
    episodes: int = 1000,
    epsilon: float = 0.0,
    seed: int = 0,
    num_envs: int = DEFAULT_NUM_ENVS,
    backend: str = DEFAULT_BACKEND,
    tier: str | None = None,
    policy: Policy | None = None,
    behaviour_meta: dict | None = None,
    show_progress: bool = True,
) -> CollectResult:
    """Collect `episodes` episodes of a behaviour and store them as a dataset version.

    Built-in behaviours are named (`random`, `heuristic`); other callers (the trained tiers of
    `benchmark/`) pass their own `policy` plus `behaviour_meta` describing it. Identical
    settings reuse the existing version and write nothing.
    """
    positive("--episodes", episodes)
    positive("number of parallel envs", num_envs)
    check_seed("--seed", seed)
    if not 0.0 <= epsilon <= 1.0:
        raise UsageError(f"--epsilon must be in [0, 1], got {epsilon}")
    info = env_info(map_name, backend)  # unknown map -> UsageError listing the maps
    if policy is None and behaviour not in BUILTIN_BEHAVIOURS:
        raise one_of("behaviour", behaviour, BUILTIN_BEHAVIOURS)
    tier = tier or behaviour
    behaviour_meta = behaviour_meta or {"name": behaviour}
    settings = {
        "backend": backend, "map": map_name, "tier": tier, "behaviour": behaviour_meta,
        "episodes": episodes, "epsilon": epsilon, "seed": seed, "num_envs": num_envs,
        "state_format": info.state_format,  # data from an older encoding is never reused
    }
    store.clean_staging()
    with store.claim(backend, map_name, tier):
        same = store.find_same(backend, map_name, tier, settings)
        if same is not None:
            return CollectResult(same, reused=True)
        bar = Progress(f"collect {backend}/{map_name}/{tier}", episodes, "episodes",
                       rate_unit="env-steps")
        wins = []
        try:
            # Ctrl-C / SIGTERM from here on set a flag, honoured between steps (and once the
            # simulator is built): a KeyboardInterrupt raised while XLA compiles or collects
            # garbage would be swallowed, and the whole dataset written.
            with interrupts.deferred() as interrupt:
                if show_progress:  # the simulator's start-up and first step take seconds
                    bar.update(0, "starting the simulator", force=True)
                env = make_env(map_name, num_envs, backend)
                pol = policy or make_builtin(behaviour, env, seed)
                if epsilon > 0:
                    # A recurrent policy must see the action actually taken: it explores itself.
                    pol = pol.with_epsilon(epsilon) if hasattr(pol, "with_epsilon") else \
                        EpsilonMix(pol, epsilon, seed)
                start = time.monotonic()
                rollout = Rollout(env, pol, seed)
                interrupt.check()

                def on_episode(ep: Episode) -> None:
                    wins.append(ep.won)
                    if show_progress:
                        bar.update(len(wins), f"win rate {sum(wins) / len(wins):.2f}",
                                   rate=rollout.steady_rate())

                eps = rollout.collect(episodes, on_episode, interrupt)
                interrupt.check()
        except KeyboardInterrupt:
            raise Interrupted(f"collection of {backend}/{map_name}/{tier} stopped after "
                              f"{len(wins)} of {episodes} episodes; nothing was written; the "
                              "same command starts it again") from None
        elapsed = time.monotonic() - start
        if show_progress:
            bar.close()
        rate = rollout.steady_rate()
        record = store.write(
            info, tier, settings, eps, behaviour_meta,
            extra={"collection": {"elapsed_s": elapsed, "env_steps_per_s": rate}},
        )
    return CollectResult(record, reused=False, elapsed_s=elapsed, env_steps_per_s=rate)


__all__ = [
    "BUILTIN_BEHAVIOURS", "CollectResult", "DatasetRecord",
    "card", "check_fits", "collect", "load", "resolve", "store", "verify",
]
