"""`ran-edge calibrate-target`: fit a CPU profile's latency model to this machine or a board."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ran_edge.cli.common import (
    REMOTE_FLAGS,
    RichProgress,
    output_flags,
    remote_flags,
    remote_host,
    run_command,
    stdout,
)

REMOTE_HELP = (
    "Time the micro-benchmarks on a board over SSH (key login, BatchMode) and fit here: they "
    "go with ran_edge/targets/cortex_a/measure.py to a temp folder there (one scp) and run "
    "with its python3 (one ssh call), which needs numpy and ai-edge-litert."
)


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
    help="A third of the micro-benchmarks, 8 stacks, fewer passes: a minute instead of "
    "several, a coarser fit and a wider band.",
)
@output_flags("the fit")
@remote_flags(REMOTE_HELP)
def calibrate_target(target_name, out, quick, as_json, quiet, **remote_args) -> None:
    """Fit a CPU profile's [cpu_model] to the board you profile: run it there, or time it
    from here with --remote.

    \b
    Builds ran-edge's micro-benchmarks (int8 convs of several shapes, depthwise, FC, add,
    pooling, op chains, the ops XNNPACK leaves to TFLite) and 24 random op stacks through
    its own export + quantisation, times each in LiteRT + XNNPACK at 1 thread and at the
    profile's threads, fits the estimator's parameters, and derives its uncertainty band
    from the stacks each fold of the fit held out (docs/cpu-targets.md). Writes the profile
    with its [cpu_model] and band replaced, comments kept: commit it, then use it with
      ran-edge profile m.tflite --target ./rpi4.calibrated.toml
    or put it in a folder named by $RAN_EDGE_TARGET_PATH (it shadows the shipped profile).

    \b
    Without --remote the timings are taken on this machine. To fit a board from your
    workstation, time them there over SSH (the board needs only python3 with numpy and
    ai-edge-litert; the fit runs here):
      ran-edge calibrate-target --target rpi4 --remote pi@raspberrypi.local
      ran-edge calibrate-target --target rpi4 --remote pi@192.168.1.20:2222 \\
          --identity ~/.ssh/pi_key --remote-python /home/pi/venv/bin/python
    """

    def body() -> None:
        from ran_edge.targets.cortex_a.calibrate import calibrate_profile

        remote = remote_host(**{k: remote_args[k] for k in REMOTE_FLAGS})
        if remote is not None:
            from ran_edge.targets.cortex_a.batch_timing import check_board

            check_board(remote)  # seconds, before a minute of building benchmarks
        outcome = calibrate_profile(
            target_name, out, quick=quick, progress=RichProgress(not quiet), remote=remote
        )
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
        band = result.band
        table.add_row(
            "uncertainty band",
            f"x{band.low:.3f} .. x{band.high:.3f} of an estimate covers {band.coverage:.0%} "
            f"(from {band.samples} held-out stack timings)",
        )
        table.add_row("Spearman (in-sample)", f"{result.fit.spearman:.3f}")
        for name, value in vars(result.params).items():
            table.add_row(name, f"{value:.6g}")
        stdout.print(table)

    run_command(body)
