"""Measure an int8 .tflite on this CPU: LiteRT with its default XNNPACK delegate.

    python -m ran_edge.targets.cortex_a.measure model.tflite --threads 4 --runs 50 --warmup 5 --json

Self-contained on purpose (standard library, numpy and ai-edge-litert only, Python 3.8+):
`ran-edge profile --remote` copies this one file to a board and runs exactly this code
there, so ran-edge itself need not be installed on the board. Run it in a fresh process:
the memory figures are the process's peak resident set (VmHWM) before and after the
interpreter is created and invoked, so another model loaded earlier would blur them.

Batch mode times many models in one process, for `ran-edge calibrate-target --remote` (one
SSH call for the whole set instead of one per model and thread count):

    python measure.py --batch a.tflite b.tflite --threads-list 1,4 --rounds 3 --json --progress

Round r times every model at every thread count, in order; each round gives the 10th
percentile of its runs (5 runs, 3 warm-up by default, at least --min-seconds): the machine's
own speed, with the runs a neighbour or a slow phase of a shared machine stretched left out.
`best_ms`, the least of the rounds, is the figure ran_edge/targets/cortex_a/calibrate.py
fits (load only adds time); `median_ms` over the rounds is reported beside it. Interleaving spreads a passing load over
all models instead of landing on a few.

Exit codes: 0 measured; 3 no LiteRT runtime (or numpy) on this machine; 4 the model does
not load; 2 bad arguments. With --json, stdout holds one JSON object either way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

SCHEMA = "ran-edge/measure"
SCHEMA_VERSION = 1
BATCH_SCHEMA = "ran-edge/measure-batch"
BATCH_SCHEMA_VERSION = 1
QUICK_SHARE = 0.1  # the percentile of a round's runs the batch mode reports
BATCH_RUNS = 5  # calibrate.time_model's runs and warm-up: batch figures match local ones
BATCH_WARMUP = 3
PROGRESS_PREFIX = "RAN_EDGE_PROGRESS"
EXIT_NO_RUNTIME = 3
EXIT_BAD_MODEL = 4


class MeasureError(Exception):
    """A failure with a machine-readable code (`no_runtime`, `bad_model`) and an exit code."""

    def __init__(self, code: str, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code


def _status_kib(field: str) -> int | None:
    """A `VmHWM:`/`VmRSS:` line of /proc/self/status in KiB (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_kib() -> tuple[int, str]:
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak, "VmHWM"
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux, bytes on macOS
    return (maxrss // 1024 if sys.platform == "darwin" else maxrss), "ru_maxrss"


def _load_runtime():
    try:
        import numpy as np
    except ImportError:
        raise MeasureError(
            "no_runtime",
            f"numpy is not installed for {sys.executable}; install it with "
            f"`{sys.executable} -m pip install numpy ai-edge-litert`.",
            EXIT_NO_RUNTIME,
        ) from None
    from importlib.metadata import version

    try:
        from ai_edge_litert import interpreter as litert

        return np, litert, "ai-edge-litert", version("ai-edge-litert")
    except ImportError:
        raise MeasureError(
            "no_runtime",
            f"ai-edge-litert is not installed for {sys.executable}; install it with "
            f"`{sys.executable} -m pip install ai-edge-litert` (a 64-bit OS is needed on "
            "Raspberry Pi).",
            EXIT_NO_RUNTIME,
        ) from None


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor()
    for key in ("model name", "Model", "Hardware", "CPU part"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor()


def _inputs(np, interpreter) -> list:
    """Deterministic random inputs of each input tensor's dtype and shape."""
    rng = np.random.default_rng(0)
    values = []
    for detail in interpreter.get_input_details():
        dtype = np.dtype(detail["dtype"])
        shape = tuple(int(d) for d in detail["shape"])
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            values.append(rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype))
        else:
            values.append(rng.random(shape, dtype=np.float32).astype(dtype))
    return values


def _percentile(sorted_values: list, q: float) -> float:
    """Linear-interpolated percentile of an already sorted list."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def measure(
    model_path: str,
    threads: int,
    runs: int,
    warmup: int,
    progress: bool = False,
    min_seconds: float = 0.0,
) -> dict:
    """Warm up, then time `runs` invokes (at least `min_seconds` in all); one JSON-able dict."""
    with open(model_path, "rb") as f:
        model = f.read()
    return measure_bytes(
        model, os.path.basename(model_path), threads, runs, warmup, progress, min_seconds
    )


def measure_bytes(
    model: bytes,
    name: str,
    threads: int,
    runs: int,
    warmup: int,
    progress: bool = False,
    min_seconds: float = 0.0,
) -> dict:
    """`measure` on a model already in memory (calibration times many small models in-process)."""
    np, litert, runtime, runtime_version = _load_runtime()
    peak_before, method = _peak_kib()
    rss_before = _status_kib("VmRSS")
    start = time.perf_counter()
    try:
        interpreter = litert.Interpreter(model_content=model, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        message = f"LiteRT cannot load {name}: {first}"
        raise MeasureError("bad_model", message, EXIT_BAD_MODEL) from None
    init_ms = (time.perf_counter() - start) * 1e3
    # zip(strict=) is Python 3.10+; this file runs on boards with older pythons too
    for detail, value in zip(interpreter.get_input_details(), _inputs(np, interpreter)):  # noqa: B905
        interpreter.set_tensor(detail["index"], value)
    ops = interpreter._get_ops_details()  # the model's ops, then one DELEGATE node per partition
    partitions = sum(1 for op in ops if op["op_name"] == "DELEGATE")
    total = warmup + runs
    latencies = []
    timed_start = None
    done = 0
    while done < total or (
        timed_start is not None and time.perf_counter() - timed_start < min_seconds
    ):
        t0 = time.perf_counter_ns()
        interpreter.invoke()
        elapsed_ms = (time.perf_counter_ns() - t0) / 1e6
        done += 1
        if done > warmup:
            latencies.append(elapsed_ms)
            if timed_start is None:
                timed_start = time.perf_counter()
        if progress:
            print(f"{PROGRESS_PREFIX} {min(done, total)} {total}", file=sys.stderr, flush=True)
    peak_after, _ = _peak_kib()
    rss_after = _status_kib("VmRSS")
    ordered = sorted(latencies)
    median = _percentile(ordered, 0.5)
    return {
        "ok": True,
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "model": name,
        "model_bytes": len(model),
        "runtime": runtime,
        "runtime_version": runtime_version,
        "threads": threads,
        "runs": len(latencies),
        "warmup": warmup,
        "init_ms": init_ms,
        "latencies_ms": latencies,
        "latency_ms": {
            "median": median,
            "p90": _percentile(ordered, 0.9),
            "mean": sum(ordered) / len(ordered),
            "min": ordered[0],
            "max": ordered[-1],
        },
        "inferences_per_second": 1e3 / median if median > 0 else None,
        "memory": {
            "method": method,
            "peak_rss_delta_kib": max(0, peak_after - peak_before),
            "peak_rss_kib": peak_after,
            "rss_delta_kib": None if rss_before is None else max(0, rss_after - rss_before),
        },
        "delegate": {"name": "xnnpack" if partitions else None, "partitions": partitions},
        "machine": machine_info(),
    }


def machine_info() -> dict:
    """Which machine measured: the figures are only meaningful next to this."""
    return {
        "hostname": platform.node(),
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model_name(),
        "python": platform.python_version(),
    }


def measure_batch(
    model_paths: list,
    threads_list: list,
    rounds: int,
    min_seconds: float,
    runs: int = BATCH_RUNS,
    warmup: int = BATCH_WARMUP,
    progress: bool = False,
) -> dict:
    """Latency (ms) per (model, threads) over `rounds` interleaved passes; one dict.

    Each pass's figure is the 10th percentile of its runs (the quick tail: what the model
    costs when nothing else takes the core); `best_ms` is the least over passes, `median_ms`
    their median.

    With `progress`, prints 'PREFIX done total' to stderr before each model of each pass
    (done = models finished so far, total = rounds x models) and once more at the end."""
    _, _, runtime, runtime_version = _load_runtime()  # no runtime: fail before reading models
    models = []
    for path in model_paths:
        with open(path, "rb") as f:
            models.append((os.path.basename(path), f.read()))
    total = rounds * len(models)
    timings = {}  # (model index, threads) -> one median per pass
    for r in range(rounds):
        for i, (name, model) in enumerate(models):
            if progress:
                print(
                    f"{PROGRESS_PREFIX} {r * len(models) + i} {total}", file=sys.stderr, flush=True
                )
            for threads in threads_list:
                result = measure_bytes(model, name, threads, runs, warmup, min_seconds=min_seconds)
                quick_tenth = _percentile(sorted(result["latencies_ms"]), QUICK_SHARE)
                timings.setdefault((i, threads), []).append(quick_tenth)
    if progress:
        print(f"{PROGRESS_PREFIX} {total} {total}", file=sys.stderr, flush=True)
    return {
        "ok": True,
        "schema": BATCH_SCHEMA,
        "schema_version": BATCH_SCHEMA_VERSION,
        "runtime": runtime,
        "runtime_version": runtime_version,
        "rounds": rounds,
        "runs": runs,
        "warmup": warmup,
        "min_seconds": min_seconds,
        "threads_list": list(threads_list),
        "timings": [
            {
                "index": i,
                "model": name,
                "threads": threads,
                "median_ms": _percentile(sorted(timings[(i, threads)]), 0.5),
                "best_ms": min(timings[(i, threads)]),
                "rounds_ms": timings[(i, threads)],
            }
            for i, (name, _model) in enumerate(models)
            for threads in threads_list
        ],
        "machine": machine_info(),
    }


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _non_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {number}")
    return number


def _threads_list(value: str) -> list:
    try:
        numbers = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list") from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: give thread counts of at least 1, e.g. 1,4")
    return numbers


def _seconds(value: str) -> float:
    number = float(value)
    if not 0 <= number < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number at least 0, got {value}")
    return number


def _fail(as_json: bool, code: str, message: str, exit_code: int) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": code, "message": message}))
    else:
        print(f"error: {message}", file=sys.stderr)
    return exit_code


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ran_edge.targets.cortex_a.measure",
        description="Time an int8 .tflite in LiteRT (XNNPACK delegate) on this CPU; or, with "
        "--batch, many models at several thread counts in interleaved rounds.",
    )
    parser.add_argument("model", nargs="?", help="the .tflite file")
    parser.add_argument("--threads", type=_positive, help="default: this machine's CPU count")
    parser.add_argument(
        "--runs", type=_positive, help=f"timed invokes (default: 50; --batch: {BATCH_RUNS})"
    )
    parser.add_argument(
        "--warmup",
        type=_non_negative,
        help=f"untimed invokes first (default: 5; --batch: {BATCH_WARMUP})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--progress", action="store_true", help=f"print '{PROGRESS_PREFIX} done total' to stderr"
    )
    batch = parser.add_argument_group("batch mode (instead of MODEL)")
    batch.add_argument("--batch", nargs="+", metavar="MODEL", help="the .tflite files to time")
    batch.add_argument(
        "--threads-list", type=_threads_list, help="thread counts, e.g. 1,4 (default: 1)"
    )
    batch.add_argument("--rounds", type=_positive, help="interleaved passes (default: 3)")
    batch.add_argument(
        "--min-seconds", type=_seconds, help="least timed seconds per figure (default: 0.05)"
    )
    args = parser.parse_args(argv)
    if args.batch:
        if args.model is not None or args.threads is not None:
            parser.error(
                "--batch takes its models after it and --threads-list, not MODEL/--threads"
            )
        return _main_batch(args)
    if args.model is None:
        parser.error("give the .tflite file to time (or --batch FILE ...)")
    for name in ("threads_list", "rounds", "min_seconds"):
        if getattr(args, name) is not None:
            parser.error(f"--{name.replace('_', '-')} only applies with --batch")
    threads = args.threads or os.cpu_count() or 1
    runs = 50 if args.runs is None else args.runs
    warmup = 5 if args.warmup is None else args.warmup
    try:
        result = measure(args.model, threads, runs, warmup, args.progress)
    except MeasureError as exc:
        return _fail(args.json, exc.code, str(exc), exc.exit_code)
    except OSError as exc:
        message = f"cannot read {args.model}: {exc.strerror or exc}"
        return _fail(args.json, "bad_model", message, EXIT_BAD_MODEL)
    if args.json:
        print(json.dumps(result))
    else:
        lat = result["latency_ms"]
        print(
            f"{result['model']}: median {lat['median']:.3f} ms, p90 {lat['p90']:.3f} ms, "
            f"{result['inferences_per_second']:.1f} inferences/s on {threads} thread(s), "
            f"peak RSS +{result['memory']['peak_rss_delta_kib']} KiB"
        )
    return 0


def _main_batch(args: argparse.Namespace) -> int:
    try:
        result = measure_batch(
            args.batch,
            args.threads_list or [1],
            3 if args.rounds is None else args.rounds,
            0.05 if args.min_seconds is None else args.min_seconds,
            BATCH_RUNS if args.runs is None else args.runs,
            BATCH_WARMUP if args.warmup is None else args.warmup,
            args.progress,
        )
    except MeasureError as exc:
        return _fail(args.json, exc.code, str(exc), exc.exit_code)
    except OSError as exc:
        message = f"cannot read {exc.filename or 'a model'}: {exc.strerror or exc}"
        return _fail(args.json, "bad_model", message, EXIT_BAD_MODEL)
    if args.json:
        print(json.dumps(result))
    else:
        for timing in result["timings"]:
            print(
                f"{timing['model']}: median {timing['median_ms']:.3f} ms on "
                f"{timing['threads']} thread(s) over {result['rounds']} round(s)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
