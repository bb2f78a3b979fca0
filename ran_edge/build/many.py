"""`build_many`: one model, its calibration set, several targets. The one loop every caller
uses (build, regress, advise): resolve every target first (a typo costs no conversion time),
fingerprint each, reuse what is up to date, convert once, then profile the targets together.

Compiles for NPU targets and CPU estimates run in parallel threads (Vela runs in its own
process; the TFLM check's process runs beside them). A CPU target that is *measured* runs
alone afterwards: timing must not share the machine with compiles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ran_edge.atomic import check_writable_folder
from ran_edge.build.convert import ConvertedModel, convert_model
from ran_edge.build.fingerprint import inputs_fingerprint, reused_report
from ran_edge.build.requests import (
    DEFAULT_MODULE_DEPTH,
    DEFAULT_QUANTIZE,
    BuildRequest,
    QuantizeOptions,
)
from ran_edge.build.results import BuildResult, resolve_targets, write_html
from ran_edge.build.target import ModelOnTarget, TargetBuild, profile_on_target
from ran_edge.errors import UsageError
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.report.json_report import report_head
from ran_edge.targets.cortex_a.plan import CpuPlan, plan_cpu
from ran_edge.targets.loading import Target

NO_HOLDOUT = "no held-out samples"


def with_auto_target(options: QuantizeOptions, targets: Sequence[Target]) -> QuantizeOptions:
    """Automatic mixed precision costs its choices with Vela on the first Ethos-U target."""
    if options.auto is None:
        return options
    if options.int16_modules:
        raise UsageError(
            "give either --int16-activations (your choice of layers) or "
            "--auto-mixed-precision (ran-edge's), not both."
        )
    npu = [t for t in targets if t.is_npu]
    if not npu:
        raise UsageError(
            "--auto-mixed-precision costs each choice with Vela: add an Ethos-U --target."
        )
    return replace(options, auto_target=npu[0])


def build_many(request: BuildRequest, progress: BuildProgress = SILENT) -> BuildResult:
    """Everything `ran-edge build` does, from a request; UsageError before any work on bad input."""
    from ran_edge.calib import load_calibration
    from ran_edge.models import load_model

    targets = resolve_targets(request.targets)
    check_writable_folder(request.out)
    plan = plan_cpu(
        targets,
        measure_all=request.cpu.measure_all,
        options=request.cpu.measure,
    )
    if request.calib_samples is not None and request.calib_samples < 1:
        raise UsageError("--calib-samples must be at least 1.")
    cpu_targets = [t for t in targets if not t.is_npu]
    if request.firmware is not None and cpu_targets:
        raise UsageError(
            f"--firmware writes Ethos-U firmware sources; {cpu_targets[0].name} is a CPU "
            "target. Build CPU targets without --firmware."
        )
    quantize = with_auto_target(request.quantize, targets)
    with progress.stage(f"load model {request.model}"):
        loaded = load_model(request.model, weights=request.weights, input_shape=request.input_shape)
        if request.name:
            loaded = replace(loaded, name=request.name)
    with progress.stage("load calibration set"):
        calib = load_calibration(
            request.calib,
            loaded.input_shape,
            num_samples=request.calib_samples,
            holdout=request.holdout,
            seed=request.seed,
        )
    builds = build_loaded(
        loaded,
        calib,
        targets,
        request.out,
        quantize=quantize,
        allow_cpu_fallback=request.allow_cpu_fallback,
        incremental=request.incremental,
        cpu=plan,
        weights=request.weights,
        module_depth=request.module_depth,
        progress=progress,
    )
    firmware = _firmware(builds, request, progress) if request.firmware is not None else ()
    html = write_html(builds, progress) if request.html else None
    return BuildResult(tuple(builds), html, firmware)


def build_loaded(
    loaded,
    calib,
    targets: Sequence[Target],
    out: Path,
    *,
    quantize: QuantizeOptions = DEFAULT_QUANTIZE,
    allow_cpu_fallback: bool = False,
    incremental: bool = True,
    cpu: CpuPlan | None = None,
    weights: Path | None = None,
    module_depth: int = 2,
    progress: BuildProgress = SILENT,
) -> list[TargetBuild]:
    """The per-target loop on a model already loaded (advise builds models it made itself)."""
    from ran_edge.models import count_macs

    cpu = cpu or CpuPlan()
    fingerprints = {
        t.name: inputs_fingerprint(
            loaded,
            calib,
            t,
            allow_cpu_fallback=allow_cpu_fallback,
            cpu=cpu.run_key(t),
            quantize=quantize,
        )
        for t in targets
    }
    builds: dict[str, TargetBuild] = {}
    if incremental:
        for t in targets:
            report = reused_report(out, loaded.name, t, fingerprints[t.name])
            if report is not None:
                progress.note(f"{t.name}: up to date (same inputs)")
                builds[t.name] = TargetBuild(t, None, report, out / loaded.name / t.name)
    todo = [t for t in targets if t.name not in builds]
    if todo:
        for target in todo:
            target.backend.prepare(target)
        macs = count_macs(loaded.module, loaded.input_shape)
        converted = convert_model(
            loaded, calib, progress=progress, macs=macs, weights=weights, options=quantize
        )
        options = _TargetOptions(out, allow_cpu_fallback, module_depth, fingerprints, cpu)
        builds.update(_profile_targets(converted, todo, options, progress))
    return [builds[t.name] for t in targets]


@dataclass(frozen=True)
class _TargetOptions:
    out: Path
    allow_cpu_fallback: bool
    module_depth: int
    fingerprints: dict[str, str]
    cpu: CpuPlan


def _profile_targets(
    converted: ConvertedModel,
    targets: list[Target],
    options: _TargetOptions,
    progress: BuildProgress,
) -> dict[str, TargetBuild]:
    """Compile/estimate in parallel, then measure one target at a time; the first failure (in
    target order) is raised once every other target is finished and written."""

    def one(target: Target, plan: CpuPlan) -> TargetBuild:
        return build_target(
            converted,
            target,
            options.out,
            allow_cpu_fallback=options.allow_cpu_fallback,
            module_depth=options.module_depth,
            fingerprint=options.fingerprints[target.name],
            cpu=plan,
        )

    measured = [t for t in targets if options.cpu.for_target(t)]
    together = [t for t in targets if t not in measured]
    results: dict[str, TargetBuild | BaseException] = {}
    if together:
        label = ", ".join(t.backend.describe(t, options.cpu) for t in together)
        with progress.stage(f"{label}; int8 checks alongside"):
            workers = max(1, min(len(together), os.cpu_count() or 1))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {t.name: pool.submit(one, t, options.cpu) for t in together}
                for name, future in futures.items():
                    try:
                        results[name] = future.result()
                    except BaseException as exc:  # noqa: BLE001 - re-raised below, in order
                        results[name] = exc
                converted.wait()  # the checks end inside this stage, not after it
    if measured and not together:
        with progress.stage("int8 checks (before timing: nothing else may run)"):
            converted.wait()
    for target in measured:
        if _first_failure(targets, results) is not None:
            break
        label = target.backend.describe(target, options.cpu)
        with progress.measure(label) as update:
            results[target.name] = one(target, options.cpu.with_progress(update))
    failure = _first_failure(targets, results)
    if failure is not None:
        raise failure
    return results  # type: ignore[return-value]


def _first_failure(targets, results) -> BaseException | None:
    for t in targets:
        if isinstance(results.get(t.name), BaseException):
            return results[t.name]
    return None


def _firmware(builds: list[TargetBuild], request: BuildRequest, progress: BuildProgress) -> tuple:
    from ran_edge.firmware.generate import generate_firmware

    results = []
    for b in builds:
        with progress.stage(f"firmware for {b.target.name}"):
            result = generate_firmware(b.out_dir, request.firmware, b.target.memory)
        if result.up_to_date:
            progress.note(f"{result.folder}: up to date (same inputs)")
        results.append(result)
    return tuple(results)


def build_target(
    converted: ConvertedModel,
    target: Target,
    out_root: Path,
    *,
    allow_cpu_fallback: bool = False,
    module_depth: int = DEFAULT_MODULE_DEPTH,
    fingerprint: str | None = None,
    cpu=None,
) -> TargetBuild:
    """Profile a converted model on one target and write its folder (float and int8 models,
    the backend's files, report.json)."""
    name = converted.facts.name

    def head(problems: list[str]) -> dict:
        return report_head(
            converted.facts,
            converted.calibration,
            converted.info,
            problems,
            converted.fidelity,
            NO_HOLDOUT,
            converted.tflm,
            converted.quality,
        )

    model = ModelOnTarget(
        name=name,
        int8_tflite=converted.int8_tflite,
        int8_file=f"{name}_int8.tflite",
        head=head,
        info=converted.info,
        modules=converted.modules,
        extra_files=(("float_tflite", f"{name}_float.tflite", converted.float_tflite),),
        allow_cpu_fallback=allow_cpu_fallback,
    )
    return profile_on_target(
        model,
        target,
        out_root,
        fingerprint=fingerprint,
        cpu=cpu,
        module_depth=module_depth,
    )
