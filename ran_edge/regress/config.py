"""The gate's configuration (TOML): which models on which targets, and per-metric tolerances."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ran_edge.errors import UsageError

# Metric -> True when a larger value is better. These are the figures the gate guards.
DIRECTIONS: dict[str, bool] = {
    "cycles_total": False,
    "cycles_npu": False,
    "inferences_per_second": True,
    "sram_total": False,
    "off_chip_flash_used": False,
    "dram_used": False,
    "npu_op_share": True,
    # int8 fidelity on the held-out samples (needs `holdout` > 0 and trained weights to mean
    # anything): logit SQNR in dB, top-1 agreement with the float model in %.
    "sqnr": True,
    "top1_agreement": True,
}
FIDELITY_METRICS = frozenset({"sqnr", "top1_agreement"})
DEFAULT_TOLERANCE_PCT = 1.0


@dataclass(frozen=True)
class ModelCase:
    name: str  # the entry's label, and the build folder name
    spec: str  # zoo name, file.py:factory or .pt2
    targets: tuple[str, ...]
    weights: str | None = None
    input_shape: tuple[int, ...] | None = None
    calib: str | None = None


@dataclass(frozen=True)
class GateConfig:
    models: tuple[ModelCase, ...]
    tolerances_pct: dict[str, float] = field(default_factory=dict)
    calib_samples: int = 16
    source: Path | None = None
    holdout: int = 0  # held-out samples per model: > 0 measures (and gates) int8 fidelity
    floors: dict[str, float] = field(default_factory=dict)  # absolute minimums, any baseline

    def tolerance(self, metric: str) -> float:
        return self.tolerances_pct.get(metric, DEFAULT_TOLERANCE_PCT)


def _bad(path: Path, what: str) -> UsageError:
    return UsageError(f"regression config {path}: {what} (see docs/ci-regression-gate.md).")


def load_config(path: Path) -> GateConfig:
    if not path.is_file():
        raise UsageError(f"regression config {path} does not exist; pass --config FILE.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"not valid TOML: {exc}") from None
    tolerances = data.get("tolerances", {})
    unknown = sorted(set(tolerances) - set(DIRECTIONS))
    if unknown:
        raise _bad(
            path,
            f"unknown metric(s) in [tolerances]: {', '.join(unknown)}; known: {', '.join(DIRECTIONS)}",
        )
    if any(not isinstance(v, int | float) or v < 0 for v in tolerances.values()):
        raise _bad(path, "tolerances are non-negative percentages")
    floors = data.get("floors", {})
    if sorted(set(floors) - set(DIRECTIONS)):
        raise _bad(path, f"unknown metric(s) in [floors]; known: {', '.join(DIRECTIONS)}")
    if any(not DIRECTIONS[m] for m in floors):
        raise _bad(path, "[floors] are minimums, for metrics where higher is better")
    if any(not isinstance(v, int | float) for v in floors.values()):
        raise _bad(path, "floors are numbers (dB for sqnr, % for top1_agreement)")
    holdout = data.get("holdout", 0)
    if not isinstance(holdout, int) or holdout < 0:
        raise _bad(path, "holdout is a number of samples (0 or more)")
    if (floors.keys() | tolerances.keys()) & FIDELITY_METRICS and holdout == 0:
        raise _bad(path, "gating sqnr or top1_agreement needs `holdout = N` (N > 0) samples")
    models = []
    for i, entry in enumerate(data.get("models", [])):
        if "name" not in entry or "targets" not in entry:
            raise _bad(path, f"[[models]] entry {i + 1} needs `name` and `targets`")
        shape = entry.get("input_shape")
        models.append(
            ModelCase(
                name=str(entry["name"]),
                spec=str(entry.get("spec", entry["name"])),
                targets=tuple(entry["targets"]),
                weights=entry.get("weights"),
                input_shape=tuple(shape) if shape else None,
                calib=entry.get("calib"),
            )
        )
    if not models:
        raise _bad(path, "no [[models]] entries")
    return GateConfig(
        models=tuple(models),
        tolerances_pct={k: float(v) for k, v in tolerances.items()},
        calib_samples=int(data.get("calib_samples", 16)),
        source=path,
        holdout=holdout,
        floors={k: float(v) for k, v in floors.items()},
    )
