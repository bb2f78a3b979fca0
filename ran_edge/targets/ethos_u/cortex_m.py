"""Cortex-M time of the ops Vela leaves on the CPU, so an Ethos-U system's latency is whole.

Vela costs only the NPU. Every CPU-fallback op runs on the system's Cortex-M under TFLM
(CMSIS-NN kernels where they exist, reference kernels otherwise), one after the other with
the NPU's work, so system latency = NPU time + this CPU time. The per-op cycle costs of each
core live in `targets/cores/<core>.toml` with their sources and assumptions; an Ethos-U
profile names its core and clock in [host_cpu] and may override any cost there.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from ran_edge.convert.tflite_ops import TRANSCENDENTAL, OpCost, op_class
from ran_edge.errors import UsageError
from ran_edge.resources import shipped_dir
from ran_edge.targets.profile_fields import positive, require

CORES_DIR = "cores"
DEFAULT_CORE = "cortex-m55"


@dataclass(frozen=True)
class CortexMCycles:
    """Cycles per unit of work on one Cortex-M core running TFLM (see targets/cores/*.toml)."""

    op_overhead: float  # per op: TFLM dispatch, kernel set-up
    conv_per_mac: float
    depthwise_per_mac: float
    fc_per_mac: float
    elementwise_per_element: float  # int8 add/mul/activation with requantisation
    transcendental_per_element: float  # sqrt, exp, log, tanh, logistic, softmax...
    pool_per_element: float  # per input element
    copy_per_byte: float  # pad, concat, slice, transpose, resize
    quantize_per_element: float
    other_per_element: float  # any op not classed above

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True)
class HostCpu:
    """The Cortex-M of an Ethos-U system: which core, its clock, its cycle costs."""

    core: str
    clock_hz: float
    cycles: CortexMCycles
    description: str
    source: str  # the core file the costs came from
    clock_assumed: bool  # True when the profile gave no clock and the NPU's was used

    def op_cycles(self, cost: OpCost) -> float:
        """Cycles one op takes on this core: dispatch plus work by op class."""
        c = self.cycles
        kind = op_class(cost.op)
        if kind == "conv":
            work = cost.macs * c.conv_per_mac
        elif kind == "depthwise":
            work = cost.macs * c.depthwise_per_mac
        elif kind == "fc":
            work = cost.macs * c.fc_per_mac
        elif cost.op in TRANSCENDENTAL:
            work = cost.out_elements * c.transcendental_per_element
        elif kind == "elementwise":
            work = cost.out_elements * c.elementwise_per_element
        elif kind in ("pool", "reduce"):
            work = cost.in_elements * c.pool_per_element
        elif kind == "copy":
            work = cost.activation_bytes * c.copy_per_byte
        elif kind == "quantize":
            work = cost.out_elements * c.quantize_per_element
        elif kind == "free":
            work = 0.0
        else:
            work = cost.out_elements * c.other_per_element
        return c.op_overhead + work


def _core_dirs(profile_dir: Path) -> list[Path]:
    """The profile's own folder first, then $RAN_EDGE_TARGET_PATH folders, then the shipped one."""
    user = os.environ.get("RAN_EDGE_TARGET_PATH", "").split(os.pathsep)
    folders = [Path(p) / CORES_DIR for p in user if p]
    return [profile_dir / CORES_DIR, *folders, shipped_dir("targets") / CORES_DIR]


def _read_cycles(table: dict, where: str, base: CortexMCycles | None) -> CortexMCycles:
    unknown = sorted(set(table) - set(CortexMCycles.names()))
    if unknown:
        raise UsageError(
            f"{where}: unknown cycle cost(s) {unknown}; known: {', '.join(CortexMCycles.names())}."
        )
    values = {}
    for name in CortexMCycles.names():
        value = positive(table, name, where)
        if value is None and base is None:
            raise UsageError(f"{where}: [cycles] lacks `{name}` (see targets/README.md).")
        if value is not None:
            values[name] = value
    return replace(base, **values) if base is not None else CortexMCycles(**values)


def load_core(core: str, profile_dir: Path) -> tuple[CortexMCycles, str, Path]:
    """A core's cycle costs from `<dir>/cores/<core>.toml`: (costs, description, file)."""
    for folder in _core_dirs(profile_dir):
        path = folder / f"{core}.toml"
        if path.is_file():
            break
    else:
        shipped = sorted(p.stem for p in (shipped_dir("targets") / CORES_DIR).glob("*.toml"))
        raise UsageError(
            f"no cycle model for host core {core!r}; shipped: {', '.join(shipped)}. Add "
            f"targets/cores/{core}.toml (see targets/README.md) or pick a shipped core."
        )
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read core file {path}: {exc}") from None
    where = str(path)
    cycles = _read_cycles(require(data, "cycles", where, dict), where, None)
    return cycles, str(data.get("description", core)), path


def parse_host_cpu(data: dict, where: str, profile: Path, npu_clock_hz: float) -> HostCpu:
    """The [host_cpu] table of an Ethos-U profile (absent: a Cortex-M55 at the NPU clock)."""
    host = data.get("host_cpu", {})
    if not isinstance(host, dict):
        raise UsageError(f"target profile {where}: [host_cpu] must be a table.")
    core = host.get("core", DEFAULT_CORE)
    if not isinstance(core, str):
        raise UsageError(f"target profile {where}: `host_cpu.core` must be a string.")
    cycles, description, path = load_core(core, profile.parent)
    overrides = host.get("cycles", {})
    if not isinstance(overrides, dict):
        raise UsageError(f"target profile {where}: [host_cpu.cycles] must be a table.")
    if overrides:
        cycles = _read_cycles(overrides, f"target profile {where} [host_cpu.cycles]", cycles)
    clock = positive(host, "cpu_clock_hz", where)
    return HostCpu(
        core=core,
        clock_hz=clock or npu_clock_hz,
        cycles=cycles,
        description=description,
        source=str(path),
        clock_assumed=clock is None,
    )
