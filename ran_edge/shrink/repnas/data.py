"""Labelled images for the search: one .npz with `x` (N,C,H,W float) and `y` (N ints).

The same format `ran-edge shrink --labels-npz` reads. The search trains the branches with
cross-entropy, so unlabelled sources (a calibration set, an image folder, a .npy, an .npz
without `y`) are refused with how to save labels. A seeded split holds `holdout` images
out of training to score the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ran_edge.errors import UsageError

SAVE_HINT = "save them with np.savez(path, x=images_NCHW_float32, y=int_labels)"


@dataclass(frozen=True)
class LabelledData:
    train_x: np.ndarray
    train_y: np.ndarray
    holdout_x: np.ndarray
    holdout_y: np.ndarray

    @property
    def classes(self) -> int:
        return int(max(self.train_y.max(initial=0), self.holdout_y.max(initial=0))) + 1


def load_labelled(
    path: Path, input_shape: tuple[int, ...], *, holdout: int = 0, seed: int = 0
) -> LabelledData:
    """Read `path`, check it against the model input, and split off `holdout` images."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".npz":
        raise UsageError(
            f"{path} is not a labelled dataset: RepNAS trains on labelled images, given as one "
            f".npz with x (N,C,H,W floats) and y (N class indices); {SAVE_HINT}."
        )
    if not path.is_file():
        raise UsageError(f"labelled data {path} does not exist; {SAVE_HINT}.")
    try:
        with np.load(path) as data:
            keys = set(data.files)
            if "x" not in keys:
                raise UsageError(f"{path} has no array 'x' (it has {sorted(keys)}); {SAVE_HINT}.")
            if "y" not in keys:
                raise UsageError(
                    f"{path} is unlabelled (no array 'y'); RepNAS needs a class index per image: "
                    f"{SAVE_HINT}."
                )
            x, y = np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"])
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read {path} ({type(exc).__name__}: {exc}); {SAVE_HINT}."
        ) from None
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape[1:]):
        want = " x ".join(map(str, input_shape[1:]))
        raise UsageError(f"{path}: x has shape {x.shape}, but the model takes N x {want}.")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise UsageError(
            f"{path}: y must hold {len(x)} non-negative integer labels, got {y.shape} {y.dtype}."
        )
    if not 0 <= holdout < len(x):
        raise UsageError(
            f"--holdout {holdout} leaves no training images out of {len(x)}; use 0..{len(x) - 1}."
        )
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:holdout], order[holdout:]
    y = y.astype(np.int64)
    return LabelledData(x[train], y[train], x[test], y[test])
