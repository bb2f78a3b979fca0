"""Cut a TFLite model into one-operator models, to time each operator on its own.

LiteRT's Python API cannot profile inside the XNNPACK delegate, so the only way to see what
one op costs is to run it alone: the op, the tensors it touches and their buffers, with its
activation inputs as the model's inputs. The CPU estimator's benchmark uses this to find
which op types, sizes and thread counts its model misses. Built with ai-edge-litert's schema
object API, the module ai-edge-quantizer reads and writes models with.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import flatbuffers


@dataclass(frozen=True)
class OpSlice:
    """Operator `index` of the source model (its builtin name `op`) as a model of its own."""

    index: int
    op: str
    model: bytes


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _op_name(schema, model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def _has_data(model, tensor) -> bool:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return buffer is not None and (
        (buffer.data is not None and len(buffer.data) > 0) or (buffer.offset or 0) > 1
    )


def slice_ops(data: bytes) -> list[OpSlice]:
    """Every operator of subgraph 0 of `data` as a one-op model, in execution order."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.subgraphs[0]
    slices = []
    for index, op in enumerate(graph.operators):
        used = [t for t in [*op.inputs, *op.outputs] if t >= 0]
        remap = {old: new for new, old in enumerate(dict.fromkeys(used))}
        one = copy.copy(model)
        one.buffers = [schema.BufferT()]  # buffer 0 is the empty sentinel
        tensors = []
        for old in remap:
            tensor = copy.copy(graph.tensors[old])
            if _has_data(model, tensor):
                one.buffers.append(model.buffers[tensor.buffer])
                tensor.buffer = len(one.buffers) - 1
            else:
                tensor.buffer = 0
            tensors.append(tensor)
        sub = copy.copy(graph)
        sub.tensors = tensors
        new_op = copy.copy(op)
        new_op.inputs = [remap[t] if t >= 0 else t for t in op.inputs]
        new_op.outputs = [remap[t] for t in op.outputs]
        sub.operators = [new_op]
        sub.inputs = [
            remap[t] for t in dict.fromkeys(op.inputs) if t >= 0 and tensors[remap[t]].buffer == 0
        ]
        sub.outputs = list(new_op.outputs)
        one.subgraphs = [sub]
        one.signatureDefs = None
        one.metadata = None
        one.metadataBuffer = None
        builder = flatbuffers.Builder(1024)
        builder.Finish(one.Pack(builder), file_identifier=b"TFL3")
        slices.append(OpSlice(index, _op_name(schema, model, op), bytes(builder.Output())))
    return slices
