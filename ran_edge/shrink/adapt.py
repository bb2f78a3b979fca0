"""Zoo inverted residuals -> `ran_edge.blocks.InvertedResidual`, weights copied, same function.

The zoo's MobileNetV2 (torchvision layout) and EfficientNet-Lite write their inverted
residuals as plain Sequentials, whose activations are not addressable by name. DepthShrinker
needs `expand_act` / `dw_act` attributes, so `to_shrinkable` swaps each such block for the
equivalent `InvertedResidual` (zero borders, ReLU6) at the same module path, which keeps
per-module reports comparable. The swap is exact: the same convs and BN statistics.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ran_edge.blocks import ConvBN, InvertedResidual
from ran_edge.models import efficientnet_lite, mobilenet_v2


def to_shrinkable(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` with zoo inverted residuals replaced; (model, blocks replaced)."""
    model = copy.deepcopy(model)
    replaced = 0
    for path, module in list(model.named_modules()):
        block = _convert(module)
        if block is None:
            continue
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, name, block.train(module.training))
        replaced += 1
    return model, replaced


def _convert(module: nn.Module) -> InvertedResidual | None:
    if isinstance(module, mobilenet_v2.InvertedResidual):
        layers = list(module.conv)
        expand = layers[0] if len(layers) == 4 else None
        depthwise, project = layers[-3], nn.Sequential(layers[-2], layers[-1])
        return _build(expand, depthwise, project, module.use_res_connect)
    if isinstance(module, efficientnet_lite.MBConv):
        return _build(module.expand, module.depthwise, module.project, module.use_residual)
    return None


def _build(
    expand: nn.Sequential | None, depthwise: nn.Sequential, project: nn.Sequential, residual: bool
) -> InvertedResidual:
    dw_conv: nn.Conv2d = depthwise[0]
    project_conv: nn.Conv2d = project[0]
    cin = expand[0].in_channels if expand is not None else dw_conv.in_channels
    hidden = dw_conv.in_channels
    block = InvertedResidual(
        cin,
        project_conv.out_channels,
        stride=dw_conv.stride[0],
        expand_ratio=hidden / cin,
        kernel_size=dw_conv.kernel_size[0],
        act=nn.ReLU6,
    )
    if block.use_residual != residual or round(cin * hidden / cin) != hidden:
        raise AssertionError(f"cannot map {type(depthwise).__name__} block with {cin}->{hidden}")
    if expand is not None:
        _copy(block.expand, expand)
    _copy(block.depthwise, depthwise)
    _copy(block.project, project)
    return block.to(device=dw_conv.weight.device, dtype=dw_conv.weight.dtype)


def _copy(target: ConvBN | None, source: nn.Sequential) -> None:
    assert target is not None
    with torch.no_grad():
        target.conv.load_state_dict(source[0].state_dict())
        target.bn.load_state_dict(source[1].state_dict())
