"""Every runnable method, by the name users type (`bench run NAME`)."""

from __future__ import annotations

from o2omarl.baselines import BASELINES
from o2omarl.benchmark.algorithm import Algorithm
from o2omarl.errors import one_of
from o2omarl.ovmse import METHODS as OVMSE_METHODS

METHODS: dict[str, type[Algorithm]] = {cls.name: cls for cls in (*BASELINES, *OVMSE_METHODS)}


def get(name: str) -> type[Algorithm]:
    if name not in METHODS:
        raise one_of("method", name, sorted(METHODS))
    return METHODS[name]
