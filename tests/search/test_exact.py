"""The search's exact optimum: checked against brute force over a whole space.

A space of two candidates per slot holds 2^16 = 65,536 architectures: few enough to
score every one with `Space.evaluate` (the search's own scoring, independent of the
integer program's rows) and compare. Costs are seeded pseudo-random per (slot,
candidate), so neither candidate wins everywhere and the limits bind. No Vela.
"""

from __future__ import annotations

import itertools
import random

import pytest

from ran_edge.errors import UsageError
from ran_edge.models.ran_e_space import COLLAPSED, Candidate, Slot
from ran_edge.search.context import ContextTerms
from ran_edge.search.cost import BlockCost
from ran_edge.search.exact import best_fps, best_utilisation, minimise
from ran_edge.search.predictor import LinearCorrection
from ran_edge.search.search import Constraints, Space, search, violation

RES = 64
IR = Candidate("ir", 3, 2)


def seeded_cost(slot: Slot, cand: Candidate) -> BlockCost:
    """Cycles, MACs and SRAM drawn from a generator seeded by the pair itself."""
    rng = random.Random(f"{slot}/{cand}")
    macs = rng.randrange(100_000, 3_000_000)
    cycles = rng.randrange(5_000, 60_000)
    return BlockCost(
        cycles, cycles + rng.randrange(0, 9_000), rng.randrange(1, 400) * 1024, 0, macs
    )


@pytest.fixture(scope="module")
def space() -> Space:
    pairs = tuple((-1) ** i * 7_000 * (i % 4) for i in range(15))  # gains and penalties
    terms = ContextTerms(base=12_345, collapse=tuple(range(0, 16_000, 1_000)), pair=pairs)
    return Space(seeded_cost, RES, candidates=(IR, COLLAPSED), clock_hz=500e6, context=terms)


@pytest.fixture(scope="module")
def everything(space):
    """Every architecture of the space, scored."""
    return [space.evaluate(g) for g in itertools.product(range(2), repeat=len(space.slots))]


def limit_sets(points) -> list[Constraints]:
    macs = sorted(p.macs for p in points)
    layers = sorted(p.nonlinear for p in points)
    sram = sorted(p.sram_kib for p in points)
    mid = len(points) // 2
    return [
        Constraints(),
        Constraints(max_macs=macs[mid // 4]),
        Constraints(min_macs=macs[mid], max_macs=macs[mid + mid // 20]),  # a narrow band
        Constraints(min_nonlinear=layers[-mid // 10], max_sram_kib=sram[mid]),
        Constraints(max_macs=macs[mid], min_nn_mass=sorted(p.nn_mass for p in points)[mid]),
        Constraints(max_params=sorted(p.params for p in points)[mid // 3]),
    ]


def test_the_optimum_is_the_brute_force_best(space, everything):
    for limits in limit_sets(everything):
        feasible = [p for p in everything if violation(p, limits) == 0]
        found = best_fps(space, limits)
        assert found.proven
        assert space.evaluate(found.genome).total_cycles == min(p.total_cycles for p in feasible)
        assert violation(space.evaluate(found.genome), limits) == 0


def test_npu_cycles_can_be_minimised_too(space, everything):
    limits = limit_sets(everything)[2]
    found = minimise(space, limits, {"npu_cycles": 1.0})
    feasible = [p for p in everything if violation(p, limits) == 0]
    assert space.evaluate(found.genome).npu_cycles == min(p.npu_cycles for p in feasible)


def test_the_best_utilisation_is_the_brute_force_best(space, everything):
    for limits in limit_sets(everything)[1:]:
        feasible = [p for p in everything if violation(p, limits) == 0]
        found = best_utilisation(space, limits)
        assert found.proven
        best = space.evaluate(found.genome)
        assert best.macs / best.npu_cycles == max(p.macs / p.npu_cycles for p in feasible)


def test_an_infeasible_band_is_proven_so(space, everything):
    macs = sorted({p.macs for p in everything})
    gap = next(i for i in range(len(macs) - 1) if macs[i + 1] - macs[i] > 2)
    limits = Constraints(min_macs=macs[gap] + 1, max_macs=macs[gap + 1] - 1)  # between two
    found = best_fps(space, limits)
    assert found.proven and found.genome is None
    with pytest.raises(UsageError, match="no architecture of the space meets --max-macs"):
        search(space, limits, budget=200)


def test_the_search_returns_the_optimum_and_says_so(space, everything):
    limits = limit_sets(everything)[2]
    result = search(space, limits, budget=300, seed=0)
    feasible = [p for p in everything if violation(p, limits) == 0]
    assert result.best.fps == max(p.fps for p in feasible)
    assert result.proven_best
    assert result.evaluated == 300  # the optimum is one of the budget, not extra


def test_corrections_keep_the_optimum_and_the_offset_does_not_fool_the_ratio(space, everything):
    corrected = space.corrected(LinearCorrection(1.3, -40_000.0), LinearCorrection(0.9, 250_000))
    scored = [corrected.evaluate(p.genome) for p in everything]
    for limits in limit_sets(everything)[1:3]:
        feasible = [p for p in scored if violation(p, limits) == 0]
        fastest = corrected.evaluate(best_fps(corrected, limits).genome)
        assert fastest.fps == max(p.fps for p in feasible)
        found = best_utilisation(corrected, limits)
        best = corrected.evaluate(found.genome)
        assert found.proven
        assert best.macs / best.npu_cycles == max(p.macs / p.npu_cycles for p in feasible)


def test_a_correction_that_reverses_costs_is_not_called_proven(space):
    reversed_space = space.corrected(LinearCorrection(-1.0, 1e9), LinearCorrection())
    assert not best_fps(reversed_space, Constraints()).proven
    impossible = Constraints(min_macs=10**15)
    nothing = best_fps(reversed_space, impossible)
    assert nothing.genome is None and nothing.proven  # infeasible whatever the objective


def test_an_sram_limit_the_stem_breaks_has_no_answer(space):
    stem_kib = space.stem.sram_bytes / 1024
    found = best_fps(space, Constraints(max_sram_kib=stem_kib - 1))
    assert found.genome is None and found.proven
    assert best_utilisation(space, Constraints(min_macs=10**15)).proven
