"""One forward pass on zeros, to learn shapes and costs: fast, and without side effects.

Random-init networks fed zeros produce denormal floats, which make CPU convolutions
~100x slower (MobileNetV2 at 224: 2.2 s instead of 20 ms). Probes only need shapes and
MAC counts, so denormals are flushed to zero for the probe and restored after.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def probe_forward(module: nn.Module, input_shape: Sequence[int]):
    """Run `module` once on zeros of `input_shape` under no_grad; return its output."""
    torch.set_flush_denormal(True)
    try:
        with torch.no_grad():
            return module(torch.zeros(tuple(input_shape)))
    finally:
        torch.set_flush_denormal(False)
