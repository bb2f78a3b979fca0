"""RAN-e (Restructurable Activation Networks, explicit): EfficientNet-style networks where
the blocks that run poorly on micro-NPUs are replaced by dense "collapsed" blocks.

Two published configurations (ImageNet, 224x224, 1000 classes), defined here from the
public RAN-e model description:

- Ground-Truth (`ran_e_gt`): 6 of 16 inverted residual blocks collapsed (the four early
  stacks and both 96->128 blocks);
- SubNetwork-C (`ran_e_c`): the hardware-aware search result, 5 collapsed blocks spread
  through the network.

Structure: stem 3x3/2 conv to 16 channels (no BN, no activation: the next block starts
with BN + activation), 16 blocks in 10 stacks, head 1x1 conv to 1344 + 7x7 depthwise,
global pool, FC; hard-swish throughout. The one 128->128 residual block is a "downsample"
pair (128->64->128) in both forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ran_edge.blocks import ConvBN, InvertedResidual
from ran_edge.models.registry import register_model

ACT = nn.Hardswish
HEAD_CHANNELS = 1344
STEM_CHANNELS = 16
DOWNSAMPLE_CHANNELS = 128  # the one residual width that is built as a 128->64->128 pair


@dataclass(frozen=True)
class Stack:
    """Repeated blocks: the first maps cin->cout with `stride`, the rest cout->cout."""

    cin: int
    cout: int
    kernels: tuple[int, ...]  # one per repeat
    expand: int
    stride: int
    collapse: tuple[bool, ...]  # one per repeat


# (cin, cout, kernel per repeat, expansion, stride, collapsed per repeat)
GROUND_TRUTH = (
    Stack(16, 32, (3,), 2, 1, (True,)),
    Stack(32, 48, (3,), 2, 2, (True,)),
    Stack(48, 64, (3,), 2, 2, (True,)),
    Stack(64, 80, (3,), 2, 1, (True,)),
    Stack(80, 80, (5, 5), 6, 2, (False, False)),
    Stack(80, 96, (3, 3), 4, 1, (False, False)),
    Stack(96, 128, (3, 3), 2, 1, (True, True)),
    Stack(128, 160, (7,), 6, 2, (False,)),
    Stack(160, 176, (3, 3, 3), 4, 1, (False, False, False)),
    Stack(176, 224, (5, 5), 6, 1, (False, False)),
)
SUBNETWORK_C = (
    Stack(16, 32, (3,), 6, 1, (True,)),
    Stack(32, 48, (3,), 6, 2, (True,)),
    Stack(48, 64, (3,), 6, 2, (False,)),
    Stack(64, 80, (3,), 6, 1, (True,)),
    Stack(80, 80, (5, 3), 6, 2, (False, True)),
    Stack(80, 96, (5, 3), 4, 1, (False, True)),
    Stack(96, 128, (3, 3), 6, 1, (False, False)),
    Stack(128, 160, (3,), 6, 2, (True,)),
    Stack(160, 176, (7, 3, 3), 4, 1, (False, False, True)),
    Stack(176, 224, (5, 5), 6, 1, (False, False)),
)


class CollapsedRanE(nn.Module):
    """BN + activation on the input, dense 3x3 conv + BN, residual when shapes match.

    The dense conv replaces expand -> depthwise -> project: more MACs, but at the MAC
    utilisation Ethos-U reaches on dense convs rather than the ~10% of depthwise ones.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.residual = stride == 1 and cin == cout
        downsample = self.residual and cin == DOWNSAMPLE_CHANNELS
        mid = cout // 2 if downsample else cout
        self.pre_bn = nn.BatchNorm2d(cin)
        self.pre_act = ACT()
        self.conv1 = ConvBN(cin, mid, 3, stride)
        self.conv2 = nn.Sequential(ACT(), ConvBN(mid, cout, 3)) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(self.pre_act(self.pre_bn(x)))
        if self.conv2 is not None:
            y = self.conv2(y)
        return x + y if self.residual else y


class DownsamplePair(nn.Module):
    """The 128->128 block as two inverted residuals, 128->64 then 64->128, one shortcut."""

    def __init__(self, channels: int, kernel_size: int, expand: int) -> None:
        super().__init__()
        half = channels // 2
        hidden = channels * 6  # the reference hard-wires expansion 6 for this block
        self.down = InvertedResidual(channels, half, 1, hidden / channels, kernel_size, ACT)
        self.up = InvertedResidual(half, channels, 1, hidden / half, kernel_size, ACT)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.up(self.down(x))


def _block(cin: int, cout: int, kernel: int, expand: int, stride: int, collapse: bool):
    if collapse:
        return CollapsedRanE(cin, cout, stride)
    if stride == 1 and cin == cout == DOWNSAMPLE_CHANNELS:
        return DownsamplePair(cin, kernel, expand)
    return InvertedResidual(cin, cout, stride, expand, kernel, ACT)


def make_head(cin: int) -> nn.Sequential:
    """1x1 conv to 1344 and a 7x7 depthwise, each with BN and hard-swish."""
    return nn.Sequential(
        ConvBN(cin, HEAD_CHANNELS, 1),
        ACT(),
        ConvBN(HEAD_CHANNELS, HEAD_CHANNELS, 7, groups=HEAD_CHANNELS),
        ACT(),
    )


class RanE(nn.Module):
    def __init__(self, stacks: tuple[Stack, ...], num_classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False)
        blocks = []
        for stack in stacks:
            for i, (kernel, collapse) in enumerate(zip(stack.kernels, stack.collapse, strict=True)):
                cin = stack.cin if i == 0 else stack.cout
                stride = stack.stride if i == 0 else 1
                blocks.append(_block(cin, stack.cout, kernel, stack.expand, stride, collapse))
        self.blocks = nn.Sequential(*blocks)
        last = stacks[-1].cout
        self.head = make_head(last)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


_FAMILY = "ran_e"


@register_model(
    "ran_e_gt",
    family=_FAMILY,
    description="RAN-e Ground-Truth: 6 of 16 blocks collapsed to dense 3x3 (224x224)",
)
def ran_e_gt(**kwargs: Any) -> RanE:
    return RanE(GROUND_TRUTH, **kwargs)


@register_model(
    "ran_e_c",
    family=_FAMILY,
    description="RAN-e SubNetwork-C: searched collapse pattern (224x224)",
)
def ran_e_c(**kwargs: Any) -> RanE:
    return RanE(SUBNETWORK_C, **kwargs)
