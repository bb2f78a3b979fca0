"""Parallel branch merging: branches summed on one input become one convolution.

Every branch kind RepVGG / DBB / MobileOne use is a linear map on its input, so it has an
exact kernel: a conv is its own kernel, a smaller kernel is zero-padded to the common
size, an identity (or an identity followed by BN) is a centre-tap kernel, and
`AvgPool2d` with `count_include_pad=True` is a constant kernel. Kernels with different
`groups` are re-expressed on their greatest common divisor of groups (block-diagonal
zero fill), then summed. All arithmetic is float64 and cast back at the end.

`ConvKernel` (a conv as plain float64 tensors plus its geometry) is the currency of
`ran_edge.shrink`; `collapse.py` composes them in sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from ran_edge.errors import UsageError
from ran_edge.reparam.fold import bn_affine, conv_from_tensors

Pair = tuple[int, int]


class MergeRefused(UsageError):
    """A merge that would not be exact; `reason` says why and what would make it exact."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_pair(value: int | Sequence[int]) -> Pair:
    if isinstance(value, int):
        return (value, value)
    first, second = value
    return (int(first), int(second))


@dataclass(frozen=True)
class ConvKernel:
    """A biased, dilation-1, zero-padded conv as float64 tensors plus its geometry.

    `weight` is (out, in / groups, kh, kw), as in nn.Conv2d.
    """

    weight: Tensor
    bias: Tensor
    stride: Pair
    padding: Pair
    groups: int

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def kernel_size(self) -> Pair:
        return (self.weight.shape[2], self.weight.shape[3])

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ConvKernel:
        """The kernel of `conv`; refuses what no plain zero-padded kernel can express."""
        if conv.padding_mode != "zeros":
            raise MergeRefused(
                f"{conv} uses padding_mode={conv.padding_mode!r}; only zero padding composes "
                "into another conv's kernel. Use padding_mode='zeros'."
            )
        if as_pair(conv.dilation) != (1, 1):
            raise MergeRefused(
                f"{conv} is dilated ({conv.dilation}); merging supports dilation 1 only. "
                "Keep dilated convs out of merged chains and branches."
            )
        weight = conv.weight.detach().double()
        bias = (
            torch.zeros(conv.out_channels, dtype=torch.float64, device=weight.device)
            if conv.bias is None
            else conv.bias.detach().double()
        )
        return cls(weight, bias, as_pair(conv.stride), _explicit_padding(conv), conv.groups)

    def to_conv(self, like: Tensor) -> nn.Conv2d:
        """An nn.Conv2d with this kernel, in `like`'s dtype and on its device."""
        return conv_from_tensors(
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            groups=self.groups,
            like=like,
        )

    def dense_weight(self) -> Tensor:
        """The weight as a groups=1 kernel (zeros between groups)."""
        return regroup_weight(self.weight, self.groups, 1)

    def with_groups(self, groups: int) -> ConvKernel:
        """The same map with fewer groups (`groups` must divide `self.groups`)."""
        return replace(self, weight=regroup_weight(self.weight, self.groups, groups), groups=groups)

    def padded_to(self, size: Pair) -> ConvKernel:
        """The same map as a centred `size` kernel: zero taps around it, padding grown to match."""
        (kh, kw), (th, tw) = self.kernel_size, size
        dh, dw = (th - kh) // 2, (tw - kw) // 2
        if dh < 0 or dw < 0 or (th - kh) % 2 or (tw - kw) % 2:
            raise MergeRefused(f"cannot centre a {kh}x{kw} kernel in a {th}x{tw} kernel")
        weight = nn.functional.pad(self.weight, (dw, dw, dh, dh))
        padding = (self.padding[0] + dh, self.padding[1] + dw)
        return replace(self, weight=weight, padding=padding)

    def then_bn(self, bn: nn.BatchNorm2d) -> ConvKernel:
        """This kernel followed by eval-mode `bn`, folded."""
        if bn.num_features != self.out_channels:
            raise UsageError(
                f"{bn} follows a branch with {self.out_channels} output channels; the "
                "channel counts must match."
            )
        scale, shift = bn_affine(bn)
        scale, shift = scale.to(self.weight.device), shift.to(self.weight.device)
        return replace(
            self, weight=self.weight * scale.view(-1, 1, 1, 1), bias=self.bias * scale + shift
        )


def _explicit_padding(conv: nn.Conv2d) -> Pair:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        kh, kw = as_pair(conv.kernel_size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise MergeRefused(
                f"{conv} uses padding='same' with an even kernel, which pads asymmetrically; "
                "merging needs symmetric padding. Use an odd kernel or explicit padding."
            )
        return ((kh - 1) // 2, (kw - 1) // 2)
    return as_pair(conv.padding)


def regroup_weight(weight: Tensor, groups_from: int, groups_to: int) -> Tensor:
    """Re-express a `groups_from` kernel on `groups_to` groups (a divisor), zero-filling.

    Output channel block (g, a) of the fine grouping reads input block a of its coarse
    group g, so the coarse kernel is block-diagonal inside each coarse group.
    """
    if groups_from == groups_to:
        return weight
    if groups_from % groups_to:
        raise MergeRefused(f"cannot regroup a {groups_from}-group kernel to {groups_to} groups")
    out_channels, in_per_group, kh, kw = weight.shape
    ratio = groups_from // groups_to
    fine = weight.reshape(groups_to, ratio, out_channels // groups_from, in_per_group, kh, kw)
    eye = torch.eye(ratio, dtype=weight.dtype, device=weight.device)
    coarse = torch.einsum("gaoixy,ab->gaobixy", fine, eye)
    return coarse.reshape(out_channels, ratio * in_per_group, kh, kw)


def diagonal_blocks(dense: Tensor, groups: int) -> Tensor:
    """The grouped weight of a dense kernel known to be block-diagonal over `groups`."""
    out_channels, in_channels, kh, kw = dense.shape
    blocks = dense.reshape(groups, out_channels // groups, groups, in_channels // groups, kh, kw)
    index = torch.arange(groups, device=dense.device)
    return blocks[index, :, index].reshape(out_channels, in_channels // groups, kh, kw)


def identity_kernel(channels: int, *, device: torch.device | None = None) -> ConvKernel:
    """x -> x as a 1x1 depthwise kernel."""
    return ConvKernel(
        weight=torch.ones(channels, 1, 1, 1, dtype=torch.float64, device=device),
        bias=torch.zeros(channels, dtype=torch.float64, device=device),
        stride=(1, 1),
        padding=(0, 0),
        groups=channels,
    )


def avgpool_kernel(pool: nn.AvgPool2d, channels: int) -> ConvKernel:
    """AvgPool2d as a depthwise kernel of 1 / window (or 1 / divisor_override) taps.

    Exact only when the divisor is the same at every output: refused for
    `count_include_pad=False` with padding (border windows divide by fewer pixels) and
    for `ceil_mode=True` (a partial last window changes size and divisor).
    """
    padding = as_pair(pool.padding)
    if pool.ceil_mode:
        raise MergeRefused(
            f"{pool} uses ceil_mode=True: its last window can hang off the input and be "
            "averaged over fewer pixels, which no conv kernel reproduces. Use ceil_mode=False."
        )
    if not pool.count_include_pad and padding != (0, 0) and pool.divisor_override is None:
        raise MergeRefused(
            f"{pool} uses count_include_pad=False with padding {padding}: border windows divide "
            "by the number of real pixels, interior windows by the full window, so no single "
            "kernel matches. Use count_include_pad=True (the default) or padding 0."
        )
    kh, kw = as_pair(pool.kernel_size)
    divisor = pool.divisor_override or kh * kw
    return ConvKernel(
        weight=torch.full((channels, 1, kh, kw), 1.0 / divisor, dtype=torch.float64),
        bias=torch.zeros(channels, dtype=torch.float64),
        stride=as_pair(pool.stride if pool.stride is not None else pool.kernel_size),
        padding=padding,
        groups=channels,
    )


def branch_kernel(branch: nn.Module, channels: int | None = None) -> ConvKernel:
    """The exact kernel of one branch.

    Accepted: nn.Conv2d; nn.BatchNorm2d (identity then BN); nn.Identity; nn.AvgPool2d;
    nn.Sequential of one of those followed by BatchNorm2d / Identity; and any block with
    `to_deploy()` returning one of those. `channels` sizes the identity and pooling
    branches, which do not know their width.
    """
    if isinstance(branch, nn.Conv2d):
        return ConvKernel.from_conv(branch)
    if isinstance(branch, nn.BatchNorm2d):
        return identity_kernel(branch.num_features).then_bn(branch)
    if isinstance(branch, nn.Identity | nn.AvgPool2d):
        if channels is None:
            raise UsageError(
                f"a {type(branch).__name__} branch needs the channel count: pass channels= "
                "to merge_parallel or include a conv branch."
            )
        if isinstance(branch, nn.Identity):
            return identity_kernel(channels)
        return avgpool_kernel(branch, channels)
    if isinstance(branch, nn.Sequential) and len(branch) > 0:
        norms = [part for part in branch if isinstance(part, nn.BatchNorm2d)]
        if channels is None and norms:
            channels = norms[0].num_features
        kernel = branch_kernel(branch[0], channels)
        for part in list(branch)[1:]:
            if isinstance(part, nn.BatchNorm2d):
                kernel = kernel.then_bn(part)
            elif not isinstance(part, nn.Identity):
                raise MergeRefused(
                    f"branch {branch} has a {type(part).__name__} after its first layer; a "
                    "branch may be one conv / identity / avg-pool followed only by BatchNorm2d."
                )
        return kernel
    to_deploy = getattr(branch, "to_deploy", None)
    if callable(to_deploy):
        return branch_kernel(to_deploy(), channels)
    raise MergeRefused(
        f"a {type(branch).__name__} branch is not a linear map with a conv kernel; branches "
        "must be convs, identities, BatchNorm2d, AvgPool2d or blocks whose to_deploy() is one."
    )


def _sized_kernel(branch: nn.Module) -> ConvKernel | None:
    """The branch's kernel when the branch knows its own width, else None."""
    first = branch[0] if isinstance(branch, nn.Sequential) and len(branch) > 0 else branch
    if isinstance(first, nn.Identity | nn.AvgPool2d):
        return None
    return branch_kernel(branch)


def _kernel_dtype_like(branches: Sequence[nn.Module]) -> Tensor:
    for branch in branches:
        for tensor in (*branch.parameters(), *branch.buffers()):
            if tensor.is_floating_point():
                return tensor
    return torch.zeros((), dtype=torch.float32)


def merge_parallel(branches: Sequence[nn.Module], *, channels: int | None = None) -> nn.Conv2d:
    """One Conv2d equal to `sum(branch(x) for branch in branches)` (eval mode), borders included.

    Branches must share stride and channel counts and be centred alike: `2 * padding -
    kernel` equal for all, per axis (3x3 pad 1, 1x1 pad 0 and identity all give -1),
    which also makes their output sizes equal. The result's kernel is the largest branch
    kernel, its groups the gcd of the branches' groups.
    """
    if not branches:
        raise UsageError("merge_parallel needs at least one branch")
    sized = [_sized_kernel(b) for b in branches]
    if channels is None:
        channels = next((k.in_channels for k in sized if k is not None), None)
    kernels = [k or branch_kernel(b, channels) for k, b in zip(sized, branches, strict=True)]
    device = next((k.weight.device for k in sized if k is not None), torch.device("cpu"))
    kernels = [replace(k, weight=k.weight.to(device), bias=k.bias.to(device)) for k in kernels]
    first = kernels[0]
    for index, kernel in enumerate(kernels[1:], start=1):
        _check_same_geometry(first, kernel, index)
    size = (max(k.kernel_size[0] for k in kernels), max(k.kernel_size[1] for k in kernels))
    groups = math.gcd(*(k.groups for k in kernels))
    aligned = [k.padded_to(size).with_groups(groups) for k in kernels]
    merged = ConvKernel(
        weight=sum(k.weight for k in aligned),
        bias=sum(k.bias for k in aligned),
        stride=first.stride,
        padding=aligned[0].padding,
        groups=groups,
    )
    return merged.to_conv(like=_kernel_dtype_like(branches).to(device))


def _check_same_geometry(first: ConvKernel, other: ConvKernel, index: int) -> None:
    if (other.in_channels, other.out_channels) != (first.in_channels, first.out_channels):
        raise MergeRefused(
            f"branch {index} maps {other.in_channels}->{other.out_channels} channels but "
            f"branch 0 maps {first.in_channels}->{first.out_channels}; parallel branches must "
            "agree (an identity or pooling branch needs in == out)."
        )
    if other.stride != first.stride:
        raise MergeRefused(
            f"branch {index} has stride {other.stride} but branch 0 has {first.stride}; "
            "parallel branches must share the stride (identity branches need stride 1)."
        )
    for axis, name in enumerate(("height", "width")):
        offset_first = 2 * first.padding[axis] - first.kernel_size[axis]
        offset_other = 2 * other.padding[axis] - other.kernel_size[axis]
        if offset_first != offset_other:
            raise MergeRefused(
                f"branch {index} ({other.kernel_size[axis]} taps, padding "
                f"{other.padding[axis]}) and branch 0 ({first.kernel_size[axis]} taps, padding "
                f"{first.padding[axis]}) are centred differently along the {name}; use "
                "padding (kernel - 1) // 2 on every branch ('same'-style) so their taps align."
            )
