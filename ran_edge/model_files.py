"""A rewritten PyTorch model saved so that `ran-edge build` can build it, and PyTorch rebuild it.

`shrink`, `repnas` and `advise --apply` each end with a model that is the user's network with
some blocks rewritten. Each names its `ModelFormat`; `format.save(out=".../name.pt2")` writes
four files side by side:

- `name.pt2`: a `torch.export` program (eval mode, fixed input shape) that
  `ran-edge build --model name.pt2` builds with no model code;
- `name.json`: what was done and how to redo it (a format tag, the source model spec
  and weights, the input shape, the tool's own record);
- `name.state_dict.pt`: the rewritten model's state_dict;
- `name.py`: `make_model()`, which calls the tool's rebuild function on `name.json`, so
  `ran-edge build --model name.py:make_model` builds the real module with its module
  paths (the per-module report then names each rewritten block; a .pt2 has none).

Each file is written to a temporary name and renamed, so a failure leaves no half file.
`format.load(name.json, restructure)` is the tool's rebuild function: the source model as
recorded, given the saved structure by the tool, then the saved weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ran_edge.atomic import write_atomic
from ran_edge.errors import UsageError


@dataclass(frozen=True)
class ModelFiles:
    program: Path  # .pt2
    description: Path  # .json
    state_dict: Path  # .state_dict.pt
    factory: Path  # .py with make_model()


def spec_stem(spec: str) -> str:
    """A model spec's short name for output files: the factory of `file.py:factory`, else
    the zoo name or the file's stem."""
    return Path(spec.split(":")[-1] if ":" in spec else spec).stem


def absolute_spec(spec: str) -> str:
    """A model spec whose file part is an absolute path (zoo names unchanged), so it means
    the same model from any folder: a saved .json, a job in another process or on a Ray node."""
    path, sep, factory = spec.rpartition(":")
    if sep and path.endswith(".py"):
        return f"{Path(path).resolve()}:{factory}"
    return str(Path(spec).resolve()) if Path(spec).exists() else spec


def source_record(spec: str, weights: Path | None) -> dict[str, str | None]:
    """The source model as a saved .json records it (`ModelFormat.load` rebuilds from it): the
    spec and weights with absolute paths, so the .json rebuilds from anywhere."""
    return {
        "model": absolute_spec(spec),
        "weights": str(Path(weights).resolve()) if weights else None,
    }


def model_paths(out: Path) -> ModelFiles:
    """The four file names for an output path ending in .pt2 (checked before any work)."""
    out = Path(out)
    if out.suffix != ".pt2":
        raise UsageError(
            f"--out {out} must end in .pt2 (a torch.export program that `ran-edge build "
            "--model` accepts); the .json, .state_dict.pt and .py files are written beside it."
        )
    return ModelFiles(
        out, out.with_suffix(".json"), out.with_suffix(".state_dict.pt"), out.with_suffix(".py")
    )


@dataclass(frozen=True)
class ModelFormat:
    """One tool's saved models: the .json's format tag, the tool its messages name, the
    "package.module:function" that rebuilds a model from its .json (what the .py calls),
    and the .py's title line."""

    tag: str
    tool: str
    rebuild: str
    title: str

    def save(
        self,
        module: nn.Module,
        input_shape: tuple[int, ...],
        out: Path,
        description: dict[str, Any],
    ) -> ModelFiles:
        """Export `module` and write the four files (each atomically)."""
        files = model_paths(out)
        module = module.eval()
        program = torch.export.export(module, (torch.zeros(input_shape),))
        files.program.parent.mkdir(parents=True, exist_ok=True)
        tmp = files.program.with_name(f".{files.program.stem}.tmp.pt2")
        torch.export.save(program, tmp)
        tmp.replace(files.program)
        tmp_state = files.state_dict.with_name(f".{files.state_dict.name}.tmp")
        torch.save(module.state_dict(), tmp_state)
        tmp_state.replace(files.state_dict)
        payload = {
            "format": self.tag,
            **description,
            "input_shape": list(input_shape),
            "files": {"program": files.program.name, "state_dict": files.state_dict.name},
        }
        write_atomic(files.description, (json.dumps(payload, indent=2) + "\n").encode())
        package, function = self.rebuild.split(":")
        factory = _FACTORY.format(
            title=self.title,
            package=package,
            function=function,
            name=files.description.name,
            shape=tuple(input_shape),
        )
        write_atomic(files.factory, factory.encode())
        return files

    def read(self, path: Path) -> dict[str, Any]:
        """The .json `save` wrote, checked to be of this format."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read {self.tool} description {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != self.tag:
            raise UsageError(f"{path} is not a {self.tool} description ({self.tag}).")
        return data

    def load(
        self, path: Path, restructure: Callable[[nn.Module, dict[str, Any]], nn.Module]
    ) -> nn.Module:
        """The saved model, from its .json: the source model as recorded (spec, weights,
        input shape), `restructure(source, description)` to give it the saved structure, then
        the saved state_dict (strict, weights_only), so structure and every value are the
        saved model's. In eval mode."""
        from ran_edge.models import load_model

        data = self.read(path)
        source = data["source"]
        loaded = load_model(
            source["model"], weights=source.get("weights"), input_shape=tuple(data["input_shape"])
        )
        module = restructure(loaded.module, data)
        state = torch.load(
            Path(path).with_name(data["files"]["state_dict"]), map_location="cpu", weights_only=True
        )
        module.load_state_dict(state, strict=True)
        return module.eval()


_FACTORY = '''"""{title}

Build it with per-module figures: ran-edge build --model {{this file}}:make_model
"""

from pathlib import Path

from {package} import {function}

INPUT_SHAPE = {shape}


def make_model():
    return {function}(Path(__file__).with_name("{name}"))
'''
