"""The built-in micro-benchmarks `calibrate-target` times: small int8 models, one idea each.

Convs of several shapes (pointwise, 3x3, strided, narrow and wide), depthwise 3x3/5x5,
fully-connected, add, pooling, a chain of tiny ops (per-op overhead) and one op XNNPACK does
not take (sqrt: the reference-kernel rate). Built from tiny torch modules through ran-edge's
own export + int8 quantisation, so they contain exactly the ops real builds produce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class MicroBench:
    name: str
    make: Callable[[], nn.Module]
    input_shape: tuple[int, int, int, int]  # NCHW


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups), nn.ReLU6())


class _Add(nn.Module):
    """Two halves of the channels added: SLICE/STRIDED_SLICE + ADD."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1] // 2
        return x[:, :c] + x[:, c:]


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class _Chain(nn.Module):
    """Many tiny ops: isolates the per-op dispatch cost."""

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[_conv(c, c, 1) for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _Sqrt(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.relu(x) + 1)


class _Fc(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


def _bench(name: str, make: Callable[[], nn.Module], c: int, hw: int) -> MicroBench:
    return MicroBench(name, make, (1, c, hw, hw))


MICRO_BENCHMARKS: tuple[MicroBench, ...] = (
    # dense 3x3 convs: narrow to wide, several resolutions, strided stems
    _bench("conv3x3_s2_c3_16_192", lambda: _conv(3, 16, 3, 2), 3, 192),
    _bench("conv3x3_c8_16_96", lambda: _conv(8, 16, 3), 8, 96),
    _bench("conv3x3_c16_32_64", lambda: _conv(16, 32, 3), 16, 64),
    _bench("conv3x3_c32_32_48", lambda: _conv(32, 32, 3), 32, 48),
    _bench("conv3x3_c64_64_32", lambda: _conv(64, 64, 3), 64, 32),
    _bench("conv3x3_s2_c32_64_64", lambda: _conv(32, 64, 3, 2), 32, 64),
    _bench("conv3x3_c128_128_16", lambda: _conv(128, 128, 3), 128, 16),
    # pointwise convs: expand, project, square, narrow
    _bench("conv1x1_c16_96_64", lambda: _conv(16, 96, 1), 16, 64),
    _bench("conv1x1_c96_24_64", lambda: _conv(96, 24, 1), 96, 64),
    _bench("conv1x1_c32_32_96", lambda: _conv(32, 32, 1), 32, 96),
    _bench("conv1x1_c144_24_48", lambda: _conv(144, 24, 1), 144, 48),
    _bench("conv1x1_c256_256_14", lambda: _conv(256, 256, 1), 256, 14),
    _bench("conv1x1_c64_384_28", lambda: _conv(64, 384, 1), 64, 28),
    _bench("conv1x1_c8_8_96", lambda: _conv(8, 8, 1), 8, 96),
    # depthwise
    _bench("dw3x3_c16_112", lambda: _conv(16, 16, 3, groups=16), 16, 112),
    _bench("dw3x3_c64_56", lambda: _conv(64, 64, 3, groups=64), 64, 56),
    _bench("dw3x3_c144_48", lambda: _conv(144, 144, 3, groups=144), 144, 48),
    _bench("dw3x3_s2_c96_64", lambda: _conv(96, 96, 3, 2, groups=96), 96, 64),
    _bench("dw3x3_c384_14", lambda: _conv(384, 384, 3, groups=384), 384, 14),
    _bench("dw5x5_c240_28", lambda: _conv(240, 240, 5, groups=240), 240, 28),
    # fully connected
    _bench("fc_64_10", lambda: _Fc(64, 10), 64, 1),
    _bench("fc_256_256", lambda: _Fc(256, 256), 256, 1),
    _bench("fc_1280_1000", lambda: _Fc(1280, 1000), 1280, 1),
    _bench("fc_2048_2048", lambda: _Fc(2048, 2048), 2048, 1),
    # elementwise, pooling, reductions
    _bench("add_c64_64", _Add, 64, 64),
    _bench("residual_c32_64", lambda: _Residual(32), 32, 64),
    _bench("avgpool2_c32_64", lambda: nn.AvgPool2d(2), 32, 64),
    _bench("maxpool3_s2_c64_64", lambda: nn.MaxPool2d(3, 2, 1), 64, 64),
    _bench("gap_c256_28", lambda: nn.AdaptiveAvgPool2d(1), 256, 28),
    # per-op overhead and the reference-kernel path
    _bench("chain16_c8_8", lambda: _Chain(8, 16), 8, 8),
    _bench("chain8_c16_16", lambda: _Chain(16, 8), 16, 16),
    _bench("sqrt_c16_32", _Sqrt, 16, 32),
)

# A quarter of the set that still touches every parameter: for quick checks (and tests).
QUICK = (
    "conv3x3_c16_32_64",
    "conv1x1_c96_24_64",
    "conv1x1_c8_8_96",
    "dw3x3_c64_56",
    "fc_1280_1000",
    "add_c64_64",
    "maxpool3_s2_c64_64",
    "gap_c256_28",
    "chain16_c8_8",
    "sqrt_c16_32",
)


def select(quick: bool) -> tuple[MicroBench, ...]:
    return tuple(b for b in MICRO_BENCHMARKS if not quick or b.name in QUICK)


def build_int8(module: nn.Module, input_shape: tuple[int, ...], seed: int = 0) -> bytes:
    """Export `module` to float TFLite and quantise it to int8 on random calibration data."""
    from ran_edge.convert.export import export_float_tflite
    from ran_edge.convert.quantize import quantize_int8

    torch.manual_seed(seed)
    module = module.eval()
    float_tflite = export_float_tflite(module, input_shape)
    n, c, h, w = input_shape
    calib = np.random.default_rng(seed).random((8, h, w, c), dtype=np.float32)
    return quantize_int8(float_tflite, calib)


def build_bench(bench: MicroBench) -> bytes:
    torch.manual_seed(0)  # the module's init draws from the global RNG
    return build_int8(bench.make(), bench.input_shape)
