"""The conservative loss terms of offline pretraining (`offline_loss` in the config).

- `cql`: CQL on each agent's utility, independently (the suite's first offline loss).
- `cfcql`: counterfactual CQL on Q_tot (Shao et al., NeurIPS 2023), OVMSE's own pretraining:
  one agent at a time deviates from the data while the others keep their data actions, which
  is also how sequential exploration deviates online. Per-agent CQL instead penalises every
  agent's out-of-data actions as if the others' did not matter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from o2omarl.qmix.buffer import Batch
from o2omarl.qmix.learner import Learner, masked_logsumexp, masked_q, mix_deviations_filled
from o2omarl.qmix.networks import RNNAgent, agent_input_dim

OFFLINE_LOSSES = ("cql", "cfcql")


class ConservativeLoss:
    """alpha * sum_i E[logsumexp_{a avail} Q_i(tau_i, a) - Q_i(tau_i, a_i^data)] (CQL for QMIX).

    Pushes down every available action's value relative to the action in the data, so the
    greedy policy stays on the data's support. Averaged over filled steps, summed over agents.
    """

    def __init__(self, alpha: float):
        self.alpha = alpha

    def __call__(self, learner: Learner, batch: Batch, q_all: torch.Tensor, ctx) -> tuple:
        T = batch.reward.shape[1]
        q = q_all[:, :T]
        lse = masked_logsumexp(q, batch.avail[:, :T])
        data_q = q.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        mask = batch.filled
        gap = ((lse - data_q).sum(-1) * mask).sum() / mask.sum().clamp(min=1)
        return self.alpha * gap, {"cql_gap": gap.item()}


class CounterfactualConservativeLoss:
    """CFCQL: alpha * E[sum_i lambda_i logsumexp_{a'} Q_tot(a', a_-i^data) - Q_tot(a^data)].

    Agent i's term mixes every available action a' of agent i with the others' data actions,
    so the penalty grows with one deviation at a time, not with the n-agent joint space.
    lambda_i = softmax over agents of temperature * KL(mu_i || beta_i), where mu_i is the
    softmax of agent i's counterfactual Q_tot and beta_i a behaviour-cloning policy trained on
    the same batches: agents whose values stray furthest from the data take more of the
    penalty (the paper's moderate weighting). Temperature 0: equal weights 1/n, no cloning.
    """

    def __init__(self, alpha: float, temperature: float):
        self.alpha, self.temperature = alpha, temperature
        self.behaviour: RNNAgent | None = None  # built on first use, on the learner's device
        self.optimizer: torch.optim.Optimizer | None = None

    def _build(self, learner: Learner) -> None:
        if self.behaviour is None:
            self.behaviour = RNNAgent(agent_input_dim(learner.info), learner.info.n_actions,
                                      learner.cfg.hidden).to(learner.device)
            self.optimizer = torch.optim.Adam(self.behaviour.parameters(), lr=learner.cfg.lr)

    def state_dict(self) -> dict:
        """The behaviour policy and its optimizer (None before the first update): what a
        resumed pretraining needs to go on as if never stopped."""
        if self.behaviour is None:
            return {"behaviour": None}
        return {"behaviour": self.behaviour.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, sd: dict, learner: Learner) -> None:
        if sd["behaviour"] is not None:
            self._build(learner)
            self.behaviour.load_state_dict(sd["behaviour"])
            self.optimizer.load_state_dict(sd["optimizer"])

    def __call__(self, learner: Learner, batch: Batch, q_all: torch.Tensor, ctx) -> tuple:
        T = batch.reward.shape[1]
        q, avail, state = q_all[:, :T], batch.avail[:, :T], batch.state[:, :T]
        taken = q.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)  # (B, T, n)
        # q_dev[b, t, i, a]: Q_tot with agent i at action a, the others at the data's actions
        q_dev, q_data = mix_deviations_filled(learner.mixer, taken, q, state, batch.filled)
        lse = masked_logsumexp(q_dev, avail)  # (B, T, n)
        weights = self._weights(learner, batch, q_dev.detach(), avail)
        mask = batch.filled
        gap = ((((weights * lse).sum(-1) - q_data) * mask).sum() / mask.sum().clamp(min=1))
        metrics = {"cfcql_gap": gap.item(),
                   "cfcql_weight_max": ((weights.amax(-1) * mask).sum() / mask.sum()).item()}
        return self.alpha * gap, metrics

    def _weights(self, learner: Learner, batch: Batch, q_dev: torch.Tensor,
                 avail: torch.Tensor) -> torch.Tensor:
        """lambda (B, T, n), no gradient; fits the behaviour policy one step on this batch."""
        if self.temperature == 0:
            return q_dev.new_full(q_dev.shape[:3], 1.0 / q_dev.shape[2])
        return agent_weights(q_dev, self._fit_behaviour(learner, batch, avail), avail,
                             self.temperature)

    def _fit_behaviour(self, learner: Learner, batch: Batch, avail: torch.Tensor) -> torch.Tensor:
        """log beta (B, T, n, A) on the batch, then one cross-entropy step on its actions."""
        self._build(learner)
        T = batch.reward.shape[1]
        logits = self.behaviour.unroll(batch.agent_inputs, batch.lengths)[:, :T]
        log_beta = F.log_softmax(masked_q(logits, avail), dim=-1)
        nll = -log_beta.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1).mean(-1)
        loss = (nll * batch.filled).sum() / batch.filled.sum().clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return log_beta.detach()


def agent_weights(q_dev: torch.Tensor, log_beta: torch.Tensor, avail: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """softmax over agents of temperature * KL(mu_i || beta_i), mu_i = softmax_a q_dev[..., i, a]
    over the available actions: (B, T, n, A) x 2 -> (B, T, n)."""
    log_mu = F.log_softmax(masked_q(q_dev, avail), dim=-1)
    kl = torch.where(avail, log_mu.exp() * (log_mu - log_beta), 0.0).sum(-1)
    return F.softmax(temperature * kl, dim=-1)


def offline_loss(kind: str, cql_alpha: float, cfcql_alpha: float, cfcql_temperature: float):
    """The conservative term of offline pretraining named by the config's `offline_loss`."""
    if kind == "cql":
        return ConservativeLoss(cql_alpha)
    if kind == "cfcql":
        return CounterfactualConservativeLoss(cfcql_alpha, cfcql_temperature)
    raise ValueError(f"unknown offline_loss {kind!r}; accepted: {', '.join(OFFLINE_LOSSES)}")
