"""Richer context models for the cost table, scored like the kept one (issue #15).

The kept model (`ran_edge.search.context`: base + a term per collapsed block + a term per
collapsed neighbouring pair, 32 whole networks) leaves U85-256 at 224 with one network
at 11.9% worst. This benchmark measures three richer models on the same 30 random
networks (seed 0), all built from whole networks with every other block at the
reference (k3e2), no fit to the scored networks:

- `swaps`: a term for every inverted-residual candidate at slots 0..4 (8 per slot),
  added to the kept model;
- `window 0-1`: the first two slots costed jointly (all 10 x 10 candidate pairs),
  replacing their single and pair terms;
- `windows 0-1, 1-2`: both neighbouring pairs of the first three slots jointly, the
  middle slot's single term subtracted once (inclusion-exclusion).

    .venv/bin/python benchmarks/context_models.py [--target ethos-u85-256] [--resolution 224]

Cold: 262 distinct whole networks (about 40 min on 2 cores for the first target; a second
target reruns only Vela). Everything is cached under --cache.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ran_edge.jobs import JobPool
from ran_edge.models.ran_e_space import (
    ALL_BLOCK_CANDIDATES,
    COLLAPSED,
    Arch,
    Candidate,
    ran_e_slots,
    random_arch,
    space_parts,
)
from ran_edge.search import CostTable, summed_cost
from ran_edge.search.context import REFERENCE, context_networks, context_terms
from ran_edge.search.graphs import NetworkGraph
from ran_edge.search.predictor import abs_pct_errors

SWAP_SLOTS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ethos-u85-256")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--cache", type=Path, default=Path("build/cost-cache"))
    args = parser.parse_args()
    slots = ran_e_slots(args.resolution)
    table = CostTable(args.target, args.cache, pool=JobPool(args.workers))

    def with_blocks(assign: dict[int, Candidate]) -> NetworkGraph:
        blocks = tuple((s, assign.get(i, REFERENCE)) for i, s in enumerate(slots))
        return NetworkGraph(Arch(args.resolution, blocks))

    rng = random.Random(0)
    archs = [random_arch(rng, args.resolution) for _ in range(args.archs)]
    irs = [c for c in ALL_BLOCK_CANDIDATES if c not in (REFERENCE, COLLAPSED)]
    swaps = [with_blocks({i: c}) for i in range(SWAP_SLOTS) for c in irs]
    cands = ALL_BLOCK_CANDIDATES
    windows = [with_blocks({i: a, i + 1: b}) for i in (0, 1) for a in cands for b in cands]
    table.fill(space_parts(args.resolution))
    table.measure_all(
        [*map(NetworkGraph, archs), *context_networks(args.resolution), *swaps, *windows],
        label=f"whole networks {args.target}",
    )
    terms = context_terms(table.measure, table.cost, args.resolution)
    ref = table.measure(with_blocks({})).total_cycles

    def in_network(assign: dict[int, Candidate]) -> int:
        """What the blocks in `assign` cost in the reference network beyond their table
        difference from the reference blocks."""
        table_diff = sum(
            table.cost(slots[i], c).total_cycles - table.cost(slots[i], REFERENCE).total_cycles
            for i, c in assign.items()
        )
        return table.measure(with_blocks(assign)).total_cycles - ref - table_diff

    def kept(arch: Arch, first: int = 0) -> int:
        """The kept model's terms for slots >= first (pairs starting there)."""
        c = [cand == COLLAPSED for _s, cand in arch.blocks]
        singles = sum(terms.collapse[i] for i in range(first, len(c)) if c[i])
        pairs = sum(terms.pair[i] for i in range(first, len(c) - 1) if c[i] and c[i + 1])
        return terms.base + singles + pairs

    def swap_terms(arch: Arch) -> int:
        return sum(
            in_network({i: c}) for i, (_s, c) in enumerate(arch.blocks[:SWAP_SLOTS]) if c in irs
        )

    def pair_term(g: list[Candidate], i: int) -> int:
        return terms.pair[i] if g[i] == COLLAPSED and g[i + 1] == COLLAPSED else 0

    def window01(arch: Arch) -> int:
        g = [c for _s, c in arch.blocks]
        return kept(arch, first=2) + pair_term(g, 1) + in_network({0: g[0], 1: g[1]})

    def windows012(arch: Arch) -> int:
        g = [c for _s, c in arch.blocks]
        return (
            kept(arch, first=3)
            + pair_term(g, 2)
            + in_network({0: g[0], 1: g[1]})
            + in_network({1: g[1], 2: g[2]})
            - in_network({1: g[1]})
        )

    full = [table.measure(NetworkGraph(a)).total_cycles for a in archs]
    summed = [summed_cost(table, a).total_cycles for a in archs]
    models = {
        "kept (32 networks)": lambda a: kept(a),
        f"kept + swaps at slots 0-{SWAP_SLOTS - 1}": lambda a: kept(a) + swap_terms(a),
        "window 0-1": window01,
        "windows 0-1, 1-2": windows012,
    }
    out = Table(
        title=f"context models on {args.target} at {args.resolution}: {args.archs} random "
        "RAN-e networks, total cycles vs Vela (no fit)"
    )
    for col in ("model", "median abs %", "worst abs %", "within 10%"):
        out.add_column(col, justify="left" if col == "model" else "right")
    for name, extra in models.items():
        errs = abs_pct_errors([s + extra(a) for s, a in zip(summed, archs, strict=True)], full)
        within = sum(e <= 10 for e in errs)
        out.add_row(
            name, f"{statistics.median(errs):.2f}", f"{max(errs):.2f}", f"{within}/{len(errs)}"
        )
    Console(width=120).print(out)


if __name__ == "__main__":
    main()
