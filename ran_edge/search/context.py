"""Context terms: what a block costs in a whole network beyond its sandwich, measured once.

The table prices each block in a 1x1-conv sandwich. On targets whose feature maps live in
DRAM behind an SRAM cache (U65 Dedicated_Sram, U85), the network has costs no sandwich
sees: the graph's input and output traffic, and how collapsing a block changes which
neighbouring maps spill. Two terms, both measured by compiling whole networks of the
space with Vela, once per target and resolution (cached like every graph), no fit:

- `base`: a reference network (every block `REFERENCE`, an inverted residual k3e2)
  compiled whole, minus its table sum: the cycles only a whole network has;
- `collapse[i]`: the reference with block i alone collapsed, minus the reference,
  minus what the table says that swap saves: the in-network effect of collapsing block
  i that the sandwich misses;
- `pair[i]`: the reference with blocks i and i+1 collapsed, beyond the two single
  effects: neighbours collapsed together share maps that neither shares alone.

A network's total cycles are then its table sum + `base` + `collapse[i]` for every
collapsed block i + `pair[i]` for every two neighbouring collapsed blocks i, i+1
(32 whole networks per target and resolution). Measured on 30 random networks at 224 (`benchmarks/cost_predictor.py`):
see docs/search.md. Kernel and expansion choices get no term: their sandwich differences
already hold in context to within the errors measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ran_edge.models.ran_e_space import COLLAPSED, Arch, Candidate, Slot, ran_e_slots
from ran_edge.search.cost import BlockCost
from ran_edge.search.graphs import GraphSpec, NetworkGraph

REFERENCE = Candidate("ir", 3, 2)

Measure = Callable[[GraphSpec], BlockCost]
Cost = Callable[[Slot, Candidate], BlockCost]


@dataclass(frozen=True)
class ContextTerms:
    """Total-cycle terms the table sum misses (see the module docstring)."""

    base: int
    collapse: tuple[int, ...]  # per slot
    pair: tuple[int, ...]  # per pair of neighbouring slots (i, i+1)

    def to_json(self) -> dict:
        return {
            "base": self.base,
            "collapse": list(self.collapse),
            "pair": list(self.pair),
            "reference": "ir k3e2",
        }

    def total(self, arch: Arch) -> int:
        collapsed = [cand == COLLAPSED for _slot, cand in arch.blocks]
        extra = self.base + sum(t for t, c in zip(self.collapse, collapsed, strict=True) if c)
        for i, term in enumerate(self.pair):
            if collapsed[i] and collapsed[i + 1]:
                extra += term
        return extra


def with_collapsed(resolution: int, collapsed: set[int]) -> NetworkGraph:
    """The reference network with the blocks at `collapsed` collapsed."""
    slots = ran_e_slots(resolution)
    blocks = tuple((s, COLLAPSED if i in collapsed else REFERENCE) for i, s in enumerate(slots))
    return NetworkGraph(Arch(resolution, blocks))


def context_networks(resolution: int) -> list[NetworkGraph]:
    """The reference, one network per slot collapsed alone, one per neighbouring pair."""
    n = len(ran_e_slots(resolution))
    singles = [with_collapsed(resolution, {i}) for i in range(n)]
    pairs = [with_collapsed(resolution, {i, i + 1}) for i in range(n - 1)]
    return [with_collapsed(resolution, set()), *singles, *pairs]


def context_terms(measure: Measure, cost: Cost, resolution: int) -> ContextTerms:
    """The terms from the compiled networks (`measure`) and the table (`cost`)."""
    slots = ran_e_slots(resolution)
    reference = with_collapsed(resolution, set())
    whole = measure(reference).total_cycles
    summed = sum(cost(slot, cand).total_cycles for slot, cand in reference.arch.parts())
    alone = [
        measure(with_collapsed(resolution, {i})).total_cycles - whole for i in range(len(slots))
    ]
    collapse = tuple(
        in_network - (cost(slot, COLLAPSED).total_cycles - cost(slot, REFERENCE).total_cycles)
        for slot, in_network in zip(slots, alone, strict=True)
    )
    pair = tuple(
        measure(with_collapsed(resolution, {i, i + 1})).total_cycles
        - whole
        - alone[i]
        - alone[i + 1]
        for i in range(len(slots) - 1)
    )
    return ContextTerms(whole - summed, collapse, pair)
