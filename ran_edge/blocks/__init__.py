"""Blocks with a train form and a deploy form.

Each block trains with its extra structure (BatchNorm, parallel branches, separate
convs, activations) and `to_deploy()` returns an equal module made only of plain
Conv2d / activation / add ops that Ethos-U runs. `to_deploy(model)` converts a whole
network. The exact transforms behind them live in `ran_edge.shrink`.
"""

from ran_edge.blocks.collapsed import CollapsedBlock
from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.blocks.deploy import (
    Reparameterizable,
    Residual,
    deploy_sequence,
    fold_sequential_bn,
    to_deploy,
    train_only_modules,
)
from ran_edge.blocks.fused_mbconv import FusedMBConv
from ran_edge.blocks.inverted_residual import InvertedResidual
from ran_edge.blocks.mobileone import MobileOneBlock
from ran_edge.blocks.repvgg import RepVGGBlock

__all__ = [
    "CollapsedBlock",
    "ConvBN",
    "FusedMBConv",
    "InvertedResidual",
    "MobileOneBlock",
    "RepVGGBlock",
    "Reparameterizable",
    "Residual",
    "deploy_sequence",
    "fold_sequential_bn",
    "to_deploy",
    "train_only_modules",
]
