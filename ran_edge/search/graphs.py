"""The small graphs the cost table compiles, each a frozen spec that builds its module.

A block is measured inside a *sandwich*: a 1x1 conv producer at the slot's input shape,
the block, a 1x1 conv consumer at its output shape. The producer and consumer are also
compiled alone (*frames*) and subtracted. The sandwich gives the block what it has in a
network: an NPU op writing its input (so Vela can fuse the block's leading BN/activation
into it, as it does into the previous block) and an NPU op reading its output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ran_edge.models.ran_e import HEAD_CHANNELS, STEM_CHANNELS, make_head
from ran_edge.models.ran_e_space import Arch, Candidate, Slot, build_block, build_network
from ran_edge.models.registry import calibrate_batchnorm

SEED = 0


class Sandwich(nn.Module):
    """producer 1x1 -> block -> consumer 1x1."""

    def __init__(self, slot: Slot, block: nn.Module) -> None:
        super().__init__()
        self.pre = nn.Conv2d(slot.cin, slot.cin, 1)
        self.block = block
        self.post = nn.Conv2d(slot.cout, slot.cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.post(self.block(self.pre(x)))


class Head(nn.Module):
    """RanE's head, pool and classifier (built as `RanE.__init__` builds them)."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.head = make_head(cin)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.head(x)), 1))


@dataclass(frozen=True)
class BlockGraph:
    """A block candidate in its sandwich (stem/head: alone, as they border the network)."""

    slot: Slot
    cand: Candidate

    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.slot.cin, self.slot.size, self.slot.size)

    def module(self) -> nn.Module:
        if self.cand.kind == "stem":
            return nn.Conv2d(3, STEM_CHANNELS, 3, self.slot.stride, 1, bias=False)
        if self.cand.kind == "head":
            return Head(self.slot.cin, self.slot.cout)
        return Sandwich(self.slot, build_block(self.slot, self.cand))


@dataclass(frozen=True)
class FrameGraph:
    """A lone 1x1 conv: the producer or consumer subtracted from a sandwich."""

    channels: int
    size: int

    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.channels, self.size, self.size)

    def module(self) -> nn.Module:
        return nn.Conv2d(self.channels, self.channels, 1)


@dataclass(frozen=True)
class NetworkGraph:
    """A whole architecture: the ground truth the predictor is scored against."""

    arch: Arch

    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.arch.resolution, self.arch.resolution)

    def module(self) -> nn.Module:
        return build_network(self.arch)


GraphSpec = BlockGraph | FrameGraph | NetworkGraph


def build_graph(spec: GraphSpec) -> nn.Module:
    """Seeded weights, BN statistics measured on random inputs (as zoo models get)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        module = spec.module()
        calibrate_batchnorm(module, spec.input_shape())
    return module.eval()


def frames_of(slot: Slot) -> tuple[FrameGraph, FrameGraph]:
    """(producer, consumer) frames of a slot's sandwich."""
    return FrameGraph(slot.cin, slot.size), FrameGraph(slot.cout, slot.out_size)
