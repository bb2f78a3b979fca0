"""A CPU model carried to a core nobody has timed: a fitted profile's per-cycle rates scaled by
a stated factor per group of rates, and its band widened in log space for the transfer.

The neoverse-n1 / neoverse-v1 profiles are rpi5's model transferred so:
benchmarks/neoverse_transfer.py prints their [cpu_model] tables from this, with the factors
and their sources, and the tests check the shipped profiles against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, replace

from ran_edge.targets.cortex_a.spec import CpuModelParams, UncertaintyBand

# The rates each factor scales (`factors` keys "mac", "data" and "cold"); every other
# parameter (shape constants, overheads in cycles, TFLite-kernel rates, thread constants)
# keeps the base's value.
MAC_RATES = (
    "conv_macs_per_cycle",
    "fc_macs_per_cycle",
    "depthwise_macs_per_cycle",
    "depthwise_large_macs_per_cycle",
)
DATA_RATES = (
    "elementwise_elements_per_cycle",
    "pool_elements_per_cycle",
    "reduce_elements_per_cycle",
    "copy_bytes_per_cycle",
    "memory_bytes_per_cycle",
)
COLD_RATE = "cold_weight_bytes_per_cycle"


def transferred_params(base: CpuModelParams, factors: Mapping[str, float]) -> CpuModelParams:
    """`base` with each rate group scaled by its factor (6 significant digits, as the TOMLs)."""
    values = asdict(base)
    scaled = {n: _round(values[n] * factors["mac"]) for n in MAC_RATES}
    scaled |= {n: _round(values[n] * factors["data"]) for n in DATA_RATES}
    scaled[COLD_RATE] = _round(values[COLD_RATE] * factors["cold"])
    return replace(base, **scaled)


def transferred_band(base: UncertaintyBand, factor: float, source: str) -> UncertaintyBand:
    """The base band's half-width and a x/`factor` transfer term combined in log space."""
    low, high = math.log(base.low), math.log(base.high)
    centre, half = (low + high) / 2, math.hypot((high - low) / 2, math.log(factor))
    return UncertaintyBand(
        round(math.exp(centre - half), 4),
        round(math.exp(centre + half), 4),
        base.coverage,
        base.samples,
        source,
    )


def _round(value: float) -> float:
    return float(f"{value:.6g}")
