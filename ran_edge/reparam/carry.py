"""Carrying a block's input through its own layers: the exact math of RMNet-style residual
removal (Meng et al., "RMNet: Equivalently Removing Residual Connection from Networks").

A residual block computes `post(f(x) + x)` with `f = conv_n . act_{n-1} . ... . act_0 . conv_0`.
Give conv_0 K extra output channels t = E x + d (E at the centre tap), let every middle conv
pass them on with a centre-tap (Dirac) kernel, and give conv_n K extra input channels
decoded as D t' + e at the centre tap. If the activations pass the carry channels through
in a way D undoes, `conv_n'` outputs f(x) + x and the add is gone. Per input channel:

- "direct": t = s x, when x is proven to lie where every activation is the identity
  (ReLU on x >= 0, ReLU6 on 0 <= x <= 6, Hardswish on x >= 3, or no activation);
- "affine": t = s x + d, d chosen so the proven range of x lands in the activations'
  identity range (a bounded ReLU6 needs both bounds finite, and s < 1 when the range is
  wider than 6); the decode is (t - d) / s;
- "pair": t = (s x, -s x), decoded as (relu(s x) - relu(-s x)) / s = x: exact for every x,
  no bound needed, two channels; only when the activations are ReLU (or none).

Any s > 0 that keeps the carry inside the identity range is exact, so s is free where that
range is unbounded (ReLU): `gain` asks for s > 1 there. It matters for int8, not for
exactness: the decode weight 1/s shares a per-channel weight scale with the last conv's own
weights, and a 1.0 among weights of 0.1 leaves those weights few int8 steps.

Only centre taps touch carry channels, so the zero-padding ring never reaches them and the
result is exact on the whole map, borders included. A bounded activation cannot carry an
unbounded value (a finite set of ReLU6 outputs is bounded), so without a proven bound it
is refused rather than approximated. Bounds come from `bounds.py`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ran_edge.reparam.bounds import Interval
from ran_edge.reparam.branches import ConvKernel, MergeRefused

Mode = Literal["direct", "affine", "pair"]
LETTERS: dict[str, Mode] = {"d": "direct", "a": "affine", "p": "pair"}


def identity_range(act: nn.Module) -> tuple[float, float] | None:
    """The interval on which `act(t) == t` exactly; None if there is none."""
    if isinstance(act, nn.Identity | nn.Dropout):
        return (-math.inf, math.inf)
    if type(act) in (nn.ReLU, nn.LeakyReLU):
        return (0.0, math.inf)
    if isinstance(act, nn.Hardtanh):  # ReLU6 is Hardtanh(0, 6)
        return (float(act.min_val), float(act.max_val))
    if type(act) is nn.Hardswish:
        return (3.0, math.inf)
    return None


def _is_identity(act: nn.Module) -> bool:
    return isinstance(act, nn.Identity | nn.Dropout)


def pair_passes(acts: Sequence[nn.Module]) -> bool:
    """relu(x) - relu(-x) == x: true when the carried activations compose to one ReLU."""
    active = [a for a in acts if not _is_identity(a)]
    return bool(active) and all(type(a) is nn.ReLU for a in active)


@dataclass(frozen=True)
class CarryCode:
    """How each input channel rides through the block: mode, scale s and shift d (float64)."""

    modes: tuple[Mode, ...]
    scale: Tensor
    shift: Tensor

    @property
    def channels(self) -> int:
        return len(self.modes)

    @property
    def carried(self) -> int:
        """Extra channels the carry adds inside the block."""
        return sum(2 if m == "pair" else 1 for m in self.modes)

    @property
    def letters(self) -> str:
        """One letter per channel (d / a / p): enough to rebuild the structure."""
        return "".join(m[0] for m in self.modes)

    def counts(self) -> dict[str, int]:
        return {mode: self.modes.count(mode) for mode in ("direct", "affine", "pair")}

    @classmethod
    def from_letters(cls, letters: str) -> CarryCode:
        """The structure of a recorded code (scale 1, shift 0): a skeleton to load weights into."""
        modes = tuple(LETTERS[letter] for letter in letters)
        ones = torch.ones(len(modes), dtype=torch.float64)
        return cls(modes, ones, torch.zeros_like(ones))

    def encoder(self) -> tuple[Tensor, Tensor]:
        """(E, d): the carry channels are E @ x + d; E is (carried, channels)."""
        rows, offsets = [], []
        for c, mode in enumerate(self.modes):
            for sign in (1.0, -1.0) if mode == "pair" else (1.0,):  # pair: s x, -s x
                row = torch.zeros(self.channels, dtype=torch.float64)
                row[c] = sign * float(self.scale[c])
                rows.append(row)
                offsets.append(0.0 if mode == "pair" else float(self.shift[c]))
        return torch.stack(rows), torch.tensor(offsets, dtype=torch.float64)

    def decoder(self) -> tuple[Tensor, Tensor]:
        """(D, e): x is D @ act(carry) + e; D is (channels, carried)."""
        decode = torch.zeros(self.channels, self.carried, dtype=torch.float64)
        offset = torch.zeros(self.channels, dtype=torch.float64)
        k = 0
        for c, mode in enumerate(self.modes):
            s, d = float(self.scale[c]), float(self.shift[c])
            if mode == "pair":
                decode[c, k], decode[c, k + 1] = 1.0 / s, -1.0 / s
                k += 2
            else:
                decode[c, k], offset[c] = 1.0 / s, -d / s
                k += 1
        return decode, offset


def plan_carry(
    acts: Sequence[nn.Module], x: Interval, channels: int, *, gain: Tensor | None = None
) -> CarryCode:
    """The cheapest exact carry for each channel of an input proven to lie in `x`.

    `acts` are the activations the carry passes through, in order; `gain` (per channel,
    >= 1) is the scale wanted where the identity range leaves room (see the module
    docstring). Raises MergeRefused, naming the channel and what is missing, when no
    encoding is exact for the whole range.
    """
    x = x.per_channel(channels)
    ranges = [identity_range(a) for a in acts if not _is_identity(a)]
    keep = None
    if all(r is not None for r in ranges):
        low = max((r[0] for r in ranges), default=-math.inf)  # type: ignore[index]
        high = min((r[1] for r in ranges), default=math.inf)  # type: ignore[index]
        keep = (low, high) if low < high else None
    pair = pair_passes(acts)
    modes: list[Mode] = []
    scale = torch.ones(channels, dtype=torch.float64)
    shift = torch.zeros(channels, dtype=torch.float64)
    for c in range(channels):
        lo, hi = float(x.lo[c]), float(x.hi[c])
        g = 1.0 if gain is None else float(gain[c])
        if keep is not None and keep[0] <= lo and hi <= keep[1]:
            modes.append("direct")
            if keep[0] <= g * lo and g * hi <= keep[1]:
                scale[c] = g
        elif pair:
            modes.append("pair")
            scale[c] = g
        elif keep is not None and math.isfinite(lo) and (math.isfinite(hi) or keep[1] == math.inf):
            scale[c], shift[c] = _affine(lo, hi, keep, g)
            modes.append("affine")
        else:
            raise MergeRefused(_refusal(acts, keep, c, lo, hi))
    return CarryCode(tuple(modes), scale, shift)


def _affine(lo: float, hi: float, keep: tuple[float, float], gain: float) -> tuple[float, float]:
    """(s, d) with s * [lo, hi] + d inside `keep`, s as large as fits (at most `gain`): a
    larger s keeps more of x's resolution once the carry shares an int8 scale with the block."""
    low, high = keep
    width, room = hi - lo, high - low
    s = gain if width * gain <= room else room / width * (1.0 - 1e-12)  # margin for rounding
    return s, low - s * lo


def carry_gain(last: nn.Conv2d, cap: float = 16.0) -> Tensor:
    """Per output channel of the block's last conv, 1 / sqrt(its largest |weight|), in [1, cap].

    Balances the two int8 costs of carrying x with scale s: the decode weight 1/s coarsens
    the last conv's per-channel weight steps by (1/s) / max|w|, and s x widens the carried
    tensor's activation range by about s. Their product is fixed, the larger of the two is
    smallest at s = 1 / sqrt(max|w|). Exactness does not depend on it.
    """
    largest = last.weight.detach().double().abs().amax(dim=(1, 2, 3))
    return (1.0 / largest.clamp(min=1e-12).sqrt()).clamp(1.0, cap)


def _refusal(
    acts: Sequence[nn.Module], keep: tuple[float, float] | None, c: int, lo: float, hi: float
) -> str:
    names = ", ".join(type(a).__name__ for a in acts if not _is_identity(a))
    if keep is None:
        return (
            f"the carried input passes through {names}, which together are the identity on no "
            "interval (and are not plain ReLUs, for the x / -x pair); the input cannot ride "
            "through them unchanged. Only ReLU, ReLU6 / Hardtanh, Hardswish and no activation "
            "carry exactly."
        )
    return (
        f"input channel {c} is only known to lie in [{lo:.4g}, {hi:.4g}], but {names} pass "
        f"values unchanged only on [{keep[0]:.4g}, {keep[1]:.4g}]; a bounded activation cannot "
        "carry an unbounded value (a finite set of its outputs is bounded), so the carry needs "
        "a proven range: pass input_range=(lo, hi), or use remove_residuals(model), which "
        "proves one from the layers before the block."
    )


def carry_refusal(convs: Sequence[nn.Conv2d]) -> str | None:
    """Why a carry through `convs` would not be exact (or Ethos-U friendly); None if it is."""
    if len(convs) < 2:
        return (
            "the block's body is a single conv: fold the identity into its centre tap "
            "(fold_residual) instead of carrying it."
        )
    kernels = [ConvKernel.from_conv(conv) for conv in convs]  # refuses dilation, odd padding
    for index, kernel in enumerate(kernels):
        if kernel.stride != (1, 1):
            return (
                f"conv {index} has stride {kernel.stride[0]}x{kernel.stride[1]}: the carried "
                "input would land on other pixels (and a strided block has no identity "
                "shortcut). Only stride-1 blocks carry."
            )
        if any(k % 2 == 0 for k in kernel.kernel_size):
            return f"conv {index} has an even kernel {kernel.kernel_size}: it has no centre tap."
    for axis, name in enumerate(("height", "width")):
        offset = sum(k.padding[axis] - (k.kernel_size[axis] - 1) // 2 for k in kernels)
        if offset != 0:
            return (
                f"the convs' padding does not keep the output grid on the input grid along the "
                f"{name} (net offset {offset}), so the output is not the shape of x."
            )
    if kernels[0].groups != 1 or kernels[-1].groups != 1:
        return (
            "the first and last convs must be dense (groups=1) to take in / put back the "
            "carried channels; a depthwise first conv (an inverted residual without expand) "
            "would need a channel multiplier, which Vela runs on the CPU."
        )
    for index, kernel in enumerate(kernels[1:-1], start=1):
        depthwise = kernel.groups == kernel.in_channels == kernel.out_channels
        if kernel.groups != 1 and not depthwise:
            return f"conv {index} is grouped ({kernel.groups} groups); only dense or depthwise convs pass the carry."
    return None


def carry_through(convs: Sequence[nn.Conv2d], code: CarryCode) -> list[nn.Conv2d]:
    """`convs` rewritten so the last one outputs conv_n(...) + x (see the module docstring)."""
    reason = carry_refusal(convs)
    if reason is not None:
        raise MergeRefused(reason)
    kernels = [ConvKernel.from_conv(conv) for conv in convs]
    if kernels[0].in_channels != code.channels or kernels[-1].out_channels != code.channels:
        raise MergeRefused(
            f"the block maps {kernels[0].in_channels} -> {kernels[-1].out_channels} channels "
            f"but the carry has {code.channels}: an identity shortcut needs in == out."
        )
    device = kernels[0].weight.device
    encode, offset_in = (t.to(device) for t in code.encoder())
    decode, offset_out = (t.to(device) for t in code.decoder())
    out = [_with_rows(kernels[0], encode, offset_in)]
    out += [_pass_through(k, code.carried) for k in kernels[1:-1]]
    out.append(_with_columns(kernels[-1], decode, offset_out))
    return [k.to_conv(like=conv.weight) for k, conv in zip(out, convs, strict=True)]


def _centre(kernel: ConvKernel) -> tuple[int, int]:
    return kernel.kernel_size[0] // 2, kernel.kernel_size[1] // 2


def _with_rows(kernel: ConvKernel, encode: Tensor, offset: Tensor) -> ConvKernel:
    ch, cw = _centre(kernel)
    rows = kernel.weight.new_zeros(encode.shape[0], kernel.in_channels, *kernel.kernel_size)
    rows[:, :, ch, cw] = encode
    weight = torch.cat([kernel.weight, rows])
    return ConvKernel(weight, torch.cat([kernel.bias, offset]), (1, 1), kernel.padding, 1)


def _pass_through(kernel: ConvKernel, carried: int) -> ConvKernel:
    ch, cw = _centre(kernel)
    bias = torch.cat([kernel.bias, kernel.bias.new_zeros(carried)])
    if kernel.groups == 1:
        weight = kernel.weight.new_zeros(
            kernel.out_channels + carried, kernel.in_channels + carried, *kernel.kernel_size
        )
        weight[: kernel.out_channels, : kernel.in_channels] = kernel.weight
        weight[kernel.out_channels :, kernel.in_channels :, ch, cw] = torch.eye(
            carried, dtype=weight.dtype, device=weight.device
        )
        return ConvKernel(weight, bias, (1, 1), kernel.padding, 1)
    dirac = kernel.weight.new_zeros(carried, 1, *kernel.kernel_size)
    dirac[:, 0, ch, cw] = 1.0
    weight = torch.cat([kernel.weight, dirac])
    return ConvKernel(weight, bias, (1, 1), kernel.padding, kernel.groups + carried)


def _with_columns(kernel: ConvKernel, decode: Tensor, offset: Tensor) -> ConvKernel:
    ch, cw = _centre(kernel)
    columns = kernel.weight.new_zeros(kernel.out_channels, decode.shape[1], *kernel.kernel_size)
    columns[:, :, ch, cw] = decode
    weight = torch.cat([kernel.weight, columns], dim=1)
    return ConvKernel(weight, kernel.bias + offset, (1, 1), kernel.padding, 1)
