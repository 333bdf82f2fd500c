"""`bench settings`: every `--set` key of a method with its default, accepted values and help,
from the config dataclasses themselves; the README's settings table is its output."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest

from o2omarl.benchmark.registry import METHODS
from o2omarl.settings import describe, settings_table
from test_errors import bench

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_settings_table_is_the_commands_output(capsys):
    block = re.search(r"<!-- settings: begin[^\n]*-->\n(.*?)\n<!-- settings: end -->",
                      README.read_text(), re.S).group(1)
    code, out, err = bench(["settings"], capsys)
    assert code == 0, err
    assert block == out.strip() == settings_table({m: c.Config for m, c in METHODS.items()}), \
        "README's settings table is stale: paste `bench settings` between its markers"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_key_of_a_method_is_listed_with_its_default_and_a_help(method, capsys):
    config = METHODS[method].Config
    code, out, err = bench(["settings", method, "--json"], capsys)
    assert code == 0, err
    rows = {r["key"]: r for r in json.loads(out)}
    assert list(rows) == [f.name for f in fields(config)]  # every key `--set` accepts
    built = config.build()
    for key, row in rows.items():
        assert row["default"] == getattr(built, key), key
        assert row["help"], f"{method}: {key} has no help (declare it with settings.setting)"
    assert rows["lr"]["accepted"] == "a number > 0"
    assert rows["offline_loss"]["accepted"] == "cql, cfcql"


def test_a_subclass_default_keeps_its_parents_help_and_shows_where_it_differs():
    by_key = {m: {r["key"]: r for r in describe(c.Config)} for m, c in METHODS.items()}
    assert by_key["ovmse"]["eps_start"]["default"] == 0.2
    assert by_key["ovmse"]["eps_start"]["help"] == by_key["qmix"]["eps_start"]["help"]
    table = settings_table({m: c.Config for m, c in METHODS.items()})
    (eps,) = [line for line in table.splitlines() if line.startswith("| `eps_start`")]
    assert "`0.2`; qmix, ft-qmix, cql-ft, hybrid: `1.0`" in eps
    (ovm,) = [line for line in table.splitlines() if line.startswith("| `use_ovm`")]
    assert ovm.startswith("| `use_ovm` (ovm, se, ovmse) | `true`; se: `false` |")


def test_an_unknown_method_is_one_line(capsys):
    code, out, err = bench(["settings", "ovmes"], capsys)
    assert code == 2 and err.strip().splitlines() == [
        "error: unknown method 'ovmes' (did you mean 'ovmse'?); accepted: cql-ft, ft-qmix, "
        "hybrid, ovm, ovmse, qmix, se, sim2o, wsrl"]
