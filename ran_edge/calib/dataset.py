"""`load_calibration`: the one entry point that turns a calibration source into arrays.

Two guarantees other stages rely on:
  * the holdout never shares a source photo (or array row) with the calibration samples,
    so int8-vs-float fidelity is measured on data the quantizer did not calibrate on;
  * the same arguments give bit-identical arrays (a seeded numpy Generator, no global RNG),
    so reports and compiled artifacts are reproducible.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ran_edge.calib import preprocess as pp
from ran_edge.calib.sources import (
    ARRAY_EXTENSIONS,
    DEFAULT_PHOTOS,
    IMAGE_EXTENSIONS,
    list_image_files,
    load_array_file,
    load_image,
    skimage_image_path,
)
from ran_edge.calib.spec import CalibrationSpec, load_spec
from ran_edge.errors import UsageError
from ran_edge.resources import shipped_dir

DEFAULT_SET = "photos"
HOLDOUT_SOURCE_FRACTION = 0.2  # share of source photos reserved for the holdout


@dataclass(frozen=True, eq=False)
class CalibrationData:
    samples: np.ndarray  # float32, N x C x H x W, what quantization calibrates on
    holdout: np.ndarray  # float32, M x C x H x W, never seen by calibration (int8 fidelity)
    name: str  # e.g. "photos" or the folder name
    description: str  # one line for reports: source, counts, preprocessing


def available_sets() -> list[str]:
    """Names of the built-in calibration sets (folders with a spec.toml)."""
    root = shipped_dir("calibration")
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "spec.toml").is_file())


def resolve_spec(source: str | Path | None) -> CalibrationSpec:
    """Turn a user's `source` into a spec: None / built-in name / spec file / spec folder /
    image folder / .npy or .npz file. An existing path wins over a built-in name."""
    if source is None:
        source = DEFAULT_SET
    if not str(source).strip():
        raise UsageError(
            "calibration source is empty; pass a built-in set name, a folder, a spec .toml "
            "or a .npy/.npz file (or nothing for the built-in photos)"
        )
    path = Path(source).expanduser()
    if path.exists():
        path = path.resolve()
        if path.is_dir():
            if (path / "spec.toml").is_file():
                return load_spec(path / "spec.toml")
            return CalibrationSpec(name=path.name, description="", source="folder", path=path)
        suffix = path.suffix.lower()
        if suffix == ".toml":
            return load_spec(path)
        if suffix in ARRAY_EXTENSIONS:
            return CalibrationSpec(name=path.stem, description="", source="arrays", path=path)
        raise UsageError(
            f"calibration source {path} is not a spec (.toml), an arrays file (.npy/.npz) or a "
            "folder of images; pass one of those or a built-in set name"
        )
    text = str(source)
    sets = available_sets()
    if _is_bare_name(text):
        builtin = shipped_dir("calibration") / text / "spec.toml"
        if builtin.is_file():
            return load_spec(builtin)
        close = difflib.get_close_matches(text, sets, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(
            f"unknown built-in calibration set {text!r}{hint}; available: {', '.join(sets) or 'none'}; "
            "or pass a folder of images, a spec .toml or a .npy/.npz file"
        )
    raise UsageError(
        f"calibration source {text} does not exist; check the path, or use a built-in set "
        f"({', '.join(sets) or 'none'})"
    )


def load_calibration(
    source: str | Path | None,
    input_shape: tuple[int, int, int, int],
    *,
    num_samples: int | None = None,
    holdout: int = 16,
    seed: int = 0,
) -> CalibrationData:
    """Calibration samples and a disjoint holdout, float32 NCHW matching `input_shape`.

    `num_samples` overrides the spec's [augment] samples; `seed` is mixed with the spec's
    own seed, so each (spec, seed) pair is one fixed dataset.
    """
    chw = _check_input_shape(input_shape)
    if num_samples is not None and (isinstance(num_samples, bool) or num_samples < 1):
        raise UsageError(
            f"num_samples must be at least 1, got {num_samples}; ask for 1 or more calibration samples"
        )
    if holdout < 0:
        raise UsageError(
            f"holdout must be 0 or more, got {holdout}; use 0 to skip the fidelity holdout"
        )
    if seed < 0:
        raise UsageError(f"seed must be 0 or more, got {seed}; pass a non-negative integer")
    spec = resolve_spec(source)
    channels = spec.preprocess.channels
    if channels is not None and channels != chw[0]:
        raise UsageError(
            f"calibration set {spec.name!r} has channels = {channels} but the model takes {chw[0]}; "
            f"remove `channels` from its [preprocess] or check --input-shape"
        )
    target = num_samples if num_samples is not None else spec.augment.samples
    streams = np.random.SeedSequence([spec.augment.seed, seed]).spawn(3)
    split_rng, cal_rng, hold_rng = (np.random.default_rng(s) for s in streams)
    if spec.source == "arrays":
        return _from_arrays(spec, chw, target, holdout, split_rng)
    return _from_images(spec, chw, target, holdout, seed, split_rng, cal_rng, hold_rng)


def _from_images(
    spec: CalibrationSpec,
    chw: tuple[int, int, int],
    target: int,
    holdout: int,
    seed: int,
    split_rng: np.random.Generator,
    cal_rng: np.random.Generator,
    hold_rng: np.random.Generator,
) -> CalibrationData:
    c, h, w = chw
    if c not in (1, 3):
        raise UsageError(
            f"the model takes {c} input channels but image calibration gives RGB (3) or grayscale (1); "
            f"save N x {c} x {h} x {w} calibration arrays as .npy and pass that file instead"
        )
    paths, kind = _image_paths(spec)
    n_hold = _holdout_sources(len(paths), holdout, kind)
    order = split_rng.permutation(len(paths))
    hold_paths = [paths[i] for i in order[:n_hold]]
    cal_paths = [paths[i] for i in order[n_hold:]]

    pre = spec.preprocess
    resize = pp.resize_target(pre, h, w)
    mean, std = pp.normalisation(pre, c)
    # Photos are decoded once, at no more than twice the working size.
    loader = _PhotoCache(max_short_side=2 * resize)
    cal = _views(cal_paths, target, spec, loader, cal_rng, resize, chw)
    hold = _views(hold_paths, holdout, spec, loader, hold_rng, resize, chw)

    aug = spec.augment
    augment = " + ".join(
        t for t, on in (("random-resized crops", aug.random_crops), ("hflip", aug.hflip)) if on
    )
    description = (
        f"{spec.name}: {len(cal)} calibration + {len(hold)} holdout samples from {len(paths)} {kind} "
        f"(split by image {len(cal_paths)}/{len(hold_paths)}); shorter side {resize}, center crop "
        f"{h}x{w}{', grayscale' if c == 1 else ''}; augment: {augment or 'none'}; "
        f"{pp.describe_normalisation(pre)}; seed {aug.seed}/{seed}"
    )
    return CalibrationData(
        samples=pp.pixels_to_input(cal, mean, std),
        holdout=pp.pixels_to_input(hold, mean, std),
        name=spec.name,
        description=description,
    )


def _from_arrays(
    spec: CalibrationSpec,
    chw: tuple[int, int, int],
    target: int,
    holdout: int,
    split_rng: np.random.Generator,
) -> CalibrationData:
    path = _existing(spec.path, "arrays file")
    if path.suffix.lower() not in ARRAY_EXTENSIONS or not path.is_file():
        raise UsageError(
            f"calibration arrays {path} must be a .npy or .npz file; re-save with np.save or np.savez"
        )
    label = path.name
    arr = load_array_file(path)
    layout = pp.array_layout(arr.shape, chw, spec.preprocess.layout, label)
    n = arr.shape[0]
    if n < holdout + 1:
        raise UsageError(
            f"calibration arrays {label} have {n} row(s) but {holdout + 1} are needed "
            f"({holdout} holdout + at least 1 for calibration); add rows or lower holdout (0 disables it)"
        )
    order = split_rng.permutation(n)
    hold_rows, cal_rows = order[:holdout], order[holdout : holdout + target]
    mean, std = pp.normalisation(spec.preprocess, chw[0])
    samples = pp.array_rows_to_input(arr[cal_rows], layout, mean, std, label)
    held = pp.array_rows_to_input(arr[hold_rows], layout, mean, std, label)
    values = (
        f"uint8 pixels, {pp.describe_normalisation(spec.preprocess)}"
        if arr.dtype == np.uint8
        else f"{arr.dtype} as-is"
    )
    description = (
        f"{spec.name}: {len(samples)} calibration + {len(held)} holdout rows of {n} from {label} "
        f"({layout}, {values})"
    )
    return CalibrationData(samples=samples, holdout=held, name=spec.name, description=description)


def _image_paths(spec: CalibrationSpec) -> tuple[list[Path], str]:
    if spec.source == "skimage":
        names = spec.images or DEFAULT_PHOTOS
        return [skimage_image_path(n) for n in names], "scikit-image photos"
    folder = _existing(spec.path, "image folder")
    if not folder.is_dir():
        raise UsageError(
            f"calibration image folder {folder} is a file, not a folder; pass the folder that holds the images"
        )
    paths = list_image_files(folder)
    if not paths:
        raise UsageError(
            f"no images found in calibration folder {folder}; add files with extensions "
            f"{', '.join(IMAGE_EXTENSIONS)} (sub-folders are searched too)"
        )
    return paths, f"images in {folder.name}/"


def _holdout_sources(n: int, holdout: int, kind: str) -> int:
    """How many source photos go to the holdout: ~20%, at least 1, never all of them."""
    needed = 2 if holdout > 0 else 1
    if n < needed:
        raise UsageError(
            f"calibration needs at least {needed} source images (1 for calibration"
            f"{', 1 for the disjoint holdout' if holdout else ''}) but found {n} {kind}; "
            "add images or set holdout to 0"
        )
    if holdout == 0:
        return 0
    return min(holdout, n - 1, max(1, math.ceil(n * HOLDOUT_SOURCE_FRACTION)))


def _views(
    paths: list[Path],
    count: int,
    spec: CalibrationSpec,
    loader: _PhotoCache,
    rng: np.random.Generator,
    resize: int,
    chw: tuple[int, int, int],
) -> np.ndarray:
    """`count` uint8 NHWC views of `paths`: first one plain center crop per photo, then
    augmented passes. Without augmentation there are only so many distinct views, and
    repeating identical samples would not help calibration, so fewer are returned."""
    c, h, w = chw
    k = len(paths)
    aug = spec.augment
    if not aug.random_crops:
        count = min(count, (2 if aug.hflip else 1) * k)
    out = np.empty((count, h, w, c), np.uint8)
    for i in range(count):
        photo = loader.get(paths[i % k])
        if i < k:
            box, flip = pp.center_box(photo.size, resize, (h, w)), False
        elif aug.random_crops:
            box = pp.random_box(photo.size, (h, w), rng)
            flip = aug.hflip and bool(rng.random() < 0.5)
        else:
            box, flip = pp.center_box(photo.size, resize, (h, w)), True
        out[i] = pp.render(photo, box, (h, w), flip=flip, channels=c)
    return out


class _PhotoCache:
    """Decode each photo once per load (calibration and holdout reuse passes over them)."""

    def __init__(self, max_short_side: int) -> None:
        self._max = max_short_side
        self._photos: dict[Path, Image.Image] = {}

    def get(self, path: Path) -> Image.Image:
        if path not in self._photos:
            self._photos[path] = Image.fromarray(load_image(path, self._max))
        return self._photos[path]


def _check_input_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(shape)
    if len(dims) != 4 or not all(
        isinstance(d, int | np.integer) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise UsageError(
            f"model input shape {dims} is not N x C x H x W with positive sizes; "
            "pass e.g. --input-shape 1,3,224,224"
        )
    return int(dims[1]), int(dims[2]), int(dims[3])


def _existing(path: Path | None, what: str) -> Path:
    if path is None or not path.exists():
        raise UsageError(
            f"calibration {what} {path} does not exist; check `path` in the spec (relative paths are from the spec's folder)"
        )
    return path


def _is_bare_name(text: str) -> bool:
    return (
        bool(text)
        and Path(text).name == text
        and "." not in text
        and "/" not in text
        and "\\" not in text
    )
