"""How close the int8 model is to the float one, on held-out samples.

Both run in LiteRT on the same NHWC inputs; the int8 side quantizes its input with the
model's own scale/zero-point and dequantizes its output, exactly as firmware would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ran_edge.convert.tflite_info import make_interpreter


@dataclass(frozen=True)
class Fidelity:
    """int8-vs-float agreement; `top1_agreement` is None for non-classifier outputs."""

    samples: int
    top1_agreement: float | None
    sqnr_db: float
    max_abs_error: float


def _run(model: bytes, batch: np.ndarray) -> np.ndarray:
    interpreter = make_interpreter(model)
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for sample in batch:
        x = sample[None]
        if np.dtype(inp["dtype"]) == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"], copy=False))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if np.issubdtype(np.dtype(out["dtype"]), np.integer):  # int8, or int16 (a16w8)
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y[0].astype(np.float32))
    return np.stack(results)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    noise = float(np.sum((reference.astype(np.float64) - test) ** 2))
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")


def measure_fidelity(float_model: bytes, int8_model: bytes, holdout_nhwc: np.ndarray) -> Fidelity:
    reference = _run(float_model, holdout_nhwc)
    quantized = _run(int8_model, holdout_nhwc)
    top1 = None
    if reference.ndim == 2 and reference.shape[1] > 1:
        top1 = float(np.mean(reference.argmax(1) == quantized.argmax(1)))
    return Fidelity(
        samples=len(holdout_nhwc),
        top1_agreement=top1,
        sqnr_db=sqnr_db(reference, quantized),
        max_abs_error=float(np.max(np.abs(reference - quantized))),
    )
