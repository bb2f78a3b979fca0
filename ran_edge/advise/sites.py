"""Where a user's network has blocks that advice can replace, and what each one is now.

A *site* is one of two things in the user's model:

- a block: an inverted residual (ran_edge.blocks.InvertedResidual, or a zoo MobileNetV2 /
  EfficientNet-Lite block, which `to_shrinkable` turns into one at the same module path
  with the same function);
- a conv: a dense kxk `nn.Conv2d` (k >= 3, odd, "same" padding k//2, no groups or
  dilation) outside any such block, as in ResNets, VGG-style nets and small custom CNNs.

Its slot (channels, input resolution, stride) is what any replacement must keep; its form
(kernel, expansion, activation; or the conv's kind) is what the replacement may change.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ran_edge.advise.request import CONV_FORMS, SITE_KINDS
from ran_edge.blocks import (
    CollapsedBlock,
    FusedMBConv,
    InvertedResidual,
    MobileOneBlock,
    RepVGGBlock,
)
from ran_edge.blocks.cheap_convs import GhostConv, LowRankConv, SeparableConv
from ran_edge.models.ran_e_space import Slot
from ran_edge.probe import probe_forward
from ran_edge.shrink.adapt import to_shrinkable

# Activations a replacement block can be built with, by class name (kept in JSON files).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (nn.ReLU6, nn.ReLU, nn.Hardswish, nn.SiLU, nn.GELU)
}


BLOCK_KINDS = ("ir", "collapsed")
# A conv site's forms: the dense conv itself and its cheaper stand-ins (ran_edge.blocks.cheap_convs).
CONV_KINDS = ("conv", *CONV_FORMS)


@dataclass(frozen=True)
class BlockForm:
    """What fills a slot.

    Blocks: an inverted residual (kernel, expansion = hidden / in channels) or a
    collapsed dense kxk conv (one activation after it). Convs (`act` empty: the conv's
    own BN and activation stay after it): the dense conv, or a stand-in whose `expand`
    is its one parameter: the group count of "grouped", the rank as a fraction of the
    output channels of "lowrank", 1 otherwise.
    """

    kind: str  # one of BLOCK_KINDS or CONV_KINDS
    kernel: int
    expand: float
    act: str  # a key of ACTIVATIONS; "" for conv forms

    @property
    def is_conv(self) -> bool:
        return self.kind in CONV_KINDS

    def label(self) -> str:
        k = f"{self.kernel}x{self.kernel}"
        labels = {
            "collapsed": f"collapsed {k}",
            "conv": f"conv {k}",
            "separable": f"separable {k}",
            "grouped": f"grouped {k} g{self.expand:g}",
            "lowrank": f"low-rank {self.kernel}x1+1x{self.kernel} r{self.expand:g}",
            "ghost": f"ghost {k}",
        }
        return labels.get(self.kind, f"IR k{self.kernel} e{self.expand:g}")


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


def find_sites(
    model: nn.Module, input_shape: tuple[int, ...], kinds: str = "blocks"
) -> tuple[list[Site], list[str]]:
    """(sites, skipped) in module order: with `kinds` "blocks" every InvertedResidual with a
    known activation and a square input, with "convs" every dense kxk conv outside a
    structured block, with "all" both; `skipped` says what was left out and why."""
    if kinds not in SITE_KINDS:
        raise ValueError(f"site kinds {kinds!r}: one of {', '.join(SITE_KINDS)}")
    want_blocks, want_convs = kinds in ("blocks", "all"), kinds in ("convs", "all")
    inside = _inside_structured_blocks(model)
    sizes: dict[str, tuple[int, int]] = {}
    calls: dict[str, int] = {}
    paths_of: dict[int, list[str]] = {}
    for path, module in model.named_modules(remove_duplicate=False):
        paths_of.setdefault(id(module), []).append(path)

    def record(path: str):
        def hook(_module: nn.Module, inputs: tuple, _output: object) -> None:
            sizes.setdefault(path, tuple(inputs[0].shape[2:]))
            calls[path] = calls.get(path, 0) + 1

        return hook

    def wanted(path: str, module: nn.Module) -> bool:
        if isinstance(module, InvertedResidual):
            return want_blocks
        return want_convs and _is_dense_conv(module) and path not in inside

    candidates = [(p, m) for p, m in model.named_modules() if wanted(p, m)]
    hooks = [module.register_forward_hook(record(path)) for path, module in candidates]
    try:
        probe_forward(model, input_shape)
    finally:
        for h in hooks:
            h.remove()
    sites, skipped = [], []
    for path, module in candidates:
        if isinstance(module, InvertedResidual):
            reason = _unsupported(module, sizes.get(path))
        else:
            reason = _unsupported_conv(module, sizes.get(path))
        shared = paths_of[id(module)]
        if len(shared) > 1 or calls.get(path, 0) > 1:
            # one module in two places: a swap would change both, a cost would count one
            reason = f"used {max(len(shared), calls.get(path, 0))} times (shared or called again)"
        if reason:
            skipped.append(f"{path}: {reason}")
            continue
        size = sizes[path][0]
        sites.append(
            _site(path, module, size)
            if isinstance(module, InvertedResidual)
            else _conv_site(path, module, size)
        )
    return sites, skipped


# Blocks whose convs are theirs to restructure (train/deploy forms, folded residuals): a conv
# inside one is never a site of its own. ConvBN is not one of them: it is a conv and its BN.
STRUCTURED = (
    InvertedResidual,
    CollapsedBlock,
    FusedMBConv,
    MobileOneBlock,
    RepVGGBlock,
    SeparableConv,
    LowRankConv,
    GhostConv,
)


def _inside_structured_blocks(model: nn.Module) -> set[str]:
    inside: set[str] = set()
    for path, module in model.named_modules():
        if isinstance(module, STRUCTURED):
            inside |= {f"{path}.{sub}" if path else sub for sub, _ in module.named_modules() if sub}
    return inside


def _is_dense_conv(module: nn.Module) -> bool:
    return type(module) is nn.Conv2d and module.groups == 1 and module.kernel_size[0] > 1


def _unsupported_conv(conv: nn.Conv2d, size: tuple[int, int] | None) -> str | None:
    k = conv.kernel_size
    if size is None:
        return "not reached by a forward pass"
    if k[0] != k[1] or k[0] % 2 == 0:
        return f"kernel {k[0]}x{k[1]} (conv sites are square with an odd kernel)"
    if conv.padding != (k[0] // 2, k[0] // 2) or conv.padding_mode != "zeros":
        return f"padding {conv.padding} {conv.padding_mode} (conv sites pad k//2 with zeros)"
    if conv.dilation != (1, 1) or conv.stride[0] != conv.stride[1]:
        return "dilated or unevenly strided"
    if size[0] != size[1]:
        return f"non-square input {size[0]}x{size[1]} (cost tables are square)"
    return None


def _conv_site(path: str, conv: nn.Conv2d, size: int) -> Site:
    form = BlockForm("conv", conv.kernel_size[0], 1.0, "")
    slot = Slot(conv.in_channels, conv.out_channels, size, conv.stride[0])
    return Site(path, slot, form, sum(p.numel() for p in conv.parameters()))


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
