"""Recovering accuracy after shrinking: distillation on unlabelled images, or cross-entropy.

Removing activations changes the function; a short fine-tune brings it back. Without
labels the student learns the original model's outputs on the calibration images (which
a user of ran-edge always has): KL divergence between softened logits (temperature T,
scaled by T^2 so the gradient size does not depend on T) plus an MSE between chosen
intermediate outputs (by module path; normalised by the teacher feature's mean square
so layers of any scale weigh alike). With labels it is a plain cross-entropy fine-tune.

Runs are seeded (same seed, same data order, same weights), on the CPU unless a CUDA
GPU is available, with a rich progress bar on the progress stream.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import Tensor, nn
from torch.nn import functional as F

from ran_edge.errors import UsageError


@dataclass(frozen=True)
class TrainConfig:
    """How to train; the defaults suit a few hundred to a few thousand small images."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    temperature: float = 4.0
    feature_weight: float = 1.0
    seed: int = 0
    device: str | None = None  # None: "cuda" when available, else "cpu"
    progress: bool = True


@dataclass(frozen=True)
class TrainResult:
    """What a run did: mean loss per epoch, optimizer steps, where and how long."""

    epoch_losses: tuple[float, ...]
    steps: int
    device: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch_losses": list(self.epoch_losses),
            "steps": self.steps,
            "device": self.device,
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class Agreement:
    """How close a student is to its teacher on some images."""

    kl: float  # mean KL(teacher || student) at temperature 1, nats per image
    top1_agreement: float


def pick_device(requested: str | None = None) -> torch.device:
    if requested is not None:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_tensor(images: np.ndarray | Tensor) -> Tensor:
    tensor = torch.as_tensor(images)
    if tensor.dim() != 4 or not tensor.is_floating_point():
        raise UsageError(
            f"training images must be a float N x C x H x W array, got {tuple(tensor.shape)} "
            f"{tensor.dtype}."
        )
    return tensor.float()


def train_student(
    student: nn.Module,
    images: np.ndarray | Tensor,
    *,
    teacher: nn.Module | None = None,
    labels: np.ndarray | Tensor | None = None,
    feature_paths: Sequence[str] = (),
    config: TrainConfig = TrainConfig(),
    extra_groups: Sequence[tuple[Sequence[nn.Parameter], float]] = (),
    description: str = "train",
) -> TrainResult:
    """Train `student` in place: cross-entropy on `labels` if given, else distil `teacher`.

    `extra_groups` are (parameters, learning rate) pairs trained alongside (e.g. gate
    logits); every other trainable parameter of `student` uses `config.lr`. The student
    ends in eval mode on the device it started on.
    """
    x = as_tensor(images)
    y = _check_labels(labels, len(x))
    if y is None and teacher is None:
        raise UsageError("training needs labels or a teacher model to distil from.")
    if config.epochs < 0 or config.batch_size < 1:
        raise UsageError(
            f"epochs must be >= 0 and batch size >= 1 (got {config.epochs}, {config.batch_size})."
        )
    device = pick_device(config.device)
    home = _device_of(student)
    start = time.perf_counter()
    losses: list[float] = []
    steps = 0
    with torch.random.fork_rng(devices=_cuda_devices(device)), _deterministic_cudnn(device):
        torch.manual_seed(config.seed)
        order_rng = torch.Generator().manual_seed(config.seed)
        student.to(device).train()
        if teacher is not None:
            teacher.to(device).eval()
        optimizer = _optimizer(student, config, extra_groups)
        batches = (len(x) + config.batch_size - 1) // config.batch_size
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, config.epochs * batches)
        )
        with (
            _features(student, feature_paths if y is None else ()) as student_feats,
            _features(teacher, feature_paths if y is None else ()) as teacher_feats,
            _progress(description, config.epochs * batches, config.progress) as advance,
        ):
            for _epoch in range(config.epochs):
                total = 0.0
                for index in torch.randperm(len(x), generator=order_rng).split(config.batch_size):
                    batch = x[index].to(device)
                    logits = student(batch)
                    if y is not None:
                        loss = F.cross_entropy(logits, y[index].to(device))
                    else:
                        assert teacher is not None
                        with torch.no_grad():
                            target = teacher(batch)
                        loss = distill_loss(logits, target, config.temperature)
                        loss = loss + config.feature_weight * _feature_loss(
                            student_feats, teacher_feats
                        )
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    total += float(loss.detach()) * len(index)
                    steps += 1
                    advance(float(loss.detach()))
                losses.append(total / max(1, len(x)))
    student.to(home).eval()
    if teacher is not None:
        teacher.to(home)
    return TrainResult(tuple(losses), steps, device.type, time.perf_counter() - start)


def distill_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) on logits softened by `temperature`, times T^2 (Hinton et al.)."""
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean")
    return kl * t * t


def agreement(
    student: nn.Module, teacher: nn.Module, images: np.ndarray | Tensor, batch_size: int = 256
) -> Agreement:
    """Mean KL(teacher || student) at T = 1 and top-1 agreement, in eval mode."""
    x = as_tensor(images)
    s, t = predict(student, x, batch_size), predict(teacher, x, batch_size)
    kl = F.kl_div(
        F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), log_target=True, reduction="batchmean"
    )
    return Agreement(float(kl), float((s.argmax(1) == t.argmax(1)).float().mean()))


def predict(model: nn.Module, images: np.ndarray | Tensor, batch_size: int = 256) -> Tensor:
    """Eval-mode outputs on CPU for `images`, in batches (mode restored afterwards)."""
    x = as_tensor(images)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(b.to(device)).cpu() for b in x.split(batch_size)])
    finally:
        model.train(was_training)


def accuracy(model: nn.Module, images: np.ndarray | Tensor, labels: np.ndarray | Tensor) -> float:
    """Top-1 accuracy of `model` on labelled images."""
    y = torch.as_tensor(labels)
    return float((predict(model, images).argmax(1) == y).float().mean())


def _check_labels(labels: np.ndarray | Tensor | None, n: int) -> Tensor | None:
    if labels is None:
        return None
    y = torch.as_tensor(labels)
    if y.dim() != 1 or len(y) != n or y.is_floating_point():
        raise UsageError(
            f"labels must be {n} integer class indices (one per image), got shape "
            f"{tuple(y.shape)} {y.dtype}."
        )
    return y.long()


def _optimizer(
    student: nn.Module,
    config: TrainConfig,
    extra_groups: Sequence[tuple[Sequence[nn.Parameter], float]],
) -> torch.optim.Optimizer:
    special = {id(p) for params, _ in extra_groups for p in params}
    base = [p for p in student.parameters() if p.requires_grad and id(p) not in special]
    groups = [{"params": base, "lr": config.lr}]
    groups += [
        {"params": list(params), "lr": lr, "weight_decay": 0.0} for params, lr in extra_groups
    ]
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


@contextlib.contextmanager
def _features(model: nn.Module | None, paths: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Capture the outputs of `model`'s submodules at `paths` on every forward."""
    store: dict[str, Tensor] = {}
    hooks = []
    if model is not None:
        for path in paths:
            try:
                module = model.get_submodule(path)
            except AttributeError:
                raise UsageError(
                    f"no module {path!r} in the model to take features from; use a module "
                    "path such as 'blocks.3' (see model.named_modules())."
                ) from None

            def hook(_m, _inp, out, path=path) -> None:
                store[path] = out

            hooks.append(module.register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in hooks:
            h.remove()


def _feature_loss(student: dict[str, Tensor], teacher: dict[str, Tensor]) -> Tensor | float:
    total: Tensor | float = 0.0
    for path, target in teacher.items():
        target = target.detach()
        total = total + F.mse_loss(student[path], target) / (target.pow(2).mean() + 1e-8)
    return total


@contextlib.contextmanager
def _progress(description: str, total: int, enabled: bool) -> Iterator:
    from ran_edge.quiet import progress_stream

    console = Console(file=progress_stream())
    if not enabled or total == 0 or not console.is_terminal:  # no bar in logs and pipes
        yield lambda _loss: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total, loss=float("nan"))
        yield lambda loss: bar.update(task, advance=1, loss=loss)


@contextlib.contextmanager
def _deterministic_cudnn(device: torch.device) -> Iterator[None]:
    """cuDNN picks its fastest (and non-deterministic) kernels unless told otherwise."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter((*module.parameters(), *module.buffers())), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []
