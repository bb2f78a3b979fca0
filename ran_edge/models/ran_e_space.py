"""The RAN-e search space: slots (where a block goes), candidates (what goes there), and
architectures (one candidate per slot on the RAN-e stack skeleton).

Blocks are built with `ran_e._block`, the same function `RanE` uses, so the table costs
exactly the module the network contains (including the 128->64->128 downsample pair).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import nn

from ran_edge.models import ran_e
from ran_edge.models.ran_e import GROUND_TRUTH, STEM_CHANNELS, RanE, Stack

Kind = Literal["ir", "collapsed", "stem", "head"]
KERNELS = (3, 5, 7)
EXPANSIONS = (2, 4, 6)
NUM_CLASSES = 1000


@dataclass(frozen=True)
class Slot:
    """A block position: input/output channels, input resolution (square), stride."""

    cin: int
    cout: int
    size: int
    stride: int

    @property
    def out_size(self) -> int:
        return (self.size + self.stride - 1) // self.stride


@dataclass(frozen=True)
class Candidate:
    """What fills a slot. Collapsed blocks are dense 3x3: kernel/expand are fixed to 3/1.

    "stem" and "head" are the network's fixed ends, costed like any block so the
    predictor can sum one table.
    """

    kind: Kind
    kernel: int = 3
    expand: int = 1

    def __post_init__(self) -> None:
        if self.kind == "ir" and (self.kernel not in KERNELS or self.expand not in EXPANSIONS):
            raise ValueError(f"IR candidate needs kernel in {KERNELS}, expand in {EXPANSIONS}")
        if self.kind != "ir" and (self.kernel, self.expand) != (3, 1):
            raise ValueError(f"{self.kind} candidates take no kernel/expand choice")

    @property
    def is_block(self) -> bool:
        return self.kind in ("ir", "collapsed")


COLLAPSED = Candidate("collapsed")
STEM = Candidate("stem")
HEAD = Candidate("head")
IR_CANDIDATES = tuple(Candidate("ir", k, e) for k in KERNELS for e in EXPANSIONS)
ALL_BLOCK_CANDIDATES = (*IR_CANDIDATES, COLLAPSED)


@dataclass(frozen=True)
class Arch:
    """One network: stem slot, (slot, candidate) per block, head slot."""

    resolution: int
    blocks: tuple[tuple[Slot, Candidate], ...]

    @property
    def stem(self) -> Slot:
        return Slot(3, STEM_CHANNELS, self.resolution, 2)

    @property
    def head(self) -> Slot:
        last = self.blocks[-1][0]
        return Slot(last.cout, NUM_CLASSES, last.out_size, 1)

    def parts(self) -> list[tuple[Slot, Candidate]]:
        """Everything the predictor sums: stem, blocks, head."""
        return [(self.stem, STEM), *self.blocks, (self.head, HEAD)]


def ran_e_slots(resolution: int = 224, stacks: tuple[Stack, ...] = GROUND_TRUTH) -> list[Slot]:
    """The 16 block slots of the RAN-e skeleton at `resolution` (stem halves it)."""
    slots = []
    size = (resolution + 1) // 2
    for stack in stacks:
        for i in range(len(stack.kernels)):
            slot = Slot(
                stack.cin if i == 0 else stack.cout, stack.cout, size, stack.stride if i == 0 else 1
            )
            slots.append(slot)
            size = slot.out_size
    return slots


def space_parts(
    resolution: int, candidates: Sequence[Candidate] = ALL_BLOCK_CANDIDATES
) -> list[tuple[Slot, Candidate]]:
    """Every table entry a search over the space needs at `resolution`: stem, head, and
    each slot with each candidate."""
    slots = ran_e_slots(resolution)
    any_arch = Arch(resolution, tuple((s, candidates[0]) for s in slots))
    blocks = [(s, c) for s in slots for c in candidates]
    return [(any_arch.stem, STEM), (any_arch.head, HEAD), *blocks]


def random_arch(rng: random.Random, resolution: int = 224, p_collapse: float = 0.4) -> Arch:
    """A random collapse pattern, kernel and expansion per block on the RAN-e skeleton."""
    blocks = []
    for slot in ran_e_slots(resolution):
        if rng.random() < p_collapse:
            cand = COLLAPSED
        else:
            cand = Candidate("ir", rng.choice(KERNELS), rng.choice(EXPANSIONS))
        blocks.append((slot, cand))
    return Arch(resolution, tuple(blocks))


def build_block(slot: Slot, cand: Candidate) -> nn.Module:
    """The block module exactly as `RanE` would build it at this slot."""
    if not cand.is_block:
        raise ValueError(f"{cand.kind} is not a block")
    collapse = cand.kind == "collapsed"
    return ran_e._block(slot.cin, slot.cout, cand.kernel, cand.expand, slot.stride, collapse)


def build_network(arch: Arch) -> RanE:
    """A RanE with one single-block stack per slot, so each block has its own expansion."""
    stacks = tuple(
        Stack(s.cin, s.cout, (c.kernel,), c.expand, s.stride, (c.kind == "collapsed",))
        for s, c in arch.blocks
    )
    return RanE(stacks, num_classes=NUM_CLASSES)
