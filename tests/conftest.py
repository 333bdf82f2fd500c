"""Shared fixtures: every test session gets its own Minari root, never the user's ~/.minari."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="session")
def heuristic_3m(minari_root):
    """A small real heuristic dataset on 3m, collected once per session and shared read-only."""
    from o2omarl import datasets

    return datasets.collect("3m", "heuristic", episodes=60, seed=0, num_envs=16,
                            show_progress=False).record


@pytest.fixture
def fresh_root(tmp_path, monkeypatch):
    """An empty Minari root for tests that write, delete or corrupt datasets."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"
