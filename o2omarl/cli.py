"""`bench`: a thin Click layer. Each command parses, calls one library function, prints.

Library errors (`o2omarl.errors`) become one line on stderr and exit code 2 (usage) or 1
(failure); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import errno
import json
import sys
import traceback

import click

from o2omarl.errors import BenchError, Interrupted


def _table(rows: list[dict], columns: list[str]) -> str:
    """A plain aligned text table (readable in logs, copyable into Markdown with little work)."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def cli(ctx, debug):
    """o2omarl: offline-to-online multi-agent RL benchmarks (OVMSE and baselines).

    \b
    Example workflow:
      bench collect --map 2s3z        # generate + version offline datasets
      bench run ovmse --seeds 5       # offline pretraining, then online fine-tuning
      bench report                    # tables and figures
    """
    ctx.obj = {"debug": debug}


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
@click.option("--episodes", type=int, default=1000, show_default=True,
              help="Episodes per dataset.")
@click.option("--epsilon", type=float, default=None,
              help="Per-agent probability of a uniform available action "
                   "[default: 0; 0.05 for qmix tiers].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--num-envs", type=int, default=32, show_default=True,
              help="Parallel environments.")
@click.option("--train-steps", type=int, default=1_000_000, show_default=True,
              help="With --behaviour qmix: cap on behaviour-training env steps.")
@click.option("--tier", "tier_name", default="checkpoint", show_default=True,
              help="With --behaviour checkpoint:PATH: the tier name of the dataset.")
@click.option("--backend", default="smax", show_default=True)
def collect(map_name, behaviour, tiers, episodes, epsilon, seed, num_envs, train_steps,
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
@click.argument("methods", nargs=-1)
@click.option("--map", "map_name", default=None,
              help="Map; omitted: every map that has the dataset tier.")
@click.option("--dataset", default=None,
              help="Dataset id, or a bare tier (newest version). Default: medium.")
@click.option("--seed", type=int, default=None, help="Run this single seed.")
@click.option("--seeds", type=int, default=None, help="Run N seeds (default 1).")
@click.option("--seed-offset", type=int, default=0, show_default=True,
              help="With --seeds N: run seeds OFFSET..OFFSET+N-1.")
@click.option("--steps", type=int, default=100_000, show_default=True,
              help="Online env steps per run.")
@click.option("--pretrain-steps", type=int, default=5000, show_default=True,
              help="Offline updates (cached per dataset, settings and seed).")
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
def run(methods, map_name, dataset, seed, seeds, seed_offset, steps, pretrain_steps, workers,
        executor, address, device, runs_dir, overrides, backend):
    """Offline pretraining (cached), then online fine-tuning, for each method and seed.

    Finished jobs are skipped and unfinished ones resume from their last checkpoint, so the
    same command can be rerun after a crash or Ctrl-C.

    \b
    Methods: qmix, ft-qmix, cql-ft, hybrid, ovm, se, ovmse.
    Examples:
      bench run ovmse ft-qmix qmix --map 2s3z --seeds 5
      bench run ft-qmix --map 3m --dataset heuristic --steps 50000 --pretrain-steps 2000 --seed 0
      bench run ovmse --seeds 5 --executor ray --address ray://head:10001
    """
    from o2omarl.benchmark import check_failed, run_all, seed_list
    from o2omarl.benchmark.executors import default_workers

    rows = run_all(list(methods), map_name, dataset, seed_list(seed, seeds, seed_offset), steps,
                   pretrain_steps, runs_dir=runs_dir, device=device,
                   overrides=_parse_overrides(overrides), backend=backend,
                   workers=workers if workers is not None else default_workers(),
                   executor=executor, address=address, say=click.echo)
    click.echo(_table(rows, ["method", "map", "dataset", "seed", "state", "win rate",
                             "return", "run dir"]))
    check_failed(rows)


@cli.group()
def runs():
    """List the runs in a run store."""


@runs.command("list")
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
def runs_list(runs_dir):
    """Every run: map, dataset, method, seed, status, env steps done, last win rate.

    \b
    Example: bench runs list --runs-dir runs
    """
    from o2omarl.benchmark.results import scan_store

    found = scan_store(runs_dir)
    rows = [{"map": r.map, "dataset": r.dataset_name, "method": r.method,
             "seed": r.seed if r.seed >= 0 else "?", "status": r.state,
             "steps": f"{r.steps_done:,}/{r.budget:,}",
             "win rate": "-" if r.last_win_rate is None else f"{r.last_win_rate:.3f}",
             "note": (r.error or "")[:60], "path": str(r.path)} for r in found]
    click.echo(_table(rows, ["map", "dataset", "method", "seed", "status", "steps", "win rate",
                             "note", "path"]))


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
@click.option("--runs-dir", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="reports", show_default=True,
              help="Folder for index.html/index.md, tables/ and figures/.")
@click.option("--map", "maps", multiple=True, help="Only this map (repeatable).")
@click.option("--method", "methods", multiple=True, help="Only this method (repeatable).")
@click.option("--format", "formats", default="png,pdf", show_default=True,
              help="Figure formats, comma-separated: png, pdf.")
def report(runs_dir, out, maps, methods, formats):
    """Tables and figures of every finished run, and an index page showing them all.

    Unfinished and failed runs are listed apart, never averaged in; runs with different
    datasets, budgets or pretraining lengths are never pooled.

    \b
    Examples:
      bench report                                  # runs/ -> reports/index.html
      bench report --map 3m --method ovmse --method ft-qmix --format png --out reports/3m
    """
    from o2omarl.reports import build_report

    index = build_report(runs_dir, out, list(maps) or None, list(methods) or None,
                         formats.split(","), say=click.echo)
    click.echo(f"report: {index} (and {index.with_suffix('.md').name})")


@cli.command()
@click.option("--map", "map_name", default="2s3z", show_default=True, help="Map to measure on.")
@click.option("--num-envs", type=int, default=32, show_default=True,
              help="Parallel battles for the raw step and collection figures.")
@click.option("--steps", type=int, default=50_000, show_default=True,
              help="Env steps per collection timing.")
@click.option("--online-steps", type=int, default=20_000, show_default=True,
              help="Env steps timed per online method (after a warm-up).")
@click.option("--updates", type=int, default=100, show_default=True,
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


@cli.group()
def datasets():
    """List, show, verify and delete stored datasets."""


@datasets.command("list")
def datasets_list():
    """A table of every stored dataset.

    \b
    Example: bench datasets list
    """
    from o2omarl.datasets import store

    rows = []
    for dataset_id in store.list_ids():
        try:
            rec = store.get(dataset_id)
            s = rec.stats
            rows.append({"id": dataset_id, "tier": rec.tier, "episodes": s["episodes"],
                         "steps": s["steps"], "mean return": f"{s['return_mean']:.2f}",
                         "win rate": f"{s['win_rate']:.3f}", "size": _mb(rec.size_bytes())})
        except BenchError as e:
            rows.append({"id": dataset_id, "tier": "DAMAGED", "episodes": str(e)})
    if not rows:
        click.echo(f"no datasets under {store.root()}; make one with "
                   "`bench collect --map 3m --behaviour heuristic`")
        return
    click.echo(_table(rows, ["id", "tier", "episodes", "steps", "mean return", "win rate",
                             "size"]))


@datasets.command("show")
@click.argument("dataset_id")
def datasets_show(dataset_id):
    """Everything recorded about one dataset version (JSON).

    \b
    Example: bench datasets show smax/3m/heuristic-v0
    """
    import json

    from o2omarl.datasets import store

    rec = store.get(dataset_id)
    click.echo(json.dumps({"path": str(rec.path), "size_bytes": rec.size_bytes(), **rec.meta},
                          indent=2, sort_keys=True))


@datasets.command("verify")
@click.argument("dataset_id", required=False)
@click.option("--all", "all_", is_flag=True, help="Verify every stored dataset.")
def datasets_verify(dataset_id, all_):
    """Check sha256 checksums, shapes against the spaces, and counts against the metadata.

    \b
    Example: bench datasets verify smax/3m/heuristic-v0
             bench datasets verify --all
    """
    from o2omarl.datasets import store, verify

    if bool(dataset_id) == all_:
        raise click.UsageError("give either a DATASET_ID or --all")
    ids = store.list_ids() if all_ else [dataset_id]
    bad = 0
    for i in ids:
        try:
            problems = verify(store.get(i))
        except BenchError as e:
            problems = [str(e)]
        if problems:
            bad += 1
            click.echo(f"DAMAGED {i}: {problems[0]}")
        else:
            click.echo(f"ok      {i}")
    if bad:
        raise BenchError(f"{bad} of {len(ids)} dataset(s) failed verification")


@datasets.command("delete")
@click.argument("dataset_id")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (scripts); without a terminal, "
              "nothing is asked either.")
def datasets_delete(dataset_id, yes):
    """Delete one dataset version (asks first on a terminal).

    \b
    Example: bench datasets delete smax/3m/heuristic-v1 --yes
    """
    from o2omarl.datasets import store

    rec = store.get(dataset_id)  # an unknown id fails here, before any question
    if not yes and sys.stdin.isatty():
        click.confirm(f"delete {dataset_id} ({rec.stats['episodes']} episodes, "
                      f"{_mb(rec.size_bytes())}, {rec.path})?", abort=True, err=True)
    path = store.delete(dataset_id)
    click.echo(f"deleted {dataset_id} ({path})")


def main(argv=None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="bench")
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except BenchError as e:
        if debug:
            traceback.print_exc()
        click.echo(f"{'interrupted' if isinstance(e, Interrupted) else 'error'}: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        if debug:
            traceback.print_exc()
        # Every writer goes through o2omarl.atomic: the partial file is already gone.
        click.echo(f"error: no space left on device while writing {e.filename or 'a file'}; "
                   "nothing half-written was kept; free some space and rerun", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
