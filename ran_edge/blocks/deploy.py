"""Train form -> deploy form, for one block or a whole network.

A block opts in by implementing `Reparameterizable` (a `to_deploy()` returning its
deploy module). `to_deploy(model)` walks the network, replaces every such block and
folds each Conv2d -> BatchNorm2d pair inside nn.Sequential containers, so zoo models
built from plain Sequentials (MobileNetV2) deploy too. Deploy forms hold only modules
litert-torch lowers to ops Ethos-U runs: Conv2d, activations, `Residual` (an ADD),
ZeroPad2d (a PAD), pooling, Linear.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ran_edge.reparam.branches import MergeRefused
from ran_edge.reparam.chain import Border, fold_residual, merge_sequential_convs
from ran_edge.reparam.fold import fold_bn


@runtime_checkable
class Reparameterizable(Protocol):
    """A train-form block that can produce its (numerically equal) deploy module."""

    def to_deploy(self) -> nn.Module: ...


class Residual(nn.Module):
    """`x + body(x)`: the deploy form of a residual that could not fold into a conv."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def to_deploy(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """The deploy form of `model` in eval mode: blocks reparameterized, BN folded.

    Returns a deep copy unless `inplace` (then `model` itself is changed and returned,
    or its deploy replacement when `model` is itself a block).
    """
    if not inplace:
        model = copy.deepcopy(model)
    with torch.no_grad():
        deployed = _deploy(model)
    return deployed.eval()


def _deploy(module: nn.Module) -> nn.Module:
    if isinstance(module, Reparameterizable):
        return module.to_deploy()
    for name, child in list(module.named_children()):
        replacement = _deploy(child)
        if replacement is not child:
            setattr(module, name, replacement)
    if isinstance(module, nn.Sequential):
        fold_sequential_bn(module)
    return module


def fold_sequential_bn(sequential: nn.Sequential) -> nn.Sequential:
    """Fold every Conv2d directly followed by BatchNorm2d, in place; the BN becomes Identity.

    Identity keeps the indices (and so the state_dict names and per-module attribution)
    of the layers after it.
    """
    for index in range(len(sequential) - 1):
        conv, bn = sequential[index], sequential[index + 1]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            sequential[index] = fold_bn(conv, bn)
            sequential[index + 1] = nn.Identity()
    return sequential


def deploy_sequence(
    layers: Sequence[nn.Module | None], *, residual: bool = False, border: Border = "zeros"
) -> nn.Module:
    """Deploy form of `layers` run in order (+ x when `residual`), merging what is exact.

    `layers` are deploy modules (convs with BN folded, activations, pads); None and
    nn.Identity are dropped. Runs of convs with nothing between them merge into one conv
    where `merge_sequential_convs(..., border=border)` allows; a refused merge leaves the
    convs apart and warns with the reason. A residual around a single resulting conv folds
    into its centre tap; otherwise it stays an explicit `Residual` (an ADD).
    `border` must describe the train form's ring for every padded conv that could merge
    into the conv(s) before it.
    """
    merged: list[nn.Module] = []
    for layer in layers:
        if layer is None or isinstance(layer, nn.Identity):
            continue
        if isinstance(layer, nn.Conv2d) and merged and isinstance(merged[-1], nn.Conv2d):
            try:
                merged[-1] = merge_sequential_convs([merged[-1], layer], border=border)
                continue
            except MergeRefused as refused:
                warnings.warn(
                    f"kept two convs apart in the deploy form: {refused.reason}", stacklevel=3
                )
        merged.append(layer)
    if residual:
        if len(merged) == 1 and isinstance(merged[0], nn.Conv2d):
            try:
                return fold_residual(merged[0])
            except MergeRefused:
                pass
        return Residual(_as_module(merged))
    return _as_module(merged)


def _as_module(layers: list[nn.Module]) -> nn.Module:
    if not layers:
        return nn.Identity()
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def train_only_modules(model: nn.Module) -> list[str]:
    """Names of modules a deploy form must not contain: BatchNorm and unconverted blocks."""
    return [
        name or type(module).__name__
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm | Reparameterizable)
    ]
