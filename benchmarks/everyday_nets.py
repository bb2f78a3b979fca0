"""Hand-written networks in the style users actually write, for the NPU coverage benchmark.

Each one exercises a pattern that third-party model zoos under-represent but users write
every day: a flatten->linear head, U-Net skips, channel shuffle, Conv1d audio, a
transposed-conv autoencoder with LeakyReLU, dilated convs, PReLU/tanh/sigmoid, SE with
hard-sigmoid, a keyword-spotting DS-CNN with non-square kernels, a ConvNeXt-style
LayerNorm2d block. They are written plainly (functional `x.mean((2, 3))`, `torch.cat`,
`view`/`transpose`), because that is what the converter has to cope with.

`EVERYDAY_NETS` maps a name to a factory `size -> (module, NCHW input shape)`; `size` is
the image side for image nets (audio/KWS nets keep their own input shape).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NetFactory = Callable[[int], tuple[nn.Module, tuple[int, int, int, int]]]


def conv_bn(cin: int, cout: int, k: int | tuple[int, int] = 3, s: int = 1, **kw) -> nn.Sequential:
    """Conv + BatchNorm + ReLU, 'same' padding for odd kernels."""
    kh, kw_ = (k, k) if isinstance(k, int) else k
    pad = kw.pop("padding", (kh // 2 * kw.get("dilation", 1), kw_ // 2 * kw.get("dilation", 1)))
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, pad, bias=False, **kw), nn.BatchNorm2d(cout), nn.ReLU()
    )


class FlattenLinearHead(nn.Module):
    """A small CNN ending in flatten -> Linear -> ReLU -> Linear (the textbook classifier)."""

    def __init__(self, size: int, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, s=2), conv_bn(16, 32, s=2), conv_bn(32, 32, s=2), conv_bn(32, 32, s=2)
        )
        self.fc1 = nn.Linear(32 * (size // 16) ** 2, 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class UNetSmall(nn.Module):
    """Two-level U-Net: max-pool down, bilinear/nearest up, skip concatenation, 1x1 head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.enc1, self.enc2 = conv_bn(3, 16), conv_bn(16, 32)
        self.mid = conv_bn(32, 64)
        self.dec2, self.dec1 = conv_bn(64 + 32, 32), conv_bn(32 + 16, 16)
        self.head = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2, mode="nearest"), e2], 1))
        up = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        return self.head(self.dec1(torch.cat([up, e1], 1)))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split channels, branch, concat, shuffle."""

    def __init__(self, c: int) -> None:
        super().__init__()
        half = c // 2
        self.branch = nn.Sequential(
            conv_bn(half, half, 1),
            nn.Conv2d(half, half, 3, 1, 1, groups=half, bias=False),
            nn.BatchNorm2d(half),
            conv_bn(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([a, self.branch(b)], 1), 2)


class ChannelShuffleNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 32, s=2), nn.MaxPool2d(3, 2, 1))
        self.units = nn.Sequential(ShuffleUnit(32), ShuffleUnit(32), conv_bn(32, 64, s=2))
        self.units2 = nn.Sequential(ShuffleUnit(64), ShuffleUnit(64))
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.units2(self.units(self.stem(x))).mean((2, 3)))


class Conv1dAudio(nn.Module):
    """Log-mel frames as channels, Conv1d over time, mean over time, Linear.

    The input is (N, 1, mels, frames) so the pipeline's 4-D NCHW contract holds; the model
    squeezes it to (N, mels, frames) as an audio user's Conv1d model would take it.
    """

    input_shape = (1, 1, 40, 100)

    def __init__(self, classes: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(40, 64, 3, padding=1),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Conv1d(64, 64, 3, stride=2, padding=1),
            nn.BatchNorm1d(64),
            nn.ReLU(),
            nn.Conv1d(64, 96, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.fc = nn.Linear(96, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x.squeeze(1)).mean(-1))


class LeakyAutoencoder(nn.Module):
    """Conv encoder, ConvTranspose2d decoder, LeakyReLU throughout, sigmoid output."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 3, 2, 1),
            nn.LeakyReLU(0.2),
        )
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(16, 8, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(8, 3, 3, 1, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


class DilatedNet(nn.Module):
    """Dilated 3x3 convs (rates 1, 2, 4) in parallel, concatenated (ASPP-like), then a head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv_bn(3, 32, s=2), conv_bn(32, 32, s=2))
        self.rates = nn.ModuleList(conv_bn(32, 32, dilation=r) for r in (1, 2, 4))
        self.fuse = conv_bn(96, 64, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.fuse(torch.cat([branch(x) for branch in self.rates], 1))
        return self.fc(torch.flatten(self.pool(x), 1))


class ActivationMix(nn.Module):
    """PReLU, tanh and sigmoid after convolutions, a mean head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.c1, self.a1 = nn.Conv2d(3, 16, 3, 2, 1), nn.PReLU(16)
        self.c2, self.a2 = nn.Conv2d(16, 32, 3, 2, 1), nn.Tanh()
        self.c3, self.a3 = nn.Conv2d(32, 32, 3, 2, 1), nn.PReLU()
        self.gate = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a2(self.c2(self.a1(self.c1(x))))
        x = self.a3(self.c3(x))
        x = x * torch.sigmoid(self.gate(x))
        return self.fc(x.mean((2, 3)))


class SqueezeExcite(nn.Module):
    """SE as most code writes it: mean((2, 3), keepdim) -> 1x1 convs -> hard-sigmoid gate."""

    def __init__(self, c: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c, reduced, 1)
        self.expand = nn.Conv2d(reduced, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class SEBlock(nn.Module):
    """MobileNetV3-style inverted residual: 1x1 expand, depthwise, SE, 1x1 project, h-swish."""

    def __init__(self, c: int, expand: int = 4) -> None:
        super().__init__()
        e = c * expand
        self.pw = nn.Sequential(nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e), nn.Hardswish())
        self.dw = nn.Sequential(
            nn.Conv2d(e, e, 3, 1, 1, groups=e, bias=False), nn.BatchNorm2d(e), nn.Hardswish()
        )
        self.se = SqueezeExcite(e, e // 4)
        self.project = nn.Sequential(nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.se(self.dw(self.pw(x))))


class SEHardSigmoidNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.Hardswish())
        self.blocks = nn.Sequential(SEBlock(16), nn.Conv2d(16, 32, 3, 2, 1), SEBlock(32))
        self.head = nn.Sequential(nn.Conv2d(32, 256, 1), nn.Hardswish())
        self.fc = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.blocks(self.stem(x))).mean((2, 3)))


class DSCNNKws(nn.Module):
    """DS-CNN keyword spotting (Hello Edge, 'S'): 49x10 MFCC input, 10x4 first kernel.

    Non-square kernel and stride, four depthwise-separable blocks, average pool over the
    whole (25x5) map, 12 classes, as in the Arm ML-zoo KWS model.
    """

    input_shape = (1, 1, 49, 10)

    def __init__(self, classes: int = 12, c: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, c, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(c), nn.ReLU()
        )
        blocks = []
        for _ in range(4):
            blocks += [
                nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.Conv2d(c, c, 1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2d((25, 5))
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels of an NCHW map, written the ConvNeXt way (permute, LN, permute)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, 1, 3, groups=c)
        self.norm = LayerNorm2d(c, eps=1e-6)
        self.pw1, self.pw2 = nn.Conv2d(c, 4 * c, 1), nn.Conv2d(4 * c, c, 1)
        self.gamma = nn.Parameter(torch.full((1, c, 1, 1), 1e-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.pw2(F.gelu(self.pw1(self.norm(self.dw(x)))))


class LayerNormConvNet(nn.Module):
    """A small ConvNeXt: patchify stem, LayerNorm2d blocks, mean + LayerNorm head."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 4, 4), LayerNorm2d(32, eps=1e-6))
        self.stage1 = ConvNeXtBlock(32)
        self.down = nn.Sequential(LayerNorm2d(32, eps=1e-6), nn.Conv2d(32, 64, 2, 2))
        self.stage2 = ConvNeXtBlock(64)
        self.norm = nn.LayerNorm(64, eps=1e-6)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.fc(self.norm(x.mean((2, 3))))


def _image(cls: Callable[..., nn.Module], **kw) -> NetFactory:
    def make(size: int) -> tuple[nn.Module, tuple[int, int, int, int]]:
        return cls(**kw), (1, 3, size, size)

    return make


def _fixed(cls: type[nn.Module]) -> NetFactory:
    def make(_size: int) -> tuple[nn.Module, tuple[int, int, int, int]]:
        return cls(), cls.input_shape  # type: ignore[attr-defined]

    return make


def _flatten_head(size: int) -> tuple[nn.Module, tuple[int, int, int, int]]:
    return FlattenLinearHead(size), (1, 3, size, size)


EVERYDAY_NETS: dict[str, NetFactory] = {
    "flatten_linear_head": _flatten_head,
    "unet_small": _image(UNetSmall),
    "channel_shuffle": _image(ChannelShuffleNet),
    "conv1d_audio": _fixed(Conv1dAudio),
    "autoencoder_leaky": _image(LeakyAutoencoder),
    "dilated_convs": _image(DilatedNet),
    "prelu_tanh_sigmoid": _image(ActivationMix),
    "se_hardsigmoid": _image(SEHardSigmoidNet),
    "ds_cnn_kws": _fixed(DSCNNKws),
    "layernorm2d_convnext": _image(LayerNormConvNet),
}
