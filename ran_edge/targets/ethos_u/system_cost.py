"""Whole-system latency of an Ethos-U build: NPU time (Vela) + Cortex-M time of CPU-fallback ops.

TFLM runs the Vela-compiled graph op by op: NPU subgraphs inside the ethos-u custom op, every
op Vela could not map on the Cortex-M, in sequence. So a model that pushes ops off the NPU
pays for them here, and never looks faster than the same network kept on the NPU merely
because Vela stopped counting those ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from ran_edge.convert.tflite_ops import OpCost, read_op_costs
from ran_edge.targets.ethos_u.cortex_m import HostCpu
from ran_edge.targets.ethos_u.profile import EthosUProfile


@dataclass(frozen=True)
class FallbackCost:
    """One op on the Cortex-M: its work and estimated time."""

    op_type: str  # Vela's name for the op, e.g. Sqrt
    name: str  # its output tensor
    cycles: float
    macs: int
    elements: int
    matched: bool  # False: no op of that name in the .tflite; only the dispatch is costed

    def time_ms(self, clock_hz: float) -> float:
        return 1e3 * self.cycles / clock_hz


@dataclass(frozen=True)
class SystemCost:
    host: HostCpu
    npu_ms: float
    fallbacks: tuple[FallbackCost, ...]

    @property
    def cpu_cycles(self) -> float:
        return sum(f.cycles for f in self.fallbacks)

    @property
    def cpu_ms(self) -> float:
        return 1e3 * self.cpu_cycles / self.host.clock_hz

    @property
    def system_ms(self) -> float:
        return self.npu_ms + self.cpu_ms

    def fallback_for(self, name: str) -> FallbackCost | None:
        return next((f for f in self.fallbacks if f.name == name), None)


def _match(name: str, costs: list[OpCost]) -> OpCost | None:
    exact = [c for c in costs if c.name == name]
    if exact:
        return exact[0]
    close = [c for c in costs if name and (c.name.endswith(name) or name.endswith(c.name))]
    return close[0] if len(close) == 1 else None


def _fallback(op_type: str, name: str, costs: list[OpCost], host: HostCpu) -> FallbackCost:
    op = _match(name, costs)
    if op is None:
        return FallbackCost(op_type, name, host.cycles.op_overhead, 0, 0, False)
    return FallbackCost(op_type, name, host.op_cycles(op), op.macs, op.out_elements, True)


def system_cost(profile: EthosUProfile, int8_model: bytes) -> SystemCost:
    """Cost every op Vela placed on the CPU on the profile's host core."""
    host = profile.target.host_cpu
    costs = read_op_costs(int8_model) if profile.vela.cpu_ops else []
    # Vela's per-layer rows placed on the CPU first, then any op its warnings name that the
    # rows lack, then a dispatch-only entry for each op still uncounted, so the CPU time
    # covers every one of Vela's `cpu_ops`.
    listed = [
        (row.layer.original_op, row.layer.name)
        for row in profile.layers
        if row.layer.placement == "CPU"
    ]
    names = {name for _, name in listed}
    listed += [(f.op_type, f.name) for f in profile.cpu_fallbacks if f.name not in names]
    fallbacks = [_fallback(op_type, name, costs, host) for op_type, name in listed]
    for i in range(profile.vela.cpu_ops - len(fallbacks)):
        overhead = host.cycles.op_overhead
        fallbacks.append(FallbackCost("(unlisted)", f"(unlisted {i + 1})", overhead, 0, 0, False))
    npu_ms = profile.vela.summary.inference_time_s * 1e3
    return SystemCost(host, npu_ms, tuple(fallbacks))
