"""RMNet-style residual removal: identity-shortcut blocks become plain conv/activation chains.

`remove_residual(block)` rewrites one block, `remove_residuals(model)` every eligible block
of a network (bounds proven over its graph, each rewrite checked in float64), and
`rebuild_without_residuals` redoes the structure from a record before weights are loaded.
The math is `ran_edge.reparam.carry`; docs/shrink.md derives it and says when it refuses.

Why: a plain chain has no ADD (on Ethos-U an elementwise op reading two full maps) and no
skip tensor to keep alive, and its channels can be pruned freely. Whether it is faster
depends on the convs the carry rides through (benchmarks/rmnet.py: not through dense 3x3s).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ran_edge.errors import StageError
from ran_edge.reparam.bounds import Interval
from ran_edge.reparam.branches import MergeRefused
from ran_edge.reparam.carry import (
    CarryCode,
    carry_gain,
    carry_refusal,
    carry_through,
    plan_carry,
)
from ran_edge.shrink.depthshrink import set_submodule
from ran_edge.shrink.intervals import block_input_bounds
from ran_edge.shrink.residual_chain import BlockChain, block_chain

InputRange = Interval | tuple[float, float] | None
CHECK_SHAPE = (2, 11, 8)  # batch, odd height, even width: every border case of a stride-1 map
CHECK_RTOL = 1e-9  # float64: carried values differ from x by rounding only


def _interval(input_range: InputRange) -> Interval:
    if input_range is None:
        return Interval.unbounded()
    if isinstance(input_range, Interval):
        return input_range
    return Interval.of(*input_range)


def _refusal(chain: BlockChain) -> str | None:
    if chain.shortcut is None:
        return (
            f"this {chain.kind} has no shortcut (stride 2, or in_channels != out_channels): "
            "there is no residual to remove."
        )
    if isinstance(chain.shortcut, nn.Conv2d):
        conv = chain.shortcut
        return (
            f"the shortcut is a projection ({conv.kernel_size[0]}x{conv.kernel_size[1]} conv, "
            f"stride {conv.stride[0]}, {conv.in_channels} -> {conv.out_channels} channels), not "
            "the identity; only identity shortcuts are removed."
        )
    if chain.tail is not None:
        return (
            f"a {type(chain.tail).__name__} sits between the last conv and the add: no conv is "
            "left to put the carried input back, so the add stays."
        )
    return carry_refusal(chain.convs)


def plain_chain(chain: BlockChain, code: CarryCode) -> nn.Sequential:
    """The block without its add, for a given carry code (exact when the code fits the input)."""
    reason = _refusal(chain)
    if reason is not None:
        raise MergeRefused(reason)
    convs = carry_through(chain.convs, code)
    layers: list[nn.Module] = [convs[0]]
    for act, conv in zip(chain.acts, convs[1:], strict=True):
        layers += [copy.deepcopy(act), conv]
    if chain.post is not None:
        layers.append(copy.deepcopy(chain.post))
    plain = [m for m in layers if not isinstance(m, nn.Identity)]
    return nn.Sequential(*plain).eval()


def _rewrite(
    chain: BlockChain, x: Interval, min_scale: float = 0.0
) -> tuple[nn.Sequential, CarryCode]:
    reason = _refusal(chain)
    if reason is not None:
        raise MergeRefused(reason)
    gain = carry_gain(chain.convs[-1])
    code = plan_carry(chain.acts, x, chain.convs[0].in_channels, gain=gain)
    smallest = float(code.scale.min())
    if smallest < min_scale:
        raise MergeRefused(
            f"exact, but x must be scaled down by up to {1 / smallest:.3g}x to fit the "
            f"activations' identity range (input proven in [{float(x.lo.min()):.3g}, "
            f"{float(x.hi.max()):.3g}]); int8 would lose the residual (the 1/s decode weights "
            f"swamp the last conv's int8 weight scales). Allow it with min_scale <= {smallest:.3g}."
        )
    return plain_chain(chain, code), code


def _chain_of(block: nn.Module) -> BlockChain:
    chain = block_chain(block)
    if chain is None:
        raise MergeRefused(
            f"{type(block).__name__} is not a residual block this pass knows (InvertedResidual, "
            "FusedMBConv, Residual, ResNet BasicBlock, zoo MobileNetV2 / EfficientNet-Lite "
            "blocks); add an adapter in ran_edge/shrink/residual_chain.py."
        )
    return chain


def remove_residual(
    block: nn.Module, *, input_range: InputRange = None, min_scale: float = 0.0
) -> nn.Sequential:
    """`block` (eval mode) as an nn.Sequential of convs and activations with no add, exact.

    `input_range` is what the block input is known to lie in: (lo, hi), or an `Interval`
    for per-channel bounds; None (unbounded) suits ReLU blocks (x / -x pairs) and blocks
    whose activations were removed, and refuses bounded activations (ReLU6) with the reason.
    Raises MergeRefused for stride-2 / channel-changing / projection shortcuts, and when
    the carry would scale x below `min_scale` (1.0: refuse what int8 cannot keep).
    """
    plain, _ = _rewrite(_chain_of(block), _interval(input_range), min_scale)
    return plain


# --- whole networks --------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockRemoval:
    """One block with a shortcut: removed or not, why, and how its input is carried."""

    path: str
    kind: str
    removed: bool
    reason: str
    carry: str = ""  # one letter per input channel: d(irect), a(ffine), p(air)
    extra_channels: int = 0  # carried channels added inside the block
    input_bound: tuple[float | None, float | None] | None = None  # proven; None: unbounded
    max_abs_err: float | None = None  # float64 check of the rewrite, inside the bound


@dataclass(frozen=True)
class ResidualRemoval:
    """What `remove_residuals` did: the rewritten model and a record per shortcut block."""

    model: nn.Module
    blocks: tuple[BlockRemoval, ...]
    bounds: str  # how the input bounds were found

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(b.path for b in self.blocks if b.removed)

    def to_dict(self) -> dict[str, Any]:
        return {"bounds": self.bounds, "blocks": [asdict(b) for b in self.blocks]}


def remove_residuals(
    model: nn.Module,
    *,
    input_range: InputRange = None,
    min_scale: float = 0.0,
    check: bool = True,
) -> ResidualRemoval:
    """A copy of `model` with every identity-shortcut block it can make exact rewritten.

    Block input bounds are proven from `input_range` (unbounded by default: exact for every
    input) over the torch.fx graph; blocks it cannot rewrite are kept and say why. With
    `check`, every rewrite is compared with its block in float64 on inputs spanning the
    proven range, borders included; a mismatch raises StageError (a bug, not a refusal).
    `min_scale` refuses blocks whose carry must scale x down more (see `remove_residual`).
    """
    model = copy.deepcopy(model).eval()
    start = None if input_range is None else _interval(input_range)
    bounds = block_input_bounds(model, start)
    records = []
    for path, block, chain in _candidates(model):
        x = bounds.inputs.get(path, Interval.unbounded())
        bound = _finite(float(x.lo.min())), _finite(float(x.hi.max()))
        try:
            plain, code = _rewrite(chain, x, min_scale)
        except MergeRefused as refused:
            records.append(BlockRemoval(path, chain.kind, False, refused.reason, input_bound=bound))
            continue
        err = _check(block, code, x) if check else None
        set_submodule(model, path, plain)
        reason = _describe(code)
        records.append(
            BlockRemoval(path, chain.kind, True, reason, code.letters, code.carried, bound, err)
        )
    return ResidualRemoval(model, tuple(records), bounds.note)


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded end is None."""
    return value if math.isfinite(value) else None


def _describe(code: CarryCode) -> str:
    counts = ", ".join(f"{n} {mode}" for mode, n in code.counts().items() if n)
    text = f"carried {code.channels} channels ({counts}) as {code.carried} extra channels"
    smallest = float(code.scale.min())
    if smallest < 1.0:
        text += (
            f"; x scaled down by up to {1 / smallest:.3g}x to fit the activations' identity "
            "range, which int8 pays for in resolution"
        )
    return text


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module, BlockChain]]:
    """Outermost handled blocks that have a shortcut, in module order (listed before any is
    replaced)."""
    found: list[tuple[str, nn.Module, BlockChain]] = []
    for path, module in model.named_modules():
        if any(path.startswith(taken + ".") for taken, _, _ in found):
            continue
        chain = block_chain(module)
        if chain is not None and chain.shortcut is not None:
            found.append((path, module, chain))
    return found


def rebuild_without_residuals(model: nn.Module, record: Mapping[str, Any]) -> nn.Module:
    """`model` (a copy) with the recorded blocks rewritten to the recorded structure.

    The carry values are placeholders: load the saved state_dict afterwards. The structure
    comes from the record, not from bounds, so weights trained after the removal rebuild too.
    """
    model = copy.deepcopy(model).eval()
    for block in record["blocks"]:
        if block["removed"]:
            chain = _chain_of(model.get_submodule(block["path"]))
            plain = plain_chain(chain, CarryCode.from_letters(block["carry"]))
            set_submodule(model, block["path"], plain)
    return model


def _check(block: nn.Module, code: CarryCode, x: Interval) -> float:
    """Max |block - rewrite| with both in float64 (weights too, so only the transform is
    tested, not float32 storage) on inputs inside `x`, its endpoints and zero included."""
    reference = copy.deepcopy(block).double().eval()
    candidate = plain_chain(_chain_of(reference), code)
    channels = code.channels
    inputs = sample_inside(x, (CHECK_SHAPE[0], channels, *CHECK_SHAPE[1:]), seed=0)
    inputs = inputs.to(next(reference.parameters()).device)
    with torch.no_grad():
        want, got = reference(inputs), candidate(inputs)
    err = float((want - got).abs().max())
    scale = max(1.0, float(want.abs().max()))
    if not err <= CHECK_RTOL * scale:
        raise StageError(
            f"the residual-free {type(block).__name__} differs from the block by {err:.3e} in "
            f"float64 (scale {scale:.3e}); this is a bug, please report it."
        )
    return err


def sample_inside(x: Interval, shape: tuple[int, ...], *, seed: int) -> Tensor:
    """float64 values inside `x` per channel (dim 1): its finite endpoints on the corners and
    borders, 0 where it is inside, the rest spread over the range (normal where unbounded)."""
    channels = shape[1]
    x = x.per_channel(channels)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (t.view(1, channels, 1, 1) for t in (x.lo, x.hi))
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    n = torch.randn(shape, generator=gen, dtype=torch.float64) * 4.0
    both = torch.isfinite(lo) & torch.isfinite(hi)
    values = torch.where(both, lo + u * (hi - lo), n)
    values = torch.where(torch.isfinite(lo) & ~torch.isfinite(hi), lo + n.abs(), values)
    values = torch.where(~torch.isfinite(lo) & torch.isfinite(hi), hi - n.abs(), values)
    values[..., 0, :] = torch.where(torch.isfinite(lo), lo, values)[..., 0, :]
    values[..., -1, :] = torch.where(torch.isfinite(hi), hi, values)[..., -1, :]
    zero_inside = (lo <= 0) & (hi >= 0)
    values[..., :, 0] = torch.where(zero_inside, 0.0, values)[..., :, 0]
    return values
