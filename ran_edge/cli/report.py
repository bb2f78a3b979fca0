"""`ran-edge report`: turn the report.json files of a build into one offline HTML page.

Loaded by the main group in ran_edge/cli/__init__.py; the page's dependencies (matplotlib,
jinja2) load only when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ran_edge.cli.common import run_command


@click.command("report")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where to write the page (default: <folder>/report.html; a folder gets report.html).",
)
@click.option("--title", help="Page title (default: '<model> on Ethos-U').")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"html": path, "targets": [...], "bytes": N} instead of a sentence.',
)
def report(path: Path, out: Path | None, title: str | None, as_json: bool) -> None:
    """Write a self-contained HTML report for a build: PATH is build/<model> (every target
    folder in it), one target folder, or a report.json.

    \b
    The page has a summary card per target (each figure marked Vela-estimated, derived,
    measured, ...), cycles and MAC utilisation per layer, the costliest PyTorch modules,
    targets side by side, int8 fidelity and CPU fallbacks. It needs no network to view:
    CSS and images are inline. .png/.svg files beside the target folders (a search's
    pareto.png, say) are shown too.
    """

    def body() -> None:
        from ran_edge.report.html import write_report_for

        written = write_report_for(path, out, title=title)
        if as_json:
            click.echo(json.dumps(written.to_json(), indent=2))
        else:
            click.echo(
                f"wrote {written.path} ({', '.join(written.targets)}; "
                f"{written.bytes / 1024:,.0f} KiB)"
            )

    run_command(body)
