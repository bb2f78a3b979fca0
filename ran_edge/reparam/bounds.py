"""Sound per-channel value bounds (interval arithmetic) through plain eval-mode layers.

Residual removal (`carry.py`) carries a block's input through the block's activations, and
a bounded activation (ReLU6) passes a value unchanged only inside its identity range. The
carry is exact for every input only if the block input is *proven* to stay in a known
range; these bounds are that proof. They hold for every input of the network inside the
given input interval (every input, when it is unbounded), not just for calibration
samples: a conv output is bounded by its bias plus positive weights times the input's
upper bounds plus negative weights times its lower bounds, a padding ring adds 0 to the
input interval, a monotone activation maps the endpoints.

Bounds are float64 tensors of shape (C,) or () (one bound for every channel), +-inf
allowed. A module these rules do not cover has unknown output: `module_interval` returns
None and callers treat that as unbounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ran_edge.errors import UsageError
from ran_edge.reparam.branches import ConvKernel, as_pair
from ran_edge.reparam.fold import bn_affine

INF = math.inf


@dataclass(frozen=True)
class Interval:
    """Per-channel bounds lo <= x <= hi on an (N, C, H, W) tensor's values (float64)."""

    lo: Tensor
    hi: Tensor

    @classmethod
    def of(cls, lo: float | Tensor, hi: float | Tensor) -> Interval:
        lo_t = torch.as_tensor(lo, dtype=torch.float64).clone()
        hi_t = torch.as_tensor(hi, dtype=torch.float64).clone()
        if bool(torch.any(lo_t > hi_t)):
            raise UsageError(f"an interval needs lo <= hi, got lo={lo} and hi={hi}")
        return cls(lo_t, hi_t)

    @classmethod
    def unbounded(cls) -> Interval:
        return cls.of(-INF, INF)

    def per_channel(self, channels: int) -> Interval:
        """The same bounds as (channels,) tensors."""
        if self.lo.dim() == 1 and self.lo.numel() != channels:
            raise UsageError(f"bounds for {self.lo.numel()} channels used on {channels} channels")
        return Interval(self.lo.expand(channels).clone(), self.hi.expand(channels).clone())

    def with_zero(self) -> Interval:
        """Also covering 0: what a zero-padding ring adds."""
        return Interval(self.lo.clamp(max=0.0), self.hi.clamp(min=0.0))

    def __add__(self, other: Interval) -> Interval:
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def union(self, other: Interval) -> Interval:
        return Interval(torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi))

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.lo).all() and torch.isfinite(self.hi).all())


def _times(weight: Tensor, bound: Tensor) -> Tensor:
    """weight * bound with 0 * inf taken as 0 (a zero weight ignores an unbounded input)."""
    return torch.where(weight == 0, torch.zeros_like(weight), weight * bound)


def conv_interval(conv: nn.Conv2d, x: Interval) -> Interval:
    """Bounds of `conv(x)`; a padded conv also sees the zero ring."""
    kernel = ConvKernel.from_conv(conv)
    if any(kernel.padding):
        x = x.with_zero()
    x = x.per_channel(kernel.in_channels)
    # bounds live on the CPU; weight is (out, in / groups, kh, kw)
    weight, bias = kernel.weight.cpu(), kernel.bias.cpu()
    positive = weight.clamp(min=0).sum(dim=(2, 3))
    negative = weight.clamp(max=0).sum(dim=(2, 3))
    groups, per_group = kernel.groups, weight.shape[1]
    group_of_out = torch.arange(kernel.out_channels) // (kernel.out_channels // groups)
    lo_in = x.lo.reshape(groups, per_group)[group_of_out]  # (out, in / groups)
    hi_in = x.hi.reshape(groups, per_group)[group_of_out]
    lo = bias + (_times(positive, lo_in) + _times(negative, hi_in)).sum(dim=1)
    hi = bias + (_times(positive, hi_in) + _times(negative, lo_in)).sum(dim=1)
    return Interval(lo, hi)


def affine_interval(scale: Tensor, shift: Tensor, x: Interval) -> Interval:
    """Bounds of `x * scale + shift` per channel."""
    x = x.per_channel(scale.numel())
    a, b = _times(scale, x.lo) + shift, _times(scale, x.hi) + shift
    return Interval(torch.minimum(a, b), torch.maximum(a, b))


def _hardswish(t: Tensor) -> Tensor:
    t = t.clamp(min=-3.0)  # hardswish is 0 below -3, which also keeps -inf out of 0 * inf
    return torch.where(torch.isinf(t), t, t * (t + 3.0).clamp(0.0, 6.0) / 6.0)


HARDSWISH_ARGMIN, HARDSWISH_MIN = -1.5, -0.375


def activation_interval(act: nn.Module, x: Interval) -> Interval | None:
    """Bounds after an elementwise activation; None for one these rules do not cover."""
    monotone: dict[type, Callable[[Tensor], Tensor]] = {
        nn.Identity: lambda t: t,
        nn.Dropout: lambda t: t,  # eval mode
        nn.ReLU: torch.relu,
        nn.Sigmoid: torch.sigmoid,
        nn.Tanh: torch.tanh,
    }
    for kind, fn in monotone.items():
        if type(act) is kind:
            return Interval(fn(x.lo), fn(x.hi))
    if isinstance(act, nn.Hardtanh):  # ReLU6 too
        return Interval(x.lo.clamp(act.min_val, act.max_val), x.hi.clamp(act.min_val, act.max_val))
    if type(act) is nn.LeakyReLU and act.negative_slope >= 0:
        slope = act.negative_slope
        return Interval(
            torch.where(x.lo < 0, x.lo * slope, x.lo), torch.where(x.hi < 0, x.hi * slope, x.hi)
        )
    if type(act) is nn.Hardswish:
        at_lo, at_hi = _hardswish(x.lo), _hardswish(x.hi)
        dips = (x.lo < HARDSWISH_ARGMIN) & (x.hi > HARDSWISH_ARGMIN)
        lo = torch.where(dips, torch.full_like(at_lo, HARDSWISH_MIN), torch.minimum(at_lo, at_hi))
        return Interval(lo, torch.maximum(at_lo, at_hi))
    return None


def module_interval(module: nn.Module, x: Interval) -> Interval | None:
    """Bounds of an eval-mode plain layer's output (None: not covered, so unknown)."""
    if isinstance(module, nn.Conv2d):
        return conv_interval(module, x)
    if isinstance(module, nn.BatchNorm2d):
        scale, shift = bn_affine(module)
        return affine_interval(scale.cpu(), shift.cpu(), x)
    if isinstance(module, nn.MaxPool2d | nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        return x  # every window holds at least one real pixel (max-pool pads with -inf)
    if isinstance(module, nn.AvgPool2d):
        if module.divisor_override is not None:
            return None
        padded = any(as_pair(module.padding)) and module.count_include_pad
        return x.with_zero() if padded else x
    if isinstance(module, nn.ZeroPad2d):
        return x.with_zero()
    if isinstance(module, nn.Sequential):
        for layer in module:
            out = module_interval(layer, x)
            x = out if out is not None else Interval.unbounded()
        return x
    return activation_interval(module, x)
