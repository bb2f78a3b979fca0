"""Saving a shrunk model so that it can be built, and rebuilt in PyTorch.

`save_shrunk(out=".../name.pt2")` writes the four files of `ran_edge.model_files`: the
deploy model as `name.pt2`, `name.json` (the source model spec and weights, the input
shape, per block whether its activations were removed and whether it collapsed, and
why, with MACs and costs, the verification errors and recovery figures),
`name.state_dict.pt`, and `name.py` whose `make_model()` is `rebuild_deploy("name.json")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ran_edge.model_files import ModelFiles, ModelFormat, model_paths

SHRUNK = ModelFormat(
    tag="ran-edge-shrunk/1",
    tool="ran-edge shrink",
    rebuild="ran_edge.shrink.artifacts:rebuild_deploy",
    title="The shrunk deploy model written by `ran-edge shrink`, rebuilt with its weights.",
)
ShrunkFiles = ModelFiles
shrunk_paths = model_paths
save_shrunk = SHRUNK.save  # (deploy, input_shape, out, description) -> the four files


def rebuild_deploy(description: Path) -> nn.Module:
    """The deploy nn.Module described by a shrink .json, with its saved weights loaded.

    Rebuilds the source model (its spec and weights as recorded), applies the plan and the
    deploy transform (and the recorded residual removal), then loads the saved deploy
    state_dict (strict), so the structure and every value are the shrunk model's.
    """
    return SHRUNK.load(description, _deploy_form)


def _deploy_form(source: nn.Module, data: dict[str, Any]) -> nn.Module:
    from ran_edge.shrink.adapt import to_shrinkable
    from ran_edge.shrink.depthshrink import ShrinkPlan, apply_plan, deploy_shrunk
    from ran_edge.shrink.rmnet import rebuild_without_residuals

    model, _ = to_shrinkable(source)
    plan = ShrinkPlan.from_dict(data["plan"])
    deploy = deploy_shrunk(apply_plan(model, plan), plan)
    if data.get("residuals"):
        deploy = rebuild_without_residuals(deploy, data["residuals"])
    return deploy
