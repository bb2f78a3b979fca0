"""Same inputs, same outputs: the hash a target build is recorded under, and reuse of a build
on disk that was made from exactly those inputs (`--incremental`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import ran_edge
from ran_edge.build.requests import QuantizeOptions
from ran_edge.errors import UsageError
from ran_edge.report.json_report import tool_versions
from ran_edge.targets.loading import Target

if TYPE_CHECKING:
    from ran_edge.report.model import Report

REPORT_FILE = "report.json"


def inputs_fingerprint(
    loaded,
    calib,
    target: Target,
    *,
    allow_cpu_fallback: bool,
    cpu: str = "",
    quantize: QuantizeOptions | None = None,
) -> str:
    """Hash of everything a target build depends on: same hash, same outputs.

    Model structure and weights, input shape, the calibration and held-out arrays, the
    target profile (and every file it pulls in: `target.sha256`), options, tool versions.
    """
    h = hashlib.sha256()
    h.update(repr((ran_edge.__version__, sorted(tool_versions().items()))).encode())
    h.update(repr(loaded.module).encode())
    for key, tensor in sorted(loaded.module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr(tuple(loaded.input_shape)).encode())
    h.update(calib.samples.tobytes())
    h.update(calib.holdout.tobytes())
    h.update(target.sha256.encode())
    h.update(repr(allow_cpu_fallback).encode())
    h.update(cpu.encode())  # how a CPU target was run (measured where, threads, runs)
    h.update((quantize or QuantizeOptions()).fingerprint().encode())
    return h.hexdigest()


def profile_fingerprint(data: bytes, target: Target, reference: bytes = b"", run: str = "") -> str:
    """Hash of a `profile` run: the int8 model, the target profile, the float reference and
    samples when given, and how a CPU target was run."""
    h = hashlib.sha256(data)
    h.update(target.sha256.encode())
    h.update(reference)
    h.update(run.encode())
    return h.hexdigest()


def reused_report(
    out_root: Path, model_name: str, target: Target, fingerprint: str
) -> Report | None:
    """The report on disk when it was made from exactly these inputs by this report schema,
    else None (missing, unreadable, or not valid: the target is built again)."""
    from ran_edge.report.model import SCHEMA_VERSION, load_report

    path = out_root / model_name / target.name / REPORT_FILE
    if not path.is_file():
        return None
    try:
        report = load_report(path)
    except UsageError:
        return None
    if report.inputs_sha256 != fingerprint or report.schema_version != SCHEMA_VERSION:
        return None
    return report
