"""Ethos-U profile: Vela's figures turned into what a user decides by.

Adds what Vela does not print directly: MAC utilisation (MACs / (NPU cycles x MACs per
cycle)), every CPU-fallback op with Vela's reason, and cycles per PyTorch module.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ran_edge.convert.attribution import (
    ModuleCost,
    ModuleIndex,
    attribute_layers,
    roll_up_modules,
)
from ran_edge.targets.ethos_u.vela import CpuFallback, VelaLayer, VelaResult, run_vela
from ran_edge.targets.loading import Target


@dataclass(frozen=True)
class LayerCost:
    """One Vela operator with the PyTorch module it came from."""

    index: int
    layer: VelaLayer
    module: str


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

    def relocated(self, old: Path, new: Path) -> EthosUProfile:
        """This profile with Vela's file paths pointed at the folder they were renamed into."""

        def move(p: Path) -> Path:
            return new / p.relative_to(old)

        vela = replace(
            self.vela,
            optimised_model=move(self.vela.optimised_model),
            summary_csv=move(self.vela.summary_csv),
            per_layer_csv=move(self.vela.per_layer_csv),
            log=move(self.vela.log),
            debug_db=None if self.vela.debug_db is None else move(self.vela.debug_db),
        )
        return replace(self, vela=vela)


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
    rows = [(c.module, c.layer.op_cycles, c.layer.macs) for c in layers]
    modules = roll_up_modules(rows, target.npu.macs_per_cycle)
    return EthosUProfile(target, vela, tuple(layers), tuple(modules))
