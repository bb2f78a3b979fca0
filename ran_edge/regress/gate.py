"""The `regress` command as one call: figures now (built, or read from reports) against the
committed baseline and the configured floors, or a rewritten baseline with --update."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ran_edge.jobs import JobPool
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.regress.baseline import read_baseline, write_baseline
from ran_edge.regress.compare import Delta, compare, floor_violations
from ran_edge.regress.config import load_config
from ran_edge.regress.junit import write_junit
from ran_edge.regress.measure import build_reports, read_reports
from ran_edge.report.json_report import tool_versions


@dataclass(frozen=True)
class GateRequest:
    baseline: Path = Path("ci/baselines.json")
    config: Path = Path("ci/regress.toml")
    reports: Path | None = None  # read <dir>/<model>/<target>/report.json instead of building
    out: Path = Path("build/regress")
    update: bool = False
    junit: Path | None = None
    ray_address: str | None = None  # build each model as a task on this Ray cluster


@dataclass(frozen=True)
class GateResult:
    deltas: tuple[Delta, ...] = ()
    updated: int | None = None  # entries written by --update (None: a comparison was made)

    @property
    def regressions(self) -> list[Delta]:
        return [d for d in self.deltas if d.regression]

    def to_json(self) -> dict:
        return {
            "regressions": len(self.regressions),
            "deltas": [vars(d) | {"regression": d.regression} for d in self.deltas],
        }

    def failure(self) -> str | None:
        """What a failed gate says, naming every metric that regressed (None: it passed)."""
        if not self.regressions:
            return None
        names = ", ".join(sorted({f"{d.entry} {d.metric}" for d in self.regressions}))
        return (
            f"{len(self.regressions)} metric(s) worse than their tolerance or floor: {names}. "
            "If the change is intended, run `ran-edge regress --update` and commit the "
            "baseline (floors are set in the config's [floors])."
        )


def run_gate(request: GateRequest, progress: BuildProgress = SILENT) -> GateResult:
    config = load_config(request.config)
    if request.reports is None:
        JobPool(ray_address=request.ray_address).check()
    old = {} if request.update else read_baseline(request.baseline)[0]
    if request.reports is not None:
        current = read_reports(config, request.reports)
    else:
        current = build_reports(config, request.out, progress, request.ray_address)
    if request.update:
        write_baseline(request.baseline, current, tool_versions())
        return GateResult(updated=len(current))
    deltas = compare(old, current, config.tolerance) + floor_violations(current, config.floors)
    if request.junit:
        write_junit(request.junit, deltas)
    return GateResult(tuple(deltas))
