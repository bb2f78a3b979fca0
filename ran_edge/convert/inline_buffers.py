"""Keep every tensor's data inside the TFLite flatbuffer, where TFLM looks for it.

ai-edge-quantizer 0.10 writes each buffer of >= 1 KiB *after* the flatbuffer
(`Buffer.offset`/`size`) once the packed weights pass ~256 KiB. LiteRT and Vela follow the
offsets; TFLM ignores them and silently reads zeros, and Vela's legacy Python reader fails.
`inline_buffers` re-serializes the model with the data back in `Buffer.data`, each payload
16-byte aligned (the schema's `force_align: 16`, which the C++ TFLite writers honour and the
Python object API does not). Flatbuffers cannot exceed 2 GiB, so bigger models are refused.

The schema object API is ai-edge-litert's `schema_py_generated` (`ModelT`), the same module
ai-edge-quantizer itself reads and writes models with.
"""

from __future__ import annotations

import flatbuffers
import numpy as np

from ran_edge.errors import StageError

FLATBUFFER_MAX_BYTES = 2**31 - 1  # flatbuffers' 32-bit offsets: the format's hard limit
DATA_ALIGNMENT = 16  # bytes; the schema's force_align for Buffer.data
_IDENTIFIER = b"TFL3"


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _root(model: bytes):
    if len(model) < 8 or bytes(model[4:8]) != _IDENTIFIER:
        raise StageError("not a TFLite flatbuffer (no TFL3 identifier); cannot inline its buffers")
    return _schema().Model.GetRootAs(model, 0)


def external_buffer_count(model: bytes) -> int:
    """How many buffers (and large custom options) keep their bytes outside the flatbuffer."""
    root = _root(model)
    count = sum(1 for i in range(root.BuffersLength()) if root.Buffers(i).Offset() > 0)
    for s in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            count += subgraph.Operators(o).LargeCustomOptionsOffset() > 0
    return count


def misaligned_buffer_count(model: bytes, alignment: int = DATA_ALIGNMENT) -> int:
    """How many non-empty inline buffers start at a file offset that is not `alignment`-aligned."""
    root = _root(model)
    misaligned = 0
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength() > 0:
            start = buffer._tab.Vector(buffer._tab.Offset(4))  # noqa: SLF001 - data's file offset
            misaligned += start % alignment != 0
    return misaligned


def _external_slice(model: bytes, offset: int, size: int, what: str) -> np.ndarray:
    if offset + size > len(model):
        raise StageError(
            f"{what} points past the end of the model ({offset}+{size} > {len(model)} bytes): "
            "the .tflite is truncated"
        )
    return np.frombuffer(model, dtype=np.uint8, count=size, offset=offset)


def inline_buffers(model: bytes, *, max_bytes: int = FLATBUFFER_MAX_BYTES) -> bytes:
    """The same model with all tensor data inside the flatbuffer, 16-byte aligned.

    Deterministic (same bytes in, same bytes out) and idempotent. Raises StageError if the
    inlined model would not fit in a flatbuffer (`max_bytes`, 2 GiB by default).
    """
    schema = _schema()
    model = bytes(model)
    # Upper bound of the inlined size: the file itself plus alignment padding per buffer.
    root = _root(model)
    needed = len(model) + root.BuffersLength() * (DATA_ALIGNMENT + 8)
    if needed > max_bytes:
        raise StageError(
            f"the model needs ~{needed / 2**20:.0f} MiB with its weights inline, over the "
            f"{max_bytes / 2**20:.0f} MiB a flatbuffer can hold (TFLM reads weights only from "
            "inside the flatbuffer): shrink the model (fewer/narrower layers) before converting"
        )
    obj = schema.ModelT.InitFromObj(root)
    obj.buffers = [_AlignedBufferT.inline_from(b, model, i) for i, b in enumerate(obj.buffers)]
    for subgraph in obj.subgraphs or []:
        for op in subgraph.operators or []:
            if op.largeCustomOptionsOffset:
                op.customOptions = _external_slice(
                    model, op.largeCustomOptionsOffset, op.largeCustomOptionsSize, "custom options"
                )
                op.largeCustomOptionsOffset = 0
                op.largeCustomOptionsSize = 0
    builder = flatbuffers.Builder(needed)
    try:
        builder.Finish(obj.Pack(builder), file_identifier=_IDENTIFIER)
    except flatbuffers.builder.BuilderSizeError:
        raise StageError(
            "the model does not fit in a 2 GiB flatbuffer with its weights inline: "
            "shrink the model before converting"
        ) from None
    return bytes(builder.Output())


class _AlignedBufferT:
    """A `BufferT` stand-in whose `Pack` writes `data` inline and 16-byte aligned."""

    def __init__(self, data: np.ndarray | None) -> None:
        self.data = data

    @classmethod
    def inline_from(cls, buffer, model: bytes, index: int) -> _AlignedBufferT:
        if buffer.offset:
            what = f"buffer {index}"
            return cls(_external_slice(model, buffer.offset, buffer.size, what))
        if buffer.data is None:
            return cls(None)
        return cls(np.asarray(buffer.data, dtype=np.uint8).ravel())

    def Pack(self, builder) -> int:
        schema = _schema()
        data = None
        if self.data is not None:
            payload = self.data.tobytes()
            builder.StartVector(1, len(payload), DATA_ALIGNMENT)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)
