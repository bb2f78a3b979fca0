"""Metric records: every figure carries its unit and where it came from, or why it is missing.

Modelled on MLIA's versioned JSON: `{name, value, unit, source}` for a figure and
`{name, unit, availability: "unavailable", reason}` for one we cannot give, so a missing
figure explains itself instead of reading as 0. The record is `ran_edge.report.model.
MetricValue` (here as `Metric`, the name the writers use); readers find figures with
`Report.metric` / `Report.value`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ran_edge.report.model import MetricValue, find_metric

Metric = MetricValue


def unavailable(name: str, unit: str, reason: str) -> Metric:
    return Metric(name=name, unit=unit, value=None, source=None, reason=reason)


def metric_value(metrics: Iterable[Mapping], name: str) -> float | int | None:
    """A figure from a raw metric list (None if absent or unavailable), for code that holds
    report.json as a dict; code that holds a `Report` calls `report.value(name)`."""
    found = find_metric(map(MetricValue.from_json, metrics), name)
    return None if found is None else found.value


__all__ = ["Metric", "MetricValue", "metric_value", "unavailable"]
