"""The shared value-decomposition networks (DESIGN.md section 5).

A GRU agent shared by all agents (input: obs, previous action one-hot, agent id one-hot) and a
monotone QMIX mixer conditioned on the global state; VDN (a plain sum) as the simple option.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from o2omarl.envs.base import EnvInfo


def agent_input_dim(info: EnvInfo) -> int:
    return info.obs_dim + info.n_actions + info.n_agents


def build_inputs(obs: torch.Tensor, prev_actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """(..., n_agents, obs_dim) obs + (..., n_agents) previous actions (-1 = none) -> inputs."""
    n_agents = obs.shape[-2]
    prev = F.one_hot(prev_actions.clamp(min=0), n_actions).to(obs.dtype)
    prev = prev * (prev_actions >= 0).unsqueeze(-1).to(obs.dtype)
    ids = torch.eye(n_agents, dtype=obs.dtype, device=obs.device).expand(*obs.shape[:-1], n_agents)
    return torch.cat([obs, prev, ids], dim=-1)


class RNNAgent(nn.Module):
    """fc -> GRU cell -> fc; one network for every agent (parameter sharing)."""

    def __init__(self, input_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.hidden = hidden
        self.fc1 = nn.Linear(input_dim, hidden)
        self.rnn = nn.GRUCell(hidden, hidden)
        self.fc2 = nn.Linear(hidden, n_actions)

    def forward(self, inputs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (B, input_dim), h (B, hidden) -> q (B, n_actions), h'."""
        h = self.rnn(F.relu(self.fc1(inputs)), h)
        return self.fc2(h), h

    def unroll(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """inputs (B, T, n_agents, input_dim) from a zero state -> q (B, T, n_agents, A).

        `lengths` (B,): how many leading steps of each trajectory matter. Later (padded) steps
        are never computed and get q = 0; on replay batches they are a quarter of all steps.
        Equal, up to float rounding, to calling `forward` step by step.
        """
        B, T, n, _ = inputs.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=inputs.device)
        # Rows (trajectory, agent) by decreasing length, so the rows still running at step t
        # are a prefix and the hidden state just shrinks. `idx` lists, step by step, where the
        # running rows sit in `inputs` flattened (the layout of a PackedSequence).
        order = torch.argsort(lengths, descending=True, stable=True)
        base = ((order * T).unsqueeze(1) * n + torch.arange(n, device=inputs.device)).flatten()
        steps = torch.arange(T, device=inputs.device)
        grid = base.unsqueeze(0) + (steps * n).unsqueeze(1)  # (T, B*n)
        running = (lengths[order].repeat_interleave(n).unsqueeze(0) > steps.unsqueeze(1))
        counts = [k for k in running.sum(1).tolist() if k > 0]
        idx = grid[running]
        x = F.relu(self.fc1(inputs.reshape(B * T * n, -1).index_select(0, idx)))
        h = inputs.new_zeros(B * n, self.hidden)
        hs = []
        # split, not x[a:b] per step: a slice's backward writes a zero gradient the size of all
        # of x, which made the backward O(T^2).
        for xt, k in zip(x.split(counts), counts):
            h = self.rnn(xt, h if k == len(h) else h[:k])
            hs.append(h)
        q = self.fc2(torch.cat(hs))
        out = q.new_zeros(B * T * n, q.shape[-1]).index_copy(0, idx, q)
        return out.view(B, T, n, -1)


class QMixer(nn.Module):
    """Q_tot = monotone mix of agent Qs, with weights from hypernetworks on the state."""

    def __init__(self, n_agents: int, state_dim: int, embed: int = 32, hypernet_hidden: int = 64):
        super().__init__()
        self.n_agents, self.embed = n_agents, embed
        self.hyper_w1 = nn.Sequential(nn.Linear(state_dim, hypernet_hidden), nn.ReLU(),
                                      nn.Linear(hypernet_hidden, embed * n_agents))
        self.hyper_b1 = nn.Linear(state_dim, embed)
        self.hyper_w2 = nn.Sequential(nn.Linear(state_dim, hypernet_hidden), nn.ReLU(),
                                      nn.Linear(hypernet_hidden, embed))
        self.hyper_b2 = nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """qs (B, T, n_agents), state (B, T, state_dim) -> Q_tot (B, T); or qs (B, T, K,
        n_agents) -> (B, T, K): K joint actions per step, mixed with that step's weights (the
        hypernetworks run once per state, not K times)."""
        B, T = state.shape[:2]
        n = qs.shape[-1]
        s = state.reshape(B * T, -1)
        w1 = self.hyper_w1(s).abs().view(B * T, n, self.embed)  # abs: monotone in every Q_i
        b1 = self.hyper_b1(s).view(B * T, 1, self.embed)
        hidden = F.elu(torch.bmm(qs.reshape(B * T, -1, n), w1) + b1)
        w2 = self.hyper_w2(s).abs().view(B * T, self.embed, 1)
        b2 = self.hyper_b2(s).view(B * T, 1, 1)
        return (torch.bmm(hidden, w2) + b2).view(qs.shape[:-1])

    def deviations(self, taken: torch.Tensor, q: torch.Tensor,
                   state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q_tot of every one-agent deviation: taken (M, n) agent Qs of the data's actions,
        q (M, n, A) every action's, state (M, s) -> (dev (M, n, A): agent i at action a, the
        others at the data's; Q_tot of the data (M,)).

        Only agent i's input changes, so the first layer's pre-activation is the data's plus
        (q_i(a) - q_i(data)) * w1[i], a rank-one update: the n x A joint actions need no
        (n x A, n) x (n, E) products (CFCQL's update cost 2.3x per-agent CQL's with them).
        Equal to `forward` on each joint action up to float rounding."""
        M, n = taken.shape
        w1 = self.hyper_w1(state).abs().view(M, n, self.embed)
        pre = torch.bmm(taken.unsqueeze(1), w1) + self.hyper_b1(state).unsqueeze(1)  # (M, 1, E)
        delta = (q - taken.unsqueeze(-1)).unsqueeze(-1)  # (M, n, A, 1)
        hidden = F.elu(torch.cat([pre, torch.addcmul(pre.unsqueeze(1), delta, w1.unsqueeze(2))
                                  .view(M, -1, self.embed)], dim=1))  # (M, 1 + n A, E)
        # a product and a sum, not bmm: a batch of matrix-vector products is 2.5x slower
        w2 = self.hyper_w2(state).abs().view(M, 1, self.embed)
        out = (hidden * w2).sum(-1) + self.hyper_b2(state)  # (M, 1 + n A)
        return out[:, 1:].view(q.shape), out[:, 0]


class VDNMixer(nn.Module):
    def forward(self, qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return qs.sum(dim=-1)

    def deviations(self, taken: torch.Tensor, q: torch.Tensor,
                   state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `QMixer.deviations`: the data's sum with agent i's term replaced."""
        total = taken.sum(-1)
        return total[:, None, None] + q - taken.unsqueeze(-1), total


def make_mixer(kind: str, info: EnvInfo, embed: int, hypernet_hidden: int) -> nn.Module:
    if kind == "qmix":
        return QMixer(info.n_agents, info.state_dim, embed, hypernet_hidden)
    if kind == "vdn":
        return VDNMixer()
    raise ValueError(f"unknown mixer {kind!r}; accepted: qmix, vdn")
