"""`bench eval`: watch a saved policy (win rate, return, length with intervals; a replay)."""

from __future__ import annotations

import json

import click

from o2omarl.cli import COUNT, cli
from o2omarl.protocol import EVAL_EPISODES


@cli.command("eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--episodes", type=COUNT, default=EVAL_EPISODES, show_default=True,
              help="Greedy battles to play (32 = a run's evaluation).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="The battles: those the evaluations of the run with this seed play.")
@click.option("--map", "map_name", default=None,
              help="Refuse a checkpoint of any other map [default: the checkpoint's].")
@click.option("--render", type=click.Path(dir_okay=False), default=None,
              help="Draw one greedy battle into OUT.gif (or OUT.mp4, which needs ffmpeg).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (scripts).")
def evaluate(checkpoint, episodes, seed, map_name, render, as_json):
    """Greedy evaluation of any saved model, with 95% intervals; optionally a replay.

    CHECKPOINT is a model.pt or checkpoint.pt that `bench run` wrote (or a cached pretrained
    model.pt). The win rate's interval is Wilson's, the return's and length's Student's t.

    \b
    Examples:
      bench eval runs/3m/medium-v0/ovmse/seed_0/model.pt
      bench eval runs/3m/medium-v0/ovmse/seed_0/model.pt --episodes 200 --render battle.gif
    """
    from o2omarl.benchmark.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, episodes, seed, map_name, render)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    click.echo(f"{result.method} checkpoint {result.checkpoint} on {result.backend}/"
               f"{result.map_name}: {result.episodes} greedy episodes (seed {result.seed})")
    click.echo(f"win rate  {result.win_rate.text('.3f')}")
    click.echo(f"return    {result.ret.text('.2f')}")
    click.echo(f"length    {result.length.text('.1f')}")
    click.echo(f"Q_tot     {result.q_tot:.2f} vs {result.earned:.2f} earned "
               f"({result.calibration:.2f}x): its greedy actions' values against the "
               "discounted return that followed them")
    if result.replay:
        r = result.replay
        click.echo(f"replay    {r.path}: one battle, {'won' if r.won else 'lost'} in {r.steps} "
                   f"steps (return {r.ret:.2f}), {r.frames} frames of {r.width}x{r.height}")
