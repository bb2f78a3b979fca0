"""PyTorch-side shrinking built on the exact merges of `ran_edge.reparam`.

DepthShrinker (`gates`: learnable activation gates with a top-k straight-through search;
`depthshrink`: remove, plan merges by a cost, collapse, verify; `cost`: MACs or Vela cycles
per block; `distill`: label-free recovery), saving shrunk models (`artifacts`), zoo blocks
made shrinkable (`adapt`), RAN-i scaling by NN-Mass (`ran_i`), RMNet residual removal
(`rmnet`, over `residual_chain` and the bound proofs of `intervals`) and numerical
equivalence checks (`verify`). The `shrink` command's pipeline is `run`. Conventions:
docs/shrink.md.
"""

from ran_edge.shrink.adapt import to_shrinkable
from ran_edge.shrink.artifacts import ShrunkFiles, rebuild_deploy, save_shrunk
from ran_edge.shrink.cost import (
    BlockCost,
    VelaBlockCost,
    compare_costs,
    macs_cost,
    module_macs,
    resolve_cost,
    vela_block_cost,
)
from ran_edge.shrink.depthshrink import (
    BlockPlan,
    SearchResult,
    ShrinkPlan,
    Verification,
    apply_plan,
    chain_deploy,
    check_removal,
    deploy_shrunk,
    deploy_verified,
    plan_shrink,
    search_removal,
    shrinkable_blocks,
    verify_shrunk,
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
from ran_edge.shrink.rmnet import (
    BlockRemoval,
    ResidualRemoval,
    rebuild_without_residuals,
    remove_residual,
    remove_residuals,
)
from ran_edge.shrink.verify import Equivalence, verify_equivalent

__all__ = [
    "ActivationGate",
    "Agreement",
    "BlockCost",
    "BlockPlan",
    "BlockRemoval",
    "Equivalence",
    "GateSearch",
    "GateState",
    "ResidualRemoval",
    "ScaledConfig",
    "ScalingSearch",
    "SearchResult",
    "ShrinkPlan",
    "ShrunkFiles",
    "TopKMask",
    "TrainConfig",
    "TrainResult",
    "VelaBlockCost",
    "Verification",
    "accuracy",
    "agreement",
    "apply_plan",
    "chain_deploy",
    "check_removal",
    "compare_costs",
    "convnext_macs",
    "deploy_shrunk",
    "deploy_verified",
    "distill_loss",
    "macs_cost",
    "module_macs",
    "nn_mass",
    "plan_shrink",
    "predict",
    "preset",
    "rebuild_deploy",
    "rebuild_without_residuals",
    "remove_residual",
    "remove_residuals",
    "resolve_cost",
    "save_shrunk",
    "search_removal",
    "search_scaling",
    "shrinkable_blocks",
    "to_shrinkable",
    "topk_mask",
    "train_student",
    "uniform_scale",
    "vela_block_cost",
    "verify_equivalent",
    "verify_shrunk",
]
