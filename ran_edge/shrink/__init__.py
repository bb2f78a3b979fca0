"""Exact structural transforms: fold BN, merge parallel branches, collapse linear chains.

Every transform returns new plain nn.Conv2d modules, computes in float64 and casts back,
and either is exact on the whole output map (borders included) or raises MergeRefused
(a UsageError) saying why not and what would make it exact. `verify_equivalent`
measures it. Conventions and derivations: docs/shrink.md.
"""

from ran_edge.shrink.branches import (
    ConvKernel,
    MergeRefused,
    avgpool_kernel,
    branch_kernel,
    identity_kernel,
    merge_parallel,
    regroup_weight,
)
from ran_edge.shrink.collapse import (
    BORDERS,
    Border,
    ConvChain,
    chain_forward,
    collapse_inverted_residual,
    compose,
    conv2d_value_padded,
    ethos_u_conv_notes,
    fold_residual,
    merge_refusal,
    merge_sequential_convs,
    pad_with_values,
)
from ran_edge.shrink.fold import bn_affine, conv_from_tensors, fold_bn
from ran_edge.shrink.verify import Equivalence, verify_equivalent

__all__ = [
    "BORDERS",
    "Border",
    "ConvChain",
    "ConvKernel",
    "Equivalence",
    "MergeRefused",
    "avgpool_kernel",
    "bn_affine",
    "branch_kernel",
    "chain_forward",
    "collapse_inverted_residual",
    "compose",
    "conv2d_value_padded",
    "conv_from_tensors",
    "ethos_u_conv_notes",
    "fold_bn",
    "fold_residual",
    "identity_kernel",
    "merge_parallel",
    "merge_refusal",
    "merge_sequential_convs",
    "pad_with_values",
    "regroup_weight",
    "verify_equivalent",
]
