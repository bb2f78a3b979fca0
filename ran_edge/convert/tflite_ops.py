"""The operators of an int8 .tflite with the shapes that cost them: MACs, elements, bytes.

Read through LiteRT's interpreter without its default delegates (so the list is the model's
own operators, not XNNPACK partitions). Used by the CPU latency estimator and by the
Cortex-M cost of Ethos-U CPU-fallback ops, so both count work the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ran_edge.errors import UsageError

# Ops whose input 1 is a weight tensor (input 2, when present, the int32 bias).
_WEIGHTED = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


@dataclass(frozen=True)
class OpCost:
    """One operator and the work it does, independent of any hardware."""

    index: int
    op: str  # TFLite builtin name, e.g. CONV_2D
    name: str  # its first output tensor's name (litert-torch puts the module path here)
    output: tuple[int, ...]
    inputs: tuple[tuple[int, ...], ...]  # activation inputs (weights and int32 params excluded)
    weights: tuple[int, ...] | None
    macs: int  # multiply-accumulates (0 for ops that do none)
    in_elements: int  # activation elements read
    out_elements: int
    activation_bytes: int  # activation bytes read + written
    weight_bytes: int
    dtype: str  # the output's dtype
    window: int = 1  # a pooling op's filter area (kh * kw); 1 for every other op
    consumers: tuple[str, ...] = ()  # builtin names of the ops that read its first output

    @property
    def bytes(self) -> int:
        return self.activation_bytes + self.weight_bytes


def _size(shape) -> int:
    return int(math.prod(int(d) for d in shape)) if len(shape) else 1


def _itemsize(dtype) -> int:
    return int(np.dtype(dtype).itemsize)


def _macs(
    op: str,
    out: tuple[int, ...],
    weights: tuple[int, ...] | None,
    inputs: tuple[tuple[int, ...], ...] = (),
) -> int:
    if weights is None:
        return 0
    if op == "TRANSPOSE_CONV" and inputs:  # every input pixel scatters a kh x kw x Cout patch
        return _size(inputs[0]) * _size(weights[:3])
    if op == "CONV_2D":  # weights [Cout, kh, kw, Cin]
        return _size(out) * _size(weights[1:])
    if op == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, Cout * multiplier]
        return _size(out) * _size(weights[1:3])
    if op == "FULLY_CONNECTED":  # weights [out, in]
        return _size(out) * int(weights[-1])
    return 0


def _graph_facts(model: bytes) -> tuple[dict[int, int], dict[int, list[int]]]:
    """Pooling filter areas by op index, and the ops that read each tensor, from the flatbuffer.

    The interpreter's op listing has neither: a 3x3/s2 and a 2x2/s2 max pool have the same
    shapes, and whether a PAD is folded into the conv after it depends on who reads it."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    graph = root.Subgraphs(0)
    windows: dict[int, int] = {}
    readers: dict[int, list[int]] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        for t in op.InputsAsNumpy() if op.InputsLength() else ():
            readers.setdefault(int(t), []).append(i)
        if op.BuiltinOptionsType() == schema.BuiltinOptions.Pool2DOptions:
            options = schema.Pool2DOptions()
            table = op.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            windows[i] = max(1, options.FilterWidth() * options.FilterHeight())
    return windows, readers


def read_op_costs(model: bytes) -> list[OpCost]:
    """Every operator of `model` in execution order, with its MACs and bytes moved."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        interpreter = Interpreter(
            model_content=model,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    except (ValueError, RuntimeError) as exc:
        raise UsageError(
            f"not a valid TFLite model ({str(exc).strip().splitlines()[0]}); "
            "give a .tflite flatbuffer written by a TFLite converter."
        ) from None
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    details = interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only op listing
    windows, readers = _graph_facts(model)
    names = {int(d["index"]): d["op_name"] for d in details}
    costs = []
    for detail in details:
        op = detail["op_name"]
        ins = [int(i) for i in detail["inputs"] if int(i) >= 0 and int(i) in tensors]
        outs = [int(i) for i in detail["outputs"] if int(i) in tensors]
        if not outs:
            continue
        weights = None
        if op in _WEIGHTED and len(ins) >= 2:
            weights = tuple(int(d) for d in tensors[ins[1]]["shape"])
            act_ids = ins[:1]
            weight_ids = ins[1:]
        elif op == "TRANSPOSE_CONV" and len(ins) >= 3:  # output shape, weights, input[, bias]
            weights = tuple(int(d) for d in tensors[ins[1]]["shape"])
            act_ids = ins[2:3]
            weight_ids = [ins[1], *ins[3:]]
        else:
            act_ids = [i for i in ins if np.dtype(tensors[i]["dtype"]) != np.int32]
            weight_ids = []
        out = tuple(int(d) for d in tensors[outs[0]]["shape"])
        inputs = tuple(tuple(int(d) for d in tensors[i]["shape"]) for i in act_ids)
        in_elements = sum(_size(s) for s in inputs)
        out_elements = sum(_size(tensors[o]["shape"]) for o in outs)
        act_bytes = sum(
            _size(tensors[i]["shape"]) * _itemsize(tensors[i]["dtype"]) for i in act_ids
        )
        act_bytes += sum(_size(tensors[o]["shape"]) * _itemsize(tensors[o]["dtype"]) for o in outs)
        weight_bytes = sum(
            _size(tensors[i]["shape"]) * _itemsize(tensors[i]["dtype"]) for i in weight_ids
        )
        costs.append(
            OpCost(
                index=int(detail["index"]),
                op=op,
                name=str(tensors[outs[0]]["name"]),
                output=out,
                inputs=inputs,
                weights=weights,
                macs=_macs(op, out, weights, inputs),
                in_elements=in_elements,
                out_elements=out_elements,
                activation_bytes=act_bytes,
                weight_bytes=weight_bytes,
                dtype=np.dtype(tensors[outs[0]]["dtype"]).name,
                window=windows.get(int(detail["index"]), 1),
                consumers=tuple(names.get(r, "?") for r in readers.get(outs[0], ())),
            )
        )
    return costs


def activation_peak_bytes(costs: list[OpCost]) -> int:
    """The largest single op's activations (inputs + output): a floor for the tensor arena."""
    return max((c.activation_bytes for c in costs), default=0)


# How each TFLite op is costed. XNNPACK takes the int8 forms of all but "reference" ops; a
# "free" op (a reshape) moves no data under XNNPACK and costs only its dispatch.
OP_CLASSES: dict[str, frozenset[str]] = {
    "conv": frozenset({"CONV_2D", "TRANSPOSE_CONV"}),
    "depthwise": frozenset({"DEPTHWISE_CONV_2D"}),
    "fc": frozenset({"FULLY_CONNECTED", "BATCH_MATMUL"}),
    "elementwise": frozenset(
        {
            "ADD",
            "SUB",
            "MUL",
            "MAXIMUM",
            "MINIMUM",
            "RELU",
            "RELU6",
            "RELU_N1_TO_1",
            "LEAKY_RELU",
            "PRELU",
            "HARD_SWISH",
            "LOGISTIC",
            "TANH",
            "ELU",
            "SQUARED_DIFFERENCE",
        }
    ),
    "pool": frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D"}),
    "reduce": frozenset({"MEAN", "SUM", "REDUCE_MAX"}),
    "copy": frozenset(
        {
            "PAD",
            "PADV2",
            "CONCATENATION",
            "SLICE",
            "STRIDED_SLICE",
            "SPLIT",
            "SPLIT_V",
            "TRANSPOSE",
            "RESIZE_BILINEAR",
            "RESIZE_NEAREST_NEIGHBOR",
            "DEPTH_TO_SPACE",
            "SPACE_TO_DEPTH",
            "GATHER",
        }
    ),
    "free": frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}),
    "quantize": frozenset({"QUANTIZE", "DEQUANTIZE"}),
}
# Elementwise ops that evaluate a transcendental function per element on a Cortex-M.
TRANSCENDENTAL = frozenset(
    {"SQRT", "RSQRT", "EXP", "LOG", "TANH", "LOGISTIC", "SOFTMAX", "LOG_SOFTMAX", "ELU", "POW"}
)


def op_class(op: str) -> str:
    """conv, depthwise, fc, elementwise, pool, reduce, copy, free, quantize, or reference."""
    for name, ops in OP_CLASSES.items():
        if op in ops:
            return name
    return "reference"
