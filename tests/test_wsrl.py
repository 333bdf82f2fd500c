"""WSRL's defining behaviour on real 3m battles: no offline episode is ever sampled online, and
the first `warmup_steps` env steps are played by the pretrained policy, unchanged, before the
first update; its settings that make no sense are refused in one line before any job."""

from __future__ import annotations

import copy

import pytest
import torch

from o2omarl.baselines import FtQmix, Wsrl
from o2omarl.cli import main
from o2omarl.envs import env_info, make_env

TINY = dict(hidden=16, mixer_embed=8, hypernet_hidden=16, eval_interval=300, eval_episodes=4,
            batch_size=8, updates_per_episode=1.0, eps_anneal_steps=1000)
WARMUP, BUDGET = 600, 1200


def _online(method_cls, data, monkeypatch, **cfg):
    monkeypatch.setenv("O2OMARL_LEARNER", "inline")
    info = env_info("3m")
    method = method_cls(info, method_cls.Config(**TINY, steps=BUDGET, **cfg), seed=0)
    method.load_pretrained(method.learner.state_dict())
    pretrained = copy.deepcopy(method.learner.agent.state_dict())
    rows = []
    training = method.online(make_env("3m", 4), make_env("3m", 4), BUDGET, rows.append,
                             data=data)
    return method, training, rows, pretrained


@pytest.mark.slow
def test_wsrl_warms_up_with_the_pretrained_policy_and_never_replays_offline_data(
        heuristic_3m, monkeypatch):
    from o2omarl import datasets

    data = datasets.load(heuristic_3m)
    method, training, rows, pretrained = _online(Wsrl, data, monkeypatch, warmup_steps=WARMUP)
    assert training.offline is None and training.n_off == 0  # the dataset is never sampled
    training.run(should_stop=lambda: training.env_step >= WARMUP)
    assert training.buffer.size >= TINY["batch_size"]  # a full batch was there to learn from
    assert method.learner.updates == 0
    for k, v in training.actor.agent.state_dict().items():  # the warm-up's policy: unchanged
        assert torch.equal(v, pretrained[k]), k
    training.run()
    assert all(r["updates"] == 0 for r in rows if r["env_step"] < WARMUP)
    assert rows[-1]["updates"] > 0 and method.learner.updates > 0
    # The same run without the warm-up (ft-qmix on the same schedule) updates from the start.
    plain, t2, rows2, _ = _online(FtQmix, data, monkeypatch, eps_start=0.2)
    t2.run(should_stop=lambda: t2.env_step >= WARMUP)
    assert plain.learner.updates > 0


@pytest.mark.parametrize("setting, named", [
    ("warmup_steps=-1", "warmup_steps=-1 is not accepted; accepted: a number >= 0"),
    ("warmup_steps=100", "warmup_steps=100 is not below the online budget steps=100"),
    ("init=random", "wsrl warms up with the pretrained policy: it needs init=offline"),
])
def test_wsrl_refuses_settings_that_make_no_sense(heuristic_3m, tmp_path, capsys, setting,
                                                  named):
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_:
        main(["run", "wsrl", "--map", "3m", "--dataset", heuristic_3m.dataset_id, "--steps",
              "100", "--runs-dir", str(runs), "--set", setting])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and named in err and len(err.strip().splitlines()) == 1
    assert not runs.exists()
