"""What the TFLM reference check costs a build, and what the adaptive check saves.

    .venv/bin/python benchmarks/tflm_check_cost.py [--model mobilenet_v2] [--repeats 3]

Builds the model's int8 TFLite as `ran-edge build` does (litert-torch export with the NPU
rewrites, ai-edge-quantizer on the default calibration set) and checks it on the build's 16
held-out samples: the old check (every sample), the adaptive check as a build calls it (the
first `FIRST_BATCH`, all of them when one differs), the adaptive check when its first batch
agrees (the samples reordered so that bit-exact ones come first), and a check on no samples
(the fixed overhead). Then the fixed overhead and one sample are split into their parts,
timed in this process the way the child process runs them. Medians over --repeats runs
(machines here are shared).
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from ran_edge.calib import load_calibration
from ran_edge.convert.export import export_float_tflite
from ran_edge.convert.quantize import quantize_int8
from ran_edge.firmware.tflm_check import (
    FIRST_BATCH,
    TflmCheck,
    _quantize,
    start_tflm_check,
    tflm_reference_check,
)
from ran_edge.models import load_model
from ran_edge.quiet import captured_output

CHILD_IMPORTS = (
    "import numpy; from ai_edge_litert.interpreter import Interpreter; "
    "from tflite_micro.python.tflite_micro import runtime; "
    "import ran_edge.quiet, ran_edge.convert.inline_buffers"
)


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _median(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, last = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), last


def _process_start(repeats: int) -> tuple[float, float]:
    """A bare interpreter start, and one that also imports what the child imports."""
    bare, _ = _median(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), repeats)
    imports, _ = _median(
        lambda: subprocess.run([sys.executable, "-c", CHILD_IMPORTS], check=True), repeats
    )
    return bare, imports


def _start_returns(model: bytes, samples: np.ndarray) -> float:
    """Seconds until `start_tflm_check` hands control back (the child is then stopped)."""
    t = time.perf_counter()
    pending = start_tflm_check(model, samples)
    seconds = time.perf_counter() - t
    pending.cancel()
    return seconds


def _in_process_split(model: bytes, samples: np.ndarray) -> tuple[dict[str, float], list[int]]:
    """The child's steps timed one by one (medians over samples), and each sample's |diff|."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    from ran_edge.convert.inline_buffers import external_buffer_count
    from ran_edge.firmware.tflm_check import _divergences

    parts: dict[str, float] = {}
    t = time.perf_counter()
    external_buffer_count(model)
    parts["flatbuffer scan (external buffers)"] = time.perf_counter() - t
    with captured_output():
        t = time.perf_counter()
        tflm = runtime.Interpreter.from_bytes(model)
        parts["TFLM interpreter: build + allocate"] = time.perf_counter() - t
        t = time.perf_counter()
        litert = Interpreter(
            model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
        )
        litert.allocate_tensors()
        parts["LiteRT interpreter: build + allocate"] = time.perf_counter() - t
        inp, out = litert.get_input_details()[0], litert.get_output_details()[0]
        inputs = _quantize(samples, *inp["quantization"])
        tflm_times, litert_times, diffs = [], [], []
        for x in inputs:
            t = time.perf_counter()
            litert.set_tensor(inp["index"], x[None])
            litert.invoke()
            expected = litert.get_tensor(out["index"]).astype(np.int32)
            litert_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            tflm.set_input(x[None], 0)
            tflm.invoke()
            got = tflm.get_output(0).astype(np.int32)
            tflm_times.append(time.perf_counter() - t)
            diffs.append(int(np.abs(expected - got).max()))
        t = time.perf_counter()
        tflm.print_allocations()
        parts["TFLM arena report"] = time.perf_counter() - t
    parts["per sample: TFLM invoke"] = statistics.median(tflm_times)
    parts["per sample: LiteRT (reference kernels) invoke"] = statistics.median(litert_times)
    mismatching = [i for i, d in enumerate(diffs) if d]
    if mismatching:
        t = time.perf_counter()
        _divergences(model, inputs, mismatching[:2])
        walk = (time.perf_counter() - t) / len(mismatching[:2])
        parts["per mismatching sample: op-by-op walk (both, all tensors kept)"] = walk
    return parts, diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--holdout", type=int, default=16)
    args = parser.parse_args()

    t = time.perf_counter()
    loaded = load_model(args.model)
    calib = load_calibration(
        None, loaded.input_shape, num_samples=args.calib_samples, holdout=args.holdout
    )
    float_tflite = export_float_tflite(loaded.module, tuple(loaded.input_shape))
    model = quantize_int8(float_tflite, _nhwc(calib.samples))
    samples = _nhwc(calib.holdout if len(calib.holdout) else calib.samples[:8])
    print(
        f"built {args.model} int8 ({len(model) / 1e6:.1f} MB) in {time.perf_counter() - t:.0f} s; "
        f"checking on {len(samples)} samples",
        file=sys.stderr,
    )

    parts, diffs = _in_process_split(model, samples)
    exact = [i for i, d in enumerate(diffs) if d == 0]
    differ = [i for i, d in enumerate(diffs) if d]
    # The same samples with bit-exact ones first (what a build sees when its first batch
    # agrees), and with a differing one first (then every sample runs, as before).
    agreeing = samples[exact + differ] if len(exact) >= FIRST_BATCH else None
    differing = samples[differ + exact] if differ else None

    rows: list[tuple[str, float, TflmCheck]] = []

    def timed(label: str, batch: np.ndarray, first_batch: int | None) -> None:
        seconds, check = _median(
            lambda: tflm_reference_check(model, batch, first_batch=first_batch), args.repeats
        )
        rows.append((label, seconds, check))
        print(f"{label}: {seconds:.2f} s", file=sys.stderr)

    timed(f"old: every sample ({len(samples)})", samples, None)
    timed(f"adaptive, as a build calls it (first {FIRST_BATCH})", samples, FIRST_BATCH)
    if agreeing is not None:
        timed(f"adaptive, first {FIRST_BATCH} bit-exact", agreeing, FIRST_BATCH)
    if differing is not None:
        timed("adaptive, sample 0 differs (all run)", differing, FIRST_BATCH)
    timed("no samples (fixed overhead)", samples[:0], None)
    start_s = statistics.median(_start_returns(model, samples) for _ in range(args.repeats))
    bare_s, imports_s = _process_start(args.repeats)

    old = rows[0][1]
    fixed = rows[-1][1]
    first_only = next((s for label, s, _ in rows if "bit-exact" in label), None)
    table = Table(
        title=f"TFLM check on {args.model} {tuple(loaded.input_shape)}: median seconds over "
        f"{args.repeats} runs"
    )
    for col in ("check", "seconds", "vs old", "samples checked"):
        table.add_column(col, justify="left" if col == "check" else "right")
    table.add_column("verdict", no_wrap=True, overflow="ellipsis", max_width=44)
    for label, seconds, check in rows:
        checked = f"{check.samples_checked}/{check.samples_available}"
        table.add_row(label, f"{seconds:.2f}", f"{seconds / old:.3f}", checked, check.verdict)
    console = Console(width=140)
    console.print(table)

    split = Table(title="where the time goes (child steps timed in this process)")
    split.add_column("part")
    split.add_column("seconds", justify="right")
    split.add_row("python start (bare `python -c pass`)", f"{bare_s:.3f}")
    split.add_row("python start + the child's imports", f"{imports_s:.3f}")
    for name, seconds in parts.items():
        split.add_row(name, f"{seconds:.3f}")
    split.add_row("start_tflm_check() returning (samples written, child spawned)", f"{start_s:.3f}")
    console.print(split)

    per_sample = (
        (first_only - fixed) / FIRST_BATCH
        if first_only is not None
        else (old - fixed) / max(len(samples), 1)
    )
    print(
        f"fixed overhead {fixed:.2f} s (check on no samples), per sample {per_sample:.2f} s "
        f"(TFLM {parts['per sample: TFLM invoke']:.2f} + LiteRT "
        f"{parts['per sample: LiteRT (reference kernels) invoke']:.2f} in process)"
    )
    print(
        f"{len(differ)}/{len(samples)} held-out samples differ "
        f"(max {max(diffs, default=0)} LSB); the build's first {FIRST_BATCH} "
        + ("differ, so it checks them all" if any(diffs[:FIRST_BATCH]) else "agree")
    )
    if first_only is not None:
        print(
            f"adaptive with an agreeing first batch: {first_only:.2f} s vs {old:.2f} s "
            f"({first_only / old:.3f} of the old check, {old - first_only:.2f} s saved)"
        )
        # A first batch drawn from these samples agrees with probability C(exact, k) / C(n, k).
        agree = math.comb(len(exact), FIRST_BATCH) / math.comb(len(samples), FIRST_BATCH)
        all_run = next((s for label, s, _ in rows if "differs" in label), old)
        expected = agree * first_only + (1 - agree) * all_run
        print(
            f"a first batch of {FIRST_BATCH} drawn from these samples agrees with probability "
            f"{agree:.2f}: expected {expected:.2f} s ({expected / old:.3f} of the old check)"
        )


if __name__ == "__main__":
    main()
