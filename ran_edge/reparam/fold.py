"""BatchNorm folding: conv -> BN (eval statistics) becomes one conv with a bias.

In eval mode BN is a per-channel affine map, `x * scale + shift`, so it folds into the
output channels of the conv before it, whatever the conv's groups, stride, padding or
dilation. The arithmetic runs in float64 and is cast back, so the folded conv differs
from conv -> BN by float32 rounding only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ran_edge.errors import UsageError


def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(scale, shift), float64, such that eval-mode `bn(x) == x * scale + shift` per channel."""
    if bn.running_mean is None or bn.running_var is None:
        raise UsageError(
            f"{bn} has no running statistics (track_running_stats=False), so it has no "
            "fixed eval-mode affine map to fold. Build it with track_running_stats=True "
            "and train (or calibrate) it before folding."
        )
    mean = bn.running_mean.detach().double()
    inv_std = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    weight = torch.ones_like(mean) if bn.weight is None else bn.weight.detach().double()
    bias = torch.zeros_like(mean) if bn.bias is None else bn.bias.detach().double()
    scale = weight * inv_std
    return scale, bias - mean * scale


def conv_from_tensors(
    weight: Tensor,
    bias: Tensor,
    *,
    stride: tuple[int, int],
    padding: tuple[int, int] | str,
    groups: int,
    dilation: tuple[int, int] = (1, 1),
    padding_mode: str = "zeros",
    like: Tensor,
) -> nn.Conv2d:
    """A new biased nn.Conv2d holding `weight`/`bias`, cast to `like`'s dtype and device."""
    out_channels, in_per_group, kh, kw = weight.shape
    conv = torch.nn.utils.skip_init(
        nn.Conv2d,
        in_per_group * groups,
        out_channels,
        (kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=True,
        padding_mode=padding_mode,
        device=like.device,
        dtype=like.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(weight.to(like.dtype))
        conv.bias.copy_(bias.to(like.dtype))
    return conv


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d equal to eval-mode `bn(conv(x))`; `conv` and `bn` are left untouched."""
    if bn.num_features != conv.out_channels:
        raise UsageError(
            f"cannot fold {bn} into {conv}: the BatchNorm has {bn.num_features} channels but "
            f"the conv has {conv.out_channels} outputs. Fold a BatchNorm only into the conv "
            "that feeds it."
        )
    scale, shift = bn_affine(bn)
    weight = conv.weight.detach().double() * scale.view(-1, 1, 1, 1)
    conv_bias = torch.zeros_like(scale) if conv.bias is None else conv.bias.detach().double()
    return conv_from_tensors(
        weight,
        conv_bias * scale + shift,
        stride=conv.stride,
        padding=conv.padding,
        groups=conv.groups,
        dilation=conv.dilation,
        padding_mode=conv.padding_mode,
        like=conv.weight,
    )
