"""`ran-edge firmware`: a build folder in, `firmware/` out, only when something changed.

The firmware folder is written atomically and carries a manifest whose `fingerprint` hashes
every input (compiled model bytes, options, templates, ran-edge version): a second run with
the same inputs does nothing, a changed model regenerates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import ran_edge
from ran_edge.atomic import staging_dir, write_atomic
from ran_edge.errors import StageError, UsageError
from ran_edge.firmware.c_sources import (
    IoTensor,
    c_identifier,
    render_model_data,
    render_model_io,
)
from ran_edge.firmware.compile_check import CompileCheck, compile_model_data, toolchain_available
from ran_edge.firmware.compiled_model import read_compiled_model
from ran_edge.firmware.memory_map import MemoryPlan, plan_memory, render_memory_map
from ran_edge.firmware.tflm_check import tflm_reference_check
from ran_edge.report.model import REPORT_FILE, Report, load_report
from ran_edge.targets.loading import MemoryBudget, target_from_report

FIRMWARE_DIR = "firmware"
MANIFEST = "manifest.json"
DEFAULT_SECTION = ".nn_model"
_TEMPLATE_DIR = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class FirmwareOptions:
    section: str = DEFAULT_SECTION
    symbol: str | None = None  # default: derived from the model name
    labels: tuple[str, ...] = ()
    budget: MemoryBudget = MemoryBudget()
    compile_check: bool | None = None  # None: when the Arm toolchain is installed


@dataclass(frozen=True)
class FirmwareResult:
    folder: Path
    up_to_date: bool
    manifest: dict


def _read_report(target_dir: Path) -> Report:
    path = target_dir / REPORT_FILE
    if not path.is_file():
        raise UsageError(
            f"{target_dir} is not a ran-edge build folder (no {REPORT_FILE}); "
            "give build/<model>/<target> as written by `ran-edge build`."
        )
    report = load_report(path)
    missing = [a for a in ("vela_tflite", "int8_tflite") if a not in report.artifacts]
    if missing:
        raise UsageError(
            f"{path} lists no {' or '.join(missing)} ({report.target.name} is a "
            f"{report.target.kind} target); firmware is written for Ethos-U builds: give the "
            "folder of an Ethos-U target."
        )
    return report


def _fingerprint(vela_bytes: bytes, options: FirmwareOptions, compile_check: bool) -> str:
    h = hashlib.sha256()
    h.update(vela_bytes)
    h.update(ran_edge.__version__.encode())
    h.update(
        repr(
            (options.section, options.symbol, options.labels, asdict(options.budget), compile_check)
        ).encode()
    )
    for template in sorted(_TEMPLATE_DIR.iterdir()):
        h.update(template.read_bytes())
    return h.hexdigest()


def _persistent_tflm_bytes(report: Report, int8_path: Path) -> int:
    """TFLM's measured persistent overhead: from the build's check, or measured now."""
    if report.tflm is not None and report.tflm.arena_persistent_bytes:
        return int(report.tflm.arena_persistent_bytes)
    shape = report.conversion.inputs[0].shape
    zeros = np.zeros((1, *shape[1:]), np.float32)
    return tflm_reference_check(int8_path.read_bytes(), zeros).arena_persistent_bytes


def _io_tensors(report: Report, prefix: str) -> list[IoTensor]:
    tensors = []
    conversion = report.conversion
    for role, group in (("input", conversion.inputs), ("output", conversion.outputs)):
        for i, t in enumerate(group):
            tensors.append(
                IoTensor(
                    role=role,
                    index=i,
                    name=t.name,
                    shape=t.shape,
                    dtype=t.dtype,
                    scale=t.scale,
                    zero_point=t.zero_point,
                    macro=f"{prefix}_{role.upper()}{i}",
                )
            )
    return tensors


def _merge_budget(profile: MemoryBudget, override: MemoryBudget) -> MemoryBudget:
    return MemoryBudget(
        sram_bytes=override.sram_bytes or profile.sram_bytes,
        flash_bytes=override.flash_bytes or profile.flash_bytes,
        dram_bytes=override.dram_bytes or profile.dram_bytes,
        source=override.source or profile.source,
    )


def firmware_for_build(build_dir: Path, options: FirmwareOptions) -> FirmwareResult:
    """`ran-edge firmware`: the build folder's own target (the profile file its report names,
    a custom `--target my-board.toml` too) supplies the memory budget."""
    if not (build_dir / REPORT_FILE).is_file():
        raise UsageError(
            f"{build_dir} is not a ran-edge build folder (no report.json); "
            "give build/<model>/<target> as written by `ran-edge build`."
        )
    facts = load_report(build_dir / REPORT_FILE).target
    target = target_from_report(facts.name, facts.profile_path, facts.profile_sha256)
    if not target.is_npu:
        raise UsageError(
            f"{build_dir} is a build for {target.name}, a CPU target: firmware sources are "
            "for Ethos-U builds (give build/<model>/<ethos-u target>)."
        )
    return generate_firmware(build_dir, options, target.memory)


def generate_firmware(
    target_dir: Path, options: FirmwareOptions, profile_budget: MemoryBudget
) -> FirmwareResult:
    """Write `<target_dir>/firmware/` (or do nothing when its inputs are unchanged)."""
    report = _read_report(target_dir)
    vela_path = target_dir / report.artifacts["vela_tflite"]
    int8_path = target_dir / report.artifacts["int8_tflite"]
    vela_bytes = vela_path.read_bytes()
    check = toolchain_available() if options.compile_check is None else options.compile_check
    budget = _merge_budget(profile_budget, options.budget)
    fingerprint = _fingerprint(vela_bytes, options, check)
    folder = target_dir / FIRMWARE_DIR
    existing = folder / MANIFEST
    if existing.is_file():
        manifest = json.loads(existing.read_text())
        if manifest.get("fingerprint") == fingerprint:
            return FirmwareResult(folder, True, manifest)

    model_name = report.model.name
    target = report.target
    compiled = read_compiled_model(vela_path)
    plan = plan_memory(
        memory_mode=target.memory_mode,
        model_bytes=len(vela_bytes),
        scratch_bytes=compiled.scratch_bytes,
        scratch_fast_bytes=compiled.scratch_fast_bytes,
        tflm_persistent_bytes=_persistent_tflm_bytes(report, int8_path),
        sram_budget=budget.sram_bytes,
        flash_budget=budget.flash_bytes,
        dram_budget=budget.dram_bytes,
    )
    _fail_if_overflowing(plan, model_name, target.name)
    symbol = options.symbol or f"{c_identifier(model_name)}_model"
    header, source = render_model_data(
        vela_bytes,
        symbol=symbol,
        section=options.section,
        vela_file=vela_path.name,
        model_name=model_name,
        target_name=target.name,
        accelerator=target.accelerator,
        arena=plan.tensor_arena_bytes,
        fast=plan.fast_memory_bytes,
        scratch=compiled.scratch_bytes,
        margin=plan.margin_bytes,
    )
    io_header = render_model_io(
        _io_tensors(report, symbol.upper()),
        symbol=symbol,
        model_name=model_name,
        labels=list(options.labels),
        cpu_ops=list(compiled.cpu_ops),
    )
    with staging_dir(folder) as tmp:
        write_atomic(tmp / "model_data.h", header.encode())
        write_atomic(tmp / "model_data.cc", source.encode())
        write_atomic(tmp / "model_io.h", io_header.encode())
        memory_map = render_memory_map(
            plan, model_name=model_name, target_name=target.name, budget_source=budget.source
        )
        write_atomic(tmp / "memory_map.md", memory_map.encode())
        compiled_check = compile_model_data(tmp, options.section) if check else None
        if compiled_check is not None:
            _verify_section(compiled_check, len(vela_bytes))
            compiled_check.object_file.unlink()  # proof taken; the firmware build makes its own
        manifest = _manifest(
            report, symbol, options, vela_bytes, compiled, plan, compiled_check, fingerprint
        )
        write_atomic(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return FirmwareResult(folder, False, manifest)


def _fail_if_overflowing(plan: MemoryPlan, model_name: str, target_name: str) -> None:
    if not plan.overflows:
        return
    lines = [
        f"  - {r.memory}: needs {r.needed_bytes:,} B ({r.contents}), budget {r.budget_bytes:,} B"
        for r in plan.overflows
    ]
    raise StageError(
        f"{model_name} does not fit {target_name}:\n" + "\n".join(lines) + "\n"
        "Fix: a smaller model (width multiplier, resolution), a target with more memory, "
        "or a larger budget (--sram-budget / --flash-budget / --dram-budget) if the board has it."
    )


def _verify_section(check: CompileCheck, model_bytes: int) -> None:
    if check.section_bytes != model_bytes or check.section_align < 16:
        raise StageError(
            f"compiled section {check.section} holds {check.section_bytes} B aligned to "
            f"{check.section_align}, expected {model_bytes} B aligned to 16"
        )


def _manifest(
    report: Report, symbol, options, vela_bytes, compiled, plan, check, fingerprint
) -> dict:
    return {
        "schema": "ran-edge/firmware",
        "schema_version": "1.0",
        "model": report.model.name,
        "target": report.target.name,
        "symbol": symbol,
        "section": options.section,
        "model_bytes": len(vela_bytes),
        "model_sha256": hashlib.sha256(vela_bytes).hexdigest(),
        "tensor_arena_bytes": plan.tensor_arena_bytes,
        "fast_memory_bytes": plan.fast_memory_bytes,
        "tflm_margin_bytes": plan.margin_bytes,
        "cpu_ops": list(compiled.cpu_ops),
        "memory": [
            {
                "memory": r.memory,
                "needed_bytes": r.needed_bytes,
                "budget_bytes": r.budget_bytes,
                "fits": r.fits,
                "contents": r.contents,
            }
            for r in plan.regions
        ],
        "compile_check": None
        if check is None
        else {
            "compiler": check.compiler,
            "cpu": "cortex-m55",
            "section_bytes": check.section_bytes,
            "section_align": check.section_align,
        },
        "tflm_reference": report.to_dict()["tflm"],  # the build's check, as it wrote it
        "fingerprint": fingerprint,
    }
