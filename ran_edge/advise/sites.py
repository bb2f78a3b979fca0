"""Where a user's network has blocks that advice can replace, and what each one is now.

A *site* is an inverted residual in the user's model (ran_edge.blocks.InvertedResidual,
or a zoo MobileNetV2 / EfficientNet-Lite block, which `to_shrinkable` turns into one at
the same module path with the same function). Its slot (channels, input resolution,
stride) is what any replacement must keep; its form (kernel, expansion, activation) is
what the replacement may change.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ran_edge.blocks import InvertedResidual
from ran_edge.models.ran_e_space import Slot
from ran_edge.probe import probe_forward
from ran_edge.shrink.adapt import to_shrinkable

# Activations a replacement block can be built with, by class name (kept in JSON files).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (nn.ReLU6, nn.ReLU, nn.Hardswish, nn.SiLU, nn.GELU)
}


@dataclass(frozen=True)
class BlockForm:
    """What fills a slot: an inverted residual (kernel, expansion = hidden / in channels)
    or a collapsed dense 3x3 conv (one activation after it)."""

    kind: str  # "ir" | "collapsed"
    kernel: int
    expand: float
    act: str  # a key of ACTIVATIONS

    def label(self) -> str:
        if self.kind == "collapsed":
            return f"collapsed {self.kernel}x{self.kernel}"
        return f"IR k{self.kernel} e{self.expand:g}"


@dataclass(frozen=True)
class Site:
    """One replaceable block of the user's model."""

    path: str
    slot: Slot
    form: BlockForm
    params: int


def replaceable_model(model: nn.Module) -> nn.Module:
    """A copy of `model` whose zoo inverted residuals are `InvertedResidual`s (same paths,
    same function), so sites can be found and swapped by module path."""
    converted, _ = to_shrinkable(model)
    return converted.eval()


def find_sites(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[list[Site], list[str]]:
    """(sites, skipped): every InvertedResidual with a known activation and a square input;
    `skipped` says which blocks were left out and why."""
    sizes: dict[str, tuple[int, int]] = {}

    def record(path: str):
        def hook(_module: nn.Module, inputs: tuple, _output: object) -> None:
            sizes.setdefault(path, tuple(inputs[0].shape[2:]))

        return hook

    hooks = [
        module.register_forward_hook(record(path))
        for path, module in model.named_modules()
        if isinstance(module, InvertedResidual)
    ]
    try:
        probe_forward(model, input_shape)
    finally:
        for h in hooks:
            h.remove()
    sites, skipped = [], []
    for path, module in model.named_modules():
        if not isinstance(module, InvertedResidual):
            continue
        reason = _unsupported(module, sizes.get(path))
        if reason:
            skipped.append(f"{path}: {reason}")
            continue
        sites.append(_site(path, module, sizes[path][0]))
    return sites, skipped


def _unsupported(block: InvertedResidual, size: tuple[int, int] | None) -> str | None:
    if size is None:
        return "not reached by a forward pass"
    if size[0] != size[1]:
        return f"non-square input {size[0]}x{size[1]} (cost tables are square)"
    act = type(block.dw_act).__name__
    if act not in ACTIVATIONS:
        return f"activation {act} (replacements are built with {', '.join(ACTIVATIONS)})"
    return None


def _site(path: str, block: InvertedResidual, size: int) -> Site:
    depthwise = block.depthwise.conv
    cin = depthwise.in_channels if block.expand is None else block.expand.conv.in_channels
    form = BlockForm(
        "ir",
        depthwise.kernel_size[0],
        depthwise.in_channels / cin,
        type(block.dw_act).__name__,
    )
    slot = Slot(cin, block.project.conv.out_channels, size, depthwise.stride[0])
    return Site(path, slot, form, sum(p.numel() for p in block.parameters()))
