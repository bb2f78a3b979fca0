"""What a Vela-compiled .tflite asks of the firmware: its scratch buffers and CPU ops.

Vela replaces every NPU-mapped run of ops with one `ethos-u` custom op whose inputs include
`scratch` (the feature-map arena) and, with a dedicated SRAM, `scratch_fast` (the SRAM
cache). Any other operator left in the graph runs on the Cortex-M through TFLM and must be
registered in the firmware's op resolver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ran_edge.targets.ethos_u.placement import placed_ops


@dataclass(frozen=True)
class CompiledModel:
    size_bytes: int
    scratch_bytes: int
    scratch_fast_bytes: int
    npu_ops: int  # ethos-u custom ops (each a run of NPU-mapped layers)
    cpu_ops: tuple[str, ...]  # TFLM builtin ops the firmware must register, sorted


def read_compiled_model(path: Path) -> CompiledModel:
    """Parse the flatbuffer with the schema TFLM ships (no interpreter: `ethos-u` is custom)."""
    from tflite_micro.python.tflite_micro import runtime

    data = path.read_bytes()
    model = runtime.convert_bytearray_to_object(bytearray(data))
    graph = model.subgraphs[0]
    sizes = {t.name.decode(): int(np.prod(t.shape)) for t in graph.tensors}
    placed = placed_ops(data)
    cpu_ops = {op.op_type for op in placed if not op.on_npu}
    npu_ops = sum(op.on_npu for op in placed)
    return CompiledModel(
        size_bytes=len(data),
        scratch_bytes=sizes.get("scratch", 0),
        scratch_fast_bytes=sizes.get("scratch_fast", 0),
        npu_ops=npu_ops,
        cpu_ops=tuple(sorted(cpu_ops)),
    )
