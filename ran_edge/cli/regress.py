"""`ran-edge regress`: the CI gate on Vela estimates and int8 fidelity against a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ran_edge.cli.common import (
    RichProgress,
    output_flags,
    ray_option,
    run_command,
    stderr,
    stdout,
)
from ran_edge.errors import StageError


@click.command()
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=Path("ci/baselines.json"),
    show_default=True,
    help="The committed baseline JSON.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("ci/regress.toml"),
    show_default=True,
    help="Models, targets and per-metric tolerances (TOML).",
)
@click.option(
    "--reports",
    type=click.Path(path_type=Path),
    help="Read <dir>/<model>/<target>/report.json instead of building.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build/regress"),
    show_default=True,
    help="Where builds go (reused when their inputs are unchanged).",
)
@ray_option("the builds (one task per model)")
@click.option("--update", is_flag=True, help="Rewrite the baseline from the current figures.")
@click.option("--junit", type=click.Path(path_type=Path), help="Also write JUnit XML here.")
@output_flags("the comparison")
def regress(
    baseline, config_path, reports, out, ray_address, update, junit, as_json, quiet
) -> None:
    """Gate CI on Vela estimates: compare cycles, inferences/s, memory and NPU-op share
    of each model x target against a committed baseline; with `holdout = N` in the config,
    also int8 fidelity (logit SQNR, top-1 agreement), against the baseline and against
    absolute [floors].

    \b
    Exit 0: nothing worse than its tolerance (better, same, new or missing entries are
    listed). Exit 1: at least one metric regressed beyond its tolerance; the table names
    it. --update rewrites the baseline (sorted, stable formatting) and exits 0.
    Docs and a GitHub Actions example: docs/ci-regression-gate.md.
    """

    def body() -> None:
        from ran_edge.regress.gate import GateRequest, run_gate

        request = GateRequest(baseline, config_path, reports, out, update, junit, ray_address)
        result = run_gate(request, RichProgress(not quiet))
        if result.updated is not None:
            stderr.print(f"[green]✓[/green] wrote {baseline} ({result.updated} entries)")
            return
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, default=str))
        else:
            _print_deltas(result.deltas)
        if result.failure():
            raise StageError(result.failure())

    run_command(body)


def _print_deltas(deltas) -> None:
    styles = {
        "worse": "bold red",
        "better": "green",
        "new": "cyan",
        "missing": "yellow",
        "same": "dim",
        "below floor": "bold red",
    }
    from rich.table import Table

    table = Table(title="Vela estimates and int8 fidelity vs baseline", title_justify="left")
    for col in ("model@target", "metric", "baseline", "current", "change", "tolerance", "verdict"):
        table.add_column(
            col,
            justify="right" if col in ("baseline", "current", "change", "tolerance") else "left",
        )
    for d in deltas:
        table.add_row(
            d.entry,
            d.metric,
            "-" if d.baseline is None else f"{d.baseline:,.6g}",
            "-" if d.current is None else f"{d.current:,.6g}",
            "-" if d.change_pct is None else f"{d.change_pct:+.2f}%",
            "floor" if d.verdict == "below floor" else f"{d.tolerance_pct:g}%",
            f"[{styles[d.verdict]}]{d.verdict}[/]",
        )
    stdout.print(table)
    counts = {v: sum(d.verdict == v for d in deltas) for v in styles}
    stdout.print(", ".join(f"{n} {v}" for v, n in counts.items() if n))
