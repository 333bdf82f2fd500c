"""Sim2O's defining behaviour: the joint action is the composition of offline and online
proposals with the highest centralised value (checked by hand, and against every composition
under a real mixer), its proposals come from the frozen offline agent and the online one on real
3m battles, and its settings that make no sense are refused in one line."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from o2omarl.baselines.sim2o import Sim2o, compose
from o2omarl.cli import main
from o2omarl.envs import env_info, make_env
from o2omarl.qmix.acting import MIXER_PREFIX, Actor
from o2omarl.qmix.networks import QMixer, VDNMixer

TINY = dict(hidden=16, mixer_embed=8, hypernet_hidden=16, eval_interval=300, eval_episodes=4,
            batch_size=8, updates_per_episode=1.0, eps_anneal_steps=1000)
INF = math.inf


def test_by_hand_each_agent_takes_the_proposal_worth_more_under_an_additive_value():
    # VDN: Q_tot = sum of Q_i, so the best composition takes each agent's larger Q_i.
    q = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 0.5, 0.0]]])  # 1 env, 2 agents, 3 actions
    online, offline = np.array([[0, 0]]), np.array([[1, 1]])
    state = torch.zeros(1, 4)
    rng = np.random.default_rng(0)
    # agent 0: offline's action 1 (2.0 > 1.0); agent 1: online's action 0 (3.0 > 0.5)
    assert compose(q, online, offline, state, VDNMixer(), 4, INF, rng).tolist() == [[1, 0]]
    # width 1 is enough for an additive value: each agent's choice is independent
    assert compose(q, online, offline, state, VDNMixer(), 1, INF, rng).tolist() == [[1, 0]]


def test_the_pick_is_the_argmax_of_a_real_mixer_over_every_composition():
    torch.manual_seed(0)
    N, n, A, S = 16, 3, 5, 7
    mixer = QMixer(n, S, embed=8, hypernet_hidden=16)
    q = torch.randn(N, n, A)
    state = torch.randn(N, S)
    rng = np.random.default_rng(1)
    online, offline = rng.integers(0, A, (N, n)), rng.integers(0, A, (N, n))
    offline[:, 2] = online[:, 2]  # one agent whose proposals agree: it must not branch
    chosen = compose(q, online, offline, state, mixer, 2 ** n, INF, rng)
    for e in range(N):
        best, best_q = None, -INF
        for bits in itertools.product([0, 1], repeat=n):
            a = np.where(np.array(bits, bool), offline[e], online[e])
            q_i = q[e, torch.arange(n), torch.as_tensor(a)]
            value = mixer(q_i.view(1, 1, n), state[e].view(1, 1, S)).item()
            if value > best_q:
                best, best_q = a, value
        assert chosen[e].tolist() == best.tolist(), e
    # agreeing proposals everywhere: nothing to compose, the online action is taken
    assert compose(q, online, online, state, mixer, 4, INF, rng).tolist() == online.tolist()


def test_the_final_pick_is_a_softmax_over_the_beam_at_the_inverse_temperature():
    q = torch.tensor([[[0.0, 1.0], [0.0, 0.3]]])  # VDN: compositions worth 0, 1, 0.3, 1.3
    online, offline = np.array([[0, 0]]), np.array([[1, 1]])
    rng = np.random.default_rng(0)
    draws = [tuple(compose(q, online, offline, torch.zeros(1, 1), VDNMixer(), 4, 2.0,
                           rng)[0]) for _ in range(4000)]
    values = {(0, 0): 0.0, (1, 0): 1.0, (0, 1): 0.3, (1, 1): 1.3}
    p = np.exp(2.0 * np.array(list(values.values())))
    p /= p.sum()
    for (a, expected) in zip(values, p):
        assert abs(draws.count(a) / len(draws) - expected) < 0.03, (a, expected)
    # a beam of 1 keeps one composition: the draw has nothing else to pick
    assert {tuple(compose(q, online, offline, torch.zeros(1, 1), VDNMixer(), 1, 2.0,
                          rng)[0]) for _ in range(50)} == {(1, 1)}


def test_on_real_battles_the_offline_proposal_is_the_frozen_agents_and_the_pick_the_argmax(
        monkeypatch):
    """Sim2O's actor on real 3m steps: the proposals it composes are the frozen pretrained
    agent's greedy actions and the online agent's (followed by reference actors fed the actions
    taken), and each joint action is the best composition under the online mixer."""
    import o2omarl.baselines.sim2o as sim2o

    info = env_info("3m")
    method = Sim2o(info, Sim2o.Config(**TINY, beam_width=8, inv_temperature=INF), seed=0)
    method.load_pretrained(method.learner.state_dict())
    frozen = copy.deepcopy(method.learner.agent)
    with torch.no_grad():  # "online learning" moved the online agent away from the offline one
        for p in method.learner.agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    actor = method.make_actor(method.learner, 4, seed=0)
    actor.epsilon = 0.5
    calls = []
    real = sim2o.compose
    monkeypatch.setattr(sim2o, "compose", lambda *a: calls.append(a) or real(*a))
    ref_off = Actor(copy.deepcopy(frozen), 4, info.n_agents, info.n_actions)
    ref_on = Actor(copy.deepcopy(method.learner.agent), 4, info.n_agents, info.n_actions)
    env = make_env("3m", 4)
    obs, first = env.reset(0), np.ones(4, bool)
    offline_taken = 0
    for _ in range(30):
        actions = actor(obs, first)
        q, online, offline, state, mixer = calls[-1][:5]
        assert offline.tolist() == ref_off.greedy(obs, first).tolist()
        assert torch.equal(q, ref_on.q_values(obs, first))
        for e in range(4):
            best = max((np.where(np.array(bits, bool), offline[e], online[e])
                        for bits in itertools.product([0, 1], repeat=info.n_agents)),
                       key=lambda a: mixer(q[e, torch.arange(3), torch.as_tensor(a)].view(
                           1, 1, 3), state[e].view(1, 1, -1)).item())
            assert actions[e].tolist() == best.tolist()
        offline_taken += int(((actions == offline) & (offline != online)).sum())
        ref_off.prev = ref_on.prev = torch.as_tensor(actions)
        step = env.step(actions)
        obs, first = step.cont, step.done
    assert offline_taken > 0  # the composition did take offline proposals
    # the frozen agent is the pretrained one, untouched
    assert all(torch.equal(v, frozen.state_dict()[k])
               for k, v in actor.offline.agent.state_dict().items())


def _sim2o(pretrained: dict, data, rows: list, buffer=None):
    method = Sim2o(env_info("3m"), Sim2o.Config(**TINY, steps=900), seed=0)
    method.load_pretrained(pretrained)
    training = method.online(make_env("3m", 4), make_env("3m", 4), 900, rows.append,
                             data=data, buffer=buffer)
    return method, training


@pytest.mark.slow
def test_fine_tuning_mixes_offline_episodes_and_the_actor_gets_the_learners_mixer(
        heuristic_3m, monkeypatch):
    from o2omarl import datasets

    monkeypatch.setenv("O2OMARL_LEARNER", "inline")
    data = datasets.load(heuristic_3m)
    torch.manual_seed(0)
    pretrained = Sim2o(env_info("3m"), Sim2o.Config(**TINY), seed=0).learner.state_dict()
    rows = []
    method, training = _sim2o(pretrained, data, rows)
    assert training.n_off == TINY["batch_size"] // 2  # half of every batch is offline
    training.run()
    assert rows[-1]["updates"] > 0
    acting = training.actor.weights()
    mixer = {k[len(MIXER_PREFIX):]: v for k, v in acting.items() if k.startswith(MIXER_PREFIX)}
    assert mixer.keys() == pretrained["mixer"].keys()
    # the actor's mixer moved with learning; the frozen offline agent did not
    assert not all(torch.equal(v, pretrained["mixer"][k]) for k, v in mixer.items())
    assert all(torch.equal(v, pretrained["agent"][k])
               for k, v in method.offline_agent.state_dict().items())
    # Stopped half-way and continued from its state (the actor's mixer and the offline agent's
    # hidden states included): the rows of the run that never stopped.
    first = []
    stopped, t1 = _sim2o(pretrained, data, first)
    t1.run(should_stop=lambda: t1.env_step >= 450)
    saved = copy.deepcopy({"learner": stopped.learner.state_dict(), "training": t1.state_dict()})
    resumed, t2 = _sim2o(pretrained, data, first, buffer=t1.buffer)
    resumed.learner.load_state_dict(saved["learner"])
    t2.load_state_dict(saved["training"])
    t2.run()
    timing = ("wall_s", "env_steps_per_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in first] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows]


@pytest.mark.parametrize("setting, named", [
    ("beam_width=0", "beam_width=0 is not accepted; accepted: a number > 0"),
    ("inv_temperature=-1", "inv_temperature=-1.0 is not accepted; accepted: a number > 0"),
    ("offline_fraction=2", "offline_fraction=2.0 is not accepted; accepted: a number in [0, 1]"),
    ("init=random", "sim2o composes the pretrained policy's proposals: it needs init=offline"),
])
def test_sim2o_refuses_settings_that_make_no_sense(heuristic_3m, tmp_path, capsys, setting,
                                                   named):
    with pytest.raises(SystemExit) as exc:
        main(["run", "sim2o", "--map", "3m", "--dataset", heuristic_3m.dataset_id, "--steps",
              "100", "--set", setting, "--runs-dir", str(tmp_path / "runs")])
    assert exc.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
