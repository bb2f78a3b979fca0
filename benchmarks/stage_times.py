"""Time per stage (export, quantize, Vela) and ran-edge's overhead over the bare tools.

    .venv/bin/python benchmarks/stage_times.py [--model mobilenet_v2] [--target ethos-u55-128] [--repeats 3]

"direct" calls litert-torch, ai-edge-quantizer and the `vela` CLI with nothing around them;
"ran-edge" runs the same stages through ran_edge.pipeline, which adds the .tflite checks,
int8-vs-float fidelity, module attribution and the atomic report writing. Both get the
same preloaded calibration arrays. Medians over --repeats runs (machines here are shared).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ran_edge.calib import load_calibration
from ran_edge.hw.targets import resolve_target
from ran_edge.models import load_model
from ran_edge.pipeline import build_target, convert_model
from ran_edge.quiet import captured_output


def _nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def direct_run(loaded, calib, target, workdir: Path) -> dict[str, float]:
    """The three tools called bare, as a user scripting them by hand would."""
    import litert_torch
    from ai_edge_quantizer import quantizer, recipe

    times = {}
    t = time.perf_counter()
    n, c, h, w = loaded.input_shape
    with captured_output():
        wrapped = litert_torch.to_channel_last_io(loaded.module, args=[0]).eval()
        model = litert_torch.convert(wrapped, (torch.zeros(n, h, w, c),))
    float_bytes = model.model_content()
    times["export"] = time.perf_counter() - t

    t = time.perf_counter()
    q = quantizer.Quantizer(bytearray(float_bytes), recipe.static_wi8_ai8())
    samples = [{"args_0": s[None]} for s in _nhwc(calib.samples)]
    with captured_output():
        result = q.quantize(q.calibrate({"serving_default": samples}), enable_progress_report=False)
    int8_path = workdir / "model_int8.tflite"
    int8_path.write_bytes(result.quantized_model)
    times["quantize"] = time.perf_counter() - t

    t = time.perf_counter()
    vela = [str(Path(sys.executable).with_name("vela")), str(int8_path)]
    vela += ["--accelerator-config", target.npu.accelerator, *target.vela.cli_args()]
    vela += ["--verbose-performance", "--output-dir", str(workdir / "vela")]
    subprocess.run(vela, check=True, capture_output=True)
    times["vela"] = time.perf_counter() - t
    return times


def ran_edge_run(loaded, calib, target, workdir: Path) -> dict[str, float]:
    times: dict[str, float] = {}

    class Timer:
        def __init__(self, label: str) -> None:
            self.key = label.split()[0]

        def __enter__(self):
            self.t = time.perf_counter()

        def __exit__(self, *exc):
            times[self.key] = time.perf_counter() - self.t

    t = time.perf_counter()
    converted = convert_model(loaded, calib, stage=Timer)
    times["convert total"] = time.perf_counter() - t
    t = time.perf_counter()
    build_target(converted, target, workdir)
    times["vela"] = time.perf_counter() - t
    return {
        "export": times["export"],
        "quantize": times["calibrate"],
        "fidelity": times.get("int8", 0.0),
        "other": times["convert total"]
        - times["export"]
        - times["calibrate"]
        - times.get("int8", 0.0),
        "vela": times["vela"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--target", default="ethos-u55-128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calib-samples", type=int, default=100)
    args = parser.parse_args()

    loaded = load_model(args.model)
    target = resolve_target(args.target)
    calib = load_calibration(None, loaded.input_shape, num_samples=args.calib_samples, holdout=16)
    runs: dict[str, list[dict[str, float]]] = {"direct": [], "ran-edge": []}
    for fn in (direct_run, ran_edge_run):  # warm-up: imports and first-call costs, untimed
        with tempfile.TemporaryDirectory() as tmp:
            fn(loaded, calib, target, Path(tmp))
    for i in range(args.repeats):
        for mode, fn in (("direct", direct_run), ("ran-edge", ran_edge_run)):
            with tempfile.TemporaryDirectory() as tmp:
                runs[mode].append(fn(loaded, calib, target, Path(tmp)))
        print(f"run {i + 1}/{args.repeats} done", file=sys.stderr)

    def med(mode: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in runs[mode])

    table = Table(
        title=f"{args.model} on {args.target}: median seconds over {args.repeats} runs, "
        f"{len(calib.samples)} calibration samples"
    )
    for col in ("stage", "direct", "ran-edge", "ran-edge / direct"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    stages = ("export", "quantize", "vela", "fidelity", "other")
    for stage in stages:
        d, r = med("direct", stage), med("ran-edge", stage)
        table.add_row(stage, f"{d:.2f}" if d else "-", f"{r:.2f}", f"{r / d:.3f}" if d else "-")
    # Totals are sums of per-stage medians: robust to one slow run on a shared machine.
    direct_total = sum(med("direct", s) for s in ("export", "quantize", "vela"))
    same_stages = sum(med("ran-edge", s) for s in ("export", "quantize", "vela"))
    full = sum(med("ran-edge", s) for s in stages)
    table.add_row(
        "three tools",
        f"{direct_total:.2f}",
        f"{same_stages:.2f}",
        f"{same_stages / direct_total:.3f}",
    )
    table.add_row("everything", f"{direct_total:.2f}", f"{full:.2f}", f"{full / direct_total:.3f}")
    Console(width=120).print(table)
    print(
        f"overhead over the bare tools: {100 * (same_stages / direct_total - 1):+.1f}% on the same "
        f"three stages, {100 * (full / direct_total - 1):+.1f}% including fidelity, checks and reports"
    )


if __name__ == "__main__":
    main()
