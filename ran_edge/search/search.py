"""Hardware-aware search over the RAN-e space: a seeded evolutionary search on the cost table.

Every slot of the RAN-e skeleton takes one candidate (inverted residual, kernel 3/5/7 x
expansion 2/4/6, or the collapsed dense block). An architecture is scored from per-slot
arrays built once from the cost table (cycles, MACs, peak SRAM) and from the blocks
themselves (parameters, activation layers and channels), so one evaluation is a few dozen
additions: tens of thousands of candidates a second once the table is filled.

Objective: maximise predicted FPS (NPU clock / predicted total cycles) subject to the
user's constraints; the result is the Pareto front of FPS vs MACs among feasible points.

Accuracy proxies (training-free, see docs/search.md):
  - `nonlinear`: activation layers an input passes through (stem 0, IR block 2, collapsed
    block 1, the 128->64->128 pair 4 as IR / 2 collapsed, head 2). Collapsing removes
    nonlinearity, which is what costs RAN-e accuracy.
  - `nn_mass`: the NN-Mass of `ran_edge.shrink.ran_i.nn_mass` (2 * depth * width summed),
    with depth counted in activation layers and width the block's output channels, summed
    over blocks.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ran_edge.errors import UsageError
from ran_edge.models.ran_e import GROUND_TRUTH, STEM_CHANNELS, SUBNETWORK_C, Stack
from ran_edge.models.ran_e_space import (
    ALL_BLOCK_CANDIDATES,
    COLLAPSED,
    HEAD,
    NUM_CLASSES,
    STEM,
    Arch,
    Candidate,
    Slot,
    build_block,
    ran_e_slots,
)
from ran_edge.search.context import ContextTerms
from ran_edge.search.cost import BlockCost
from ran_edge.search.exact import Optimum, best_fps
from ran_edge.search.predictor import LinearCorrection

ACTIVATIONS = (nn.Hardswish, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardsigmoid, nn.Sigmoid)
IDENTITY = LinearCorrection()
HEAD_ACT_LAYERS = 2  # 1x1 conv + act, depthwise 7x7 + act


@dataclass(frozen=True)
class Constraints:
    """User limits; None means unconstrained."""

    max_macs: int | None = None
    max_params: int | None = None
    min_macs: int | None = None  # with max_macs: a size band, for comparisons at equal size
    min_params: int | None = None
    max_sram_kib: float | None = None
    min_nn_mass: int | None = None
    min_nonlinear: int | None = None


@dataclass(frozen=True)
class Point:
    """One evaluated architecture: a candidate index per slot and its figures."""

    genome: tuple[int, ...]
    fps: float
    total_cycles: float
    npu_cycles: float
    macs: int
    params: int
    sram_kib: float
    weight_bytes: int
    nn_mass: int
    nonlinear: int

    def figures(self) -> dict[str, float | int]:
        d = asdict(self)
        del d["genome"]
        return d


@dataclass(frozen=True)
class BlockStats:
    """What the table does not hold: parameters and nonlinearity of one block."""

    params: int
    act_layers: int
    act_channels: int


def block_stats(module: nn.Module, input_shape: tuple[int, ...]) -> BlockStats:
    """Parameters, and activation calls and their channels on one forward (BN/conv shapes
    do not depend on the spatial size, so the caller may pass a small one)."""
    calls: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: calls.append(out.shape[1]))
        for m in module.modules()
        if isinstance(m, ACTIVATIONS)
    ]
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in module.parameters())
    return BlockStats(params, len(calls), sum(calls))


def stem_head_params() -> int:
    """Stem conv + head (1x1, BN, dw 7x7, BN) + classifier parameters (space-independent)."""
    from ran_edge.models.ran_e import HEAD_CHANNELS

    last = ran_e_slots(32)[-1].cout
    stem = 3 * STEM_CHANNELS * 9
    head = last * HEAD_CHANNELS + 2 * HEAD_CHANNELS + HEAD_CHANNELS * 49 + 2 * HEAD_CHANNELS
    return stem + head + HEAD_CHANNELS * NUM_CLASSES + NUM_CLASSES


def genome_of(stacks: Sequence[Stack], candidates: Sequence[Candidate]) -> tuple[int, ...] | None:
    """The genome of a published RAN-e configuration, None if it is outside `candidates`."""
    genome = []
    for stack in stacks:
        for kernel, collapse in zip(stack.kernels, stack.collapse, strict=True):
            cand = COLLAPSED if collapse else Candidate("ir", kernel, stack.expand)
            if cand not in candidates:
                return None
            genome.append(candidates.index(cand))
    return tuple(genome)


class Space:
    """The RAN-e slots at one resolution, the candidates allowed at each, and their costs.

    `cost(slot, cand) -> BlockCost` is the table lookup (a `CostTable.cost`); it is called
    once per (slot, candidate) here, never during the search.
    """

    def __init__(
        self,
        cost: Callable[[Slot, Candidate], BlockCost],
        resolution: int,
        candidates: Sequence[Candidate] = ALL_BLOCK_CANDIDATES,
        clock_hz: float = 1e9,
        total: LinearCorrection = IDENTITY,
        npu: LinearCorrection = IDENTITY,
        context: ContextTerms | None = None,
    ) -> None:
        if not candidates:
            raise UsageError("the search needs at least one candidate block.")
        self.resolution = resolution
        self.slots = ran_e_slots(resolution)
        self.candidates = tuple(candidates)
        self.clock_hz = clock_hz
        self.total = total
        self.npu = npu
        arch0 = Arch(resolution, tuple((s, self.candidates[0]) for s in self.slots))
        self.stem = cost(arch0.stem, STEM)
        self.head = cost(arch0.head, HEAD)
        self.fixed_params = stem_head_params()
        self.costs: list[list[BlockCost]] = []
        self.stats: list[list[BlockStats]] = []
        for slot in self.slots:
            self.costs.append([cost(slot, c) for c in self.candidates])
            small = min(slot.size, 8)
            self.stats.append(
                [
                    block_stats(build_block(slot, c), (1, slot.cin, small, small))
                    for c in self.candidates
                ]
            )
        self.context = context
        self.pair_terms: tuple[int, ...] = ()  # added in evaluate(): not one slot's
        if context is not None:  # base and single-block terms folded into the costs
            self.stem = replace(self.stem, total_cycles=self.stem.total_cycles + context.base)
            for row, term in zip(self.costs, context.collapse, strict=True):
                for j, cand in enumerate(self.candidates):
                    if cand == COLLAPSED:
                        row[j] = replace(row[j], total_cycles=row[j].total_cycles + term)
            if COLLAPSED in self.candidates:
                self.pair_terms = context.pair

    def pairs(self) -> list[tuple[Slot, Candidate]]:
        return [(s, c) for s in self.slots for c in self.candidates]

    def additive(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """The figures `evaluate` sums: the fixed part (stem, head) and, per figure, a
        (slot, candidate) array; what the exact optimum (`search.exact`) is built from.
        The pair terms (`pair_terms`) and peak SRAM (a maximum) are not in it."""
        fixed = {
            "total_cycles": self.stem.total_cycles + self.head.total_cycles,
            "npu_cycles": self.stem.npu_cycles + self.head.npu_cycles,
            "macs": self.stem.macs + self.head.macs,
            "params": self.fixed_params,
            "nn_mass": 0,
            "nonlinear": HEAD_ACT_LAYERS,
        }
        rows = {
            "total_cycles": [[c.total_cycles for c in row] for row in self.costs],
            "npu_cycles": [[c.npu_cycles for c in row] for row in self.costs],
            "macs": [[c.macs for c in row] for row in self.costs],
            "params": [[st.params for st in row] for row in self.stats],
            "nn_mass": [
                [2 * st.act_layers * slot.cout for st in row]
                for row, slot in zip(self.stats, self.slots, strict=True)
            ],
            "nonlinear": [[st.act_layers for st in row] for row in self.stats],
        }
        return fixed, {k: np.array(v, dtype=float) for k, v in rows.items()}

    @property
    def size(self) -> int:
        """How many distinct architectures the space holds."""
        return len(self.candidates) ** len(self.slots)

    def corrected(self, total: LinearCorrection, npu: LinearCorrection) -> Space:
        """The same space predicting with other corrections (no table lookups again)."""
        other = copy.copy(self)
        other.total, other.npu = total, npu
        return other

    def corner(self, attr: str) -> tuple[int, ...]:
        """Per slot, the candidate with the least `attr` (a BlockCost field); ties: first."""
        n = len(self.candidates)
        return tuple(min(range(n), key=lambda j: (getattr(row[j], attr), j)) for row in self.costs)

    def arch(self, genome: Sequence[int]) -> Arch:
        return Arch(
            self.resolution,
            tuple((s, self.candidates[g]) for s, g in zip(self.slots, genome, strict=True)),
        )

    def evaluate(self, genome: tuple[int, ...]) -> Point:
        total = self.stem.total_cycles + self.head.total_cycles
        npu = self.stem.npu_cycles + self.head.npu_cycles
        macs = self.stem.macs + self.head.macs
        weights = self.stem.weight_bytes + self.head.weight_bytes
        sram = max(self.stem.sram_bytes, self.head.sram_bytes)
        params = self.fixed_params
        act_layers = HEAD_ACT_LAYERS
        mass = 0
        for i, g in enumerate(genome):
            c = self.costs[i][g]
            st = self.stats[i][g]
            total += c.total_cycles
            npu += c.npu_cycles
            macs += c.macs
            weights += c.weight_bytes
            sram = max(sram, c.sram_bytes)
            params += st.params
            act_layers += st.act_layers
            mass += 2 * st.act_layers * self.slots[i].cout
        if self.pair_terms:
            c = self.candidates.index(COLLAPSED)
            for i, term in enumerate(self.pair_terms):
                if genome[i] == c and genome[i + 1] == c:
                    total += term
        total_pred = max(self.total(total), 1.0)
        return Point(
            genome=genome,
            fps=self.clock_hz / total_pred,
            total_cycles=total_pred,
            npu_cycles=self.npu(npu),
            macs=macs,
            params=params,
            sram_kib=sram / 1024,
            weight_bytes=weights,
            nn_mass=mass,
            nonlinear=act_layers,
        )

    def known(self) -> dict[str, tuple[int, ...]]:
        """The published RAN-e configurations that lie in this space."""
        out = {}
        for name, stacks in (("RAN-e GT", GROUND_TRUTH), ("RAN-e C", SUBNETWORK_C)):
            genome = genome_of(stacks, self.candidates)
            if genome is not None:
                out[name] = genome
        return out

    def best_achievable(self) -> dict[str, float]:
        """Per constraint, the best value any architecture reaches (each is separable)."""

        def fixed(attr: str) -> int:
            return getattr(self.stem, attr) + getattr(self.head, attr)

        return {
            "max_macs": fixed("macs") + sum(min(c.macs for c in row) for row in self.costs),
            "max_params": self.fixed_params + sum(min(s.params for s in r) for r in self.stats),
            "min_macs": fixed("macs") + sum(max(c.macs for c in row) for row in self.costs),
            "min_params": self.fixed_params + sum(max(s.params for s in r) for r in self.stats),
            "max_sram_kib": max(
                self.stem.sram_bytes,
                self.head.sram_bytes,
                *(min(c.sram_bytes for c in row) for row in self.costs),
            )
            / 1024,
            "min_nn_mass": sum(
                2 * max(s.act_layers for s in row) * slot.cout
                for row, slot in zip(self.stats, self.slots, strict=True)
            ),
            "min_nonlinear": HEAD_ACT_LAYERS
            + sum(max(s.act_layers for s in r) for r in self.stats),
        }


OPTION = {
    "max_macs": ("--max-macs", "MACs", "smallest"),
    "max_params": ("--max-params", "parameters", "smallest"),
    "min_macs": ("--min-macs", "MACs", "largest"),
    "min_params": ("--min-params", "parameters", "largest"),
    "max_sram_kib": ("--max-sram", "KiB peak SRAM", "smallest"),
    "min_nn_mass": ("--min-nn-mass", "NN-Mass", "largest"),
    "min_nonlinear": ("--min-nonlinear", "activation layers", "largest"),
}
POINT_FIELD = {
    "max_macs": "macs",
    "max_params": "params",
    "min_macs": "macs",
    "min_params": "params",
    "max_sram_kib": "sram_kib",
    "min_nn_mass": "nn_mass",
    "min_nonlinear": "nonlinear",
}


def violation(point: Point, limits: Constraints) -> float:
    """0 when feasible, else the summed relative distance to every violated limit."""
    v = 0.0
    for name, field_name in POINT_FIELD.items():
        limit = getattr(limits, name)
        if limit is None:
            continue
        value = getattr(point, field_name)
        over = value - limit if name.startswith("max") else limit - value
        if over > 0:
            v += over / max(abs(limit), 1)
    return v


def check_possible(space: Space, limits: Constraints) -> None:
    """UsageError naming every constraint no architecture in the space can meet."""
    best = space.best_achievable()
    problems = []
    for name, (flag, unit, word) in OPTION.items():
        limit = getattr(limits, name)
        if limit is None:
            continue
        b = best[name]
        if (b > limit) if name.startswith("max") else (b < limit):
            problems.append(
                f"{flag} {limit:,} cannot be met: the {word} achievable at resolution "
                f"{space.resolution} is {_num(b)} {unit}"
            )
    if problems:
        raise UsageError("; ".join(problems) + ".")


def dominates(a: Point, b: Point) -> bool:
    """a is at least as fast and as small as b, and better in one."""
    return a.fps >= b.fps and a.macs <= b.macs and (a.fps > b.fps or a.macs < b.macs)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Non-dominated points (FPS up, MACs down), sorted by MACs then genome; duplicates of
    the same (fps, macs) keep the smallest genome so the front is stable."""
    ordered = sorted(points, key=lambda p: (p.macs, -p.fps, p.genome))
    front: list[Point] = []
    best_fps = -1.0
    for p in ordered:
        if p.fps > best_fps:
            front.append(p)
            best_fps = p.fps
    return front


@dataclass
class SearchResult:
    space: Space
    front: list[Point]
    best: Point
    feasible: list[Point]
    evaluated: int
    seconds: float
    optimum: Optimum  # the integer program's answer (`best` is it when proven)
    references: dict[str, Point] = field(default_factory=dict)

    @property
    def proven_best(self) -> bool:
        """`best` is the highest predicted FPS any architecture of the space reaches
        under the limits, proven by the integer program (not only the best found)."""
        return (
            self.optimum.proven
            and self.optimum.genome is not None
            and (self.best.fps >= self.space.evaluate(self.optimum.genome).fps)
        )

    @property
    def per_second(self) -> float:
        return self.evaluated / self.seconds if self.seconds > 0 else float("inf")


def search(
    space: Space,
    limits: Constraints = Constraints(),
    budget: int = 20_000,
    seed: int = 0,
    population: int = 64,
) -> SearchResult:
    """Seeded evolutionary search: mutate one slot of a parent drawn from the feasible
    Pareto archive (or, until something is feasible, from the least-violating points);
    `budget` counts distinct architectures evaluated."""
    check_possible(space, limits)
    rng = random.Random(seed)
    n_cand = len(space.candidates)
    n_slots = len(space.slots)
    seen: dict[tuple[int, ...], Point] = {}
    archive: list[Point] = []  # feasible, non-dominated
    closest: list[Point] = []  # least violating infeasible points, for guidance
    start = time.perf_counter()

    def add(genome: tuple[int, ...]) -> None:
        nonlocal archive, closest
        if genome in seen:
            return
        p = space.evaluate(genome)
        seen[genome] = p
        if violation(p, limits) == 0:
            if not any(dominates(q, p) for q in archive):
                archive = [q for q in archive if not dominates(p, q)] + [p]
        elif not archive:
            closest.append(p)
            closest.sort(key=lambda q: (violation(q, limits), -q.fps, q.genome))
            del closest[population:]

    for genome in space.known().values():
        add(genome)
    # the cheapest and the fastest-per-slot corners help tight constraints
    add(space.corner("macs"))
    add(space.corner("total_cycles"))
    # the proven optimum of predicted FPS: the front's fastest point, and a parent
    optimum = best_fps(space, limits)
    if optimum.genome is not None:
        add(optimum.genome)
    for _ in range(population):
        add(tuple(rng.randrange(n_cand) for _ in range(n_slots)))

    budget = max(budget, len(seen))
    max_states = n_cand**n_slots
    stale = 0
    while len(seen) < min(budget, max_states) and stale < 50 * budget:
        pool = archive if archive else closest
        if pool and rng.random() < 0.9:
            parent = pool[rng.randrange(len(pool))].genome  # insertion order: seeded
        else:
            parent = tuple(rng.randrange(n_cand) for _ in range(n_slots))
        child = list(parent)
        for _ in range(1 + (rng.random() < 0.3)):  # mostly one slot, sometimes two
            i = rng.randrange(n_slots)
            if n_cand > 1:
                child[i] = (child[i] + 1 + rng.randrange(n_cand - 1)) % n_cand
        before = len(seen)
        add(tuple(child))
        stale = stale + 1 if len(seen) == before else 0
    seconds = time.perf_counter() - start

    feasible = sorted(
        (p for p in seen.values() if violation(p, limits) == 0), key=lambda p: p.genome
    )
    if not feasible:
        near = min(seen.values(), key=lambda q: (violation(q, limits), q.genome))
        active = [n for n in POINT_FIELD if getattr(limits, n) is not None]
        unmet = [
            f"{OPTION[n][0]} {_num(getattr(limits, n))} (it reaches {_num(getattr(near, POINT_FIELD[n]))})"
            for n in active
            if violation(near, _only(limits, n)) > 0
        ]
        none = optimum.proven and optimum.genome is None
        proof = "no architecture of the space meets" if none else "no architecture found that meets"
        advice = "Relax a constraint." if none else "Relax a constraint or raise --budget."
        raise UsageError(
            f"{proof} {' and '.join(OPTION[n][0] for n in active)} together (each is "
            f"achievable alone); the least violating of {len(seen):,} evaluated misses "
            f"{', '.join(unmet)}. {advice}"
        )
    front = pareto_front(feasible)
    best = max(front, key=lambda p: (p.fps, -p.macs))
    refs = {name: space.evaluate(g) for name, g in space.known().items()}
    return SearchResult(space, front, best, feasible, len(seen), seconds, optimum, refs)


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"


def _only(limits: Constraints, name: str) -> Constraints:
    return Constraints(**{name: getattr(limits, name)})


def result_json(result: SearchResult) -> dict:
    """Everything a caller needs, JSON-ready and in a stable order."""
    space = result.space

    def point(p: Point) -> dict:
        blocks = [
            {"kind": c.kind, "kernel": c.kernel, "expand": c.expand}
            for c in (space.candidates[g] for g in p.genome)
        ]
        return {**p.figures(), "blocks": blocks}

    return {
        "resolution": space.resolution,
        "clock_hz": space.clock_hz,
        "correction": {
            "total": [space.total.scale, space.total.offset],
            "npu": [space.npu.scale, space.npu.offset],
        },
        "evaluated": result.evaluated,
        "best_is_proven_optimum": result.proven_best,
        "feasible": len(result.feasible),
        "seconds": result.seconds,
        "per_second": result.per_second,
        "front": [point(p) for p in result.front],
        "best": point(result.best),
        "references": {name: point(p) for name, p in sorted(result.references.items())},
    }
