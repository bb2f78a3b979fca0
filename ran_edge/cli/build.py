"""`ran-edge build`: flags -> a BuildRequest -> `build_many` -> tables or report JSON."""

from __future__ import annotations

from pathlib import Path

import click

from ran_edge.build.requests import DEFAULT_MODEL, DEFAULT_TARGET, BuildRequest
from ran_edge.cli.common import (
    CPU_FLAGS,
    QUANTIZE_FLAGS,
    TARGET_HELP,
    RichProgress,
    cpu_flags,
    cpu_run_options,
    firmware_flags,
    firmware_options,
    parse_input_shape,
    print_builds,
    quantize_flags,
    quantize_options,
    run_command,
)


@click.command()
@click.option("--target", "-t", "target_names", multiple=True, help=TARGET_HELP)
@click.option(
    "--model",
    "--arch",
    "-m",
    "model_spec",
    default=DEFAULT_MODEL,
    show_default=True,
    help="A zoo name (`ran-edge models`), `file.py:factory` (runs that file), a torch.export "
    "`.pt2`, or an architecture `.json` written by `ran-edge search` (--arch is an alias).",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="A state_dict saved with torch.save; loaded with weights_only=True.",
)
@click.option("--input-shape", help="N,C,H,W of the model input (default: the model's own).")
@click.option(
    "--calib",
    help="Calibration set: a name under calibration/, a spec .toml, a folder of images, "
    "or .npy/.npz arrays (default: the built-in `photos` set).",
)
@click.option(
    "--calib-samples", type=int, help="Number of calibration samples (default: the set's own)."
)
@click.option(
    "--holdout",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Held-out samples for measuring int8 vs float fidelity.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build"),
    show_default=True,
    help="Output root; results go to <out>/<model>/<target>/.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for calibration sampling."
)
@quantize_flags
@click.option(
    "--allow-cpu-fallback",
    is_flag=True,
    help="Write the build even if ops stay on the CPU (default: fail and name them).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Skip targets whose report.json was built from exactly the same inputs.",
)
@click.option(
    "--firmware", is_flag=True, help="Also write firmware/ sources (see `ran-edge firmware`)."
)
@firmware_flags
@cpu_flags
@click.option("--html", is_flag=True, help="Also write <out>/<model>/report.html (see `report`).")
@click.option("--layers", is_flag=True, help="Also print the per-layer table.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print report.json content instead of tables."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def build(
    target_names,
    model_spec,
    weights,
    input_shape,
    calib,
    calib_samples,
    holdout,
    out,
    seed,
    allow_cpu_fallback,
    incremental,
    firmware,
    html,
    layers,
    as_json,
    quiet,
    **grouped,
) -> None:
    """Convert a PyTorch model to int8 TFLite and profile it on each target: compiled with
    Vela for Ethos-U, run or estimated on LiteRT + XNNPACK for CPU targets.

    \b
    Stages: load model -> export float TFLite (litert-torch, NHWC input)
            -> static int8 quantization calibrated on --calib (ai-edge-quantizer)
            -> int8 vs float fidelity on held-out samples (LiteRT)
            -> per --target: Vela (ethos-u) | measured or estimated (cortex-a)
            -> report.json + tables, and one comparison table for several targets.
    \b
    CPU targets: `host` is measured on this machine; the others (rpi4, rpi5, ...) are
    estimated from their profile's [cpu_model], or measured on the board with --remote.
    The build fails (exit 1) if any op would stay on an Ethos-U's CPU, naming each op and
    Vela's reason, unless --allow-cpu-fallback is given; then the Cortex-M time of those
    ops is estimated and added (system latency = NPU + CPU).
    """

    def body() -> None:
        request = BuildRequest(
            model=model_spec,
            targets=tuple(target_names) or (DEFAULT_TARGET,),
            out=out,
            weights=weights,
            input_shape=parse_input_shape(input_shape),
            calib=calib,
            calib_samples=calib_samples,
            holdout=holdout,
            seed=seed,
            quantize=quantize_options(**_take(grouped, QUANTIZE_FLAGS)),
            allow_cpu_fallback=allow_cpu_fallback,
            incremental=incremental,
            cpu=cpu_run_options(measure_all=False, **_take(grouped, CPU_FLAGS)),
            firmware=firmware_options(**grouped) if firmware else None,
            html=html,
        )
        from ran_edge.build.many import build_many

        result = build_many(request, RichProgress(not quiet))
        print_builds(result.builds, as_json, layers)

    run_command(body)


def _take(options: dict, names: tuple[str, ...]) -> dict:
    """Pop one flag group out of click's keyword arguments."""
    return {name: options.pop(name) for name in names}
