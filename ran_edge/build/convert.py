"""The target-independent half of a build: export to float TFLite, quantize on the calibration
set, then the checks every build runs (fidelity and per-op sensitivity on held-out samples, and
the TFLM reference check). The TFLM check runs in its own process while the rest goes on; the
caller collects it with `ConvertedModel.tflm` (or `finish()`), so Vela can run meanwhile."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ran_edge.build.mixed_precision import (
    auto_mixed_precision,
    float_ops,
    int16_tensors_for_modules,
    modules_of,
)
from ran_edge.build.requests import DEFAULT_QUANTIZE, QuantizeOptions
from ran_edge.convert.attribution import ModuleIndex
from ran_edge.convert.export import export_float_tflite_with_rewrites
from ran_edge.convert.fidelity import Fidelity, measure_fidelity
from ran_edge.convert.quantize import quantize_int8
from ran_edge.convert.ranges import check_method
from ran_edge.convert.sensitivity import sensitivity_json, sensitivity_rows
from ran_edge.convert.tflite_info import TfliteInfo, inspect_tflite
from ran_edge.errors import UsageError
from ran_edge.firmware.tflm_check import TflmCheck, start_tflm_check
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.report.json_report import ModelFacts, QuantizationQuality

TFLM_SAMPLES = 16  # offered to the TFLM check; it stops early when the first agree bit-exactly


class Deferred:
    """Work running beside the build (a thread, or the TFLM check's child process):
    `result()` waits the first time, keeps the answer, and re-raises what the work raised."""

    def __init__(self, pending) -> None:
        self._pending = pending
        self._done = False
        self._result = None
        self._lock = threading.Lock()  # targets build in threads; the first one waits

    def result(self):
        with self._lock:
            if not self._done:
                self._result = self._pending.result()
                self._done = True
            return self._result


@dataclass(frozen=True)
class Checks:
    """int8 against float on the held-out samples: whole-model fidelity, per-op sensitivity."""

    fidelity: Fidelity | None
    sensitivity: dict | None  # the report section (None: no held-out samples, or not pairable)


@dataclass(frozen=True)
class ConvertedModel:
    """The target-independent half of a build. The checks on the int8 model run alongside
    the targets: `fidelity`, `quality` and `tflm` wait for them the first time they are read
    (a report is written only after that)."""

    facts: ModelFacts
    float_tflite: bytes
    int8_tflite: bytes
    info: TfliteInfo
    calibration: dict
    modules: ModuleIndex
    quantization: dict  # how it was quantized: the report's conversion.quantization
    checks: Deferred
    tflm_check: Deferred

    @property
    def fidelity(self) -> Fidelity | None:
        return self.checks.result().fidelity

    @property
    def quality(self) -> QuantizationQuality:
        """Report sections: ranges, int16 layers, rewrites, and per-op sensitivity."""
        return QuantizationQuality(self.quantization, self.checks.result().sensitivity)

    @property
    def tflm(self) -> TflmCheck:
        """The TFLM check's verdict (waits for its process the first time)."""
        return self.tflm_check.result()

    def wait(self) -> None:
        """Block until every check has finished (raising what a check raised)."""
        self.checks.result()
        self.tflm_check.result()


def nhwc(batch: np.ndarray) -> np.ndarray:
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
    progress: BuildProgress = SILENT,
    macs: int | None = None,
    weights: Path | None = None,
    options: QuantizeOptions = DEFAULT_QUANTIZE,
) -> ConvertedModel:
    """Export `loaded` (a LoadedModel) to float TFLite, quantize it on `calib`, measure fidelity
    and per-op sensitivity on the held-out samples, and check it in TFLM."""
    from ran_edge.models import count_params

    holdout = nhwc(calib.holdout) if len(calib.holdout) else None
    check_method(options.method, len(calib.samples))  # before minutes of export
    if options.auto is not None and holdout is None:
        raise UsageError(
            "--auto-mixed-precision measures on held-out samples: give --holdout N (N > 0)."
        )
    modules = ModuleIndex.from_model(loaded.module, tuple(loaded.input_shape))
    with progress.stage("export float TFLite (litert-torch)"):
        float_tflite, rewrites = export_float_tflite_with_rewrites(
            loaded.module, loaded.input_shape, rewrites=options.rewrites
        )
    int16 = int16_tensors_for_modules(float_tflite, options.int16_modules, modules)
    method = f"{options.method} ranges" + (f", {len(int16)} int16 layer(s)" if int16 else "")
    mixed = None
    if options.auto is None:
        with progress.stage(f"calibrate + quantize ({method}, {len(calib.samples)} samples)"):
            int8_tflite = quantize_int8(
                float_tflite, nhwc(calib.samples), method=options.method, int16_tensors=int16
            )
    else:
        target = options.auto_target
        with progress.stage(f"automatic mixed precision (Vela cycles on {target.name})"):
            mixed = auto_mixed_precision(
                float_tflite,
                nhwc(calib.samples),
                holdout,
                target,
                modules=modules,
                goal=options.auto,
                method=options.method,
            )
        int8_tflite, int16 = mixed.model, mixed.int16_tensors
    info = inspect_tflite(int8_tflite)
    # The checks start now and run while the targets compile: TFLM against LiteRT's reference
    # kernels in a child process, fidelity and per-op sensitivity in a thread (LiteRT and
    # numpy release the GIL; Vela runs in its own process).
    reference = calib.holdout if len(calib.holdout) else calib.samples
    tflm = Deferred(start_tflm_check(int8_tflite, nhwc(reference[:TFLM_SAMPLES])))
    checks = Deferred(_start_checks(float_tflite, int8_tflite, holdout, modules))
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
    quantization = {
        "method": options.method,
        "int16_activations": list(_int16_modules(float_tflite, modules, int16, mixed)),
        "int16_tensors": len(int16),
        "rewrites": [asdict(r) for r in rewrites],
        "mixed_precision": None if mixed is None else mixed.as_dict(),
    }
    return ConvertedModel(
        facts=facts,
        float_tflite=float_tflite,
        int8_tflite=int8_tflite,
        info=info,
        calibration=calibration,
        modules=modules,
        quantization=quantization,
        checks=checks,
        tflm_check=tflm,
    )


def _start_checks(float_tflite: bytes, int8_tflite: bytes, holdout, modules) -> Future:
    """Fidelity and per-op sensitivity on the held-out samples, in a thread of their own."""

    def run() -> Checks:
        if holdout is None:
            return Checks(None, None)
        fidelity = measure_fidelity(float_tflite, int8_tflite, holdout)
        rows = sensitivity_rows(float_tflite, int8_tflite, holdout, modules)
        return Checks(fidelity, sensitivity_json(rows, len(holdout)))

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="int8-checks")
    future = pool.submit(run)
    pool.shutdown(wait=False)  # the thread ends with its one task
    return future


def _int16_modules(float_tflite: bytes, modules, int16: tuple[str, ...], mixed) -> tuple:
    if mixed is not None:
        return mixed.int16_modules
    return modules_of(float_ops(float_tflite, modules), int16) if int16 else ()
