"""BlockCost: what a target's cost model (Vela, or the CPU estimator) says one graph or
block costs, and how costs combine."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ran_edge.targets.cortex_a.estimate import CpuEstimate
from ran_edge.targets.ethos_u.vela import VelaResult


@dataclass(frozen=True)
class BlockCost:
    """The figures for one block (or graph). Cycles, bytes and MACs add up along a
    network; `sram_bytes` is a peak, so it combines by max, not sum. On a CPU target,
    cycles are the estimator's at the profile's clock and threads, `npu_cycles` is 0 and
    `sram_bytes` is the peak of live activations."""

    npu_cycles: int
    total_cycles: int
    sram_bytes: int
    weight_bytes: int
    macs: int

    @classmethod
    def from_vela(cls, result: VelaResult) -> BlockCost:
        s = result.summary
        return cls(
            npu_cycles=s.cycles_npu,
            total_cycles=s.cycles_total,
            sram_bytes=round(s.sram_used_kib * 1024),
            weight_bytes=s.encoded_weights_bytes,
            macs=s.nn_macs,
        )

    @classmethod
    def from_cpu_estimate(cls, estimate: CpuEstimate, activation_peak_bytes: int) -> BlockCost:
        return cls(
            npu_cycles=0,
            total_cycles=round(estimate.cycles),
            sram_bytes=activation_peak_bytes,
            weight_bytes=sum(o.cost.weight_bytes for o in estimate.ops),
            macs=sum(o.cost.macs for o in estimate.ops),
        )

    def minus(self, other: BlockCost) -> BlockCost:
        """Additive fields subtracted; the peak SRAM of `self` (the larger graph) kept."""
        return BlockCost(
            npu_cycles=self.npu_cycles - other.npu_cycles,
            total_cycles=self.total_cycles - other.total_cycles,
            sram_bytes=self.sram_bytes,
            weight_bytes=self.weight_bytes - other.weight_bytes,
            macs=self.macs - other.macs,
        )

    def plus(self, other: BlockCost) -> BlockCost:
        return BlockCost(
            npu_cycles=self.npu_cycles + other.npu_cycles,
            total_cycles=self.total_cycles + other.total_cycles,
            sram_bytes=max(self.sram_bytes, other.sram_bytes),
            weight_bytes=self.weight_bytes + other.weight_bytes,
            macs=self.macs + other.macs,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BlockCost:
        return cls(**json.loads(text))


ZERO = BlockCost(0, 0, 0, 0, 0)
