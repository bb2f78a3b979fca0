"""Whole-network cost from the table: the sum of stem, blocks and head, then a per-target
linear correction fitted on full Vela compiles of some architectures.

The sum alone misses what only exists in a whole network (cascading across block
boundaries, weight streaming overlapping other blocks' compute, the graph's I/O); a
linear fit `full = a * sum + b` absorbs the part of that which scales with the network.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from ran_edge.models.ran_e_space import Arch
from ran_edge.search.cost import ZERO, BlockCost
from ran_edge.search.table import CostTable


def summed_cost(table: CostTable, arch: Arch) -> BlockCost:
    """Stem + every block + head, straight from the table (SRAM: the largest peak)."""
    total = ZERO
    for slot, cand in arch.parts():
        total = total.plus(table.cost(slot, cand))
    return total


@dataclass(frozen=True)
class LinearCorrection:
    """full ~= scale * summed + offset, by least squares."""

    scale: float = 1.0
    offset: float = 0.0

    @classmethod
    def fit(cls, summed: Sequence[float], full: Sequence[float]) -> LinearCorrection:
        if len(summed) < 2:
            return cls()
        scale, offset = statistics.linear_regression(summed, full)
        return cls(scale, offset)

    def __call__(self, summed: float) -> float:
        return self.scale * summed + self.offset


@dataclass(frozen=True)
class Predictor:
    """Predicted total and NPU cycles of an architecture on the table's target."""

    table: CostTable
    total: LinearCorrection = LinearCorrection()
    npu: LinearCorrection = LinearCorrection()

    def predict(self, arch: Arch) -> tuple[float, float]:
        """(total cycles, NPU cycles)."""
        summed = summed_cost(self.table, arch)
        return self.total(summed.total_cycles), self.npu(summed.npu_cycles)


def abs_pct_errors(predicted: Sequence[float], actual: Sequence[float]) -> list[float]:
    return [abs(p - a) / a * 100 for p, a in zip(predicted, actual, strict=True)]
