"""The one place that knows ai-edge-quantizer: float TFLite + calibration set -> int8 TFLite.

Static int8 (int8 weights per channel, int8 activations, int8 input and output) with
ranges calibrated on a representative dataset: the recipe that keeps 100% of a CNN's ops on
the Ethos-U NPU (PT2E quantization left TRANSPOSE/DEQUANTIZE on the CPU). Ranges come from
`ranges` (global min/max by default, not the quantizer's clipping moving average); chosen
ops can get int16 activations with int8 weights (a16w8), the quantizer inserting the
int8<->int16 QUANTIZE ops around them. Every model returned keeps its weights inside the
flatbuffer (`inline_buffers`), where TFLM looks for them.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection
from importlib.metadata import version

import numpy as np

from ran_edge.convert.inline_buffers import inline_buffers
from ran_edge.convert.ranges import (
    CALIBRATION_METHODS,
    check_method,
    minmax_qsvs,
    robust_qsvs,
)
from ran_edge.errors import StageError, UsageError
from ran_edge.quiet import captured_output

__all__ = [
    "CALIBRATION_METHODS",
    "op_outputs",
    "quantize_int8",
    "quantizer_version",
    "recipe_for",
]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quantizer_version() -> str:
    return version("ai-edge-quantizer")


def quantize_int8(
    float_tflite: bytes,
    calibration_nhwc: np.ndarray,
    *,
    method: str = "minmax",
    int16_tensors: Collection[str] = (),
) -> bytes:
    """Calibrate on `calibration_nhwc` (N x H x W x C float32, one sample per row) and quantize.

    `method` picks the activation ranges (see `ranges`); `int16_tensors` names op outputs of
    the float model whose producing ops get int16 activations (int8 weights).
    """
    if not isinstance(calibration_nhwc, np.ndarray) or calibration_nhwc.ndim != 4:
        raise UsageError(
            "the calibration set must be N x H x W x C samples; got shape "
            f"{getattr(calibration_nhwc, 'shape', None)}"
        )
    if len(calibration_nhwc) == 0:
        raise UsageError(
            "the calibration set is empty: give at least one sample (--calib-samples)."
        )
    check_method(method, len(calibration_nhwc))
    key, input_name = _single_signature(float_tflite)
    if isinstance(int16_tensors, str):  # one name, not its characters
        int16_tensors = [int16_tensors]
    int16 = tuple(dict.fromkeys(int16_tensors))  # ordered, deduplicated: deterministic recipe
    recipe = recipe_for(float_tflite, int16)
    samples = [{input_name: sample[None].astype(np.float32)} for sample in calibration_nhwc]
    with captured_output():
        from ai_edge_quantizer import quantizer
    try:
        qsvs = minmax_qsvs(float_tflite, key, samples, recipe)
        if method != "minmax":
            qsvs = robust_qsvs(float_tflite, calibration_nhwc, qsvs, method, keep=int16)
        q = quantizer.Quantizer(bytearray(float_tflite), recipe)
        with captured_output():
            result = q.quantize(qsvs, enable_progress_report=False)
    except Exception as exc:
        raise StageError(
            f"ai-edge-quantizer failed: {type(exc).__name__}: {str(exc).strip()[:300]}"
        ) from None
    if result.quantized_model is None:
        raise StageError("ai-edge-quantizer returned no model")
    model = inline_buffers(bytes(result.quantized_model))
    _check_types(model, int16)
    return model


def _single_signature(float_tflite: bytes) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=bytes(float_tflite)).get_signature_list()
    if len(signatures) != 1:
        raise StageError(f"expected one signature in the float model, found {list(signatures)}")
    key, io_names = next(iter(signatures.items()))
    if len(io_names["inputs"]) != 1:
        raise UsageError(
            f"the model has {len(io_names['inputs'])} inputs; ran-edge calibrates "
            "single-input models only."
        )
    return key, io_names["inputs"][0]


def _op_output_names(float_tflite: bytes) -> list[tuple[str, list[str]]]:
    """(op type, output tensor names) of every op of the model, in order."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(float_tflite))
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    return [
        (op["op_name"], [names[int(t)] for t in op["outputs"] if int(t) >= 0])
        for op in interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only op listing
    ]


def op_outputs(float_tflite: bytes) -> dict[str, str]:
    """Output tensor name -> op type (e.g. CONV_2D), for every op of the model, in order."""
    return _outputs_to_types(_op_output_names(float_tflite))


def _scopes(float_tflite: bytes) -> dict[str, str]:
    """Output tensor name -> the quantizer's scope of its producing op ("name;name2;")."""
    return _outputs_to_scopes(_op_output_names(float_tflite))


def _outputs_to_types(ops: list[tuple[str, list[str]]]) -> dict[str, str]:
    return {name: op_type for op_type, outputs in ops for name in outputs}


def _outputs_to_scopes(ops: list[tuple[str, list[str]]]) -> dict[str, str]:
    return {name: "".join(f"{n};" for n in outputs) for _, outputs in ops for name in outputs}


def recipe_for(float_tflite: bytes, int16_tensors: Collection[str] = ()) -> list[dict]:
    """The quantizer recipe: static int8 everywhere, a16w8 for the ops producing `int16_tensors`.

    Each int16 entry matches exactly one op: the quantizer matches a recipe's regex against the
    op's scope (its output names, each followed by ';'), so the regex is the anchored scope.
    """
    with captured_output():
        from ai_edge_quantizer import algorithm_manager, recipe, recipe_manager

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    if not int16_tensors:
        return manager.get_quantization_recipe()
    ops = _op_output_names(float_tflite)
    outputs, scopes = _outputs_to_types(ops), _outputs_to_scopes(ops)
    for name in int16_tensors:
        if name not in outputs:
            raise UsageError(_unknown_tensor(name, outputs))
        op_type, operation = outputs[name], _a16w8_operation(outputs[name])
        if operation is None:
            raise UsageError(
                f"ai-edge-quantizer {quantizer_version()} cannot give {op_type} "
                f"({name[-60:]}) int16 activations: drop it from the int16 tensors"
            )
        manager.add_quantization_config(
            regex=f"^{re.escape(scopes[name])}$",
            operation_name=operation,
            op_config=_a16w8_config(),
            algorithm_key=algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT,
        )
    return manager.get_quantization_recipe()


def _a16w8_config():
    """int16 symmetric activations, int8 symmetric per-channel weights (the a16w8 recipe)."""
    from ai_edge_quantizer import qtyping

    return qtyping.OpQuantizationConfig(
        activation_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, symmetric=True),
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE
        ),
        compute_precision=qtyping.ComputePrecision.INTEGER,
        explicit_dequantize=False,
    )


def _a16w8_operation(op_type: str):
    """The quantizer's name for `op_type` if it has an a16w8 kernel for it, else None.

    Without this check the quantizer would skip the config and leave the op int8 silently.
    """
    from ai_edge_quantizer import algorithm_manager, qtyping

    try:
        operation = qtyping.TFLOperationName(op_type)
        algorithm_manager.check_op_quantization_config(
            algorithm_manager.AlgorithmName.MIN_MAX_UNIFORM_QUANT, operation, _a16w8_config()
        )
    except ValueError:
        return None
    return operation


def _unknown_tensor(name: str, outputs: dict[str, str]) -> str:
    close = difflib.get_close_matches(name, list(outputs), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0][-100:]!r}?)" if close else ""
    return (
        f"no op in the float model outputs a tensor named {name[-100:]!r}{hint}. Fix: name "
        "op output tensors of the float model (ran_edge.convert.quantize.op_outputs lists them)"
    )


def _check_types(model: bytes, int16_tensors: Collection[str]) -> None:
    """int16 where asked, and still int8 input and output (an int16 op at the model's edge
    must get QUANTIZE ops, not widen the I/O): verify what the quantizer wrote."""
    from ai_edge_litert.interpreter import Interpreter

    if not int16_tensors:
        return
    interpreter = Interpreter(model_content=model)
    ends = interpreter.get_input_details() + interpreter.get_output_details()
    wrong = [d for d in ends if d["dtype"] != np.int8]
    if wrong:
        raise StageError(
            f"ai-edge-quantizer left model I/O tensor {wrong[0]['name'][-80:]!r} at "
            f"{np.dtype(wrong[0]['dtype']).name}, not int8"
        )
    dtypes = {d["name"]: d["dtype"] for d in interpreter.get_tensor_details()}
    missed = [n for n in int16_tensors if dtypes.get(n) != np.int16]
    if missed:
        raise StageError(
            f"ai-edge-quantizer left {len(missed)} requested int16 tensor(s) at another type, "
            f"e.g. {missed[0][-80:]!r} ({np.dtype(dtypes.get(missed[0], np.float32)).name})"
        )
