"""The `repnas` command as a function: RepNAS from a model spec to saved deploy files.

load the model and the labelled data -> replace each kxk conv (+BN) with a gated branch
block -> train weights and architecture weights together (one stage) -> keep the top
`budget` branches per layer -> fine-tune briefly -> merge each block into one conv,
checked in float64 (borders included) -> write NAME.pt2 (+ .json, .state_dict.pt, .py).
Build the result with `ran-edge build --model NAME.pt2`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import nn

from ran_edge.blocks.deploy import to_deploy
from ran_edge.errors import UsageError
from ran_edge.model_files import ModelFiles, model_paths, source_record, spec_stem
from ran_edge.models import count_params, load_model
from ran_edge.probe import probe_forward
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.shrink.cost import module_macs
from ran_edge.shrink.distill import TrainConfig, TrainResult, accuracy, train_student
from ran_edge.shrink.repnas.artifacts import REPNAS
from ran_edge.shrink.repnas.branches import CANDIDATES
from ran_edge.shrink.repnas.convert import check_budget, find_sites, to_searchable
from ran_edge.shrink.repnas.data import load_labelled
from ran_edge.shrink.repnas.search import (
    FADE_END,
    FADE_START,
    NOISE,
    LayerChoice,
    search_branches,
)
from ran_edge.shrink.repnas.verify import MergeCheck, deploy_verified

DEFAULT_HOLDOUT = 64


@dataclass(frozen=True)
class RepnasRequest:
    """Everything `ran-edge repnas` takes. `budget` None keeps every branch (DBB)."""

    model_spec: str  # zoo name or path/to/file.py:factory (not an exported .pt2)
    data: Path  # labelled .npz: x N,C,H,W floats, y N ints
    budget: int | None = 2  # branches kept per layer
    candidates: tuple[str, ...] = CANDIDATES
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None
    epochs: int = 10  # one-stage search: weights and architecture weights
    finetune_epochs: int = 2  # chosen branches only (0: none)
    lr: float = 1e-3
    arch_lr: float = 0.05
    noise: float = NOISE  # logistic noise on alpha, annealed to 0 (RepNAS code: 1)
    fade: tuple[float, float] = (FADE_START, FADE_END)  # when the non-top-k fade out
    batch_size: int = 64
    holdout: int = DEFAULT_HOLDOUT  # labelled images kept out of training, for accuracy
    out: Path | None = None  # .pt2; None: <model>_repnas.pt2
    seed: int = 0
    progress: bool = False  # training progress bars (the CLI: unless --quiet)


@dataclass(frozen=True)
class Footprint:
    """Deploy-form size of a model: convs, MACs and parameters (BN folded)."""

    convs: int
    macs: int
    params: int

    @classmethod
    def of(cls, deploy: nn.Module, input_shape: tuple[int, ...]) -> Footprint:
        convs = sum(isinstance(m, nn.Conv2d) for m in deploy.modules())
        return cls(convs, module_macs(deploy, input_shape), count_params(deploy))


@dataclass(frozen=True)
class RepnasResult:
    """What `run_repnas` did; `to_json()` is what `ran-edge repnas --json` prints."""

    model: str
    source: dict[str, str | None]
    settings: dict[str, Any]  # the training settings of the request, to redo the run
    budget: int | None
    candidates: tuple[str, ...]
    layers: tuple[LayerChoice, ...]
    skipped: dict[str, str]  # kxk-looking convs left alone, with the reason
    search: TrainResult | None
    finetune: TrainResult | None
    holdout_accuracy: float | None  # the deploy model on the held-out images
    check: MergeCheck
    plain: Footprint  # the model as given, deployed
    deploy: Footprint  # the searched model, merged
    files: ModelFiles | None = field(default=None)

    def description(self) -> dict[str, Any]:
        """The JSON without the file paths: what the written .json records."""
        return {
            "model": self.model,
            "source": self.source,
            "settings": self.settings,
            "budget": self.budget,
            "candidates": list(self.candidates),
            "layers": [layer.to_json() for layer in self.layers],
            "skipped": self.skipped,
            "search": self.search.to_json() if self.search is not None else None,
            "finetune": self.finetune.to_json() if self.finetune is not None else None,
            "holdout_accuracy": self.holdout_accuracy,
            "verification": self.check.to_json(),
            "plain": vars(self.plain),
            "deploy": vars(self.deploy),
        }

    def to_json(self) -> dict[str, Any]:
        files = {k: str(v) for k, v in vars(self.files).items()} if self.files else None
        return {**self.description(), "files": files}


def run_repnas(req: RepnasRequest, progress: BuildProgress = SILENT) -> RepnasResult:
    """Search, merge and write; UsageError before any training on a bad request."""
    out = _check(req)
    with progress.stage(f"load model {req.model_spec}"):
        loaded = load_model(req.model_spec, weights=req.weights, input_shape=req.input_shape)
        shape = tuple(loaded.input_shape)
    data = load_labelled(Path(req.data), shape, holdout=req.holdout, seed=req.seed)
    outputs = probe_forward(loaded.module, shape)
    if outputs.dim() != 2 or data.classes > outputs.shape[1]:
        raise UsageError(
            f"{req.data} has labels up to {data.classes - 1}, but {loaded.name} outputs "
            f"{tuple(outputs.shape)}; it must output N x classes logits (>= {data.classes})."
        )
    sites = find_sites(loaded.module, req.candidates)
    check_budget(sites, req.budget)
    plain = Footprint.of(to_deploy(loaded.module), shape)
    model = to_searchable(copy.deepcopy(loaded.module), sites, req.budget, seed=req.seed)
    config = TrainConfig(
        epochs=req.epochs,
        batch_size=req.batch_size,
        lr=req.lr,
        seed=req.seed,
        progress=req.progress,
    )
    outcome = search_branches(
        model,
        data.train_x,
        data.train_y,
        config=config,
        arch_lr=req.arch_lr,
        noise=req.noise,
        fade_start=req.fade[0],
        fade_end=req.fade[1],
    )
    progress.note(f"searched {len(outcome.layers)} layers (budget {req.budget or 'all'})")
    finetune = None
    if req.finetune_epochs:
        finetune = train_student(
            model,
            data.train_x,
            labels=data.train_y,
            config=replace(config, epochs=req.finetune_epochs, seed=req.seed + 1),
            description="fine-tune chosen branches",
        )
    with progress.stage("merge + verify in float64 (borders included)"):
        deploy, check = deploy_verified(model, shape)
    held_out = accuracy(deploy, data.holdout_x, data.holdout_y) if req.holdout else None
    result = RepnasResult(
        model=loaded.name,
        source=source_record(req.model_spec, req.weights),
        settings=_settings(req),
        budget=req.budget,
        candidates=tuple(req.candidates),
        layers=outcome.layers,
        skipped=sites.skipped,
        search=outcome.train,
        finetune=finetune,
        holdout_accuracy=held_out,
        check=check,
        plain=plain,
        deploy=Footprint.of(deploy, shape),
    )
    with progress.stage(f"write {out}"):
        files = REPNAS.save(deploy, shape, out, result.description())
    return replace(result, files=files)


def _check(req: RepnasRequest) -> Path:
    """UsageError on a request that cannot run; the output .pt2 path."""
    if req.budget is not None and req.budget < 1:
        raise UsageError(f"--budget {req.budget} keeps no branch; keep at least 1 per layer.")
    if not req.candidates:
        raise UsageError("--candidates is empty; name branches such as 1x1,kxk,identity.")
    if req.epochs < 0 or req.finetune_epochs < 0 or req.batch_size < 1:
        raise UsageError("epochs must be >= 0 and the batch size >= 1.")
    if req.noise < 0 or not 0.0 <= req.fade[0] <= req.fade[1] <= 1.0:
        raise UsageError(
            f"--noise must be >= 0 and --fade START,END fractions with 0 <= START <= END <= 1 "
            f"(got {req.noise}, {req.fade[0]},{req.fade[1]})."
        )
    if req.model_spec.endswith(".pt2"):
        raise UsageError(
            f"{req.model_spec} is an exported graph; the search needs the PyTorch module. Pass "
            "a zoo name or path/to/file.py:factory (with --weights)."
        )
    out = Path(req.out) if req.out is not None else Path(f"{spec_stem(req.model_spec)}_repnas.pt2")
    model_paths(out)  # checks the suffix before any work
    return out


def _settings(req: RepnasRequest) -> dict[str, Any]:
    names = ("epochs", "finetune_epochs", "lr", "arch_lr", "noise", "batch_size", "holdout", "seed")
    return {**{n: getattr(req, n) for n in names}, "fade": list(req.fade)}
