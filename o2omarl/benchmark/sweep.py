"""Sweeps: what `bench run` is asked for, from its command line or from a sweep file.

    bench run --config sweep.yaml

    runs_dir: runs/paper
    maps:                          # map -> its datasets; or a list of maps, each x `datasets`
      2s3z: [medium, replay]
      5m_vs_6m: medium
    datasets: [medium]             # tiers or ids, as --dataset (omitted: medium)
    seeds: 3                       # seeds 0, 1, 2 (shifted by seed_offset); or a list [0, 4, 7]
    steps: 500k                    # as on the command line: 500000, 5e5, 500k
    pretrain_steps: 5000
    workers: 2
    set: {lr: 0.0005}              # --set, for every method and variant
    methods: [ovmse, ft-qmix, qmix]
    variants:                      # a method with other settings, under its own name
      ft-qmix_eps0.2: {method: ft-qmix, set: {eps_start: 0.2}}

Every other key is a `bench run` option (`backend`, `device`, `executor`, `address`,
`seed_offset`), spelt with underscores. A variant runs like `bench run METHOD --label NAME
--set ...`: its own folder (`<map>/<tier>-vN/<name>/seed_k`) and its own name in reports, so
variants of one method share a run store (and its pretraining cache) with the plain method.
Options typed beside --config replace the file's key of the same name; `--set` merges into its
`set` (a variant's own `set` still wins). Both ways build the same `Sweep`, so a file and the
command line it spells out plan exactly the same jobs.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from o2omarl.errors import UsageError, one_of
from o2omarl.settings import parse_count

DEVICES = ("auto", "cpu", "cuda")
# A variant's name is a folder of the run store: no separators, nothing hidden.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]*")


@dataclass
class Variant:
    method: str
    overrides: dict = field(default_factory=dict)  # its own --set, over the sweep's


@dataclass
class Sweep:
    """Every (map, dataset) task x (method or variant) x seed, and where they run."""

    methods: list[str]
    tasks: list[tuple[str | None, str | None]]  # None: as `bench run` without --map / --dataset
    seeds: list[int]
    steps: int | None  # None: each method's config default (as for pretrain_steps)
    pretrain_steps: int | None
    overrides: dict = field(default_factory=dict)  # --set, for every method and variant
    variants: dict[str, Variant] = field(default_factory=dict)
    runs_dir: str = "runs"
    backend: str = "smax"
    device: str = "cpu"
    workers: int | None = None  # None: one per core
    executor: str = "local"
    address: str | None = None


# -- the command line -----------------------------------------------------------------------------
# `bench run`'s option -> the sweep key it sets (the others are spelt the same).
OPTION_KEYS = {"map_name": "maps", "dataset": "datasets", "seed": "seeds", "overrides": "set",
               "label": "variants"}


def from_command_line(config: str | None, options: dict, typed: set[str]) -> Sweep:
    """`bench run`'s `options` (every value, defaults included; `typed`: the ones given on the
    command line), with the sweep file `config` if there is one."""
    for option in ("methods", "label") if config is not None else ():
        if option in typed:
            raise UsageError(f"{config} names the methods and variants; give them there, not "
                             f"{'as arguments' if option == 'methods' else 'as --label'} beside "
                             "--config")
    line = _line_values(options)
    if config is None:
        return _sweep(line)
    keys = {OPTION_KEYS.get(o, o) for o in typed} - {"config"}
    if "seed" in typed:  # --seed S is the whole list of seeds: no offset of the file's applies
        keys.add("seed_offset")
    in_file = read(config, line["backend"] if "backend" in keys else None)
    values = {**line, **in_file, **{k: line[k] for k in keys}}
    values["set"] = {**in_file.get("set", {}), **(line["set"] if "set" in keys else {})}
    return _sweep(values)


def _line_values(o: dict) -> dict:
    """The command line's options as sweep keys."""
    from o2omarl.benchmark.jobs import seed_list

    seed_list(o["seed"], o["seeds"], o["seed_offset"])  # refuses --seed with --seeds
    methods, label = list(o["methods"]), o.get("label")
    if label is not None and len(methods) != 1:
        raise UsageError(f"--label names a variant of one method; got {len(methods)} methods "
                         f"({', '.join(methods) or 'none'})")
    return {"methods": [] if label else methods,
            "variants": {label: Variant(methods[0])} if label else {},
            "maps": None if o["map_name"] is None else {o["map_name"]: None},
            "datasets": None if o["dataset"] is None else [o["dataset"]],
            "seeds": [o["seed"]] if o["seed"] is not None else (
                1 if o["seeds"] is None else o["seeds"]),
            "seed_offset": o["seed_offset"], "set": dict(o["overrides"]),
            **{k: o[k] for k in ("steps", "pretrain_steps", "runs_dir", "backend", "device",
                                 "workers", "executor", "address")}}


def _sweep(v: dict) -> Sweep:
    seeds, offset = v["seeds"], v["seed_offset"]
    if isinstance(seeds, list) and offset:
        raise UsageError(f"a seed offset shifts a number of seeds (--seeds N), not the seeds "
                         f"{seeds}; list the seeds you want instead")
    if not isinstance(seeds, list):
        from o2omarl.benchmark.jobs import seed_list

        seeds = seed_list(None, seeds, offset)
    datasets = v["datasets"] or [None]
    tasks = [(None, d) for d in datasets] if v["maps"] is None else [
        (m, d) for m, own in v["maps"].items() for d in (own or datasets)]
    return Sweep(v["methods"], tasks, seeds, v["steps"], v["pretrain_steps"], v["set"],
                 v["variants"], str(v["runs_dir"]), v["backend"], v["device"], v["workers"],
                 v["executor"], v["address"])


# -- the file -------------------------------------------------------------------------------------
class _Bad(ValueError):
    """A value of the wrong kind: says what the key accepts."""


def _text(v):
    if not isinstance(v, str) or not v:
        raise _Bad("a name")
    return v


def _names(v):
    names = [v] if isinstance(v, str) else v
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n
                                                           for n in names):
        raise _Bad("a name or a list of names")
    return names


def _count(v):
    try:
        n = parse_count(v)
    except ValueError:
        n = 0
    if n <= 0:
        raise _Bad("a positive whole number (e.g. 500000, 5e5, 500k)")
    return n


def _positive(v):
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise _Bad("a positive integer")
    return v


def _offset(v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _Bad("an integer >= 0")
    return v


def _seeds(v):
    if isinstance(v, list) and v and all(isinstance(s, int) and not isinstance(s, bool)
                                         and s >= 0 for s in v):
        return v
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    raise _Bad("a number of seeds (3: seeds 0, 1, 2) or a list of seeds >= 0")


def _settings(v):
    if not isinstance(v, dict) or not all(isinstance(k, str) and (
            x is None or isinstance(x, (str, int, float))) for k, x in v.items()):
        raise _Bad("a mapping of config fields to values, e.g. {eps_start: 0.2}")
    return v


def _maps(v):
    if not isinstance(v, dict):
        return {m: None for m in _names(v)}
    try:
        return {_text(m): None if own is None else _names(own) for m, own in v.items()}
    except _Bad:
        raise _Bad("a list of maps, or a mapping of each map to its datasets") from None


def _device(v):
    if v not in DEVICES:
        raise one_of("device", v, DEVICES)
    return v


def _address(v):
    return None if v is None else _text(v)


def _variant(spec):
    if not isinstance(spec, dict):
        raise _Bad("{method: METHOD, set: {KEY: VALUE}}")
    for key in spec:
        if key not in ("method", "set"):
            raise one_of("key", key, ["method", "set"])
    if "method" not in spec:
        raise UsageError("names no method (method: METHOD)")
    return Variant(_check("method", spec["method"], _text),
                   _check("set", spec.get("set", {}), _settings))


def _variants(v):
    if not isinstance(v, dict) or not v:
        raise _Bad("a mapping of variant names to {method: METHOD, set: {KEY: VALUE}}")
    for name in v:
        check_name(str(name))
    return {str(name): _check(str(name), spec, _variant) for name, spec in v.items()}


KEYS = {"runs_dir": _text, "backend": _text, "maps": _maps, "datasets": _names,
        "seeds": _seeds, "seed_offset": _offset, "steps": _count, "pretrain_steps": _count,
        "workers": _positive, "executor": _text, "address": _address, "device": _device,
        "set": _settings, "methods": _names, "variants": _variants}


def check_name(name: str) -> None:
    """A variant's name is a folder of the run store."""
    if not NAME.fullmatch(name):
        raise UsageError(f"{name!r} cannot name a variant: letters, digits and . _ + = @ - "
                         "only, starting with a letter or digit")


@contextlib.contextmanager
def _at(where: str):
    """Prefix an error about a value with where it is (`sweep.yaml: steps: ...`)."""
    try:
        yield
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None


def _check(key: str, value, checker):
    with _at(key):
        try:
            return checker(value)
        except _Bad as e:
            raise UsageError(f"expected {e}, got {value!r}") from None


class _UniqueKeys(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys: a variant written twice would vanish."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            with contextlib.suppress(TypeError):  # unhashable: the base class says so
                if key in seen:
                    raise UsageError(f"{key!r} is given twice (line "
                                     f"{key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep)


def read(path, backend: str | None = None) -> dict:
    """The sweep file's keys, each checked (kinds, then names of methods and maps, on `backend`
    or the file's own); a bad one is one line naming the file, the key and what it accepts."""
    with _at(str(path)):
        try:
            data = yaml.load(Path(path).read_text(), _UniqueKeys)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UsageError(f"not valid YAML: {e.problem or e.context}{where}") from None
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot be read: {e}") from None
        if not isinstance(data, dict) or not data:
            raise UsageError(f"expected a mapping of settings ({', '.join(KEYS)}), got "
                             f"{type(data).__name__ if data is not None else 'nothing'}")
        for key in data:
            if key not in KEYS:
                raise one_of("key", key, list(KEYS))
        values = {key: _check(key, value, KEYS[key]) for key, value in data.items()}
        if not values.get("methods") and not values.get("variants"):
            raise UsageError("runs nothing: name its methods (methods: [ovmse, qmix]) or "
                             "variants")
        _check_names(values, backend or values.get("backend", "smax"))
    return values


def _check_names(values: dict, backend: str) -> None:
    """Methods and maps exist (both are data: nothing heavy is imported)."""
    from o2omarl.benchmark.jobs import check_methods
    from o2omarl.envs import env_info

    for m in values.get("maps") or {}:
        with _at("maps"):
            env_info(m, backend)
    for m in values.get("methods", []):
        with _at("methods"):
            check_methods([m], load=False)
    for name, variant in values.get("variants", {}).items():
        with _at(f"variants: {name}: method"):
            check_methods([variant.method], load=False)


def plan_sweep(sweep: Sweep, say=print) -> list:
    """Every job of the sweep, in order: per task its methods, then its variants (labelled);
    all input checked before anything is made, the cheap checks before torch is loaded."""
    from o2omarl.benchmark.jobs import check_methods, check_request, plan
    from o2omarl.methods import NAMES
    from o2omarl.reports.cells import base_method

    if not sweep.methods and not sweep.variants:
        check_methods([])  # names the methods
    check_methods([*sweep.methods, *(v.method for v in sweep.variants.values())], load=False)
    for name, variant in sweep.variants.items():  # the file's own mistakes before the data's
        check_name(name)
        if name in NAMES:  # it would share the method's folder and name
            raise UsageError(f"variant {name!r} has a method's name; give it its own (e.g. "
                             f"{name}_2)")
        method = variant.method
        if base_method(name) != method:  # how reports find a variant's method
            raise UsageError(f"variant {name!r} of {method}: start its name with the method "
                             f"and an underscore (e.g. {method}_{name}), so that reports show "
                             f"it beside {method} and in its ablation")
    for map_name, dataset in sweep.tasks:
        check_request(map_name, dataset, sweep.seeds, sweep.steps, sweep.pretrain_steps,
                      sweep.backend)
    for key, value in (("steps", sweep.steps), ("pretrain_steps", sweep.pretrain_steps)):
        if value is not None and key in sweep.overrides:
            flag = "--" + key.replace("_", "-")
            raise UsageError(f"{key} is given twice ({flag} / {key}: {value} and --set / set: "
                             f"{key}={sweep.overrides[key]}); give it once")
    from o2omarl.devices import resolve_device

    device = resolve_device(sweep.device, say)
    common = (sweep.seeds, sweep.steps, sweep.pretrain_steps, sweep.backend, device)
    jobs = []
    for map_name, dataset in sweep.tasks:
        if sweep.methods:
            jobs += plan(sweep.methods, map_name, dataset, *common, sweep.overrides)
        for name, variant in sweep.variants.items():
            with _at(f"variant {name!r}"):
                jobs += [replace(job, label=name) for job in plan(
                    [variant.method], map_name, dataset, *common,
                    {**sweep.overrides, **variant.overrides})]
    runs_dir = Path(sweep.runs_dir)
    seen = set()
    for job in jobs:
        folder = job.run_dir(runs_dir)
        if folder in seen:
            raise UsageError(f"the sweep runs {job.name} seed {job.seed} on {job.map_name} "
                             f"{job.dataset_label} twice (into {folder}): is a map, dataset, "
                             "seed or method listed twice?")
        seen.add(folder)
    return jobs
