"""`ran-edge profile`: an int8 .tflite made elsewhere, on one or more targets. No conversion;
fidelity and per-op sensitivity only when the float model and samples are given. Light on
purpose: profiling a .tflite for an Ethos-U target imports neither torch nor the converter."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ran_edge.atomic import check_writable_folder
from ran_edge.build.fingerprint import profile_fingerprint
from ran_edge.build.requests import ProfileRequest
from ran_edge.build.results import BuildResult, resolve_targets, write_html
from ran_edge.build.target import ModelOnTarget, TargetBuild, profile_on_target
from ran_edge.convert.tflite_info import TfliteInfo, inspect_tflite, read_tflite
from ran_edge.errors import UsageError
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.report.json_report import ModelFacts, QuantizationQuality, report_head
from ran_edge.targets.cortex_a.plan import CpuPlan, plan_cpu
from ran_edge.targets.loading import Target

NO_REFERENCE = "profile of an existing int8 model: give --float and --samples to measure fidelity"


@dataclass(frozen=True)
class FloatReference:
    """`profile --float F --samples S`: the int8 model measured against its float original,
    once for every target."""

    fidelity: object
    quality: QuantizationQuality
    fingerprint: bytes  # of the float model and the samples: part of each report's hash


def measure_against_float(
    int8_model: bytes, float_path: Path, samples_path: Path
) -> FloatReference:
    """Read the float model and the samples (.npy/.npz, NHWC or NCHW) and measure fidelity
    and per-op sensitivity of `int8_model` against it."""
    from ran_edge.convert.fidelity import measure_fidelity
    from ran_edge.convert.sensitivity import sensitivity_json, sensitivity_rows

    float_tflite = read_tflite(float_path)
    x = _read_samples(samples_path, tuple(inspect_tflite(int8_model).inputs[0].shape[1:]))
    fidelity = measure_fidelity(float_tflite, int8_model, x)
    rows = sensitivity_rows(float_tflite, int8_model, x, None)
    quality = QuantizationQuality(None, sensitivity_json(rows, len(x)))
    fingerprint = hashlib.sha256(float_tflite + x.tobytes()).digest()
    return FloatReference(fidelity, quality, fingerprint)


def _read_samples(samples_path: Path, nhwc: tuple[int, ...]) -> np.ndarray:
    if not samples_path.is_file():
        raise UsageError(f"samples file {samples_path} does not exist; give a .npy or .npz.")
    try:
        loaded = np.load(samples_path, allow_pickle=False)
        arrays = [loaded[k] for k in loaded.files] if hasattr(loaded, "files") else [loaded]
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read samples {samples_path}: {exc}; give a .npy or .npz."
        ) from None
    if not arrays:
        raise UsageError(f"{samples_path} holds no array; save the samples with np.save.")
    x = np.asarray(arrays[0], dtype=np.float32)
    if x.ndim == 4 and tuple(x.shape[1:]) != nhwc and tuple(x.shape[2:]) + x.shape[1:2] == nhwc:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # NCHW, as PyTorch holds them
    if x.ndim != 4 or tuple(x.shape[1:]) != nhwc or len(x) == 0:
        raise UsageError(
            f"samples {samples_path} have shape {x.shape}; the model takes N x "
            f"{' x '.join(map(str, nhwc))} (NHWC) or the NCHW equivalent."
        )
    return x


def profile_many(request: ProfileRequest, progress: BuildProgress = SILENT) -> BuildResult:
    """Everything `ran-edge profile` does, from a request."""
    targets = resolve_targets(request.targets)
    check_writable_folder(request.out)
    plan = plan_cpu(
        targets,
        measure_all=request.cpu.measure_all,
        options=request.cpu.measure,
    )
    if request.cpu.measure_all and not any(t.is_cpu for t in targets):
        raise UsageError(
            "--measure runs the model on a CPU target; add --target host (this machine) "
            "or a board's profile with --remote. Ethos-U targets are compiled, not run."
        )
    if (request.float_model is None) != (request.samples is None):
        raise UsageError(
            "--float and --samples go together: the float model is run on the samples to "
            "measure the int8 model's fidelity."
        )
    data = read_tflite(request.model)
    info = inspect_tflite(data)
    reference = None
    if request.float_model is not None:
        with progress.stage(f"int8 vs float, per op, on {request.samples.name}"):
            reference = measure_against_float(data, request.float_model, request.samples)
    builds = []
    for target in targets:
        label = target.backend.describe(target, plan)
        if plan.for_target(target):
            with progress.measure(label) as update:
                builds.append(
                    _profile_one(request, data, info, target, plan.with_progress(update), reference)
                )
        else:
            with progress.stage(label):
                builds.append(_profile_one(request, data, info, target, plan, reference))
    html = None
    if request.html:
        html = write_html(builds, progress)
    return BuildResult(tuple(builds), html)


def profile_tflite(
    path: Path,
    target: Target,
    out_root: Path,
    *,
    module_depth: int = 2,
    cpu: CpuPlan | None = None,
    reference: FloatReference | None = None,
) -> TargetBuild:
    """Profile one int8 .tflite on one target (see `profile_many`)."""
    request = ProfileRequest(
        model=path, targets=(target.name,), out=out_root, module_depth=module_depth
    )
    data = read_tflite(path)
    return _profile_one(request, data, inspect_tflite(data), target, cpu or CpuPlan(), reference)


def _profile_one(
    request: ProfileRequest,
    data: bytes,
    info: TfliteInfo,
    target: Target,
    plan: CpuPlan,
    reference: FloatReference | None,
) -> TargetBuild:
    path = request.model
    if not info.int8_io or any(t.dtype == "float32" for t in info.inputs):
        dtypes = ", ".join(f"{t.name}: {t.dtype}" for t in (*info.inputs, *info.outputs))
        runs = (
            "Ethos-U runs int8 only"
            if target.is_npu
            else "ran-edge's CPU figures are for int8 models"
        )
        raise UsageError(
            f"{path.name} is not an int8 model (I/O: {dtypes}); {runs}. "
            "Quantize it first (e.g. `ran-edge build` from the PyTorch model)."
        )
    facts = ModelFacts(path.stem, str(path), info.inputs[0].shape, None, None, "from .tflite")

    def head(problems: list[str]) -> dict:
        return report_head(
            facts,
            None,
            info,
            problems,
            reference.fidelity if reference else None,
            NO_REFERENCE,
            None,
            reference.quality if reference else None,
        )

    model = ModelOnTarget(path.stem, data, path.name, head, info)
    run = plan.run_key(target)
    fingerprint = profile_fingerprint(
        data, target, reference.fingerprint if reference else b"", run
    )
    return profile_on_target(
        model,
        target,
        request.out,
        fingerprint=fingerprint,
        cpu=plan,
        module_depth=request.module_depth,
    )
