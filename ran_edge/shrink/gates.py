"""Learnable activation gates for DepthShrinker (Fu et al., 2022): which activations to drop.

Each activation inside a shrinkable block is wrapped in an `ActivationGate`:

    out = g * act(x) + (1 - g) * x,        g in [0, 1]

g = 1 is the original block, g = 0 removes the activation (the layer becomes the
identity, so the convs around it become a linear chain that can collapse). During the
search, g is binary in the forward pass: `GateSearch` ranks blocks by their gates'
logits and keeps exactly the top-k (k from the target removal ratio), and the backward
pass sends the gradient on g straight through to the logits (STE), so a block whose
activation the loss wants back climbs the ranking. Gates are per activation but decided
per block (a block's score is the mean of its gates' logits): removing only one of a
block's activations would not let it collapse.

After the search, `GateSearch.finalize` puts the original activations back where the
block was kept and `nn.Identity` where it was removed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ran_edge.errors import UsageError


class TopKMask(torch.autograd.Function):
    """Forward: 1 for the `k` largest scores (ties: lower index first), 0 elsewhere.
    Backward: the identity (straight-through estimator)."""

    @staticmethod
    def forward(ctx, scores: Tensor, k: int) -> Tensor:  # type: ignore[override]
        return topk_mask(scores.detach(), k)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def topk_mask(scores: Tensor, k: int) -> Tensor:
    """Deterministic top-k as a 0/1 mask of `scores`' shape (stable: ties keep lower indices)."""
    order = torch.argsort(scores, descending=True, stable=True)
    mask = torch.zeros_like(scores)
    mask[order[:k]] = 1
    return mask


class ActivationGate(nn.Module):
    """`g * act(x) + (1 - g) * x` with g from a learnable logit.

    Inside a `GateSearch` the controller sets `gate` (a 0/1 tensor carrying the STE
    gradient) before every forward. Standalone, g is the logit thresholded at 0 with a
    straight-through sigmoid gradient.
    """

    def __init__(self, act: nn.Module, init_logit: float = 0.0) -> None:
        super().__init__()
        self.act = act
        self.logit = nn.Parameter(torch.tensor(float(init_logit)))
        self.gate: Tensor | None = None

    def gate_value(self) -> Tensor:
        if self.gate is not None:
            return self.gate
        soft = torch.sigmoid(self.logit)
        return (self.logit >= 0).to(soft.dtype) + soft - soft.detach()

    def forward(self, x: Tensor) -> Tensor:
        g = self.gate_value().to(x.dtype)
        return g * self.act(x) + (1 - g) * x


def removal_count(blocks: int, remove_ratio: float) -> int:
    """How many of `blocks` a removal ratio removes (rounded to nearest, at least 0)."""
    if not 0.0 <= remove_ratio <= 1.0:
        raise UsageError(
            f"remove ratio must be between 0 and 1 (a fraction of the shrinkable blocks), "
            f"got {remove_ratio}."
        )
    return int(round(remove_ratio * blocks))


@dataclass(frozen=True)
class GateState:
    """The search's current decision: block scores and which blocks are kept."""

    scores: dict[str, float]
    kept: tuple[str, ...]
    removed: tuple[str, ...]


class GateSearch:
    """Wraps the named activations of `blocks` in gates and drives them by top-k.

    `blocks` maps block path -> attribute names of the block's activations. The gates
    are installed in place; a forward pre-hook on `model` recomputes the top-k mask
    before every forward, so any training loop over `model` searches. Call `finalize()`
    (or `remove()`) when done.
    """

    def __init__(
        self,
        model: nn.Module,
        blocks: Mapping[str, Sequence[str]],
        remove_ratio: float,
        *,
        init_logit: float = 0.0,
    ) -> None:
        if not blocks:
            raise UsageError("there are no blocks with activations to gate.")
        self.model = model
        self.paths = tuple(blocks)
        self.keep = len(self.paths) - removal_count(len(self.paths), remove_ratio)
        self.gates: dict[str, list[tuple[nn.Module, str, ActivationGate]]] = {}
        for path in self.paths:
            block = model.get_submodule(path)
            entries = []
            for attr in blocks[path]:
                act = getattr(block, attr)
                if isinstance(act, ActivationGate):
                    raise UsageError(f"{path}.{attr} is already gated.")
                gate = ActivationGate(act, init_logit).to(_device_of(block))
                setattr(block, attr, gate)
                entries.append((block, attr, gate))
            self.gates[path] = entries
        self._hook = model.register_forward_pre_hook(self._pre_forward)

    def _pre_forward(self, _module: nn.Module, _args: tuple) -> None:
        self.refresh()  # returning None keeps the forward's inputs as they are

    def parameters(self) -> list[nn.Parameter]:
        """The gate logits (give them their own learning rate)."""
        return [gate.logit for entries in self.gates.values() for _, _, gate in entries]

    def scores(self) -> Tensor:
        """Per-block score: the mean of the block's gate logits (autograd-connected)."""
        return torch.stack(
            [
                torch.stack([gate.logit for _, _, gate in self.gates[path]]).mean()
                for path in self.paths
            ]
        )

    def refresh(self) -> Tensor:
        """Recompute the top-k mask and hand each gate its block's 0/1 value."""
        mask = TopKMask.apply(self.scores(), self.keep)
        for index, path in enumerate(self.paths):
            for _, _, gate in self.gates[path]:
                gate.gate = mask[index]
        return mask

    def state(self) -> GateState:
        with torch.no_grad():
            scores = self.scores()
            mask = topk_mask(scores, self.keep)
        kept = tuple(p for p, m in zip(self.paths, mask.tolist(), strict=True) if m)
        removed = tuple(p for p in self.paths if p not in kept)
        return GateState(dict(zip(self.paths, scores.tolist(), strict=True)), kept, removed)

    def remove(self) -> None:
        """Put every original activation back and drop the hook (the model as before)."""
        self._restore(removed=())

    def finalize(self) -> GateState:
        """Original activations on kept blocks, nn.Identity on removed ones; hook dropped."""
        state = self.state()
        self._restore(removed=state.removed)
        return state

    def _restore(self, removed: Sequence[str]) -> None:
        self._hook.remove()
        for path, entries in self.gates.items():
            for block, attr, gate in entries:
                setattr(block, attr, nn.Identity() if path in removed else gate.act)
        self.gates = {}


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter((*module.parameters(), *module.buffers())), None)
    return tensor.device if tensor is not None else torch.device("cpu")
