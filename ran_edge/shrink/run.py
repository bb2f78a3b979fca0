"""The `shrink` command as a function: DepthShrinker from a model spec to saved files.

search gates (or take `remove`) -> plan merges by a cost -> remove activations ->
recover (distillation on the calibration images, or cross-entropy with `labels_npz`) ->
collapse -> verify -> [remove residuals (RMNet, `remove_residuals`)] -> write NAME.pt2
(+ .json, .state_dict.pt, .py). Residual removal also runs alone (no search, no training).
Build the result with `ran-edge build --model NAME.pt2`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ran_edge.calib import load_calibration
from ran_edge.errors import StageError, UsageError
from ran_edge.model_files import ModelFiles, source_record, spec_stem
from ran_edge.models import count_params, load_model
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.shrink.adapt import to_shrinkable
from ran_edge.shrink.artifacts import SHRUNK, shrunk_paths
from ran_edge.shrink.cost import module_macs, resolve_cost
from ran_edge.shrink.depthshrink import (
    SearchResult,
    ShrinkPlan,
    Verification,
    apply_plan,
    check_removal,
    deploy_verified,
    plan_shrink,
    search_removal,
    shrinkable_blocks,
)
from ran_edge.shrink.distill import Agreement, TrainConfig, TrainResult, agreement, train_student
from ran_edge.shrink.gates import removal_count
from ran_edge.shrink.rmnet import ResidualRemoval, remove_residuals
from ran_edge.shrink.verify import Equivalence, verify_equivalent
from ran_edge.targets import DEFAULT_TARGET

DEFAULT_CALIB_SAMPLES = 512
DEFAULT_HOLDOUT = 64
# Whole-model float32 sanity check of residual removal. Exactness itself is checked per block
# in float64 (remove_residuals); in float32 an affine carry (t = s x + d, s < 1, through ReLU6)
# rounds t, which the decode scales by 1/s, so the end-to-end error grows with the proven range.
RESIDUAL_RTOL = 1e-3


@dataclass(frozen=True)
class ShrinkRequest:
    """Everything `ran-edge shrink` takes. Give exactly one of `remove_ratio` (a gate search
    picks that fraction of the shrinkable blocks) or `remove` (these module paths), or
    neither with `remove_residuals` (residual removal alone: no search, no training)."""

    model_spec: str  # zoo name or path/to/file.py:factory (not an exported .pt2)
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None  # 1,C,H,W; None: the model's own
    remove_ratio: float | None = None
    remove: tuple[str, ...] | None = None
    calib: str | None = None  # unlabelled images: set name, folder, .toml, .npy/.npz
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    holdout: int = DEFAULT_HOLDOUT  # held-out images for the teacher-agreement figures
    epochs: int = 3  # recovery epochs (0: no recovery)
    search_epochs: int = 2  # gate search epochs (with remove_ratio)
    labels_npz: Path | None = None  # x: N,C,H,W floats, y: N ints -> cross-entropy
    cost: str = "macs"  # "macs" or "vela" (cycles on `target`)
    target: str = DEFAULT_TARGET
    out: Path | None = None  # .pt2; None: <model>_shrunk.pt2
    seed: int = 0
    progress: bool = False  # training progress bars (the CLI: unless --quiet)
    remove_residuals: bool = False  # RMNet: identity shortcuts carried through, no ADD
    carry_min_scale: float = 1.0  # refuse carries that scale x down (int8 loses the residual)

    @property
    def depthshrink(self) -> bool:
        return self.remove_ratio is not None or self.remove is not None


@dataclass(frozen=True)
class ShrinkSource:
    """The source model, paths absolute so the saved .json rebuilds from anywhere."""

    model: str
    weights: str | None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "weights": self.weights}


@dataclass(frozen=True)
class Recovery:
    """The recovery training: which loss, and what the run did."""

    loss: str  # "cross-entropy" or "distillation (KL + feature MSE)"
    train: TrainResult

    def to_json(self) -> dict[str, Any]:
        return {"loss": self.loss, **self.train.to_json()}


@dataclass(frozen=True)
class ShrinkResult:
    """What `run_shrink` did; `to_json()` is what `ran-edge shrink --json` prints."""

    model: str
    source: ShrinkSource
    converted_blocks: int  # zoo blocks converted to ran_edge.blocks.InvertedResidual
    plan: ShrinkPlan  # per block: removed, merged and why (after verification)
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    gate_search: SearchResult | None  # None with an explicit `remove`
    recovery: Recovery | None  # None with epochs=0
    agreement_before: Agreement | None  # held-out, vs the original; None without holdout
    agreement_after: Agreement | None
    verification: Verification  # deploy vs shrunk train form, borders included
    files: ModelFiles
    residuals: ResidualRemoval | None = None  # with remove_residuals
    residual_check: Equivalence | None = None  # residual-free vs deploy model, end to end

    @property
    def removed(self) -> tuple[str, ...]:
        return self.plan.removed

    @property
    def merged(self) -> tuple[str, ...]:
        return self.plan.merged

    def description(self) -> dict[str, Any]:
        """The JSON without the file paths: what the written .json records."""
        check = self.verification
        return {
            "model": self.model,
            "source": self.source.to_json(),
            "converted_blocks": self.converted_blocks,
            "plan": self.plan.to_dict(),
            "removed": list(self.removed),
            "merged": list(self.merged),
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "search_scores": self.gate_search.scores if self.gate_search is not None else None,
            "recovery": self.recovery.to_json() if self.recovery is not None else None,
            "holdout_agreement_before_recovery": _agreement(self.agreement_before),
            "holdout_agreement_after_recovery": _agreement(self.agreement_after),
            "verification": {
                "model_max_rel_err": check.model.max_rel_err,
                "blocks_max_rel_err": {p: e.max_rel_err for p, e in check.blocks.items()},
                "blocks_border_max_rel_err": {
                    p: e.border_max_rel_err for p, e in check.blocks.items()
                },
            },
            "residuals": self._residuals(),
        }

    def _residuals(self) -> dict[str, Any] | None:
        if self.residuals is None:
            return None
        check = self.residual_check
        return {
            **self.residuals.to_dict(),
            "model_max_rel_err": check.max_rel_err if check is not None else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.description(),
            "files": {k: str(v) for k, v in vars(self.files).items()},
        }


def run_shrink(req: ShrinkRequest, progress: BuildProgress = SILENT) -> ShrinkResult:
    """Shrink `req.model_spec` and write the deploy model; UsageError before any work on a
    bad request, StageError if the deploy model is not the shrunk model."""

    out, files = _check(req)
    cost = resolve_cost(req.cost, req.target)  # validates the target before any work
    with progress.stage(f"load model {req.model_spec}"):
        loaded = load_model(req.model_spec, weights=req.weights, input_shape=req.input_shape)
        shape = tuple(loaded.input_shape)
        teacher, converted = to_shrinkable(loaded.module)
        teacher.eval()
    if req.depthshrink:
        shrink = _shrink_blocks(req, teacher, loaded.name, shape, cost, progress)
    else:
        plan = plan_shrink(teacher, (), shape, cost=cost, cost_name=req.cost)
        shrink = _Shrunk(plan, teacher, None, None, None, None)
    with progress.stage("collapse + verify (borders included)"):
        deploy, plan, check = deploy_verified(shrink.model, shrink.plan, shape)
        if not check.model.equivalent:
            raise StageError(
                f"the deploy model differs from the shrunk model (max rel err "
                f"{check.model.max_rel_err:.2e}); this is a bug, please report it."
            )
    residuals = residual_check = None
    if req.remove_residuals:
        with progress.stage("remove residuals (each block checked in float64)"):
            residuals = remove_residuals(deploy, min_scale=req.carry_min_scale)
            residual_check = verify_equivalent(deploy, residuals.model, shape, rtol=RESIDUAL_RTOL)
            if not residual_check.equivalent:
                raise StageError(
                    f"the residual-free model differs from the deploy model (max rel err "
                    f"{residual_check.max_rel_err:.2e}); this is a bug, please report it."
                )
            deploy = residuals.model
    result = ShrinkResult(
        model=loaded.name,
        source=_source(req.model_spec, req.weights),
        converted_blocks=converted,
        plan=plan,
        macs_before=module_macs(teacher, shape),
        macs_after=module_macs(deploy, shape),
        params_before=count_params(teacher),
        params_after=count_params(deploy),
        gate_search=shrink.search,
        recovery=shrink.recovery,
        agreement_before=shrink.agreement_before,
        agreement_after=shrink.agreement_after,
        verification=check,
        files=files,
        residuals=residuals,
        residual_check=residual_check,
    )
    with progress.stage(f"write {out}"):
        written = SHRUNK.save(deploy, shape, out, result.description())
    return replace(result, files=written)


@dataclass(frozen=True)
class _Shrunk:
    """DepthShrinker's result before deployment (nothing but the model without it)."""

    plan: ShrinkPlan
    model: nn.Module  # the shrunk train form (recovered)
    search: SearchResult | None
    recovery: Recovery | None
    agreement_before: Agreement | None
    agreement_after: Agreement | None


def _shrink_blocks(
    req: ShrinkRequest, teacher: nn.Module, name: str, shape: tuple[int, ...], cost, progress
) -> _Shrunk:
    """Search (or take `remove`), plan, remove activations, recover."""
    candidates = shrinkable_blocks(teacher)
    if not candidates:
        raise UsageError(
            f"{name} has no shrinkable blocks (ran_edge.blocks.InvertedResidual "
            "with activations, or zoo MobileNetV2 / EfficientNet-Lite blocks)."
        )
    with progress.stage("load calibration images"):
        data = load_calibration(
            req.calib, shape, num_samples=req.calib_samples, holdout=req.holdout, seed=req.seed
        )
    x, y = (data.samples, None)
    if req.labels_npz is not None:
        x, y = load_labels(Path(req.labels_npz), shape)
    search = None
    if req.remove is not None:
        removed = check_removal(teacher, req.remove)
    else:
        assert req.remove_ratio is not None  # _check
        if removal_count(len(candidates), req.remove_ratio) == 0:
            raise UsageError(
                f"--remove-ratio {req.remove_ratio} of {len(candidates)} shrinkable blocks "
                f"removes none; use at least {1 / (2 * len(candidates)):.2f}."
            )
        search = search_removal(
            teacher,
            x,
            req.remove_ratio,
            labels=y,
            config=TrainConfig(epochs=req.search_epochs, seed=req.seed, progress=req.progress),
        )
        removed = search.removed
        progress.note(f"gate search: removing {', '.join(removed) or 'nothing'}")
    with progress.stage(f"plan merges by {req.cost}"):
        plan = plan_shrink(teacher, removed, shape, cost=cost, cost_name=req.cost)
    shrunk = apply_plan(teacher, plan)
    holdout_x = data.holdout
    before = agreement(shrunk, teacher, holdout_x) if len(holdout_x) else None
    recovery = None
    if req.epochs:
        train = train_student(
            shrunk,
            x,
            teacher=None if y is not None else teacher,
            labels=y,
            feature_paths=plan.removed if y is None else (),
            config=TrainConfig(epochs=req.epochs, seed=req.seed, progress=req.progress),
            description="recover",
        )
        loss = "cross-entropy" if y is not None else "distillation (KL + feature MSE)"
        recovery = Recovery(loss, train)
    after = agreement(shrunk, teacher, holdout_x) if len(holdout_x) else None
    return _Shrunk(plan, shrunk, search, recovery, before, after)


def _check(req: ShrinkRequest) -> tuple[Path, ModelFiles]:
    """UsageError on a request that cannot run; the output path and its four files."""

    both = req.remove_ratio is not None and req.remove is not None
    if both or not (req.depthshrink or req.remove_residuals):
        raise UsageError(
            "give exactly one of --remove-ratio R (search which blocks to remove) or "
            "--remove a.b,c.d (remove these blocks), or --remove-residuals (alone or with "
            "either)."
        )
    if req.remove_ratio is not None and not 0.0 < req.remove_ratio <= 1.0:
        raise UsageError(f"--remove-ratio must be in (0, 1], got {req.remove_ratio}.")
    if req.remove is not None and not req.remove:
        raise UsageError("--remove is empty; list module paths such as blocks.1,blocks.3.")
    if req.calib_samples < 1:
        raise UsageError("--calib-samples must be at least 1.")
    if req.model_spec.endswith(".pt2"):
        raise UsageError(
            f"{req.model_spec} is an exported graph; shrinking needs the PyTorch module. Pass "
            "a zoo name or path/to/file.py:factory (with --weights)."
        )
    out = Path(req.out) if req.out is not None else Path(f"{spec_stem(req.model_spec)}_shrunk.pt2")
    return out, shrunk_paths(out)  # checks the suffix before any work


def load_labels(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Labelled images from an .npz (x: N,C,H,W floats matching `shape`, y: N ints)."""
    if not path.is_file():
        raise UsageError(f"labels file {path} does not exist.")
    try:
        data = np.load(path)
        x, y = np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"])
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"cannot read {path} as labelled data ({type(exc).__name__}: {exc}); save it with "
            "np.savez(path, x=images_NCHW_float32, y=int_labels)."
        ) from None
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape[1:]):
        raise UsageError(
            f"{path}: x has shape {x.shape}, but the model takes N x {' x '.join(map(str, shape[1:]))}."
        )
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{path}: y must hold {len(x)} integer labels, got {y.shape} {y.dtype}.")
    return x, y.astype(np.int64)


def _source(spec: str, weights: Path | None) -> ShrinkSource:
    return ShrinkSource(**source_record(spec, weights))


def _agreement(value: Agreement | None) -> dict[str, float] | None:
    return None if value is None else {"kl": value.kl, "top1": value.top1_agreement}
