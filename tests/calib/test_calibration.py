"""Calibration datasets: shapes, determinism, holdout disjointness, sources, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ran_edge.calib import (
    CalibrationData,
    available_sets,
    load_calibration,
    load_spec,
)
from ran_edge.calib.sources import DEFAULT_PHOTOS, load_image, skimage_image_path
from ran_edge.errors import UsageError

SHAPE = (1, 3, 224, 224)
SMALL = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def photos() -> CalibrationData:
    return load_calibration(None, SHAPE)


# --- built-in set ---------------------------------------------------------------------


def test_default_set_shape_dtype_and_stats(photos: CalibrationData) -> None:
    assert photos.name == "photos"
    assert photos.samples.shape == (100, 3, 224, 224)
    assert photos.holdout.shape == (16, 3, 224, 224)
    for arr in (photos.samples, photos.holdout):
        assert arr.dtype == np.float32
        assert arr.flags.c_contiguous
        assert np.isfinite(arr).all()
    # ImageNet-normalised natural photos: per-channel mean near 0, std near 1, and the
    # full range of [0, 1] pixels reachable.
    mean = photos.samples.mean(axis=(0, 2, 3))
    std = photos.samples.std(axis=(0, 2, 3))
    assert np.all(np.abs(mean) < 0.5), mean
    assert np.all((std > 0.6) & (std < 1.5)), std
    assert photos.samples.min() == pytest.approx(-0.485 / 0.229, abs=1e-4)
    assert photos.samples.max() == pytest.approx((1 - 0.406) / 0.225, abs=1e-4)
    assert "100 calibration + 16 holdout" in photos.description
    assert "\n" not in photos.description


def test_builtin_sets_listed_and_unit_scaling() -> None:
    assert {"photos", "photos-unit"} <= set(available_sets())
    data = load_calibration("photos-unit", SMALL, num_samples=20, holdout=4)
    assert data.samples.shape == (20, 3, 32, 32)
    assert data.samples.min() >= 0.0 and data.samples.max() <= 1.0
    assert data.samples.max() > 0.9


def test_default_photos_exist_in_wheel() -> None:
    for name in DEFAULT_PHOTOS:
        assert skimage_image_path(name).is_file()
    assert load_image(skimage_image_path("camera")).shape == (512, 512, 3)  # gray -> RGB


def test_shipped_spec_parses() -> None:
    spec = load_spec(Path(__file__).parents[2] / "calibration" / "photos" / "spec.toml")
    assert spec.source == "skimage" and spec.images == DEFAULT_PHOTOS
    assert spec.preprocess.scale == "imagenet" and spec.augment.samples == 100


def test_grayscale_model_from_photos() -> None:
    data = load_calibration(None, (1, 1, 64, 48), num_samples=12, holdout=3)
    assert data.samples.shape == (12, 1, 64, 48)
    assert data.holdout.shape == (3, 1, 64, 48)
    assert np.isfinite(data.samples).all()


def test_non_square_input() -> None:
    data = load_calibration(None, (1, 3, 96, 160), num_samples=10, holdout=2)
    assert data.samples.shape == (10, 3, 96, 160)


# --- determinism ------------------------------------------------------------------------


def test_deterministic_and_seed_sensitive(photos: CalibrationData) -> None:
    again = load_calibration(None, SHAPE)
    assert np.array_equal(photos.samples, again.samples)
    assert np.array_equal(photos.holdout, again.holdout)
    other = load_calibration(None, SHAPE, seed=1)
    assert not np.array_equal(photos.samples, other.samples)


def test_num_samples_override_and_holdout_zero() -> None:
    data = load_calibration(None, SMALL, num_samples=7, holdout=0)
    assert data.samples.shape == (7, 3, 32, 32)
    assert data.holdout.shape == (0, 3, 32, 32)


# --- folder sources and disjointness ----------------------------------------------------


def _colour(i: int) -> tuple[int, int, int]:
    return (10 * i + 5, 255 - 9 * i, (37 * i) % 256)


def _solid_folder(folder: Path, n: int, size: tuple[int, int] = (80, 60)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, _colour(i)).save(folder / f"img_{i:02d}.png")
    return folder


def _sources(batch: np.ndarray) -> set[tuple[int, int, int]]:
    """Identify each sample's source photo by its (uniform) colour; [0, 1] scaling."""
    found = set()
    for sample in batch:
        pixels = np.rint(sample * 255).astype(int).reshape(3, -1)
        assert (pixels == pixels[:, :1]).all(), "solid image should stay uniform"
        found.add(tuple(int(v) for v in pixels[:, 0]))
    return found


def _unit_spec(tmp_path: Path, images: Path, **augment: object) -> Path:
    extra = "".join(f"{k} = {str(v).lower()}\n" for k, v in augment.items())
    spec = tmp_path / "unit.toml"
    spec.write_text(
        f'source = "folder"\npath = "{images.name}"\n[preprocess]\nscale = "unit"\n[augment]\n{extra}'
    )
    return spec


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_holdout_disjoint_by_source_image(tmp_path: Path, seed: int) -> None:
    images = _solid_folder(tmp_path / "imgs", 10)
    data = load_calibration(
        _unit_spec(tmp_path, images), SMALL, num_samples=40, holdout=8, seed=seed
    )
    assert data.samples.shape == (40, 3, 32, 32) and data.holdout.shape == (8, 3, 32, 32)
    cal, hold = _sources(data.samples), _sources(data.holdout)
    assert cal and hold and not cal & hold
    assert cal | hold <= {_colour(i) for i in range(10)}
    assert len(hold) == 2  # 20% of 10 photos


def test_holdout_disjoint_by_row_for_arrays(tmp_path: Path) -> None:
    rows = np.arange(30, dtype=np.float32)[:, None, None, None] * np.ones(
        (1, 3, 32, 32), np.float32
    )
    np.save(tmp_path / "x.npy", rows)
    data = load_calibration(tmp_path / "x.npy", SMALL, num_samples=100, holdout=5)
    assert data.holdout.shape[0] == 5 and data.samples.shape[0] == 25
    cal = {float(s[0, 0, 0]) for s in data.samples}
    hold = {float(s[0, 0, 0]) for s in data.holdout}
    assert not cal & hold and len(cal | hold) == 30


def test_plain_folder_defaults_to_imagenet(tmp_path: Path) -> None:
    images = _solid_folder(tmp_path / "shots", 6)
    data = load_calibration(images, SMALL, num_samples=12, holdout=2)
    assert data.name == "shots"
    assert data.samples.shape == (12, 3, 32, 32)
    pixel = data.samples[0, :, 0, 0] * np.array([0.229, 0.224, 0.225]) + np.array(
        [0.485, 0.456, 0.406]
    )
    assert np.rint(pixel * 255).astype(int).tolist() in [list(_colour(i)) for i in range(6)]


def test_folder_mixed_modes_recursive_and_sorted(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    Image.new("L", (50, 40), 128).save(root / "a" / "gray.png")
    Image.new("RGBA", (40, 50), (255, 0, 0, 0)).save(root / "b" / "clear.png")
    Image.new("RGB", (300, 200), (0, 0, 255)).save(root / "photo.JPG")
    Image.new("RGB", (30, 30), (0, 255, 0)).save(root / "x.bmp")
    (root / "notes.txt").write_text("not an image")
    data = load_calibration(root, SMALL, num_samples=8, holdout=1)
    assert data.samples.shape == (8, 3, 32, 32)
    assert load_image(root / "b" / "clear.png")[0, 0].tolist() == [255, 255, 255]  # onto white


def test_folder_spec_directory_and_relative_path(tmp_path: Path) -> None:
    _solid_folder(tmp_path / "set" / "pics", 4)
    (tmp_path / "set" / "spec.toml").write_text(
        'name = "mine"\nsource = "folder"\npath = "pics"\n[augment]\nsamples = 9\n'
    )
    data = load_calibration(tmp_path / "set", SMALL, holdout=1)
    assert data.name == "mine" and data.samples.shape == (9, 3, 32, 32)


def test_no_augmentation_caps_distinct_views(tmp_path: Path) -> None:
    images = _solid_folder(tmp_path / "imgs", 5)
    spec = _unit_spec(tmp_path, images, random_crops=False, hflip=False)
    data = load_calibration(spec, SMALL, num_samples=50, holdout=1)
    assert data.samples.shape[0] == 4  # one view per calibration photo


# --- array sources -----------------------------------------------------------------------


def test_npy_nchw(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(20, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "cal.npy", x)
    data = load_calibration(tmp_path / "cal.npy", SMALL, num_samples=10, holdout=4)
    assert data.name == "cal"
    assert data.samples.shape == (10, 3, 32, 32) and data.holdout.shape == (4, 3, 32, 32)
    flat = {r.tobytes() for r in x}
    assert all(s.tobytes() in flat for s in data.samples)  # float arrays used as-is


def test_npy_nhwc(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(12, 32, 32, 3)).astype(np.float64)
    np.save(tmp_path / "hwc.npy", x)
    data = load_calibration(tmp_path / "hwc.npy", SMALL, num_samples=12, holdout=2)
    assert data.samples.shape == (10, 3, 32, 32) and data.samples.dtype == np.float32
    flat = {r.transpose(2, 0, 1).astype(np.float32).tobytes() for r in x}
    assert all(s.tobytes() in flat for s in data.samples)


def test_npz_named_key_and_uint8_pixels(tmp_path: Path) -> None:
    other = np.zeros((3, 3), np.float32)
    pix = np.full((6, 1, 8, 8), 255, np.uint8)
    np.savez(tmp_path / "set.npz", labels=other, images=pix)
    data = load_calibration(tmp_path / "set.npz", (1, 1, 8, 8), num_samples=5, holdout=1)
    assert data.samples.shape == (5, 1, 8, 8)
    assert np.allclose(data.samples, (1 - 0.449) / 0.226, atol=1e-3)  # ImageNet gray


def test_npz_first_array(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", np.ones((4, 3, 32, 32), np.float32))
    data = load_calibration(tmp_path / "a.npz", SMALL, holdout=1)
    assert data.samples.shape == (3, 3, 32, 32)


def test_determinism_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((40, 3, 32, 32), np.float32))
    a = load_calibration(tmp_path / "x.npy", SMALL, num_samples=10)
    b = load_calibration(tmp_path / "x.npy", SMALL, num_samples=10)
    assert np.array_equal(a.samples, b.samples) and np.array_equal(a.holdout, b.holdout)


# --- errors -----------------------------------------------------------------------------


def _raises(match: str, *args: object, **kwargs: object) -> str:
    with pytest.raises(UsageError, match=match) as info:
        load_calibration(*args, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_error_missing_path(tmp_path: Path) -> None:
    _raises("does not exist", tmp_path / "nope", SMALL)
    _raises("does not exist", str(tmp_path / "nope.npy"), SMALL)


def test_error_empty_source() -> None:
    _raises("source is empty", "", SMALL)


def test_error_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    msg = _raises("no images found", tmp_path / "empty", SMALL)
    assert ".png" in msg and ".jpg" in msg


def test_error_too_few_images(tmp_path: Path) -> None:
    images = _solid_folder(tmp_path / "one", 1)
    msg = _raises("at least 2 source images", images, SMALL)
    assert "holdout" in msg
    assert load_calibration(images, SMALL, num_samples=3, holdout=0).samples.shape[0] == 3


def test_error_too_few_rows(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 32, 32), np.float32))
    _raises("17 are needed", tmp_path / "x.npy", SMALL)


def test_error_array_shape_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 64, 64), np.float32))
    msg = _raises("model input", tmp_path / "x.npy", SMALL, holdout=1)
    assert "64" in msg and "32" in msg and "--input-shape" in msg and "re-export" in msg


def test_error_array_rank(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 32, 32), np.float32))
    _raises("rank 3", tmp_path / "x.npy", (1, 1, 32, 32), holdout=1)


def test_error_channel_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 32, 32), np.float32))
    msg = _raises("3 channel", tmp_path / "x.npy", (1, 1, 32, 32), holdout=1)
    assert "takes 1" in msg
    np.save(tmp_path / "h.npy", np.zeros((4, 32, 32, 3), np.float32))
    _raises("3 channel", tmp_path / "h.npy", (1, 1, 32, 32), holdout=1)


def test_error_spec_channels(tmp_path: Path) -> None:
    images = _solid_folder(tmp_path / "imgs", 3)
    spec = tmp_path / "s.toml"
    spec.write_text(f'source = "folder"\npath = "{images}"\n[preprocess]\nchannels = 3\n')
    _raises("channels = 3 but the model takes 1", spec, (1, 1, 32, 32), holdout=1)


def test_error_num_samples_and_holdout() -> None:
    _raises("num_samples", None, SMALL, num_samples=0)
    _raises("holdout", None, SMALL, holdout=-1)
    _raises("input shape", None, (3, 32, 32))


def test_error_unknown_builtin() -> None:
    msg = _raises("unknown built-in calibration set", "photoz", SMALL)
    assert "did you mean photos" in msg and "photos-unit" in msg


def test_error_unknown_spec_key(tmp_path: Path) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text('source = "skimage"\n[preprocess]\nresise = 256\n')
    msg = _raises("unknown key 'resise'", spec, SMALL)
    assert "resize" in msg and "valid keys" in msg
    spec.write_text('source = "skimage"\ncolour = 1\n')
    _raises("unknown key 'colour'", spec, SMALL)
    spec.write_text('source = "skimage"\n[augment]\nflip = true\n')
    _raises("hflip", spec, SMALL)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('source = "web"\n', "unknown source"),
        ('source = "folder"\n', "needs `path`"),
        ('source = "skimage"\nimages = ["astronot"]\n', "astronaut"),
        ('source = "skimage"\n[preprocess]\nscale = "imagenet"\nmean = [0.5]\n', "keep one"),
        ('source = "skimage"\n[preprocess]\nresize = "big"\n', "must be an integer"),
        ('source = "skimage"\n[preprocess]\ncrop = "random"\n', "not supported"),
        ('source = "skimage"\n[preprocess]\nmean = [0.1, 0.2]\n', "2 values"),
        ('source = "skimage"\n[augment]\nsamples = 0\n', "samples must be"),
        ("source = [\n", "not valid TOML"),
    ],
)
def test_error_bad_spec(tmp_path: Path, body: str, match: str) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(body)
    _raises(match, spec, SMALL)


def test_error_unreadable_image(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"definitely not a png")
    Image.new("RGB", (40, 40), (1, 2, 3)).save(folder / "ok.png")
    msg = _raises("cannot read calibration image", folder, SMALL, holdout=0)
    assert "broken.png" in msg


def test_error_image_source_for_four_channel_model() -> None:
    _raises("4 input channels", None, (1, 4, 32, 32))
