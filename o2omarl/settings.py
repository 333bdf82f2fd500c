"""Config fields that describe themselves, and how counts are written.

`setting(default, help)` declares a field with its one-line help, and `describe` lists a config
class's fields with default, accepted values and help for `bench settings` and the README's
settings table (generated, kept equal by a test). `parse_count` is the one rule for whole
numbers: `--steps`, sweep files and `--set` alike.

The reasons behind a default stay in comments beside the field; the help says what it is.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields
from decimal import Decimal, InvalidOperation


def parse_count(value) -> int:
    """A whole number as researchers write budgets: 100000, 100_000, 1e5, 100k, 2M (ValueError
    otherwise)."""
    if isinstance(value, bool):
        raise ValueError(value)
    text = str(value).strip().replace("_", "")
    scale = {"k": 1000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    try:
        number = Decimal(text[:-1] if scale > 1 else text) * scale
    except InvalidOperation:
        raise ValueError(value) from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(value)
    return int(number)


def setting(default, help: str):
    """A config field with a default and a one-line help."""
    return field(default=default, metadata={"help": help})


def help_of(cls: type, name: str) -> str:
    """A field's help, from the nearest class in the MRO that declared it with one (a subclass
    that only changes a default keeps its parent's help)."""
    for klass in cls.__mro__:
        f = getattr(klass, "__dataclass_fields__", {}).get(name)
        if f is not None and "help" in f.metadata:
            return f.metadata["help"]
    return ""


def accepted(cls: type, name: str, kind: type) -> str:
    """What a field accepts: its choices, its range, or its type."""
    if name in getattr(cls, "CHOICES", {}):
        return ", ".join(cls.CHOICES[name])
    if name in getattr(cls, "RANGES", {}):
        return cls.RANGES[name][0]
    return "true, false" if kind is bool else f"a {kind.__name__}"


def describe(cls: type) -> list[dict]:
    """One row per field of the config dataclass `cls`: key, default, accepted, help."""
    rows = []
    for f in fields(cls):
        default = f.default if f.default is not MISSING else f.default_factory()
        rows.append({"key": f.name, "default": default,
                     "accepted": accepted(cls, f.name, type(default)),
                     "help": help_of(cls, f.name)})
    return rows


def shown(value) -> str:
    """A default as it is typed after --set."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def settings_table(configs: dict[str, type]) -> str:
    """The README's table: every key of every method's config once, with the default most
    methods share and the methods that differ named beside it."""
    described = {name: {r["key"]: r for r in describe(cls)} for name, cls in configs.items()}
    keys = list(dict.fromkeys(k for rows in described.values() for k in rows))
    lines = ["| key | default | accepted | meaning |", "|---|---|---|---|"]
    for key in keys:
        having = {m: rows[key] for m, rows in described.items() if key in rows}
        by_default: dict[str, list[str]] = {}
        for m, row in having.items():
            by_default.setdefault(shown(row["default"]), []).append(m)
        common = max(by_default, key=lambda d: len(by_default[d]))
        default = f"`{common}`" + "".join(
            f"; {', '.join(ms)}: `{d}`" for d, ms in by_default.items() if d != common)
        row = next(iter(having.values()))
        only = f" ({', '.join(having)})" if len(having) < len(described) else ""
        lines.append(f"| `{key}`{only} | {default} | {row['accepted']} | {row['help']} |")
    return "\n".join(lines)
