"""The repo's residual blocks as one plain shape: convs with activations between, a shortcut,
an activation after the add. Residual removal and the bound proofs work on that shape only,
so a new block kind needs one adapter here and nothing else.

Handled: `ran_edge.blocks.InvertedResidual` (any activations, either border), `FusedMBConv`,
`Residual` (the deploy form `to_deploy` leaves for an unfolded residual), the zoo ResNet
`BasicBlock`, and the zoo MobileNetV2 / EfficientNet-Lite inverted residuals (plain
Sequentials), each in train form (BN folded here) or deploy form (BN already folded).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

from ran_edge.blocks import ConvBN, FusedMBConv, InvertedResidual, Residual
from ran_edge.models import efficientnet_lite, mobilenet_v2
from ran_edge.models.reference_nets import BasicBlock
from ran_edge.reparam.bounds import Interval, activation_interval, conv_interval
from ran_edge.reparam.branches import ConvKernel
from ran_edge.reparam.fold import fold_bn

HANDLED = (
    Residual,
    InvertedResidual,
    FusedMBConv,
    BasicBlock,
    mobilenet_v2.InvertedResidual,
    efficientnet_lite.MBConv,
)


@dataclass(frozen=True)
class BlockChain:
    """`post(convs[-1](... acts[0](convs[0](x))) [tail] + shortcut(x))`, BN folded (eval).

    `acts[i]` sits between `convs[i]` and `convs[i + 1]` (nn.Identity where there is none).
    `shortcut` is nn.Identity, a folded projection conv, or None (no shortcut); `tail` is an
    activation between the last conv and the add (no conv after it to put x back in).
    """

    kind: str
    convs: tuple[nn.Conv2d, ...]
    acts: tuple[nn.Module, ...]
    shortcut: nn.Module | None
    post: nn.Module | None = None
    tail: nn.Module | None = None


def is_block(module: nn.Module) -> bool:
    return isinstance(module, HANDLED)


def block_chain(module: nn.Module) -> BlockChain | None:
    """The block's plain shape, or None for a module this file has no adapter for."""
    if isinstance(module, mobilenet_v2.InvertedResidual):
        return _from_layers("InvertedResidual", [module.conv], module.use_res_connect)
    if isinstance(module, efficientnet_lite.MBConv):
        parts = [module.expand, module.depthwise, module.project]
        return _from_layers("MBConv", parts, module.use_residual)
    if isinstance(module, InvertedResidual):
        return _inverted_residual(module)
    if isinstance(module, FusedMBConv):
        return _fused(module)
    if isinstance(module, BasicBlock):
        return _basic(module)
    if isinstance(module, Residual):
        return _residual(module)
    return None


def _inverted_residual(block: InvertedResidual) -> BlockChain:
    convs = block.folded_convs()
    acts = (block.expand_act, block.dw_act) if block.expand is not None else (block.dw_act,)
    if block.border == "bias" and block.expand is not None:
        # Bias-aware padding = the expand 1x1 conv padding its input: its ring is then the
        # expand stage's zero response, which is what the depthwise ring holds.
        expand, depthwise = (ConvKernel.from_conv(c) for c in convs[:2])
        convs[0] = replace(expand, padding=depthwise.padding).to_conv(like=convs[0].weight)
        convs[1] = replace(depthwise, padding=(0, 0)).to_conv(like=convs[1].weight)
    shortcut = nn.Identity() if block.use_residual else None
    return BlockChain("InvertedResidual", tuple(convs), acts, shortcut)


def _fused(block: FusedMBConv) -> BlockChain:
    shortcut = nn.Identity() if block.use_residual else None
    fused = block.fused.to_deploy()
    if block.project is None:
        return BlockChain("FusedMBConv", (fused,), (), shortcut, tail=block.act)
    return BlockChain("FusedMBConv", (fused, block.project.to_deploy()), (block.act,), shortcut)


def _plain(module: nn.Module) -> nn.Conv2d:
    return module.to_deploy() if isinstance(module, ConvBN) else module


def _basic(block: BasicBlock) -> BlockChain:
    shortcut = nn.Identity() if block.shortcut is None else _plain(block.shortcut)
    convs = (_plain(block.conv1), _plain(block.conv2))
    return BlockChain("BasicBlock", convs, (block.act,), shortcut, post=block.act)


def _residual(block: Residual) -> BlockChain | None:
    return _from_layers("Residual", [block.body], True)


def _flat(modules: list[nn.Module | None]) -> list[nn.Module]:
    """Leaf layers in order: Sequentials opened, Conv2d -> BatchNorm2d folded, Identity dropped."""
    leaves: list[nn.Module] = []
    for module in modules:
        if isinstance(module, nn.Sequential):
            leaves += _flat(list(module))
        elif isinstance(module, nn.BatchNorm2d) and leaves and isinstance(leaves[-1], nn.Conv2d):
            leaves[-1] = fold_bn(leaves[-1], module)
        elif module is not None and not isinstance(module, nn.Identity):
            leaves.append(module)
    return leaves


def _from_layers(kind: str, modules: list[nn.Module | None], residual: bool) -> BlockChain | None:
    """conv (act conv)* [act], optionally after a ZeroPad2d; None for anything else."""
    layers = _flat(modules)
    pad = None
    if layers and isinstance(layers[0], nn.ZeroPad2d):
        pad, layers = layers[0], layers[1:]
    convs: list[nn.Conv2d] = []
    acts: list[nn.Module] = []
    pending: nn.Module | None = None
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            if convs:
                acts.append(pending if pending is not None else nn.Identity())
            convs.append(layer)
            pending = None
        elif pending is None and convs and not isinstance(layer, nn.BatchNorm2d):
            pending = layer
        else:
            return None  # two activations in a row, a lone BatchNorm, or one before any conv
    if not convs:
        return None
    if pad is not None:
        first = _absorb_pad(pad, convs[0])
        if first is None:
            return None
        convs[0] = first
    shortcut = nn.Identity() if residual else None
    return BlockChain(kind, tuple(convs), tuple(acts), shortcut, tail=pending)


def _absorb_pad(pad: nn.ZeroPad2d, conv: nn.Conv2d) -> nn.Conv2d | None:
    """ZeroPad2d then a zero-padded conv is that conv with the two paddings added."""
    left, right, top, bottom = pad.padding
    if left != right or top != bottom or conv.padding_mode != "zeros":
        return None
    kernel = ConvKernel.from_conv(conv)
    grown = (kernel.padding[0] + top, kernel.padding[1] + left)
    return replace(kernel, padding=grown).to_conv(like=conv.weight)


def chain_interval(chain: BlockChain, x: Interval) -> Interval:
    """Sound bounds of the block's output for an input in `x` (unknown parts: unbounded)."""
    h = x
    for conv, act in zip(chain.convs, (*chain.acts, chain.tail), strict=False):
        h = conv_interval(conv, h)
        if act is not None:
            h = activation_interval(act, h) or Interval.unbounded()
    if isinstance(chain.shortcut, nn.Conv2d):
        h = h + conv_interval(chain.shortcut, x)
    elif chain.shortcut is not None:
        h = h + x
    if chain.post is not None:
        h = activation_interval(chain.post, h) or Interval.unbounded()
    return h
