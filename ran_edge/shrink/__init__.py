"""Exact structural transforms: fold BN, merge parallel branches, collapse linear chains.

Every transform returns new plain nn.Conv2d modules, computes in float64 and casts back,
and either is exact on the whole output map (borders included) or raises MergeRefused
(a UsageError) saying why not and what would make it exact. `verify_equivalent`
measures it. Conventions and derivations: docs/shrink.md.

Built on them: DepthShrinker (`gates`: learnable activation gates with a top-k
straight-through search; `depthshrink`: remove, plan merges by a cost, collapse, verify;
`cost`: MACs or Vela cycles per block; `distill`: label-free recovery), saving shrunk
models (`artifacts`), zoo blocks made shrinkable (`adapt`) and RAN-i scaling by NN-Mass
(`ran_i`).
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
from ran_edge.shrink.cost import (
    BlockCost,
    VelaBlockCost,
    compare_costs,
    macs_cost,
    module_macs,
    resolve_cost,
    vela_block_cost,
)
from ran_edge.shrink.distill import (
    Agreement,
    TrainConfig,
    TrainResult,
    accuracy,
    agreement,
    distill_loss,
    predict,
    train_student,
)
from ran_edge.shrink.fold import bn_affine, conv_from_tensors, fold_bn
from ran_edge.shrink.gates import ActivationGate, GateSearch, GateState, TopKMask, topk_mask
from ran_edge.shrink.ran_i import (
    ScaledConfig,
    ScalingSearch,
    convnext_macs,
    nn_mass,
    preset,
    search_scaling,
    uniform_scale,
)
from ran_edge.shrink.verify import Equivalence, verify_equivalent

# These need ran_edge.blocks / ran_edge.models, which import this package: loaded on
# first use so that importing either side first works.
_LAZY = {
    "BlockPlan": "depthshrink",
    "SearchResult": "depthshrink",
    "ShrinkPlan": "depthshrink",
    "Verification": "depthshrink",
    "apply_plan": "depthshrink",
    "chain_deploy": "depthshrink",
    "check_removal": "depthshrink",
    "deploy_shrunk": "depthshrink",
    "deploy_verified": "depthshrink",
    "plan_shrink": "depthshrink",
    "search_removal": "depthshrink",
    "shrinkable_blocks": "depthshrink",
    "verify_shrunk": "depthshrink",
    "to_shrinkable": "adapt",
    "ShrunkFiles": "artifacts",
    "rebuild_deploy": "artifacts",
    "save_shrunk": "artifacts",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ran_edge.shrink.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ran_edge.shrink' has no attribute {name!r}")


__all__ = [
    "ActivationGate",
    "Agreement",
    "BlockCost",
    "GateSearch",
    "GateState",
    "ScaledConfig",
    "ScalingSearch",
    "TopKMask",
    "TrainConfig",
    "TrainResult",
    "VelaBlockCost",
    "accuracy",
    "agreement",
    "compare_costs",
    "convnext_macs",
    "distill_loss",
    "macs_cost",
    "module_macs",
    "nn_mass",
    "predict",
    "preset",
    "resolve_cost",
    "search_scaling",
    "topk_mask",
    "train_student",
    "uniform_scale",
    "vela_block_cost",
    *_LAZY,
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
