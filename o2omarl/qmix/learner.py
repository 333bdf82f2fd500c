"""The one QMIX learner every method uses: double-Q TD targets, target networks, masking.

Methods plug in two kinds of small parts instead of copying this file:
- a `TargetRule` rewrites the TD target (OVM lifts it towards the offline value memory);
- `LossTerm`s add to the TD loss (the conservative term of offline pretraining and CQL-ft).
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import torch

from o2omarl.devices import limit_torch_threads
from o2omarl.envs.base import EnvInfo
from o2omarl.qmix.buffer import Batch
from o2omarl.qmix.networks import RNNAgent, agent_input_dim, make_mixer
from o2omarl.settings import setting

NEG_INF = -1e9  # masked Q-values: finite so that 0 * NEG_INF stays 0 in reductions


@dataclass
class LearnerConfig:
    """The one shared learner config of the behaviour QMIX and every compared method, chosen
    by measurement on 3m and 2s3z (docs/results/learning.md); no per-map tuning."""

    hidden: int = setting(64, "GRU hidden units of the shared agent")
    mixer: str = setting("qmix", "the mixer: qmix (monotone hypernetwork) or vdn (a sum)")
    mixer_embed: int = setting(32, "QMIX mixing embedding")
    hypernet_hidden: int = setting(64, "hidden units of the QMIX hypernetworks")
    # PyMARL2's: against 5e-4, 3m reached 0.9 greedy wins on 3/3 seeds within 300k env steps
    # (1/3 before) and 2s3z 0.8 sooner (docs/results/learning.md).
    lr: float = setting(1e-3, "Adam learning rate")
    gamma: float = setting(0.99, "discount")
    grad_clip: float = setting(10.0, "max gradient norm")
    target_update_interval: int = setting(100, "updates between target-network copies")
    double_q: bool = setting(True, "double-Q targets (the online net picks, the target rates)")
    # PyMARL2's 0.6. On 2s3z, one-step targets learned, then lost it (greedy wins 0.59 at 110k
    # steps, 0.00 at 290k).
    td_lambda: float = setting(0.6, "TD(lambda) over target-network values; 0: one-step")


@dataclass
class UpdateContext:
    """Where training stands, for parts with schedules (OVM's lambda_t)."""

    env_step: int = 0
    budget: int = 1


class TargetRule(Protocol):
    def __call__(self, learner: "Learner", batch: Batch, y_td: torch.Tensor,
                 ctx: UpdateContext) -> tuple[torch.Tensor, dict]: ...


class LossTerm(Protocol):
    def __call__(self, learner: "Learner", batch: Batch, q_all: torch.Tensor,
                 ctx: UpdateContext) -> tuple[torch.Tensor, dict]: ...


def masked_q(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    return q.masked_fill(~avail, NEG_INF)


def masked_logsumexp(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """logsumexp over the available actions (last dim).

    Unavailable actions enter as exp(-80) ~ 1e-35 after the max shift rather than as NEG_INF:
    float32 exp of huge negatives takes a slow path (60x slower, a few % of an update), and
    1e-35 is below the resolution of a sum that is at least 1."""
    m = masked_q(q, avail).amax(-1, keepdim=True).detach()  # the shift: no gradient needed
    return m.squeeze(-1) + torch.where(avail, q - m, -80.0).exp().sum(-1).log()


def mix_filled(mixer: torch.nn.Module, qs: torch.Tensor, state: torch.Tensor,
               filled: torch.Tensor) -> torch.Tensor:
    """mixer(qs (B, T, n) or (B, T, K, n), state (B, T, s)) -> (B, T) or (B, T, K), computed on
    filled steps only and 0 on padding (about a quarter of a replay batch, masked out of every
    loss anyway). K: several joint actions mixed under each step's state."""
    keep = filled.bool()
    q = mixer(qs[keep].unsqueeze(0), state[keep].unsqueeze(0)).squeeze(0)
    return qs.new_zeros(qs.shape[:-1]).index_put((keep,), q)


def mix_deviations_filled(mixer: torch.nn.Module, taken: torch.Tensor, q: torch.Tensor,
                          state: torch.Tensor, filled: torch.Tensor) -> tuple:
    """`mixer.deviations` on filled steps: taken (B, T, n), q (B, T, n, A), state (B, T, s) ->
    (Q_tot of each one-agent deviation (B, T, n, A), Q_tot of the data (B, T)); 0 on padding."""
    keep = filled.bool()
    dev, data = mixer.deviations(taken[keep], q[keep], state[keep])
    return (q.new_zeros(q.shape).index_put((keep,), dev),
            taken.new_zeros(taken.shape[:-1]).index_put((keep,), data))


@lru_cache(maxsize=None)
def _side_thread() -> ThreadPoolExecutor:
    """One thread per process for the target network's unroll (see `Learner.update`)."""
    return ThreadPoolExecutor(1, thread_name_prefix="o2omarl-target")


_OVERLAP = {"target": True}


def overlap_target_unroll(enabled: bool) -> None:
    """Whether updates in this process unroll the target network in a side thread: yes unless
    the process has no core to spare (a learner process, beside collection). Same numbers."""
    _OVERLAP["target"] = enabled


class Learner:
    def __init__(self, info: EnvInfo, cfg: LearnerConfig | None = None, device="cpu",
                 target_rule: TargetRule | None = None, extra_losses: tuple = ()):
        limit_torch_threads()
        self.info, self.cfg = info, cfg or LearnerConfig()
        self.device = torch.device(device)
        c = self.cfg
        self.agent = RNNAgent(agent_input_dim(info), info.n_actions, c.hidden).to(self.device)
        self.mixer = make_mixer(c.mixer, info, c.mixer_embed, c.hypernet_hidden).to(self.device)
        self.target_agent = copy.deepcopy(self.agent).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)
        self.params = list(self.agent.parameters()) + list(self.mixer.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=c.lr)
        self.target_rule = target_rule
        self.extra_losses = tuple(extra_losses)
        self.updates = 0

    # -- weights -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"agent": self.agent.state_dict(), "mixer": self.mixer.state_dict(),
                "target_agent": self.target_agent.state_dict(),
                "target_mixer": self.target_mixer.state_dict(),
                "optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, sd: dict, weights_only: bool = False) -> None:
        """Load networks; `weights_only` starts a fresh optimizer and syncs the targets."""
        self.agent.load_state_dict(sd["agent"])
        self.mixer.load_state_dict(sd["mixer"])
        if weights_only:
            self.sync_targets()
            return
        self.target_agent.load_state_dict(sd["target_agent"])
        self.target_mixer.load_state_dict(sd["target_mixer"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.updates = sd["updates"]

    def sync_targets(self) -> None:
        self.target_agent.load_state_dict(self.agent.state_dict())
        self.target_mixer.load_state_dict(self.mixer.state_dict())

    # -- the update ----------------------------------------------------------------------------
    def q_values(self, agent: RNNAgent, batch: Batch) -> torch.Tensor:
        """Unroll `agent` over the batch's trajectories: (B, T+1, n, A); 0 past each end."""
        return agent.unroll(batch.agent_inputs, batch.lengths)

    @torch.no_grad()
    def target_q_values(self, batch: Batch) -> torch.Tensor:
        return self.q_values(self.target_agent, batch)

    def q_tot_taken(self, batch: Batch, q_all: torch.Tensor) -> torch.Tensor:
        """Q_tot of the batch's own joint actions, (B, T); 0 on padding."""
        T = batch.reward.shape[1]
        q_taken = q_all[:, :T].gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
        return mix_filled(self.mixer, q_taken, batch.state[:, :T], batch.filled)

    @torch.no_grad()
    def value_check(self, batch: Batch) -> tuple[float, float]:
        """(mean Q_tot of the batch's actions, mean discounted return that followed them) over
        its filled steps. On the greedy policy's own battles this is calibration against the
        values' own policy, right whatever the data's behaviour was (`acting.evaluate`)."""
        q_tot = self.q_tot_taken(batch, self.q_values(self.agent, batch))
        mask = batch.filled
        n = mask.sum().clamp(min=1)
        earned = discounted_return_to_go(batch.reward, self.cfg.gamma)
        return float((q_tot * mask).sum() / n), float((earned * mask).sum() / n)

    def td_target(self, batch: Batch, q_all: torch.Tensor,
                  tq_all: torch.Tensor | None = None) -> torch.Tensor:
        """y_TD = r + gamma (1 - terminated) Q_tot^-(s', argmax_a Q(s', a)).

        Truncation bootstraps; termination does not. `tq_all`: the target network's
        `q_values` of the batch, if already computed."""
        with torch.no_grad():
            if tq_all is None:
                tq_all = self.target_q_values(batch)
            tq_all = tq_all[:, 1:]
            next_avail = batch.avail[:, 1:]
            if self.cfg.double_q:
                best = masked_q(q_all.detach()[:, 1:], next_avail).argmax(-1, keepdim=True)
                tq = tq_all.gather(-1, best).squeeze(-1)
            else:
                tq = masked_q(tq_all, next_avail).max(-1).values
            # Q_tot^-(s_{t+1}), (B, T): the bootstrap of step t, needed where t is filled
            boot = mix_filled(self.target_mixer, tq, batch.state[:, 1:], batch.filled)
            not_term = 1.0 - batch.terminated
            gamma, lam = self.cfg.gamma, self.cfg.td_lambda
            if lam == 0:
                return batch.reward + gamma * not_term * boot
            # TD(lambda): G_t = r_t + gamma (1-term_t) [(1-lam) boot_t + lam G_{t+1}], cut to the
            # one-step bootstrap at the last filled step (a truncation keeps its bootstrap).
            # Written G_t = a_t + c_t G_{t+1}, so the backward recursion is one op per step.
            cont = torch.cat([batch.filled[:, 1:], torch.zeros_like(boot[:, :1])], dim=1)
            g = gamma * not_term
            a = batch.reward + g * boot * (1 - lam * cont)
            c = g * lam * cont
            ys, nxt = [], torch.zeros_like(boot[:, 0])
            for a_t, c_t in zip(reversed(a.unbind(1)), reversed(c.unbind(1))):
                nxt = torch.addcmul(a_t, c_t, nxt)
                ys.append(nxt)
            return torch.stack(ys[::-1], dim=1)

    def update(self, batch: Batch, ctx: UpdateContext | None = None) -> dict:
        ctx = ctx or UpdateContext()
        # The target network's unroll needs nothing from the online one, so it runs in a
        # second thread meanwhile (torch ops release the GIL): on a free core it hides ~8 of
        # an update's ~70 ms; on a busy one it costs a context switch. Same numbers either way.
        batch.agent_inputs  # noqa: B018 - built once, here, before two threads read it
        target_q = (_side_thread().submit(self.target_q_values, batch)
                    if _OVERLAP["target"] else None)
        q_all = self.q_values(self.agent, batch)  # (B, T+1, n, A)
        q_tot = self.q_tot_taken(batch, q_all)
        y = self.td_target(batch, q_all, None if target_q is None else target_q.result())
        rule_metrics, extra_metrics = {}, {}
        if self.target_rule is not None:
            with torch.no_grad():
                y, rule_metrics = self.target_rule(self, batch, y, ctx)
        mask = batch.filled
        n = mask.sum().clamp(min=1)
        td = (q_tot - y.detach()) * mask
        loss = td_loss = (td**2).sum() / n
        for term in self.extra_losses:
            extra, m = term(self, batch, q_all, ctx)
            loss = loss + extra
            extra_metrics.update(m)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.cfg.target_update_interval == 0:
            self.sync_targets()
        with torch.no_grad():  # one host transfer for all (each .item() syncs a GPU)
            achieved = (discounted_return_to_go(batch.reward, self.cfg.gamma) * mask).sum() / n
            stats = torch.stack([td_loss, loss, grad_norm, (q_tot * mask).sum() / n,
                                 (y * mask).sum() / n, achieved]).tolist()
        td_value, *rest = stats
        out = {**rule_metrics, "td_loss": td_value, **extra_metrics,
               **dict(zip(("loss", "grad_norm", "q_taken_mean", "target_mean",
                           "return_to_go_mean"), rest))}
        # > 0: Q_tot above what the sampled episodes actually earned from each step on
        out["q_overestimation"] = out["q_taken_mean"] - out["return_to_go_mean"]
        return out


def discounted_return_to_go(reward: torch.Tensor, gamma: float) -> torch.Tensor:
    """sum_{k >= t} gamma^(k-t) r_k within each episode, (B, T) -> (B, T): what the data
    actually earned from each step on (padded steps have r = 0, so they add nothing). Cut at a
    time limit, so a lower bound for truncated episodes. One reversed cumsum of gamma^k r_k,
    divided by gamma^t; in float64, where gamma^-t keeps its precision for any sane gamma."""
    T = reward.shape[1]
    powers = gamma ** torch.arange(T, dtype=torch.float64, device=reward.device)
    g = (reward.double() * powers).flip(1).cumsum(1).flip(1) / powers
    return g.to(reward.dtype)
