"""The calibration spec: a small TOML file that says where images come from and how they
become model inputs.

Kept declarative and strictly validated so that a typo (`resise = 256`) fails loudly with
the fix instead of silently calibrating on differently preprocessed data, which would
produce a worse int8 model with no error anywhere.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ran_edge.errors import UsageError

SOURCES = ("skimage", "folder", "arrays")
SCALES = ("unit", "imagenet")
CROPS = ("center",)
LAYOUTS = ("NCHW", "NHWC")

_TOP_KEYS = ("name", "description", "source", "images", "path", "preprocess", "augment")
_PREPROCESS_KEYS = ("resize", "crop", "scale", "mean", "std", "channels", "layout")
_AUGMENT_KEYS = ("samples", "random_crops", "hflip", "seed")
_KIND_NAMES = {int: "an integer", str: "a string", bool: "true or false"}


@dataclass(frozen=True)
class PreprocessSpec:
    """How a decoded photo becomes a float tensor (arrays use only scale/mean/std/layout)."""

    resize: int | None = None  # shorter side before the crop; None = round(max(H, W) / 0.875)
    crop: str = "center"  # crop of model H x W
    scale: str = "imagenet"  # "unit" -> [0, 1]; "imagenet" -> ImageNet mean/std
    mean: tuple[float, ...] | None = None  # explicit per-channel mean, after [0, 1] scaling
    std: tuple[float, ...] | None = None  # explicit per-channel std, after [0, 1] scaling
    channels: int | None = None  # 3 = RGB, 1 = grayscale; None = the model's C
    layout: str | None = None  # arrays only: "NCHW" / "NHWC"; None = detect from the shape


@dataclass(frozen=True)
class AugmentSpec:
    """How a few photos are stretched into enough calibration samples."""

    samples: int = 100
    random_crops: bool = True
    hflip: bool = True
    seed: int = 0


@dataclass(frozen=True)
class CalibrationSpec:
    """A validated calibration spec; `origin` is the file it came from (None if implicit)."""

    name: str
    description: str
    source: str  # one of SOURCES
    images: tuple[str, ...] = ()  # skimage only: names of scikit-image sample photos
    path: Path | None = None  # folder / arrays: absolute path
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)
    origin: Path | None = None


def load_spec(path: Path) -> CalibrationSpec:
    """Read and validate a spec file; relative `path` keys resolve against its folder."""
    path = Path(path).resolve()
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise UsageError(
            f"calibration spec {path} does not exist; check the path or pass a built-in set name"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(
            f"calibration spec {path} is not valid TOML ({exc}); fix the syntax, see calibration/README.md"
        ) from None
    return parse_spec(data, base_dir=path.parent, default_name=path.parent.name, origin=path)


def parse_spec(
    data: dict[str, Any],
    *,
    base_dir: Path,
    default_name: str,
    origin: Path | None = None,
) -> CalibrationSpec:
    """Validate a parsed TOML table into a CalibrationSpec (every key checked, none ignored)."""
    where = f"calibration spec {origin}" if origin else "calibration spec"
    _check_keys(data, _TOP_KEYS, where, "top level")

    name = _get(data, "name", str, where, default_name)
    description = _get(data, "description", str, where, "")
    source = _get(data, "source", str, where, None)
    if source is None:
        raise UsageError(f'{where} has no `source`; add source = "skimage", "folder" or "arrays"')
    if source not in SOURCES:
        raise UsageError(
            f"{where}: unknown source {source!r}; use one of {', '.join(repr(s) for s in SOURCES)}"
        )

    images: tuple[str, ...] = ()
    path: Path | None = None
    if source == "skimage":
        if "path" in data:
            raise UsageError(
                f"{where}: `path` is for folder/arrays sources; remove it or change `source`"
            )
        raw_images = data.get("images")
        if raw_images is not None:
            if not isinstance(raw_images, list) or not all(isinstance(i, str) for i in raw_images):
                raise UsageError(
                    f'{where}: `images` must be a list of names, e.g. images = ["astronaut", "coffee"]'
                )
            if not raw_images:
                raise UsageError(
                    f"{where}: `images` is empty; list at least one scikit-image photo"
                )
            images = tuple(raw_images)
    else:
        if "images" in data:
            raise UsageError(f'{where}: `images` is only for source = "skimage"; remove it')
        raw_path = _get(data, "path", str, where, None)
        if raw_path is None:
            raise UsageError(
                f"{where}: source = {source!r} needs `path` (relative to the spec file or absolute)"
            )
        path = (base_dir / Path(raw_path).expanduser()).resolve()

    return CalibrationSpec(
        name=name,
        description=description,
        source=source,
        images=images,
        path=path,
        preprocess=_parse_preprocess(_table(data, "preprocess", where), where),
        augment=_parse_augment(_table(data, "augment", where), where),
        origin=origin,
    )


def _parse_preprocess(table: dict[str, Any], where: str) -> PreprocessSpec:
    _check_keys(table, _PREPROCESS_KEYS, where, "[preprocess]")
    resize = _get(table, "resize", int, where, None)
    if resize is not None and resize < 1:
        raise UsageError(
            f"{where}: [preprocess] resize must be a positive pixel count, got {resize}"
        )
    crop = _choice(table, "crop", CROPS, where, "center")
    mean = _floats(table, "mean", where)
    std = _floats(table, "std", where)
    if std is not None and any(s <= 0 for s in std):
        raise UsageError(f"{where}: [preprocess] std values must be > 0, got {list(std)}")
    explicit = mean is not None or std is not None
    scale = _choice(table, "scale", SCALES, where, "unit" if explicit else "imagenet")
    if explicit and scale == "imagenet":
        raise UsageError(
            f'{where}: [preprocess] has scale = "imagenet" and explicit mean/std; keep one '
            '(mean/std apply after scaling to [0, 1], use scale = "unit" with them)'
        )
    channels = _get(table, "channels", int, where, None)
    if channels is not None and channels not in (1, 3):
        raise UsageError(
            f"{where}: [preprocess] channels must be 3 (RGB) or 1 (grayscale), got {channels}"
        )
    if channels is not None:
        for key, values in (("mean", mean), ("std", std)):
            if values is not None and len(values) not in (1, channels):
                raise UsageError(
                    f"{where}: [preprocess] {key} has {len(values)} values but channels = {channels}; "
                    f"give {channels} values (or 1 for all channels)"
                )
    layout = _choice(table, "layout", LAYOUTS, where, None)
    return PreprocessSpec(resize, crop, scale, mean, std, channels, layout)


def _parse_augment(table: dict[str, Any], where: str) -> AugmentSpec:
    _check_keys(table, _AUGMENT_KEYS, where, "[augment]")
    samples = _get(table, "samples", int, where, 100)
    if samples < 1:
        raise UsageError(f"{where}: [augment] samples must be >= 1, got {samples}")
    seed = _get(table, "seed", int, where, 0)
    if seed < 0:
        raise UsageError(f"{where}: [augment] seed must be >= 0, got {seed}")
    return AugmentSpec(
        samples=samples,
        random_crops=_get(table, "random_crops", bool, where, True),
        hflip=_get(table, "hflip", bool, where, True),
        seed=seed,
    )


def _check_keys(table: dict[str, Any], valid: tuple[str, ...], where: str, section: str) -> None:
    for key in table:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"{where}: unknown key {key!r} in {section}{hint}; valid keys: {', '.join(valid)}"
            )


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"{where}: `{key}` must be a table ([{key}]), not a value")
    return value


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    if key not in table:
        return default
    value = table[key]
    # bool is an int subclass in Python; `resize = true` must not pass as 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(
            f"{where}: `{key}` must be {_KIND_NAMES[kind]}, got {value!r}; see calibration/README.md"
        )
    return value


def _choice(
    table: dict[str, Any], key: str, valid: tuple[str, ...], where: str, default: Any
) -> Any:
    value = _get(table, key, str, where, default)
    if value is not None and value not in valid:
        raise UsageError(
            f"{where}: `{key}` = {value!r} is not supported; use one of {', '.join(repr(v) for v in valid)}"
        )
    return value


def _floats(table: dict[str, Any], key: str, where: str) -> tuple[float, ...] | None:
    if key not in table:
        return None
    value = table[key]
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise UsageError(
            f"{where}: `{key}` must be a list of numbers, one per channel, e.g. {key} = [0.5, 0.5, 0.5]"
        )
    return tuple(float(v) for v in value)
