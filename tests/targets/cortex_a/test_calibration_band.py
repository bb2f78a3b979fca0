"""calibrate-target's uncertainty band end to end on this machine: a quick calibration, its band
written and read back, and whether the band holds on networks of other families than the
random stacks it was derived from (MobileNetV2, VGG, ResNet, U-Net-style upsampling, ...).

One quick calibration (about a minute on 2 cores) and six small networks built and timed:
about 2-3 minutes in all."""

from __future__ import annotations

import tomllib

import pytest
import torch
from torch import nn

from ran_edge.convert.tflite_ops import read_op_costs
from ran_edge.quiet import captured_output
from ran_edge.targets.cortex_a.batch_timing import measure_samples_here
from ran_edge.targets.cortex_a.calibrate import Calibration, calibrate_target, cpu_model_table
from ran_edge.targets.cortex_a.estimate import estimate_ops
from ran_edge.targets.cortex_a.microbench import ClassifierHead, build_int8, stacks
from ran_edge.targets.cortex_a.spec import parse_cpu_model
from ran_edge.targets.loading import TARGET_PATH_ENV, resolve_target

pytestmark = pytest.mark.slow  # the converter and real timings


def _cr(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.ReLU())


class _Basic(nn.Module):
    """A ResNet basic block, with a strided 1x1 shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a = _cr(cin, cout, 3, stride)
        self.b = nn.Conv2d(cout, cout, 3, 1, 1)
        self.short = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.short is None else self.short(x)
        return torch.relu(self.b(self.a(x)) + skip)


class _UNet(nn.Module):
    """Two strided encoder convs, a decoder with bilinear upsampling and skip concatenation."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.e0, self.e1, self.e2 = _cr(3, c), _cr(c, 2 * c, 3, 2), _cr(2 * c, 4 * c, 3, 2)
        self.d1, self.d0 = _cr(6 * c, 2 * c), _cr(3 * c, c)
        self.head = nn.Conv2d(c, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = nn.functional.interpolate
        x0 = self.e0(x)
        x1 = self.e1(x0)
        x2 = self.e2(x1)
        y1 = self.d1(torch.cat([up(x2, scale_factor=2, mode="bilinear"), x1], 1))
        y0 = self.d0(torch.cat([up(y1, scale_factor=2, mode="bilinear"), x0], 1))
        return self.head(y0)


def _separable(cin: int, cout: int, k: int, stride: int) -> nn.Module:
    """A MobileNetV1 step: depthwise k x k, then pointwise, each with ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin), nn.ReLU6(),
        nn.Conv2d(cin, cout, 1), nn.ReLU6(),
    )  # fmt: skip


def _networks() -> list[tuple[str, nn.Module, tuple[int, int, int, int]]]:
    """Six small networks, none drawn by microbench.random_stack."""
    from ran_edge.models import load_model

    torch.manual_seed(0)
    mobilenet = load_model("mobilenet_v2_035", input_shape=(1, 3, 96, 96)).module
    vgg = nn.Sequential(
        _cr(3, 16), _cr(16, 16), nn.MaxPool2d(2),
        _cr(16, 32), _cr(32, 32), nn.MaxPool2d(2),
        _cr(32, 64), _cr(64, 64), nn.MaxPool2d(2),
        ClassifierHead(64),
    )  # fmt: skip
    resnet = nn.Sequential(
        _cr(3, 16, 3, 2),
        _Basic(16, 16, 1), _Basic(16, 32, 2), _Basic(32, 32, 1), _Basic(32, 64, 2),
        ClassifierHead(64),
    )  # fmt: skip
    mobilenet_v1 = nn.Sequential(
        _cr(3, 16, 3, 2),
        _separable(16, 32, 3, 1), _separable(32, 64, 5, 2), _separable(64, 64, 5, 1),
        _separable(64, 128, 3, 2), _separable(128, 128, 3, 1),
        ClassifierHead(128),
    )  # fmt: skip
    wide_shallow = nn.Sequential(
        _cr(3, 64, 3, 2), _cr(64, 96, 3, 2), _cr(96, 96), ClassifierHead(96)
    )
    return [
        ("mobilenet_v2_035_96", mobilenet, (1, 3, 96, 96)),
        ("vgg_96", vgg, (1, 3, 96, 96)),
        ("resnet_96", resnet, (1, 3, 96, 96)),
        ("unet_64", _UNet(), (1, 3, 64, 64)),
        ("mobilenet_v1_128", mobilenet_v1, (1, 3, 128, 128)),
        ("wide_shallow_96", wide_shallow, (1, 3, 96, 96)),
    ]


@pytest.fixture(scope="module")
def host():
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(TARGET_PATH_ENV, raising=False)
        yield resolve_target("host")


@pytest.fixture(scope="module")
def calibration(host) -> Calibration:
    return calibrate_target(host.cpu, host.cpu_model.params, quick=True, where="a test")


def test_quick_calibration_band_is_derived_from_held_out_stacks(host, calibration):
    band = calibration.band
    assert calibration.threads == tuple(sorted({1, host.cpu.default_threads}))
    assert band.samples == len(stacks(quick=True)) * len(calibration.threads)
    assert 0 < band.low <= band.high
    assert band.coverage == 0.9
    assert "a test" in band.source and str(band.samples) in band.source
    # the profile calibrate-target writes carries the band, and it reads back unchanged
    text = cpu_model_table(calibration.params, "a test", calibration.fit, band=band)
    model = parse_cpu_model({"cpu_model": tomllib.loads(text)["cpu_model"]}, "written.toml")
    assert model.band == band
    written, fitted = vars(model.params), vars(calibration.params)  # 6 significant digits
    assert written == pytest.approx(fitted, rel=1e-5)


def test_band_holds_on_networks_of_other_families(host, calibration):
    """A 90% band contains at least 8 of 12 fresh ratios with probability > 0.99."""
    models = []
    for name, module, shape in _networks():
        with captured_output():
            data = build_int8(module, shape)
        models.append((name, data, tuple(read_op_costs(data))))
    samples = measure_samples_here(models, calibration.threads, rounds=3, min_seconds=0.02)
    assert len(samples) == len(models) * len(calibration.threads)
    band = calibration.band
    ratios = {
        (s.name, s.threads): s.measured_ms
        / estimate_ops(list(s.costs), host.cpu, calibration.params, s.threads).latency_ms
        for s in samples
    }
    inside = [key for key, r in ratios.items() if band.low <= r <= band.high]
    needed = round(len(ratios) * 2 / 3)  # 8 of 12 (6 networks at 2 thread counts)
    report = ", ".join(f"{n}@{t}: {r:.3f}" for (n, t), r in ratios.items())
    assert len(inside) >= needed, f"band {band.low}-{band.high}; ratios {report}"
