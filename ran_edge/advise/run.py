"""The `advise` command as a function: build, find sites, cost, advise, and maybe apply."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from ran_edge.advise.advice import (
    Advice,
    assess,
    forms_for,
    graphs_to_measure,
    make_advice,
    report_metric,
    target_rates,
    with_context,
)
from ran_edge.advise.apply import Replacement, apply_replacements, save_advised
from ran_edge.advise.context import context_savings
from ran_edge.advise.forms import MIN_CHANNELS, conv_stand_ins
from ran_edge.advise.request import CONV_FORMS, AdviseRequest
from ran_edge.advise.sites import Site, find_sites, replaceable_model
from ran_edge.build.many import build_loaded
from ran_edge.calib import CalibrationData, load_calibration
from ran_edge.errors import UsageError
from ran_edge.jobs import JobPool
from ran_edge.model_files import absolute_spec, model_paths, source_record, spec_stem
from ran_edge.models import load_model
from ran_edge.models.loading import LoadedModel
from ran_edge.models.registry import measure_batchnorm
from ran_edge.progress import BuildProgress
from ran_edge.search.table import CostTable
from ran_edge.shrink.distill import TrainConfig, agreement, as_tensor, train_student
from ran_edge.targets.loading import Target, resolve_target

BATCHNORM_BATCH = 64


@dataclass(frozen=True)
class Applied:
    """What --apply did and what it measured."""

    files: dict[str, str]
    replaced: tuple[str, ...]
    agreement_before: float | None  # top-1 agreement with the original, held-out images
    agreement_after: float | None
    epochs: int
    fps: float  # the rewritten network, built for the target (Vela, or the CPU estimator)
    cycles: int
    report: str  # its report.json


@dataclass(frozen=True)
class AdviseResult:
    advice: Advice
    report: str  # the original network's report.json
    applied: Applied | None
    apply_requested: bool = False


def site_kinds(req: AdviseRequest, target: Target) -> str:
    """What advise looks at: the request's choice, else blocks on Ethos-U, all on a CPU."""
    return req.sites or ("blocks" if target.is_npu else "all")


def check_target(target: Target) -> None:
    """A CPU target is costed by its [cpu_model]; a profile without one has nothing to
    rank replacements by."""
    if target.is_cpu and not target.cpu_model.given:
        raise UsageError(
            f"target {target.name!r} has no [cpu_model] table, so advise has no cost model "
            "to rank replacements by: fit one with `ran-edge calibrate-target` (or copy the "
            "[cpu_model] of a shipped profile of the same core)."
        )


def check_forms(req: AdviseRequest) -> None:
    unknown = sorted(set(req.thresholds.conv_forms) - set(CONV_FORMS))
    if unknown or not req.thresholds.conv_forms:
        raise UsageError(
            f"--forms {','.join(req.thresholds.conv_forms)}: give one or more of "
            f"{', '.join(CONV_FORMS)}."
        )


def run_advise(req: AdviseRequest, progress: BuildProgress) -> AdviseResult:
    target = resolve_target(req.target)
    check_target(target)
    check_forms(req)
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
        teacher = replaceable_model(loaded.module)
        sites, skipped = find_sites(teacher, tuple(loaded.input_shape), site_kinds(req, target))
    check_candidates(sites, req)  # before the build writes anything
    with progress.stage("load calibration set"):
        data = load_calibration(
            req.calib,
            loaded.input_shape,
            num_samples=req.calib_samples,
            holdout=req.holdout,
            seed=req.seed,
        )
    (built,) = build_loaded(loaded, data, [target], req.out, weights=req.weights, progress=progress)
    assessed = assess(built.report, target_rates(target), sites, req.thresholds)
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


def check_candidates(sites: list[Site], req: AdviseRequest) -> None:
    """A --forms choice that no conv site of the network can take is a mistake to report,
    not an empty table (a site without a candidate is normal: it is too narrow)."""
    convs = [s for s in sites if s.form.is_conv]
    if req.thresholds.conv_forms == CONV_FORMS or not convs or len(convs) < len(sites):
        return  # the default set, or block sites left to advise on
    if any(forms_for(s, req.thresholds) for s in convs):
        return
    would = [f for f in CONV_FORMS if any(conv_stand_ins(s, (f,)) for s in convs)]
    fix = f"use --forms {','.join(would)}" if would else "no stand-in fits these convs"
    raise UsageError(
        f"--forms {','.join(req.thresholds.conv_forms)} gives no candidate for any of the "
        f"{len(convs)} conv sites (each stand-in keeps at least {MIN_CHANNELS} channels "
        f"per group / in its narrow part, and fewer MACs than the conv): {fix}."
    )


def _even_batches(samples: Tensor) -> list[Tensor]:
    """About BATCHNORM_BATCH images each, of equal size to within one (every batch counts
    alike in the average), never a batch of one (BN cannot normalise a 1x1 map of one
    image): with fewer than two images, no batch and the statistics stay as they are."""
    if len(samples) < 2:
        return []
    count = min(math.ceil(len(samples) / BATCHNORM_BATCH), len(samples) // 2)
    return list(samples.tensor_split(count))


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
    # BN statistics after the new blocks, measured on the calibration images: the old ones
    # describe what the replaced blocks produced (0.08 -> 0.55 agreement before training
    # for a grouped conv on the digits).
    batches = _even_batches(as_tensor(data.samples))
    measure_batchnorm(student, batches, rest_in_eval=True)
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
    # Distillation updates BN statistics at momentum 0.1 over few steps: a mix of old and
    # new. Their exact average over the calibration images is what the network sees.
    measure_batchnorm(student, batches, rest_in_eval=True)
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
        fps=report_metric(built.report, "inferences_per_second"),
        cycles=int(report_metric(built.report, "cycles_total")),
        report=str(built.out_dir / "report.json"),
    )
