"""Where Vela placed each operator, read from the model Vela compiled.

Vela's own verdict is the only one that counts: it maps int8 TRANSPOSE and int8->int8
QUANTIZE to the NPU, folds reshapes and SHAPE/STRIDED_SLICE/PACK chains away, and
warns about some of those before folding them. The compiled `_vela.tflite` is the truth:
every NPU subgraph became one `ethos-u` custom op, and every op left beside them runs on
the CPU. We read it with the flatbuffer classes Vela ships, since LiteRT cannot load a
model holding the `ethos-u` custom op.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

NPU_CUSTOM_OP = "ethos-u"


@dataclass(frozen=True)
class PlacedOp:
    """One operator of Vela's output model: an NPU subgraph or an op left on the CPU."""

    op_type: str  # TFLite builtin name (MEAN, ...) or the custom op's name
    name: str  # its first output tensor's name (litert-torch puts the module path in it)
    on_npu: bool
    inputs: tuple[str, ...] = ()  # its input tensors' names (constants included)


@functools.cache
def _builtin_names() -> dict[int, str]:
    from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator

    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


def placed_ops(compiled: bytes | Path) -> tuple[PlacedOp, ...]:
    """Every operator of Vela's compiled model, in order, in every subgraph that runs."""
    from ethosu.vela.tflite.Model import Model

    data = compiled.read_bytes() if isinstance(compiled, Path) else compiled
    model = Model.GetRootAsModel(data, 0)
    names = _builtin_names()
    found = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            custom = code.CustomCode()
            op_type = custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}")
            output = graph.Tensors(op.Outputs(0)).Name().decode() if op.OutputsLength() else ""
            inputs = tuple(
                graph.Tensors(op.Inputs(j)).Name().decode()
                for j in range(op.InputsLength())
                if op.Inputs(j) >= 0
            )
            found.append(PlacedOp(op_type, output, op_type == NPU_CUSTOM_OP, inputs))
    return tuple(found)


def cpu_ops(compiled: bytes | Path) -> tuple[PlacedOp, ...]:
    """The operators Vela left on the CPU."""
    return tuple(op for op in placed_ops(compiled) if not op.on_npu)
