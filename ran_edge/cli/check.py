"""`ran-edge check`: per PyTorch module, what Vela leaves on the CPU and how to fix it.

Loaded by the main group in ran_edge/cli/__init__.py. Exit 0 when every op of the model runs on
the NPU of every target, 1 when some op would stay on the CPU (after printing each one).
"""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from ran_edge.build.requests import DEFAULT_TARGET, CheckRequest
from ran_edge.cli.common import (
    RichProgress,
    model_flags,
    output_flags,
    parse_input_shape,
    run_command,
    stdout,
)


@click.command("check")
@click.option(
    "--target",
    "-t",
    "target_names",
    multiple=True,
    help=f"Ethos-U target name, alias or .toml path; repeat for several (default: {DEFAULT_TARGET}).",
)
@model_flags
@click.option(
    "--calib",
    help="Samples to quantize with (placement does not depend on their values; default: the "
    "built-in photos).",
)
@output_flags("the verdict")
def check(model_spec, target_names, weights, input_shape, calib, as_json, quiet) -> None:
    """Check in seconds whether MODEL maps 100% to the NPU, and what to change if not.

    \b
    Exports and quantizes MODEL, then asks Vela where every op runs (no fidelity run, no
    TFLM check, no files written). Each op Vela leaves on the CPU is listed with the
    PyTorch module it came from, Vela's reason and a concrete rewrite:
      ran-edge check net.py:make_net --input-shape 1,3,128,128
      ran-edge check mobilenet_v2 --target ethos-u55-128 --target ethos-u85-256 --json
    Exit 0: all ops on the NPU. Exit 1: some op stays on the CPU. Exit 2: bad input.
    """

    def body() -> None:
        from ran_edge.build.check import check_many

        request = CheckRequest(
            model=model_spec,
            targets=tuple(target_names) or (DEFAULT_TARGET,),
            weights=weights,
            input_shape=parse_input_shape(input_shape),
            calib=calib,
        )
        result = check_many(request, RichProgress(not quiet))
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2))
        else:
            _print(result)
        if not result.passed:
            sys.exit(1)

    run_command(body)


def _print(result) -> None:
    for rewrite in result.rewrites:
        stdout.print(f"[dim]rewritten for the NPU: {rewrite}[/dim]")
    for t in result.targets:
        state = (
            "[green]all on the NPU[/green]" if t.verdict.passed else "[red]not all on the NPU[/red]"
        )
        stdout.print(
            f"{result.model} on {t.target}: {state} (NPU ops {t.npu_ops}, CPU ops {t.cpu_ops})"
        )
        for problem in t.verdict.prechecks:
            stdout.print(f"  [red]-[/red] {problem}")
        if not t.verdict.cpu_ops:
            continue
        table = Table(title=f"ops Vela leaves on the CPU of {t.target}", title_justify="left")
        for col in ("op", "PyTorch module", "Vela's reason", "fix"):
            table.add_column(col, overflow="fold")
        for op in t.verdict.cpu_ops:
            table.add_row(op.op_type, op.module, op.reason, op.fix)
        stdout.print(table)
