"""Saving a RepNAS deploy model like `ran-edge shrink` does (`ran_edge.model_files`).

`NAME.pt2` (build it), `NAME.json` (source spec and weights, the input shape, per layer the
candidates, chosen branches and architecture weights, the checks), `NAME.state_dict.pt`,
and `NAME.py` whose `make_model()` is `rebuild_repnas("NAME.json")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ran_edge.model_files import (
    ModelFiles,
    load_state_dict,
    read_description,
    save_model_files,
)

FORMAT = "ran-edge-repnas/1"


def save_repnas(
    deploy: nn.Module, input_shape: tuple[int, ...], out: Path, description: dict[str, Any]
) -> ModelFiles:
    """Export `deploy` and write the four files (each atomically)."""
    return save_model_files(
        deploy,
        input_shape,
        out,
        description,
        format_tag=FORMAT,
        rebuild="ran_edge.shrink.repnas.artifacts:rebuild_repnas",
        title="The deploy model written by `ran-edge repnas`, rebuilt with its weights.",
    )


def rebuild_repnas(description: Path) -> nn.Module:
    """The deploy nn.Module a repnas .json describes, with its saved weights (strict).

    Rebuilds the source model, puts the chosen branches back on each layer, deploys, and
    loads the saved state_dict, so structure and values are the searched model's.
    """
    from ran_edge.blocks.deploy import to_deploy
    from ran_edge.models import load_model
    from ran_edge.shrink.repnas.convert import find_sites, to_searchable

    data = read_description(description, FORMAT, "ran-edge repnas")
    source = data["source"]
    loaded = load_model(
        source["model"], weights=source.get("weights"), input_shape=tuple(data["input_shape"])
    )
    chosen = {layer["path"]: layer["chosen"] for layer in data["layers"]}
    sites = find_sites(loaded.module, data["candidates"])
    model = to_searchable(loaded.module, sites, None, chosen=chosen)
    deploy = to_deploy(model)
    deploy.load_state_dict(load_state_dict(description, data), strict=True)
    return deploy.eval()
