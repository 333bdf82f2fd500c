"""Sim2O (arXiv 2606.21085, 2026) on the shared QMIX machinery: joint actions composed, agent by
agent, from the proposals of the frozen offline policy and the online one, chosen by the
centralised value.

At every step each agent has two proposals: the greedy action of the frozen pretrained agent
network (pi_beta) and the epsilon-greedy action of the online one (pi_theta, the O2O schedule
0.2 -> 0.05). A beam search over the agents, in index order, decides which agents take their
offline proposal: a partial composition is scored by the online Q_tot(s, a) with the agents not
yet decided on their online proposal, the best `beam_width` are kept, and the final joint
action is drawn from a softmax over the last beam's Q_tot at `inv_temperature` (inf: the
arg-max). Learning is plain QMIX TD on batches that mix offline episodes (`offline_fraction`);
evaluation is the online agents' greedy policy, as for every method (the composition needs the
global state, which decentralised execution does not have).

What the paper's readable text gives (docs/research/wsrl_sim2o.md): per-agent alternatives
from a frozen offline and a learnable online policy, a beam search, a centralised value, a
temperature (ablated at 1, 5, 10) and an offline-data ratio (ablated at 0.25, 0.5, 0.75). Not
published there, so chosen here and configurable: the scorer (the online mixer, a copy one
submission old like the actor's agent), greedy offline and epsilon-greedy online proposals,
the beam width (4), the temperature as PEX's inverse temperature on Q (10) and the ratio (0.5,
the middle of the ablated range and PEX's split). The paper pretrains OMIGA on continuous
MaMuJoCo; here the pretraining is the suite's (the same cached weights as every method's).

Why the online proposal is sampled: QMIX's mixer is monotone in every Q_i and the online greedy
action maximises Q_i^theta, so under the online Q_tot a greedy online proposal is never beaten
by an offline one. The offline policy matters where an agent explores (its random action
competes with the offline action) and through the softmax: Sim2O here is exploration guided by
the offline policy, judged by the centralised value.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from o2omarl.errors import BenchError, UsageError
from o2omarl.qmix import Parts, QmixConfig, QmixO2O
from o2omarl.qmix.acting import MIXER_PREFIX, Actor, epsilon_greedy
from o2omarl.qmix.algorithm import POSITIVE, PROBABILITY
from o2omarl.settings import setting


@torch.no_grad()
def compose(q: torch.Tensor, online: np.ndarray, offline: np.ndarray, state: torch.Tensor,
            mixer: torch.nn.Module, beam_width: int, inv_temperature: float,
            rng: np.random.Generator) -> np.ndarray:
    """The joint action of each env from two proposals per agent, by beam search under Q_tot.

    q: (N, n, A) the online agents' Q_i; online, offline: (N, n) proposals; state: (N, S).
    Returns (N, n) actions. A beam entry is a set of agents on their offline proposal (the rest
    on their online one), scored by mixer(Q_i of that joint action, s). Agents are decided in
    index order; an agent whose two proposals agree does not branch (its switched copy would
    repeat its parent). With beam_width >= 2^n and inv_temperature inf this is the arg-max of
    Q_tot over every composition.
    """
    on = torch.as_tensor(online, device=q.device)
    off = torch.as_tensor(offline, device=q.device)
    N, n = on.shape
    q_on = q.gather(-1, on.unsqueeze(-1)).squeeze(-1)  # (N, n)
    q_off = q.gather(-1, off.unsqueeze(-1)).squeeze(-1)
    s = state.unsqueeze(1)  # (N, 1, S): one state, K joint actions

    def q_tot(choice):  # (N, K, n) bool -> (N, K)
        qs = torch.where(choice, q_off.unsqueeze(1), q_on.unsqueeze(1))
        return mixer(qs.unsqueeze(1), s).squeeze(1)

    choice = torch.zeros(N, 1, n, dtype=torch.bool, device=q.device)
    score = q_tot(choice)
    for i in range(n):
        switched = choice.clone()
        switched[..., i] = True
        # a switched copy is new only where agent i's proposals differ and its parent is a real
        # entry (-inf marks a padding entry of a beam not yet full)
        new = (on[:, i] != off[:, i]).unsqueeze(1) & torch.isfinite(score)
        score = torch.cat([score, torch.where(new, q_tot(switched), -math.inf)], 1)
        choice = torch.cat([choice, switched], 1)
        top = score.topk(min(beam_width, score.shape[1]), dim=1).indices
        score = score.gather(1, top)
        choice = choice.gather(1, top.unsqueeze(-1).expand(-1, -1, n))
    if math.isinf(inv_temperature):
        pick = score.argmax(1).cpu().numpy()
    else:  # a softmax over the beam (padding entries at probability 0)
        p = torch.softmax(inv_temperature * score, 1).cpu().numpy()
        pick = np.minimum((p.cumsum(1) < rng.random((N, 1))).sum(1), score.shape[1] - 1)
    chosen = choice[torch.arange(N), torch.as_tensor(pick, device=q.device)]
    return torch.where(chosen, off, on).cpu().numpy()


class Sim2oActor(Actor):
    """Acts with the composed joint action; holds the online agent, a copy of the online
    mixer (both one submission old, from the learner) and the frozen offline agent, each with
    its own hidden states."""

    holds_mixer = True

    def __init__(self, agent, mixer, offline_agent, num_envs: int, n_agents: int,
                 n_actions: int, beam_width: int, inv_temperature: float, seed: int = 0,
                 device="cpu"):
        super().__init__(agent, num_envs, n_agents, n_actions, epsilon_greedy, seed, device)
        self.mixer, self.beam_width, self.inv_temperature = mixer, beam_width, inv_temperature
        self.offline = Actor(offline_agent, num_envs, n_agents, n_actions, None, seed, device)

    def weights(self) -> dict:
        return {**super().weights(), **{MIXER_PREFIX + k: v.clone()
                                        for k, v in self.mixer.state_dict().items()}}

    def load_weights(self, weights: dict) -> None:
        super().load_weights(weights)
        self.mixer.load_state_dict({k[len(MIXER_PREFIX):]: v for k, v in weights.items()
                                    if k.startswith(MIXER_PREFIX)})

    def state_dict(self) -> dict:
        return {**super().state_dict(), "offline": self.offline.state_dict()}

    def load_state_dict(self, sd: dict) -> None:
        super().load_state_dict(sd)
        self.offline.load_state_dict(sd["offline"])

    def __call__(self, obs, first: np.ndarray) -> np.ndarray:
        q = self.q_values(obs, first)
        greedy = q.argmax(-1).cpu().numpy()
        online = greedy
        if self.epsilon > 0:
            online, _ = epsilon_greedy(greedy, obs.avail, self.epsilon, self.rng)
        offline = self.offline.greedy(obs, first)
        state = torch.tensor(obs.state, device=self.device)
        actions = compose(q, online, offline, state, self.mixer, self.beam_width,
                          self.inv_temperature, self.rng)
        self.explored = actions != greedy  # agents off the online greedy policy
        self.prev = torch.as_tensor(actions, device=self.device)
        self.offline.prev = self.prev.clone()  # both networks see the action taken
        return actions


@dataclass
class Sim2oConfig(QmixConfig):
    eps_start: float = 0.2  # the O2O schedule, as OVMSE's: the pretrained policy is good
    beam_width: int = setting(4, "compositions kept per agent in the beam search (>= 2^agents: "
                                 "every composition)")
    # PEX's inverse temperature on Q (its default 10; the paper ablates 1, 5 and 10)
    inv_temperature: float = setting(10.0, "softmax inverse temperature on Q_tot for the final "
                                           "pick from the beam (inf: the arg-max)")
    offline_fraction: float = setting(0.5, "share of every batch drawn from the offline "
                                           "dataset")

    RANGES: ClassVar[dict] = {**QmixConfig.RANGES, "beam_width": POSITIVE,
                              "inv_temperature": POSITIVE, "offline_fraction": PROBABILITY}

    def check(self) -> None:
        super().check()
        if self.init != "offline":
            raise UsageError(f"sim2o composes the pretrained policy's proposals: it needs "
                             f"init=offline, not init={self.init} (from scratch, use qmix)")


class Sim2o(QmixO2O):
    """Offline weights; joint actions composed from frozen offline and online proposals."""

    name = "sim2o"
    Config = Sim2oConfig

    def __init__(self, info, config: Sim2oConfig | None = None, seed: int = 0,
                 device: str = "cpu"):
        self.offline_agent = None  # the frozen pretrained agent network, once in place
        super().__init__(info, config, seed, device)

    def on_pretrained(self) -> None:
        self.offline_agent = copy.deepcopy(self.learner.agent).requires_grad_(False).eval()

    def make_actor(self, learner, num_envs: int, seed: int) -> Sim2oActor:
        if self.offline_agent is None:
            raise BenchError("sim2o needs its offline weights in place before acting")
        info, c = self.info, self.cfg
        return Sim2oActor(copy.deepcopy(learner.agent), copy.deepcopy(learner.mixer),
                          self.offline_agent, num_envs, info.n_agents, info.n_actions,
                          c.beam_width, c.inv_temperature, seed, learner.device)

    def parts(self) -> Parts:
        parts = super().parts()
        parts.offline_fraction = self.cfg.offline_fraction
        parts.actor = self.make_actor
        return parts
