"""The built-in micro-benchmarks `calibrate-target` times: small int8 models, one idea each,
and random op stacks: small whole networks drawn from a seed.

Convs of several shapes (pointwise, 3x3, strided, narrow and wide), depthwise 3x3/5x5,
fully-connected, add, pooling, a chain of tiny ops (per-op overhead) and one op XNNPACK does
not take (sqrt: the reference-kernel rate). Single ops run hot in cache and alone; the stacks
(random sequences of convs, depthwise, pooling, residual adds, upsampling and concatenation,
at random widths and resolutions) show how ops behave next to each other, and calibrate-target
holds half of them out in turn to derive the profile's uncertainty band. Built from tiny torch
modules through ran-edge's own export + int8 quantisation, so they contain exactly the ops
real builds produce. The stacks are no named architecture: the estimator's benchmark judges it
on families (MobileNet, EfficientNet, VGG, ResNet, SE/hard-swish, U-Net) it never sees.
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


class _HardSwish(nn.Module):
    """A 1x1 conv then hard-swish: XNNPACK leaves int8 HARD_SWISH to TFLite's kernel."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv, self.act = nn.Conv2d(c, c, 1), nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class _Handoffs(nn.Module):
    """n times a 1x1 conv then an op outside XNNPACK (hard-swish or a 3x3 average pool): each
    hands its tensor from the delegate to TFLite's kernel and back, what MobileNetV3's
    hard-swishes and a VGG's average pools do."""

    def __init__(self, c: int, n: int, outside: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[m for _ in range(n) for m in (nn.Conv2d(c, c, 1), outside())])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _Upsample(nn.Module):
    """A 1x1 conv then 2x nearest upsampling (RESIZE_NEAREST_NEIGHBOR, a TFLite kernel)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.conv(x), scale_factor=2, mode="nearest")


class _Sqrt(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.relu(x) + 1)


class _Fc(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.fc = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


class _Block(nn.Module):
    """One step of a random stack: a module, optionally added to its input (a residual)."""

    def __init__(self, body: nn.Module, residual: bool) -> None:
        super().__init__()
        self.body, self.residual = body, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class _Concat(nn.Module):
    """Two convs on the same input, concatenated along channels."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        self.a, self.b = _conv(c, c // 2, 1), _conv(c, c - c // 2, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(x), self.b(x)], 1)


class ClassifierHead(nn.Module):
    """Global average pooling, then a 10-way fully-connected layer: how every stack ends."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = nn.Linear(c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def random_stack(
    seed: int, mac_budget: float = 150e6
) -> tuple[nn.Module, tuple[int, int, int, int]]:
    """A small network drawn from `seed`: a strided stem, 5-11 random steps, pooling + FC.

    Like real backbones, strided convs halve the resolution and widen the channels (to 512;
    640 for pointwise, 960 inside separable blocks); half the stacks end in a backbone's tail,
    wide pointwise convs on a few pixels whose weights (1-3 MB) outgrow a core's L2. A step that would take the network past `mac_budget` MACs becomes a depthwise
    conv, so every stack times in a few milliseconds at most."""
    rng = np.random.default_rng(seed)
    hw = int(rng.choice([32, 48, 64, 96, 128, 160]))
    c = int(rng.choice([8, 16, 24, 32, 48]))
    layers: list[nn.Module] = [_conv(3, c, 3, 2)]
    res = hw // 2
    macs = res * res * c * 27
    for _ in range(int(rng.integers(5, 12))):
        step = str(rng.choice(["conv", "pw", "dw", "sep", "res", "pool", "up", "cat"]))
        if (step == "pool" and res < 8) or (step == "up" and res > hw // 4):
            step = "cat"  # the resolution rules the step out
        k = int(rng.choice([3, 5])) if step in ("dw", "sep") else 3
        stride = 2 if step == "conv" and res >= 6 and rng.random() < 0.6 else 1
        cout = int(min(512, c * rng.choice([1, 2]) * stride)) if step == "conv" else c
        if step == "pw":
            cout = int(min(640, max(8, c * rng.choice([1, 2, 4]) // rng.choice([1, 2]))))
        e = int(min(960, c * rng.choice([2, 4, 6])))
        cost = {
            "conv": res * res * c * cout * 9 / stride**2,
            "pw": res * res * c * cout,
            "sep": res * res * (2 * c * e + e * k * k),
            "res": 18 * res * res * c * c,
            "cat": res * res * c * 5 * c,
        }.get(step, 0)
        if macs + cost > mac_budget:
            step = "dw"
        macs += cost if step != "dw" else res * res * c * k * k
        if step == "pool":
            layers.append(nn.MaxPool2d(2) if rng.random() < 0.5 else nn.AvgPool2d(2))
            res //= 2
        elif step == "up":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
            res *= 2
        elif step == "conv":
            layers.append(_conv(c, cout, 3, stride))
            c, res = cout, res // stride
        elif step == "pw":
            layers.append(_conv(c, cout, 1))
            c = cout
        elif step == "dw":
            layers.append(_conv(c, c, k, groups=c))
        elif step == "sep":
            body = nn.Sequential(_conv(c, e, 1), _conv(e, e, k, groups=e), nn.Conv2d(e, c, 1))
            layers.append(_Block(body, residual=True))
        elif step == "res":
            layers.append(_Block(nn.Sequential(_conv(c, c, 3), nn.Conv2d(c, c, 3, 1, 1)), True))
        else:  # "cat"
            layers.append(_Concat(c, 3))
    if rng.random() < 0.5:  # a backbone's tail: down to a few pixels, then wide pointwise convs
        while res > 6:
            cout = int(min(256, 2 * c))
            layers.append(_conv(c, cout, 3, 2))
            c, res = cout, res // 2
        for _ in range(int(rng.integers(2, 6))):
            cout = int(rng.choice([256, 384, 512, 768, 1024]))
            layers.append(_conv(c, cout, 1))
            c = cout
    layers.append(ClassifierHead(c))
    return nn.Sequential(*layers), (1, 3, hw, hw)


STACK_SEEDS = tuple(range(1, 25))
QUICK_STACK_SEEDS = STACK_SEEDS[:8]


@dataclass(frozen=True)
class Stack:
    name: str
    seed: int

    def make(self) -> tuple[nn.Module, tuple[int, int, int, int]]:
        torch.manual_seed(self.seed)  # the layers' init draws from the global RNG
        return random_stack(self.seed)


def stacks(quick: bool) -> tuple[Stack, ...]:
    return tuple(Stack(f"stack{s:02d}", s) for s in (QUICK_STACK_SEEDS if quick else STACK_SEEDS))


def build_stack(stack: Stack) -> bytes:
    module, shape = stack.make()
    return build_int8(module, shape, seed=stack.seed)


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
    # the last stages' few output pixels: most of each GEMM tile's rows idle
    _bench("conv1x1_c96_576_7", lambda: _conv(96, 576, 1), 96, 7),
    _bench("conv1x1_c576_96_7", lambda: _conv(576, 96, 1), 576, 7),
    _bench("conv1x1_c320_320_3", lambda: _conv(320, 320, 1), 320, 3),
    _bench("conv3x3_c256_256_2", lambda: _conv(256, 256, 3), 256, 2),
    # a tap's input channels taken in whole steps (x86 AMX: 64 bytes): the first two do the
    # same MACs, and 96 channels fill two steps of 64 as 128 would
    _bench("conv3x3_c96_96_14", lambda: _conv(96, 96, 3), 96, 14),
    _bench("conv3x3_c192_192_7", lambda: _conv(192, 192, 3), 192, 7),
    _bench("conv3x3_c24_24_56", lambda: _conv(24, 24, 3), 24, 56),
    # a decoder's 2x upsampling by a transposed conv (TRANSPOSE_CONV)
    _bench("tconv4x4_s2_c48_24_12", lambda: nn.ConvTranspose2d(48, 24, 4, 2, 1), 48, 12),
    # depthwise
    _bench("dw3x3_c16_112", lambda: _conv(16, 16, 3, groups=16), 16, 112),
    _bench("dw3x3_c64_56", lambda: _conv(64, 64, 3, groups=64), 64, 56),
    _bench("dw3x3_c144_48", lambda: _conv(144, 144, 3, groups=144), 144, 48),
    _bench("dw3x3_s2_c96_64", lambda: _conv(96, 96, 3, 2, groups=96), 96, 64),
    _bench("dw3x3_c384_14", lambda: _conv(384, 384, 3, groups=384), 384, 14),
    _bench("dw5x5_c240_28", lambda: _conv(240, 240, 5, groups=240), 240, 28),
    _bench("dw7x7_c96_8", lambda: _conv(96, 96, 7, groups=96), 96, 8),
    _bench("dw7x7_c192_2", lambda: _conv(192, 192, 7, groups=192), 192, 2),
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
    # weight-heavy 1x1 chains at a few pixels: small GEMM rows, weights beyond L2
    _bench("chain8_c512_4", lambda: _Chain(512, 8), 512, 4),
    _bench("chain4_c1024_2", lambda: _Chain(1024, 4), 1024, 2),
    # per-op overhead and the ops XNNPACK leaves to TFLite's kernels
    _bench("chain16_c8_8", lambda: _Chain(8, 16), 8, 8),
    _bench("chain8_c16_16", lambda: _Chain(16, 8), 16, 16),
    _bench("sqrt_c16_32", _Sqrt, 16, 32),
    _bench("hardswish_c64_28", lambda: _HardSwish(64), 64, 28),
    _bench("upsample_c32_32", lambda: _Upsample(32), 32, 32),
    # tensors handed between XNNPACK and TFLite's kernels, 8 times over
    _bench("handoff8_hardswish_c56_24", lambda: _Handoffs(56, 8, nn.Hardswish), 56, 24),
    _bench(
        "handoff8_avgpool_c32_32", lambda: _Handoffs(32, 8, lambda: nn.AvgPool2d(3, 1, 1)), 32, 32
    ),
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
    "chain8_c512_4",
    "sqrt_c16_32",
    "hardswish_c64_28",
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
