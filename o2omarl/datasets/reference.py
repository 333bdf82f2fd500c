"""Reference returns for normalised scores (Minari's `ref_min_score` and `ref_max_score`).

A normalised score of 0 is the mean return of the uniform-random policy (a uniform draw among
each agent's available actions, `bench collect --behaviour random`), 1 is the best possible return
(`MAX_RETURN`: every enemy killed and the battle won, on SMAC's reward scale). So
`minari.get_normalized_score(dataset, returns)` works on every dataset of a map listed here.

The random returns are a table, not a measurement per write: a write must not start a simulator
(imports, `bench datasets import`, `bench perf`). They were measured once per map with
`python -m o2omarl.datasets.reference` (RANDOM_EPISODES episodes, seed 0, 32 envs), which prints
the table below; `tests/test_exchange.py` measures 3m again so the table cannot drift from the
env unnoticed. A map or backend missing here (SMAC: no StarCraft II binary to measure with) gets
no reference scores, and its dataset's Minari description says so.
"""

from __future__ import annotations

import numpy as np

from o2omarl.envs.base import MAX_RETURN, EnvInfo
from o2omarl.protocol import COLLECT_ENVS

RANDOM_EPISODES = 500
RANDOM_SEED = 0

# (backend, map) -> (mean return, standard error) of the uniform-random policy.
RANDOM_RETURN = {
    ("smax", "3m"): (1.8093, 0.0423),
    ("smax", "2s3z"): (2.0548, 0.0341),
    ("smax", "25m"): (0.3451, 0.0072),
    ("smax", "3s5z"): (1.9306, 0.0267),
    ("smax", "8m"): (1.7405, 0.0253),
    ("smax", "5m_vs_6m"): (1.4040, 0.0244),
    ("smax", "10m_vs_11m"): (1.6662, 0.0193),
    ("smax", "27m_vs_30m"): (0.3079, 0.0065),
    ("smax", "3s5z_vs_3s6z"): (1.7335, 0.0233),
    ("smax", "3s_vs_5z"): (2.1985, 0.0379),
    ("smax", "6h_vs_8z"): (3.2274, 0.0340),
    ("smax", "smacv2_5_units"): (2.5199, 0.0711),
    ("smax", "smacv2_10_units"): (2.6917, 0.0770),
    ("smax", "smacv2_20_units"): (1.1647, 0.0582),
}


def reference_scores(info: EnvInfo) -> dict | None:
    """Minari's reference-score keys for a dataset on `info`'s map, or None if not measured."""
    measured = RANDOM_RETURN.get((info.backend, info.map_name))
    if measured is None:
        return None
    return {"ref_min_score": measured[0], "ref_max_score": MAX_RETURN,
            "num_episodes_average_score": RANDOM_EPISODES}


def measure_random_return(map_name: str, backend: str = "smax", episodes: int = RANDOM_EPISODES,
                          seed: int = RANDOM_SEED,
                          num_envs: int = COLLECT_ENVS) -> tuple[float, float]:
    """(mean, standard error) of the uniform-random policy's return over `episodes` episodes."""
    from o2omarl.datasets.policies import RandomPolicy
    from o2omarl.envs import make_env
    from o2omarl.episodes import Rollout

    env = make_env(map_name, num_envs, backend)
    returns = np.array([e.ret for e in Rollout(env, RandomPolicy(seed), seed).collect(episodes)])
    return float(returns.mean()), float(returns.std(ddof=1) / np.sqrt(len(returns)))


if __name__ == "__main__":
    import sys

    from o2omarl.envs import list_maps

    backend = sys.argv[1] if len(sys.argv) > 1 else "smax"
    for name in sys.argv[2:] or list_maps(backend):
        mean, sem = measure_random_return(name, backend)
        print(f'    ("{backend}", "{name}"): ({mean:.4f}, {sem:.4f}),', flush=True)
