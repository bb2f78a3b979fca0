"""`RepBranchBlock`: a kxk layer as a sum of re-parameterizable branches, optionally gated.

Train form: `sum(m_i * branch_i(x))` over the candidate branches (`branches.py`). With a
branch budget, each block has architecture weights `alpha` and the budget is a per-layer
top-k: `m_i` is 1 for the `budget` largest alphas and `fade` for the rest (`fade` runs from
1, every branch training, to 0, only the top-k left, on `search.BranchSearch`'s schedule).
The mask's value is exact, and its gradient reaches alpha straight through a sigmoid
(`m + (sigmoid(alpha) - sigmoid(alpha).detach())`, as RepNAS's code does), so alpha learns
whether a branch helps without scaling it. Optional logistic noise on alpha before the
top-k (`noise`, training only) explores other sets, as the Gumbel perturbation in RepNAS.

`finalize()` keeps the top-k by alpha and drops the rest and the gates: the block is then
an ODBB, the plain sum of its branches. `to_deploy()` merges the chosen branches into one
conv with the layer's own geometry (kernel k, stride, padding k // 2, groups), so the
deploy model has exactly the plain model's architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ran_edge.errors import UsageError
from ran_edge.reparam.branches import ConvKernel, merge_parallel
from ran_edge.shrink.gates import topk_mask


@dataclass(frozen=True)
class LayerShape:
    """The geometry of the kxk layer a block replaces (and deploys back to)."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    groups: int

    def to_json(self) -> dict[str, int]:
        return dict(vars(self))


class RepBranchBlock(nn.Module):
    """Sum of named branches; with `budget`, gated by architecture weights (top-k)."""

    def __init__(
        self, shape: LayerShape, branches: Mapping[str, nn.Module], budget: int | None = None
    ) -> None:
        super().__init__()
        if not branches:
            raise UsageError("a branch block needs at least one branch.")
        if budget is not None and not 1 <= budget <= len(branches):
            raise UsageError(
                f"branch budget {budget} is outside 1..{len(branches)} (the candidates of "
                "this layer)."
            )
        self.shape = shape
        self.branches = nn.ModuleDict(branches)
        searched = budget is not None and budget < len(branches)
        self.budget = budget if searched else None
        self.alpha = nn.Parameter(torch.zeros(len(branches))) if searched else None
        self.fade = 0.0  # forward weight of the branches outside the top-k (BranchSearch)
        self.noise = 0.0  # logistic noise on alpha in training (BranchSearch)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.branches.keys())

    def factors(self) -> Tensor | None:
        """Per-branch multiplier, or None when ungated.

        Forward: 1 for the top-`budget` of `alpha` (+ logistic noise of scale `noise` in
        training), `fade` for the rest. Backward: d/d alpha of sigmoid(alpha + noise), a
        straight-through gradient, so the value stays an exact 0/1/fade mask.
        """
        if self.alpha is None or self.budget is None:
            return None
        rank = self.alpha
        if self.training and self.noise > 0:
            u = torch.rand_like(rank).clamp(1e-6, 1 - 1e-6)
            rank = rank + self.noise * (torch.log(u) - torch.log1p(-u))
        mask = topk_mask(rank.detach(), self.budget)
        mask = mask + (1 - mask) * self.fade
        soft = torch.sigmoid(rank)
        return mask + (soft - soft.detach())  # exactly the mask forward: x - x == 0

    def forward(self, x: Tensor) -> Tensor:
        factors = self.factors()
        if factors is None:
            return torch.stack([branch(x) for branch in self.branches.values()]).sum(dim=0)
        factors = factors.to(x.dtype)
        outputs = [
            f * branch(x)
            for f, branch in zip(factors, self.branches.values(), strict=True)
            if f.detach() != 0  # a branch faded out entirely is not computed (no gradient)
        ]
        return torch.stack(outputs).sum(dim=0)

    def chosen(self) -> tuple[str, ...]:
        """The top-`budget` branches by alpha (ties: the earlier candidate); all if ungated."""
        if self.alpha is None or self.budget is None:
            return self.names
        mask = topk_mask(self.alpha.detach(), self.budget)
        return tuple(n for n, m in zip(self.names, mask.tolist(), strict=True) if m)

    def weights(self) -> dict[str, float]:
        """Architecture weight (alpha) per branch; empty when the block was not searched."""
        if self.alpha is None:
            return {}
        return dict(zip(self.names, self.alpha.detach().tolist(), strict=True))

    def finalize(self) -> tuple[str, ...]:
        """Keep the top-k by alpha, drop the rest and the gates; returns the kept names."""
        kept = self.chosen()
        self.branches = nn.ModuleDict({n: self.branches[n] for n in kept})
        self.alpha, self.budget, self.fade, self.noise = None, None, 0.0, 0.0
        return kept

    def to_deploy(self) -> nn.Conv2d:
        """One conv of the layer's geometry equal to the finalized block (eval statistics)."""
        if self.alpha is not None and self.fade > 0:
            raise UsageError(
                "this branch block is still searching (branches outside the top-k are faded "
                "in, not out); call finalize() (or BranchSearch.finalize()) before deploying."
            )
        branches = [self.branches[name] for name in self.chosen()]
        merged = merge_parallel(branches, channels=self.shape.in_channels)
        k = self.shape.kernel_size
        kernel = ConvKernel.from_conv(merged).padded_to((k, k)).with_groups(self.shape.groups)
        return kernel.to_conv(like=merged.weight)
