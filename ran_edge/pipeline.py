"""`build` and `profile` as plain functions: typed inputs, typed results, atomic outputs.

build:   model -> float TFLite -> int8 TFLite (calibrated) -> fidelity -> per target:
         Vela + Cortex-M cost of CPU fallbacks (ethos-u), or measured/estimated CPU figures
         (cortex-a: `host` measured here, others estimated unless measured over SSH)
profile: an int8 .tflite made elsewhere -> the same per target

Each target's outputs are written into a temporary sibling folder and renamed into
`<out>/<model>/<target>/` only once complete, so a failure never leaves half a build
and never destroys the previous good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import ran_edge
from ran_edge.atomic import staging_dir, write_atomic
from ran_edge.convert.export import export_float_tflite_with_rewrites
from ran_edge.convert.fidelity import Fidelity, measure_fidelity
from ran_edge.convert.mixed_precision import (
    AutoGoal,
    auto_mixed_precision,
    float_ops,
    int16_tensors_for_modules,
    modules_of,
)
from ran_edge.convert.quantize import quantize_int8
from ran_edge.convert.ranges import check_method
from ran_edge.convert.sensitivity import (
    SQNR_CAP_DB,
    LayerSensitivity,
    attribute_sensitivity,
    measure_sensitivity,
)
from ran_edge.convert.tflite_info import TfliteInfo, inspect_tflite
from ran_edge.errors import RanEdgeError, StageError, UsageError
from ran_edge.firmware.tflm_check import TflmCheck, tflm_reference_check
from ran_edge.hw.attribution import ModuleIndex
from ran_edge.hw.cpu_profile import CpuProfile, MeasureOptions, profile_cpu
from ran_edge.hw.ethos_u import EthosUProfile, profile_ethos_u
from ran_edge.hw.measure_runner import Progress
from ran_edge.hw.npu_gate import NpuVerdict, judge
from ran_edge.hw.system_cost import system_cost
from ran_edge.hw.targets import Target, resolve_target
from ran_edge.hw.vela import VelaCrash
from ran_edge.hw.vela_crash import crash_report
from ran_edge.report.json_report import (
    ModelFacts,
    QuantizationQuality,
    build_cpu_report,
    build_report,
    dumps,
)

DEFAULT_MODEL = "mobilenet_v2"
DEFAULT_MODULE_DEPTH = 2
REPORT_FILE = "report.json"

# A stage reporter: called as a context manager with a human label.
StageFn = Callable[[str], contextlib.AbstractContextManager]


@contextlib.contextmanager
def _silent_stage(label: str) -> Iterator[None]:
    yield


@dataclass(frozen=True)
class QuantizeOptions:
    """How `build` quantizes: activation range method, int16 layers, converter rewrites.

    `auto` raises the least faithful layers to int16 activations until its goal is met,
    costing each choice with Vela on `auto_target` (the build's first Ethos-U target).
    """

    method: str = "minmax"
    int16_modules: tuple[str, ...] = ()
    auto: AutoGoal | None = None
    auto_target: Target | None = None
    rewrites: bool = True

    def fingerprint(self) -> str:
        target = self.auto_target.name if self.auto_target else None
        return repr((self.method, self.int16_modules, self.auto, target, self.rewrites))


@dataclass(frozen=True)
class ConvertedModel:
    """The target-independent half of a build."""

    facts: ModelFacts
    float_tflite: bytes
    int8_tflite: bytes
    info: TfliteInfo
    fidelity: Fidelity | None
    tflm: TflmCheck
    calibration: dict
    modules: ModuleIndex
    quality: QuantizationQuality | None = None  # report sections: ranges, int16, sensitivity


@dataclass(frozen=True)
class TargetBuild:
    """One target's finished outputs."""

    target: Target
    profile: EthosUProfile | CpuProfile | None  # None: an up-to-date build reused from disk
    report: dict
    out_dir: Path


@dataclass(frozen=True)
class CpuPlan:
    """How CPU targets are run: measure on which of them, and with what options."""

    measure: frozenset[str] = frozenset()  # target names measured (the rest are estimated)
    options: MeasureOptions = MeasureOptions()
    progress: Progress | None = None
    remote_target: str | None = None  # the one target measured on options.remote

    def for_target(self, target: Target) -> bool:
        return target.name in self.measure

    def options_for(self, target: Target) -> MeasureOptions:
        """The measure options of one target: only the remote target goes over SSH."""
        if target.name == self.remote_target:
            return self.options
        return replace(self.options, remote=None)

    def describe(self, target: Target) -> str:
        if not self.for_target(target):
            return "estimated"
        remote = self.options_for(target).remote
        where = f"on {remote.label}" if remote is not None else "here"
        threads = min(self.options.threads or target.cpu.default_threads, target.cpu.cores)
        return f"measured {where}, {threads} thread(s), {self.options.runs} runs"


def plan_cpu(targets: Sequence[Target], *, measure_all: bool, options: MeasureOptions) -> CpuPlan:
    """`host` is always measured; `--remote` measures the one other CPU target on the board;
    `--measure` (profile) measures every CPU target here."""
    cpu = [t for t in targets if t.is_cpu]
    others = [t for t in cpu if t.name != "host"]
    if options.remote is not None and len(others) > 1:
        raise UsageError(
            f"--remote measures one board, but {len(others)} CPU targets were given "
            f"({', '.join(t.name for t in others)}); give the board's target alone with it."
        )
    measured = {t.name for t in cpu if t.name == "host" or measure_all}
    remote_target = None
    if options.remote is not None:
        if not cpu:
            raise UsageError(
                "--remote measures a CPU target: add --target rpi4 (or the profile of the "
                "board at that address); Ethos-U targets are compiled, not run."
            )
        remote_target = (others or cpu)[0].name
        measured.add(remote_target)
    return CpuPlan(frozenset(measured), options, remote_target=remote_target)


def inputs_fingerprint(
    loaded,
    calib,
    target: Target,
    *,
    allow_cpu_fallback: bool,
    cpu: str = "",
    quantize: QuantizeOptions | None = None,
) -> str:
    """Hash of everything a target build depends on: same hash, same outputs.

    Model structure and weights, input shape, the calibration and held-out arrays, the
    target profile (and its Vela ini if it is the user's), options, and tool versions.
    """
    from ran_edge.report.json_report import tool_versions

    h = hashlib.sha256()
    h.update(repr((ran_edge.__version__, sorted(tool_versions().items()))).encode())
    h.update(repr(loaded.module).encode())
    for key, tensor in sorted(loaded.module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr(tuple(loaded.input_shape)).encode())
    h.update(calib.samples.tobytes())
    h.update(calib.holdout.tobytes())
    h.update(target.source.read_bytes())
    if target.vela is not None and not target.vela.config.startswith("Arm/"):
        h.update(Path(target.vela.config).read_bytes())
    if target.host_cpu is not None:
        h.update(Path(target.host_cpu.source).read_bytes())
    h.update(repr(allow_cpu_fallback).encode())
    h.update(cpu.encode())  # how a CPU target was run (measured where, threads, runs)
    h.update((quantize or QuantizeOptions()).fingerprint().encode())
    return h.hexdigest()


def reuse_if_up_to_date(
    out_root: Path, model_name: str, target: Target, fingerprint: str
) -> TargetBuild | None:
    """The existing build when its report.json was made from exactly these inputs."""
    folder = out_root / model_name / target.name
    try:
        report = json.loads((folder / REPORT_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if report.get("inputs_sha256") != fingerprint:
        return None
    return TargetBuild(target, None, report, folder)


def resolve_targets(names: Sequence[str]) -> list[Target]:
    """All targets resolved before any work starts, so a typo costs no conversion time."""
    if not names:
        raise UsageError("no target given: pass --target NAME (see `ran-edge targets`).")
    targets = [resolve_target(n) for n in names]
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise UsageError(f"target {t.name} given twice; give each target once.")
        seen.add(t.name)
    return targets


def _nhwc(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))


def weights_label(loaded, weights: Path | None) -> str:
    if weights is not None:
        return f"state_dict {Path(weights).name}"
    if loaded.source.startswith("zoo:"):
        return "random (seeded init; pass --weights for trained figures)"
    return "as built by the model file" if loaded.source.startswith("file:") else "from .pt2"


def convert_model(
    loaded,
    calib,
    *,
    stage: StageFn = _silent_stage,
    macs: int | None = None,
    weights: Path | None = None,
    options: QuantizeOptions = QuantizeOptions(),
) -> ConvertedModel:
    """Export `loaded` (a LoadedModel) to float TFLite, quantize it on `calib`, measure fidelity
    and per-op sensitivity on the held-out samples, and check it in TFLM."""
    from ran_edge.models import count_params

    holdout = _nhwc(calib.holdout) if len(calib.holdout) else None
    check_method(options.method, len(calib.samples))  # before minutes of export
    if options.auto is not None and holdout is None:
        raise UsageError(
            "--auto-mixed-precision measures on held-out samples: give --holdout N (N > 0)."
        )
    modules = ModuleIndex.from_model(loaded.module, tuple(loaded.input_shape))
    with stage("export float TFLite (litert-torch)"):
        float_tflite, rewrites = export_float_tflite_with_rewrites(
            loaded.module, loaded.input_shape, rewrites=options.rewrites
        )
    int16 = int16_tensors_for_modules(float_tflite, options.int16_modules, modules)
    method = f"{options.method} ranges" + (f", {len(int16)} int16 layer(s)" if int16 else "")
    mixed = None
    if options.auto is None:
        with stage(f"calibrate + quantize ({method}, {len(calib.samples)} samples)"):
            int8_tflite = quantize_int8(
                float_tflite, _nhwc(calib.samples), method=options.method, int16_tensors=int16
            )
    else:
        target = options.auto_target
        with stage(f"automatic mixed precision (Vela cycles on {target.name})"):
            mixed = auto_mixed_precision(
                float_tflite,
                _nhwc(calib.samples),
                holdout,
                target,
                modules=modules,
                goal=options.auto,
                method=options.method,
            )
        int8_tflite, int16 = mixed.model, mixed.int16_tensors
    info = inspect_tflite(int8_tflite)
    fidelity, sensitivity = None, ()
    if holdout is not None:
        with stage(f"int8 vs float, per op, on {len(holdout)} held-out samples"):
            fidelity = measure_fidelity(float_tflite, int8_tflite, holdout)
            sensitivity = _sensitivity(float_tflite, int8_tflite, holdout, modules)
    reference_samples = calib.holdout if len(calib.holdout) else calib.samples[:8]
    with stage(f"TFLM vs LiteRT reference kernels on {len(reference_samples)} samples"):
        tflm = tflm_reference_check(int8_tflite, _nhwc(reference_samples))
    facts = ModelFacts(
        name=loaded.name,
        source=loaded.source,
        input_shape=tuple(loaded.input_shape),
        params=count_params(loaded.module),
        macs=macs,
        weights=weights_label(loaded, weights),
    )
    calibration = {
        "name": calib.name,
        "description": calib.description,
        "samples": int(len(calib.samples)),
        "holdout": int(len(calib.holdout)),
        "method": options.method,
    }
    quality = QuantizationQuality(
        quantization={
            "method": options.method,
            "int16_activations": list(_int16_modules(float_tflite, modules, int16, mixed)),
            "int16_tensors": len(int16),
            "rewrites": [asdict(r) for r in rewrites],
            "mixed_precision": None if mixed is None else mixed.as_dict(),
        },
        sensitivity=_sensitivity_json(sensitivity, len(holdout) if holdout is not None else 0),
    )
    return ConvertedModel(
        facts=facts,
        float_tflite=float_tflite,
        int8_tflite=int8_tflite,
        info=info,
        fidelity=fidelity,
        tflm=tflm,
        calibration=calibration,
        modules=modules,
        quality=quality,
    )


def _int16_modules(float_tflite: bytes, modules, int16: tuple[str, ...], mixed) -> tuple:
    if mixed is not None:
        return mixed.int16_modules
    return modules_of(float_ops(float_tflite, modules), int16) if int16 else ()


def _sensitivity(float_tflite: bytes, quant: bytes, holdout: np.ndarray, modules):
    """Per-op sensitivity, or () when this model's tensors cannot be paired: an analysis
    that fails must not fail a build whose int8 model is fine (the report says it is missing)."""
    try:
        return attribute_sensitivity(measure_sensitivity(float_tflite, quant, holdout), modules)
    except RanEdgeError:
        raise
    except Exception:  # noqa: BLE001 - LiteRT raises many types on unusual graphs
        return ()


def _sensitivity_json(rows: tuple[LayerSensitivity, ...], samples: int) -> dict | None:
    if not rows:
        return None
    keys = ("index", "op_type", "tensor", "dtype", "sqnr_db", "exact", "drop_db")
    return {
        "samples": samples,
        "cap_db": SQNR_CAP_DB,
        "rows": [{"module": r.module} | _pick(r.op.as_dict(), keys) for r in rows],
    }


def _pick(row: dict, keys: tuple[str, ...]) -> dict:
    return {k: row[k] for k in keys}


def _gate(converted: ConvertedModel, profile: EthosUProfile, allow_cpu: bool) -> NpuVerdict:
    """Vela's verdict on this build; a StageError naming each CPU op's module and fix."""
    verdict = judge(converted.info, profile.vela, converted.modules, profile.target.name)
    if not verdict.passed and not allow_cpu:
        raise StageError(verdict.message(converted.facts.name))
    return verdict


def _compile(int8_path: Path, target: Target, tmp: Path, final: Path, modules) -> EthosUProfile:
    """Vela for one target; on a Vela crash keep the model in `failed/` so the repro works."""
    try:
        return profile_ethos_u(int8_path, target, tmp, modules)
    except VelaCrash as crash:
        raise StageError(crash_report(crash, int8_path, target, final)) from None


def build_target(
    converted: ConvertedModel,
    target: Target,
    out_root: Path,
    *,
    allow_cpu_fallback: bool = False,
    module_depth: int = DEFAULT_MODULE_DEPTH,
    fingerprint: str | None = None,
    cpu: CpuPlan | None = None,
) -> TargetBuild:
    """Compile/measure/estimate and report one target into `<out_root>/<model>/<target>/`."""
    if target.is_cpu:
        return _build_cpu_target(
            converted, target, out_root, cpu or CpuPlan(), module_depth, fingerprint
        )
    name = converted.facts.name
    final = out_root / name / target.name
    with staging_dir(final) as tmp:
        float_path, int8_path = tmp / f"{name}_float.tflite", tmp / f"{name}_int8.tflite"
        write_atomic(float_path, converted.float_tflite)
        write_atomic(int8_path, converted.int8_tflite)
        profile = _compile(int8_path, target, tmp, final, converted.modules)
        verdict = _gate(converted, profile, allow_cpu_fallback)
        system = system_cost(profile, converted.int8_tflite)
        artifacts = {
            "float_tflite": float_path.name,
            "int8_tflite": int8_path.name,
            "vela_tflite": profile.vela.optimised_model.name,
            "vela_summary_csv": profile.vela.summary_csv.name,
            "vela_per_layer_csv": profile.vela.per_layer_csv.name,
            "vela_log": profile.vela.log.name,
        }
        report = build_report(
            model=converted.facts,
            calibration=converted.calibration,
            info=converted.info,
            fidelity=converted.fidelity,
            fidelity_reason="no held-out samples",
            tflm=converted.tflm,
            profile=profile,
            artifacts=artifacts,
            module_depth=module_depth,
            inputs_sha256=fingerprint,
            system=system,
            verdict=verdict,
            quality=converted.quality,
        )
        write_atomic(tmp / REPORT_FILE, dumps(report).encode())
    return TargetBuild(target, _relocate(profile, tmp, final), report, final)


def build_or_reuse(
    loaded,
    calib,
    target: Target,
    out_root: Path,
    *,
    stage: StageFn = _silent_stage,
    weights: Path | None = None,
) -> TargetBuild:
    """One Ethos-U target build of `loaded`, or the one on disk if made from the same inputs
    (what `build --incremental` does), for commands that need a model's report first."""
    from ran_edge.models import count_macs

    fingerprint = inputs_fingerprint(loaded, calib, target, allow_cpu_fallback=False)
    reused = reuse_if_up_to_date(out_root, loaded.name, target, fingerprint)
    if reused is not None:
        with stage(f"{target.name}: build up to date (same inputs)"):
            return reused
    macs = count_macs(loaded.module, loaded.input_shape)
    converted = convert_model(loaded, calib, stage=stage, macs=macs, weights=weights)
    with stage(f"Vela for {target.name}"):
        return build_target(converted, target, out_root, fingerprint=fingerprint)


def _build_cpu_target(
    converted: ConvertedModel,
    target: Target,
    out_root: Path,
    cpu: CpuPlan,
    module_depth: int,
    fingerprint: str | None,
) -> TargetBuild:
    """Measure or estimate the int8 model on a CPU target, atomically like an NPU target."""
    name = converted.facts.name
    final = out_root / name / target.name
    with staging_dir(final) as tmp:
        float_path, int8_path = tmp / f"{name}_float.tflite", tmp / f"{name}_int8.tflite"
        write_atomic(float_path, converted.float_tflite)
        write_atomic(int8_path, converted.int8_tflite)
        profile = profile_cpu(
            int8_path,
            converted.int8_tflite,
            target,
            measure=cpu.for_target(target),
            options=cpu.options_for(target),
            modules=converted.modules,
            progress=cpu.progress,
        )
        report = build_cpu_report(
            model=converted.facts,
            calibration=converted.calibration,
            info=converted.info,
            fidelity=converted.fidelity,
            fidelity_reason="no held-out samples",
            tflm=converted.tflm,
            profile=profile,
            artifacts={"float_tflite": float_path.name, "int8_tflite": int8_path.name},
            module_depth=module_depth,
            inputs_sha256=fingerprint,
            quality=converted.quality,
        )
        write_atomic(tmp / REPORT_FILE, dumps(report).encode())
    return TargetBuild(target, profile, report, final)


NO_REFERENCE = "profile of an existing int8 model: give --float and --samples to measure fidelity"


def _profile_hash(
    data: bytes, target: Target, reference: FloatReference | None, run: bytes = b""
) -> str:
    h = hashlib.sha256(data + target.source.read_bytes() + run)
    if reference is not None:
        h.update(reference.fingerprint)
    return h.hexdigest()


def _relocate(profile: EthosUProfile, old: Path, new: Path) -> EthosUProfile:
    """Point the profile's file paths at the folder they were renamed into."""
    vela = profile.vela

    def move(p: Path) -> Path:
        return new / p.relative_to(old)

    vela = replace(
        vela,
        optimised_model=move(vela.optimised_model),
        summary_csv=move(vela.summary_csv),
        per_layer_csv=move(vela.per_layer_csv),
        log=move(vela.log),
    )
    return replace(profile, vela=vela)


@dataclass(frozen=True)
class FloatReference:
    """`profile --float F --samples S`: the int8 model measured against its float original,
    once for every target."""

    fidelity: Fidelity
    quality: QuantizationQuality
    fingerprint: bytes  # of the float model and the samples: part of each report's hash


def measure_against_float(
    int8_model: bytes, float_path: Path, samples_path: Path
) -> FloatReference:
    """Read the float model and the samples (.npy/.npz, NHWC or NCHW) and measure fidelity
    and per-op sensitivity of `int8_model` against it."""
    from ran_edge.convert.tflite_info import read_tflite

    float_tflite = read_tflite(float_path)
    x = _read_samples(samples_path, tuple(inspect_tflite(int8_model).inputs[0].shape[1:]))
    fidelity = measure_fidelity(float_tflite, int8_model, x)
    rows = _sensitivity(float_tflite, int8_model, x, None)
    quality = QuantizationQuality(None, _sensitivity_json(rows, len(x)))
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


def profile_tflite(
    path: Path,
    target: Target,
    out_root: Path,
    *,
    module_depth: int = DEFAULT_MODULE_DEPTH,
    cpu: CpuPlan | None = None,
    reference: FloatReference | None = None,
) -> TargetBuild:
    """Profile an int8 .tflite made elsewhere (no conversion; fidelity and per-op sensitivity
    only when the float model and samples are given)."""
    from ran_edge.convert.tflite_info import read_tflite

    data = read_tflite(path)
    info = inspect_tflite(data)
    fidelity = reference.fidelity if reference else None
    quality = reference.quality if reference else None
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
    if target.is_cpu:
        return _profile_cpu_tflite(
            path, data, info, target, out_root, cpu or CpuPlan(), module_depth, reference
        )
    name = path.stem
    final = out_root / name / target.name
    with staging_dir(final) as tmp:
        model_copy = tmp / path.name
        write_atomic(model_copy, data)
        profile = _compile(model_copy, target, tmp, final, None)
        system = system_cost(profile, data)
        facts = ModelFacts(name, str(path), info.inputs[0].shape, None, None, "from .tflite")
        report = build_report(
            model=facts,
            calibration=None,
            info=info,
            fidelity=fidelity,
            fidelity_reason=NO_REFERENCE,
            tflm=None,
            profile=profile,
            quality=quality,
            artifacts={
                "int8_tflite": model_copy.name,
                "vela_tflite": profile.vela.optimised_model.name,
                "vela_summary_csv": profile.vela.summary_csv.name,
                "vela_per_layer_csv": profile.vela.per_layer_csv.name,
                "vela_log": profile.vela.log.name,
            },
            module_depth=module_depth,
            inputs_sha256=_profile_hash(data, target, reference),
            system=system,
        )
        write_atomic(tmp / REPORT_FILE, dumps(report).encode())
    return TargetBuild(target, _relocate(profile, tmp, final), report, final)


def _profile_cpu_tflite(
    path: Path,
    data: bytes,
    info: TfliteInfo,
    target: Target,
    out_root: Path,
    cpu: CpuPlan,
    module_depth: int,
    reference: FloatReference | None = None,
) -> TargetBuild:
    name = path.stem
    final = out_root / name / target.name
    with staging_dir(final) as tmp:
        model_copy = tmp / path.name
        write_atomic(model_copy, data)
        profile = profile_cpu(
            model_copy,
            data,
            target,
            measure=cpu.for_target(target),
            options=cpu.options_for(target),
            progress=cpu.progress,
        )
        facts = ModelFacts(name, str(path), info.inputs[0].shape, None, None, "from .tflite")
        run = cpu.describe(target).encode()
        report = build_cpu_report(
            model=facts,
            calibration=None,
            info=info,
            fidelity=reference.fidelity if reference else None,
            fidelity_reason=NO_REFERENCE,
            tflm=None,
            profile=profile,
            quality=reference.quality if reference else None,
            artifacts={"int8_tflite": model_copy.name},
            module_depth=module_depth,
            inputs_sha256=_profile_hash(data, target, reference, run),
        )
        write_atomic(tmp / REPORT_FILE, dumps(report).encode())
    return TargetBuild(target, profile, report, final)
