"""`check`: will this model run entirely on the NPU? Export, quantize, Vela, and Vela's verdict.

The fast half of a build: no fidelity run, no TFLM check, no files kept. What it answers is
per PyTorch module: each op Vela leaves on the CPU, with Vela's reason and the rewrite to
make, like Vela's SUPPORTED_OPS but for the user's own modules.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ran_edge.atomic import write_atomic
from ran_edge.build.requests import CheckRequest
from ran_edge.convert.attribution import ModuleIndex
from ran_edge.convert.export import export_float_tflite_with_rewrites
from ran_edge.convert.quantize import quantize_int8
from ran_edge.convert.tflite_info import inspect_tflite
from ran_edge.errors import StageError, UsageError
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.targets.ethos_u.npu_gate import NpuVerdict, judge
from ran_edge.targets.ethos_u.vela import VelaCrash, run_vela
from ran_edge.targets.loading import Target

CHECK_CALIBRATION_SAMPLES = 8  # placement does not depend on ranges; a few samples suffice


@dataclass(frozen=True)
class TargetCheck:
    """Vela's placement of one model on one target."""

    target: str
    npu_ops: int
    cpu_ops: int
    verdict: NpuVerdict


@dataclass(frozen=True)
class CheckResult:
    model: str
    int8_ops: int
    targets: tuple[TargetCheck, ...]
    rewrites: tuple[str, ...] = ()  # what the converter rewrote to put patterns on the NPU

    @property
    def passed(self) -> bool:
        return all(t.verdict.passed for t in self.targets)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "int8_ops": self.int8_ops,
            "passed": self.passed,
            "rewrites": list(self.rewrites),
            "targets": [
                {
                    "target": t.target,
                    "passed": t.verdict.passed,
                    "npu_ops": t.npu_ops,
                    "cpu_ops": t.cpu_ops,
                    "prechecks": list(t.verdict.prechecks),
                    "cpu_fallbacks": [op.as_dict() for op in t.verdict.cpu_ops],
                }
                for t in self.targets
            ],
        }


def check_many(request: CheckRequest, progress: BuildProgress = SILENT) -> CheckResult:
    """Everything `ran-edge check` does, from a request: Ethos-U targets only (on a CPU
    target every op runs on the CPU; there is nothing to check)."""
    from ran_edge.build.results import resolve_targets
    from ran_edge.calib import load_calibration
    from ran_edge.models import load_model

    targets = resolve_targets(request.targets)
    cpu = [t.name for t in targets if not t.is_npu]
    if cpu:
        raise UsageError(
            f"check asks Vela where ops run on an Ethos-U NPU; {cpu[0]} is a CPU target, "
            "where every op runs. Give an ethos-u target."
        )
    with progress.stage(f"load model {request.model}"):
        loaded = load_model(request.model, weights=request.weights, input_shape=request.input_shape)
    with progress.stage("load calibration set"):
        data = load_calibration(
            request.calib, loaded.input_shape, num_samples=CHECK_CALIBRATION_SAMPLES, holdout=0
        )
    return check_model(loaded, data.samples, targets, progress=progress)


def check_model(
    loaded, calib_nchw: np.ndarray, targets: Sequence[Target], *, progress: BuildProgress = SILENT
) -> CheckResult:
    """Export and quantize `loaded` once, then ask Vela where each op runs on every target."""
    with progress.stage("export float TFLite (litert-torch)"):
        float_tflite, rewrites = export_float_tflite_with_rewrites(
            loaded.module, loaded.input_shape
        )
    with progress.stage(f"quantize int8 ({len(calib_nchw)} samples)"):
        int8 = quantize_int8(float_tflite, np.ascontiguousarray(calib_nchw.transpose(0, 2, 3, 1)))
    info = inspect_tflite(int8)
    modules = ModuleIndex.from_model(loaded.module, tuple(loaded.input_shape))
    checks = []
    with tempfile.TemporaryDirectory(prefix="ran-edge-check-") as tmp:
        model_path = Path(tmp) / f"{loaded.name}_int8.tflite"
        write_atomic(model_path, int8)
        for target in targets:
            with progress.stage(f"Vela placement on {target.name}"):
                try:
                    vela = run_vela(model_path, target, Path(tmp) / target.name)
                except VelaCrash as crash:
                    raise StageError(
                        f"{crash}. `ran-edge build` keeps the model and prints a reproduction."
                    ) from None
            verdict = judge(info, vela, modules, target.name)
            checks.append(TargetCheck(target.name, vela.npu_ops, vela.cpu_ops, verdict))
    return CheckResult(
        loaded.name, len(info.op_types), tuple(checks), tuple(str(r) for r in rewrites)
    )
