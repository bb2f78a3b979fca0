"""Small CNNs for scikit-learn's digits at 32x32, and a seeded trainer, for quality benchmarks.

Fidelity (int8 vs float) only means something on a trained model: random weights give
input-independent logits whose top-2 gaps sit below int8 noise. These models train on the
CPU in well under a minute each on 1,400 digits.

- `plain_cnn`: five 3x3 conv + BN + ReLU layers (32-64-128-128-128, three of them stride 2)
  and a Flatten -> Linear head: ~408k parameters, ~398 KiB of int8 weights, so the
  quantizer stores its big buffers outside the flatbuffer (the > 256 KiB case).
- `tiny_mbnet`: the zoo's MobileNet-style net (inverted residuals, pooling + Linear head).

Everything is seeded: the same seed builds the same initial weights, visits the data in the
same order and returns the same trained model (one intra-op thread: CPU conv kernels then
reduce in a fixed order).

    from digits_models import digits_split, build_model, train
    data = digits_split(seed=0)
    model = build_model("plain_cnn", seed=0)
    train(model, data.train_x, data.train_y, TrainSettings(epochs=8))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

INPUT_SHAPE = (1, 1, 32, 32)
NUM_CLASSES = 10
TRAIN_SIZE = 1400  # the rest of the 1,797 digits (397) is the held-out test set


@dataclass(frozen=True)
class DigitsSplit:
    """Digits as N x 1 x 32 x 32 float32 in [0, 1], with int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits upsampled (bilinear) to 32x32, as tests/conftest.py does."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=INPUT_SHAPE[2:], mode="bilinear", align_corners=False)
    return x.numpy(), digits.target.astype(np.int64)


def digits_split(seed: int = 0, train_size: int = TRAIN_SIZE) -> DigitsSplit:
    """A seeded permutation split: `train_size` training digits, the rest held out."""
    x, y = digits_arrays()
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:train_size], order[train_size:]
    return DigitsSplit(x[train], y[train], x[test], y[test])


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class PlainCNN(nn.Module):
    """32x32 -> 16 -> 8 -> 4 with 3x3 conv + BN + ReLU, then Flatten -> Linear (2048 -> 10)."""

    def __init__(self, in_channels: int = 1, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(in_channels, 32),
            conv_bn_relu(32, 64, 2),
            conv_bn_relu(64, 128, 2),
            conv_bn_relu(128, 128),
            conv_bn_relu(128, 128, 2),
        )
        self.classifier = nn.Linear(128 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _tiny_mbnet() -> nn.Module:
    from ran_edge.models import create_model

    return create_model("tiny_mbnet")


MODELS: dict[str, Callable[[], nn.Module]] = {"plain_cnn": PlainCNN, "tiny_mbnet": _tiny_mbnet}


def build_model(name: str, seed: int = 0) -> nn.Module:
    """A fresh `name` model whose initial weights depend only on `seed`."""
    if name not in MODELS:
        raise KeyError(f"unknown digits model {name!r}: one of {', '.join(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name]()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class TrainSettings:
    """Adam with a cosine schedule and light weight decay; defaults suit 1,400 digits."""

    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class TrainLog:
    epoch_losses: tuple[float, ...]
    seconds: float


def train(
    model: nn.Module, x: np.ndarray, y: np.ndarray, settings: TrainSettings = TrainSettings()
) -> TrainLog:
    """Train `model` in place with cross-entropy; it ends in eval mode. Seeded by `settings`."""
    start = time.perf_counter()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    steps = settings.epochs * -(-len(xt) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    losses = []
    model.train()
    for _epoch in range(settings.epochs):
        total = 0.0
        for index in torch.randperm(len(xt), generator=order).split(settings.batch_size):
            loss = F.cross_entropy(model(xt[index]), yt[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / len(xt))
    model.eval()
    return TrainLog(tuple(losses), time.perf_counter() - start)


def predict(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Eval-mode logits for `x` (N x 1 x 32 x 32) as float32 numpy."""
    model.eval()
    with torch.no_grad():
        batches = torch.from_numpy(x).split(batch_size)
        return torch.cat([model(b) for b in batches]).numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((predict(model, x).argmax(1) == y).mean())
