"""`bench`: a thin Click layer. Each command parses, calls one library function, prints
(`commands.py`: collect, run, runs, report, perf, maps; `datasets.py`: the datasets group;
`evaluate.py`: eval).

Library errors (`o2omarl.errors`) become one line on stderr and exit code 2 (usage) or 1
(failure); `--debug` shows the traceback instead.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
import traceback

import click

from o2omarl import interrupts
from o2omarl.errors import BenchError, Interrupted


def _table(rows: list[dict], columns: list[str]) -> str:
    """A plain aligned text table (readable in logs, copyable into Markdown with little work)."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


class Count(click.ParamType):
    """A whole number as researchers write budgets: 100000, 100_000, 1e5, 100k, 2M."""

    name = "count"

    def convert(self, value, param, ctx):
        from o2omarl.settings import parse_count  # one rule: CLI, sweep files and --set

        try:
            return parse_count(value)
        except ValueError:
            self.fail(f"{value!r} is not a whole number (e.g. 100000, 1e5, 100k)", param, ctx)


COUNT = Count()


def complete_methods(ctx, param, incomplete: str) -> list[str]:
    """Shell completion of method names (see README, "Shell completion")."""
    from o2omarl.methods import NAMES

    return [m for m in NAMES if m.startswith(incomplete)]


def complete_dataset_ids(ctx, param, incomplete: str) -> list[str]:
    """Shell completion of stored dataset ids (no simulator is imported)."""
    from o2omarl.datasets import store

    return [i for i in store.list_ids() if i.startswith(incomplete)]


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="o2omarl", prog_name="bench",
                      message="%(prog)s (o2omarl) %(version)s")
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


def main(argv=None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    # Until a command's loop installs its own stop flag (run, collect), SIGTERM is Ctrl-C:
    # exit 130 with a line, never killed mid-write by the default handler. A raise that a
    # callback swallows is handed to the next loop (`interrupts.terminate`).
    main_thread = threading.current_thread() is threading.main_thread()
    interrupts.forget()
    before = ({s: signal.signal(s, interrupts.terminate) for s in (signal.SIGINT, signal.SIGTERM)}
              if main_thread else {})
    try:
        _main(argv, debug)
    finally:
        for s, handler in before.items():  # `main` called in-process leaves them as they were
            signal.signal(s, handler)


def _main(argv, debug: bool) -> None:
    try:
        cli.main(args=argv, standalone_mode=False, prog_name="bench")
    except click.exceptions.Abort:  # click's form of a KeyboardInterrupt
        click.echo("interrupted", err=True)
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


# The commands register themselves on `cli` (imported last: they import `cli` from here).
from o2omarl.cli import commands, datasets, evaluate  # noqa: E402,F401
