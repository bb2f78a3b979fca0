"""Converter rewrites: each computes the same function and makes its pattern 100% NPU.

For every rewrite a tiny network holding the pattern is (1) run in PyTorch before and after
the graph rewrite, (2) converted to float TFLite with the rewrite and run in LiteRT against
the original PyTorch module, and (3) quantized to int8 on random calibration data and
compiled by Vela for ethos-u55-128, which must place every op on the NPU, where the same
network converted without rewrites leaves ops on the CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ran_edge.convert.export import (
    export_float_tflite,
    export_float_tflite_with_rewrites,
    find_rewrites,
)
from ran_edge.convert.quantize import quantize_int8
from ran_edge.convert.rewrites import (
    REWRITE_NAMES,
    rewrite_graph_module,
    rewrite_module,
    suggest_fix,
)
from ran_edge.targets.ethos_u.vela import VelaResult, run_vela
from ran_edge.targets.loading import resolve_target

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (1, 3, 32, 32)


# ---------------------------------------------------------------------------- tiny networks


class MeanHead(nn.Module):
    """MNASNet/ShuffleNet head: conv, then x.mean((2, 3)) into a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 64, 3, 2, 1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


class SqueezeExcite(nn.Module):
    """SE gate with mean((2, 3), keepdim=True) and a hard-sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, 1, 1)
        self.reduce, self.expand = nn.Conv2d(32, 8, 1), nn.Conv2d(8, 32, 1)

    def forward(self, x):
        y = F.relu(self.conv(x))
        s = y.mean((2, 3), keepdim=True)
        return y * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class FlattenMean(nn.Module):
    """x.flatten(2).mean(-1): the same global pool written over a flattened map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, 2, 1)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).flatten(2).mean(-1))


class Conv1dTimeMean(nn.Module):
    """Audio: (N, 1, mels, frames) squeezed to Conv1d input, mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x.squeeze(1))).mean(-1))


class ConvNeXtHead(nn.Module):
    """ConvNeXt: a channel-last block, then AdaptiveAvgPool2d(1) -> LayerNorm2d -> Linear.

    After the block's permutes the converter keeps the map NCHW and decomposes the global
    pool into a MEAN over the last axis: a depth reduction Vela leaves on the CPU.
    """

    def __init__(self, c: int = 32) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 8, 8)
        self.dw = nn.Conv2d(c, c, 7, 1, 3, groups=c)
        self.ln, self.norm = nn.LayerNorm(c), nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = self.stem(x)
        y = self.pw2(F.gelu(self.pw1(self.ln(self.dw(x).permute(0, 2, 3, 1)))))
        x = self.pool(x + y.permute(0, 3, 1, 2))
        x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.fc(torch.flatten(x, 1))


class SegHead(nn.Module):
    """Segmentation heads upsampling logits bilinearly to the input size (x8) and by x4."""

    def __init__(self) -> None:
        super().__init__()
        self.s8, self.s4 = nn.Conv2d(3, 4, 8, 8), nn.Conv2d(3, 4, 4, 4)

    def forward(self, x):
        a = F.interpolate(self.s8(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return a + F.interpolate(F.relu(self.s4(x)), scale_factor=4, mode="bilinear")


class ChannelMean(nn.Module):
    """A spatial attention map from the mean over channels (CBAM-style)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1)
        self.att = nn.Conv2d(1, 1, 3, 1, 1)

    def forward(self, x):
        y = F.relu(self.conv(x))
        return y * torch.sigmoid(self.att(y.mean(1, keepdim=True)))


class LeakyDecoder(nn.Module):
    """ConvTranspose2d followed by LeakyReLU, the autoencoder pattern reported as float."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Conv2d(3, 16, 3, 2, 1)
        self.dec = nn.ConvTranspose2d(16, 8, 4, 2, 1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        return self.act(self.dec(F.leaky_relu(self.enc(x), 0.1)))


class AbsDiff(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, 1, 1), nn.Conv2d(3, 16, 3, 1, 1)

    def forward(self, x):
        return torch.abs(self.a(x) - self.b(x))


class Clamps(nn.Module):
    """clamp(0, 1), hardtanh and a ReLU6 after a concat: none of them fusable into a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(3, 8, 3, 1, 1)
        self.c = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        z = torch.cat([y.clamp(0, 1), F.hardtanh(y)], 1)
        return F.relu6(torch.cat([self.c(z), y[:, :8]], 1))


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], nn.Module]
    shape: tuple[int, int, int, int]
    rewrites: frozenset[str]  # the rewrites expected to fire
    # Whether the network converted without rewrites has CPU ops. A keepdim mean that feeds
    # a conv stays NHWC in the converter and maps as it is; it is pooled all the same, so
    # the layout the converter picks cannot turn it into a depth reduction.
    cpu_without: bool = True


CASES = (
    Case("mean-head", MeanHead, SHAPE, frozenset({"spatial-mean-to-avg-pool"})),
    Case("se-keepdim", SqueezeExcite, SHAPE, frozenset({"spatial-mean-to-avg-pool"}), False),
    Case("flatten-mean", FlattenMean, SHAPE, frozenset({"spatial-mean-to-avg-pool"}), False),
    Case(
        "conv1d-mean",
        Conv1dTimeMean,
        (1, 1, 16, 40),
        frozenset({"spatial-mean-to-avg-pool"}),
        False,
    ),
    Case("convnext-head", ConvNeXtHead, SHAPE, frozenset({"spatial-mean-to-avg-pool"})),
    Case("seg-upsample", SegHead, SHAPE, frozenset({"bilinear-upsample-to-nearest-conv"})),
    Case("channel-mean", ChannelMean, SHAPE, frozenset({"channel-mean-to-conv"})),
    Case("leaky-deconv", LeakyDecoder, SHAPE, frozenset({"leaky-relu-to-max"})),
    Case("abs", AbsDiff, SHAPE, frozenset({"abs-to-max"})),
)


def _case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def _build(case: Case) -> nn.Module:
    torch.manual_seed(0)
    return case.make().eval()


def _input(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@functools.cache
def _converted(case: Case, rewrites: bool) -> tuple[bytes, tuple, bytes, VelaResult]:
    """(float TFLite, applied rewrites, int8 TFLite, Vela result), once per case."""
    module = _build(case)
    float_tflite, applied = export_float_tflite_with_rewrites(module, case.shape, rewrites=rewrites)
    n, c, h, w = case.shape
    calib = np.random.default_rng(0).standard_normal((8, h, w, c)).astype(np.float32)
    int8 = quantize_int8(float_tflite, calib)
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix=f"rewrite-{case.name}-"))
    (folder / "m.tflite").write_bytes(int8)
    return float_tflite, applied, int8, run_vela(folder / "m.tflite", _u55(), folder / "vela")


@functools.cache
def _u55():
    return resolve_target("ethos-u55-128")


def _run_tflite(model: bytes, x_nchw: torch.Tensor) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], x_nchw.permute(0, 2, 3, 1).contiguous().numpy())
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


# ---------------------------------------------------------------------------- per rewrite


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rewritten_graph_computes_the_same_function(case):
    module = _build(case)
    x = _input(case.shape)
    rewritten, applied = rewrite_module(module, (torch.zeros(case.shape),))
    assert {a.rewrite for a in applied} == case.rewrites
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), module(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rewritten_float_tflite_matches_pytorch(case):
    float_tflite, applied, _, _ = _converted(case, True)
    assert {a.rewrite for a in applied} == case.rewrites
    x = _input(case.shape)
    with torch.no_grad():
        expected = _build(case)(x).numpy()
    np.testing.assert_allclose(_run_tflite(float_tflite, x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rewrite_maps_the_pattern_fully_to_the_npu(case):
    *_, vela = _converted(case, True)
    assert vela.cpu_ops == 0, [(f.op_type, f.reason) for f in vela.cpu_fallbacks]
    assert vela.npu_ops > 0
    if case.cpu_without:  # the rewrite is what moved the pattern onto the NPU
        *_, unrewritten = _converted(case, False)
        assert unrewritten.cpu_ops > 0


# ---------------------------------------------------------------------------- API


def test_rewrites_report_the_user_module_path():
    applied = find_rewrites(_build(_case("leaky-deconv")), SHAPE)
    assert [(a.rewrite, a.module) for a in applied] == [
        ("leaky-relu-to-max", ""),  # F.leaky_relu in forward: the top level
        ("leaky-relu-to-max", "act"),
    ]
    assert "0.2" in applied[1].detail and "act" in str(applied[1])


def test_opt_in_clamp_rewrite_computes_the_same_function():
    """clamp-to-relu is off by default (TFLM aborts on its SUB form); by name it is exact."""
    module, x = _build(Case("clamps", Clamps, SHAPE, frozenset())), _input(SHAPE)
    assert rewrite_module(module, (torch.zeros(SHAPE),))[1] == []
    rewritten, applied = rewrite_module(module, (torch.zeros(SHAPE),), ["clamp-to-relu"])
    assert {a.rewrite for a in applied} == {"clamp-to-relu"} and len(applied) == 3
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), module(x), rtol=1e-5, atol=1e-5)


def test_fused_relu6_and_plain_networks_are_left_alone():
    """ReLU6 after conv+BN fuses into the conv: rewriting it would only add ops."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    ).eval()
    rewritten, applied = rewrite_module(net, (torch.zeros(SHAPE),))
    assert applied == [] and rewritten is net


def test_export_without_rewrites_keeps_the_graph_as_written():
    module = _build(_case("mean-head"))
    plain = export_float_tflite(module, SHAPE, rewrites=False)
    assert plain == _converted(_case("mean-head"), False)[0]
    assert export_float_tflite(module, SHAPE) == _converted(_case("mean-head"), True)[0]


def test_view_flatten_head_exports_and_maps_fully():
    """`x.view(x.size(0), -1)` traces although the channel-last wrapper hands the model a
    channels-last strided input (the export gives the model a contiguous one)."""

    class ViewHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3, 2, 1), nn.Linear(8 * 16 * 16, 10)

        def forward(self, x):
            y = F.relu(self.conv(x))
            return self.fc(y.view(y.size(0), -1))

    case = Case("view-head", ViewHead, SHAPE, frozenset())
    float_tflite, applied, _, vela = _converted(case, True)
    x = _input(SHAPE)
    with torch.no_grad():
        expected = _build(case)(x).numpy()
    np.testing.assert_allclose(_run_tflite(float_tflite, x), expected, rtol=1e-4, atol=1e-4)
    assert applied == () and vela.cpu_ops == 0


def test_unknown_rewrite_name_is_refused():
    gm = torch.export.export(_build(_case("mean-head")), (torch.zeros(SHAPE),)).module()
    with pytest.raises(ValueError, match="unknown rewrite"):
        rewrite_graph_module(gm, ["no-such-rewrite"])
    assert rewrite_graph_module(gm, []) == []
    assert "spatial-mean-to-avg-pool" in REWRITE_NAMES


# ---------------------------------------------------------------------------- advice


@pytest.mark.parametrize(
    ("op", "reason", "expected"),
    [
        ("MEAN", "Unsupported depth-reduction.  IFM: 1, 4, 4, 1280", "AdaptiveAvgPool2d(1)"),
        ("ELU", "Operation has tensor with unsupported DataType Float32 (x)", "LeakyReLU"),
        ("EXP", "Operation has tensor with unsupported DataType Float32 (x)", "SiLU"),
        ("SELECT", "Unsupported opType", "torch.where"),
        ("RESIZE_BILINEAR", "Scale-factor must be one of: 2x/4x/8x", "scale_factor=2"),
        ("CONV_2D", "Stride>3 is only supported IF (dilation = 1 AND padding = VALID)", "stride"),
        ("BATCH_MATMUL", "Unsupported operation", "U85"),
        ("SOME_NEW_OP", "something Vela says", "SUPPORTED_OPS"),
    ],
)
def test_suggest_fix_names_a_pytorch_change(op, reason, expected):
    assert expected in suggest_fix(op, reason)
