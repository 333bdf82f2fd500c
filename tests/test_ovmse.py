"""OVMSE: the offline value memory target, its lambda schedule, the frozen memory, sequential
exploration's statistics, and a real `bench run ovmse` on 3m."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from o2omarl import datasets
from o2omarl.benchmark.runner import read_jsonl
from o2omarl.cli import main
from o2omarl.envs import env_info
from o2omarl.episodes import uniform_available
from o2omarl.ovmse import (
    Ovmse,
    OvmseConfig,
    memory_lambda,
    ovm_target,
    se_centralized,
    se_decentralized,
)
from o2omarl.qmix import Learner, ReplayBuffer, UpdateContext, epsilon_greedy

TINY = dict(hidden=16, mixer_embed=8, hypernet_hidden=16)


# -- the OVM target and its schedule --------------------------------------------------------------
Y_TD = torch.tensor([1.0, 5.0, -2.0, 3.0])
Q_OFF = torch.tensor([2.0, 4.0, -1.0, 3.0])


def test_ovm_target_interpolates_between_td_and_the_lifted_target():
    assert torch.equal(ovm_target(Y_TD, Q_OFF, 0.0), Y_TD)
    assert torch.equal(ovm_target(Y_TD, Q_OFF, 1.0), torch.tensor([2.0, 5.0, -1.0, 3.0]))
    # (1 - 0.25) y_td + 0.25 max(y_td, q_off), entry by entry
    expected = torch.tensor([0.75 * 1 + 0.25 * 2, 5.0, 0.75 * -2 + 0.25 * -1, 3.0])
    assert torch.allclose(ovm_target(Y_TD, Q_OFF, 0.25), expected)
    assert torch.equal(Y_TD, torch.tensor([1.0, 5.0, -2.0, 3.0]))  # inputs untouched


@pytest.mark.parametrize("kind", ["linear", "exponential", "constant"])
def test_memory_lambda_endpoints(kind):
    assert memory_lambda(0, 0.8, 1000, kind) == pytest.approx(0.8)
    for step in (1000, 1001, 50_000):
        assert memory_lambda(step, 0.8, 1000, kind) == 0.0
    assert memory_lambda(999, 0.8, 1000, kind) > 0.0


def test_memory_lambda_shapes():
    H, lam0 = 1000, 0.8
    assert memory_lambda(500, lam0, H, "linear") == pytest.approx(lam0 / 2)
    assert memory_lambda(250, lam0, H, "linear") == pytest.approx(0.75 * lam0)
    steps = np.arange(0, H)
    lin = np.array([memory_lambda(s, lam0, H, "linear") for s in steps])
    exp = np.array([memory_lambda(s, lam0, H, "exponential") for s in steps])
    const = np.array([memory_lambda(s, lam0, H, "constant") for s in steps])
    assert (np.diff(lin) < 0).all() and (np.diff(exp) < 0).all()
    # exp(-5 f) < 1 - f for f in (0, ~0.993): the exponential forgets faster in the interior.
    interior = (steps > 0) & (steps <= 0.99 * H)
    assert (exp[interior] < lin[interior]).all()
    assert exp[H // 5] == pytest.approx(lam0 * math.exp(-1.0))
    assert (const == lam0).all()
    with pytest.raises(ValueError, match="accepted"):
        memory_lambda(10, lam0, H, "cosine")


# -- the frozen memory on real data ---------------------------------------------------------------
@pytest.fixture(scope="module")
def info3m():
    return env_info("3m")


@pytest.fixture(scope="module")
def store3m(heuristic_3m, info3m):
    return ReplayBuffer.from_arrays(datasets.load(heuristic_3m, info3m), info3m)


@pytest.fixture
def pretrained(info3m, store3m):
    """A learner trained a little offline, standing in for pretrained weights."""
    torch.manual_seed(1)
    learner = Learner(info3m, OvmseConfig(**TINY))
    rng = np.random.default_rng(1)
    for _ in range(20):
        learner.update(store3m.sample(16, rng))
    return learner


def _params(*modules):
    return [(f"{i}.{name}", p) for i, m in enumerate(modules) for name, p in m.named_parameters()]


@pytest.mark.slow
def test_frozen_memory_stays_bit_identical_and_gets_no_gradient(info3m, store3m, pretrained):
    method = Ovmse(info3m, OvmseConfig(**TINY), seed=0)
    method.load_pretrained(pretrained.state_dict())
    mem, learner = method.memory, method.learner
    # The memory holds the pretrained networks, as copies (not the online ones).
    for (_, p), (_, q) in zip(_params(mem.agent, mem.mixer),
                              _params(pretrained.agent, pretrained.mixer)):
        assert torch.equal(p, q)
    online_ids = {id(p) for p in learner.params}
    optimized = {id(p) for g in learner.optimizer.param_groups for p in g["params"]}
    mem_params = _params(mem.agent, mem.mixer)
    assert not {id(p) for _, p in mem_params} & (online_ids | optimized)
    frozen = {name: p.detach().clone() for name, p in mem_params}
    online_before = [p.detach().clone() for p in learner.params]

    rng = np.random.default_rng(0)
    ctx = UpdateContext(env_step=0, budget=100_000)  # lambda = 1: the memory is used
    for _ in range(110):  # crosses a target-network sync (every 100 updates)
        m = learner.update(store3m.sample(16, rng), ctx)
        assert mem.lam(0, 100_000) == 1.0 and "q_off_mean" in m  # the memory was read
    assert learner.updates == 110
    for name, p in _params(mem.agent, mem.mixer):
        assert torch.equal(p, frozen[name]), name
        assert p.grad is None and not p.requires_grad, name
    assert any(not torch.equal(p, q) for p, q in zip(learner.params, online_before))


def test_ovm_target_rule_lifts_to_the_offline_value(info3m, store3m, pretrained):
    method = Ovmse(info3m, OvmseConfig(**TINY), seed=0)
    method.load_pretrained(pretrained.state_dict())
    learner, mem = method.learner, method.memory
    rng = np.random.default_rng(0)
    for _ in range(30):  # move the online networks away from the memory
        learner.update(store3m.sample(16, rng), UpdateContext(0, 100_000))

    batch = store3m.batch(np.arange(32))
    T = batch.reward.shape[1]
    mask = batch.filled.bool()
    with torch.no_grad():
        q_all = learner.q_values(learner.agent, batch)
        y_td = learner.td_target(batch, q_all)
        # Q_tot^off from the pretrained learner itself (not the online one).
        q = pretrained.q_values(pretrained.agent, batch)[:, :T]
        q_taken = q.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        q_off = pretrained.mixer(q_taken, batch.state[:, :T])
        q_on = learner.mixer(q_all[:, :T].gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1),
                             batch.state[:, :T])
    assert not torch.allclose(q_off[mask], q_on[mask])

    y, m = mem(learner, batch, y_td, UpdateContext(env_step=0, budget=100_000))  # lambda 1
    assert mem.lam(0, 100_000) == 1.0
    assert (y[mask] >= q_off[mask] - 1e-5).all() and (y[mask] >= y_td[mask]).all()
    assert torch.allclose(y[mask], torch.maximum(y_td, q_off)[mask], atol=1e-5)
    measured = ((q_off > y_td) & mask).sum().item() / mask.sum().item()
    assert 0.0 < measured < 1.0  # some targets lifted, some not: the comparison means something
    assert 0.0 <= m["ovm_lifted_fraction"] <= 1.0
    assert m["ovm_lifted_fraction"] == pytest.approx(measured, abs=1e-6)

    # Half-way through the horizon (20% of 100k): lambda 0.5.
    y_half, m_half = mem(learner, batch, y_td, UpdateContext(env_step=10_000, budget=100_000))
    assert mem.lam(10_000, 100_000) == pytest.approx(0.5)
    assert torch.allclose(y_half[mask], (0.5 * y_td + 0.5 * torch.maximum(y_td, q_off))[mask],
                          atol=1e-5)
    # At the horizon the memory is gone: the plain TD target.
    y_end, m_end = mem(learner, batch, y_td, UpdateContext(env_step=20_000, budget=100_000))
    assert mem.lam(20_000, 100_000) == 0.0 and torch.equal(y_end, y_td)
    assert "q_off_mean" not in m_end  # not even read
    assert "ovm_lambda" not in m_half  # logged once, by the method's schedule (test below)


# -- sequential exploration -----------------------------------------------------------------------
N, N_AGENTS, N_ACTIONS, EPS = 20_000, 5, 7, 0.6


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    avail = rng.random((N, N_AGENTS, N_ACTIONS)) < 0.5
    avail[np.arange(N)[:, None], np.arange(N_AGENTS), rng.integers(0, N_ACTIONS, (N, N_AGENTS))] \
        = True
    greedy = uniform_available(avail, rng)
    return greedy, avail


def _common_checks(rule, greedy, avail):
    actions, explore = rule(greedy, avail, EPS, np.random.default_rng(1))
    assert actions.shape == explore.shape == greedy.shape and explore.dtype == bool
    # Exploratory actions are available ones; the others are exactly the greedy actions.
    assert np.take_along_axis(avail, actions[..., None], -1).all()
    np.testing.assert_array_equal(actions[~explore], greedy[~explore])
    # Exploring is a uniform draw over the available actions: it leaves the greedy action with
    # probability 1 - 1/k (k available actions).
    k = avail.sum(-1)[explore]
    changed = (actions != greedy)[explore].mean()
    assert changed == pytest.approx((1 - 1 / k).mean(), abs=0.03)
    return explore.sum(-1)


def test_se_decentralized_explorers_are_binomial(scene):
    count = _common_checks(se_decentralized, *scene)
    p = EPS / N_AGENTS
    assert count.mean() == pytest.approx(EPS, abs=0.03)  # n * eps/n
    assert count.var() == pytest.approx(EPS * (1 - p), abs=0.05)  # n p (1 - p)
    assert (count == 0).mean() == pytest.approx((1 - p) ** N_AGENTS, abs=0.02)
    assert (count > 1).any()  # independent draws: sometimes two at once


def test_se_centralized_explores_with_exactly_one_agent(scene):
    greedy, avail = scene
    count = _common_checks(se_centralized, greedy, avail)
    assert (count > 1).sum() == 0
    assert (count == 1).mean() == pytest.approx(EPS, abs=0.02)
    _, explore = se_centralized(greedy, avail, EPS, np.random.default_rng(2))
    per_agent = explore.mean(0)  # the explorer is chosen uniformly
    assert per_agent == pytest.approx(np.full(N_AGENTS, EPS / N_AGENTS), abs=0.015)


def test_epsilon_greedy_explores_with_eps_n_agents(scene):
    count = _common_checks(epsilon_greedy, *scene)
    assert count.mean() == pytest.approx(EPS * N_AGENTS, abs=0.05)
    assert count.var() == pytest.approx(N_AGENTS * EPS * (1 - EPS), abs=0.08)


# -- a real run -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_run_ovmse_anneals_lambda_to_zero_at_the_horizon(heuristic_3m, tmp_path, capsys):
    runs = tmp_path / "runs"
    steps, interval = 12_000, 2000  # the first interval fills a batch: updates before it
    main(["run", "ovmse", "--map", "3m", "--dataset", heuristic_3m.dataset_id,
          "--steps", str(steps), "--pretrain-steps", "400", "--seed", "0",
          "--runs-dir", str(runs), "--set", f"eval_interval={interval}",
          "--set", "eval_episodes=8", "--set", "hidden=32"])
    out = capsys.readouterr().out
    run_dir = runs / "3m" / "heuristic-v0" / "ovmse" / "seed_0"
    assert str(run_dir) in out
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["env_step"] for r in rows] == list(range(0, steps + 1, interval))
    horizon = 0.2 * steps  # memory_horizon 0.2 of the budget
    lam = [r["ovm_lambda"] for r in rows]
    assert lam[0] == 1.0
    assert all(a >= b for a, b in zip(lam, lam[1:]))
    for r in rows:
        expected = max(0.0, 1.0 - r["env_step"] / horizon)  # linear schedule
        assert r["ovm_lambda"] == pytest.approx(expected), r["env_step"]
        if r["env_step"] >= horizon:
            assert r["ovm_lambda"] == 0.0
    assert any(0 < v < 1 for v in lam)
    # Updates wholly after the horizon lift nothing; before it some targets were lifted.
    for r in rows[1:]:
        assert 0.0 <= r["ovm_lifted_fraction"] <= 1.0
        if r["env_step"] - interval >= horizon:
            assert r["ovm_lifted_fraction"] == 0.0
    assert rows[1]["ovm_lifted_fraction"] > 0.0
    # Epsilon: SE's O2O schedule starts at 0.2 and decreases (linearly over 50k steps).
    eps = [r["epsilon"] for r in rows]
    assert eps[0] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(eps, eps[1:]))
    assert eps[-1] == pytest.approx(0.2 - 0.15 * steps / 50_000)
    # Sequential exploration: ~eps agents explore per env (not eps * n_agents = 3 eps).
    for r in rows[1:]:
        assert r["exploring_agents"] == pytest.approx(r["epsilon"], abs=0.06), r
