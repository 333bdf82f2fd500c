"""The README's Python API example, executed as written (a user copies it into a script)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_the_readme_api_example_runs_as_written(tmp_path):
    text = README.read_text()
    code = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path / "minari"))
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("100 episodes,")
    last = lines[-1].split(" ", 2)
    assert last[:2] == ["ovmse", "0"]
    rows = eval(last[2])  # noqa: S307 - the example's own printed list of (step, win rate)
    # the default evaluation spacing: budget / 20, so 21 evaluations including step 0
    assert len(rows) == 21 and rows[0][0] == 0 and rows[-1][0] == 4000
    assert all(0.0 <= w <= 1.0 for _, w in rows)
    assert (tmp_path / "runs/api/3m/heuristic-v0/ovmse/seed_0/metrics.jsonl").exists()


def test_the_methods_table_is_the_registry():
    """`bench run` refuses an unknown method from the table, before torch is imported; each
    row's class carries the row's name, and its start (offline weights or not) is the one the
    ablation assumes."""
    from o2omarl import methods
    from o2omarl.benchmark.registry import METHODS

    assert list(METHODS) == list(methods.ORDER) and sorted(METHODS) == list(methods.NAMES)
    for row in methods.METHODS:
        cls = METHODS[row.name]
        assert cls.name == row.name
        if row.ablation:  # the 2 x 2 starts from the same offline weights
            assert cls.Config().init == "offline"
    assert methods.OVMSE_FAMILY == ("ovm", "se", "ovmse")
    assert [METHODS[m].Config().use_ovm for m in methods.OVMSE_FAMILY] == [True, False, True]
    assert [METHODS[m].Config().use_se for m in methods.OVMSE_FAMILY] == [False, True, True]


def test_ovm_and_se_are_ovmse_at_one_setting_and_nothing_else():
    """The ablation's rows are settings over ovmse (issue 28): each class is ovmse's with one
    default changed, and no behaviour of its own."""
    from dataclasses import asdict

    from o2omarl.ovmse import Ovm, Ovmse, Se

    base = asdict(Ovmse.Config())
    for cls, setting in ((Ovm, {"use_se": False}), (Se, {"use_ovm": False})):
        changed = {k: v for k, v in asdict(cls.Config()).items() if base[k] != v}
        assert changed == setting, cls.name
        assert cls.__mro__[1] is Ovmse
        assert set(vars(cls)) - {"__module__", "__doc__", "__qualname__", "__firstlineno__",
                                 "__static_attributes__"} == {"name", "Config"}


def test_the_methods_table_and_planning_import_no_torch():
    code = ("import sys, o2omarl.methods, o2omarl.benchmark.jobs, o2omarl.reports.cells; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_shared_settings_are_the_fields_every_method_has_at_one_default():
    """methods.SHARED_SETTINGS (what a report checks across methods) is the configs' shared
    fields: all the learner's, the loop's and pretraining's, none a method sets its own way."""
    from dataclasses import fields

    from o2omarl import methods
    from o2omarl.benchmark.registry import METHODS
    from o2omarl.qmix import LearnerConfig, OnlineConfig

    defaults = [cls.Config() for cls in METHODS.values()]
    for key in methods.SHARED_SETTINGS:
        assert len({getattr(d, key) for d in defaults}) == 1, key
    budgets_and_schedule = {"steps", "pretrain_steps", "eps_end", "eps_anneal_steps"}
    learner_and_loop = {f.name for c in (LearnerConfig, OnlineConfig) for f in fields(c)}
    assert learner_and_loop - budgets_and_schedule <= set(methods.SHARED_SETTINGS)
    assert "eps_start" not in methods.SHARED_SETTINGS and "init" not in methods.SHARED_SETTINGS
