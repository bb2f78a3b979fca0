"""The one place that knows ai-edge-quantizer: float TFLite + calibration set -> int8 TFLite.

Static int8 (int8 weights per channel, int8 activations, int8 input and output) with
min/max ranges calibrated on a representative dataset: the recipe that keeps 100% of a
CNN's ops on the Ethos-U NPU (PT2E quantization left TRANSPOSE/DEQUANTIZE on the CPU).
"""

from __future__ import annotations

import os
from importlib.metadata import version

import numpy as np

from ran_edge.errors import StageError, UsageError
from ran_edge.quiet import captured_output


def quantizer_version() -> str:
    return version("ai-edge-quantizer")


def quantize_int8(float_tflite: bytes, calibration_nhwc: np.ndarray) -> bytes:
    """Calibrate on `calibration_nhwc` (N x H x W x C float32, one sample per row) and quantize."""
    from ai_edge_litert.interpreter import Interpreter

    with captured_output():
        from ai_edge_quantizer import quantizer, recipe

    if calibration_nhwc.ndim != 4 or len(calibration_nhwc) == 0:
        raise UsageError(
            "the calibration set is empty: give at least one sample (--calib-samples)."
        )
    signatures = Interpreter(model_content=float_tflite).get_signature_list()
    if len(signatures) != 1:
        raise StageError(f"expected one signature in the float model, found {list(signatures)}")
    key, io_names = next(iter(signatures.items()))
    if len(io_names["inputs"]) != 1:
        raise UsageError(
            f"the model has {len(io_names['inputs'])} inputs; ran-edge calibrates "
            "single-input models only."
        )
    input_name = io_names["inputs"][0]
    samples = [{input_name: sample[None].astype(np.float32)} for sample in calibration_nhwc]
    q = quantizer.Quantizer(bytearray(float_tflite), recipe.static_wi8_ai8())
    try:
        with captured_output():
            ranges = q.calibrate({key: samples}, num_threads=os.cpu_count() or 1)
            result = q.quantize(ranges, enable_progress_report=False)
    except Exception as exc:
        raise StageError(
            f"ai-edge-quantizer failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
        ) from None
    if result.quantized_model is None:
        raise StageError("ai-edge-quantizer returned no model")
    return bytes(result.quantized_model)
