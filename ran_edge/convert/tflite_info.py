"""What a .tflite holds: I/O tensors with quantization, and the operator list.

Read through the LiteRT interpreter without its default delegates (so the op list is the
model's own, with no XNNPACK `DELEGATE` node), and used for what the Ethos-U gate checks
before Vela: int8 in and out, no float op left by the quantizer. Placement is Vela's call
(ran_edge.targets.ethos_u.npu_gate).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ran_edge.errors import UsageError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class TfliteInfo:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    op_types: tuple[str, ...]
    float_op_types: tuple[str, ...]  # ops with a float32 output: not fully int8
    float_op_names: tuple[str, ...] = ()  # their output tensors' names, in the same order

    @property
    def int8_io(self) -> bool:
        return all(t.dtype == "int8" for t in (*self.inputs, *self.outputs))


def _tensor(detail: dict) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        name=detail["name"],
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zero_point),
    )


def make_interpreter(
    model: bytes,
    num_threads: int = 1,
    *,
    delegates: bool = True,
    allocate: bool = True,
    keep_all_tensors: bool = False,
):
    """A LiteRT interpreter over `model`; UsageError if it is not TFLite.

    `delegates=False` keeps XNNPACK out, so the op listing is the model's own operators;
    `allocate=False` skips the kernels' prepare step, which reading the graph does not need
    (and which refuses some valid models, e.g. int8 scales too small for a kernel's
    fixed-point multiplier); `keep_all_tensors=True` (delegates off: an XNNPACK partition
    would hide the tensors inside it) lets every intermediate tensor be read after invoke.
    """
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (
        OpResolverType.AUTO
        if delegates and not keep_all_tensors
        else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        with warnings.catch_warnings():  # "intended for debugging purposes": that is our use
            warnings.simplefilter("ignore", UserWarning)
            interpreter = Interpreter(
                model_content=bytes(model),
                num_threads=num_threads,
                experimental_op_resolver_type=resolver,
                experimental_preserve_all_tensors=keep_all_tensors,
            )
        if allocate:
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise UsageError(
            f"not a valid TFLite model ({str(exc).strip().splitlines()[0]}); "
            "give a .tflite flatbuffer written by a TFLite converter."
        ) from None
    return interpreter


def inspect_tflite(model: bytes) -> TfliteInfo:
    interpreter = make_interpreter(model, delegates=False, allocate=False)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the only op listing LiteRT offers
    float_ops = [
        op
        for op in ops
        if any(i in tensors and np.dtype(tensors[i]["dtype"]) == np.float32 for i in op["outputs"])
    ]
    return TfliteInfo(
        inputs=tuple(_tensor(d) for d in interpreter.get_input_details()),
        outputs=tuple(_tensor(d) for d in interpreter.get_output_details()),
        op_types=tuple(op["op_name"] for op in ops),
        float_op_types=tuple(op["op_name"] for op in float_ops),
        float_op_names=tuple(str(tensors[int(op["outputs"][0])]["name"]) for op in float_ops),
    )


def read_tflite(path: Path) -> bytes:
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist.")
    data = path.read_bytes()
    # A TFLite flatbuffer carries the identifier "TFL3" at byte offset 4.
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UsageError(
            f"{path} is not a TFLite flatbuffer (no TFL3 identifier); "
            "give a .tflite file written by a TFLite converter."
        )
    return data


def npu_gate_problems(info: TfliteInfo) -> list[str]:
    """What Vela cannot judge for us (empty: the model is fully int8).

    int8 input and output, and no float op the quantizer left behind. Whether each op maps
    to the NPU is Vela's verdict, not a list of op names (ran_edge.targets.ethos_u.npu_gate).
    """
    problems = []
    for t in (*info.inputs, *info.outputs):
        if t.dtype != "int8":
            problems.append(f"I/O tensor {t.name!r} is {t.dtype}, not int8")
    if info.float_op_types:
        problems.append(
            f"float32 ops remain after quantization: {', '.join(sorted(set(info.float_op_types)))}"
            " (the quantizer left them float; see `ran-edge check` for their modules)"
        )
    return problems
