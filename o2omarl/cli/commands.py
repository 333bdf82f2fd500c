"""`bench collect`, `run`, `settings`, `runs list`, `report`, `perf` and `maps`."""

from __future__ import annotations

import json

import click

from o2omarl.cli import COUNT, _mb, _table, cli, complete_dataset_ids, complete_methods
from o2omarl.methods import ORDER
from o2omarl.protocol import COLLECT_ENVS


@cli.command()
@click.option("--backend", default="smax", show_default=True, help="smax or smac.")
def maps(backend):
    """List the maps of a backend: agents, enemies, dims, actions, episode limit.

    \b
    Example: bench maps
    """
    from o2omarl.envs import map_table

    rows = map_table(backend)
    click.echo(_table(rows, list(rows[0])))


@cli.command()
@click.option("--map", "map_name", required=True, help="Map name, see `bench maps`.")
@click.option("--behaviour", default="qmix", show_default=True,
              help="qmix (train a behaviour QMIX, write tiers) | heuristic | random | "
                   "checkpoint:PATH.")
@click.option("--tiers", default="poor,medium,good,replay", show_default=True,
              help="With --behaviour qmix: which tiers to produce.")
@click.option("--episodes", type=COUNT, default=1000, show_default=True,
              help="Episodes per dataset.")
@click.option("--epsilon", type=float, default=None,
              help="Per-agent probability of a uniform available action "
                   "[default: 0; 0.05 for qmix tiers].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--num-envs", type=int, default=COLLECT_ENVS, show_default=True,
              help="Parallel environments.")
@click.option("--train-steps", type=COUNT, default=1_000_000, show_default=True,
              help="With --behaviour qmix: cap on behaviour-training env steps.")
@click.option("--tier", "tier_name", default="checkpoint", show_default=True,
              help="With --behaviour checkpoint:PATH: the tier name of the dataset.")
@click.option("--backend", default="smax", show_default=True)
@click.pass_context
def collect(ctx, map_name, behaviour, tiers, episodes, epsilon, seed, num_envs, train_steps,
            tier_name, backend):
    """Collect offline datasets and store them as versioned Minari datasets.

    Identical settings reuse the existing version; changed settings create the next one.

    \b
    Examples:
      bench collect --map 2s3z                      # trained tiers poor/medium/good/replay
      bench collect --map 3m --behaviour heuristic --episodes 200 --seed 0
      bench collect --map 3m --behaviour checkpoint:runs/3m/heuristic-v0/ft-qmix/seed_0/model.pt
    """
    import time

    from o2omarl.envs import env_info

    env_info(map_name, backend)  # an unknown map: one line, before torch and jax are imported
    _refuse_unused(ctx, behaviour)
    from o2omarl.benchmark.tiers import collect_any
    from o2omarl.progress import fmt_duration

    start = time.monotonic()
    report = collect_any(map_name, behaviour, tiers, episodes, epsilon, seed, num_envs,
                         train_steps, tier_name, backend, say=click.echo)
    for res in report.produced.values():
        _summary(res)
    for tier, why in report.missing.items():
        click.echo(f"tier {tier} not produced: {why}")
    if behaviour == "qmix":
        rows = [{"tier": t, "id": r.record.dataset_id, "episodes": r.record.stats["episodes"],
                 "return": f"{r.record.stats['return_mean']:.2f}",
                 "win rate": f"{r.record.stats['win_rate']:.3f}"}
                for t, r in report.produced.items()]
        if rows:
            click.echo(_table(rows, list(rows[0])))
        if report.training:
            click.echo(f"behaviour training: {report.training['env_steps']:,} env steps in "
                       f"{fmt_duration(report.training['wall_s'])}")
        click.echo(f"total: {fmt_duration(time.monotonic() - start)}")

# Options that only one kind of behaviour reads: given with another, they would be ignored.
_ONLY_FOR = {"tiers": ("qmix", "--tiers"), "train_steps": ("qmix", "--train-steps"),
             "tier_name": ("checkpoint:PATH", "--tier")}


def _refuse_unused(ctx, behaviour: str) -> None:
    from click.core import ParameterSource

    from o2omarl.errors import UsageError

    kind = "checkpoint:PATH" if behaviour.startswith("checkpoint:") else behaviour
    for param, (needs, flag) in _ONLY_FOR.items():
        if kind != needs and ctx.get_parameter_source(param) is not ParameterSource.DEFAULT:
            raise UsageError(f"{flag} applies to --behaviour {needs} only, not {behaviour}; "
                             "leave it out")


def _summary(res) -> None:
    rec, s = res.record, res.record.stats
    if res.reused:
        click.echo(f"{rec.dataset_id} already holds these settings; nothing rewritten.")
    click.echo(f"id:          {rec.dataset_id}")
    click.echo(f"episodes:    {s['episodes']}")
    click.echo(f"steps:       {s['steps']}")
    click.echo(f"return:      {s['return_mean']:.2f} +- {s['return_std']:.2f}  (max ~20)")
    click.echo(f"win rate:    {s['win_rate']:.3f}")
    click.echo(f"size:        {_mb(rec.size_bytes())}")
    click.echo(f"path:        {rec.path}")
    if not res.reused:
        click.echo(f"elapsed:     {res.elapsed_s:.1f} s")
        click.echo(f"env-steps/s: {res.env_steps_per_s:,.0f} (excluding JIT compilation)")

@cli.command()
@click.argument("methods", nargs=-1, shell_complete=complete_methods)
@click.option("--config", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A sweep file (YAML): methods, maps, datasets, seeds, budgets and named "
                   "variants; options given beside it replace its keys (README, Sweep files).")
@click.option("--label", default=None,
              help="Run the one METHOD as a variant of this name: its own folder and name in "
                   "reports, beside the plain method in one run store (e.g. with --set); "
                   "NAME starts with METHOD_ (ft-qmix_eps0.2).")
@click.option("--map", "map_name", default=None,
              help="Map; omitted: every map that has the dataset tier.")
@click.option("--dataset", default=None, shell_complete=complete_dataset_ids,
              help="Dataset id, or a bare tier (newest version). Default: medium.")
@click.option("--seed", type=int, default=None, help="Run this single seed.")
@click.option("--seeds", type=int, default=None, help="Run N seeds (default 1).")
@click.option("--seed-offset", type=int, default=0, show_default=True,
              help="With --seeds N: run seeds OFFSET..OFFSET+N-1.")
@click.option("--steps", type=COUNT, default=None,
              help="Online env steps per run  [default: the config's steps; the same as --set "
                   "steps=N].")
@click.option("--pretrain-steps", type=COUNT, default=None,
              help="Offline updates (cached per dataset, settings and seed)  [default: the "
                   "config's pretrain_steps; the same as --set pretrain_steps=N].")
@click.option("--workers", type=int, default=None,
              help="Jobs run at once  [default: the number of cores].")
@click.option("--executor", default="local", show_default=True,
              help="local (process pool) | ray (`pip install 'o2omarl[ray]'`).")
@click.option("--address", default=None,
              help="With --executor ray: a running cluster (e.g. ray://head:10001); omitted: "
                   "a local Ray.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu",
              show_default=True)
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, e.g. --set eps_start=0.2 (repeatable).")
@click.option("--backend", default="smax", show_default=True)
@click.option("--dry-run", is_flag=True,
              help="Check everything, print what each job would do (done, new, resume, copy, "
                   "running elsewhere), start and write nothing.")
@click.pass_context
def run(ctx, methods, config, label, map_name, dataset, seed, seeds, seed_offset, steps,
        pretrain_steps, workers, executor, address, device, runs_dir, overrides, backend,
        dry_run):
    """Offline pretraining (cached), then online fine-tuning, for each method and seed.

    Finished jobs are skipped and unfinished ones resume from their last checkpoint, so the
    same command can be rerun after a crash or Ctrl-C.

    \b
    Methods: METHODS.
    Examples:
      bench run ovmse ft-qmix qmix --map 2s3z --seeds 5
      bench run ft-qmix --map 3m --dataset heuristic --steps 50000 --pretrain-steps 2000 --seed 0
      bench run ft-qmix --map 3m --dataset heuristic --set eps_start=0.2 --label ft-qmix_eps0.2
      bench run ovmse --seeds 5 --executor ray --address ray://head:10001
      bench run --config benchmarks/paper.yaml --workers 4
      bench run --config benchmarks/benchmark.yaml --dry-run
    """
    from collections import Counter

    from click.core import ParameterSource

    from o2omarl.benchmark import check_failed, run_sweep
    from o2omarl.benchmark.sweep import from_command_line

    options = {k: v for k, v in ctx.params.items() if k != "dry_run"}  # not a sweep key
    typed = {k for k in options if ctx.get_parameter_source(k) is not ParameterSource.DEFAULT}
    sweep = from_command_line(config, {**options, "overrides": _parse_overrides(overrides)},
                              typed)
    rows = run_sweep(sweep, say=click.echo, dry_run=dry_run)
    click.echo(_table(rows, ["method", "map", "dataset", "seed", "state", "win rate",
                             "return", "run dir"]))
    if dry_run:
        counts = Counter(r["state"] for r in rows)
        click.echo("dry run, nothing started: " + ", ".join(
            f"{counts[s]} {s}" for s in ("done", "running", "resume", "copy", "new")
            if counts[s]))
    check_failed(rows)


run.help = run.help.replace("METHODS", ", ".join(ORDER))  # the methods table's, in its order


@cli.command()
@click.argument("method", required=False, shell_complete=complete_methods)
@click.option("--json", "as_json", is_flag=True, help="One JSON list (scripts).")
def settings(method, as_json):
    """Every `--set KEY=VALUE` key of a method: default, accepted values, meaning.

    Without METHOD: every key of every method, with the methods whose default differs (the
    README's settings table is this output).

    \b
    Examples: bench settings ovmse
              bench settings --json | jq '.[] | select(.key == "lr")'
    """
    from o2omarl.benchmark.jobs import check_methods
    from o2omarl.settings import describe, settings_table, shown

    if method is None:
        from o2omarl.benchmark.registry import METHODS

        if as_json:
            click.echo(json.dumps({m: describe(cls.Config) for m, cls in METHODS.items()}))
        else:
            click.echo(settings_table({m: cls.Config for m, cls in METHODS.items()}))
        return
    (cls,) = check_methods([method])
    rows = describe(cls.Config)
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(_table([{**r, "default": shown(r["default"])} for r in rows],
                      ["key", "default", "accepted", "help"]))


@cli.group()
def runs():
    """List the runs in a run store, or archive the finished ones."""


@runs.command("list")
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON list, raw numbers (scripts).")
def runs_list(runs_dir, as_json):
    """Every run: map, dataset, method, seed, status, env steps done, last win rate.

    \b
    Example: bench runs list --runs-dir runs
             bench runs list --json | jq '.[] | select(.status == "done")'
    """
    from o2omarl.benchmark.results import changed_datasets, scan_store

    found = scan_store(runs_dir)
    changed = changed_datasets(found)
    if as_json:
        click.echo(json.dumps([{"map": r.map, "dataset": r.dataset_name, "method": r.method,
                                "seed": r.seed, "status": r.state, "steps_done": r.steps_done,
                                "budget": r.budget, "last_win_rate": r.last_win_rate,
                                "error": r.error, "dataset_changed": str(r.path) in changed,
                                "path": str(r.path)} for r in found]))
        return
    rows = [{"map": r.map, "dataset": r.dataset_name, "method": r.method,
             "seed": r.seed if r.seed >= 0 else "?", "status": r.state,
             "steps": f"{r.steps_done:,}/{r.budget:,}",
             "win rate": "-" if r.last_win_rate is None else f"{r.last_win_rate:.3f}",
             "note": (r.error or changed.get(str(r.path), ""))[:60], "path": str(r.path)}
            for r in found]
    click.echo(_table(rows, ["map", "dataset", "method", "seed", "status", "steps", "win rate",
                             "note", "path"]))
    click.echo(count_line(found, changed))


@runs.command("archive")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
def runs_archive(dest, runs_dir):
    """Copy every finished run's record to DEST, for git: config, status, metrics, logs.

    A few kB of text per run, under the same paths. `bench report --runs-dir DEST` rebuilds
    every table and figure from it on any machine (not --replays: weights stay behind), and a
    sweep continues where it stood: copy DEST into a fresh store, run the sweep there, and its
    archived jobs are skipped. Rerunning adds the runs finished since.

    \b
    Example: bench runs archive docs/results/runs/calibrated --runs-dir runs/calibrated
             cp -r docs/results/runs/calibrated/. runs/calibrated/   # a fresh machine: resume
    """
    from o2omarl.benchmark.results import archive_runs

    plan = archive_runs(runs_dir, dest)
    for path in plan["archived"]:
        click.echo(f"archived {path}")
    click.echo(f"{len(plan['archived'])} run(s) archived to {dest}, {len(plan['same'])} "
               f"already there; {len(plan['unfinished'])} unfinished left out")


def count_line(found, changed: dict) -> str:
    """`12 runs: 10 done, 1 running, 1 damaged; 1 trained on data since changed`: what the
    table holds, so that a damaged or stale run is not missed in a long one."""
    states: dict[str, int] = {}
    for r in found:
        states[r.state] = states.get(r.state, 0) + 1
    text = (f"{len(found)} run{'s' * (len(found) != 1)}: "
            + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
    if changed:
        text += f"; {len(changed)} trained on a dataset whose bytes have changed since"
    return text


def _parse_overrides(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@cli.command()
@click.option("--runs-dir", "runs_dirs", type=click.Path(file_okay=False), multiple=True,
              default=["runs"], show_default=True,
              help="Run store (repeatable: the stores' runs are pooled).")
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True,
              help="Folder for index.html/index.md, tables/ and figures/.")
@click.option("--map", "maps", multiple=True, help="Only this map (repeatable).")
@click.option("--method", "methods", multiple=True, help="Only this method (repeatable).")
@click.option("--format", "formats", default="png,pdf", show_default=True,
              help="Figure formats, comma-separated: png, pdf.")
@click.option("--names", multiple=True, metavar="METHOD=NAME,...",
              help="Display names in tables and figures, over the built-in ones (OVMSE, "
                   "FT-QMIX, ...), e.g. --names ovmse=Ours,ft-qmix=Fine-tuned.")
@click.option("--replays", is_flag=True,
              help="Add a GIF of one battle of the best and the worst run of each cell "
                   "(SMAX; about half a minute a battle).")
@click.option("--reference", metavar="METHOD",
              help="The method (or variant) whose probability of improvement over every other "
                   "is tabled  [default: ovmse].")
def report(runs_dirs, out, maps, methods, formats, names, replays, reference):
    """Tables and figures of every finished run, and an index page showing them all.

    Unfinished and failed runs are listed apart, never averaged in; runs with different
    datasets, budgets or pretraining lengths are never pooled, nor runs of one method with
    other settings (they become variants named by what differs).

    \b
    Examples:
      bench report                                  # runs/ -> reports/index.html
      bench report --map 3m --method ovmse --method ft-qmix --format png --out reports/3m
      bench report --runs-dir runs/a --runs-dir runs/b --names ovmse=Ours
      bench report --replays                        # and a battle of each cell's best, worst
      bench report --reference se                   # P(SE > each other method)
    """
    from o2omarl.reports import build_report
    from o2omarl.reports.build import parse_names

    index = build_report(list(runs_dirs), out, list(maps) or None, list(methods) or None,
                         formats.split(","), say=click.echo, names=parse_names(names),
                         replays=replays, reference=reference)
    click.echo(f"report: {index} (and {index.with_suffix('.md').name})")


@cli.command()
@click.option("--map", "map_name", default="2s3z", show_default=True, help="Map to measure on.")
@click.option("--num-envs", type=int, default=COLLECT_ENVS, show_default=True,
              help="Parallel battles for the raw step and collection figures.")
@click.option("--steps", type=COUNT, default=50_000, show_default=True,
              help="Env steps per collection timing.")
@click.option("--online-steps", type=COUNT, default=20_000, show_default=True,
              help="Env steps timed per online method (after a warm-up).")
@click.option("--updates", type=COUNT, default=100, show_default=True,
              help="Offline updates timed.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Alternating timing rounds per comparison.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu",
              show_default=True, help="The learner's device (the environment stays on CPU).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def perf(map_name, num_envs, steps, online_steps, updates, repeats, device, as_json):
    """Measure every stage on one map, each against its limit: raw env steps/s, collection,
    online training (qmix, ft-qmix, ovmse), offline updates/s, dataset write and load.

    Takes a few minutes with the defaults; see docs/performance.md for what the figures mean.

    \b
    Examples:
      bench perf --map 2s3z
      bench perf --map 3m --steps 5000 --online-steps 3000 --updates 20 --json
    """
    from o2omarl.benchmark.perf import PerfConfig, format_table, run_perf
    from o2omarl.devices import resolve_device

    say = lambda msg: click.echo(msg, err=True)  # noqa: E731 - stdout is for the figures
    cfg = PerfConfig(map_name, num_envs, steps, online_steps, updates, repeats,
                     device=resolve_device(device, say))
    cfg.check()  # bad input: one line, before anything is measured
    out = run_perf(cfg, say)
    click.echo(json.dumps(out) if as_json else format_table(out))
