"""Where a network has kxk layers to search, and turning them into `RepBranchBlock`s.

A site is a square, odd kxk conv (k >= 3, dilation 1, 'same' padding k // 2, zero padding
mode) together with the BatchNorm that follows it: the next layer of an nn.Sequential, or
the BN inside a `ran_edge.blocks.ConvBN`. The block takes the conv's place (the whole
ConvBN's place) and a Sequential's BN becomes nn.Identity, so every later module keeps its
path, as `to_deploy` does when it folds BN. The block's `kxk` branch starts from the
layer's weights; the other branches start fresh (seeded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.blocks.inverted_residual import InvertedResidual
from ran_edge.errors import UsageError
from ran_edge.shrink.repnas.block import LayerShape, RepBranchBlock
from ran_edge.shrink.repnas.branches import (
    CANDIDATES,
    available_candidates,
    copy_conv_bn,
    make_branch,
)


@dataclass(frozen=True)
class Site:
    """One searchable layer: the module path the block replaces, and its candidates."""

    path: str  # the conv (or the ConvBN holding it)
    bn_path: str | None  # a Sequential's BN after the conv, replaced by nn.Identity
    shape: LayerShape
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class Sites:
    """Every searchable layer of a model, and the kxk convs left alone with the reason."""

    sites: tuple[Site, ...]
    skipped: dict[str, str]


def find_sites(model: nn.Module, candidates: Sequence[str] = CANDIDATES) -> Sites:
    """The kxk layers of `model` a branch block can replace, in module order."""
    wanted = tuple(candidates)
    available_candidates(1, 1, 1, wanted)  # names checked before anything else
    found: list[Site] = []
    skipped: dict[str, str] = {}
    _walk(model, "", wanted, found, skipped)
    return Sites(tuple(found), skipped)


def _walk(
    module: nn.Module, prefix: str, wanted: tuple[str, ...], found: list[Site], skipped: dict
) -> None:
    children = list(module.named_children())
    for index, (name, child) in enumerate(children):
        path = f"{prefix}.{name}" if prefix else name
        if isinstance(child, RepBranchBlock):
            continue
        if isinstance(child, ConvBN):
            if isinstance(module, InvertedResidual) and module.border == "bias":
                skipped[path] = "inside a border='bias' InvertedResidual, which reads its conv"
                continue
            _consider(child.conv, path, None, wanted, found, skipped)
            continue
        if isinstance(child, nn.Conv2d):
            following = children[index + 1][1] if index + 1 < len(children) else None
            bn_path = None
            if (
                isinstance(module, nn.Sequential)
                and isinstance(following, nn.BatchNorm2d)
                and following.num_features == child.out_channels
            ):
                bn_path = f"{prefix}.{children[index + 1][0]}" if prefix else children[index + 1][0]
            _consider(child, path, bn_path, wanted, found, skipped)
            continue
        _walk(child, path, wanted, found, skipped)


def _consider(
    conv: nn.Conv2d,
    path: str,
    bn_path: str | None,
    wanted: tuple[str, ...],
    found: list[Site],
    skipped: dict,
) -> None:
    reason = _unsearchable(conv)
    if reason is not None:
        skipped[path] = reason
        return
    stride = conv.stride[0]
    shape = LayerShape(
        conv.in_channels, conv.out_channels, conv.kernel_size[0], stride, conv.groups
    )
    names = available_candidates(conv.in_channels, conv.out_channels, stride, wanted)
    found.append(Site(path, bn_path, shape, names))


def _unsearchable(conv: nn.Conv2d) -> str | None:
    kh, kw = conv.kernel_size
    if kh != kw or kh % 2 == 0 or kh < 3:
        return f"kernel {kh}x{kw}: only square odd kernels >= 3 have branches to merge"
    if conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        return "dilated or not zero-padded"
    if conv.padding != (kh // 2, kw // 2):
        return f"padding {conv.padding} is not 'same' ({kh // 2})"
    if conv.stride[0] != conv.stride[1]:
        return f"stride {conv.stride} differs by axis"
    return None


def check_budget(sites: Sites, budget: int | None) -> None:
    """UsageError unless `budget` leaves each layer between 1 and all of its candidates."""
    if not sites.sites:
        raise UsageError(
            "the model has no kxk conv to search (square odd kernel >= 3, 'same' padding); "
            "RepNAS replaces such convs with branch blocks."
        )
    if budget is None:
        return
    if budget < 1:
        raise UsageError(f"--budget {budget} keeps no branch; keep at least 1 per layer.")
    fewest = min(sites.sites, key=lambda s: len(s.candidates))
    if budget > len(fewest.candidates):
        raise UsageError(
            f"--budget {budget} exceeds the {len(fewest.candidates)} candidate branches of layer "
            f"{fewest.path} ({', '.join(fewest.candidates)}); use --budget "
            f"{len(fewest.candidates)} or less, or --budget all to keep every branch (DBB)."
        )


def to_searchable(
    model: nn.Module,
    sites: Sites,
    budget: int | None,
    *,
    seed: int = 0,
    chosen: Mapping[str, Sequence[str]] | None = None,
) -> nn.Module:
    """Replace each site of `model` (in place) with a `RepBranchBlock`; returns `model`.

    `budget` None keeps every candidate (DBB, nothing searched). `chosen` (path -> branch
    names) builds the finished ODBBs of a past search instead, without gates.
    """
    check_budget(sites, budget)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for site in sites.sites:
            names = tuple(chosen[site.path]) if chosen is not None else site.candidates
            block = _block(model, site, names, budget if chosen is None else None)
            _replace(model, site.path, block)
            if site.bn_path is not None:
                _replace(model, site.bn_path, nn.Identity())
    return model


def _block(
    model: nn.Module, site: Site, names: tuple[str, ...], budget: int | None
) -> RepBranchBlock:
    old = model.get_submodule(site.path)
    conv, bn = (old.conv, old.bn) if isinstance(old, ConvBN) else (old, None)
    if site.bn_path is not None:
        bn = model.get_submodule(site.bn_path)
    s = site.shape
    branches = {
        name: make_branch(name, s.in_channels, s.out_channels, s.kernel_size, s.stride, s.groups)
        for name in names
    }
    if "kxk" in branches:
        copy_conv_bn(branches["kxk"], conv, bn)
    device = conv.weight.device
    return RepBranchBlock(s, branches, budget).to(device=device, dtype=conv.weight.dtype)


def _replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def branch_blocks(model: nn.Module) -> dict[str, RepBranchBlock]:
    """Every `RepBranchBlock` of `model` by path."""
    return {p: m for p, m in model.named_modules() if isinstance(m, RepBranchBlock)}
