"""The learner learns: QMIX from scratch on real SMAX 3m, with the shared default settings.

A small seeded budget (20k env steps, ~15 s) and only the budget-related settings shortened.
The full learning targets (3m, 2s3z, ...) are measured by benchmarks/learning_curves.py and
recorded in docs/results/learning.md, not asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from o2omarl.baselines import Qmix
from o2omarl.datasets.policies import RandomPolicy
from o2omarl.envs import env_info, make_env
from o2omarl.episodes import Rollout

STEPS = 20_000


@pytest.mark.slow
def test_qmix_from_scratch_beats_the_random_policy_clearly_on_3m(monkeypatch):
    monkeypatch.setenv("O2OMARL_LEARNER", "inline")  # the suite's processes share two cores
    info = env_info("3m")
    eval_env = make_env("3m", 32)
    random_return = np.mean([e.ret for e in Rollout(eval_env, RandomPolicy(0), 0).collect(64)])
    # Only the schedule is squeezed into the short budget; the learner is the shared default.
    cfg = Qmix.Config.build(eps_anneal_steps=STEPS // 2, eval_interval=STEPS // 2)
    rows = []
    Qmix(info, cfg, seed=0).online(make_env("3m", cfg.num_envs), eval_env, STEPS,
                                   rows.append).run()
    first, last = rows[0], rows[-1]
    assert last["env_step"] == STEPS
    assert first["test_return"] < 3.0  # the untrained policy is no better than chance
    assert last["test_return"] > max(3 * random_return, 8.0), (random_return, rows)
    # and its values stay on the return scale (no divergence)
    assert abs(last["q_overestimation"]) < 5.0
