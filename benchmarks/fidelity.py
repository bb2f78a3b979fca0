"""int8 fidelity on trained digits models: calibration methods, mixed precision, TFLM, Vela.

    .venv/bin/python benchmarks/fidelity.py              # full run, 3-6 minutes on 2 busy CPU cores
    .venv/bin/python benchmarks/fidelity.py --quick      # smoke run, 1-3 minutes
    .venv/bin/python benchmarks/fidelity.py --json       # machine-readable output on stdout

Trains two models on scikit-learn's digits at 32x32 (benchmarks/digits_models.py, seeded):
`plain_cnn` (~408k parameters, ~398 KiB of int8 weights: above the 256 KiB at which
ai-edge-quantizer writes big buffers outside the flatbuffer) and the zoo's `tiny_mbnet`.
1,400 digits train, 397 are held out. Each model is exported to float TFLite once; then,
per calibration method (every entry of `ranges.CALIBRATION_METHODS`, plus ai-edge-quantizer's
own default, a 0.95 moving average of per-sample min/max, as a reference row) and per
precision mode (all int8; automatic mixed precision, a16w8 where it helps, via
`mixed_precision.auto_mixed_precision` with a logit SQNR target), it measures on the 397
held-out digits:

- top-1 agreement of the quantized model with the float TFLite model (%);
- accuracy of the quantized model on the labels, beside the float model's;
- logit SQNR (dB) against the float model;
- TFLM (Cortex-M interpreter) vs LiteRT reference kernels: max output difference in LSB,
  and whether the check passed (bit-exact, or 1-LSB FULLY_CONNECTED rounding ties);
- int8 weight bytes in the flatbuffer (KiB) and whether every buffer is inline;
- Vela cycles on ethos-u55-128 (and mixed precision's extra cycles over all-int8), and
  NPU/CPU op counts from Vela's compiled model.

Calibration uses the first `--calib-samples` training digits. Mixed precision chooses its
int16 layers on a separate `--search-samples` training digits (not calibration, not test),
so the held-out figures are not tuned on the held-out set; its per-choice cycle budget is
the goal's. A second table repeats the all-int8 figures with fewer calibration samples.
The goals (int8: >= 30 dB and >= 99.5% top-1; mixed: >= 38 dB at <= 10% extra cycles)
are printed met / not met per model and method. Everything is seeded; one intra-op thread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from digits_models import (  # noqa: E402
    INPUT_SHAPE,
    DigitsSplit,
    TrainSettings,
    accuracy,
    build_model,
    digits_split,
    parameter_count,
    train,
)

from ran_edge.build.mixed_precision import AutoGoal, auto_mixed_precision  # noqa: E402
from ran_edge.convert.attribution import ModuleIndex  # noqa: E402
from ran_edge.convert.export import export_float_tflite  # noqa: E402
from ran_edge.convert.fidelity import _run as run_logits  # noqa: E402 - quantized I/O, as firmware
from ran_edge.convert.fidelity import measure_fidelity  # noqa: E402
from ran_edge.convert.inline_buffers import external_buffer_count, inline_buffers  # noqa: E402
from ran_edge.convert.quantize import quantize_int8, recipe_for  # noqa: E402
from ran_edge.convert.ranges import CALIBRATION_METHODS, ROBUST_MIN_SAMPLES  # noqa: E402
from ran_edge.convert.tflite_info import make_interpreter  # noqa: E402
from ran_edge.firmware.tflm_check import tflm_reference_check  # noqa: E402
from ran_edge.quiet import captured_output  # noqa: E402
from ran_edge.targets.ethos_u.vela import run_vela  # noqa: E402
from ran_edge.targets.loading import resolve_target  # noqa: E402

TARGET = "ethos-u55-128"
MODELS = ("plain_cnn", "tiny_mbnet")
REFERENCE = "moving-avg"  # ai-edge-quantizer's default calibration, for reference
INT8, MIXED = "int8", "mixed a16w8"

# The goals from the issue tracker.
INT8_SQNR_DB = 30.0
INT8_TOP1_PCT = 99.5
MIXED_SQNR_DB = 38.0
MIXED_EXTRA_CYCLES_PCT = 10.0


@dataclass(frozen=True)
class Settings:
    epochs: int
    calib_samples: int
    fewer_calib: tuple[int, ...]
    search_samples: int
    tflm_samples: int
    mixed_target_db: float
    mixed_max_steps: int
    seed: int


@dataclass(frozen=True)
class Prepared:
    """A trained model, its float TFLite (exported once) and what the methods share."""

    name: str
    module: nn.Module
    params: int
    float_tflite: bytes
    float_accuracy_pct: float
    train_seconds: float
    modules: ModuleIndex


@dataclass(frozen=True)
class Quantized:
    """One quantized model and how it was made."""

    method: str
    mode: str
    model: bytes
    calib_samples: int
    int16_modules: tuple[str, ...] = ()
    search_note: str = ""
    raw_external_buffers: int | None = None  # before inlining, where we saw the raw output
    search: dict | None = None  # automatic mixed precision's record (MixedPrecision.as_dict)


@dataclass(frozen=True)
class Measured:
    """What one quantized model measures, independent of how it was made."""

    top1_agreement_pct: float
    int8_accuracy_pct: float
    sqnr_db: float
    tflm_max_diff_lsb: int
    tflm_passed: bool
    tflm_verdict: str
    int8_weights_kib: float
    all_inline: bool
    cycles: int
    npu_ops: int
    cpu_ops: int


@dataclass(frozen=True)
class Row:
    """One table row: model x calibration method x precision mode."""

    model: str
    method: str
    mode: str
    calib_samples: int
    float_accuracy_pct: float
    top1_agreement_pct: float
    int8_accuracy_pct: float
    sqnr_db: float
    tflm_max_diff_lsb: int
    tflm_passed: bool
    tflm_verdict: str
    int8_weights_kib: float
    all_inline: bool
    cycles: int
    extra_cycles_pct: float | None  # mixed vs the all-int8 row of the same method
    npu_ops: int
    cpu_ops: int
    int16_modules: list[str] = field(default_factory=list)
    note: str = ""
    raw_external_buffers: int | None = None
    mixed_search: dict | None = None  # goal, steps (search-set SQNR, cycles), stop reason


@dataclass(frozen=True)
class SweepRow:
    """All-int8 fidelity with a given number of calibration samples (no Vela, no TFLM)."""

    model: str
    method: str
    calib_samples: int
    top1_agreement_pct: float
    int8_accuracy_pct: float
    sqnr_db: float


@dataclass(frozen=True)
class GoalCheck:
    goal: str
    model: str
    method: str
    measured: str
    met: bool


Progress = Callable[[str], None]


def nhwc(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))


def int8_weight_kib(model: bytes) -> float:
    """KiB of constant int8 tensor data (weights) stored in the model, inline or not."""
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    seen, total = set(), 0
    for s in range(root.SubgraphsLength()):
        subgraph = root.Subgraphs(s)
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            index = tensor.Buffer()
            if tensor.Type() != schema.TensorType.INT8 or index in seen:
                continue
            buffer = root.Buffers(index)
            size = buffer.DataLength() or (buffer.Size() if buffer.Offset() else 0)
            total += size
            seen.add(index)
    return total / 1024


# --- quantizing ---------------------------------------------------------------------------


def quantize_reference(float_tflite: bytes, calibration: np.ndarray) -> tuple[bytes, int]:
    """ai-edge-quantizer's documented path (`Quantizer.calibrate` + `quantize`) with its
    default calibration, the moving average; inlined like ran-edge's models. Returns the
    model and how many buffers the quantizer itself wrote outside the flatbuffer."""
    with captured_output():
        from ai_edge_quantizer import quantizer

        interpreter = make_interpreter(float_tflite, delegates=False)
        key, io_names = next(iter(interpreter.get_signature_list().items()))
        samples = [{io_names["inputs"][0]: s[None].astype(np.float32)} for s in calibration]
        q = quantizer.Quantizer(bytearray(float_tflite), recipe_for(float_tflite))
        qsvs = q.calibrate({key: samples}, num_threads=1)
        raw = bytes(q.quantize(qsvs, enable_progress_report=False).quantized_model)
    return inline_buffers(raw), external_buffer_count(raw)


def quantize_method(float_tflite: bytes, calibration: np.ndarray, method: str) -> Quantized:
    """All-int8 with `method` (a `CALIBRATION_METHODS` entry or the reference)."""
    if method == REFERENCE:
        model, raw_external = quantize_reference(float_tflite, calibration)
        return Quantized(method, INT8, model, len(calibration), raw_external_buffers=raw_external)
    return Quantized(
        method, INT8, quantize_int8(float_tflite, calibration, method=method), len(calibration)
    )


def quantize_mixed(
    prepared: Prepared,
    calibration: np.ndarray,
    search_set: np.ndarray,
    method: str,
    settings: Settings,
    progress: Progress,
) -> Quantized:
    """Automatic mixed precision with the goal's cycle budget, chosen on `search_set`."""
    goal = AutoGoal(
        sqnr_db=settings.mixed_target_db,
        max_steps=settings.mixed_max_steps,
        max_extra_cycles_pct=MIXED_EXTRA_CYCLES_PCT,
    )
    result = auto_mixed_precision(
        prepared.float_tflite,
        calibration,
        search_set,
        TARGET,
        modules=prepared.modules,
        goal=goal,
        method=method,
        progress=lambda m: progress(f"    {m}"),
    )
    kept = sum(s.kept for s in result.steps)
    record = result.as_dict()
    note = (
        f"{kept}/{len(result.steps)} choices kept; search set "
        f"{record['baseline']['sqnr_db']:.2f} -> {record['sqnr_db']:.2f} dB; {result.stop_reason}"
    )
    if result.all_int16_sqnr_db is not None and "every int16-capable" not in note:
        note += f"; every int16-capable op raised: {result.all_int16_sqnr_db:.1f} dB"
    record.pop("excluded")
    return Quantized(
        method,
        MIXED,
        result.model,
        len(calibration),
        tuple(result.int16_modules),
        note,
        search=record,
    )


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Measurer:
    """Measures models on the held-out digits; identical models are measured once."""

    float_tflite: bytes
    test_x: np.ndarray  # NHWC
    test_y: np.ndarray
    tflm_samples: int
    cache: dict[str, Measured] = field(default_factory=dict)

    def fidelity(self, model: bytes) -> tuple[float, float, float]:
        """(top-1 agreement %, accuracy %, logit SQNR dB) on the held-out digits."""
        fidelity = measure_fidelity(self.float_tflite, model, self.test_x)
        logits = run_logits(model, self.test_x)
        top1 = 100 * (fidelity.top1_agreement or 0.0)
        return top1, 100 * float((logits.argmax(1) == self.test_y).mean()), fidelity.sqnr_db

    def measure(self, model: bytes) -> Measured:
        key = hashlib.sha256(model).hexdigest()
        if key not in self.cache:
            self.cache[key] = self._measure(model)
        return self.cache[key]

    def _measure(self, model: bytes) -> Measured:
        top1, acc, sqnr = self.fidelity(model)
        tflm = tflm_reference_check(model, self.test_x[: self.tflm_samples])
        vela = vela_cost(model)
        return Measured(
            top1_agreement_pct=round(top1, 2),
            int8_accuracy_pct=round(acc, 2),
            sqnr_db=round(float(sqnr), 2),
            tflm_max_diff_lsb=tflm.max_abs_diff,
            tflm_passed=tflm.passed,
            tflm_verdict=tflm.verdict,
            int8_weights_kib=round(int8_weight_kib(model), 1),
            all_inline=external_buffer_count(model) == 0,
            cycles=vela[0],
            npu_ops=vela[1],
            cpu_ops=vela[2],
        )


def vela_cost(model: bytes) -> tuple[int, int, int]:
    """(cycles_total, NPU ops, CPU ops) of `model` compiled by Vela for TARGET."""
    with tempfile.TemporaryDirectory(prefix="fidelity-vela-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        result = run_vela(path, resolve_target(TARGET), Path(tmp) / "out")
    return result.summary.cycles_total, result.npu_ops, result.cpu_ops


# --- the benchmark ------------------------------------------------------------------------


def prepare(name: str, data: DigitsSplit, settings: Settings, progress: Progress) -> Prepared:
    """Build (seeded), train, score in float, export to float TFLite once."""
    module = build_model(name, settings.seed)
    log = train(
        module, data.train_x, data.train_y, TrainSettings(settings.epochs, seed=settings.seed)
    )
    float_acc = 100 * accuracy(module, data.test_x, data.test_y)
    progress(f"{name}: trained in {log.seconds:.0f} s, float accuracy {float_acc:.2f}%; exporting")
    return Prepared(
        name=name,
        module=module,
        params=parameter_count(module),
        float_tflite=export_float_tflite(module, INPUT_SHAPE),
        float_accuracy_pct=round(float_acc, 2),
        train_seconds=round(log.seconds, 1),
        modules=ModuleIndex.from_model(module, INPUT_SHAPE),
    )


def methods() -> tuple[str, ...]:
    return (*CALIBRATION_METHODS, REFERENCE)


def to_row(prepared: Prepared, q: Quantized, m: Measured, int8_cycles: int | None) -> Row:
    extra = None
    if q.mode == MIXED and int8_cycles:
        extra = round(100 * (m.cycles - int8_cycles) / int8_cycles, 2)
    return Row(
        model=prepared.name,
        method=q.method,
        mode=q.mode,
        calib_samples=q.calib_samples,
        float_accuracy_pct=prepared.float_accuracy_pct,
        extra_cycles_pct=extra,
        int16_modules=list(q.int16_modules),
        note=q.search_note,
        mixed_search=q.search,
        raw_external_buffers=q.raw_external_buffers,
        **asdict(m),
    )


def model_rows(
    prepared: Prepared, data: DigitsSplit, settings: Settings, progress: Progress
) -> tuple[list[Row], list[SweepRow]]:
    """Every method x mode row for one model, and the fewer-calibration-samples sweep."""
    calibration = nhwc(data.train_x[: settings.calib_samples])
    end = settings.calib_samples + settings.search_samples
    search_set = nhwc(data.train_x[settings.calib_samples : end])
    measurer = Measurer(
        prepared.float_tflite, nhwc(data.test_x), data.test_y, settings.tflm_samples
    )
    rows: list[Row] = []
    for method in methods():
        progress(f"{prepared.name}: {method}, all int8")
        q = quantize_method(prepared.float_tflite, calibration, method)
        int8_row = to_row(prepared, q, measurer.measure(q.model), None)
        rows.append(int8_row)
        if method == REFERENCE:  # mixed precision calibrates with ran-edge's methods only
            continue
        progress(f"{prepared.name}: {method}, automatic mixed precision")
        q = quantize_mixed(prepared, calibration, search_set, method, settings, progress)
        rows.append(to_row(prepared, q, measurer.measure(q.model), int8_row.cycles))
    sweep = []
    for samples in settings.fewer_calib:
        for method in methods():
            if method not in (REFERENCE, "minmax") and samples < ROBUST_MIN_SAMPLES:
                continue
            progress(f"{prepared.name}: {method}, {samples} calibration samples")
            q = quantize_method(prepared.float_tflite, nhwc(data.train_x[:samples]), method)
            top1, acc, sqnr = measurer.fidelity(q.model)
            sweep.append(
                SweepRow(
                    prepared.name,
                    method,
                    samples,
                    round(top1, 2),
                    round(acc, 2),
                    round(float(sqnr), 2),
                )
            )
    return rows, sweep


def check_goals(rows: list[Row]) -> list[GoalCheck]:
    """Each goal against each model and method that has the row it needs."""
    checks = []
    for row in rows:
        if row.mode == INT8:
            met = row.sqnr_db >= INT8_SQNR_DB and row.top1_agreement_pct >= INT8_TOP1_PCT
            goal = f"int8: SQNR >= {INT8_SQNR_DB:.0f} dB and top-1 >= {INT8_TOP1_PCT}%"
            measured = f"{row.sqnr_db:.2f} dB, {row.top1_agreement_pct:.2f}%"
        else:
            extra = row.extra_cycles_pct or 0.0
            met = row.sqnr_db >= MIXED_SQNR_DB and extra <= MIXED_EXTRA_CYCLES_PCT
            goal = (
                f"mixed: SQNR >= {MIXED_SQNR_DB:.0f} dB at <= {MIXED_EXTRA_CYCLES_PCT:.0f}% cycles"
            )
            measured = f"{row.sqnr_db:.2f} dB, {extra:+.2f}% cycles"
        checks.append(GoalCheck(goal, row.model, row.method, measured, met))
    return checks


def run(settings: Settings, progress: Progress) -> dict:
    start = time.perf_counter()
    data = digits_split(settings.seed)
    rows: list[Row] = []
    sweep: list[SweepRow] = []
    models = []
    for name in MODELS:
        prepared = prepare(name, data, settings, progress)
        models.append(
            {
                "model": name,
                "params": prepared.params,
                "float_accuracy_pct": prepared.float_accuracy_pct,
                "train_seconds": prepared.train_seconds,
            }
        )
        model_table, model_sweep = model_rows(prepared, data, settings, progress)
        rows += model_table
        sweep += model_sweep
    return {
        "target": TARGET,
        "settings": asdict(settings),
        "split": {"train": len(data.train_x), "test": len(data.test_x)},
        "models": models,
        "rows": [asdict(r) for r in rows],
        "calibration_sweep": [asdict(s) for s in sweep],
        "goals": [asdict(g) for g in check_goals(rows)],
        "seconds": round(time.perf_counter() - start, 1),
    }


# --- printing -----------------------------------------------------------------------------


def print_result(result: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 240, highlight=False, soft_wrap=True)
    settings = result["settings"]
    for m in result["models"]:
        console.print(
            f"{m['model']}: {m['params']:,} parameters, "
            f"float accuracy {m['float_accuracy_pct']:.2f}% on {result['split']['test']} "
            f"held-out digits (trained {m['train_seconds']} s)"
        )
    console.print(
        f"\nint8 fidelity on {result['split']['test']} held-out digits; Vela {result['target']}; "
        f"calibration: {settings['calib_samples']} training digits"
    )
    table = Table(box=box.MARKDOWN)
    for name, justify in (
        ("model", "left"),
        ("calibration", "left"),
        ("mode", "left"),
        ("top-1 agree %", "right"),
        ("acc int8 / float %", "right"),
        ("SQNR dB", "right"),
        ("TFLM max diff", "right"),
        ("int8 weights KiB", "right"),
        ("cycles", "right"),
        ("extra cycles", "right"),
        ("NPU/CPU ops", "right"),
        ("int16 layers", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in result["rows"]:
        table.add_row(
            r["model"],
            r["method"] + (" (quantizer default, reference)" if r["method"] == REFERENCE else ""),
            r["mode"],
            f"{r['top1_agreement_pct']:.2f}",
            f"{r['int8_accuracy_pct']:.2f} / {r['float_accuracy_pct']:.2f}",
            f"{r['sqnr_db']:.2f}",
            f"{r['tflm_max_diff_lsb']} ({'pass' if r['tflm_passed'] else 'FAIL'})",
            f"{r['int8_weights_kib']:.1f} ({'inline' if r['all_inline'] else 'EXTERNAL'})",
            f"{r['cycles']:,}",
            "" if r["extra_cycles_pct"] is None else f"{r['extra_cycles_pct']:+.2f}%",
            f"{r['npu_ops']}/{r['cpu_ops']}",
            ", ".join(r["int16_modules"]) or ("none" if r["mode"] == MIXED else ""),
        )
    print_table(console, table)
    print_notes(console, result)
    print_sweep(console, result)
    print_goals(console, result)
    console.print(f"\n{result['seconds']} s")


def print_table(console, table) -> None:
    """A markdown table without the blank, space-padded lines rich puts around it."""
    with console.capture() as captured:
        console.print(table)
    lines = (line.rstrip() for line in captured.get().splitlines())
    console.print("\n".join(line for line in lines if line))


def print_notes(console, result: dict) -> None:
    console.print("\nnotes:")
    for r in result["rows"]:
        if r["note"]:
            console.print(f"  {r['model']} / {r['method']} / mixed: {r['note']}")
        if r["raw_external_buffers"]:
            console.print(
                f"  {r['model']} / {r['method']}: ai-edge-quantizer wrote "
                f"{r['raw_external_buffers']} buffer(s) outside the flatbuffer; "
                "inlined before measuring"
            )
        if not r["tflm_passed"] or r["tflm_max_diff_lsb"]:
            console.print(f"  {r['model']} / {r['method']} / {r['mode']}: TFLM {r['tflm_verdict']}")


def print_sweep(console, result: dict) -> None:
    from rich import box
    from rich.table import Table

    if not result["calibration_sweep"]:
        return
    console.print("\nall int8 with fewer calibration samples")
    table = Table(box=box.MARKDOWN)
    for name in ("model", "calibration", "samples", "top-1 agree %", "acc int8 %", "SQNR dB"):
        table.add_column(name, justify="left" if name in ("model", "calibration") else "right")
    full = [r for r in result["rows"] if r["mode"] == INT8]
    for s in sorted(
        [*result["calibration_sweep"], *full],
        key=lambda s: (s["model"], methods().index(s["method"]), s["calib_samples"]),
    ):
        table.add_row(
            s["model"],
            s["method"],
            str(s["calib_samples"]),
            f"{s['top1_agreement_pct']:.2f}",
            f"{s['int8_accuracy_pct']:.2f}",
            f"{s['sqnr_db']:.2f}",
        )
    print_table(console, table)


def print_goals(console, result: dict) -> None:
    from rich import box
    from rich.table import Table

    console.print("\ngoals")
    table = Table(box=box.MARKDOWN)
    for name in ("goal", "model", "calibration", "measured", "met"):
        table.add_column(name)
    for g in result["goals"]:
        table.add_row(
            g["goal"], g["model"], g["method"], g["measured"], "met" if g["met"] else "NOT met"
        )
    print_table(console, table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per model (8)")
    parser.add_argument(
        "--calib-samples",
        type=int,
        default=152,
        help="calibration digits from the training split (152)",
    )
    parser.add_argument(
        "--fewer-calib",
        default="16,48",
        help="comma-separated smaller calibration sizes for the all-int8 sweep ('' to skip)",
    )
    parser.add_argument(
        "--search-samples",
        type=int,
        default=64,
        help="training digits (after the calibration ones) mixed precision chooses layers on (64)",
    )
    parser.add_argument(
        "--tflm-samples", type=int, default=397, help="held-out digits run through TFLM (all 397)"
    )
    parser.add_argument(
        "--mixed-target-db",
        type=float,
        default=39.0,
        help="automatic mixed precision's logit SQNR target on the search set "
        "(39; the goal is 38 on the held-out digits)",
    )
    parser.add_argument("--mixed-max-steps", type=int, default=8, help="layers tried at most (8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (1-3 min): 2 epochs, 48 calibration / 32 search / 32 TFLM digits, "
        "2 mixed-precision steps, no calibration sweep",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    fewer = tuple(int(n) for n in args.fewer_calib.split(",") if n.strip())
    if args.quick:
        return Settings(2, 48, (), 32, 32, args.mixed_target_db, 2, args.seed)
    return Settings(
        epochs=args.epochs,
        calib_samples=args.calib_samples,
        fewer_calib=fewer,
        search_samples=args.search_samples,
        tflm_samples=args.tflm_samples,
        mixed_target_db=args.mixed_target_db,
        mixed_max_steps=args.mixed_max_steps,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: extra intra-op threads only contend
    settings = settings_from(args)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = run(settings, progress)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)


if __name__ == "__main__":
    main()
