"""`ran-edge targets`: the target profiles found, as a table or JSON."""

from __future__ import annotations

import json

import click

from ran_edge.cli.common import run_command, stdout


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def targets(as_json: bool) -> None:
    """List every target profile (shipped ones and those in $RAN_EDGE_TARGET_PATH).

    A profile is a TOML file (see targets/README.md); aliases such as `ethos-u55`
    resolve to a documented default configuration. Two kinds: `ethos-u` NPUs (Vela) and
    `cortex-a` CPUs (LiteRT + XNNPACK: Raspberry Pi boards, generic Cortex-A cores, `host`).
    """

    def body() -> None:
        from ran_edge.targets.loading import list_targets

        found = list_targets()
        if as_json:
            click.echo(json.dumps([_target_row(t) for t in found], indent=2))
            return
        from rich.table import Table

        table = Table(title="target profiles", title_justify="left")
        for col in ("name", "aliases", "kind", "compute", "clock MHz", "config", "memory"):
            table.add_column(
                col,
                justify="right" if col == "clock MHz" else "left",
                no_wrap=col in ("name", "config"),  # names and Vela sections stay greppable
            )
        for t in found:
            table.add_row(t.name, ", ".join(t.aliases), t.kind, *t.spec.table_cells())
        stdout.print(table)
        stdout.print(
            "[dim]ethos-u: compiled with Vela (config = system config, memory = memory mode); "
            "cortex-a: LiteRT + XNNPACK on the CPU, `host` = this machine.[/dim]"
        )

    run_command(body)


def _target_row(t) -> dict:
    """One `targets --json` row; the kind's own fields come from its spec."""
    row = {"name": t.name, "aliases": list(t.aliases), "kind": t.kind}
    return row | t.spec.summary_row() | {"description": t.description, "file": str(t.source)}
