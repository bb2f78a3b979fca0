"""Baseline vs current figures, metric by metric, with a direction and a tolerance each."""

from __future__ import annotations

from dataclasses import dataclass

from ran_edge.regress.baseline import Figures
from ran_edge.regress.config import DIRECTIONS


@dataclass(frozen=True)
class Delta:
    entry: str
    metric: str
    baseline: float | None
    current: float | None
    tolerance_pct: float
    verdict: str  # "better", "worse", "same", "new", "missing", "below floor"
    change_pct: float | None

    @property
    def regression(self) -> bool:
        return self.verdict in ("worse", "below floor")


def _change_pct(baseline: float, current: float) -> float:
    if baseline == 0:
        return 0.0 if current == 0 else float("inf") * (1 if current > 0 else -1)
    return 100.0 * (current - baseline) / abs(baseline)


def compare(baseline: Figures, current: Figures, tolerance) -> list[Delta]:
    """`tolerance(metric)` gives the allowed relative change (percent) before a verdict."""
    deltas = []
    for entry in sorted(set(baseline) | set(current)):
        old, new = baseline.get(entry, {}), current.get(entry, {})
        for metric in sorted(set(old) | set(new)):
            tol = tolerance(metric)
            if metric not in new:
                deltas.append(Delta(entry, metric, old[metric], None, tol, "missing", None))
                continue
            if metric not in old:
                deltas.append(Delta(entry, metric, None, new[metric], tol, "new", None))
                continue
            change = _change_pct(old[metric], new[metric])
            higher_is_better = DIRECTIONS[metric]
            improved = change > 0 if higher_is_better else change < 0
            if abs(change) <= tol:
                verdict = "same"
            else:
                verdict = "better" if improved else "worse"
            deltas.append(Delta(entry, metric, old[metric], new[metric], tol, verdict, change))
    return deltas


def floor_violations(current: Figures, floors: dict[str, float]) -> list[Delta]:
    """Absolute minimums (e.g. SQNR >= 25 dB), whatever the baseline says."""
    found = []
    for entry in sorted(current):
        for metric, floor in sorted(floors.items()):
            value = current[entry].get(metric)
            if value is not None and value < floor:
                found.append(Delta(entry, metric, floor, value, 0.0, "below floor", None))
    return found
