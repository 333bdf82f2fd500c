"""Every runnable method's class, by the name users type (`bench run NAME`): the rows of
`o2omarl.methods`, loaded (this imports torch and every method)."""

from __future__ import annotations

from o2omarl import methods
from o2omarl.benchmark.algorithm import Algorithm
from o2omarl.errors import one_of

METHODS: dict[str, type[Algorithm]] = {m.name: m.load() for m in methods.METHODS}


def get(name: str) -> type[Algorithm]:
    if name not in METHODS:
        raise one_of("method", name, methods.NAMES)
    return METHODS[name]
