"""What every ran-edge command shares: one readable error line and the right exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from ran_edge.errors import RanEdgeError


def run_command(body: Callable[[], None]) -> None:
    """Run a command body; a RanEdgeError prints `error: ...` to stderr and exits with its code.

    click.echo writes to the *current* stderr, unwrapped, so paths in messages stay pasteable.
    """
    try:
        body()
    except RanEdgeError as exc:
        click.echo(click.style(f"error: {exc}", fg="red", bold=True), err=True)
        sys.exit(exc.exit_code)
