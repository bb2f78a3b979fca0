"""`ran-edge profile`: flags -> a ProfileRequest -> `profile_many` -> tables or report JSON.
Light on purpose: an Ethos-U profile of a .tflite loads neither torch nor the converter."""

from __future__ import annotations

from pathlib import Path

import click

from ran_edge.build.requests import DEFAULT_TARGET, ProfileRequest
from ran_edge.cli.common import (
    CPU_FLAGS,
    TARGET_HELP,
    RichProgress,
    cpu_flags,
    cpu_run_options,
    print_builds,
    run_command,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", "target_names", multiple=True, help=TARGET_HELP)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build"),
    show_default=True,
    help="Output root; results go to <out>/<model stem>/<target>/.",
)
@click.option(
    "--measure",
    is_flag=True,
    help="CPU targets: run the model (LiteRT + XNNPACK) and report measured figures, here "
    "or on --remote, instead of estimating them.",
)
@click.option(
    "--float",
    "float_model",
    type=click.Path(path_type=Path),
    help="The float .tflite MODEL was quantized from: with --samples, report int8 fidelity "
    "and per-op sensitivity (where the int8 error comes from).",
)
@click.option(
    "--samples",
    type=click.Path(path_type=Path),
    help="With --float: held-out inputs (.npy/.npz, NHWC or NCHW float32) to compare on.",
)
@cpu_flags
@click.option("--html", is_flag=True, help="Also write <out>/<model>/report.html.")
@click.option("--layers", is_flag=True, help="Also print the per-layer table.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print report.json content instead of tables."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def profile(
    model: Path,
    target_names,
    out: Path,
    measure: bool,
    float_model: Path | None,
    samples: Path | None,
    html: bool,
    layers: bool,
    as_json: bool,
    quiet: bool,
    **cpu_args,
) -> None:
    """Profile an int8 .tflite made elsewhere on Ethos-U and/or CPU targets.

    \b
    Ethos-U: Vela's figures, plus the estimated Cortex-M time of any op left on the CPU
    (reported with Vela's reason; not an error here).
    CPU targets: estimated from the profile's [cpu_model] unless --measure (or --remote):
      ran-edge profile m.tflite --target host --measure --threads 2 --runs 100
      ran-edge profile m.tflite --target rpi4 --remote pi@raspberrypi.local:22
    A measurement reports the median and p90 of --runs timed invokes after --warmup, and
    the peak resident-memory growth of a fresh process loading and running the model.
    Per-module attribution works when op names carry the torch module path (litert-torch
    does).
    """

    def body() -> None:
        from ran_edge.targets.ethos_u import vela_worker

        vela_worker.prestart()  # Vela imports in its own process while this one loads
        from ran_edge.build.profile import profile_many

        request = ProfileRequest(
            model=model,
            targets=tuple(target_names) or (DEFAULT_TARGET,),
            out=out,
            float_model=float_model,
            samples=samples,
            cpu=cpu_run_options(measure_all=measure, **{k: cpu_args[k] for k in CPU_FLAGS}),
            html=html,
        )
        result = profile_many(request, RichProgress(not quiet))
        print_builds(result.builds, as_json, layers)

    run_command(body)
