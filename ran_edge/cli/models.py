"""`ran-edge models`: the built-in model zoo, as a table or JSON."""

from __future__ import annotations

import json

import click

from ran_edge.cli.common import run_command, stdout


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(as_json: bool) -> None:
    """List the built-in model zoo (use a name with `build --model`)."""

    def body() -> None:
        from ran_edge.models.catalogue import read_catalogue

        entries = read_catalogue()
        if as_json:
            rows = [
                {
                    "name": e.name,
                    "family": e.family,
                    "input_shape": list(e.input_shape),
                    "description": e.description,
                }
                for e in entries
            ]
            click.echo(json.dumps(rows, indent=2))
            return
        from rich.table import Table

        table = Table(title="model zoo", title_justify="left")
        for col in ("name", "family", "input", "description"):
            table.add_column(col)
        for e in entries:
            table.add_row(e.name, e.family, "x".join(map(str, e.input_shape)), e.description)
        stdout.print(table)

    run_command(body)
