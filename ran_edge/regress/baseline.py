"""The committed baseline: one JSON file, sorted and stably formatted so diffs review well."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ran_edge.atomic import write_atomic
from ran_edge.errors import UsageError
from ran_edge.regress.config import DIRECTIONS

SCHEMA = "ran-edge/baseline"
SCHEMA_VERSION = 1

Figures = dict[str, dict[str, float]]  # "model@target" -> metric -> value


def entry_key(model: str, target: str) -> str:
    return f"{model}@{target}"


def _round(value: float) -> float | int:
    """Keep baselines readable: integers stay integers, floats get 6 significant digits."""
    if isinstance(value, int) or float(value).is_integer():
        return int(value)
    return float(f"{value:.6g}")


def dumps_baseline(figures: Figures, tools: dict[str, str]) -> str:
    payload = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "tools": dict(sorted(tools.items())),
        "entries": {
            key: {m: _round(v) for m, v in sorted(metrics.items())}
            for key, metrics in sorted(figures.items())
        },
    }
    return json.dumps(payload, indent=2, sort_keys=False) + "\n"


def write_baseline(path: Path, figures: Figures, tools: dict[str, str]) -> None:
    write_atomic(path, dumps_baseline(figures, tools).encode())


def read_baseline(path: Path) -> tuple[Figures, dict[str, str]]:
    """Parse and validate; a corrupt or hand-broken file gets a message naming the spot."""
    fix = "fix it, or regenerate it with `ran-edge regress --update`"
    if not path.is_file():
        raise UsageError(
            f"baseline {path} does not exist; create it with `ran-edge regress --update`."
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"baseline {path} is not valid JSON ({exc}); {fix}.") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"baseline {path} is not a ran-edge baseline (schema {SCHEMA!r}); {fix}.")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"baseline {path} has schema_version {data.get('schema_version')!r}, "
            f"this ran-edge reads {SCHEMA_VERSION}; {fix}."
        )
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise UsageError(f"baseline {path}: `entries` must be an object; {fix}.")
    figures: Figures = {}
    for key, metrics in entries.items():
        if "@" not in key or not isinstance(metrics, dict):
            raise UsageError(
                f"baseline {path}: entry {key!r} must be 'model@target' -> {{metric: number}}; {fix}."
            )
        for metric, value in metrics.items():
            if metric not in DIRECTIONS:
                raise UsageError(
                    f"baseline {path}: entry {key!r} has unknown metric {metric!r}; {fix}."
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise UsageError(
                    f"baseline {path}: {key} {metric} = {value!r} is not a finite number; {fix}."
                )
        figures[key] = {m: float(v) for m, v in metrics.items()}
    tools = data.get("tools", {})
    return figures, tools if isinstance(tools, dict) else {}
