"""Photo -> model-input preprocessing (resize, crop, flip, normalise) and array checks.

Calibration only helps if its inputs look like what the model sees at inference, so the
defaults mirror ImageNet evaluation (shorter side to H/0.875, center crop, mean/std).
Resampling uses PIL with a crop box: one antialiased resample per view, which keeps
~100 views of ~20 photos well under a second.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from ran_edge.calib.spec import PreprocessSpec
from ran_edge.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = 0.875  # ImageNet eval: resize to 256, crop 224
RANDOM_CROP_AREA = (0.35, 1.0)  # fraction of the photo a random crop covers
RANDOM_CROP_ASPECT = (3 / 4, 4 / 3)

Box = tuple[float, float, float, float]


def resize_target(pre: PreprocessSpec, height: int, width: int) -> int:
    """Shorter side before the center crop (never smaller than the crop itself)."""
    if pre.resize is not None:
        return max(pre.resize, height, width)
    return round(max(height, width) / CROP_RATIO)


def normalisation(pre: PreprocessSpec, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std), applied after scaling pixels to [0, 1]."""
    if pre.scale == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        if channels == 1:  # a grayscale pixel is the same value in all three channels
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    else:
        mean = pre.mean or (0.0,)
        std = pre.std or (1.0,)
    out = []
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise UsageError(
                f"calibration [preprocess] {key} has {len(values)} values but the model has "
                f"{channels} input channel(s); give {channels} values (or 1 for all channels)"
            )
        out.append(np.broadcast_to(np.asarray(values, np.float32), (channels,)).copy())
    return out[0], out[1]


def describe_normalisation(pre: PreprocessSpec) -> str:
    if pre.scale == "imagenet":
        return "ImageNet mean/std"
    if pre.mean is None and pre.std is None:
        return "[0,1]"
    return f"[0,1] then mean {list(pre.mean or (0.0,))} std {list(pre.std or (1.0,))}"


def center_box(size: tuple[int, int], resize: int, out_hw: tuple[int, int]) -> Box:
    """Source box of "shorter side to `resize`, then center crop out_hw", in photo pixels."""
    w, h = size
    oh, ow = out_hw
    s = max(resize / min(w, h), oh / h, ow / w)
    bw, bh = ow / s, oh / s
    x0, y0 = (w - bw) / 2, (h - bh) / 2
    return (x0, y0, x0 + bw, y0 + bh)


def random_box(size: tuple[int, int], out_hw: tuple[int, int], rng: np.random.Generator) -> Box:
    """A random-resized-crop box (as torchvision's RandomResizedCrop), aspect around the
    model's own so views are not visibly squashed."""
    w, h = size
    oh, ow = out_hw
    base = ow / oh
    lo, hi = math.log(RANDOM_CROP_ASPECT[0]), math.log(RANDOM_CROP_ASPECT[1])
    for _ in range(10):
        area = w * h * rng.uniform(*RANDOM_CROP_AREA)
        aspect = base * math.exp(rng.uniform(lo, hi))
        bw, bh = math.sqrt(area * aspect), math.sqrt(area / aspect)
        if bw <= w and bh <= h:
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            return (x0, y0, x0 + bw, y0 + bh)
    # Fallback: the largest box of the model's aspect, centered.
    bw, bh = min(w, h * base), min(h, w / base)
    return ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2)


def render(
    photo: Image.Image, box: Box, out_hw: tuple[int, int], *, flip: bool, channels: int
) -> np.ndarray:
    """Resample `box` of an RGB photo to out_hw: uint8 H x W x channels."""
    oh, ow = out_hw
    view = photo.resize((ow, oh), Image.Resampling.BILINEAR, box=box)
    if channels == 1:
        view = view.convert("L")
    if flip:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(view, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def pixels_to_input(batch: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x C pixels -> float32 N x C x H x W, ((x / 255) - mean) / std."""
    scale = (1.0 / (255.0 * std)).astype(np.float32)[:, None, None]
    offset = (-mean / std).astype(np.float32)[:, None, None]
    # Transpose while still uint8 (4x less memory traffic), then one fused float pass.
    x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
    x *= scale
    x += offset
    return x


def array_layout(
    shape: tuple[int, ...], chw: tuple[int, int, int], layout: str | None, label: str
) -> str:
    """Check a calibration array's shape against the model input; return its layout."""
    c, h, w = chw
    model = f"C x H x W = {c} x {h} x {w}"
    if len(shape) != 4:
        raise UsageError(
            f"calibration arrays {label} have shape {tuple(shape)} (rank {len(shape)}) but must be "
            f"rank 4, N x C x H x W or N x H x W x C for the model's {model}; add the missing axis "
            "(e.g. x[:, None] for a single channel) and re-save"
        )
    if shape[0] < 1:
        raise UsageError(
            f"calibration arrays {label} have no rows (shape {tuple(shape)}); save at least one sample"
        )
    fits = {"NCHW": tuple(shape[1:]) == (c, h, w), "NHWC": tuple(shape[1:]) == (h, w, c)}
    if layout is not None and fits[layout]:
        return layout
    if layout is None:
        for candidate in ("NCHW", "NHWC"):
            if fits[candidate]:
                return candidate
    # Not a match: say whether only the channels differ, the commonest mistake.
    guess = layout or ("NHWC" if shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4) else "NCHW")
    ac, ah, aw = (
        (shape[1], shape[2], shape[3]) if guess == "NCHW" else (shape[3], shape[1], shape[2])
    )
    if (ah, aw) == (h, w) and ac != c:
        raise UsageError(
            f"calibration arrays {label} have {ac} channel(s) ({guess} shape {tuple(shape)}) but the "
            f"model takes {c}; re-export the arrays with {c} channel(s) or check --input-shape"
        )
    raise UsageError(
        f"calibration arrays {label} have shape {tuple(shape)} ({guess}: C x H x W = {ac} x {ah} x {aw}) "
        f"but the model input is {model}; pass the model's real shape with --input-shape or "
        f"re-export the arrays as N x {c} x {h} x {w} (NCHW) or N x {h} x {w} x {c} (NHWC)"
    )


def array_rows_to_input(
    rows: np.ndarray, layout: str, mean: np.ndarray, std: np.ndarray, label: str
) -> np.ndarray:
    """Rows of a calibration array -> float32 NCHW. uint8 rows are raw pixels and get the
    spec's scaling; float rows are taken as already preprocessed."""
    if rows.dtype == np.uint8:
        nhwc = rows if layout == "NHWC" else rows.transpose(0, 2, 3, 1)
        return pixels_to_input(np.asarray(nhwc), mean, std)
    if not (np.issubdtype(rows.dtype, np.floating) or np.issubdtype(rows.dtype, np.integer)):
        raise UsageError(
            f"calibration arrays {label} have dtype {rows.dtype}; save float32 (preprocessed) "
            "or uint8 (raw pixels) arrays"
        )
    x = np.asarray(rows, dtype=np.float32)
    if layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    if not np.isfinite(x).all():
        raise UsageError(
            f"calibration arrays {label} contain NaN or infinite values; fix or drop those rows"
        )
    return np.ascontiguousarray(x)
