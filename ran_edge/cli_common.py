"""What every ran-edge command shares: one readable error line and the right exit code,
the stage spinner, and how an input shape is read."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator

import click
from rich.console import Console

from ran_edge.errors import RanEdgeError, UsageError
from ran_edge.quiet import progress_stream

stderr = Console(file=progress_stream())
# Tables are wide; when output goes to a file or CI log, do not squeeze them to 80 columns.
stdout = Console(width=None if sys.stdout.isatty() else 140)
DEFAULT_TARGET = "ethos-u55-128"  # the target commands use when none is given


def run_command(body: Callable[[], None]) -> None:
    """Run a command body; a RanEdgeError prints `error: ...` to stderr and exits with its code.

    click.echo writes to the *current* stderr, unwrapped, so paths in messages stay pasteable.
    """
    try:
        body()
    except RanEdgeError as exc:
        click.echo(click.style(f"error: {exc}", fg="red", bold=True), err=True)
        sys.exit(exc.exit_code)


def parse_input_shape(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(
            f"--input-shape {value!r} is not a list of integers; write it as N,C,H,W (e.g. 1,3,224,224)."
        ) from None
    if len(shape) != 4 or min(shape) < 1:
        raise UsageError(
            f"--input-shape {value!r} must be four positive integers N,C,H,W (e.g. 1,3,224,224)."
        )
    if shape[0] != 1:
        raise UsageError(f"--input-shape batch must be 1 for an embedded model, got {shape[0]}.")
    return shape


@contextlib.contextmanager
def stage_printer(enabled: bool):
    """A stage reporter: a spinner while a stage runs, a tick and its time when done."""

    @contextlib.contextmanager
    def stage(label: str) -> Iterator[None]:
        if not enabled:
            yield
            return
        start = time.perf_counter()
        with stderr.status(f"{label} ..."):
            yield
        stderr.print(f"[green]✓[/green] {label} [dim]({time.perf_counter() - start:.1f} s)[/dim]")

    yield stage
