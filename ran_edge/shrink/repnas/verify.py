"""Merge every branch block into one conv, checked in float64 before anything is saved.

The merge arithmetic is float64 (`ran_edge.reparam`); to check the merge itself and not
float32 rounding, a float64 copy of the trained model is deployed and compared with its
float64 train form, per block at the block's own input shape and end to end, on seeded
random inputs with the border ring measured apart (`verify_equivalent`). The float32
deploy model that ships is then compared with the float32 train form.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ran_edge.blocks.deploy import to_deploy
from ran_edge.errors import StageError
from ran_edge.shrink.repnas.convert import branch_blocks
from ran_edge.shrink.verify import Equivalence, verify_equivalent

RTOL_FLOAT64 = 1e-9  # float64 round-off of a small network is ~1e-14 relative
RTOL_FLOAT32 = 1e-5


@dataclass(frozen=True)
class MergeCheck:
    """Train form vs deploy form: each block and the model in float64, the model in float32."""

    blocks: dict[str, Equivalence]
    model_float64: Equivalence
    model_float32: Equivalence

    @property
    def equivalent(self) -> bool:
        checks = (*self.blocks.values(), self.model_float64, self.model_float32)
        return all(check.equivalent for check in checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "blocks_float64_max_rel_err": {p: e.max_rel_err for p, e in self.blocks.items()},
            "blocks_float64_border_max_rel_err": {
                p: e.border_max_rel_err for p, e in self.blocks.items()
            },
            "model_float64_max_rel_err": self.model_float64.max_rel_err,
            "model_float32_max_rel_err": self.model_float32.max_rel_err,
        }


def block_input_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple]:
    """Each branch block's input shape in one forward at `input_shape`."""
    shapes: dict[str, tuple] = {}
    hooks = [
        block.register_forward_pre_hook(
            lambda _m, args, path=path: shapes.__setitem__(path, tuple(args[0].shape))
        )
        for path, block in branch_blocks(model).items()
    ]
    like = next(iter(model.parameters()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape, dtype=like.dtype, device=like.device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return shapes


def check_merge(model: nn.Module, input_shape: tuple[int, ...], *, seeds: int = 2) -> MergeCheck:
    """Compare the train and deploy forms (float64 per block and whole, float32 whole)."""
    wide = copy.deepcopy(model).double().eval()
    shapes = block_input_shapes(wide, input_shape)
    blocks = {
        path: verify_equivalent(
            block, block.to_deploy(), shapes[path], seeds=seeds, rtol=RTOL_FLOAT64
        )
        for path, block in branch_blocks(wide).items()
    }
    whole64 = verify_equivalent(wide, to_deploy(wide), input_shape, seeds=seeds, rtol=RTOL_FLOAT64)
    whole32 = verify_equivalent(
        model, to_deploy(model), input_shape, seeds=seeds, rtol=RTOL_FLOAT32
    )
    return MergeCheck(blocks, whole64, whole32)


def deploy_verified(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, MergeCheck]:
    """The float32 deploy model (one conv per block, BN folded) once `check_merge` passes;
    StageError naming the worst block otherwise (a merge bug: nothing is written)."""
    check = check_merge(model, input_shape)
    if not check.equivalent:
        worst = max(check.blocks.items(), key=lambda item: item[1].max_rel_err, default=None)
        where = f"; worst block {worst[0]}: {worst[1].max_rel_err:.1e}" if worst else ""
        raise StageError(
            f"the merged model differs from the trained one (float64 max rel err "
            f"{check.model_float64.max_rel_err:.1e}, float32 {check.model_float32.max_rel_err:.1e}"
            f"{where}); nothing was written. This is a bug, please report it."
        )
    with torch.no_grad():
        return to_deploy(model), check
