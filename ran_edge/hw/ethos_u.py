"""Ethos-U profile: Vela's figures turned into what a user decides by.

Adds what Vela does not print directly: MAC utilisation (MACs / (NPU cycles x MACs per
cycle)), every CPU-fallback op with Vela's reason, and cycles per PyTorch module.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ran_edge.hw.attribution import ModuleIndex, ancestors, attribute_layers
from ran_edge.hw.targets import Target
from ran_edge.hw.vela import CpuFallback, VelaLayer, VelaResult, run_vela


@dataclass(frozen=True)
class LayerCost:
    """One Vela operator with the PyTorch module it came from."""

    index: int
    layer: VelaLayer
    module: str


@dataclass(frozen=True)
class ModuleCost:
    """Cycles and MACs summed over every op a module (and its children) produced."""

    path: str
    depth: int
    ops: int
    cycles: int
    macs: int
    mac_utilisation_pct: float
    cycle_share_pct: float


@dataclass(frozen=True)
class EthosUProfile:
    target: Target
    vela: VelaResult
    layers: tuple[LayerCost, ...]
    modules: tuple[ModuleCost, ...]

    @property
    def mac_utilisation_pct(self) -> float:
        s = self.vela.summary
        if s.cycles_npu == 0:
            return 0.0
        return 100.0 * s.nn_macs / (s.cycles_npu * self.target.npu.macs_per_cycle)

    @property
    def cpu_fallbacks(self) -> tuple[CpuFallback, ...]:
        return self.vela.cpu_fallbacks


def aggregate_modules(
    layers: list[LayerCost], macs_per_cycle: int, total_cycles: int
) -> list[ModuleCost]:
    """Roll op costs up every ancestor of each op's module path."""
    ops: dict[str, int] = defaultdict(int)
    cycles: dict[str, int] = defaultdict(int)
    macs: dict[str, int] = defaultdict(int)
    for cost in layers:
        if cost.layer.op_cycles == 0 and cost.layer.macs == 0:
            continue  # fused activations report zero; they are part of their conv
        for path in ancestors(cost.module):
            ops[path] += 1
            cycles[path] += cost.layer.op_cycles
            macs[path] += cost.layer.macs
    result = []
    for path in sorted(cycles):
        util = 100.0 * macs[path] / (cycles[path] * macs_per_cycle) if cycles[path] else 0.0
        share = 100.0 * cycles[path] / total_cycles if total_cycles else 0.0
        depth = 1 if path.startswith("(") else path.count(".") + 1
        result.append(ModuleCost(path, depth, ops[path], cycles[path], macs[path], util, share))
    return result


def profile_ethos_u(
    model: Path, target: Target, output_dir: Path, modules: ModuleIndex | None = None
) -> EthosUProfile:
    """Compile `model` (int8 .tflite) with Vela for `target` and attribute its cost."""
    vela = run_vela(model, target, output_dir)
    paths = attribute_layers([(layer.name, layer.macs) for layer in vela.layers], modules)
    layers = [
        LayerCost(i, layer, path)
        for i, (layer, path) in enumerate(zip(vela.layers, paths, strict=True))
    ]
    total = sum(cost.layer.op_cycles for cost in layers)
    modules = aggregate_modules(layers, target.npu.macs_per_cycle, total)
    return EthosUProfile(target, vela, tuple(layers), tuple(modules))
