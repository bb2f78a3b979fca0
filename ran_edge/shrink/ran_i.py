"""RAN-i scaling: deeper-thinner ConvNeXt by the NN-Mass proxy, under a MAC budget.

NN-Mass (Bhardwaj et al.) predicts accuracy from topology; for a residual network with
one skip per block it reduces to `sum over stages of 2 * depth * width`. Per added MAC
it rewards depth over width: a ConvNeXt block of width w at an h x w map costs
`hw * (49 w + 8 w^2)` MACs for `2 w` mass, so thinner blocks buy mass more cheaply. RAN-i
(Restructurable Activation Networks, implicit) uses this to trade ConvNeXt's width for
depth: RAN-i-T has more NN-Mass than ConvNeXt-T at 74% of its MACs.

`convnext_macs` is the exact MAC count of `ran_edge.models.convnext_bn.ConvNeXtBN` (the
tests check it against forward hooks); `search_scaling` finds per-stage depths and
widths that maximise NN-Mass within a MAC budget. Without a floor on width the optimum
is always "as thin as allowed", and all depth goes to the last (7x7) stage, where mass
is cheapest; so the search keeps each stage between the base's depth and
`max_depth_mult` times it, and between `min_width_mult` of the base's width (default
2/3, RAN-i-T's ratio) and the base's width.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ran_edge.errors import UsageError

Config = tuple[tuple[int, ...], tuple[int, ...]]  # (depths, widths)

PRESETS: dict[str, Config] = {
    "convnext_t": ((3, 3, 9, 3), (96, 192, 384, 768)),
    # Published verbatim, 511 included: uniform 5/3 depth x 2/3 width of ConvNeXt-T
    # would give 512.
    "ran_i_t": ((5, 5, 15, 5), (64, 128, 256, 511)),
}


def nn_mass(depths: Sequence[int], widths: Sequence[int]) -> int:
    """The NN-Mass proxy: sum over stages of 2 * depth * width."""
    _check(depths, widths)
    return sum(2 * d * w for d, w in zip(depths, widths, strict=True))


def convnext_macs(
    depths: Sequence[int],
    widths: Sequence[int],
    *,
    resolution: int = 224,
    in_channels: int = 3,
    num_classes: int = 1000,
    expansion: int = 4,
    kernel: int = 7,
) -> int:
    """Exact MACs of ConvNeXtBN for one image: 4x4/4 stem, per stage a 2x2/2 downsampling
    conv (after the first) and blocks of dw kxk + 1x1 expand + 1x1 project, linear head."""
    _check(depths, widths)
    side = resolution // 4
    macs = side * side * widths[0] * in_channels * 16
    previous = widths[0]
    for stage, (depth, width) in enumerate(zip(depths, widths, strict=True)):
        if stage:
            side //= 2
            macs += side * side * width * previous * 4
        block = side * side * (kernel * kernel * width + 2 * expansion * width * width)
        macs += depth * block
        previous = width
    return macs + widths[-1] * num_classes


@dataclass(frozen=True)
class ScaledConfig:
    """A ConvNeXt configuration with its MACs (at `resolution`) and NN-Mass."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    macs: int
    nn_mass: int
    resolution: int = 224

    @classmethod
    def of(cls, depths: Sequence[int], widths: Sequence[int], resolution: int = 224):
        depths, widths = tuple(depths), tuple(widths)
        macs = convnext_macs(depths, widths, resolution=resolution)
        return cls(depths, widths, macs, nn_mass(depths, widths), resolution)


def preset(name: str, resolution: int = 224) -> ScaledConfig:
    """A published configuration by name (`convnext_t`, `ran_i_t`)."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}.")
    return ScaledConfig.of(*PRESETS[name], resolution=resolution)


def round_width(width: float, divisor: int) -> int:
    """Nearest multiple of `divisor`, at least `divisor` (Ethos-U likes 16)."""
    return max(divisor, int(round(width / divisor)) * divisor)


def uniform_scale(
    base: Config, depth_mult: float, width_mult: float, *, width_divisor: int = 16
) -> Config:
    """Every stage's depth times `depth_mult` (rounded, >= 1), width times `width_mult`."""
    depths, widths = base
    return (
        tuple(max(1, round(d * depth_mult)) for d in depths),
        tuple(round_width(w * width_mult, width_divisor) for w in widths),
    )


@dataclass(frozen=True)
class ScalingSearch:
    """The best configuration found, the base, and how many candidates were evaluated."""

    best: ScaledConfig
    base: ScaledConfig
    mac_budget: int
    evaluated: int


def search_scaling(
    mac_budget: int,
    *,
    base: Config = PRESETS["convnext_t"],
    resolution: int = 224,
    width_divisor: int = 16,
    min_width_mult: float = 2 / 3,
    max_width_mult: float = 1.0,
    min_depth_mult: float = 1.0,
    max_depth_mult: float = 3.0,
    uniform: bool = False,
) -> ScalingSearch:
    """Maximise NN-Mass subject to MACs <= `mac_budget` (ties: fewer MACs).

    Deeper-thinner: each stage's depth stays within [min, max]_depth_mult times the
    base's and its width within [min, max]_width_mult times the base's (multiples of
    `width_divisor`). The depth floor also keeps the proxy from moving every block to the
    last, cheapest stage.

    A grid over uniform (depth, width) multipliers gives the start (and the answer when
    `uniform`, which keeps the base's stage ratios, as RAN-i-T does); coordinate ascent
    then moves one or two stages at a time while a move raises NN-Mass within the budget
    and the bounds.
    """
    if mac_budget <= 0:
        raise UsageError(f"the MAC budget must be positive, got {mac_budget}.")
    bounds = _Bounds.of(
        base, width_divisor, (min_width_mult, max_width_mult), (min_depth_mult, max_depth_mult)
    )
    evaluated = 0
    best: ScaledConfig | None = None
    grid = _uniform_grid(
        base, bounds, width_divisor, (min_width_mult, max_width_mult), max_depth_mult
    )
    for depths, widths in grid:
        candidate = ScaledConfig.of(depths, widths, resolution)
        evaluated += 1
        if candidate.macs <= mac_budget and _better(candidate, best):
            best = candidate
    if best is None:
        smallest = ScaledConfig.of(bounds.min_depths, bounds.min_widths, resolution)
        raise UsageError(
            f"no configuration fits {mac_budget:,} MACs: the smallest allowed one "
            f"({list(smallest.depths)}, {list(smallest.widths)}) needs {smallest.macs:,}. "
            "Raise the budget or lower min_width_mult."
        )
    improved = not uniform
    while improved:
        improved = False
        for depths, widths in _neighbours(best, bounds, width_divisor):
            candidate = ScaledConfig.of(depths, widths, resolution)
            evaluated += 1
            if candidate.macs <= mac_budget and _better(candidate, best):
                best, improved = candidate, True
    return ScalingSearch(best, ScaledConfig.of(*base, resolution), mac_budget, evaluated)


@dataclass(frozen=True)
class _Bounds:
    min_depths: tuple[int, ...]
    max_depths: tuple[int, ...]
    min_widths: tuple[int, ...]
    max_widths: tuple[int, ...]

    @classmethod
    def of(
        cls, base: Config, divisor: int, width: tuple[float, float], depth: tuple[float, float]
    ) -> _Bounds:
        (min_w, max_w), (min_d, max_d) = width, depth
        if not (0 < min_w <= max_w and 0 < min_d <= max_d):
            raise UsageError(
                f"need 0 < min_width_mult <= max_width_mult and 0 < min_depth_mult <= "
                f"max_depth_mult (got {min_w}, {max_w}, {min_d}, {max_d})."
            )
        depths, widths = base
        return cls(
            tuple(max(1, math.ceil(d * min_d)) for d in depths),
            tuple(max(1, math.floor(d * max_d)) for d in depths),
            tuple(max(divisor, math.ceil(w * min_w / divisor) * divisor) for w in widths),
            tuple(max(divisor, math.floor(w * max_w / divisor) * divisor) for w in widths),
        )

    def contains(self, depths: Sequence[int], widths: Sequence[int]) -> bool:
        depth_ok = all(
            lo <= d <= hi
            for d, lo, hi in zip(depths, self.min_depths, self.max_depths, strict=True)
        )
        width_ok = all(
            lo <= w <= hi
            for w, lo, hi in zip(widths, self.min_widths, self.max_widths, strict=True)
        )
        return depth_ok and width_ok


def _better(candidate: ScaledConfig, best: ScaledConfig | None) -> bool:
    if best is None:
        return True
    return (candidate.nn_mass, -candidate.macs) > (best.nn_mass, -best.macs)


def _uniform_grid(
    base: Config, bounds: _Bounds, divisor: int, width_mults: tuple[float, float], max_d: float
) -> Iterator[Config]:
    """Uniform multipliers: widths in 1/24 steps between the bounds, depths in 1/12 steps up
    to `max_d` (clipped to each stage's bounds)."""
    low, high = (math.floor(m * 24) for m in width_mults)
    for wi in range(low, high + 1):
        for di in range(1, math.floor(max_d * 12) + 1):
            depths, widths = uniform_scale(base, di / 12, wi / 24, width_divisor=divisor)
            depths = tuple(min(d, hi) for d, hi in zip(depths, bounds.max_depths, strict=True))
            if bounds.contains(depths, widths):
                yield depths, widths


def _neighbours(config: ScaledConfig, bounds: _Bounds, divisor: int) -> Iterator[Config]:
    """Moves of one stage or of two stages at once (depth +-1, width up to +-3 steps), so
    trades such as "one block deeper here, 48 channels thinner there" are reachable."""
    steps = [(dd, k * divisor) for dd in (-1, 0, 1) for k in range(-3, 4) if (dd, k) != (0, 0)]
    stages = range(len(config.depths))
    moves = [((a, step),) for a in stages for step in steps]
    moves += [
        ((a, first), (b, second))
        for a in stages
        for b in stages
        if a < b
        for first in steps
        for second in steps
    ]
    for move in moves:
        depths, widths = list(config.depths), list(config.widths)
        for stage, (dd, dw) in move:
            depths[stage] += dd
            widths[stage] += dw
        if bounds.contains(depths, widths):
            yield tuple(depths), tuple(widths)


def _check(depths: Sequence[int], widths: Sequence[int]) -> None:
    if len(depths) != len(widths) or not depths:
        raise UsageError(
            f"need one depth per width, got {len(depths)} depths and {len(widths)} widths."
        )
    if min(depths) < 1 or min(widths) < 1:
        raise UsageError(f"depths and widths must be positive: {list(depths)}, {list(widths)}.")
