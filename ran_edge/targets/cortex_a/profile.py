"""A model on a Cortex-A / host target: measured (here or over SSH) or estimated, plus per-op rows.

The per-op rows always come from the estimator (XNNPACK fuses the graph, so a run gives
only the total); whether the headline latency is measured or estimated is `mode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ran_edge.convert.attribution import (
    ModuleCost,
    ModuleIndex,
    attribute_layers,
    roll_up_modules,
)
from ran_edge.convert.tflite_ops import OpCost, activation_peak_bytes, read_op_costs
from ran_edge.errors import UsageError
from ran_edge.targets.cortex_a.estimate import CpuEstimate, estimate_ops
from ran_edge.targets.cortex_a.measure_runner import (
    Measurement,
    Progress,
    measure_local,
    measure_remote,
)
from ran_edge.targets.cortex_a.remote import RemoteHost
from ran_edge.targets.loading import Target

MEASURED = "measured"
ESTIMATED = "estimated"
DEFAULT_RUNS = 50
DEFAULT_WARMUP = 5


@dataclass(frozen=True)
class MeasureOptions:
    """How to time the model: threads (None: the profile's), runs, warm-up, and where."""

    threads: int | None = None
    runs: int = DEFAULT_RUNS
    warmup: int = DEFAULT_WARMUP
    remote: RemoteHost | None = None


@dataclass(frozen=True)
class CpuLayer:
    """One op's estimated cost, with the PyTorch module it came from."""

    index: int
    cost: OpCost
    op_class: str
    cycles: int
    time_us: float
    memory_bound: bool
    module: str
    xnnpack: bool
    utilisation_pct: float  # MACs per cycle as % of the profile's dense-conv rate x threads


@dataclass(frozen=True)
class CpuProfile:
    target: Target
    mode: str  # measured | estimated
    threads: int
    estimate: CpuEstimate
    layers: tuple[CpuLayer, ...]
    modules: tuple[ModuleCost, ...]
    measurement: Measurement | None
    model_bytes: int
    activation_peak_bytes: int

    @property
    def latency_ms(self) -> float:
        if self.measurement is not None:
            return self.measurement.median_ms
        return self.estimate.latency_ms

    @property
    def macs(self) -> int:
        return sum(layer.cost.macs for layer in self.layers)

    @property
    def where(self) -> str | None:
        return None if self.measurement is None else self.measurement.where


def peak_macs_per_cycle(target: Target, threads: int) -> float:
    """The profile's dense-conv rate times threads: what MAC utilisation is measured against."""
    return target.cpu_model.params.conv_macs_per_cycle * threads


def profile_cpu(
    model: Path,
    data: bytes,
    target: Target,
    *,
    measure: bool,
    options: MeasureOptions = MeasureOptions(),
    modules: ModuleIndex | None = None,
    progress: Progress | None = None,
) -> CpuProfile:
    """Estimate `model` on `target`; with `measure`, also time it here or on options.remote."""
    if not target.is_cpu:
        raise UsageError(f"target {target.name} is not a CPU profile (kind {target.kind}).")
    # More threads than the profile has cores only adds contention: capped, as XNNPACK would
    # gain nothing from them.
    threads = min(options.threads or target.cpu.default_threads, target.cpu.cores)
    costs = read_op_costs(data)
    estimate = estimate_ops(costs, target.cpu, target.cpu_model.params, threads)
    paths = attribute_layers([(c.name, c.macs) for c in costs], modules)
    peak = peak_macs_per_cycle(target, estimate.threads)
    layers = [
        CpuLayer(
            index=i,
            cost=row.cost,
            op_class=row.op_class,
            cycles=round(row.cycles),
            time_us=1e6 * row.cycles / estimate.clock_hz,
            memory_bound=row.memory_bound,
            module=path,
            xnnpack=row.op_class != "reference",
            utilisation_pct=100.0 * row.cost.macs / (row.cycles * peak) if row.cycles else 0.0,
        )
        for i, (row, path) in enumerate(zip(estimate.ops, paths, strict=True))
    ]
    measurement = None
    if measure:
        if options.remote is not None:
            measurement = measure_remote(
                model, options.remote, threads, options.runs, options.warmup, progress
            )
        else:
            measurement = measure_local(model, threads, options.runs, options.warmup, progress)
    return CpuProfile(
        target=target,
        mode=MEASURED if measure else ESTIMATED,
        threads=threads,
        estimate=estimate,
        layers=tuple(layers),
        modules=tuple(roll_up_modules([(x.module, x.cycles, x.cost.macs) for x in layers], peak)),
        measurement=measurement,
        model_bytes=len(data),
        activation_peak_bytes=activation_peak_bytes(costs),
    )
