"""`ran-edge calibrate-target`: fit a CPU profile's latency model to this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ran_edge.cli.common import RichProgress, run_command, stdout


@click.command("calibrate-target")
@click.option("--target", "-t", "target_name", required=True, help="The CPU profile to fit.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where to write the calibrated profile (default: ./<target>.calibrated.toml).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A quarter of the micro-benchmarks, fewer passes: seconds instead of minutes, a "
    "coarser fit.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def calibrate_target(target_name, out, quick, as_json, quiet) -> None:
    """Fit a CPU profile's [cpu_model] to this machine: run it on the board you profile.

    \b
    Builds ran-edge's micro-benchmarks (int8 convs of several shapes, depthwise, FC, add,
    pooling, op chains, one reference-kernel op) through its own export + quantisation,
    times each in LiteRT + XNNPACK here at 1 thread and at the profile's threads, and fits
    the estimator's parameters (docs/cpu-targets.md). Writes the profile with its
    [cpu_model] replaced, comments kept: commit it, then use it with
      ran-edge profile m.tflite --target ./rpi4.calibrated.toml
    or put it in a folder named by $RAN_EDGE_TARGET_PATH (it shadows the shipped profile).
    """

    def body() -> None:
        from ran_edge.targets.cortex_a.calibrate import calibrate_profile

        outcome = calibrate_profile(target_name, out, quick=quick, progress=RichProgress(not quiet))
        if as_json:
            click.echo(json.dumps(outcome.to_json(), indent=2))
            return
        target, path, result = outcome.target, outcome.path, outcome.calibration
        from rich.table import Table

        table = Table(title=f"calibrated {target.name}", title_justify="left", show_header=False)
        table.add_column("item", style="bold")
        table.add_column("value")
        table.add_row("written", str(path))
        table.add_row("timings", f"{result.fit.samples} (threads {list(result.threads)})")
        table.add_row("median abs error (in-sample)", f"{result.fit.median_abs_pct_error:.1f} %")
        table.add_row("Spearman (in-sample)", f"{result.fit.spearman:.3f}")
        for name, value in vars(result.params).items():
            table.add_row(name, f"{value:.6g}")
        stdout.print(table)

    run_command(body)
