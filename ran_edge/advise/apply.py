"""`advise --apply`: put the recommended blocks in, recover by distillation, save.

Replacement blocks start from a seeded random init (their shapes differ from what they
replace, so no weights carry over), except a dense conv's stand-ins, which start at the
closest fit to the conv's own weights (ran_edge.blocks.cheap_convs); the rest of the
network keeps its weights. Recovery
is the shrink issue's distillation: the original network is the teacher, on unlabelled
calibration images, with a feature loss on each replaced block's output (same shape as
the original block's, since the slot is kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ran_edge.advise.forms import build_form
from ran_edge.advise.sites import BlockForm, replaceable_model
from ran_edge.model_files import ModelFiles, ModelFormat
from ran_edge.models.ran_e_space import Slot

ADVISED = ModelFormat(
    tag="ran-edge-advised/1",
    tool="ran-edge advise",
    rebuild="ran_edge.advise.apply:rebuild_advised",
    title="The network rewritten by `ran-edge advise --apply`, rebuilt with its weights.",
)


@dataclass(frozen=True)
class Replacement:
    """One rewrite: the block at `path` (slot kept) becomes `form`."""

    path: str
    slot: Slot
    form: BlockForm

    def to_dict(self) -> dict:
        return {"path": self.path, "slot": asdict(self.slot), "form": asdict(self.form)}

    @classmethod
    def from_dict(cls, data: dict) -> Replacement:
        return cls(data["path"], Slot(**data["slot"]), BlockForm(**data["form"]))


def apply_replacements(
    model: nn.Module, replacements: Sequence[Replacement], seed: int = 0
) -> nn.Module:
    """`model` (already through `replaceable_model`) with each replacement swapped in, in
    place; new blocks are initialised from `seed`, BN statistics at their defaults."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for r in replacements:
            parent_path, _, name = r.path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            old = getattr(parent, name)
            setattr(parent, name, build_form(r.slot, r.form, like=old).train(old.training))
    return model


def save_advised(
    model: nn.Module,
    input_shape: tuple[int, ...],
    out: Path,
    *,
    source: dict,
    replacements: Sequence[Replacement],
    record: dict,
) -> ModelFiles:
    """The advised model's .pt2, .json, .state_dict.pt and .py (see `ran_edge.model_files`)."""
    description = {
        "source": source,
        "replacements": [r.to_dict() for r in replacements],
        **record,
    }
    return ADVISED.save(model, input_shape, out, description)


def rebuild_advised(description: Path) -> nn.Module:
    """The advised nn.Module: the source model as recorded, the same replacements, then
    the saved state_dict (strict), so structure and every value are the advised model's."""
    return ADVISED.load(description, _advised_form)


def _advised_form(source: nn.Module, data: dict) -> nn.Module:
    replacements = [Replacement.from_dict(r) for r in data["replacements"]]
    return apply_replacements(replaceable_model(source), replacements)
