"""Raw calibration material: photos as uint8 H x W x 3 RGB, or arrays as they were saved.

Everything here reads local files only. scikit-image's sample photos are read straight
from the files its wheel ships (never through `skimage.data`'s fetchers, which may try
to download), so calibration works offline and in sandboxes.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ran_edge.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ARRAY_EXTENSIONS = (".npy", ".npz")
NPZ_PREFERRED_KEYS = ("x", "images", "calibration")

# Natural photographs in scikit-image's wheel. Left out on purpose: synthetic or
# graphic images (chessboards, color wheel, logo, phantom, horse silhouette), the tiny
# microaneurysms crop, and motorcycle_right (the stereo twin of motorcycle_left: in
# different halves of the split it would leak calibration content into the holdout).
DEFAULT_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle_left",
    "hubble_deep_field",
    "retina",
    "ihc",
    "coins",
    "camera",
    "moon",
    "page",
    "text",
    "grass",
    "gravel",
    "brick",
    "cell",
    "clock_motion",
)

# Friendlier names for the same files (the `skimage.data` function names).
_ALIASES = {
    "immunohistochemistry": "ihc",
    "cat": "chelsea",
    "colorwheel": "color",
    "hubble": "hubble_deep_field",
}


def skimage_data_dir() -> Path:
    """The `skimage/data` folder of the installed wheel, found without importing skimage."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "scikit-image is not installed, so the built-in photo calibration sets are unavailable; "
            "install scikit-image or pass a folder of your own images"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def available_skimage_images() -> list[str]:
    """Names of the single-frame photos present on disk (png/jpg) in scikit-image's wheel."""
    folder = skimage_data_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg"))


def skimage_image_path(name: str) -> Path:
    """Path of one scikit-image sample photo; unknown names fail with close matches."""
    stem = _ALIASES.get(name, name)
    folder = skimage_data_dir()
    for ext in (".png", ".jpg"):
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    available = available_skimage_images()
    close = difflib.get_close_matches(name, [*available, *_ALIASES], n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UsageError(
        f"scikit-image photo {name!r} is not in the installed wheel{hint}; "
        f"use one of: {', '.join(available) or 'none found'}"
    )


def list_image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively, e.g. one sub-folder per class), sorted by
    relative path so the same folder always yields the same order."""
    files = [
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def load_image(path: Path, max_short_side: int | None = None) -> np.ndarray:
    """Decode one image to uint8 H x W x 3 RGB.

    Grayscale is replicated to 3 channels, transparency is composited onto white, EXIF
    rotation is applied. With `max_short_side`, large photos are reduced while decoding
    (JPEG DCT scaling, then an antialiased resize) so a folder of 12-megapixel photos does
    not cost seconds and gigabytes for 224-pixel crops.
    """
    try:
        with Image.open(path) as im:
            if max_short_side is not None and im.format == "JPEG":
                w, h = im.size
                f = max_short_side / min(w, h)
                if f < 1:
                    im.draft(None, (math.ceil(w * f), math.ceil(h * f)))
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UsageError(
            f"cannot read calibration image {path} ({exc}); remove or re-save it as PNG/JPEG"
        ) from None
    if max_short_side is not None and min(rgb.size) > max_short_side:
        w, h = rgb.size
        f = max_short_side / min(w, h)
        rgb = rgb.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im.copy()
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # High-bit-depth grayscale: PIL's own convert clips instead of scaling.
        values = np.asarray(im, dtype=np.float64)
        top = 1.0 if im.mode == "F" and values.max(initial=0) <= 1.0 else 255.0
        if im.mode != "F" and values.max(initial=0) > 255:
            top = 65535.0
        gray = np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        im.mode == "P" and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def load_array_file(path: Path) -> np.ndarray:
    """The calibration array in a .npy (memory-mapped) or .npz (x / images / calibration,
    else its first array) file, unvalidated."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if not keys:
                raise UsageError(
                    f"calibration file {path} contains no arrays; save one as x=... with np.savez"
                )
            key = next((k for k in NPZ_PREFERRED_KEYS if k in keys), keys[0])
            return npz[key]
    except UsageError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(
            f"cannot read calibration arrays {path} ({exc}); save a plain numeric array with "
            "np.save / np.savez (no pickled objects)"
        ) from None
