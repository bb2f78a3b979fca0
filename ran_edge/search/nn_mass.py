"""NN-Mass of any network, counted the way the search counts it (`Space.evaluate`).

The search's NN-Mass is `sum over blocks of 2 * activation layers * output channels`,
stem and head excluded. Comparing a searched RAN-e network with a zoo baseline (the
issue's "NN-Mass >= EfficientNet-Lite0's by the same count") needs the same count on
the baseline, so this finds the blocks of any nn.Module and counts each one with the
search's own hook counter (`block_stats`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ran_edge.blocks import CollapsedBlock, FusedMBConv, InvertedResidual
from ran_edge.models.efficientnet_lite import MBConv
from ran_edge.models.mobilenet_v2 import InvertedResidual as MobileNetV2Block
from ran_edge.models.ran_e import CollapsedRanE, DownsamplePair
from ran_edge.search.search import block_stats

BLOCK_TYPES: tuple[type[nn.Module], ...] = (
    InvertedResidual,
    MobileNetV2Block,
    MBConv,
    CollapsedRanE,
    DownsamplePair,
    CollapsedBlock,
    FusedMBConv,
)


@dataclass(frozen=True)
class BlockMass:
    """One block's share: its module path, activation calls and output channels."""

    name: str
    act_layers: int
    out_channels: int

    @property
    def mass(self) -> int:
        return 2 * self.act_layers * self.out_channels


@dataclass(frozen=True)
class NetworkMass:
    """A network's NN-Mass and the blocks it is summed over, in forward order."""

    blocks: tuple[BlockMass, ...]

    @property
    def nn_mass(self) -> int:
        return sum(b.mass for b in self.blocks)


def find_blocks(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """The outermost block modules (a block nested in a block is part of the outer one)."""
    if isinstance(module, BLOCK_TYPES):
        yield prefix, module
        return
    for name, child in module.named_children():
        yield from find_blocks(child, f"{prefix}.{name}" if prefix else name)


def network_mass(model: nn.Module, input_shape: Sequence[int]) -> NetworkMass:
    """Per block: activation calls (the search's hook counter, on the shape the block sees
    in this network) and output channels (from one forward of the whole network)."""
    blocks = list(find_blocks(model))
    seen: dict[str, tuple[tuple[int, ...], int]] = {}

    def recorder(name: str):
        def hook(_m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            seen.setdefault(name, (tuple(args[0].shape), out.shape[1]))

        return hook

    was_training = model.training
    hooks = [m.register_forward_hook(recorder(n)) for n, m in blocks]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape)))
    finally:
        for h in hooks:
            h.remove()
    out = []
    for name, module in blocks:
        if name not in seen:  # defined but never called: not part of the forward path
            continue
        shape, channels = seen[name]
        out.append(BlockMass(name, block_stats(module, shape).act_layers, channels))
    order = {name: i for i, name in enumerate(seen)}
    model.train(was_training)
    return NetworkMass(tuple(sorted(out, key=lambda b: order[b.name])))


def network_nn_mass(model: nn.Module, input_shape: Sequence[int]) -> int:
    """The search's NN-Mass of `model` run on `input_shape`."""
    return network_mass(model, input_shape).nn_mass
