"""Metric records: every figure carries its unit and where it came from, or why it is missing.

Modelled on MLIA's versioned JSON: `{name, value, unit, source}` for a figure and
`{name, unit, availability: "unavailable", reason}` for one we cannot give, so a missing
figure explains itself instead of reading as 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    value: float | int | None = None
    source: str = "vela"  # "vela", "litert", "ran-edge" (derived), "measured", "estimated"
    reason: str = ""

    def to_json(self) -> dict:
        if self.value is None:
            return {
                "name": self.name,
                "unit": self.unit,
                "availability": "unavailable",
                "reason": self.reason,
            }
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = None if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return {"name": self.name, "value": value, "unit": self.unit, "source": self.source}


def unavailable(name: str, unit: str, reason: str) -> Metric:
    return Metric(name=name, unit=unit, value=None, reason=reason)


def metric_value(metrics: list[dict], name: str) -> float | int | None:
    """Look a figure up in a report's metric list (None if absent or unavailable)."""
    for m in metrics:
        if m["name"] == name:
            return m.get("value")
    return None
