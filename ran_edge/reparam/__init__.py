"""Structural re-parameterization math, below both `blocks` and `shrink`.

Exact, numerically verified function-preserving rewrites of convolutions: BatchNorm folding
(`fold`), merging parallel branches into one conv (`branches`: RepVGG, MobileOne, DBB-style),
collapsing a linear chain of convs into one (`chain`, borders included) and carrying a
block's input through its convs so its residual add disappears (`carry`, RMNet), with the
sound value bounds that carry needs (`bounds`). Everything computes in float64 and either is
exact on the whole output map or raises MergeRefused saying why. Derivations: docs/shrink.md.
"""

from ran_edge.reparam.bounds import Interval, conv_interval, module_interval
from ran_edge.reparam.branches import (
    ConvKernel,
    MergeRefused,
    avgpool_kernel,
    branch_kernel,
    identity_kernel,
    merge_parallel,
    regroup_weight,
)
from ran_edge.reparam.carry import (
    CarryCode,
    carry_gain,
    carry_refusal,
    carry_through,
    identity_range,
    plan_carry,
)
from ran_edge.reparam.chain import (
    BORDERS,
    Border,
    ConvChain,
    chain_forward,
    compose,
    conv2d_value_padded,
    ethos_u_conv_notes,
    fold_residual,
    merge_refusal,
    merge_sequential_convs,
    pad_with_values,
)
from ran_edge.reparam.fold import bn_affine, conv_from_tensors, fold_bn

__all__ = [
    "BORDERS",
    "Border",
    "CarryCode",
    "ConvChain",
    "ConvKernel",
    "Interval",
    "MergeRefused",
    "avgpool_kernel",
    "bn_affine",
    "branch_kernel",
    "carry_gain",
    "carry_refusal",
    "carry_through",
    "chain_forward",
    "compose",
    "conv2d_value_padded",
    "conv_from_tensors",
    "conv_interval",
    "ethos_u_conv_notes",
    "fold_bn",
    "fold_residual",
    "identity_kernel",
    "identity_range",
    "merge_parallel",
    "merge_refusal",
    "merge_sequential_convs",
    "module_interval",
    "pad_with_values",
    "plan_carry",
    "regroup_weight",
]
