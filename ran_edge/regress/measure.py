"""Current figures for the gate: built through the pipeline, or read from existing reports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ran_edge.errors import UsageError
from ran_edge.progress import SILENT
from ran_edge.regress.baseline import Figures, entry_key
from ran_edge.regress.config import DIRECTIONS, FIDELITY_METRICS, GateConfig, ModelCase
from ran_edge.report.model import REPORT_FILE, Report, load_report

if TYPE_CHECKING:
    from ran_edge.progress import BuildProgress


def figures_from_report(report: Report) -> dict[str, float]:
    """The gated figures of one report: Vela's, and int8 fidelity when it was measured
    (an absent or unavailable figure is left out: the comparison calls it missing)."""
    found = {}
    for metric in DIRECTIONS:
        if metric in FIDELITY_METRICS:
            value = report.fidelity_value(metric)
        else:
            value = report.value(metric)
        if value is not None:
            found[metric] = float(value)
    return found


def read_reports(config: GateConfig, reports_dir: Path) -> Figures:
    """Figures from `<reports_dir>/<model>/<target>/report.json` (no building). A report made
    with another version of a target's profile than the configured one is refused: its
    figures answer a different question than the baseline's."""
    from ran_edge.targets.loading import resolve_target

    figures: Figures = {}
    for case in config.models:
        for target in map(resolve_target, case.targets):
            path = reports_dir / case.name / target.name / REPORT_FILE
            if path.is_file():
                report = load_report(path)
                _check_same_profile(report, target, path)
                figures[entry_key(case.name, target.name)] = figures_from_report(report)
    if not figures:
        raise UsageError(
            f"no {REPORT_FILE} under {reports_dir} for the configured models; build them first."
        )
    return figures


def _check_same_profile(report: Report, target, path: Path) -> None:
    made_with = report.target.profile_sha256
    if made_with is not None and made_with != target.sha256:
        raise UsageError(
            f"{path} was made with target profile {report.target.profile_path} "
            f"(sha256 {made_with[:12]}), but {target.name} is now {target.source} "
            f"(sha256 {target.sha256[:12]}); rebuild the report (drop --reports) or gate "
            "with the profile it was made with."
        )


def build_reports(
    config: GateConfig, out: Path, progress: BuildProgress, ray_address: str | None = None
) -> Figures:
    """Build every configured model on its targets (incremental: unchanged inputs are reused);
    with `ray_address`, one Ray task per model (reports land in `out` on the worker's disk)."""
    figures: Figures = {}
    if ray_address is None:
        for case in config.models:
            figures |= case_figures(case, config.calib_samples, config.holdout, out, progress)
        return figures
    from ran_edge.jobs import JobPool

    cases = [_absolute(c) for c in config.models]  # a Ray worker has another working folder
    jobs = [(c, config.calib_samples, config.holdout, out.resolve()) for c in cases]
    done = 0
    with progress.measure(f"build {len(jobs)} models on Ray at {ray_address}") as update:

        def advance() -> None:
            nonlocal done
            done += 1
            if update is not None:
                update(done, len(jobs))

        JobPool(ray_address=ray_address).run(
            case_figures, jobs, lambda _i, result: figures.update(result), advance
        )
    return {case_key: figures[case_key] for case_key in sorted(figures)}


def case_figures(
    case: ModelCase,
    calib_samples: int,
    holdout: int,
    out: Path,
    progress: BuildProgress = SILENT,
) -> Figures:
    """One model's figures on each of its targets: the gate's job, local or on a Ray worker."""
    from ran_edge.build.many import build_many
    from ran_edge.build.requests import BuildRequest

    request = BuildRequest(
        model=case.spec,
        targets=tuple(case.targets),
        out=out,
        weights=case.weights,
        input_shape=case.input_shape,
        name=case.name,  # the entry's label names the folder
        calib=case.calib,
        calib_samples=calib_samples,
        holdout=holdout,
        allow_cpu_fallback=True,
        incremental=True,
    )
    return {
        entry_key(case.name, built.target.name): figures_from_report(built.report)
        for built in build_many(request, progress).builds
    }


def _absolute(case: ModelCase) -> ModelCase:
    """`case` with its model, weights and calibration paths made absolute (names kept)."""
    from ran_edge.model_files import absolute_spec  # torch: only when building

    def path(value: str | None) -> str | None:
        return str(Path(value).resolve()) if value and Path(value).exists() else value

    return replace(
        case, spec=absolute_spec(case.spec), weights=path(case.weights), calib=path(case.calib)
    )
