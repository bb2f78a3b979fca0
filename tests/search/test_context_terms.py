"""Context terms: the arithmetic from whole-network compiles, and how a space applies them
(fakes stand in for Vela here; benchmarks/cost_predictor.py scores them against Vela)."""

from __future__ import annotations

from ran_edge.models.ran_e_space import COLLAPSED, Arch, ran_e_slots
from ran_edge.search import ALL_BLOCK_CANDIDATES, BlockCost
from ran_edge.search.context import REFERENCE, ContextTerms, context_networks, context_terms
from ran_edge.search.graphs import NetworkGraph
from ran_edge.search.search import Space

RES = 32
SLOTS = ran_e_slots(RES)


def cost_of(total: int) -> BlockCost:
    return BlockCost(npu_cycles=total, total_cycles=total, sram_bytes=0, weight_bytes=0, macs=total)


def table_cost(slot, cand) -> BlockCost:
    """A made-up table: collapsed blocks cost 100, everything else 300."""
    return cost_of(100 if cand == COLLAPSED else 300)


# Whole networks cost their table sum + 5,000; collapsing block 2 costs 40 more than the
# table says (a neighbour's map spills), and blocks 0 and 1 collapsed together save 90.
def whole(graph: NetworkGraph) -> BlockCost:
    collapsed = [c == COLLAPSED for _, c in graph.arch.blocks]
    total = sum(table_cost(s, c).total_cycles for s, c in graph.arch.parts()) + 5_000
    total += 40 * collapsed[2] - 90 * (collapsed[0] and collapsed[1])
    return cost_of(total)


def test_terms_recover_the_base_each_collapse_and_each_neighbouring_pair():
    terms = context_terms(whole, table_cost, RES)
    assert terms.base == 5_000
    assert terms.collapse == tuple(40 if i == 2 else 0 for i in range(len(SLOTS)))
    assert terms.pair == tuple(-90 if i == 0 else 0 for i in range(len(SLOTS) - 1))


def test_the_networks_are_the_reference_then_singles_then_neighbouring_pairs():
    reference, *others = context_networks(RES)
    n = len(SLOTS)
    assert all(c == REFERENCE for _, c in reference.arch.blocks)
    assert len(others) == n + n - 1
    patterns = [{i for i, (_, c) in enumerate(g.arch.blocks) if c == COLLAPSED} for g in others]
    assert patterns == [{i} for i in range(n)] + [{i, i + 1} for i in range(n - 1)]


def test_a_space_with_terms_predicts_what_the_whole_network_costs():
    terms = context_terms(whole, table_cost, RES)
    plain = Space(table_cost, RES)
    aware = Space(table_cost, RES, context=terms)
    c = ALL_BLOCK_CANDIDATES.index(COLLAPSED)
    genomes = [(0,) * 16, (c,) * 16, plain.corner("macs"), (c, c, c) + (0,) * 13, (0, c) * 8]
    for genome in genomes:
        arch = aware.arch(genome)
        truth = whole(NetworkGraph(arch)).total_cycles
        assert aware.evaluate(genome).total_cycles == truth
        assert plain.evaluate(genome).total_cycles == truth - terms.total(arch)
        assert aware.evaluate(genome).npu_cycles == plain.evaluate(genome).npu_cycles


def test_terms_add_only_for_collapsed_blocks():
    terms = ContextTerms(base=7, collapse=tuple(range(16)), pair=(1000,) * 15)
    arch = Arch(RES, tuple((s, COLLAPSED if i % 2 else REFERENCE) for i, s in enumerate(SLOTS)))
    assert terms.total(arch) == 7 + sum(i for i in range(16) if i % 2)  # no neighbours
    arch = Arch(
        RES, tuple((s, COLLAPSED if i in (4, 5, 6) else REFERENCE) for i, s in enumerate(SLOTS))
    )
    assert terms.total(arch) == 7 + 4 + 5 + 6 + 2 * 1000
