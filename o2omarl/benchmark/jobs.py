"""Planning `bench run`: every input checked before any folder exists, then one `JobSpec` per
map x method x seed, each with its resolved config and where its updates run.

The methods (and torch with them) are imported only once the checks that need no method have
passed, so a bad budget, seed, map or dataset is answered without loading them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from o2omarl import datasets
from o2omarl.datasets import DatasetRecord, store
from o2omarl.envs import DEFAULT_BACKEND, env_info
from o2omarl.episodes import EpisodeArrays
from o2omarl.errors import UsageError, check_seed, one_of, positive
from o2omarl.methods import NAMES

DEFAULT_TIER = "medium"


@dataclass
class JobSpec:
    method: str
    map_name: str
    seed: int
    dataset: DatasetRecord | None
    backend: str = DEFAULT_BACKEND
    device: str = "cpu"
    # The method's resolved config dataclass: the only settings a job reads (its budgets too)
    config: object = None
    # A variant's name (e.g. "ft-qmix_eps0.2" for ft-qmix with other settings): its folder and
    # its name in reports, so variants of one method sit side by side in one run store.
    label: str | None = None
    # Where the online updates run: "inline" or "process" (qmix/updates.py), decided once when
    # jobs are planned; executors whose workers cannot start processes set "inline".
    learner_mode: str = "inline"

    @property
    def name(self) -> str:
        return self.label or self.method

    @property
    def steps(self) -> int:
        """Online env steps."""
        return self.config.steps

    @property
    def pretrain_steps(self) -> int:
        return self.config.pretrain_steps

    @property
    def dataset_label(self) -> str:
        """The run store's folder for the job's data: `<tier>-v<N>`, or `online`."""
        return self.dataset.dataset_id.rsplit("/", 1)[1] if self.dataset else "online"

    def run_dir(self, runs_dir: Path) -> Path:
        map_dir = self.map_name if self.backend == "smax" else f"{self.backend}_{self.map_name}"
        return Path(runs_dir) / map_dir / self.dataset_label / self.name / f"seed_{self.seed}"


def seed_list(seed: int | None, seeds: int | None, seed_offset: int = 0) -> list[int]:
    """`--seed K`: [K]; `--seeds N --seed-offset O`: O..O+N-1 (default one seed, 0)."""
    if seed is not None and seeds is not None:
        raise UsageError("give --seed or --seeds, not both")
    if seeds is not None:
        positive("--seeds", seeds)
    return [seed] if seed is not None else list(range(seed_offset, seed_offset + (seeds or 1)))


def resolve_maps(map_name: str | None, dataset: str | None, backend: str) -> list[str]:
    """`--map` given: that map. Omitted: every map that has the requested tier."""
    if map_name is not None:
        env_info(map_name, backend)  # unknown map -> UsageError listing the valid ones
        return [map_name]
    tier = dataset or DEFAULT_TIER
    if "/" in tier:
        return [store.parse_id(tier)["map"]]
    maps = sorted({store.parse_id(i)["map"] for i in store.list_ids()
                   if store.parse_id(i)["tier"] == tier and i.startswith(backend + "/")})
    if not maps:
        raise UsageError(f"no map has a {tier!r} dataset under {store.root()}; make one with "
                         "`bench collect --map 2s3z` (or name the map with --map)")
    return maps


def check_request(map_name: str | None, dataset: str | None, seeds: list[int],
                  steps: int | None, pretrain_steps: int | None,
                  backend: str = DEFAULT_BACKEND) -> list[str]:
    """The checks that need no method: budgets, seeds, maps, a dataset named (it must exist and
    fit every map); returns the maps to run on."""
    if steps is not None:
        positive("--steps", steps)
    if pretrain_steps is not None:
        positive("--pretrain-steps", pretrain_steps)
    if not seeds:
        raise UsageError("--seeds must be a positive integer")
    if min(seeds) < 0:
        raise UsageError(f"seed {min(seeds)} is negative; --seed and --seed-offset accept "
                         "integers >= 0")
    check_seed("seed", max(seeds))
    maps = resolve_maps(map_name, dataset, backend)
    for m in maps if dataset is not None else []:
        datasets.check_fits(datasets.resolve(dataset, m, backend), env_info(m, backend))
    return maps


def check_methods(methods: list[str], load: bool = True) -> list[type]:
    """The classes of `methods` (at least one, each known); `load=False` checks the names
    only (torch and the methods are not imported) and returns []."""
    if not methods:
        raise UsageError(f"name at least one method; accepted: {', '.join(NAMES)}")
    for m in methods:
        if m not in NAMES:  # the table's names: no method (and no torch) is imported for this
            raise one_of("method", m, NAMES)
    if not load:
        return []
    from o2omarl.benchmark import registry

    return [registry.get(m) for m in methods]


def plan(methods: list[str], map_name: str | None, dataset: str | None, seeds: list[int],
         steps: int | None = None, pretrain_steps: int | None = None,
         backend: str = DEFAULT_BACKEND, device: str = "cpu",
         overrides: dict | None = None) -> list[JobSpec]:
    """Validate everything before any folder is made; one JobSpec per map x method x seed.

    The budgets `steps` (`--steps`) and `pretrain_steps` (`--pretrain-steps`; None: the
    config's defaults) are overrides below `overrides`: the configs are the only place they
    land, range-checked with the rest."""
    if not methods:  # said first, before any other check
        check_methods(methods)
    maps = check_request(map_name, dataset, seeds, steps, pretrain_steps, backend)
    classes = check_methods(methods)
    from o2omarl.qmix import build_configs
    from o2omarl.qmix.updates import learner_mode

    budgets = {k: v for k, v in (("steps", steps), ("pretrain_steps", pretrain_steps))
               if v is not None}
    overrides = {**budgets, **(overrides or {})}
    configs = build_configs([cls.Config for cls in classes], overrides or {}, methods)
    mode = learner_mode(device)  # a bad O2OMARL_LEARNER or O2OMARL_CORES fails here
    jobs = []
    for m in maps:
        info = env_info(m, backend)
        try:
            record = datasets.resolve(dataset or DEFAULT_TIER, m, backend)
            datasets.check_fits(record, info)
        except UsageError:
            # A dataset the user named must exist and fit; the default tier only matters to
            # methods that use offline data (the error names the `bench collect` command).
            if dataset is not None or any(needs_data(c) for c in configs):
                raise
            record = None  # e.g. `qmix` alone beside a medium tier of an older state format
        for cls, config in zip(classes, configs):
            check_memory(config, info, mode)
            for seed in seeds:
                jobs.append(JobSpec(cls.name, m, seed, record, backend, device, config,
                                    learner_mode=mode))
    return jobs


def machine_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


TWICE = " (twice: the learner process holds a replica)"


def check_memory(config, info, learner_mode: str) -> None:
    """Refuse a replay no run on this machine can hold: it fills up over the run (padded
    episodes, allocated as they come), so an oversize one is killed for memory hours in. A
    learner process keeps a replica: twice the bytes."""
    copies = 2 if learner_mode == "process" else 1
    need = copies * EpisodeArrays.nbytes(config.buffer_episodes, info)
    have = machine_memory()
    if need > have:
        fits = have // (copies * EpisodeArrays.nbytes(1, info))
        raise UsageError(
            f"buffer_episodes={config.buffer_episodes:,} needs {need / 2**30:,.1f} GiB for its "
            f"replay on map {info.map_name}{TWICE if copies == 2 else ''}, "
            f"more than this machine's {have / 2**30:,.1f} GiB of memory; accepted: "
            f"buffer_episodes <= {fits:,} here")


def needs_data(config) -> bool:
    """Whether a job of this config reads its dataset (to pretrain, or to mix it online); one
    that does not runs the same on every dataset of its map."""
    return config.init == "offline" or getattr(config, "offline_fraction", 0) > 0


def make_method(job: JobSpec):
    from o2omarl.benchmark import registry

    cls = registry.get(job.method)
    return cls(env_info(job.map_name, job.backend), job.config, job.seed, job.device)
