"""What `ran-edge advise` is asked: cheap to import (no torch), so the command can build its
request and show its defaults before the library loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_UTILISATION_PCT = 30.0
DEFAULT_MIN_SHARE_PCT = 3.0
DEFAULT_MIN_GAIN_PCT = 10.0
# The cheaper operators a dense conv site may become (ran_edge.blocks.cheap_convs).
CONV_FORMS = ("separable", "grouped", "lowrank", "ghost")
# Which sites advise looks at: inverted residual blocks, dense convs, or both. By default
# Ethos-U targets look at blocks (dense convs already run at the NPU's best utilisation)
# and CPU targets at both (on a CPU a dense conv is where the time goes).
SITE_KINDS = ("blocks", "convs", "all")


@dataclass(frozen=True)
class Thresholds:
    """When a block is flagged, what may replace it, and when a replacement is worth
    recommending. `max_utilisation_pct` applies on Ethos-U only: on a CPU every site that
    takes `min_share_pct` of the time is a candidate (a cycle saved is a cycle saved,
    however well the op used the core)."""

    max_utilisation_pct: float = DEFAULT_MAX_UTILISATION_PCT
    min_share_pct: float = DEFAULT_MIN_SHARE_PCT
    min_gain_pct: float = DEFAULT_MIN_GAIN_PCT  # of the block's cycles in the network
    allow_smaller: bool = False
    conv_forms: tuple[str, ...] = CONV_FORMS


@dataclass(frozen=True)
class AdviseRequest:
    model_spec: str
    target: str
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None
    calib: str | None = None
    calib_samples: int | None = None
    holdout: int = 16
    thresholds: Thresholds = Thresholds()
    cost_all: bool = False
    sites: str | None = None  # one of SITE_KINDS; None: the target's default
    in_context: bool = False
    out: Path = Path("build")
    cache_dir: Path = Path("build/cost-cache")
    workers: int | None = None
    ray_address: str | None = None  # a Ray cluster runs the compiles instead (--ray)
    apply: bool = False
    apply_out: Path | None = None
    epochs: int = 5
    seed: int = 0
    progress: bool = True
