"""The Ethos-U sections of report.json: the target's facts, Vela's figures as metrics, every
CPU-fallback op with its cost on the host core, per-layer and per-module rows, and the memory
traffic per area (1.6)."""

from __future__ import annotations

from pathlib import Path

from ran_edge.convert.attribution import modules_json
from ran_edge.report.metrics import Metric, unavailable
from ran_edge.targets.ethos_u.npu_gate import CpuOp, NpuVerdict
from ran_edge.targets.ethos_u.profile import EthosUProfile
from ran_edge.targets.ethos_u.system_cost import SystemCost
from ran_edge.targets.loading import target_identity


def sram_total_kib(profile: EthosUProfile) -> float:
    """All SRAM the model occupies. In Sram_Only, Vela files the weights under on-chip flash
    ("Changing const_mem_area from Sram to OnChipFlash"), though they sit in the same SRAM."""
    s = profile.vela.summary
    if s.memory_mode == "Sram_Only":
        return s.sram_used_kib + s.on_chip_flash_used_kib
    return s.sram_used_kib


def _system_metrics(profile: EthosUProfile, system: SystemCost | None) -> list[Metric]:
    """CPU-fallback time on the host core, and NPU + CPU latency and throughput (1.2)."""
    s = profile.vela.summary
    npu_ms = s.inference_time_s * 1e3
    if profile.vela.cpu_ops == 0:
        return [
            Metric("cpu_fallback_time", "ms", 0.0, source="ran-edge"),
            Metric("system_latency", "ms", npu_ms),
            Metric("system_inferences_per_second", "1/s", s.inferences_per_second),
        ]
    if system is None:
        reason = "the host CPU of this target was not costed"
        return [
            unavailable("cpu_fallback_time", "ms", reason),
            unavailable("system_latency", "ms", reason),
            unavailable("system_inferences_per_second", "1/s", reason),
        ]
    return [
        Metric("cpu_fallback_time", "ms", system.cpu_ms, source="estimated"),
        Metric("cpu_fallback_cycles", "cycles", round(system.cpu_cycles), source="estimated"),
        Metric("system_latency", "ms", system.system_ms, source="estimated"),
        Metric("system_inferences_per_second", "1/s", 1e3 / system.system_ms, source="estimated"),
    ]


def ethos_u_metrics(profile: EthosUProfile, system: SystemCost | None = None) -> list[Metric]:
    s = profile.vela.summary
    return [
        Metric("inferences_per_second", "1/s", s.inferences_per_second),
        Metric("latency", "ms", s.inference_time_s * 1e3),
        Metric("cycles_npu", "cycles", s.cycles_npu),
        Metric("cycles_total", "cycles", s.cycles_total),
        Metric("macs", "MAC", s.nn_macs),
        Metric("mac_utilisation", "%", profile.mac_utilisation_pct, source="ran-edge"),
        Metric("sram_used", "KiB", s.sram_used_kib),
        Metric("sram_total", "KiB", sram_total_kib(profile), source="ran-edge"),
        Metric("off_chip_flash_used", "KiB", s.off_chip_flash_used_kib),
        Metric("dram_used", "KiB", s.dram_used_kib),
        Metric("on_chip_flash_used", "KiB", s.on_chip_flash_used_kib),
        Metric("original_weights", "B", s.original_weights_bytes),
        Metric("encoded_weights", "B", s.encoded_weights_bytes),
        Metric("npu_ops", "ops", profile.vela.npu_ops),
        Metric("cpu_ops", "ops", profile.vela.cpu_ops),
        Metric(
            "npu_op_share",
            "%",
            100.0 * profile.vela.npu_ops / max(1, profile.vela.npu_ops + profile.vela.cpu_ops),
            source="ran-edge",
        ),
        *_system_metrics(profile, system),
    ]


def target_json(profile: EthosUProfile) -> dict:
    """The target's facts as Vela used them (clock and arena cache read back from Vela)."""
    target = profile.target
    return {
        **target_identity(target),
        "accelerator": target.npu.accelerator,
        "macs_per_cycle": target.npu.macs_per_cycle,
        "clock_hz": profile.vela.summary.core_clock_hz,
        "system_config": target.vela.system_config,
        "memory_mode": target.vela.memory_mode,
        "optimise": target.vela.optimise,
        "arena_cache_size": profile.vela.summary.arena_cache_size_bytes,
        "host_cpu": _host_cpu_json(target.host_cpu),
    }


def layer_json(c) -> dict:
    row = {
        "index": c.index,
        "op": c.layer.original_op,
        "npu_op": c.layer.nng_op,
        "placement": c.layer.placement,
        "cycles": c.layer.op_cycles,
        "npu_cycles": c.layer.npu_cycles,
        "macs": c.layer.macs,
        "mac_utilisation_pct": c.layer.mac_utilisation_pct,
        "memory_bound": c.layer.memory_bound,
        "sram_bytes": c.layer.staging_usage_bytes,
        "module": c.module,
        "name": c.layer.name,
        "bound_by": c.layer.bound_by,
    }
    if c.layer.traffic is not None:  # only the areas the op touches
        row["memory"] = {a.area: a.to_json() for a in c.layer.traffic if not a.idle}
    return row


def memory_traffic_json(profile: EthosUProfile) -> dict:
    """Vela's network totals per memory area, and how much of the time the NPU computes."""
    s = profile.vela.summary
    return {
        "cycles_total": s.cycles_total,
        "cycles_npu": s.cycles_npu,
        "npu_busy_pct": 100.0 * s.cycles_npu / s.cycles_total if s.cycles_total else None,
        "weights_area": s.traffic.weights_area,
        "activations_area": s.traffic.activations_area,
        "areas": {a.area: a.to_json() for a in s.traffic.areas},
        "per_layer": all(layer.traffic is not None for layer in profile.vela.layers),
    }


def ethos_u_sections(
    profile: EthosUProfile, verdict: NpuVerdict, system: SystemCost | None, module_depth: int
) -> dict:
    """Everything in an Ethos-U report that the target decides (pure: no I/O)."""
    return {
        "target": target_json(profile),
        "metrics": [m.to_json() for m in ethos_u_metrics(profile, system)],
        "cpu_fallbacks": [_fallback_json(op, system) for op in verdict.cpu_ops],
        "layers": [layer_json(c) for c in profile.layers],
        "modules": modules_json(profile.modules, module_depth),
        "vela_command": portable_command(profile.vela.command),
        "memory_traffic": memory_traffic_json(profile),
    }


def _host_cpu_json(host) -> dict | None:
    if host is None:
        return None
    return {
        "core": host.core,
        "clock_hz": host.clock_hz,
        "clock_assumed": host.clock_assumed,
        "cycle_costs": Path(host.source).name,
    }


def _fallback_json(fallback: CpuOp, system: SystemCost | None) -> dict:
    row = fallback.as_dict()
    cost = None if system is None else system.fallback_for(fallback.name)
    if cost is not None:
        row["host_cycles"] = round(cost.cycles)
        row["host_time_ms"] = cost.time_ms(system.host.clock_hz)
    return row


def portable_command(command: tuple[str, ...]) -> list[str]:
    """The Vela call as a user would type it in the target folder."""
    return ["vela", *command[3:]]  # drop `python -m ethosu.vela`
