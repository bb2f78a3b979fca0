"""`ran-edge search`: hardware-aware search over the RAN-e space on one Ethos-U target.

Loaded by the main group in ran_edge/cli/__init__.py. Flags -> a `SearchRequest` ->
`ran_edge.search.run.run_search` (fills the cost table for the (slot, candidate) pairs the
space needs, cached and in parallel, then solves for the proven optimum and runs a seeded
evolutionary search for the Pareto front, both scored by the table; see docs/search.md)
-> a summary or the JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ran_edge.cli.common import RichProgress, ray_option, run_command

if TYPE_CHECKING:
    from ran_edge.search.run import SearchRunResult


@click.command("search")
@click.option("--target", required=True, help="Ethos-U target name, alias or TOML path.")
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Distinct architectures to evaluate.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Search seed.")
@click.option(
    "--resolution",
    type=click.IntRange(min=32),
    default=224,
    show_default=True,
    help="Input resolution (square) the table is measured at.",
)
@click.option("--max-macs", type=click.IntRange(min=1), help="Largest MACs allowed.")
@click.option("--max-params", type=click.IntRange(min=1), help="Most parameters allowed.")
@click.option(
    "--min-macs",
    type=click.IntRange(min=1),
    help="Fewest MACs allowed (with --max-macs: compare at equal size, not by shrinking).",
)
@click.option("--min-params", type=click.IntRange(min=1), help="Fewest parameters allowed.")
@click.option(
    "--max-sram", type=click.FloatRange(min=0, min_open=True), help="Peak SRAM (KiB) allowed."
)
@click.option("--min-nn-mass", type=click.IntRange(min=0), help="Least NN-Mass (accuracy proxy).")
@click.option(
    "--min-nonlinear",
    type=click.IntRange(min=0),
    help="Least activation layers on the path (accuracy proxy).",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=Path("build/cost-cache"),
    show_default=True,
    help="Cost table cache (shared by targets and runs).",
)
@click.option("--name", default="ran_e_search", show_default=True, help="Architecture name.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Folder for <name>.json and pareto.png (default: build/<name>).",
)
@click.option(
    "--baseline-report",
    "baseline_reports",
    type=click.Path(path_type=Path),
    multiple=True,
    help="A build's report.json (e.g. efficientnet_lite0, mobilenet_v2) to mark on the plot.",
)
@click.option(
    "--workers", type=click.IntRange(min=1), help="Table-fill processes (default: cores)."
)
@ray_option("the table fill and the --fit compiles")
@click.option(
    "--context",
    is_flag=True,
    help="Add measured context terms to the table sum: what a whole network costs beyond "
    "its blocks' sandwiches, and what collapsing each block does to its neighbours (32 whole "
    "networks compiled once per target and resolution, cached; no fit). Makes U65/U85 "
    "totals usable at 224 without --fit (docs/search.md).",
)
@click.option(
    "--fit",
    type=int,
    default=0,
    show_default=True,
    help="Full networks to compile with Vela to fit the predictor's linear correction "
    "(0: the plain table sum; cached).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search(
    target: str,
    budget: int,
    seed: int,
    resolution: int,
    max_macs: int | None,
    max_params: int | None,
    min_macs: int | None,
    min_params: int | None,
    max_sram: float | None,
    min_nn_mass: int | None,
    min_nonlinear: int | None,
    cache_dir: Path,
    name: str,
    out: Path | None,
    baseline_reports: tuple[Path, ...],
    workers: int | None,
    ray_address: str | None,
    context: bool,
    fit: int,
    as_json: bool,
) -> None:
    """Search the RAN-e space (per block: inverted residual k3/5/7 x e2/4/6, or collapsed)
    for the highest predicted FPS on TARGET within the constraints; write the chosen
    architecture as <out>/<name>.json (build it with `ran-edge build --model <file>`) and
    the FPS-vs-MACs Pareto front as <out>/pareto.png.

    \b
    FPS = NPU clock / predicted total cycles, from the per-block Vela cost table summed,
    as is or (--fit N) through `full = a * sum + b` fitted on N whole networks from the
    space compiled with Vela (see docs/search.md for the accuracy per target). The first
    run on a target fills the table (slow, cached).

    \b
    The chosen architecture is the optimum of that prediction under the limits: a 0-1
    integer program over every slot and candidate, solved exactly (the output says when
    it is not proven). The seeded evolutionary search, --budget architectures, draws the
    Pareto front.
    """

    def body() -> None:
        from ran_edge.search.run import SearchRequest, run_search
        from ran_edge.search.search import Constraints

        request = SearchRequest(
            target=target,
            budget=budget,
            seed=seed,
            resolution=resolution,
            constraints=Constraints(
                max_macs=max_macs,
                max_params=max_params,
                min_macs=min_macs,
                min_params=min_params,
                max_sram_kib=max_sram,
                min_nn_mass=min_nn_mass,
                min_nonlinear=min_nonlinear,
            ),
            cache_dir=cache_dir,
            name=name,
            out=out,
            baseline_reports=tuple(baseline_reports),
            workers=workers,
            ray_address=ray_address,
            context=context,
            fit=fit,
        )
        result = run_search(request, RichProgress(True))
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
        else:
            _print_summary(result)

    run_command(body)


def _print_summary(result: SearchRunResult) -> None:
    found = result.search
    if result.context is not None:
        terms = result.context
        collapse = ", ".join(f"{t:+,}" for t in terms.collapse)
        click.echo(
            f"context terms (whole networks): base {terms.base:+,} cycles; per collapsed "
            f"block {collapse}"
        )
    if result.fit is not None:
        total = result.fit.total.summary()
        click.echo(
            f"correction fitted on {len(result.fit.networks)} full networks: total cycles = "
            f"{total['scale']:.3f} x sum {total['offset']:+,.0f} (in-sample error "
            f"median {total['median_error_pct']:.2f}%, worst {total['worst_error_pct']:.2f}%)"
        )
    click.echo(
        f"evaluated {found.evaluated:,} architectures "
        f"({found.per_second:,.0f}/s); Pareto front: {len(found.front)} points"
    )
    best = found.best
    click.echo(
        f"chosen: {best.fps:,.1f} FPS predicted, {best.macs / 1e6:,.1f} M MACs, "
        f"{best.params / 1e6:,.2f} M params, {best.sram_kib:,.0f} KiB peak SRAM, "
        f"NN-Mass {best.nn_mass:,}, {best.nonlinear} activation layers"
    )
    if found.proven_best:
        click.echo(
            "  the highest predicted FPS any architecture of the space reaches under these "
            f"limits (proven by an integer program in {1e3 * found.optimum.seconds:,.0f} ms)"
        )
    else:
        click.echo("  the best found; the integer program did not prove it optimal")
    click.echo(f"wrote {result.arch} and {result.plot}")
