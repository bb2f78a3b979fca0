"""Saving a RepNAS deploy model like `ran-edge shrink` does (`ran_edge.model_files`).

`NAME.pt2` (build it), `NAME.json` (source spec and weights, the input shape, per layer the
candidates, chosen branches and architecture weights, the checks), `NAME.state_dict.pt`,
and `NAME.py` whose `make_model()` is `rebuild_repnas("NAME.json")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ran_edge.model_files import ModelFormat

REPNAS = ModelFormat(
    tag="ran-edge-repnas/1",
    tool="ran-edge repnas",
    rebuild="ran_edge.shrink.repnas.artifacts:rebuild_repnas",
    title="The deploy model written by `ran-edge repnas`, rebuilt with its weights.",
)


def rebuild_repnas(description: Path) -> nn.Module:
    """The deploy nn.Module a repnas .json describes, with its saved weights (strict).

    Rebuilds the source model, puts the chosen branches back on each layer, deploys, and
    loads the saved state_dict, so structure and values are the searched model's.
    """
    return REPNAS.load(description, _deploy_form)


def _deploy_form(source: nn.Module, data: dict[str, Any]) -> nn.Module:
    from ran_edge.blocks.deploy import to_deploy
    from ran_edge.shrink.repnas.convert import find_sites, to_searchable

    chosen = {layer["path"]: layer["chosen"] for layer in data["layers"]}
    sites = find_sites(source, data["candidates"])
    return to_deploy(to_searchable(source, sites, None, chosen=chosen))
