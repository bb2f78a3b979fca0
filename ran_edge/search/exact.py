"""The proven optimum of the search's objective: a small 0-1 integer program (HiGHS).

Every figure the search scores is a sum over slots of the chosen candidate's entry (cycles,
MACs, parameters, NN-Mass, activation layers), plus a term for each two neighbouring
collapsed blocks (context pairs), and peak SRAM is a maximum, so a limit on it only rules
candidates out. Maximising predicted FPS under the user's limits is therefore a linear
program in 0-1 variables: one per (slot, candidate), one per neighbouring pair, 16 x 10 +
15 at most. HiGHS (through scipy) solves it to proven optimality in milliseconds, which
the evolutionary search cannot promise in a space of 10^16 architectures: at
EfficientNet-Lite0's size the optimum is 3% (U55) and 11% (U65) faster than what it
had found.

The optimum is a prediction's optimum: it is exactly as good as the cost table (and its
correction or context terms), and it bounds what any architecture of the space can be
predicted to reach under the same limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from ran_edge.models.ran_e_space import COLLAPSED

if TYPE_CHECKING:
    from ran_edge.search.search import Constraints, Space

TIME_LIMIT_S = 60.0  # a few ms in practice; the limit only guards a pathological table


@dataclass(frozen=True)
class Optimum:
    """What the integer program found. `genome` None and `proven` True: no architecture
    of the space meets the limits together. `proven` False: HiGHS stopped (time limit or
    a correction that reverses the order of costs) and `genome` is only its best so far."""

    genome: tuple[int, ...] | None
    proven: bool
    seconds: float


def minimise(space: Space, limits: Constraints, weights: Mapping[str, float]) -> Optimum:
    """The genome with the least weighted sum of figures of `Space.additive` (total cycles
    carry the context pair terms) among those meeting `limits`. The answer is checked with
    `Space.evaluate` and `violation`, the search's own scoring; should HiGHS's tolerances
    let a genome just past a limit through, the bands are tightened by one unit and the
    program solved again (that answer is then not called proven)."""
    from ran_edge.search.search import violation  # search imports this module

    start = time.perf_counter()
    if not _stem_and_head_fit(space, limits):
        return Optimum(None, True, time.perf_counter() - start)
    additive = space.additive()
    for tighten in (0.0, 1.0):
        result = _solve(space, additive, limits, weights, tighten)
        if result.status == 2:  # infeasible (proven, unless the bands were tightened)
            return Optimum(None, tighten == 0.0, time.perf_counter() - start)
        if result.x is None:
            break
        n_cand = len(space.candidates)
        choice = np.asarray(result.x[: len(space.slots) * n_cand]).reshape(-1, n_cand)
        found = tuple(int(j) for j in choice.argmax(axis=1))
        if violation(space.evaluate(found), limits) == 0:
            proven = result.status == 0 and tighten == 0.0
            return Optimum(found, proven, time.perf_counter() - start)
    return Optimum(None, False, time.perf_counter() - start)


def _solve(
    space: Space,
    additive: tuple[dict[str, float], dict[str, np.ndarray]],
    limits: Constraints,
    weights: Mapping[str, float],
    tighten: float,
):
    """One HiGHS run of the program (scipy's OptimizeResult)."""
    fixed, rows = additive
    n_slots, n_cand = len(space.slots), len(space.candidates)
    n_x = n_slots * n_cand
    pair_weight = weights.get("total_cycles", 0.0)
    pairs = [pair_weight * t for t in space.pair_terms] if pair_weight else []
    n_var = n_x + len(pairs)

    def x_row(values) -> np.ndarray:
        row = np.zeros(n_var)
        row[:n_x] = np.asarray(values, dtype=float).reshape(n_x)
        return row

    cost = x_row(sum(w * rows[name] for name, w in weights.items()))
    cost[n_x:] = pairs
    a: list[np.ndarray] = []
    lo: list[float] = []
    hi: list[float] = []

    def add(row: np.ndarray, lower: float, upper: float) -> None:
        a.append(row)
        lo.append(lower)
        hi.append(upper)

    for i in range(n_slots):  # one candidate per slot
        one = np.zeros(n_var)
        one[i * n_cand : (i + 1) * n_cand] = 1
        add(one, 1, 1)
    for name, (low, high) in _bands(limits).items():
        # Every figure is a whole number: the limits rounded inwards, then half a unit of
        # slack, keep each integer inside a limit inside and each one outside it out.
        add(
            x_row(rows[name]),
            -np.inf if low is None else math.ceil(low) - fixed[name] - 0.5 + tighten,
            np.inf if high is None else math.floor(high) - fixed[name] + 0.5 - tighten,
        )
    if pairs:  # y_i = both slot i and slot i+1 collapsed, exactly (y <= a, y <= b, y >= a+b-1)
        c = space.candidates.index(COLLAPSED)
        for i in range(len(pairs)):
            both = np.zeros(n_var)
            both[n_x + i], both[i * n_cand + c], both[(i + 1) * n_cand + c] = 1, -1, -1
            add(both, -1, np.inf)
            for slot in (i, i + 1):
                le = np.zeros(n_var)
                le[n_x + i], le[slot * n_cand + c] = 1, -1
                add(le, -np.inf, 0)
    upper = np.ones(n_var)
    if limits.max_sram_kib is not None:
        for i, row in enumerate(space.costs):
            for j, block in enumerate(row):
                if block.sram_bytes / 1024 > limits.max_sram_kib:
                    upper[i * n_cand + j] = 0
    return milp(
        cost,
        constraints=LinearConstraint(np.array(a), lo, hi),
        integrality=np.ones(n_var),
        bounds=Bounds(0, upper),
        options={"mip_rel_gap": 0.0, "time_limit": TIME_LIMIT_S},
    )


def _stem_and_head_fit(space: Space, limits: Constraints) -> bool:
    """Peak SRAM is a maximum: the fixed stem and head count whatever the blocks are."""
    if limits.max_sram_kib is None:
        return True
    return max(space.stem.sram_bytes, space.head.sram_bytes) / 1024 <= limits.max_sram_kib


def best_fps(space: Space, limits: Constraints) -> Optimum:
    """The architecture with the highest predicted FPS under `limits`. An optimum is only
    proven when the total-cycle correction keeps the order of costs (a positive scale);
    infeasibility is proven whatever the correction."""
    found = minimise(space, limits, {"total_cycles": 1.0})
    if space.total.scale <= 0 and found.genome is not None:
        return Optimum(found.genome, False, found.seconds)
    return found


def best_utilisation(space: Space, limits: Constraints) -> Optimum:
    """The architecture with the highest predicted MAC utilisation (MACs per NPU cycle)
    under `limits`: a ratio, maximised by Dinkelbach's method (each step an integer program
    on MACs - ratio x NPU cycles; the ratio rises until no architecture beats it). The
    NPU-cycle correction's offset is a constant of every step; its scale must be > 0."""
    if space.npu.scale <= 0:
        raise ValueError("an NPU-cycle correction with a scale <= 0 has no utilisation order")
    seconds, ratio, genome = 0.0, 0.0, None
    for _ in range(50):
        step = minimise(space, limits, {"npu_cycles": ratio * space.npu.scale, "macs": -1.0})
        seconds += step.seconds
        if step.genome is None:  # infeasible from the first step, or unsolved
            return Optimum(genome, step.proven and genome is None, seconds)
        if not step.proven:
            return Optimum(genome or step.genome, False, seconds)
        point = space.evaluate(step.genome)
        better = point.macs / max(point.npu_cycles, 1.0)
        if better <= ratio * (1 + 1e-12):
            return Optimum(genome, True, seconds)
        ratio, genome = better, step.genome
    return Optimum(genome, False, seconds)


def _bands(limits: Constraints) -> dict[str, tuple[float | None, float | None]]:
    """The additive limits set, as (lower, upper) per figure of `Space.additive`."""
    bands = {
        "macs": (limits.min_macs, limits.max_macs),
        "params": (limits.min_params, limits.max_params),
        "nn_mass": (limits.min_nn_mass, None),
        "nonlinear": (limits.min_nonlinear, None),
    }
    return {name: band for name, band in bands.items() if band != (None, None)}
