"""The `advise` command as a function: build, find sites, cost, advise, and maybe apply."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ran_edge.advise.advice import (
    Advice,
    assess,
    graphs_to_measure,
    make_advice,
    report_metric,
    with_context,
)
from ran_edge.advise.apply import Replacement, apply_replacements, save_advised
from ran_edge.advise.context import context_savings
from ran_edge.advise.request import AdviseRequest
from ran_edge.advise.sites import find_sites, replaceable_model
from ran_edge.build.many import build_loaded
from ran_edge.calib import CalibrationData, load_calibration
from ran_edge.errors import UsageError
from ran_edge.jobs import JobPool
from ran_edge.model_files import absolute_spec, model_paths, source_record, spec_stem
from ran_edge.models import load_model
from ran_edge.models.loading import LoadedModel
from ran_edge.progress import BuildProgress
from ran_edge.search.table import CostTable
from ran_edge.shrink.distill import TrainConfig, agreement, train_student
from ran_edge.targets.loading import Target, resolve_target


@dataclass(frozen=True)
class Applied:
    """What --apply did and what it measured."""

    files: dict[str, str]
    replaced: tuple[str, ...]
    agreement_before: float | None  # top-1 agreement with the original, held-out images
    agreement_after: float | None
    epochs: int
    vela_fps: float  # the rewritten network, compiled by Vela
    vela_cycles: int
    report: str  # its report.json


@dataclass(frozen=True)
class AdviseResult:
    advice: Advice
    report: str  # the original network's report.json
    applied: Applied | None
    apply_requested: bool = False


def run_advise(req: AdviseRequest, progress: BuildProgress) -> AdviseResult:
    target = resolve_target(req.target)
    if not target.is_npu:
        raise UsageError(
            f"target {target.name!r} is a CPU; advise reads Vela's per-module figures, so it "
            "needs an Ethos-U target (see `ran-edge targets`)."
        )
    if req.model_spec.endswith(".pt2"):
        raise UsageError(
            f"{req.model_spec} is an exported graph with no module paths; advise needs the "
            "PyTorch module: pass a zoo name or path/to/file.py:factory (with --weights)."
        )
    apply_out = _apply_out(req) if req.apply else None  # checked before any work
    pool = JobPool(req.workers, req.ray_address)
    pool.check()
    with progress.stage(f"load model {req.model_spec}"):
        loaded = load_model(req.model_spec, weights=req.weights, input_shape=req.input_shape)
    with progress.stage("load calibration set"):
        data = load_calibration(
            req.calib,
            loaded.input_shape,
            num_samples=req.calib_samples,
            holdout=req.holdout,
            seed=req.seed,
        )
    (built,) = build_loaded(loaded, data, [target], req.out, weights=req.weights, progress=progress)
    teacher = replaceable_model(loaded.module)
    sites, skipped = find_sites(teacher, tuple(loaded.input_shape))
    assessed = assess(built.report, target.npu.macs_per_cycle, sites, req.thresholds)
    table = CostTable(target, req.cache_dir, pool=pool)
    specs = graphs_to_measure(assessed, req.thresholds, req.cost_all)
    label = f"cost replacements on {target.name}"
    table.measure_all(specs, label, progress=req.progress)
    advice = make_advice(
        model=loaded.name,
        target=target,
        report=built.report,
        assessed=assessed,
        skipped=skipped,
        thresholds=req.thresholds,
        measure=table.measure,
        cost_all=req.cost_all,
    )
    if req.in_context:
        savings = context_savings(
            absolute_spec(req.model_spec),
            Path(req.weights).resolve() if req.weights else None,
            tuple(loaded.input_shape),
            advice.blocks,
            target,
            seed=req.seed,
            progress=req.progress,
            pool=pool,
        )
        advice = with_context(advice, savings)
    report_path = str(built.out_dir / "report.json")
    if apply_out is None or not advice.recommended:
        return AdviseResult(advice, report_path, None, req.apply)
    applied = _apply(req, loaded, data, teacher, advice, apply_out, target, progress)
    return AdviseResult(advice, report_path, applied, True)


def _apply_out(req: AdviseRequest) -> Path:
    if req.apply_out is not None:
        return model_paths(req.apply_out).program
    name = spec_stem(req.model_spec)
    return req.out / f"{name}_advised" / f"{name}_advised.pt2"


def _apply(
    req: AdviseRequest,
    loaded: LoadedModel,
    data: CalibrationData,
    teacher: nn.Module,
    advice: Advice,
    out: Path,
    target: Target,
    progress: BuildProgress,
) -> Applied:
    replacements = [
        Replacement(b.site.path, b.site.slot, b.best.form) for b in advice.recommended if b.best
    ]
    paths = tuple(r.path for r in replacements)
    student = apply_replacements(copy.deepcopy(teacher), replacements, seed=req.seed)
    holdout = data.holdout
    before = agreement(student, teacher, holdout).top1_agreement if len(holdout) else None
    if req.epochs:
        train_student(
            student,
            data.samples,
            teacher=teacher,
            feature_paths=paths,
            config=TrainConfig(epochs=req.epochs, seed=req.seed, progress=req.progress),
            description="recover (distil from the original)",
        )
    after = agreement(student, teacher, holdout).top1_agreement if len(holdout) else None
    shape = tuple(loaded.input_shape)
    with progress.stage(f"save {out}"):
        files = save_advised(
            student,
            shape,
            out,
            source=source_record(req.model_spec, req.weights),
            replacements=replacements,
            record={
                "target": target.name,
                "predicted_fps": advice.predicted_fps,
                "original_fps": advice.fps,
                "recovery": {
                    "epochs": req.epochs,
                    "agreement_before": before,
                    "agreement_after": after,
                },
            },
        )
    with progress.stage("load the advised model"):
        advised = load_model(f"{files.factory}:make_model")
    (built,) = build_loaded(advised, data, [target], req.out, progress=progress)
    return Applied(
        files={k: str(v) for k, v in vars(files).items()},
        replaced=paths,
        agreement_before=before,
        agreement_after=after,
        epochs=req.epochs,
        vela_fps=report_metric(built.report, "inferences_per_second"),
        vela_cycles=int(report_metric(built.report, "cycles_total")),
        report=str(built.out_dir / "report.json"),
    )
