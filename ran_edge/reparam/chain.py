"""Linear chain collapse: convs in sequence with nothing non-linear between them -> one conv.

Composing conv1 (k1, stride s1, padding p1, groups g1) then conv2 (k2, s2, p2, g2) gives
one dense-in-time conv with kernel `k1 + (k2 - 1) * s1`, stride `s1 * s2`, padding
`p1 + p2 * s1`, groups `gcd(g1, g2)` and bias `b2 + sum(W2) @ b1`. In the interior that
is exact by linearity. On the border it is exact only if the ring conv2 pads around its
input holds what the merged conv sees there: conv1's response to the zero-padded input.
That holds, for every input size, exactly when

- conv2 does not pad (p2 == 0): there is no ring; or
- conv1's receptive field at the ring lies wholly in the input's zero padding
  (p1 >= k1 - 1, true for every 1x1 conv with padding 0), so the merged conv sees conv1's
  bias there, AND the chain's ring holds that bias: either the train form pads with it
  (border="bias": bias-aware padding) or the bias is zero (border="zeros").

Anything else raises MergeRefused with the reason. `docs/shrink.md` has the derivation.

Border conventions (`Border`) name what a chain's intermediate padding ring holds:
"zeros" (PyTorch's usual zero padding) or "bias" (the value the chain so far produces on an
all-zero input; for one conv, its bias). Under "bias", a zero input gives constant maps
everywhere, so extending them by their constant is what the merged conv computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ran_edge.errors import UsageError
from ran_edge.reparam.branches import (
    ConvKernel,
    MergeRefused,
    Pair,
    as_pair,
    diagonal_blocks,
    merge_parallel,
)

Border = Literal["zeros", "bias"]
BORDERS: tuple[Border, ...] = ("zeros", "bias")

# Vela's Ethos-U limits for CONV_2D / DEPTHWISE_CONV_2D (ethosu/vela/tflite_supported_operators.py).
ETHOS_U_MAX_STRIDE = 3
ETHOS_U_MAX_KERNEL_HEIGHT = 64
ETHOS_U_MAX_KERNEL_AREA = 64 * 64


def check_border(border: str) -> Border:
    if border not in BORDERS:
        raise UsageError(
            f"unknown border convention {border!r}: use 'zeros' (ordinary zero padding) or "
            "'bias' (bias-aware padding: pad with the value the layers before produce on a "
            "zero input)."
        )
    return border  # type: ignore[return-value]


def compose(first: ConvKernel, second: ConvKernel) -> ConvKernel:
    """The kernel of `second(first(x))` away from the borders (see the module docstring)."""
    if first.out_channels != second.in_channels:
        raise UsageError(
            f"cannot chain a conv with {first.out_channels} outputs into one with "
            f"{second.in_channels} inputs; consecutive convs must agree on channels."
        )
    second_dense = second.dense_weight()  # (C2, C1, k2h, k2w)
    # conv_transpose places each tap j of W2 at j * s1 and smears W1 around it: exactly
    # the sum over j * s1 + t = m of W2[.., j] W1[.., t].
    dense = F.conv_transpose2d(second_dense, first.weight, stride=first.stride, groups=first.groups)
    groups = math.gcd(first.groups, second.groups)
    (s1h, s1w), (s2h, s2w) = first.stride, second.stride
    return ConvKernel(
        weight=diagonal_blocks(dense, groups),
        bias=second.bias + second_dense.sum(dim=(2, 3)) @ first.bias,
        stride=(s1h * s2h, s1w * s2w),
        padding=(
            first.padding[0] + second.padding[0] * s1h,
            first.padding[1] + second.padding[1] * s1w,
        ),
        groups=groups,
    )


def merge_refusal(first: ConvKernel, second: ConvKernel, border: Border) -> str | None:
    """Why `compose(first, second)` would not be exact at the borders, or None if it is."""
    for axis, name in enumerate(("height", "width")):
        pad2 = second.padding[axis]
        if pad2 == 0:
            continue
        k1, p1, s1 = first.kernel_size[axis], first.padding[axis], first.stride[axis]
        if p1 < k1 - 1:
            return (
                f"the later conv zero-pads its input ({name} padding {pad2}), but the earlier "
                f"layers ({k1} taps, padding {p1} along the {name}) would reach real pixels from "
                "that ring in the merged conv, so no single conv reproduces the border. Pad once "
                f"at the input instead (earlier conv padding {p1 + pad2 * s1}, later conv "
                "padding 0), or keep the convs separate."
            )
        if border == "zeros" and bool(torch.any(first.bias != 0)):
            return (
                "the later conv zero-pads its input, but the earlier layers have a non-zero bias "
                "(BatchNorm folded in), which the merged conv would see on that ring where the "
                "chain sees 0. Train with bias-aware padding (border='bias', e.g. "
                "InvertedResidual(border='bias')) so the ring holds the bias, or pad at the input."
            )
    return None


def merge_sequential_convs(convs: Sequence[nn.Conv2d], *, border: Border = "zeros") -> nn.Conv2d:
    """One Conv2d equal to `convs[-1](...convs[0](x))` on the whole map, borders included.

    `border` is the train form's convention for each later conv's padding ring (module
    docstring). Raises MergeRefused when the result could not be exact.
    """
    check_border(border)
    if not convs:
        raise UsageError("merge_sequential_convs needs at least one conv")
    merged = ConvKernel.from_conv(convs[0])
    for index, conv in enumerate(convs[1:], start=1):
        following = ConvKernel.from_conv(conv)
        reason = merge_refusal(merged, following, border)
        if reason is not None:
            raise MergeRefused(f"cannot merge convs[{index}] into convs[:{index}]: {reason}")
        merged = compose(merged, following)
    return merged.to_conv(like=convs[0].weight)


def pad_with_values(x: Tensor, padding: Pair, values: Tensor) -> Tensor:
    """`x` (N, C, H, W) padded by `padding` with `values[c]` on channel c's ring (autograd-safe)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    ring = values.reshape(1, c, 1, 1).to(x.dtype).expand(n, c, h + 2 * ph, w + 2 * pw)
    out = ring.clone()
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def conv2d_value_padded(conv: nn.Conv2d, x: Tensor, values: Tensor) -> Tensor:
    """`conv(x)` with its padding ring filled with `values` (per channel) instead of zeros."""
    padding = ConvKernel.from_conv(conv).padding
    return F.conv2d(
        pad_with_values(x, padding, values),
        conv.weight,
        conv.bias,
        conv.stride,
        0,
        conv.dilation,
        conv.groups,
    )


def zero_input_response(conv: nn.Conv2d, response: Tensor) -> Tensor:
    """What `conv` outputs, per channel, when its whole input is the constant map `response`."""
    kh, kw = as_pair(conv.kernel_size)
    constant = response.reshape(1, -1, 1, 1).expand(1, conv.in_channels, kh, kw)
    return F.conv2d(constant, conv.weight, conv.bias, groups=conv.groups).flatten()


def chain_forward(convs: Sequence[nn.Conv2d], x: Tensor, *, border: Border = "zeros") -> Tensor:
    """Reference train-form forward of a conv chain under a border convention."""
    check_border(border)
    response = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    for index, conv in enumerate(convs):
        if border == "bias" and index > 0:
            x = conv2d_value_padded(conv, x, response)
        else:
            x = conv(x)
        if border == "bias":
            response = zero_input_response(conv, response)
    return x


class ConvChain(nn.Module):
    """Train form of a linear conv chain under a border convention; deploy form: one conv.

    Use it to train a kxk -> kxk (or PW -> DW -> PW) stack that must collapse exactly:
    with border="bias" and 1x1 / fully padded leading convs, or with padding only on the
    first conv, `to_deploy()` is exact on the whole map.
    """

    def __init__(self, convs: Sequence[nn.Conv2d], *, border: Border = "zeros") -> None:
        super().__init__()
        self.convs = nn.ModuleList(convs)
        self.border = check_border(border)

    def forward(self, x: Tensor) -> Tensor:
        return chain_forward(list(self.convs), x, border=self.border)

    def to_deploy(self) -> nn.Conv2d:
        return merge_sequential_convs(list(self.convs), border=self.border)


def fold_residual(conv: nn.Conv2d) -> nn.Conv2d:
    """One Conv2d equal to `x + conv(x)`: the identity added to the centre tap."""
    return merge_parallel([conv, nn.Identity()])


def ethos_u_conv_notes(conv: nn.Conv2d) -> list[str]:
    """Where a (merged) conv leaves Vela's native Ethos-U conv limits; empty when it fits."""
    notes: list[str] = []
    stride, (kh, kw) = as_pair(conv.stride), as_pair(conv.kernel_size)
    if max(stride) > ETHOS_U_MAX_STRIDE:
        notes.append(
            f"stride {stride[0]}x{stride[1]} > {ETHOS_U_MAX_STRIDE}: Vela maps a height stride "
            "> 3 only when the output is one row high, and a width stride > 3 only when it can "
            "reshape it away (input width divisible by stride/2 or stride/3); otherwise the "
            "op falls back to the CPU. Keep one of the strided convs unmerged."
        )
    if kh > ETHOS_U_MAX_KERNEL_HEIGHT or kh * kw > ETHOS_U_MAX_KERNEL_AREA:
        notes.append(
            f"kernel {kh}x{kw} exceeds Vela's limits (height <= {ETHOS_U_MAX_KERNEL_HEIGHT}, "
            f"area <= {ETHOS_U_MAX_KERNEL_AREA})."
        )
    if conv.groups == conv.in_channels == conv.out_channels and max(stride) > ETHOS_U_MAX_STRIDE:
        notes.append("depthwise convs with stride > 3 are never mapped to the NPU by Vela.")
    return notes
