"""The Cortex-A sections of report.json: the CPU's facts, latency measured or estimated (never
mixed up), and the estimator's per-op rows attributed to PyTorch modules."""

from __future__ import annotations

from dataclasses import asdict, replace

from ran_edge.convert.attribution import modules_json
from ran_edge.convert.tflite_info import TfliteInfo
from ran_edge.report.metrics import Metric, unavailable
from ran_edge.targets.cortex_a.profile import ESTIMATED, CpuProfile
from ran_edge.targets.cortex_a.spec import UncertaintyBand
from ran_edge.targets.loading import target_identity


def cpu_gate_problems(info: TfliteInfo) -> list[str]:
    """Why this model is not the fully int8 model the CPU figures are for (empty: it is)."""
    problems = [
        f"I/O tensor {t.name!r} is {t.dtype}, not int8"
        for t in (*info.inputs, *info.outputs)
        if t.dtype != "int8"
    ]
    if info.float_op_types:
        problems.append(f"float32 ops remain: {', '.join(sorted(set(info.float_op_types)))}")
    return problems


def cpu_metrics(profile: CpuProfile) -> list[Metric]:
    """Latency, throughput and memory of a CPU target: measured or estimated, never mixed up."""
    mode = profile.mode
    m = profile.measurement
    estimate = profile.estimate
    latency = profile.latency_ms
    spread = (
        Metric("latency_p90", "ms", m.p90_ms, source="measured")
        if m is not None
        else unavailable("latency_p90", "ms", "an estimate has no run-to-run spread; --measure")
    )
    clock = profile.target.cpu.clock_hz
    if m is None:
        cycles = Metric("cycles_total", "cycles", round(estimate.cycles), source="estimated")
    elif clock:
        cycles = Metric("cycles_total", "cycles", round(latency * 1e-3 * clock), source="ran-edge")
    else:
        cycles = unavailable("cycles_total", "cycles", "this CPU has no fixed clock (host)")
    memory = (
        Metric("peak_memory", "KiB", float(m.peak_rss_delta_kib), source="measured")
        if m is not None
        else unavailable(
            "peak_memory",
            "KiB",
            "resident memory is only known from a run (--measure); model_memory estimates "
            "the model's own share",
        )
    )
    model_kib = (profile.model_bytes + profile.activation_peak_bytes) / 1024
    metrics = [
        Metric("inferences_per_second", "1/s", 1e3 / latency, source=mode),
        Metric("latency", "ms", latency, source=mode),
        spread,
        Metric("system_latency", "ms", latency, source=mode),
        Metric("system_inferences_per_second", "1/s", 1e3 / latency, source=mode),
        Metric("latency_estimated", "ms", estimate.latency_ms, source="estimated"),
        cycles,
        Metric("macs", "MAC", profile.macs, source="ran-edge"),
        memory,
        Metric("model_memory", "KiB", model_kib, source="estimated"),
        Metric("model_size", "B", profile.model_bytes, source="ran-edge"),
        Metric("npu_ops", "ops", 0, source="ran-edge"),
        Metric("cpu_ops", "ops", len(profile.layers), source="ran-edge"),
    ]
    band = profile.target.cpu_model.band
    if band is None:
        return metrics
    banded = {"latency_estimated"}
    if mode == ESTIMATED:
        banded |= {"latency", "system_latency", "cycles_total"}
        banded |= {"inferences_per_second", "system_inferences_per_second"}
    return [_with_band(m, band) if m.name in banded else m for m in metrics]


def _with_band(metric: Metric, band: UncertaintyBand) -> Metric:
    """An estimated figure with the profile's band around it: a latency (or cycles) scales by
    the band's ratios; a rate derived from it takes the reciprocal edges."""
    if metric.value is None:
        return metric
    if metric.unit == "1/s":
        interval = band.rate_interval(metric.value)
    else:
        interval = band.interval(metric.value)
        if metric.unit == "cycles":
            interval = (round(interval[0]), round(interval[1]))
    return replace(metric, interval=interval, coverage=band.coverage)


def _band_json(band: UncertaintyBand | None, scale: float = 1.0) -> dict | None:
    """A band as report.json writes it; `scale` turns the ratios into ms around an estimate."""
    if band is None:
        return None
    return {
        "low": band.low * scale,
        "high": band.high * scale,
        "coverage": band.coverage,
        "samples": band.samples,
        "source": band.source,
    }


def _cpu_target_json(profile: CpuProfile) -> dict:
    target, cpu = profile.target, profile.target.cpu
    return {
        **target_identity(target),
        "core": cpu.core,
        "cores": cpu.cores,
        "clock_hz": cpu.clock_hz,
        "simd": list(cpu.simd),
        "threads": profile.threads,
        "l1d_bytes": cpu.l1d_bytes,
        "l2_bytes": cpu.l2_bytes,
        "l3_bytes": cpu.l3_bytes,
        "memory": cpu.memory,
        "memory_bandwidth_bytes_per_s": cpu.memory_bandwidth_bytes_per_s,
        # Ethos-U fields, null here, so a reader that indexes them does not break
        "accelerator": None,
        "macs_per_cycle": None,
        "system_config": None,
        "memory_mode": None,
        "optimise": None,
        "arena_cache_size": None,
    }


def _cpu_section(profile: CpuProfile) -> dict:
    m = profile.measurement
    model = profile.target.cpu_model
    return {
        "mode": profile.mode,
        "threads": profile.threads,
        "where": profile.where,
        "measurement": None
        if m is None
        else {
            "runs": m.runs,
            "warmup": m.warmup,
            "median_ms": m.median_ms,
            "p90_ms": m.p90_ms,
            "mean_ms": m.mean_ms,
            "min_ms": m.min_ms,
            "max_ms": m.max_ms,
            "peak_rss_delta_kib": m.peak_rss_delta_kib,
            "init_ms": m.init_ms,
            "runtime": m.runtime,
            "runtime_version": m.runtime_version,
            "xnnpack_partitions": m.xnnpack_partitions,
            "machine": m.machine,
        },
        "estimate": {
            "latency_ms": profile.estimate.latency_ms,
            "cycles": profile.estimate.cycles,
            "clock_hz": profile.estimate.clock_hz,
            "threads": profile.estimate.threads,
            "interval_ms": _band_json(model.band, profile.estimate.latency_ms),
        },
        "cpu_model": {
            "source": model.source,
            "fitted": model.fitted,
            "params": asdict(model.params),
            "band": _band_json(model.band),
        },
        "layers_source": "estimated",
    }


def _cpu_layer_json(layer) -> dict:
    return {
        "index": layer.index,
        "op": layer.cost.op,
        "npu_op": "",
        "placement": "CPU",
        "cycles": layer.cycles,
        "npu_cycles": 0,
        "macs": layer.cost.macs,
        "mac_utilisation_pct": layer.utilisation_pct,
        "memory_bound": layer.memory_bound,
        "sram_bytes": 0,
        "module": layer.module,
        "name": layer.cost.name,
        "time_us": layer.time_us,
        "op_class": layer.op_class,
        "kernel": "xnnpack" if layer.xnnpack else "reference",
        "bytes": layer.cost.bytes,
    }


def cortex_a_sections(profile: CpuProfile, module_depth: int) -> dict:
    """Everything in a CPU report that the target decides. `layers` and `modules` hold the
    estimator's per-op rows (XNNPACK fuses the graph, so a run times only the whole);
    `cpu_fallbacks` and `vela_command` are empty."""
    return {
        "target": _cpu_target_json(profile),
        "metrics": [m.to_json() for m in cpu_metrics(profile)],
        "cpu_fallbacks": [],
        "layers": [_cpu_layer_json(layer) for layer in profile.layers],
        "modules": modules_json(profile.modules, module_depth),
        "vela_command": [],
        "cpu": _cpu_section(profile),
    }
