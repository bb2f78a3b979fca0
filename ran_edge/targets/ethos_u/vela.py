"""The one place that knows Vela: how to call it and how to read what it writes.

Vela 5.2 writes cycles only into `<name>_summary_<system>.csv` and, with
`--verbose-performance`, `<name>_per-layer.csv`; per-op bytes per memory area only into its
debug database (`--enable-debug-db`, `<name>_debug.xml`, read by `vela_traffic`); NPU/CPU op
counts (of the TFLite model's operators) and the reason each op fell back to the CPU appear
only on stdout. We run it as a subprocess (its own process, so a crash or `SystemExit` cannot
take ran-edge down, and the output is exactly what a user's direct `vela` run prints), into a
fresh directory.
"""

from __future__ import annotations

import csv
import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

from ran_edge.errors import StageError
from ran_edge.targets.ethos_u import vela_worker
from ran_edge.targets.ethos_u.placement import PlacedOp
from ran_edge.targets.ethos_u.placement import cpu_ops as cpu_placed_ops
from ran_edge.targets.ethos_u.vela_traffic import (
    AREAS,
    AreaTraffic,
    NetworkTraffic,
    layer_traffic,
    traffic_from_summary,
)

if TYPE_CHECKING:
    from ran_edge.targets.loading import Target

VELA_LOG = "vela_stdout.txt"


def vela_version() -> str:
    return version("ethos-u-vela")


@functools.cache
def vela_accelerators() -> tuple[str, ...]:
    """The `--accelerator-config` values this Vela accepts."""
    from ethosu.vela.architecture_features import Accelerator

    return tuple(Accelerator.member_list())


def _failure_reason(text: str) -> str:
    """Vela's own error line out of its output (skipping traceback frames)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line and not line.startswith(("File ", "Traceback")):
            return line
    return lines[-1] if lines else "no output"


@dataclass(frozen=True)
class VelaSummary:
    """The summary CSV row, in units stated by the field names."""

    accelerator: str
    system_config: str
    memory_mode: str
    core_clock_hz: float
    arena_cache_size_bytes: int
    inferences_per_second: float
    inference_time_s: float
    cycles_npu: int
    cycles_total: int
    nn_macs: int
    sram_used_kib: float
    dram_used_kib: float
    on_chip_flash_used_kib: float
    off_chip_flash_used_kib: float
    original_weights_bytes: int
    encoded_weights_bytes: int
    cycles_sram_access: int
    cycles_dram_access: int
    cycles_off_chip_flash_access: int
    traffic: NetworkTraffic  # bytes and access cycles per memory area


@dataclass(frozen=True)
class VelaLayer:
    """One row of the per-layer CSV: an operator as Vela scheduled it."""

    original_op: str
    nng_op: str
    placement: str  # "NPU" or "CPU"
    staging_usage_bytes: int
    op_cycles: int
    npu_cycles: int
    sram_access_cycles: int
    dram_access_cycles: int
    on_chip_flash_access_cycles: int
    off_chip_flash_access_cycles: int
    macs: int
    mac_utilisation_pct: float
    name: str
    # per memory area (AREAS order), from Vela's debug database; None when it wrote none
    traffic: tuple[AreaTraffic, ...] | None = None

    @property
    def access_cycles(self) -> dict[str, int]:
        """Access cycles per memory area (AREAS ids)."""
        return dict(
            zip(
                AREAS,
                (
                    self.sram_access_cycles,
                    self.dram_access_cycles,
                    self.on_chip_flash_access_cycles,
                    self.off_chip_flash_access_cycles,
                ),
                strict=True,
            )
        )

    @property
    def memory_bound(self) -> bool:
        """Vela costs an op at max(compute, memory access); memory won when it exceeds NPU cycles."""
        return max(self.access_cycles.values()) > self.npu_cycles

    @property
    def bound_by(self) -> str | None:
        """The memory area (AREAS id) whose access cycles set a memory-bound op's cycles: the
        one to move weights or activations out of, or to make faster. None: compute-bound."""
        if not self.memory_bound:
            return None
        cycles = self.access_cycles
        return max(cycles, key=cycles.__getitem__)


@dataclass(frozen=True)
class CpuFallback:
    """An operator Vela left on the CPU, with Vela's own reason."""

    op_type: str
    name: str
    reason: str
    input: str = ""  # its first input tensor's name (the producer's module path is in it)


@dataclass(frozen=True)
class VelaResult:
    """Everything one Vela compile produced, parsed, plus where the files are.

    `cpu_fallbacks` are the ops left on the CPU in Vela's compiled model, with Vela's reason;
    `folded_warnings` are warnings Vela printed about ops it then folded away or mapped after
    all (a Keras flatten's SHAPE/STRIDED_SLICE/PACK): not CPU work, kept for the log.
    """

    summary: VelaSummary
    layers: tuple[VelaLayer, ...]
    npu_ops: int
    cpu_ops: int
    cpu_fallbacks: tuple[CpuFallback, ...]
    optimised_model: Path
    summary_csv: Path
    per_layer_csv: Path
    log: Path
    command: tuple[str, ...]
    folded_warnings: tuple[CpuFallback, ...] = ()
    debug_db: Path | None = None  # Vela's debug database: the per-layer bytes


class VelaCrash(StageError):
    """Vela died (a signal, or exit without output): a compiler fault, not the user's."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode

    def __reduce__(self):
        """Rebuilt with both arguments when a job's error crosses a process (pool, Ray)."""
        return (type(self), (str(self), self.returncode))


def vela_command(model: Path, target: Target) -> list[str]:
    """The exact command ran-edge runs in the output folder; paste it there to reproduce."""
    return [
        sys.executable,
        "-m",
        "ethosu.vela",
        str(model),
        "--accelerator-config",
        target.npu.accelerator,
        *target.vela.cli_args(),
        # Not --show-cpu-operations: it switches the op counts to Vela's internal ops.
        "--verbose-performance",
        # Only the debug database has per-op bytes per memory area; it changes nothing else.
        "--enable-debug-db",
        "--output-dir",
        ".",
    ]


def run_vela(
    model: Path, target: Target, output_dir: Path, *, timeout_s: float | None = None
) -> VelaResult:
    """Compile `model` for `target` into `output_dir` (created; should be empty) and parse it.

    Raises VelaCrash when Vela dies, StageError when it refuses the model.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    # Run inside the output folder with relative paths, so logs hold no temp-folder names.
    model_arg = Path(os.path.relpath(model.resolve(), output_dir.resolve()))
    command = vela_command(model_arg, target)
    # `python -m ethosu.vela ARGS` in a fresh process, possibly started ahead (vela_worker).
    proc = vela_worker.take()
    try:
        stdout, stderr = proc.communicate(
            vela_worker.request(command[3:], str(output_dir)), timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    log = output_dir / VELA_LOG
    text = stdout + stderr
    log.write_text(text)
    if proc.returncode < 0 or (proc.returncode != 0 and not text.strip()):
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else "no output"
        raise VelaCrash(
            f"Vela {vela_version()} crashed on {model.name} for {target.name} ({how}): a "
            "compiler fault, not a problem with the model or the profile",
            proc.returncode,
        )
    if proc.returncode != 0:
        raise StageError(
            f"Vela failed on {model.name} for target {target.name} (exit {proc.returncode}): "
            f"{_failure_reason(text)}\nCheck the target profile {target.source}; to reproduce: "
            f"vela {' '.join(command[3:])}"
        )
    return parse_vela_output(output_dir, model.stem, text, tuple(command), log)


def parse_vela_output(
    output_dir: Path, stem: str, stdout: str, command: tuple[str, ...] = (), log: Path | None = None
) -> VelaResult:
    """Parse the files and stdout of one Vela run (also used on a user's own Vela output)."""
    summaries = sorted(output_dir.glob(f"{stem}_summary_*.csv"))
    per_layer = output_dir / f"{stem}_per-layer.csv"
    optimised = output_dir / f"{stem}_vela.tflite"
    if len(summaries) != 1 or not per_layer.is_file() or not optimised.is_file():
        raise StageError(
            f"Vela wrote no complete output for {stem} in {output_dir} "
            f"(summary CSVs: {len(summaries)}, per-layer CSV: {per_layer.is_file()}, "
            f"optimised model: {optimised.is_file()}). Use one output folder per target."
        )
    npu_ops, cpu_ops = parse_op_counts(stdout)
    on_cpu, folded = split_fallbacks(parse_cpu_fallbacks(stdout), cpu_placed_ops(optimised))
    debug_db = output_dir / f"{stem}_debug.xml"
    return VelaResult(
        summary=parse_summary_csv(summaries[0]),
        layers=with_traffic(parse_per_layer_csv(per_layer), debug_db),
        npu_ops=npu_ops,
        cpu_ops=cpu_ops,
        cpu_fallbacks=on_cpu,
        optimised_model=optimised,
        summary_csv=summaries[0],
        per_layer_csv=per_layer,
        log=log or output_dir / VELA_LOG,
        command=command,
        folded_warnings=folded,
        debug_db=debug_db if debug_db.is_file() else None,
    )


def with_traffic(layers: list[VelaLayer], debug_db: Path) -> tuple[VelaLayer, ...]:
    """The layers with their memory traffic from Vela's debug database (as they are without one)."""
    per_op = layer_traffic(debug_db, [x.op_cycles for x in layers]) if debug_db.is_file() else None
    if per_op is None:
        return tuple(layers)
    return tuple(replace(layer, traffic=t) for layer, t in zip(layers, per_op, strict=True))


def split_fallbacks(
    warned: list[CpuFallback], left_on_cpu: tuple[PlacedOp, ...]
) -> tuple[tuple[CpuFallback, ...], tuple[CpuFallback, ...]]:
    """(ops really on the CPU, with Vela's reason; warnings about ops Vela folded away).

    The compiled model decides: an op left beside the `ethos-u` ops runs on the CPU, with
    the reason from Vela's warning of the same output name when it printed one.
    """
    reasons = {w.name: w.reason for w in warned}
    on_cpu = tuple(
        CpuFallback(
            op.op_type,
            op.name,
            reasons.get(op.name, "placed on the CPU by Vela"),
            op.inputs[0] if op.inputs else "",
        )
        for op in left_on_cpu
    )
    kept = {op.name for op in left_on_cpu}
    return on_cpu, tuple(w for w in warned if w.name not in kept)


def parse_summary_csv(path: Path) -> VelaSummary:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise StageError(f"expected one row in Vela summary {path}, found {len(rows)}")
    row = rows[0]

    def num(key: str) -> float:
        return float(row[key])

    return VelaSummary(
        accelerator=row["accelerator_configuration"],
        system_config=row["system_config"],
        memory_mode=row["memory_mode"],
        core_clock_hz=num("core_clock"),
        # Vela writes the arena cache size in KiB (stats_writer: arch.arena_cache_size / 1024)
        arena_cache_size_bytes=round(num("arena_cache_size") * 1024),
        inferences_per_second=num("inferences_per_second"),
        inference_time_s=num("inference_time"),
        cycles_npu=int(num("cycles_npu")),
        cycles_total=int(num("cycles_total")),
        nn_macs=int(num("nn_macs")),
        sram_used_kib=num("sram_memory_used"),
        dram_used_kib=num("dram_memory_used"),
        on_chip_flash_used_kib=num("on_chip_flash_memory_used"),
        off_chip_flash_used_kib=num("off_chip_flash_memory_used"),
        original_weights_bytes=int(num("total_original_weights")),
        encoded_weights_bytes=int(num("total_npu_encoded_weights")),
        cycles_sram_access=int(num("cycles_sram_access")),
        cycles_dram_access=int(num("cycles_dram_access")),
        cycles_off_chip_flash_access=int(num("cycles_off_chip_flash_access")),
        traffic=traffic_from_summary(row),
    )


# Positions, not names: the per-layer header has two "Network%" columns and is repeated
# once per NPU subgraph.
_LAYER_HEADER = (
    "Original Operator",
    "NNG Operator",
    "Target",
    "Staging Usage",
    "Peak% (Staging)",
    "Op Cycles",
    "Network% (cycles)",
    "NPU",
    "SRAM AC",
    "DRAM AC",
    "OnFlash AC",
    "OffFlash AC",
    "MAC Count",
    "Network% (MAC)",
    "Util% (MAC)",
    "Name",
)


def parse_per_layer_csv(path: Path) -> list[VelaLayer]:
    layers = []
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if not row or tuple(row[: len(_LAYER_HEADER)]) == _LAYER_HEADER:
                continue
            if len(row) < len(_LAYER_HEADER):
                raise StageError(f"unexpected row in Vela per-layer CSV {path}: {row}")
            name = ",".join(row[15:])  # an op name may itself hold commas
            layers.append(
                VelaLayer(
                    original_op=row[0],
                    nng_op=row[1],
                    placement=row[2],
                    staging_usage_bytes=int(float(row[3])),
                    op_cycles=int(float(row[5])),
                    npu_cycles=int(float(row[7])),
                    sram_access_cycles=int(float(row[8])),
                    dram_access_cycles=int(float(row[9])),
                    on_chip_flash_access_cycles=int(float(row[10])),
                    off_chip_flash_access_cycles=int(float(row[11])),
                    macs=int(float(row[12])),
                    mac_utilisation_pct=float(row[14]),
                    name=name,
                )
            )
    return layers


_OP_COUNT = re.compile(r"^(CPU|NPU) operators = (\d+)", re.MULTILINE)
# A warning, then its "Reason: ..." lines and the constraint text Vela prints under them,
# up to the next blank line.
_FALLBACK = re.compile(
    r"^Warning \(supported operators\) operator: (?P<op>[A-Z0-9_]+), ofm: '(?P<name>.*)'\n"
    r"(?P<reasons>(?:Reason: .*\n?)(?:(?!Warning \(|#)\S.*\n?)*)",
    re.MULTILINE,
)


def parse_op_counts(stdout: str) -> tuple[int, int]:
    """(NPU ops, CPU ops) from Vela's stdout; the CSVs do not carry them."""
    counts = {kind: int(n) for kind, n in _OP_COUNT.findall(stdout)}
    if "NPU" not in counts or "CPU" not in counts:
        raise StageError("Vela's output has no 'NPU operators = N' / 'CPU operators = N' lines")
    return counts["NPU"], counts["CPU"]


def parse_cpu_fallbacks(stdout: str) -> list[CpuFallback]:
    """Each operator Vela refused, with the reason(s) it printed."""
    found = []
    for match in _FALLBACK.finditer(stdout):
        reasons = [
            " ".join(line.removeprefix("Reason: ").split())
            for line in match["reasons"].splitlines()
            if line.strip()
        ]
        found.append(CpuFallback(match["op"], match["name"], "; ".join(reasons)))
    return found
