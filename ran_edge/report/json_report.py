"""`report.json`: the versioned, documented record of one model on one target.

The schema is `ran_edge/report/report.schema.json` (JSON Schema), described for people in
docs/report-schema.md. Bump SCHEMA_VERSION's major part on any breaking change.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import ran_edge
from ran_edge.convert.fidelity import Fidelity
from ran_edge.convert.tflite_info import TfliteInfo
from ran_edge.firmware.tflm_check import TflmCheck
from ran_edge.hw.cpu_profile import CpuProfile
from ran_edge.hw.ethos_u import EthosUProfile
from ran_edge.hw.npu_gate import CpuOp, NpuVerdict, judge
from ran_edge.hw.system_cost import SystemCost
from ran_edge.report.metrics import Metric, unavailable

SCHEMA_ID = "ran-edge/report"
SCHEMA_VERSION = "1.3"
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")
TOOLS = ("ethos-u-vela", "litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch")


@dataclass(frozen=True)
class ModelFacts:
    """What we know of the model before any target: identity, shape, size."""

    name: str
    source: str
    input_shape: tuple[int, ...]
    params: int | None
    macs: int | None
    weights: str  # where the weights came from: figures from random weights differ a little


def tool_versions() -> dict[str, str]:
    return {tool: version(tool) for tool in TOOLS}


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


def fidelity_json(fidelity: Fidelity | None, reason: str) -> dict:
    if fidelity is None:
        return {
            "samples": 0,
            "metrics": [
                unavailable("top1_agreement", "%", reason).to_json(),
                unavailable("sqnr", "dB", reason).to_json(),
            ],
        }
    top1 = (
        Metric("top1_agreement", "%", 100.0 * fidelity.top1_agreement, source="litert")
        if fidelity.top1_agreement is not None
        else unavailable("top1_agreement", "%", "output is not a class-score vector")
    )
    return {
        "samples": fidelity.samples,
        "metrics": [
            top1.to_json(),
            Metric("sqnr", "dB", fidelity.sqnr_db, source="litert").to_json(),
            Metric("max_abs_error", "logit", fidelity.max_abs_error, source="litert").to_json(),
        ],
    }


def _tensor_json(t) -> dict:
    return {
        "name": t.name,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "scale": t.scale,
        "zero_point": t.zero_point,
    }


def _model_sections(
    model, calibration, info, problems, fidelity, fidelity_reason, tflm, quality=None
) -> dict:
    """The target-independent head of every report: versions, model, conversion, checks.

    `quality` (a QuantizationQuality) adds how the model was quantized (range method, int16
    layers, rewrites) and the per-op sensitivity (1.3).
    """
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "ran_edge_version": ran_edge.__version__,
        "tools": tool_versions(),
        "model": {
            "name": model.name,
            "source": model.source,
            "input_shape": list(model.input_shape),
            "params": model.params,
            "macs": model.macs,
            "weights": model.weights,
        },
        "calibration": calibration,
        "conversion": {
            "inputs": [_tensor_json(t) for t in info.inputs],
            "outputs": [_tensor_json(t) for t in info.outputs],
            "int8_io": info.int8_io,
            "op_counts": dict(sorted(Counter(info.op_types).items())),
            "gate": {"passed": not problems, "problems": problems},
            "quantization": None if quality is None else quality.quantization,
        },
        "fidelity": fidelity_json(fidelity, fidelity_reason),
        "tflm": None if tflm is None else tflm_json(tflm),
        "sensitivity": None if quality is None else quality.sensitivity,
    }


@dataclass(frozen=True)
class QuantizationQuality:
    """JSON sections a build adds to every target's report (schema 1.3)."""

    quantization: dict | None  # method, int16 layers, mixed precision, rewrites (None: profile)
    sensitivity: dict | None  # per-op SQNR vs float on the held-out samples


def tflm_json(tflm: TflmCheck) -> dict:
    """The TFLM check, with `passed` (bit-exact, or 1-LSB rounding differences only)."""
    row = asdict(tflm)
    row["passed"] = tflm.passed
    return row


def modules_json(modules, depth: int) -> dict:
    """Cycles per PyTorch module, every module and each of its ancestors."""
    return {
        "depth": depth,
        "rows": [
            {
                "path": m.path,
                "depth": m.depth,
                "ops": m.ops,
                "cycles": m.cycles,
                "macs": m.macs,
                "mac_utilisation_pct": m.mac_utilisation_pct,
                "cycle_share_pct": m.cycle_share_pct,
            }
            for m in modules
        ],
    }


def build_report(
    *,
    model: ModelFacts,
    calibration: dict | None,
    info: TfliteInfo,
    fidelity: Fidelity | None,
    fidelity_reason: str,
    tflm: TflmCheck | None,
    profile: EthosUProfile,
    artifacts: dict[str, str],
    module_depth: int,
    inputs_sha256: str | None = None,
    system: SystemCost | None = None,
    verdict: NpuVerdict | None = None,
    quality: QuantizationQuality | None = None,
) -> dict:
    """Assemble the report dict for one target (pure: no I/O, deterministic key order)."""
    target = profile.target
    if verdict is None:
        verdict = judge(info, profile.vela, None, target.name)
    problems = verdict.problems()
    return {
        **_model_sections(
            model, calibration, info, problems, fidelity, fidelity_reason, tflm, quality
        ),
        "target": {
            "name": target.name,
            "kind": target.kind,
            "description": target.description,
            "accelerator": target.npu.accelerator,
            "macs_per_cycle": target.npu.macs_per_cycle,
            "clock_hz": profile.vela.summary.core_clock_hz,
            "system_config": target.vela.system_config,
            "memory_mode": target.vela.memory_mode,
            "optimise": target.vela.optimise,
            "arena_cache_size": profile.vela.summary.arena_cache_size_bytes,
            "host_cpu": _host_cpu_json(target.host_cpu),
        },
        "metrics": [m.to_json() for m in ethos_u_metrics(profile, system)],
        "cpu_fallbacks": [_fallback_json(op, system) for op in verdict.cpu_ops],
        "layers": [
            {
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
            }
            for c in profile.layers
        ],
        "modules": modules_json(profile.modules, module_depth),
        "vela_command": portable_command(profile.vela.command),
        "artifacts": artifacts,
        "inputs_sha256": inputs_sha256,
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


def dumps(report: dict) -> str:
    """Stable text: same report, same bytes."""
    return json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"


# --- Cortex-A / host targets --------------------------------------------------------------------


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
    return [
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


def _cpu_target_json(profile: CpuProfile) -> dict:
    target, cpu = profile.target, profile.target.cpu
    return {
        "name": target.name,
        "kind": target.kind,
        "description": target.description,
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
        },
        "cpu_model": {
            "source": model.source,
            "fitted": model.fitted,
            "params": asdict(model.params),
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


def build_cpu_report(
    *,
    model: ModelFacts,
    calibration: dict | None,
    info: TfliteInfo,
    fidelity: Fidelity | None,
    fidelity_reason: str,
    tflm: TflmCheck | None,
    profile: CpuProfile,
    artifacts: dict[str, str],
    module_depth: int,
    inputs_sha256: str | None = None,
    quality: QuantizationQuality | None = None,
) -> dict:
    """The report of a model on a CPU target: the same top-level structure as an Ethos-U one.

    `layers` and `modules` hold the estimator's per-op rows (XNNPACK fuses the graph, so a
    run times only the whole); `cpu_fallbacks` and `vela_command` are empty.
    """
    problems = cpu_gate_problems(info)
    return {
        **_model_sections(
            model, calibration, info, problems, fidelity, fidelity_reason, tflm, quality
        ),
        "target": _cpu_target_json(profile),
        "metrics": [m.to_json() for m in cpu_metrics(profile)],
        "cpu_fallbacks": [],
        "layers": [_cpu_layer_json(layer) for layer in profile.layers],
        "modules": modules_json(profile.modules, module_depth),
        "vela_command": [],
        "artifacts": artifacts,
        "inputs_sha256": inputs_sha256,
        "cpu": _cpu_section(profile),
    }
