"""Every method as one row: its name, its class (imported only when a job needs it), how
reports show it and where it sits in OVMSE's ablation. Planning, the CLI and the reports read
this table without importing torch; `benchmark.registry` loads the classes from it.

Rows are in report order: the baselines, then OVMSE's parts, OVMSE last.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    name: str  # what users type (`bench run NAME`) and the run store's folder
    target: str  # "module:Class"
    display: str  # its name in tables and figures (paper style; `bench report --names`)
    colour: str  # matplotlib colour of its curves (its variants share it, in other styles)
    # Its cell in the 2 x 2 of OVMSE's parts (offline value memory x sequential exploration):
    # "neither" is fine-tuning with the O2O epsilon schedule; None: not part of the ablation.
    ablation: str | None = None

    def load(self) -> type:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


# ovmse red, its parts green and orange
METHODS = (
    Method("qmix", "o2omarl.baselines:Qmix", "QMIX", "C7"),
    Method("ft-qmix", "o2omarl.baselines:FtQmix", "FT-QMIX", "C0", ablation="neither"),
    Method("cql-ft", "o2omarl.baselines:CqlFt", "CQL-FT", "C4"),
    Method("hybrid", "o2omarl.baselines:Hybrid", "Hybrid", "C5"),
    Method("wsrl", "o2omarl.baselines.wsrl:Wsrl", "WSRL", "C8"),
    Method("sim2o", "o2omarl.baselines.sim2o:Sim2o", "Sim2O", "C9"),
    Method("ovm", "o2omarl.ovmse:Ovm", "OVM", "C2", ablation="memory"),
    Method("se", "o2omarl.ovmse:Se", "SE", "C1", ablation="exploration"),
    Method("ovmse", "o2omarl.ovmse:Ovmse", "OVMSE", "C3", ablation="both"),
)
BY_NAME = {m.name: m for m in METHODS}
NAMES = tuple(sorted(BY_NAME))  # as error messages and completion list them
ORDER = tuple(m.name for m in METHODS)
DISPLAY_NAMES = {m.name: m.display for m in METHODS}
COLOURS = {m.name: m.colour for m in METHODS}
# The ablation figure: OVMSE and its parts, beside the fine-tuning that has neither
ABLATION = tuple(m.name for m in METHODS if m.ablation)
OVMSE_FAMILY = tuple(m.name for m in METHODS if m.ablation not in (None, "neither"))
# The settings every compared method shares (the learner, the loop and its evaluation, the
# offline pretraining): a report row whose values differ from the rest of its task is marked.
# Exploration, the start and the methods' own fields are what methods differ by. test_api
# keeps this equal to the configs' shared fields.
SHARED_SETTINGS = (
    "hidden", "mixer", "mixer_embed", "hypernet_hidden", "lr", "gamma", "grad_clip",
    "target_update_interval", "double_q", "td_lambda",
    "num_envs", "batch_size", "buffer_episodes", "updates_per_episode", "eval_interval",
    "eval_episodes",
    "pretrain_batch_size", "offline_loss", "cql_alpha", "cfcql_alpha", "cfcql_temperature",
    "pretrain_eval_interval",
)
