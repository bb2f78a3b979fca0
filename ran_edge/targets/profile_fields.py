"""Reading typed fields out of a target profile's TOML tables, with errors that name the fix."""

from __future__ import annotations

from ran_edge.errors import UsageError

DOC = "targets/README.md"


def require(table: dict, key: str, where: str, kind: type | tuple[type, ...]):
    """`table[key]`, or a UsageError naming the file and the missing or mistyped field."""
    if key not in table:
        raise UsageError(f"target profile {where} lacks `{key}`: add it (see {DOC}).")
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise UsageError(
            f"target profile {where}: `{key}` = {value!r} has the wrong type; "
            f"expected {getattr(kind, '__name__', kind)} (see {DOC})."
        )
    return value


def _tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def table(data: dict, key: str, where: str, *, required: bool = True) -> dict:
    """A sub-table such as [cpu]; an empty dict when optional and absent."""
    if key not in data and not required:
        return {}
    value = require(data, key, where, dict)
    return value


def positive(table_: dict, key: str, where: str, *, default: float | None = None) -> float | None:
    """A positive number (int or float), or `default` when absent."""
    if key not in table_:
        return default
    value = require(table_, key, where, (int, float))
    if value <= 0:
        raise UsageError(f"target profile {where}: `{key}` must be positive, got {value!r}.")
    return float(value)


def positive_int(table_: dict, key: str, where: str, *, default: int | None = None) -> int | None:
    if key not in table_:
        return default
    value = require(table_, key, where, int)
    if value <= 0:
        raise UsageError(f"target profile {where}: `{key}` must be a positive int, got {value!r}.")
    return value
