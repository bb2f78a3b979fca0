"""How a graph becomes an int8 TFLite flatbuffer: the swappable, slow half of a table entry.

litert-torch export costs seconds per graph; a faster emitter (e.g. writing the TFLite
flatbuffer directly from the block spec) only needs to implement `BlockCompiler`.
Its `identity` goes into every cache key, so two emitters never share cached costs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Protocol

import numpy as np
from torch import nn


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch limited to one thread for a compile job (one job per core: torch's own threads
    would oversubscribe), restored afterwards for a job run in the calling process."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class BlockCompiler(Protocol):
    """Turns a torch module (eval mode) into a fully int8 TFLite flatbuffer."""

    @property
    def identity(self) -> str:
        """Names the emitter and every setting/version that changes its output."""
        ...

    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> bytes: ...


@dataclass(frozen=True)
class LiteRtCompiler:
    """ran-edge's own path: litert-torch export + ai-edge-quantizer static int8, calibrated
    on a few seeded random samples (cycles do not depend on the values, only the graph)."""

    calib_samples: int = 4
    seed: int = 0

    @property
    def identity(self) -> str:
        tools = ("torch", "litert-torch", "ai-edge-quantizer")
        versions = ",".join(f"{t}={version(t)}" for t in tools)
        return f"litert:{self.calib_samples}:{self.seed}:{versions}"

    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
        from ran_edge.convert.export import export_float_tflite
        from ran_edge.convert.quantize import quantize_int8

        n, c, h, w = input_shape
        rng = np.random.default_rng(self.seed)
        calib = rng.standard_normal((self.calib_samples, h, w, c)).astype(np.float32)
        return quantize_int8(export_float_tflite(module, input_shape), calib)
