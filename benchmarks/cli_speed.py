"""How fast the CLI answers: start-up of the light commands, and `profile` of an int8 .tflite
against running Vela itself on the same file with the same options.

    .venv/bin/python benchmarks/cli_speed.py [--tflite model_int8.tflite] [--repeats 5]

Without --tflite it first builds the demo MobileNetV2 (224) int8 model once. Every figure is
the median wall time of --repeats fresh processes (what a user waits for at the prompt); the
light commands are also checked to load no torch, litert-torch or TensorFlow.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

BIN = Path(sys.executable).parent
LIGHT = (
    ["--version"],
    ["--help"],
    ["targets"],
    ["models"],
    ["report", "--help"],
    ["regress", "--help"],
)
HEAVY_MODULES = ("torch", "litert_torch", "tensorflow")


def wall(cmd: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_imports(args: list[str]) -> list[str]:
    """The heavy packages a command's process has imported by the time it exits."""
    probe = (
        "import sys\nfrom ran_edge.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
    marker = [line for line in out.stdout.splitlines() if line.startswith("HEAVY:")]
    if not marker:
        raise RuntimeError(f"ran-edge {' '.join(args)} failed: {out.stderr[-500:]}")
    return [m for m in marker[-1].removeprefix("HEAVY:").split(",") if m]


def demo_int8(folder: Path) -> Path:
    from ran_edge.build.convert import convert_model
    from ran_edge.calib import load_calibration
    from ran_edge.models import load_model

    loaded = load_model("mobilenet_v2")
    calib = load_calibration(None, loaded.input_shape, num_samples=32, holdout=0)
    path = folder / "mobilenet_v2_int8.tflite"
    path.write_bytes(convert_model(loaded, calib).int8_tflite)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tflite", type=Path, help="int8 model to profile (default: demo)")
    parser.add_argument("--target", default="ethos-u55-128")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from ran_edge.targets.loading import resolve_target

    table = Table(title=f"median wall seconds over {args.repeats} fresh processes")
    for col in ("command", "seconds", "heavy imports"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for extra in LIGHT:
        seconds = wall([str(BIN / "ran-edge"), *extra], args.repeats)
        table.add_row(
            f"ran-edge {' '.join(extra)}",
            f"{seconds:.2f}",
            ", ".join(heavy_imports(extra)) or "none",
        )

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.tflite or demo_int8(folder)
        target = resolve_target(args.target)
        vela = [str(BIN / "vela"), str(model), "--accelerator-config", target.npu.accelerator]
        vela += [*target.vela.cli_args(), "--output-dir", str(folder / "vela")]
        profile = [str(BIN / "ran-edge"), "profile", str(model), "--target", args.target]
        profile += ["--out", str(folder / "out"), "-q"]
        wall(profile, 1)  # warm the file cache for both
        vela_s = wall(vela, args.repeats)
        profile_s = wall(profile, args.repeats)
        table.add_row(f"vela {model.name} ({args.target} options)", f"{vela_s:.2f}", "")
        table.add_row(
            f"ran-edge profile {model.name} --target {args.target}", f"{profile_s:.2f}", ""
        )
    Console(width=140).print(table)
    print(f"profile / Vela alone: {profile_s / vela_s:.2f}x (goal <= 1.5)")


if __name__ == "__main__":
    main()
