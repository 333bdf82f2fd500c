"""A stopped pretraining resumes from its last evaluation with the numbers of a pretraining
never stopped: the learner, CFCQL's behaviour policy and the batch draws all go on where they
were; and through `bench run`, the cache's log holds each evaluation once."""

from __future__ import annotations

import json

import pytest
import torch

from o2omarl import datasets
from o2omarl.cli import main
from o2omarl.envs import env_info
from o2omarl.errors import Interrupted
from o2omarl.qmix import Learner, LearnerConfig, ReplayBuffer
from o2omarl.qmix.conservative import CounterfactualConservativeLoss
from o2omarl.qmix.pretrain import PretrainConfig, Resume, pretrain

CFG = PretrainConfig(steps=30, batch_size=4, eval_interval=10)


def _learner(info):
    torch.manual_seed(0)
    return Learner(info, LearnerConfig(hidden=16, mixer_embed=8, hypernet_hidden=8),
                   extra_losses=(CounterfactualConservativeLoss(5.0, temperature=0.5),))


def _rows(rows):
    return [{k: v for k, v in r.items() if k != "updates_per_s"} for r in rows]


@pytest.mark.slow
def test_a_resumed_pretraining_gives_the_numbers_of_one_never_stopped(heuristic_3m, tmp_path):
    info = env_info("3m")
    data = ReplayBuffer.from_arrays(datasets.load(heuristic_3m), info)
    whole, rows = _learner(info), []
    pretrain(whole, data, CFG, seed=3, log=rows.append)

    first, part = _learner(info), []
    keep = Resume(tmp_path / "state.pt")
    with pytest.raises(Interrupted, match="its evaluation at update 20 is kept: the same "
                                          "command resumes from there"):
        pretrain(first, data, CFG, seed=3, log=part.append, resume=keep,
                 should_stop=lambda: first.updates >= 25)
    assert torch.load(keep.path, weights_only=False)["update"] == 20
    second = _learner(info)  # a new process: fresh networks, the kept state loaded
    rest = []
    pretrain(second, data, CFG, seed=3, log=rest.append, resume=keep)
    assert _rows(part[:2] + rest) == _rows(rows)
    # a state a kill cut short is no state: pretraining starts again, to the same numbers
    (tmp_path / "cut.pt").write_bytes(b"PK\x03")
    again = []
    pretrain(_learner(info), data, CFG, seed=3, log=again.append,
             resume=Resume(tmp_path / "cut.pt"))
    assert _rows(again) == _rows(rows)
    a, b = whole.state_dict(), second.state_dict()
    for part_name in ("agent", "mixer", "target_agent", "target_mixer"):
        for k, v in a[part_name].items():
            assert torch.equal(v, b[part_name][k]), (part_name, k)
    (term_a,), (term_b,) = whole.extra_losses, second.extra_losses
    for k, v in term_a.behaviour.state_dict().items():
        assert torch.equal(v, term_b.behaviour.state_dict()[k]), k


@pytest.mark.slow
def test_bench_run_resumes_a_stopped_pretraining_and_logs_each_evaluation_once(
        heuristic_3m, tmp_path, capsys, monkeypatch):
    """The stop lands after the evaluation at update 20 (a stop flag polled between updates);
    the rerun says it resumed there, and the cache's log has updates 10..40 once each."""
    from o2omarl.benchmark import runner

    runs = tmp_path / "runs"
    argv = ["run", "ft-qmix", "--map", "3m", "--dataset", heuristic_3m.dataset_id, "--steps",
            "200", "--pretrain-steps", "40", "--seed", "0", "--runs-dir", str(runs),
            "--set", "pretrain_eval_interval=10", "--set", "eval_episodes=4", "--set",
            "num_envs=4", "--set", "hidden=8", "--set", "batch_size=2"]
    calls = {"n": 0}
    real = runner.StopFlag.__call__

    def stop_at_update_25(self):  # polled once before each update (and between phases)
        calls["n"] += 1
        return calls["n"] > 26 or real(self)

    monkeypatch.setattr(runner.StopFlag, "__call__", stop_at_update_25)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 130
    assert "its evaluation at update 20 is kept" in capsys.readouterr().err
    monkeypatch.setattr(runner.StopFlag, "__call__", real)
    main(argv)
    assert "resumed at update 20 of 40" in capsys.readouterr().out
    (log,) = (runs / ".pretrained").rglob("pretrain.jsonl")
    assert [json.loads(line)["update"] for line in log.read_text().splitlines()] == [
        10, 20, 30, 40]
    assert not list((runs / ".pretrained").rglob("pretrain_state.pt"))
