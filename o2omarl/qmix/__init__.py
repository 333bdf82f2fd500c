"""Shared value-decomposition machinery: agent RNN, mixers, episode buffer, learner, loops."""

from o2omarl.qmix.acting import Actor, Schedule, epsilon_greedy, evaluate
from o2omarl.qmix.algorithm import QmixConfig, QmixO2O, build_configs
from o2omarl.qmix.buffer import Batch, ReplayBuffer
from o2omarl.qmix.checkpoint import Checkpoint
from o2omarl.qmix.conservative import ConservativeLoss, CounterfactualConservativeLoss
from o2omarl.qmix.learner import Learner, LearnerConfig, UpdateContext
from o2omarl.qmix.monitor import Diverged
from o2omarl.qmix.pretrain import PretrainConfig
from o2omarl.qmix.train import OnlineConfig, Parts

__all__ = [
    "Actor", "Batch", "Checkpoint", "ConservativeLoss", "CounterfactualConservativeLoss",
    "Diverged", "Learner", "LearnerConfig", "OnlineConfig", "Parts", "PretrainConfig",
    "QmixConfig", "QmixO2O", "ReplayBuffer", "Schedule", "UpdateContext", "build_configs",
    "epsilon_greedy", "evaluate",
]
