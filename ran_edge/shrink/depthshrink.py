"""DepthShrinker on `ran_edge.blocks.InvertedResidual` networks: remove, plan, merge, verify.

The steps, each a function so a caller (the CLI, a benchmark, a search) can stop between:

1. `search_removal`: gate every shrinkable block's activations (`gates.GateSearch`),
   train weights and gate logits for a few epochs (distillation from the original, or
   cross-entropy with labels), keep the top-k blocks by a removal ratio.
2. `plan_shrink`: for each removed block, decide by a cost function (`cost.py`) whether
   collapsing its now-linear chain into one dense conv pays, and say why (cost, or a
   merge that would not be exact, or a conv Vela would not run on the NPU).
3. `apply_plan`: the shrunk train form: activations -> nn.Identity on removed blocks and
   bias-aware padding (`border="bias"`) on the blocks that will collapse, which is what
   makes the collapse exact on the borders (docs/shrink.md). Train it (`distill.py`).
4. `deploy_shrunk` + `verify_shrunk`: collapse the planned blocks, deploy the rest, and
   check block by block and end to end (`verify_equivalent`, borders included) that the
   deploy form computes what the trained shrunk model computes.

The plan is decided before recovery training because the border convention is part of
the function being trained; costs depend on shapes, not on weight values.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ran_edge.blocks import InvertedResidual, Residual, to_deploy
from ran_edge.blocks.inverted_residual import collapse_inverted_residual
from ran_edge.errors import UsageError
from ran_edge.probe import probe_forward
from ran_edge.reparam.branches import ConvKernel, MergeRefused
from ran_edge.reparam.chain import ethos_u_conv_notes
from ran_edge.shrink.cost import BlockCost, compare_costs, macs_cost, module_macs
from ran_edge.shrink.distill import TrainConfig, TrainResult, train_student
from ran_edge.shrink.gates import GateSearch, removal_count
from ran_edge.shrink.verify import Equivalence, verify_equivalent

ACTIVATION_ATTRS = ("expand_act", "dw_act")
SEARCH_CONFIG = TrainConfig(epochs=2)


# --- which blocks ----------------------------------------------------------------------------


def shrinkable_blocks(model: nn.Module) -> dict[str, list[str]]:
    """Block path -> names of its non-Identity inner activations, for every InvertedResidual
    that still has one (in `named_modules` order)."""
    found: dict[str, list[str]] = {}
    for path, module in model.named_modules():
        if isinstance(module, InvertedResidual):
            acts = [a for a in ACTIVATION_ATTRS if not isinstance(getattr(module, a), nn.Identity)]
            if acts:
                found[path] = acts
    return found


def check_removal(model: nn.Module, paths: Sequence[str]) -> tuple[str, ...]:
    """Validate an explicit removal list: each path a shrinkable block, each once."""
    candidates = shrinkable_blocks(model)
    listed = ", ".join(candidates) or "none"
    seen: list[str] = []
    for path in paths:
        if path in seen:
            raise UsageError(f"block {path!r} is listed twice in the removal list.")
        if path not in candidates:
            raise UsageError(
                f"{path!r} is not a shrinkable block (an InvertedResidual with activations). "
                f"Shrinkable blocks: {listed}."
            )
        seen.append(path)
    return tuple(seen)


def block_input_shapes(
    model: nn.Module, input_shape: tuple[int, ...], paths: Sequence[str]
) -> dict[str, tuple[int, ...]]:
    """The input shape each block at `paths` sees in one forward of `input_shape`."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    for path in paths:

        def hook(_m, args, path=path) -> None:
            shapes[path] = tuple(args[0].shape)

        hooks.append(model.get_submodule(path).register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        probe_forward(model, input_shape)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


# --- 1. search -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """Which blocks the gate search removed, and each block's final gate score."""

    removed: tuple[str, ...]
    kept: tuple[str, ...]
    scores: dict[str, float]
    train: TrainResult | None


def search_removal(
    model: nn.Module,
    images: np.ndarray | Tensor,
    remove_ratio: float,
    *,
    labels: np.ndarray | Tensor | None = None,
    config: TrainConfig = SEARCH_CONFIG,
    gate_lr: float = 0.05,
) -> SearchResult:
    """Train gates (and weights) on a copy of `model`; keep the top-k blocks by gate score.

    Without labels the loss is distillation from `model` itself. The weights trained here
    are discarded: the search only decides which blocks lose their activations; recovery
    starts again from the original weights.
    """
    blocks = shrinkable_blocks(model)
    n_remove = removal_count(len(blocks), remove_ratio)
    if not blocks:
        raise UsageError(_no_blocks_message(model))
    if n_remove in (0, len(blocks)):  # nothing to rank
        removed = tuple(blocks)[len(blocks) - n_remove :]
        kept = tuple(p for p in blocks if p not in removed)
        return SearchResult(removed, kept, dict.fromkeys(blocks, 0.0), None)
    work = copy.deepcopy(model)
    gates = GateSearch(work, blocks, remove_ratio)
    try:
        train = train_student(
            work,
            images,
            teacher=None if labels is not None else model,
            labels=labels,
            config=config,
            extra_groups=[(gates.parameters(), gate_lr)],
            description="search gates",
        )
        state = gates.finalize()
    except BaseException:
        gates.remove()
        raise
    return SearchResult(state.removed, state.kept, state.scores, train)


# --- 2. plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockPlan:
    """One shrinkable block's fate. MACs are per inference at the block's input shape."""

    path: str
    removed: bool
    merged: bool
    reason: str
    input_shape: tuple[int, ...]
    macs_before: int
    macs_after: int
    cost_before: float | None = None  # cost of the unmerged linear chain (removed blocks)
    cost_after: float | None = None  # cost of the collapsed conv (removed blocks)
    merged_conv: str | None = None  # e.g. "3x3 16->24 stride 2"


@dataclass(frozen=True)
class ShrinkPlan:
    """Per block: activations removed or kept, collapsed or not, and why."""

    blocks: tuple[BlockPlan, ...]
    cost: str

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(b.path for b in self.blocks if b.removed)

    @property
    def merged(self) -> tuple[str, ...]:
        return tuple(b.path for b in self.blocks if b.merged)

    def block(self, path: str) -> BlockPlan:
        return next(b for b in self.blocks if b.path == path)

    def to_dict(self) -> dict[str, Any]:
        return {"cost": self.cost, "blocks": [asdict(b) for b in self.blocks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShrinkPlan:
        blocks = tuple(
            BlockPlan(**{**b, "input_shape": tuple(b["input_shape"])}) for b in data["blocks"]
        )
        return cls(blocks, data["cost"])


def plan_shrink(
    model: nn.Module,
    removed: Sequence[str],
    input_shape: tuple[int, ...],
    *,
    cost: BlockCost = macs_cost,
    cost_name: str = "macs",
) -> ShrinkPlan:
    """Decide, block by block, whether each removed block collapses (cost after < before)."""
    candidates = shrinkable_blocks(model)
    removed = check_removal(model, removed)
    shapes = block_input_shapes(model, input_shape, list(candidates))
    plans = []
    for path in candidates:
        block = model.get_submodule(path)
        shape = shapes[path]
        macs = module_macs(block, shape)
        if path not in removed:
            plans.append(BlockPlan(path, False, False, "activations kept", shape, macs, macs))
            continue
        plans.append(_plan_removed(path, block, shape, macs, cost, cost_name))
    return ShrinkPlan(tuple(plans), cost_name)


def _plan_removed(
    path: str, block: InvertedResidual, shape: tuple[int, ...], macs: int, cost, cost_name: str
) -> BlockPlan:
    linear = linearized(block, merge=False)
    chain = chain_deploy(linear)
    chain_macs = module_macs(chain, shape)
    try:
        merged = collapse_inverted_residual(linearized(block, merge=True))
    except MergeRefused as refused:
        reason = f"kept unmerged: merge not exact: {refused.reason}"
        return BlockPlan(path, True, False, reason, shape, macs, chain_macs)
    described = describe_conv(merged)
    notes = ethos_u_conv_notes(merged)
    if notes:
        reason = f"kept unmerged: the merged {described} conv leaves the NPU: {' '.join(notes)}"
        return BlockPlan(path, True, False, reason, shape, macs, chain_macs, merged_conv=described)
    costs = compare_costs(chain, merged, shape, cost)
    merged_macs = module_macs(merged, shape)
    figures = f"{cost_name} {costs.before:,.0f} -> {costs.after:,.0f}"
    if costs.merge_pays:
        reason = f"merged into one {described} conv: {figures}"
        after = merged_macs
    else:
        reason = f"kept unmerged: merging would not lower the cost ({figures})"
        after = chain_macs
    return BlockPlan(
        path,
        True,
        costs.merge_pays,
        reason,
        shape,
        macs,
        after,
        costs.before,
        costs.after,
        described,
    )


def linearized(block: InvertedResidual, *, merge: bool) -> InvertedResidual:
    """An eval-mode copy of `block` without activations; `merge` selects bias-aware padding
    (exact collapse) where there is an expand layer."""
    copied = copy.deepcopy(block).eval()
    for attr in ACTIVATION_ATTRS:
        setattr(copied, attr, nn.Identity())
    if merge and copied.expand is not None:
        copied.border = "bias"
    return copied


def describe_conv(conv: nn.Conv2d) -> str:
    kh, kw = conv.kernel_size
    stride = conv.stride[0]
    text = f"{kh}x{kw} {conv.in_channels}->{conv.out_channels}"
    return text + (f" stride {stride}" if stride != 1 else "")


# --- 3. apply --------------------------------------------------------------------------------


def apply_plan(model: nn.Module, plan: ShrinkPlan) -> nn.Module:
    """A copy of `model` in the shrunk train form: removed blocks lose their activations,
    blocks that will collapse switch to bias-aware padding."""
    shrunk = copy.deepcopy(model)
    for block_plan in plan.blocks:
        if not block_plan.removed:
            continue
        block = shrunk.get_submodule(block_plan.path)
        if not isinstance(block, InvertedResidual):
            raise UsageError(f"{block_plan.path} is not an InvertedResidual in this model.")
        for attr in ACTIVATION_ATTRS:
            setattr(block, attr, nn.Identity())
        if block_plan.merged and block.expand is not None:
            block.border = "bias"
    return shrunk


# --- 4. deploy and verify --------------------------------------------------------------------


def chain_deploy(block: InvertedResidual) -> nn.Module:
    """The block's deploy form with its convs kept apart (no collapse), exact.

    Under bias-aware padding with an expand layer, the depthwise ring is the expand
    stage's zero response, which the chain reproduces by padding the block input instead.
    """
    expand = block.expand.to_deploy() if block.expand is not None else None
    depthwise = block.depthwise.to_deploy()
    pad: nn.Module | None = None
    if block.border == "bias" and expand is not None:
        kernel = ConvKernel.from_conv(depthwise)
        ph, pw = kernel.padding
        pad = nn.ZeroPad2d((pw, pw, ph, ph))
        depthwise = replace(kernel, padding=(0, 0)).to_conv(like=depthwise.weight)
    layers = [pad, expand, block.expand_act, depthwise, block.dw_act, block.project.to_deploy()]
    body = nn.Sequential(*(m for m in layers if m is not None and not isinstance(m, nn.Identity)))
    return Residual(body) if block.use_residual else body


def deploy_shrunk(shrunk: nn.Module, plan: ShrinkPlan) -> nn.Module:
    """The deploy form of a shrunk model: planned blocks collapsed to one conv, the other
    removed blocks as separate convs, everything else through `to_deploy`. Module paths
    are kept, so per-module reports compare block by block."""
    deploy = copy.deepcopy(shrunk).eval()
    with torch.no_grad():
        for block_plan in plan.blocks:
            if not block_plan.removed:
                continue
            block = deploy.get_submodule(block_plan.path)
            replacement = (
                collapse_inverted_residual(block) if block_plan.merged else chain_deploy(block)
            )
            set_submodule(deploy, block_plan.path, replacement)
    return to_deploy(deploy, inplace=True)


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


@dataclass(frozen=True)
class Verification:
    """Deploy vs shrunk train form: per collapsed block and for the whole model."""

    blocks: dict[str, Equivalence]
    model: Equivalence

    @property
    def equivalent(self) -> bool:
        return self.model.equivalent and all(e.equivalent for e in self.blocks.values())


def verify_shrunk(
    shrunk: nn.Module,
    deploy: nn.Module,
    plan: ShrinkPlan,
    input_shape: tuple[int, ...],
    *,
    rtol: float = 1e-5,
    model_rtol: float = 1e-4,
) -> Verification:
    """`verify_equivalent` (borders included) on every collapsed block and end to end.

    Blocks are checked at their own input shape; the whole model with a looser tolerance,
    since float32 rounding accumulates through the network.
    """
    blocks = {
        path: verify_equivalent(
            shrunk.get_submodule(path),
            deploy.get_submodule(path),
            plan.block(path).input_shape,
            rtol=rtol,
        )
        for path in plan.merged
    }
    return Verification(blocks, verify_equivalent(shrunk, deploy, input_shape, rtol=model_rtol))


def deploy_verified(
    shrunk: nn.Module, plan: ShrinkPlan, input_shape: tuple[int, ...], *, rtol: float = 1e-5
) -> tuple[nn.Module, ShrinkPlan, Verification]:
    """`deploy_shrunk` + `verify_shrunk`; a collapsed block that fails its check is rebuilt
    unmerged (with the measured error as the reason) rather than shipped inexact."""
    deploy = deploy_shrunk(shrunk, plan)
    check = verify_shrunk(shrunk, deploy, plan, input_shape, rtol=rtol)
    failed = {p: e for p, e in check.blocks.items() if not e.equivalent}
    if not failed:
        return deploy, plan, check
    blocks = tuple(
        replace(
            b,
            merged=False,
            macs_after=module_macs(chain_deploy(shrunk.get_submodule(b.path)), b.input_shape),
            reason=f"kept unmerged: collapse not exact (max rel err "
            f"{failed[b.path].max_rel_err:.2e} > {rtol:g})",
        )
        if b.path in failed
        else b
        for b in plan.blocks
    )
    plan = ShrinkPlan(blocks, plan.cost)
    deploy = deploy_shrunk(shrunk, plan)
    return deploy, plan, verify_shrunk(shrunk, deploy, plan, input_shape, rtol=rtol)


def _no_blocks_message(model: nn.Module) -> str:
    return (
        f"{type(model).__name__} has no shrinkable blocks: DepthShrinker removes the "
        "activations of ran_edge.blocks.InvertedResidual blocks (zoo MobileNetV2 and "
        "EfficientNet-Lite are converted automatically). Build the model from those blocks."
    )


def removal_summary(plan: ShrinkPlan) -> dict[str, int]:
    """Counts for one-line summaries."""
    return {
        "blocks": len(plan.blocks),
        "removed": len(plan.removed),
        "merged": len(plan.merged),
        "macs_before": sum(b.macs_before for b in plan.blocks),
        "macs_after": sum(b.macs_after for b in plan.blocks),
    }
