"""TFLM reference check: the int8 model as a Cortex-M runs it, against LiteRT's reference kernels.

Both interpreters get the same int8 inputs; any output byte that differs means the model
depends on kernel details the firmware will not reproduce. The TFLM run also measures the
arena: `head` (planned, non-persistent tensors) and `tail` (persistent bookkeeping: tensor
structs, node structs, per-channel quantization data), which sizes the firmware arena margin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ran_edge.quiet import captured_output

_ALLOC = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


@dataclass(frozen=True)
class TflmCheck:
    samples: int
    bit_exact: bool
    mismatched_samples: int
    max_abs_diff: int
    arena_total_bytes: int
    arena_persistent_bytes: int  # TFLM's "tail": the per-model overhead beyond tensor data
    error: str | None = None  # why TFLM could not run the model, if it could not
    first_mismatch: str | None = None  # the first op whose output differs from identical inputs


def _quantize(batch_nhwc: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(batch_nhwc / scale) + zero_point, -128, 127).astype(np.int8)


def tflm_reference_check(int8_model: bytes, samples_nhwc: np.ndarray) -> TflmCheck:
    """Run every sample through TFLM and LiteRT (reference kernels); compare bytes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    tflm, failure = None, ""
    with captured_output() as load_log:
        try:
            tflm = runtime.Interpreter.from_bytes(int8_model)
        except (RuntimeError, ValueError) as exc:
            failure = str(exc)
    if tflm is None:
        # Not fatal: NPU-mapped ops run inside the ethos-u op, not in these TFLM kernels.
        reason = " ".join(f"{failure}: {load_log.tail(3)}".split())
        return TflmCheck(0, False, 0, 0, 0, 0, error=f"TFLM could not prepare the model ({reason})")
    with captured_output() as log:
        litert = Interpreter(
            model_content=int8_model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
        )
        litert.allocate_tensors()
        inp, out = litert.get_input_details()[0], litert.get_output_details()[0]
        scale, zero_point = inp["quantization"]
        mismatched, max_diff = 0, 0
        try:
            for x in _quantize(samples_nhwc, scale, zero_point):
                litert.set_tensor(inp["index"], x[None])
                litert.invoke()
                expected = litert.get_tensor(out["index"]).astype(np.int32)
                tflm.set_input(x[None], 0)
                tflm.invoke()
                got = tflm.get_output(0).astype(np.int32)
                diff = int(np.abs(expected - got).max())
                mismatched += diff > 0
                max_diff = max(max_diff, diff)
        except RuntimeError as exc:
            failure = str(exc)
        tflm.print_allocations()
    if failure:
        reason = " ".join(f"{failure}: {log.tail(3)}".split())
        return TflmCheck(0, False, 0, 0, 0, 0, error=f"TFLM could not run the model ({reason})")
    alloc = {kind: int(n) for kind, n in _ALLOC.findall(log.text)}
    first = None
    if mismatched:
        first = _first_mismatching_op(int8_model, _quantize(samples_nhwc[:1], scale, zero_point))
    return TflmCheck(
        samples=len(samples_nhwc),
        bit_exact=mismatched == 0,
        mismatched_samples=mismatched,
        max_abs_diff=max_diff,
        arena_total_bytes=alloc.get("total", 0),
        arena_persistent_bytes=alloc.get("tail", 0),
        first_mismatch=first,
    )


def _first_mismatching_op(int8_model: bytes, x: np.ndarray) -> str | None:
    """Walk the graph with every tensor kept: the first op fed equal inputs that disagrees."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    with captured_output():
        ref = Interpreter(
            model_content=int8_model,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=True,
        )
        ref.allocate_tensors()
        ref.set_tensor(ref.get_input_details()[0]["index"], x)
        ref.invoke()
        micro = runtime.Interpreter.from_bytes(
            int8_model, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors
        )
        micro.set_input(x, 0)
        micro.invoke()

        def micro_tensor(index: int, like: np.ndarray) -> np.ndarray:
            found = micro.GetTensor(int(index), 0)
            data = found["tensor_data"] if isinstance(found, dict) else found
            return np.asarray(data).reshape(like.shape)

        def same(index: int) -> bool:
            expected = ref.get_tensor(int(index))
            return bool(np.array_equal(expected, micro_tensor(index, expected)))

        names = {t["index"]: t["name"] for t in ref.get_tensor_details()}
        ops = ref._get_ops_details()  # noqa: SLF001 - LiteRT's only op listing
        # Compare activations only (graph input and op outputs), not constant weights.
        activations = {int(ref.get_input_details()[0]["index"])}
        activations |= {int(t) for op in ops for t in op["outputs"]}
        for i, op in enumerate(ops):
            inputs = [t for t in op["inputs"] if int(t) in activations]
            if all(same(t) for t in inputs) and not all(same(t) for t in op["outputs"]):
                return f"op {i} {op['op_name']} ({names[int(op['outputs'][0])][-80:]})"
    return None
