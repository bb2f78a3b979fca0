"""Saving a shrunk model so that it can be built, and rebuilt in PyTorch.

`save_shrunk(out=".../name.pt2")` writes four files side by side:

- `name.pt2`: a `torch.export` program of the deploy model (eval mode, fixed input
  shape). `ran-edge build --model name.pt2` builds it like any exported model: no model
  code, no plan needed.
- `name.json`: what was done and how to redo it: the source model spec and weights, the
  input shape, per block whether its activations were removed and whether it collapsed
  (and why, with MACs and costs), the verification errors and recovery figures.
- `name.state_dict.pt`: the deploy model's state_dict. `rebuild_deploy("name.json")`
  rebuilds the deploy nn.Module from the source spec + plan and loads it, for PyTorch use
  (inspection, further fine-tuning of the collapsed convs).
- `name.py`: `make_model()` = `rebuild_deploy("name.json")` and `INPUT_SHAPE`, so
  `ran-edge build --model name.py:make_model` builds the real module: unlike the .pt2
  graph it keeps module paths, so the per-module report names each collapsed block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ran_edge.atomic import write_atomic
from ran_edge.errors import UsageError

FORMAT = "ran-edge-shrunk/1"


@dataclass(frozen=True)
class ShrunkFiles:
    program: Path  # .pt2
    description: Path  # .json
    state_dict: Path  # .state_dict.pt
    factory: Path  # .py with make_model()


def shrunk_paths(out: Path) -> ShrunkFiles:
    """The three file names for an output path ending in .pt2."""
    out = Path(out)
    if out.suffix != ".pt2":
        raise UsageError(
            f"--out {out} must end in .pt2 (a torch.export program that `ran-edge build "
            "--model` accepts); the .json and .state_dict.pt files are written beside it."
        )
    return ShrunkFiles(
        out, out.with_suffix(".json"), out.with_suffix(".state_dict.pt"), out.with_suffix(".py")
    )


def save_shrunk(
    deploy: nn.Module, input_shape: tuple[int, ...], out: Path, description: dict[str, Any]
) -> ShrunkFiles:
    """Export `deploy` and write the three files (each atomically)."""
    files = shrunk_paths(out)
    deploy = deploy.eval()
    program = torch.export.export(deploy, (torch.zeros(input_shape),))
    tmp = files.program.with_name(f".{files.program.stem}.tmp.pt2")
    files.program.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, tmp)
    tmp.replace(files.program)
    tmp_state = files.state_dict.with_name(f".{files.state_dict.name}.tmp")
    torch.save(deploy.state_dict(), tmp_state)
    tmp_state.replace(files.state_dict)
    payload = {
        "format": FORMAT,
        **description,
        "input_shape": list(input_shape),
        "files": {"program": files.program.name, "state_dict": files.state_dict.name},
    }
    write_atomic(files.description, (json.dumps(payload, indent=2) + "\n").encode())
    factory = _FACTORY.format(name=files.description.name, shape=tuple(input_shape))
    write_atomic(files.factory, factory.encode())
    return files


_FACTORY = '''"""The shrunk deploy model written by `ran-edge shrink`, rebuilt with its weights.

Build it with per-module figures: ran-edge build --model {{this file}}:make_model
"""

from pathlib import Path

from ran_edge.shrink.artifacts import rebuild_deploy

INPUT_SHAPE = {shape}


def make_model():
    return rebuild_deploy(Path(__file__).with_name("{name}"))
'''


def rebuild_deploy(description: Path) -> nn.Module:
    """The deploy nn.Module described by a shrink .json, with its saved weights loaded.

    Rebuilds the source model (its spec and weights as recorded), applies the plan and the
    deploy transform, then loads the saved deploy state_dict (strict), so the structure
    and every value are the shrunk model's.
    """
    from ran_edge.models import load_model
    from ran_edge.shrink.adapt import to_shrinkable
    from ran_edge.shrink.depthshrink import ShrinkPlan, apply_plan, deploy_shrunk

    description = Path(description)
    try:
        data = json.loads(description.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read shrink description {description}: {exc}") from None
    if data.get("format") != FORMAT:
        raise UsageError(f"{description} is not a ran-edge shrink description ({FORMAT}).")
    source = data["source"]
    loaded = load_model(
        source["model"], weights=source.get("weights"), input_shape=tuple(data["input_shape"])
    )
    model, _ = to_shrinkable(loaded.module)
    plan = ShrinkPlan.from_dict(data["plan"])
    deploy = deploy_shrunk(apply_plan(model, plan), plan)
    state = torch.load(
        description.with_name(data["files"]["state_dict"]), map_location="cpu", weights_only=True
    )
    deploy.load_state_dict(state, strict=True)
    return deploy.eval()
