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
from ran_edge.convert.tflite_info import TfliteInfo, npu_gate_problems
from ran_edge.firmware.tflm_check import TflmCheck
from ran_edge.hw.ethos_u import EthosUProfile
from ran_edge.report.metrics import Metric, unavailable

SCHEMA_ID = "ran-edge/report"
SCHEMA_VERSION = "1.1"
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


def ethos_u_metrics(profile: EthosUProfile) -> list[Metric]:
    s = profile.vela.summary
    cpu_reason = (
        "no CPU-fallback ops: the whole network runs on the NPU"
        if profile.vela.cpu_ops == 0
        else "Vela does not estimate CPU-fallback ops; their Cortex-M time is not modelled yet, "
        "so latency and FPS cover the NPU part only"
    )
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
        unavailable("cpu_fallback_time", "ms", cpu_reason)
        if profile.vela.cpu_ops
        else Metric("cpu_fallback_time", "ms", 0.0, source="ran-edge"),
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
) -> dict:
    """Assemble the report dict for one target (pure: no I/O, deterministic key order)."""
    target = profile.target
    problems = npu_gate_problems(info)
    if profile.vela.cpu_ops:
        problems.append(f"Vela placed {profile.vela.cpu_ops} op(s) on the CPU")
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
        },
        "fidelity": fidelity_json(fidelity, fidelity_reason),
        "tflm": None if tflm is None else asdict(tflm),
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
        },
        "metrics": [m.to_json() for m in ethos_u_metrics(profile)],
        "cpu_fallbacks": [
            {"op_type": f.op_type, "name": f.name, "reason": f.reason}
            for f in profile.cpu_fallbacks
        ],
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
        "modules": {
            "depth": module_depth,
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
                for m in profile.modules
            ],
        },
        "vela_command": portable_command(profile.vela.command),
        "artifacts": artifacts,
        "inputs_sha256": inputs_sha256,
    }


def portable_command(command: tuple[str, ...]) -> list[str]:
    """The Vela call as a user would type it in the target folder."""
    return ["vela", *command[3:]]  # drop `python -m ethosu.vela`


def dumps(report: dict) -> str:
    """Stable text: same report, same bytes."""
    return json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"
