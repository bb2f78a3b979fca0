"""`report.json`: the versioned, documented record of one model on one target.

The schema is `ran_edge/report/report.schema.json` (JSON Schema), described for people in
docs/report-schema.md; its version, SCHEMA_VERSION, lives with the reader in
`ran_edge.report.model`. Bump its minor part for a new field, its major part on any breaking
change. This module writes reports; `ran_edge.report.model` reads them.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING

import ran_edge
from ran_edge.errors import StageError
from ran_edge.report.metrics import Metric, unavailable
from ran_edge.report.model import SCHEMA_FILE, SCHEMA_ID, SCHEMA_VERSION, ModelFacts, schema_error

if TYPE_CHECKING:
    from ran_edge.convert.fidelity import Fidelity
    from ran_edge.firmware.tflm_check import TflmCheck

TOOLS = ("ethos-u-vela", "litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch")


def tool_versions() -> dict[str, str]:
    return {tool: version(tool) for tool in TOOLS}


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


def report_head(
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


def dumps(report: dict) -> str:
    """Stable text: same report, same bytes."""
    return json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"


def assemble(
    head: dict, sections: dict, artifacts: dict[str, str], inputs_sha256: str | None
) -> dict:
    """One report: the target-independent head, the backend's sections, the files, the hash.
    Key order is fixed (head, target sections, artifacts, hash, then any kind extras)."""
    fixed = ("target", "metrics", "cpu_fallbacks", "layers", "modules", "vela_command")
    report = {**head, **{k: sections[k] for k in fixed}}
    report["artifacts"] = artifacts
    report["inputs_sha256"] = inputs_sha256
    report.update({k: v for k, v in sections.items() if k not in fixed})
    return report


def validate(report: dict) -> None:
    """Check a report being written against the published schema; a failure is a ran-edge
    bug, said so. (Reading checks the same schema: `ran_edge.report.model.check_report`.)"""
    problem = schema_error(report)
    if problem is not None:
        where, message = problem
        raise StageError(
            f"internal error: the report does not match {SCHEMA_FILE.name} at {where}: "
            f"{message}. Please report this with the command you ran."
        )


__all__ = [
    "SCHEMA_FILE",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "ModelFacts",
    "QuantizationQuality",
    "assemble",
    "dumps",
    "report_head",
    "tool_versions",
    "validate",
]
