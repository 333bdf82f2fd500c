"""`bench datasets list | show | verify | delete`."""

from __future__ import annotations

import json
import sys

import click

from o2omarl.cli import _mb, _table, cli, complete_dataset_ids
from o2omarl.errors import BenchError


@cli.group()
def datasets():
    """List, show, verify and delete stored datasets."""


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


@datasets.command("show")
@click.argument("dataset_id", shell_complete=complete_dataset_ids)
def datasets_show(dataset_id):
    """Everything recorded about one dataset version (JSON).

    \b
    Example: bench datasets show smax/3m/heuristic-v0
    """
    from o2omarl.datasets import store

    rec = store.get(dataset_id)
    click.echo(json.dumps({"path": str(rec.path), "size_bytes": rec.size_bytes(), **rec.meta},
                          indent=2, sort_keys=True))


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
