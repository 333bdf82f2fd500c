"""`bench datasets list | show | verify | delete | export | import`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from o2omarl.cli import _mb, _table, cli, complete_dataset_ids
from o2omarl.errors import BenchError


@cli.group()
def datasets():
    """List, show, verify, delete, export and import stored datasets."""


@datasets.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON list, raw numbers (scripts).")
def datasets_list(as_json):
    """A table of every stored dataset.

    \b
    Example: bench datasets list
             bench datasets list --json
    """
    from o2omarl.datasets import store

    rows, raw = [], []
    for dataset_id in store.list_ids():
        try:
            rec = store.get(dataset_id)
            s = rec.stats
            rows.append({"id": dataset_id, "tier": rec.tier, "episodes": s["episodes"],
                         "steps": s["steps"], "mean return": f"{s['return_mean']:.2f}",
                         "win rate": f"{s['win_rate']:.3f}", "size": _mb(rec.size_bytes())})
            raw.append({"id": dataset_id, "tier": rec.tier, "episodes": s["episodes"],
                        "steps": s["steps"], "return_mean": s["return_mean"],
                        "win_rate": s["win_rate"], "size_bytes": rec.size_bytes(),
                        "path": str(rec.path)})
        except BenchError as e:
            rows.append({"id": dataset_id, "tier": "DAMAGED", "episodes": str(e)})
            raw.append({"id": dataset_id, "damaged": str(e)})
    if as_json:
        click.echo(json.dumps(raw))
        return
    if not rows:
        click.echo(f"no datasets under {store.root()}; make one with "
                   "`bench collect --map 3m --behaviour heuristic`")
        return
    click.echo(_table(rows, ["id", "tier", "episodes", "steps", "mean return", "win rate",
                             "size"]))
    damaged = sum(r["tier"] == "DAMAGED" for r in rows)
    click.echo(f"{len(rows)} dataset{'s' * (len(rows) != 1)}"
               + (f", {damaged} DAMAGED (`bench datasets verify ID` says what)" if damaged
                  else ""))


@datasets.command("show")
@click.argument("dataset_id", shell_complete=complete_dataset_ids)
def datasets_show(dataset_id):
    """Everything recorded about one dataset version (JSON), its card in `stats`.

    The card: episodes, steps (transitions), return mean, sd, min and max, win rate, mean
    episode length, and SACo (distinct (state with each feature rounded to 0 or 1, joint
    action) pairs / steps; README, "Dataset cards"), computed from the episodes for versions
    written before it.

    \b
    Example: bench datasets show smax/3m/heuristic-v0
    """
    from o2omarl.datasets import card, store

    rec = store.get(dataset_id)
    click.echo(json.dumps({"path": str(rec.path), "size_bytes": rec.size_bytes(), **rec.meta,
                           "stats": card(rec)}, indent=2, sort_keys=True))


@datasets.command("verify")
@click.argument("dataset_id", required=False, shell_complete=complete_dataset_ids)
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
@click.argument("dataset_id", shell_complete=complete_dataset_ids)
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


def _format(fmt: str | None) -> str:
    from o2omarl.datasets.exchange import FORMATS
    from o2omarl.errors import UsageError

    if fmt is None:
        raise UsageError(f"give --format, one of: {', '.join(FORMATS)}")
    return fmt


@datasets.command("export")
@click.argument("dataset_id", shell_complete=complete_dataset_ids)
@click.argument("out_dir", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", metavar="og-marl|pettingzoo",
              help="og-marl: a flashbax Vault as OG-MARL reads it; pettingzoo: one HDF5 file "
              "with per-agent arrays keyed by agent name (layouts: README, Datasets).")
def datasets_export(dataset_id, out_dir, fmt):
    """Write a dataset version for OG-MARL or for per-agent (PettingZoo-style) code.

    \b
    Example: bench datasets export smax/3m/heuristic-v0 --format og-marl exports/
             bench datasets export smax/3m/heuristic-v0 --format pettingzoo exports/
    """
    from o2omarl.datasets import exchange

    fmt = _format(fmt)
    rec, path = exchange.export(dataset_id, fmt, out_dir)
    click.echo(f"exported {rec.dataset_id} ({rec.stats['episodes']} episodes, "
               f"{rec.stats['steps']} steps) as {fmt} to {path}")
    if fmt == "og-marl":
        # OG-MARL's own convention: vaults/<env>/<scenario>.vlt/<dataset>.
        env, scenario = path.parent.parent.name, path.parent.name.removesuffix(".vlt")
        click.echo(f"read it with OG-MARL: FlashbaxReplayBuffer(...).populate_from_vault("
                   f"{env!r}, {scenario!r}, {path.name!r}, rel_dir={str(path.parents[2])!r})")
    else:
        click.echo(f"per-agent arrays: h5py.File({str(path)!r})"
                   "['episode_0/agent_0/observations']")


@datasets.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", metavar="og-marl|pettingzoo",
              help="The layout of PATH: a Vault folder (og-marl) or an HDF5 file (pettingzoo).")
@click.option("--map", "map_name", help="The map it was recorded on (default: what an o2omarl "
              "export recorded in it).")
@click.option("--tier", help="The tier to store it under (default: the exported tier, else "
              "'imported'); the version is the next free one.")
@click.option("--backend", help="smax or smac (default: the recorded one, else smax).")
def datasets_import(path, fmt, map_name, tier, backend):
    """Store an OG-MARL vault or a per-agent HDF5 file as a new dataset version.

    Every episode is checked against the map first; nothing is written if one fails.

    \b
    Example: bench datasets import exports/smax/3m.vlt/heuristic-v0 --format og-marl
             bench datasets import exports/smax/3m/heuristic-v0.hdf5 --format pettingzoo
             bench datasets import vaults/smax/3m.vlt/Good --format og-marl --map 3m --tier good
    """
    from o2omarl.datasets import exchange

    res = exchange.import_dataset(path, _format(fmt), map_name, tier, backend)
    rec, s = res.record, res.record.stats
    if res.reused:
        click.echo(f"{path} is already stored as {rec.dataset_id} (same bytes); nothing written")
    else:
        click.echo(f"imported {path} as {rec.dataset_id}: {s['episodes']} episodes, "
                   f"{s['steps']} steps, mean return {s['return_mean']:.2f}, win rate "
                   f"{s['win_rate']:.3f}")
    for what in res.filled_in:
        click.echo(f"filled in: {what}")
