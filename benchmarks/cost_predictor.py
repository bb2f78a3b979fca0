"""How well the cost table predicts whole-network Vela cycles (issue #5, part 4).

Draws random RAN-e architectures (collapse pattern, kernel, expansion per block on the
RAN-e stack skeleton), fills the cost table for every block they use, compiles each whole
network with Vela, fits `full = a * sum + b` per target on the first `--fit` networks and
scores it on the rest. Prints median and worst absolute percentage error per target.

    .venv/bin/python benchmarks/cost_predictor.py            # 30 networks at 128x128
    .venv/bin/python benchmarks/cost_predictor.py --archs 30 --resolution 224 \
        --target ethos-u55-128 --target ethos-u65-256 --target ethos-u85-256

The "sum + context" column adds the measured context terms (`ran_edge.search.context`:
17 whole networks per resolution, no fit to the scored networks).

Everything is cached under --cache: a rerun only recomputes what changed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ran_edge.jobs import JobPool
from ran_edge.search import CostTable, LinearCorrection, random_arch, summed_cost
from ran_edge.search.context import context_networks, context_terms
from ran_edge.search.graphs import NetworkGraph
from ran_edge.search.predictor import abs_pct_errors

DEFAULT_TARGETS = ("ethos-u55-128", "ethos-u65-256")


def _errors(predicted: list[float], actual: list[float]) -> str:
    errs = abs_pct_errors(predicted, actual)
    return f"{statistics.median(errs):.2f}% / {max(errs):.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--fit", type=int, default=10, help="networks the correction is fitted on")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--cache", type=Path, default=Path("build/cost-cache"))
    parser.add_argument(
        "--target", action="append", dest="targets", help="name or .toml path; repeatable"
    )
    args = parser.parse_args()
    targets = args.targets or list(DEFAULT_TARGETS)

    rng = random.Random(args.seed)
    archs = [random_arch(rng, args.resolution) for _ in range(args.archs)]
    pairs = list(dict.fromkeys(p for a in archs for p in a.parts()))
    networks = [NetworkGraph(a) for a in archs]
    console = Console(width=120)
    start = time.perf_counter()

    table_out = Table(
        title=f"whole-network cycles vs Vela: {args.archs} random RAN-e nets at "
        f"{args.resolution}x{args.resolution}, correction fitted on {args.fit}, "
        f"scored on {args.archs - args.fit} (median / worst abs % error)"
    )
    columns = (
        "target",
        "cycles",
        "sum only (all nets)",
        "sum + context (all nets, no fit)",
        "sum + linear fit (held out)",
        "fit",
    )
    for col in columns:
        table_out.add_column(col)
    for name in targets:
        table = CostTable(name, args.cache, pool=JobPool(args.workers))
        table.fill(pairs)
        context = context_networks(args.resolution)
        table.measure_all([*networks, *context], label=f"full networks {name}")
        full = [table.measure(n) for n in networks]
        summed = [summed_cost(table, a) for a in archs]
        terms = context_terms(table.measure, table.cost, args.resolution)
        for field in ("total_cycles", "npu_cycles"):
            s = [float(getattr(c, field)) for c in summed]
            f = [float(getattr(c, field)) for c in full]
            fit = LinearCorrection.fit(s[: args.fit], f[: args.fit])
            held = [fit(x) for x in s[args.fit :]]
            in_context = "(total cycles only)"
            if field == "total_cycles":
                in_context = _errors([x + terms.total(a) for x, a in zip(s, archs, strict=True)], f)
            table_out.add_row(
                table.target.name,
                field,
                _errors(s, f),
                in_context,
                _errors(held, f[args.fit :]),
                f"{fit.scale:.3f} x + {fit.offset:,.0f}",
            )
    console.print(table_out)
    console.print(
        f"{len(pairs)} table entries, {len(networks)} networks (+{len(context)} for the "
        "context terms), "
        f"{time.perf_counter() - start:.0f} s (cache: {args.cache})"
    )


if __name__ == "__main__":
    main()
