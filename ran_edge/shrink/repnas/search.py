"""One-stage RepNAS search: train the weights and the architecture weights together.

`search_branches` trains a model whose kxk layers are gated `RepBranchBlock`s (weights at
the config's learning rate, each block's `alpha` at `arch_lr`, no weight decay on alpha)
with cross-entropy on labelled images. `BranchSearch` drives the budget over the training
steps (fractions of the run):

    [0, fade_start)         every branch on: alpha learns which help (straight-through)
    [fade_start, fade_end)  branches outside each layer's top-k fade linearly to 0
    [fade_end, 1]           only the top-k: the chosen blocks train alone

and, with `noise` > 0, adds logistic noise of that scale (annealed linearly to 0) to alpha
before each top-k, as the RepNAS reference code does (`noise=1, fade_start=fade_end=0` is
its scheme: hard top-k from the first step). The defaults (no noise, fade over 30-70%) were
the best of these on the digits benchmark (docs/repnas.md). With the fade done and the
noise gone, the search ends on the network it returns: `finalize` changes nothing.
Seeded through `TrainConfig.seed` (data order, noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from ran_edge.errors import UsageError
from ran_edge.shrink.distill import TrainConfig, TrainResult, train_student
from ran_edge.shrink.repnas.block import LayerShape
from ran_edge.shrink.repnas.convert import branch_blocks


@dataclass(frozen=True)
class LayerChoice:
    """What one layer kept: the chosen branches and every candidate's architecture weight."""

    path: str
    shape: LayerShape
    candidates: tuple[str, ...]
    chosen: tuple[str, ...]
    weights: dict[str, float]  # alpha per candidate; empty when the layer kept all (no search)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            **self.shape.to_json(),
            "candidates": list(self.candidates),
            "chosen": list(self.chosen),
            "weights": self.weights,
        }


@dataclass(frozen=True)
class SearchOutcome:
    layers: tuple[LayerChoice, ...]
    train: TrainResult | None  # None when nothing was trained (epochs 0)


NOISE = 0.0
FADE_START = 0.3
FADE_END = 0.7


def fade_at(progress: float, start: float = FADE_START, end: float = FADE_END) -> float:
    """Weight of the branches outside the top-k at `progress` (0..1) through the search."""
    if progress >= end:
        return 0.0
    if progress <= start:
        return 1.0
    return 1.0 - (progress - start) / (end - start)


class BranchSearch:
    """Sets each gated block's noise and fade for every training forward of `model`."""

    def __init__(
        self,
        model: nn.Module,
        *,
        total_steps: int,
        noise: float = NOISE,
        fade_start: float = FADE_START,
        fade_end: float = FADE_END,
    ) -> None:
        if not 0.0 <= fade_start <= fade_end <= 1.0:
            raise UsageError(
                f"fade window [{fade_start}, {fade_end}] must satisfy 0 <= start <= end <= 1."
            )
        self.blocks = branch_blocks(model)
        self.window = (fade_start, fade_end)
        self.noise = noise
        self.total_steps = max(1, total_steps)
        self.step = 0
        self._hook = model.register_forward_pre_hook(self._pre_forward)

    def _pre_forward(self, module: nn.Module, _args: tuple) -> None:
        if not module.training:
            return
        progress = self.step / self.total_steps
        fade = fade_at(progress, *self.window)
        for block in self.blocks.values():
            block.fade = fade
            block.noise = self.noise * max(0.0, 1.0 - progress)
        self.step += 1

    def parameters(self) -> list[nn.Parameter]:
        """The architecture weights (their own learning rate, no weight decay)."""
        return [b.alpha for b in self.blocks.values() if b.alpha is not None]

    def finalize(self) -> tuple[LayerChoice, ...]:
        """Drop the hook, keep each block's top-k branches; the choices, in module order."""
        self._hook.remove()
        choices = []
        for path, block in self.blocks.items():
            candidates, weights = block.names, block.weights()
            chosen = block.finalize()
            choices.append(LayerChoice(path, block.shape, candidates, chosen, weights))
        return tuple(choices)


def search_branches(
    model: nn.Module,
    images: np.ndarray | Tensor,
    labels: np.ndarray | Tensor,
    *,
    config: TrainConfig,
    arch_lr: float = 0.05,
    noise: float = NOISE,
    fade_start: float = FADE_START,
    fade_end: float = FADE_END,
) -> SearchOutcome:
    """Train `model` (blocks gated by `to_searchable`) in place, then keep the chosen branches."""
    steps = config.epochs * math.ceil(len(images) / config.batch_size)
    search = BranchSearch(
        model, total_steps=steps, noise=noise, fade_start=fade_start, fade_end=fade_end
    )
    try:
        train = None
        if config.epochs:
            train = train_student(
                model,
                images,
                labels=labels,
                config=config,
                extra_groups=[(search.parameters(), arch_lr)] if search.parameters() else (),
                description="search branches",
            )
    finally:
        choices = search.finalize()
    return SearchOutcome(choices, train)
