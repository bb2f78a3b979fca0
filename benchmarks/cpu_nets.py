"""Held-out whole networks for validating the CPU latency estimator (LiteRT + XNNPACK int8).

    .venv/bin/python benchmarks/cpu_nets.py [--time] [--only SUBSTRING]

The estimator's [cpu_model] parameters are fitted on single-op micro-benchmarks
(ran_edge/targets/cortex_a/microbench.py) and small random op stacks; nothing here is in that
fit. These networks test whether it generalises to whole graphs of other families, widths and
resolutions (input 32-224, about 5-300 MMACs, so roughly 0.1-15 ms int8 at 1 thread on a modern
x86 core):

- depthwise-heavy: zoo MobileNetV2 (width 0.35-1.0) and EfficientNet-Lite0, several resolutions;
- plain VGG-style convs with max- or average-pooling, several widths, and a wide shallow net;
- ResNets: zoo ResNet-18 at low resolution and small custom ResNets (basic blocks);
- re-parameterised / modern: zoo RepVGG-A0 (deploy form) and ConvNeXt-T-BN at low resolution;
- SE / hard-swish: MobileNetV3-Small/Large-style nets (expand 1x1, depthwise 3x3/5x5,
  squeeze-excite by global pool + 1x1 convs or Linear layers, hard-sigmoid gate, hard-swish);
- U-Nets: encoder (max/avg pool or strided conv), decoder with nearest or bilinear upsampling,
  skip concatenations and a 1x1 head at full resolution.

Some of these deliberately contain int8 ops that the XNNPACK delegate (ai-edge-litert 2.3) does
not take, though `op_class` files them under XNNPACK classes: HARD_SWISH (MobileNetV3),
AVERAGE_POOL_2D (the avg-pool VGGs and U-Net), RESIZE_NEAREST_NEIGHBOR (nearest U-Nets) and
PADV2 (ResNet-18's padded max-pool). TFLite's own kernels run them between delegate
partitions, as they would for anyone deploying these nets; each such family also has members
XNNPACK runs whole (max-pool VGGs, custom ResNets, the all-ReLU MobileNetV3, the bilinear
U-Net). The listing shows them per network (`ops_outside_xnnpack`).

`held_out_networks()` builds the modules (eval mode, seeded weights; BatchNorm statistics
measured on seeded random inputs as the zoo does, so int8 calibration sees trained-like
ranges); `FAMILIES` maps each name to its family for per-family reporting. Run as a script to
build every network through ran-edge's own export + int8 quantisation (about 3 minutes on 2
cores, nearly all of it litert-torch export) and list MACs, ops and (with --time) the 1-thread
latency here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ran_edge.models import load_model
from ran_edge.models.registry import calibrate_batchnorm

Shape = tuple[int, int, int, int]


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never more than 10% down (MobileNet rule)."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


# --- plain VGG-style --------------------------------------------------------------------------


class PlainVgg(nn.Module):
    """Stages of two 3x3 conv-BN-ReLU then a 2x2 pool (`pool`: "max" or "avg"); GAP + linear."""

    def __init__(self, widths: tuple[int, ...], pool: str = "max") -> None:
        super().__init__()
        pools: dict[str, Callable[[], nn.Module]] = {
            "max": lambda: nn.MaxPool2d(2),
            "avg": lambda: nn.AvgPool2d(2),
        }
        layers: list[nn.Module] = []
        cin = 3
        for w in widths:
            layers += [_cbr(cin, w), _cbr(w, w), pools[pool]()]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


# --- ResNet -----------------------------------------------------------------------------------


class Basic(nn.Module):
    """ResNet basic block: two 3x3 convs, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a = _cbr(cin, cout, 3, stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(self.a(x)) + self.skip(x))


class MiniResNet(nn.Module):
    """Stride-2 stem, two basic blocks per width (the first of each later stage strided)."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = _cbr(3, widths[0], 3, 2)
        blocks: list[nn.Module] = []
        cin = widths[0]
        for i, w in enumerate(widths):
            blocks += [Basic(cin, w, 1 if i == 0 else 2), Basic(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(
            torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1)
        )


# --- MobileNetV3-style: squeeze-excite and hard-swish ------------------------------------------


class SqueezeExcite(nn.Module):
    """x * hardsigmoid(fc2(relu(fc1(mean(x))))): fc as 1x1 convs, or as Linear layers."""

    def __init__(self, c: int, squeeze: int, linear: bool = False) -> None:
        super().__init__()
        self.linear = linear
        self.pool = nn.AdaptiveAvgPool2d(1)
        if linear:
            self.fc1: nn.Module = nn.Linear(c, squeeze)
            self.fc2: nn.Module = nn.Linear(squeeze, c)
        else:
            self.fc1 = nn.Conv2d(c, squeeze, 1)
            self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)
        if self.linear:
            s = torch.flatten(s, 1)
        s = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))
        if self.linear:
            s = s[:, :, None, None]
        return x * s


class InvertedResidualV3(nn.Module):
    """[expand 1x1] -> depthwise kxk -> [SE] -> project 1x1, ReLU or hard-swish, residual."""

    def __init__(
        self,
        cin: int,
        k: int,
        expand: int,
        cout: int,
        se: bool,
        hswish: bool,
        stride: int,
        se_linear: bool,
    ) -> None:
        super().__init__()

        def act() -> nn.Module:
            return nn.Hardswish() if hswish else nn.ReLU()

        layers: list[nn.Module] = []
        if expand != cin:
            layers += [nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand), act()]
        layers += [
            nn.Conv2d(expand, expand, k, stride, k // 2, groups=expand, bias=False),
            nn.BatchNorm2d(expand),
            act(),
        ]
        if se:
            layers.append(SqueezeExcite(expand, _make_divisible(expand / 4), se_linear))
        layers += [nn.Conv2d(expand, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


# (kernel, expansion channels, out channels, squeeze-excite, hard-swish, stride): Howard 2019.
MBV3_SMALL = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
)
MBV3_LARGE = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)


class MobileNetV3(nn.Module):
    """MobileNetV3 (Small or Large table) at width `width`; `se_linear` puts SE in Linear
    layers; `hswish=False` uses ReLU everywhere (int8 HARD_SWISH is not an XNNPACK op)."""

    def __init__(
        self,
        table: tuple[tuple[int, int, int, bool, bool, int], ...],
        last: int,
        width: float = 1.0,
        se_linear: bool = False,
        hswish: bool = True,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()

        def act() -> nn.Module:
            return nn.Hardswish() if hswish else nn.ReLU()

        cin = _make_divisible(16 * width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), act()
        )
        blocks: list[nn.Module] = []
        for k, exp, out, se, hs, stride in table:
            cout = _make_divisible(out * width)
            expand = _make_divisible(exp * width)
            blocks.append(
                InvertedResidualV3(cin, k, expand, cout, se, hs and hswish, stride, se_linear)
            )
            cin = cout
        last_conv = 6 * cin
        self.blocks = nn.Sequential(*blocks)
        self.last = nn.Sequential(
            nn.Conv2d(cin, last_conv, 1, bias=False), nn.BatchNorm2d(last_conv), act()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last), act(), nn.Linear(last, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.last(self.blocks(self.stem(x))))
        return self.classifier(torch.flatten(x, 1))


# --- U-Net ------------------------------------------------------------------------------------


class UNet(nn.Module):
    """Encoder of two-conv stages (down by "max"/"avg" pool or "stride" conv), decoder that
    upsamples ("nearest"/"bilinear"), concatenates the skip and runs two convs; 1x1 head."""

    def __init__(
        self,
        widths: tuple[int, ...],
        down: str = "max",
        up: str = "nearest",
        classes: int = 2,
    ) -> None:
        super().__init__()
        self.down, self.up = down, up
        self.enc = nn.ModuleList()
        cin = 3
        for i, w in enumerate(widths):
            stride = 2 if i > 0 and down == "stride" else 1
            self.enc.append(nn.Sequential(_cbr(cin, w, 3, stride), _cbr(w, w)))
            cin = w
        self.dec = nn.ModuleList(
            nn.Sequential(_cbr(widths[i + 1] + widths[i], widths[i]), _cbr(widths[i], widths[i]))
            for i in reversed(range(len(widths) - 1))
        )
        self.head = nn.Conv2d(widths[0], classes, 1)

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        if self.down == "max":
            return nn.functional.max_pool2d(x, 2)
        if self.down == "avg":
            return nn.functional.avg_pool2d(x, 2)
        return x  # "stride": the stage's first conv downsamples

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        if self.up == "bilinear":
            return nn.functional.interpolate(
                x, scale_factor=2, mode="bilinear", align_corners=False
            )
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, stage in enumerate(self.enc):
            x = stage(x if i == 0 else self._down(x))
            skips.append(x)
        for stage, skip in zip(self.dec, reversed(skips[:-1]), strict=True):
            x = stage(torch.cat([self._up(x), skip], 1))
        return self.head(x)


# --- the held-out set -------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutNet:
    name: str
    family: str
    make: Callable[[], nn.Module]
    input_shape: Shape
    zoo: bool = False


def _sq(size: int) -> Shape:
    return (1, 3, size, size)


def _zoo(name: str, family: str, size: int) -> HeldOutNet:
    # create_model seeds the weights and measures BN statistics itself.
    return HeldOutNet(
        f"{name}@{size}",
        family,
        lambda: load_model(name, input_shape=_sq(size)).module,
        _sq(size),
        zoo=True,
    )


def _own(name: str, family: str, make: Callable[[], nn.Module], size: int) -> HeldOutNet:
    return HeldOutNet(f"{name}@{size}", family, make, _sq(size))


NETS: tuple[HeldOutNet, ...] = (
    # depthwise-heavy, from the zoo
    _zoo("mobilenet_v2_035", "mobilenet_v2", 96),
    _zoo("mobilenet_v2_075", "mobilenet_v2", 160),
    _zoo("mobilenet_v2", "mobilenet_v2", 192),
    _zoo("efficientnet_lite0", "efficientnet_lite", 160),
    # plain VGG-style, max and average pooling, and a wide shallow net
    _own("vgg_16_32_64", "vgg", lambda: PlainVgg((16, 32, 64)), 64),
    _own("vgg_32_64_128", "vgg", lambda: PlainVgg((32, 64, 128)), 32),
    _own("vgg_8_16_32_64", "vgg", lambda: PlainVgg((8, 16, 32, 64)), 128),
    _own("vgg_avg_24_48_96", "vgg", lambda: PlainVgg((24, 48, 96), "avg"), 96),
    _own("vgg_avg_48_96", "vgg", lambda: PlainVgg((48, 96), "avg"), 48),
    _own("wide_shallow_128", "vgg", lambda: nn.Sequential(_cbr(3, 128), _cbr(128, 128)), 32),
    # ResNets
    _zoo("resnet18", "resnet", 64),
    _own("resnet_32_64_128", "resnet", lambda: MiniResNet((32, 64, 128)), 64),
    _own("resnet_16_32", "resnet", lambda: MiniResNet((16, 32)), 96),
    _own("resnet_24_48_96_192", "resnet", lambda: MiniResNet((24, 48, 96, 192)), 112),
    # re-parameterised plain net and a (weight-heavy at this size) ConvNeXt, from the zoo
    _zoo("repvgg_a0", "repvgg", 64),
    _zoo("convnext_t_bn", "convnext_bn", 32),
    # squeeze-excite, hard-swish (and one all-ReLU variant that XNNPACK runs whole)
    _own("mbv3_small", "mobilenet_v3", lambda: MobileNetV3(MBV3_SMALL, 1024), 224),
    _own(
        "mbv3_large_075_se_fc",
        "mobilenet_v3",
        lambda: MobileNetV3(MBV3_LARGE, 1280, 0.75, se_linear=True),
        96,
    ),
    _own(
        "mbv3_large_relu",
        "mobilenet_v3",
        lambda: MobileNetV3(MBV3_LARGE, 1280, hswish=False),
        128,
    ),
    # U-Nets: down by pool or strided conv, upsampling, skip concatenation, full-size head
    _own("unet_16_32_64", "unet", lambda: UNet((16, 32, 64)), 64),
    _own(
        "unet_8_16_32_64_bilinear",
        "unet",
        lambda: UNet((8, 16, 32, 64), "stride", "bilinear"),
        128,
    ),
    _own("unet_12_24_avg", "unet", lambda: UNet((12, 24), "avg", "nearest"), 96),
)

FAMILIES: dict[str, str] = {net.name: net.family for net in NETS}


def build_net(net: HeldOutNet) -> nn.Module:
    """The module in eval mode with seeded weights and seeded, measured BN statistics."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = net.make()
        if not net.zoo:  # zoo models come with measured statistics (create_model)
            calibrate_batchnorm(module, net.input_shape)
    return module.eval()


def held_out_networks() -> list[tuple[str, nn.Module, Shape]]:
    """(name, module in eval mode, NCHW input shape) for every held-out network."""
    return [(net.name, build_net(net), net.input_shape) for net in NETS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time", action="store_true", help="time each model at 1 thread")
    parser.add_argument("--only", default="", help="only networks whose name contains this")
    args = parser.parse_args()

    from collections import Counter

    from ran_edge.convert.tflite_ops import op_class, read_op_costs
    from ran_edge.quiet import captured_output
    from ran_edge.targets.cortex_a.calibrate import time_model
    from ran_edge.targets.cortex_a.delegation import ops_outside_xnnpack
    from ran_edge.targets.cortex_a.microbench import build_int8

    print(
        f"{'network':28} {'family':18} {'MMACs':>6} {'ops':>4} {'build s':>7} {'ms':>7}  op types"
    )
    total = time.perf_counter()
    for net in NETS:
        if args.only not in net.name:
            continue
        start = time.perf_counter()
        with captured_output():
            data = build_int8(build_net(net), net.input_shape)
        built = time.perf_counter() - start
        costs = read_op_costs(data)
        macs = sum(c.macs for c in costs) / 1e6
        ms = f"{time_model(data, 1):7.3f}" if args.time else "      -"
        notes = []
        reference = sorted({c.op for c in costs if op_class(c.op) == "reference"})
        if reference:
            notes.append(f"reference-class: {','.join(reference)}")
        outside = Counter(ops_outside_xnnpack(data))
        if outside:
            notes.append("outside XNNPACK: " + ",".join(f"{n}x{k}" for k, n in outside.items()))
        types = ",".join(sorted({c.op for c in costs}))
        print(
            f"{net.name:28} {net.family:18} {macs:6.1f} {len(costs):4d} {built:7.1f} {ms}  "
            f"{types}" + "".join(f"\n{'':30}{note}" for note in notes),
            flush=True,
        )
    print(f"total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
