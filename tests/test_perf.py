"""`bench perf` on a tiny budget, and the fast paths of the learner against their plain versions.

`bench perf` is a benchmark: this checks that every figure is there and is a positive finite
number, never how fast anything is (DESIGN.md section 8).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from o2omarl.benchmark.perf import FIGURES, RATIOS
from o2omarl.qmix.learner import NEG_INF, masked_logsumexp, masked_q, mix_filled
from o2omarl.qmix.networks import QMixer, RNNAgent


@pytest.mark.slow
def test_bench_perf_json_gives_every_figure(tmp_path):
    exe = Path(sys.executable).parent / "bench"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "o2omarl.cli"]
    # --device cuda: the learner falls back to the CPU with a message where there is no GPU.
    cmd += ["perf", "--map", "3m", "--num-envs", "8", "--steps", "800", "--online-steps", "600",
            "--updates", "3", "--repeats", "1", "--device", "cuda", "--json"]
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "untouched")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # one JSON object and nothing else on stdout
    for key in [*FIGURES, *RATIOS.values()]:
        assert isinstance(out[key], float) and math.isfinite(out[key]) and out[key] > 0, key
    assert out["map"] == "3m" and out["num_envs"] == 8
    assert out["online_updates"] in ("inline", "process")
    if not torch.cuda.is_available():
        assert "no CUDA device is available; running the learner on the CPU" in res.stderr
        assert out["device"] == "cpu"
    # The timed weights are untrained: no warning about their values (calibration, scale).
    assert "warning:" not in res.stderr, res.stderr
    # The dataset figures used a temporary Minari root, not the user's.
    assert not (tmp_path / "untouched").exists()


def test_bench_perf_rejects_bad_input():
    from o2omarl.cli import main

    for argv, named in ((["perf", "--map", "4x4"], "4x4"), (["perf", "--steps", "0"], "--steps")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, named


def _step_by_step(agent: RNNAgent, inputs: torch.Tensor) -> torch.Tensor:
    """The plain unroll: `forward` (what the Actor calls) once per step from a zero state."""
    B, T, n, _ = inputs.shape
    h = inputs.new_zeros(B * n, agent.hidden)
    qs = []
    for t in range(T):
        q, h = agent(inputs[:, t].reshape(B * n, -1), h)
        qs.append(q.view(B, n, -1))
    return torch.stack(qs, dim=1)


def test_sequence_unroll_equals_the_per_step_forward_values_and_gradients():
    torch.manual_seed(0)
    agent = RNNAgent(input_dim=11, n_actions=5, hidden=16)
    B, T, n = 4, 9, 3
    inputs = torch.randn(B, T, n, 11)
    lengths = torch.tensor([9, 3, 6, 1])  # trajectories end at different steps
    valid = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)

    q = agent.unroll(inputs, lengths)
    ref = _step_by_step(agent, inputs)
    assert torch.allclose(q[valid], ref[valid], atol=1e-5)
    assert (q[~valid] == 0).all()  # padded steps are not computed
    assert torch.allclose(agent.unroll(inputs), ref, atol=1e-5)  # no lengths: every step

    # Gradients through the packed unroll equal those of the plain one.
    w = torch.randn_like(ref)
    grads = [torch.autograd.grad((out[valid] * w[valid]).sum(), list(agent.parameters()))
             for out in (agent.unroll(inputs, lengths), _step_by_step(agent, inputs))]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)
    # Same parameter names as the GRUCell agent has always had: old checkpoints load.
    assert set(agent.state_dict()) == {"fc1.weight", "fc1.bias", "rnn.weight_ih",
                                       "rnn.weight_hh", "rnn.bias_ih", "rnn.bias_hh",
                                       "fc2.weight", "fc2.bias"}


def test_masked_logsumexp_equals_logsumexp_over_available_actions():
    torch.manual_seed(0)
    q = torch.randn(6, 4, 7, requires_grad=True)
    avail = torch.rand(6, 4, 7) < 0.6
    avail[..., 0] = True
    q_big = q.detach() * 50  # values far apart: the shift must be right
    for x in (q, q_big.requires_grad_()):
        fast = masked_logsumexp(x, avail)
        plain = torch.logsumexp(x.masked_fill(~avail, NEG_INF), -1)
        assert torch.allclose(fast, plain, atol=1e-5)
        g_fast, = torch.autograd.grad(fast.sum(), x)
        g_plain, = torch.autograd.grad(plain.sum(), x)
        assert torch.allclose(g_fast, g_plain, atol=1e-6)
        assert (g_fast[~avail] == 0).all()
    assert masked_q(q, avail).shape == q.shape


def test_mixing_filled_steps_only_equals_mixing_every_step():
    torch.manual_seed(0)
    mixer = QMixer(n_agents=3, state_dim=6, embed=8, hypernet_hidden=8)
    qs, state = torch.randn(4, 5, 3), torch.randn(4, 5, 6)
    filled = (torch.arange(5).unsqueeze(0) < torch.tensor([[5], [2], [4], [1]])).float()
    fast = mix_filled(mixer, qs, state, filled)
    plain = mixer(qs, state) * filled
    assert torch.allclose(fast, plain, atol=1e-6)
