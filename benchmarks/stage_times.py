"""Time per stage (export, quantize, Vela) and ran-edge's overhead over the bare tools.

    .venv/bin/python benchmarks/stage_times.py [--model mobilenet_v2] [--target ethos-u55-128]
        [--targets ethos-u55-128,ethos-u55-256,ethos-u65-256,ethos-u85-256] [--repeats 3]

"bare tools" calls litert-torch, ai-edge-quantizer and the `vela` CLI with nothing around them;
"ran-edge" is `build` from the same loaded model and calibration arrays (`build_loaded`, the
loop `ran-edge build` runs): with every check on (int8 vs float fidelity and per-op
sensitivity, the TFLM reference check, the NPU gate), module attribution and atomic reports,
for one target and for several. Prints both ratios the build-speed goals are stated in, as medians of per-repeat ratios.
Medians over --repeats interleaved runs (machines here are shared).
"""

from __future__ import annotations

import argparse
import contextlib
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

from ran_edge.build.many import build_loaded
from ran_edge.build.results import resolve_targets
from ran_edge.calib import load_calibration
from ran_edge.models import load_model
from ran_edge.quiet import captured_output
from ran_edge.targets.loading import resolve_target


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
    times["rest"] = time.perf_counter() - t  # Vela
    times["total"] = times["export"] + times["quantize"] + times["rest"]
    return times


class StageClock:
    """A BuildProgress that records how long each stage took (first word of its label)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, label: str):
        start = time.perf_counter()
        yield
        key = label.split()[0].rstrip(",:")
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

    @contextlib.contextmanager
    def measure(self, label: str):
        yield None

    def note(self, message: str) -> None:
        pass


def ran_edge_run(loaded, calib, targets, workdir: Path) -> dict[str, float]:
    """`build` from the loaded model: convert once, every target, every check, every report."""
    clock = StageClock()
    t = time.perf_counter()
    build_loaded(loaded, calib, targets, workdir, incremental=False, progress=clock)
    total = time.perf_counter() - t
    export = clock.seconds.get("export", 0.0)
    quantize = clock.seconds.get("calibrate", 0.0)
    return {
        "export": export,
        "quantize": quantize,
        "total": total,
        "rest": total - export - quantize,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--target", default="ethos-u55-128")
    parser.add_argument(
        "--targets",
        default="ethos-u55-128,ethos-u55-256,ethos-u65-256,ethos-u85-256",
        help="the several-target build compared with the one-target build",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calib-samples", type=int, default=100)
    args = parser.parse_args()

    loaded = load_model(args.model)
    one = [resolve_target(args.target)]
    several = resolve_targets(args.targets.split(","))
    calib = load_calibration(None, loaded.input_shape, num_samples=args.calib_samples, holdout=16)
    modes = {
        "bare tools": lambda w: direct_run(loaded, calib, one[0], w),
        "ran-edge, 1 target": lambda w: ran_edge_run(loaded, calib, one, w),
        f"ran-edge, {len(several)} targets": lambda w: ran_edge_run(loaded, calib, several, w),
    }
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for fn in modes.values():  # warm-up: imports and first-call costs, untimed
        with tempfile.TemporaryDirectory() as tmp:
            fn(Path(tmp))
    for i in range(args.repeats):  # interleaved, so drift on a shared machine hits all alike
        for mode, fn in modes.items():
            with tempfile.TemporaryDirectory() as tmp:
                runs[mode].append(fn(Path(tmp)))
        print(f"run {i + 1}/{args.repeats} done", file=sys.stderr)

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    table = Table(
        title=f"{args.model}: median seconds over {args.repeats} runs, "
        f"{len(calib.samples)} calibration samples, {len(calib.holdout)} held out"
    )
    for col in ("", "export", "quantize", "rest", "total"):
        table.add_column(col, justify="left" if not col else "right")
    for mode in modes:
        table.add_row(
            mode, *(f"{med(mode, k):.2f}" for k in ("export", "quantize", "rest", "total"))
        )
    Console(width=120).print(table)
    one_name, many_name = "ran-edge, 1 target", f"ran-edge, {len(several)} targets"

    def paired(a: str, b: str) -> float:
        """Median over repeats of a/b within one repeat: drift on a shared machine cancels."""
        return statistics.median(
            ra["total"] / rb["total"] for ra, rb in zip(runs[a], runs[b], strict=True)
        )

    single, multi = paired(one_name, "bare tools"), paired(many_name, one_name)
    print(
        f"ran-edge build, 1 target ({one[0].name}) / bare tools: {single:.3f}x (goal <= 1.10)\n"
        f"ran-edge build, {len(several)} targets / 1 target: {multi:.3f}x (goal <= 1.25)\n"
        "(medians of the per-repeat ratios; ratios of the medians above: "
        f"{med(one_name, 'total') / med('bare tools', 'total'):.3f}x, "
        f"{med(many_name, 'total') / med(one_name, 'total'):.3f}x)"
    )


if __name__ == "__main__":
    main()
