"""Helpers the tests share: paths to assets, the digits data, an in-process CLI runner and the
result types of the session fixtures (which live in conftest.py). Import as `from helpers import ...`
(pytest puts tests/ on sys.path, see pyproject.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner, Result

ASSETS = Path(__file__).parent / "assets"
DIGITS_NET = ASSETS / "digits_net.py"
BUILD_TARGETS = ("ethos-u55-128", "ethos-u65-256")

# A model file whose sqrt Vela leaves on the CPU: the NPU gate and CPU-fallback tests use it.
SQRT_NET = """
import torch
from torch import nn

INPUT_SHAPE = (1, 3, 16, 16)


class SqrtNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.b(torch.sqrt(torch.relu(self.a(x)) + 1))


def make():
    torch.manual_seed(0)
    return SqrtNet()
"""


def run_cli(*args: str) -> Result:
    """Invoke `ran-edge` in-process; exceptions other than SystemExit propagate."""
    from ran_edge.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as N x 1 x 32 x 32 float32 in [0, 1], and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return x.numpy(), digits.target.astype(np.int64)


def digits_split(seed: int = 0, train: int = 1400) -> tuple[np.ndarray, np.ndarray]:
    """The fixed train / test index split every digits test uses."""
    order = np.random.default_rng(seed).permutation(1797)
    return order[:train], order[train:]


@dataclass(frozen=True)
class TrainedDigits:
    model: torch.nn.Module  # trained TinyMBNet (treat as read-only: it is shared)
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    accuracy: float


@dataclass(frozen=True)
class DigitsModel:
    spec: str  # file.py:factory
    weights: Path
    calib: Path  # .npz of held-out-free calibration rows
    test_x: np.ndarray
    test_y: np.ndarray
    float_accuracy: float


@dataclass(frozen=True)
class Build:
    out: Path
    model_dir: Path
    reports: dict[str, dict]
    stdout: str


def layer_report(kind: str, rows: list[tuple[str, int, int]], cycles_total: int):
    """A minimal report: one CONV_2D row per (module, cycles, MACs), on a target of `kind`."""
    from ran_edge.report.model import LayerRow, MetricValue, ModelFacts, Report, TargetFacts

    placement = "NPU" if kind == "ethos-u" else "CPU"
    layers = tuple(
        LayerRow(i, "CONV_2D", "Conv2D", placement, cycles, cycles, macs, 0.0, False, 0, module, "")
        for i, (module, cycles, macs) in enumerate(rows)
    )
    return Report(
        schema_version="1.6",
        model=ModelFacts("m", "zoo:m", (1, 8, 8, 8), None, None, "random"),
        target=TargetFacts("t", kind),
        metrics=(MetricValue("cycles_total", "cycles", cycles_total),),
        layers=layers,
    )
