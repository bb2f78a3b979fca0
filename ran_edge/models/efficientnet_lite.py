"""EfficientNet-Lite (Google, 2020): EfficientNet adapted for integer accelerators.

Lite differs from EfficientNet-B*: no squeeze-excite (NPUs map it poorly), ReLU6 instead of
swish (quantizes well), and the stem (32 ch) and head (1280 ch) plus the first and last stage
repeats are fixed regardless of the width/depth multipliers. Only Ethos-U-mappable ops are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ran_edge.models.mobilenet_v2 import ConvBNReLU, _make_divisible
from ran_edge.models.registry import register_model


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks (the B0 baseline, before width/depth scaling)."""

    expand_ratio: int
    kernel_size: int
    stride: int
    out_ch: int
    repeats: int


# EfficientNet-B0 baseline stages (Tan & Le 2019, Table 1), shared by all Lite variants.
_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)
_STEM_CH = 32
_HEAD_CH = 1280


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite: expand -> depthwise -> project."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expand_ratio: int
    ) -> None:
        super().__init__()
        hidden = in_ch * expand_ratio
        self.use_residual = stride == 1 and in_ch == out_ch
        self.expand = ConvBNReLU(in_ch, hidden, kernel_size=1) if expand_ratio != 1 else None
        self.depthwise = ConvBNReLU(hidden, hidden, kernel_size, stride, groups=hidden)
        self.project = nn.Sequential(
            nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        # Drop-connect is omitted: it only matters for training and is random.
        return x + y if self.use_residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with width/depth multipliers; resolution is free (global pool)."""

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.stem = ConvBNReLU(3, _STEM_CH, kernel_size=3, stride=2)
        blocks: list[nn.Module] = []
        in_ch = _STEM_CH
        for i, stage in enumerate(_STAGES):
            out_ch = _make_divisible(stage.out_ch * width_mult)
            fixed = i in (0, len(_STAGES) - 1)  # Lite keeps first/last stage depth
            repeats = stage.repeats if fixed else math.ceil(stage.repeats * depth_mult)
            for r in range(repeats):
                stride = stage.stride if r == 0 else 1
                blocks.append(MBConv(in_ch, out_ch, stage.kernel_size, stride, stage.expand_ratio))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNReLU(in_ch, _HEAD_CH, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(_HEAD_CH, num_classes))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


def _init_weights(model: nn.Module) -> None:
    """Reference init (fan-out normal convs, uniform dense), for realistic random-weight ranges."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


_FAMILY = "efficientnet_lite"


@register_model(
    "efficientnet_lite0",
    family=_FAMILY,
    description="EfficientNet-Lite0 (width 1.0, depth 1.0), 224x224",
)
def efficientnet_lite0(**kwargs: Any) -> EfficientNetLite:
    return EfficientNetLite(width_mult=1.0, depth_mult=1.0, **kwargs)


@register_model(
    "efficientnet_lite0_96",
    input_shape=(1, 3, 96, 96),
    family=_FAMILY,
    description="EfficientNet-Lite0 at 96x96, for quick runs and tests",
)
def efficientnet_lite0_96(**kwargs: Any) -> EfficientNetLite:
    return EfficientNetLite(width_mult=1.0, depth_mult=1.0, **kwargs)
