"""The candidate branches of an optimal diverse branch block (ODBB, RepNAS).

Each branch is a linear map of the block input with its own BatchNorm, so any subset of
them sums into one kxk conv (`ran_edge.reparam`), exactly and borders included. For a
layer with kernel k, stride s and groups g:

| name      | train form                                         | merge                    |
|-----------|----------------------------------------------------|--------------------------|
| `1x1`     | 1x1 conv (stride s) -> BN                          | centre tap               |
| `kxk`     | kxk conv -> BN (starts from the layer's weights)   | itself                   |
| `1x1_kxk` | 1x1 conv -> BN -> kxk conv -> BN                   | `merge_sequential_convs` |
| `1x1_avg` | 1x1 conv -> BN -> kxk avg-pool -> BN               | `avgpool_kernel` + chain |
| `1xk`     | 1xk conv -> BN (ACNet)                             | middle row               |
| `kx1`     | kx1 conv -> BN                                     | middle column            |
| `identity`| BN(x), only with in == out channels and stride 1   | centre tap per channel   |

The two chains pad their inner map with the first BN's zero response (bias-aware
padding, docs/shrink.md), not with zeros: that is what the merged conv computes on the
ring, so the merge is exact on the border too (DBB's BNAndPad does the same).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.errors import UsageError
from ran_edge.reparam.branches import avgpool_kernel
from ran_edge.reparam.chain import merge_sequential_convs, pad_with_values
from ran_edge.reparam.fold import fold_bn

CANDIDATES: tuple[str, ...] = ("1x1", "kxk", "1x1_kxk", "1x1_avg", "1xk", "kx1", "identity")


def available_candidates(
    in_channels: int, out_channels: int, stride: int, wanted: tuple[str, ...] = CANDIDATES
) -> tuple[str, ...]:
    """The names in `wanted` a layer of this shape can hold (identity needs in == out, s 1)."""
    unknown = [name for name in wanted if name not in CANDIDATES]
    if unknown:
        raise UsageError(
            f"unknown branch {', '.join(map(repr, unknown))}; candidates are "
            f"{', '.join(CANDIDATES)}."
        )
    has_identity = in_channels == out_channels and stride == 1
    return tuple(name for name in wanted if name != "identity" or has_identity)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int],
    stride: int,
    groups: int,
) -> nn.Sequential:
    """conv (no bias, centred 'same' padding) -> BN, a branch `branch_kernel` reads directly."""
    padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels))


class PaddedChain(nn.Module):
    """1x1 conv -> BN -> (kxk conv | kxk avg-pool) -> BN, the inner ring holding BN(0).

    `second` is a zero-bias kxk conv or an `AvgPool2d` with padding k // 2 (its padding is
    applied here, with the ring value, not by the op itself).
    """

    def __init__(self, first: ConvBN, second: nn.Conv2d | nn.AvgPool2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.first = first
        self.second = second
        self.bn = bn

    def forward(self, x: Tensor) -> Tensor:
        pre_bn = self.first.conv(x)
        hidden = self.first.bn(pre_bn)
        ring = self.first.zero_response(pre_bn)
        second = self.second
        if isinstance(second, nn.Conv2d):
            padded = pad_with_values(hidden, _pair(second.padding), ring)
            out = F.conv2d(padded, second.weight, None, second.stride, 0, 1, second.groups)
        else:
            padded = pad_with_values(hidden, _pair(second.padding), ring)
            kernel, stride = _pair(second.kernel_size), _pair(second.stride)
            out = F.avg_pool2d(padded, kernel, stride, 0)
        return self.bn(out)

    def to_deploy(self) -> nn.Conv2d:
        first = self.first.to_deploy()
        second = self.second
        if isinstance(second, nn.Conv2d):
            folded = fold_bn(second, self.bn)
        else:
            kernel = avgpool_kernel(second, self.bn.num_features).then_bn(self.bn)
            folded = kernel.to_conv(like=first.weight)
        return merge_sequential_convs([first, folded], border="bias")


def make_branch(
    name: str, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int
) -> nn.Module:
    """A fresh branch `name` (see the module table) for a kxk layer of this shape."""
    k, pad = kernel_size, kernel_size // 2
    if name == "1x1":
        return conv_bn(in_channels, out_channels, (1, 1), stride, groups)
    if name == "kxk":
        return conv_bn(in_channels, out_channels, (k, k), stride, groups)
    if name == "1xk":
        return conv_bn(in_channels, out_channels, (1, k), stride, groups)
    if name == "kx1":
        return conv_bn(in_channels, out_channels, (k, 1), stride, groups)
    if name == "identity":
        if in_channels != out_channels or stride != 1:
            raise UsageError("an identity branch needs in == out channels and stride 1.")
        return nn.BatchNorm2d(out_channels)
    if name == "1x1_kxk":
        first = ConvBN(in_channels, in_channels, 1, groups=groups)
        second = nn.Conv2d(in_channels, out_channels, k, stride, pad, groups=groups, bias=False)
        return PaddedChain(first, second, nn.BatchNorm2d(out_channels))
    if name == "1x1_avg":
        first = ConvBN(in_channels, out_channels, 1, stride=1, groups=groups)
        pool = nn.AvgPool2d(k, stride, pad)
        return PaddedChain(first, pool, nn.BatchNorm2d(out_channels))
    raise UsageError(f"unknown branch {name!r}; candidates are {', '.join(CANDIDATES)}.")


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def copy_conv_bn(branch: nn.Sequential, conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> None:
    """Start a `kxk` branch from an existing layer's conv weights (and BN, when it has one)."""
    with torch.no_grad():
        branch[0].weight.copy_(conv.weight)
        if bn is not None:
            branch[1].load_state_dict(bn.state_dict())
