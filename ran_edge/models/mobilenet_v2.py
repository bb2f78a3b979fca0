"""MobileNetV2 (Sandler et al., 2018), written out here so the zoo has no torchvision dependency.

Layout and parameter names follow torchvision (`features.<i>`, `classifier.1`), so
torchvision MobileNetV2 checkpoints load with `--weights`. Only ops Ethos-U maps are used:
Conv2d, BatchNorm2d, ReLU6, add, AdaptiveAvgPool2d(1), flatten, Linear.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ran_edge.models.registry import register_model

# (expand ratio t, output channels c, repeats n, first stride s), from Table 2 of the paper.
_INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor`, never dropping more than 10% (reference rule)."""
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d + ReLU6: the unit NPUs fuse into one op."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
    ) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=False),
        )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (3x3) -> linear project (1x1), residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(in_ch * expand_ratio)
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(in_ch, hidden, kernel_size=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 with a width multiplier; resolution is free (global average pool)."""

    def __init__(
        self, width_mult: float = 1.0, num_classes: int = 1000, dropout: float = 0.2
    ) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU(3, input_channel, stride=2)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(
                    InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t)
                )
                input_channel = output_channel
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def _init_weights(model: nn.Module) -> None:
    """torchvision's init, so random-weight runs have realistic activation ranges."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


_FAMILY = "mobilenet_v2"


@register_model(
    "mobilenet_v2", family=_FAMILY, description="MobileNetV2 width 1.0, 224x224 (Sandler 2018)"
)
def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=1.0, **kwargs)


@register_model("mobilenet_v2_075", family=_FAMILY, description="MobileNetV2 width 0.75, 224x224")
def mobilenet_v2_075(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=0.75, **kwargs)


@register_model("mobilenet_v2_050", family=_FAMILY, description="MobileNetV2 width 0.5, 224x224")
def mobilenet_v2_050(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=0.5, **kwargs)


@register_model("mobilenet_v2_035", family=_FAMILY, description="MobileNetV2 width 0.35, 224x224")
def mobilenet_v2_035(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=0.35, **kwargs)


@register_model(
    "mobilenet_v2_035_96",
    input_shape=(1, 3, 96, 96),
    family=_FAMILY,
    description="MobileNetV2 width 0.35, 96x96: the smallest zoo model, for quick runs and tests",
)
def mobilenet_v2_035_96(**kwargs: Any) -> MobileNetV2:
    return MobileNetV2(width_mult=0.35, **kwargs)
