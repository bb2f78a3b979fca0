"""`ran-edge search --fit N`: fit the predictor's linear correction on N full Vela compiles.

The plain table sum misses what exists only in a whole network; on ethos-u65-256
(Dedicated_Sram) it is ~25% optimistic on total cycles (docs/search.md). Compiling a few
networks from the space and fitting `full = a * sum + b` per cycle kind removes most of
that. The networks are chosen from the seed: the published RAN-e configurations in the
space, the per-slot fastest architecture (the search's objective pulls towards that end,
so the line should reach it), then random architectures with the collapse probability
the predictor benchmark measured the fit with.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass

from ran_edge.errors import UsageError
from ran_edge.models.ran_e_space import COLLAPSED
from ran_edge.search.graphs import NetworkGraph
from ran_edge.search.predictor import LinearCorrection, abs_pct_errors
from ran_edge.search.search import Space
from ran_edge.search.table import CostTable

P_COLLAPSE = 0.4  # as benchmarks/cost_predictor.py, whose fit docs/search.md reports
IDENTITY_NOTE = "identity (summed table, no full compiles)"


@dataclass(frozen=True)
class FittedLine:
    """One cycle kind's correction and its in-sample absolute % errors."""

    correction: LinearCorrection
    errors_pct: tuple[float, ...]

    def summary(self) -> dict[str, float]:
        return {
            "scale": self.correction.scale,
            "offset": self.correction.offset,
            "median_error_pct": statistics.median(self.errors_pct),
            "worst_error_pct": max(self.errors_pct),
        }


@dataclass(frozen=True)
class Fit:
    """The corrections a search predicts with, and the networks they were fitted on."""

    networks: tuple[str, ...]
    total: FittedLine
    npu: FittedLine

    def summary(self) -> dict:
        return {
            "n": len(self.networks),
            "networks": list(self.networks),
            "total": self.total.summary(),
            "npu": self.npu.summary(),
        }


def check_fit_count(n: int, space_size: int) -> None:
    """UsageError unless `n` is 0 (identity) or a line's worth of distinct networks."""
    if n < 0:
        raise UsageError(f"--fit {n}: give 0 (no full compiles) or a number of networks >= 2.")
    if n == 1:
        raise UsageError("--fit 1: a scale and an offset need at least 2 full compiles.")
    if n > space_size:
        raise UsageError(
            f"--fit {n:,}: the space holds only {space_size:,} distinct architectures."
        )


def random_genome(rng: random.Random, space: Space) -> tuple[int, ...]:
    """Collapsed with probability P_COLLAPSE (if allowed), else a uniform other candidate."""
    collapsed = [i for i, c in enumerate(space.candidates) if c == COLLAPSED]
    others = [i for i, c in enumerate(space.candidates) if c != COLLAPSED]
    genome = []
    for _ in space.slots:
        if collapsed and (not others or rng.random() < P_COLLAPSE):
            genome.append(collapsed[0])
        else:
            genome.append(rng.choice(others))
    return tuple(genome)


def fit_genomes(space: Space, n: int, seed: int) -> list[tuple[str, tuple[int, ...]]]:
    """`n` distinct (name, genome): RAN-e GT and C, the fastest corner, then random ones."""
    check_fit_count(n, space.size)
    chosen: dict[tuple[int, ...], str] = {}
    fixed = {**space.known(), "fastest per slot": space.corner("total_cycles")}
    for name, genome in fixed.items():
        chosen.setdefault(genome, name)
    rng = random.Random(seed)
    while len(chosen) < n:
        chosen.setdefault(random_genome(rng, space), f"random {len(chosen) + 1}")
    return [(name, genome) for genome, name in list(chosen.items())[:n]]


def fit_line(summed: list[float], full: list[float]) -> FittedLine:
    if len(set(summed)) < 2:
        raise UsageError(
            "--fit: the chosen networks all have the same summed cycles; a line cannot be "
            "fitted (use a larger --fit or a different --seed)."
        )
    line = LinearCorrection.fit(summed, full)
    return FittedLine(line, tuple(abs_pct_errors([line(x) for x in summed], full)))


def fit_correction(table: CostTable, space: Space, n: int, seed: int) -> Fit:
    """Compile `n` networks of the space whole (cached, in parallel), fit total and NPU
    cycles against what the uncorrected space predicts (the table sum, plus the context
    terms when the space has them)."""
    picked = fit_genomes(space, n, seed)
    archs = [space.arch(g) for _, g in picked]
    graphs = [NetworkGraph(a) for a in archs]
    table.measure_all(graphs, label=f"full networks {table.target.name}")
    full = [table.measure(g) for g in graphs]
    summed = [space.evaluate(g) for _, g in picked]

    def line(field: str) -> FittedLine:
        return fit_line(
            [float(getattr(c, field)) for c in summed], [float(getattr(c, field)) for c in full]
        )

    return Fit(tuple(name for name, _ in picked), line("total_cycles"), line("npu_cycles"))
