"""Current figures for the gate: built through the pipeline, or read from existing reports."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ran_edge.errors import UsageError
from ran_edge.regress.baseline import Figures, entry_key
from ran_edge.regress.config import DIRECTIONS, FIDELITY_METRICS, GateConfig
from ran_edge.report.metrics import metric_value

REPORT = "report.json"


def figures_from_report(report: dict) -> dict[str, float]:
    """The gated figures of one report: Vela's, and int8 fidelity when it was measured."""
    fidelity = (report.get("fidelity") or {}).get("metrics", [])
    found = {}
    for metric in DIRECTIONS:
        source = fidelity if metric in FIDELITY_METRICS else report["metrics"]
        value = metric_value(source, metric)
        if value is not None:
            found[metric] = float(value)
    return found


def read_reports(config: GateConfig, reports_dir: Path) -> Figures:
    """Figures from `<reports_dir>/<model>/<target>/report.json` (no building)."""
    figures: Figures = {}
    for case in config.models:
        for target in case.targets:
            path = reports_dir / case.name / target / REPORT
            if path.is_file():
                figures[entry_key(case.name, target)] = figures_from_report(
                    json.loads(path.read_text())
                )
    if not figures:
        raise UsageError(
            f"no report.json under {reports_dir} for the configured models; build them first."
        )
    return figures


def build_reports(config: GateConfig, out: Path, stage: Callable) -> Figures:
    """Build every configured model on its targets (incremental: unchanged inputs are reused)."""
    from ran_edge.calib import load_calibration
    from ran_edge.models import load_model
    from ran_edge.pipeline import (
        build_target,
        convert_model,
        inputs_fingerprint,
        resolve_targets,
        reuse_if_up_to_date,
    )

    figures: Figures = {}
    for case in config.models:
        targets = resolve_targets(case.targets)
        with stage(f"{case.name}: load"):
            loaded = load_model(case.spec, weights=case.weights, input_shape=case.input_shape)
            loaded = replace(loaded, name=case.name)  # the entry's label names the folder
            calib = load_calibration(
                case.calib,
                loaded.input_shape,
                num_samples=config.calib_samples,
                holdout=config.holdout,
            )
        converted = None
        for target in targets:
            fingerprint = inputs_fingerprint(loaded, calib, target, allow_cpu_fallback=True)
            built = reuse_if_up_to_date(out, case.name, target, fingerprint)
            if built is None:
                if converted is None:
                    converted = convert_model(loaded, calib, stage=stage)
                with stage(f"{case.name}: Vela for {target.name}"):
                    built = build_target(
                        converted, target, out, allow_cpu_fallback=True, fingerprint=fingerprint
                    )
            figures[entry_key(case.name, target.name)] = figures_from_report(built.report)
    return figures
