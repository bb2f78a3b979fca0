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

from ran_edge.model_files import (
    ModelFiles,
    load_state_dict,
    model_paths,
    read_description,
    save_model_files,
)

FORMAT = "ran-edge-shrunk/1"
ShrunkFiles = ModelFiles
shrunk_paths = model_paths


def save_shrunk(
    deploy: nn.Module, input_shape: tuple[int, ...], out: Path, description: dict[str, Any]
) -> ModelFiles:
    """Export `deploy` and write the four files (each atomically)."""
    return save_model_files(
        deploy,
        input_shape,
        out,
        description,
        format_tag=FORMAT,
        rebuild="ran_edge.shrink.artifacts:rebuild_deploy",
        title="The shrunk deploy model written by `ran-edge shrink`, rebuilt with its weights.",
    )


def rebuild_deploy(description: Path) -> nn.Module:
    """The deploy nn.Module described by a shrink .json, with its saved weights loaded.

    Rebuilds the source model (its spec and weights as recorded), applies the plan and the
    deploy transform (and the recorded residual removal), then loads the saved deploy
    state_dict (strict), so the structure and every value are the shrunk model's.
    """
    from ran_edge.models import load_model
    from ran_edge.shrink.adapt import to_shrinkable
    from ran_edge.shrink.depthshrink import ShrinkPlan, apply_plan, deploy_shrunk
    from ran_edge.shrink.rmnet import rebuild_without_residuals

    data = read_description(description, FORMAT, "ran-edge shrink")
    source = data["source"]
    loaded = load_model(
        source["model"], weights=source.get("weights"), input_shape=tuple(data["input_shape"])
    )
    model, _ = to_shrinkable(loaded.module)
    plan = ShrinkPlan.from_dict(data["plan"])
    deploy = deploy_shrunk(apply_plan(model, plan), plan)
    if data.get("residuals"):
        deploy = rebuild_without_residuals(deploy, data["residuals"])
    deploy.load_state_dict(load_state_dict(description, data), strict=True)
    return deploy.eval()
