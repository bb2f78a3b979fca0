"""What a caller asks for: plain frozen dataclasses, cheap to import (no torch, no converter),
so a command can check its options and build a request before any heavy library loads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ran_edge.targets import DEFAULT_TARGET

if TYPE_CHECKING:
    from ran_edge.build.mixed_precision import AutoGoal
    from ran_edge.firmware.generate import FirmwareOptions
    from ran_edge.targets.cortex_a.profile import MeasureOptions
    from ran_edge.targets.loading import Target

DEFAULT_MODEL = "mobilenet_v2"
DEFAULT_MODULE_DEPTH = 2


@dataclass(frozen=True)
class QuantizeOptions:
    """How a build quantizes: activation range method, int16 layers, converter rewrites.

    `auto` raises the least faithful layers to int16 activations until its goal is met,
    costing each choice with Vela on `auto_target` (set by `build_many` to the build's first
    Ethos-U target).
    """

    method: str = "minmax"
    int16_modules: tuple[str, ...] = ()
    auto: AutoGoal | None = None
    auto_target: Target | None = None
    rewrites: bool = True

    def fingerprint(self) -> str:
        target = self.auto_target.name if self.auto_target else None
        return repr((self.method, self.int16_modules, self.auto, target, self.rewrites))


@dataclass(frozen=True)
class CpuRunOptions:
    """How CPU (cortex-a) targets are run: `host` is always measured, `--remote` measures
    the one board given, `measure_all` (profile --measure) measures every CPU target here."""

    measure: MeasureOptions | None = None  # None: the defaults
    measure_all: bool = False


@dataclass(frozen=True)
class BuildRequest:
    """`ran-edge build`: one PyTorch model, its calibration set, one or more targets."""

    model: str = DEFAULT_MODEL
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    out: Path = Path("build")
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None
    name: str | None = None  # folder name under `out` (default: the model's own)
    calib: str | None = None  # None: the built-in set for the input shape
    calib_samples: int | None = None
    holdout: int = 16
    seed: int = 0
    quantize: QuantizeOptions = field(default_factory=QuantizeOptions)
    allow_cpu_fallback: bool = False
    incremental: bool = False
    cpu: CpuRunOptions = field(default_factory=CpuRunOptions)
    firmware: FirmwareOptions | None = None
    html: bool = False
    module_depth: int = DEFAULT_MODULE_DEPTH


@dataclass(frozen=True)
class CheckRequest:
    """`ran-edge check`: where Vela places each op of one model on Ethos-U targets."""

    model: str = DEFAULT_MODEL
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None
    calib: str | None = None


@dataclass(frozen=True)
class ProfileRequest:
    """`ran-edge profile`: an int8 .tflite made elsewhere, on one or more targets; with
    `float_model` and `samples`, also its fidelity and per-op sensitivity against float."""

    model: Path
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    out: Path = Path("build")
    float_model: Path | None = None
    samples: Path | None = None
    cpu: CpuRunOptions = field(default_factory=CpuRunOptions)
    html: bool = False
    module_depth: int = DEFAULT_MODULE_DEPTH


DEFAULT_QUANTIZE = QuantizeOptions()
