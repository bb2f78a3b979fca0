"""TinyMBNet: a digits-sized MobileNet-style network built from `ran_edge.blocks`.

Made for scikit-learn's 8x8 digits upsampled to 32x32 (1 channel, 10 classes): it trains
on a CPU in seconds, so shrinking (DepthShrinker, merging, int8) can be shown on real
labelled data. Its blocks are `ran_edge.blocks.InvertedResidual`, whose activations are
replaceable and whose border convention can switch to "bias" for exact collapse. One
block has a 5x5 depthwise kernel: collapsing it would raise MACs (Cin * Cout * 25 >
t * Cin * (Cin + Cout + 25)), so a MAC cost function keeps it unmerged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ran_edge.blocks import ConvBN, InvertedResidual
from ran_edge.models.registry import register_model

INPUT_SHAPE = (1, 1, 32, 32)

# (out channels, stride, expand ratio, kernel) per block; input 16 channels at 16x16.
_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (16, 1, 4, 3),
    (24, 2, 4, 3),
    (24, 1, 4, 3),
    (24, 1, 4, 5),
    (32, 2, 4, 3),
    (32, 1, 4, 3),
)


class TinyMBNet(nn.Module):
    """stem 3x3/2 -> six inverted residuals -> 1x1 head -> pool -> linear."""

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 16, head: int = 64
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBN(in_channels, width, 3, 2), nn.ReLU6())
        blocks: list[nn.Module] = []
        channels = width
        for out, stride, expand, kernel in _BLOCKS:
            blocks.append(InvertedResidual(channels, out, stride, expand, kernel))
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(ConvBN(channels, head, 1), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


@register_model(
    "tiny_mbnet",
    input_shape=INPUT_SHAPE,
    family="tiny_mbnet",
    description="digits-sized MobileNet-style net from ran_edge.blocks, 1x32x32, 10 classes",
)
def tiny_mbnet(**kwargs: Any) -> TinyMBNet:
    return TinyMBNet(**kwargs)
