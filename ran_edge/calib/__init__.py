"""Calibration (representative) datasets for static int8 quantization.

Other stages call `load_calibration` only; the rest is exported for tooling and tests.
"""

from ran_edge.calib.dataset import (
    DEFAULT_SET,
    CalibrationData,
    available_sets,
    load_calibration,
    resolve_spec,
)
from ran_edge.calib.spec import AugmentSpec, CalibrationSpec, PreprocessSpec, load_spec

__all__ = [
    "DEFAULT_SET",
    "AugmentSpec",
    "CalibrationData",
    "CalibrationSpec",
    "PreprocessSpec",
    "available_sets",
    "load_calibration",
    "load_spec",
    "resolve_spec",
]
