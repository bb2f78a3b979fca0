"""One target's half of a build: its backend profiles the int8 model in a staging folder, the
report is assembled, validated against the schema and written, and the folder is renamed to
`<out>/<model>/<target>/` only once complete, so a failure never leaves half a build and never
destroys the previous good one. `build` and `profile` both come through `profile_on_target`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ran_edge.atomic import staging_dir, write_atomic
from ran_edge.build.fingerprint import REPORT_FILE
from ran_edge.build.requests import DEFAULT_MODULE_DEPTH
from ran_edge.report.json_report import assemble, dumps, validate
from ran_edge.report.model import Report
from ran_edge.targets.backend import ProfileJob
from ran_edge.targets.loading import Target


@dataclass(frozen=True)
class TargetBuild:
    """One target's finished outputs."""

    target: Target
    profile: object | None  # the backend's profile; None: an up-to-date build reused from disk
    report: Report  # `report.to_dict()`: the report.json written
    out_dir: Path


@dataclass(frozen=True)
class ModelOnTarget:
    """What `profile_on_target` needs besides the target: the int8 model, the files to keep
    next to it, and the target-independent report head (model, conversion, checks)."""

    name: str
    int8_tflite: bytes
    int8_file: str  # file name in the target folder
    head: Callable[[list[str]], dict]  # the gate's problems -> the report head
    info: object
    modules: object | None = None
    extra_files: tuple[tuple[str, str, bytes], ...] = ()  # (artifact role, file name, bytes)
    allow_cpu_fallback: bool = True


def profile_on_target(
    model: ModelOnTarget,
    target: Target,
    out_root: Path,
    *,
    fingerprint: str | None,
    cpu=None,
    module_depth: int = DEFAULT_MODULE_DEPTH,
) -> TargetBuild:
    """Profile `model` on `target` through its backend into `<out_root>/<name>/<target>/`.

    The report head is made after the backend ran: it carries the backend's gate verdict, and
    a build's TFLM check may still be running while Vela compiles."""
    final = out_root / model.name / target.name
    with staging_dir(final) as tmp:
        artifacts: dict[str, str] = {}
        for role, file_name, data in model.extra_files:
            write_atomic(tmp / file_name, data)
            artifacts[role] = file_name
        int8_path = tmp / model.int8_file
        write_atomic(int8_path, model.int8_tflite)
        artifacts["int8_tflite"] = model.int8_file
        job = ProfileJob(
            target=target,
            model_name=model.name,
            int8_tflite=model.int8_tflite,
            int8_path=int8_path,
            info=model.info,
            modules=model.modules,
            folder=tmp,
            final=final,
            allow_cpu_fallback=model.allow_cpu_fallback,
            cpu=cpu,
            module_depth=module_depth,
        )
        outcome = target.backend.profile(job)
        head = model.head(outcome.gate_problems)
        report = assemble(head, outcome.sections, artifacts | outcome.artifacts, fingerprint)
        validate(report)
        write_atomic(tmp / REPORT_FILE, dumps(report).encode())
    typed = Report.from_dict(report, validate=False)  # just validated
    return TargetBuild(target, outcome.relocated(tmp, final).profile, typed, final)
