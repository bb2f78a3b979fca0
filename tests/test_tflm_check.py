"""TFLM vs LiteRT reference kernels, and the >256 KiB model whose weights TFLM used to miss.

The big model is a digits CNN with ~490k parameters (int8 weights ~480 KiB), trained for a
few seconds: past the size at which ai-edge-quantizer 0.10 writes buffers after the
flatbuffer, where TFLM silently reads zeros.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import digits_arrays
from torch import nn

from ran_edge.convert.export import export_float_tflite
from ran_edge.convert.inline_buffers import (
    external_buffer_count,
    inline_buffers,
    misaligned_buffer_count,
)
from ran_edge.convert.quantize import quantize_int8, recipe_for
from ran_edge.convert.ranges import minmax_qsvs
from ran_edge.firmware.tflm_check import Divergence, is_rounding_only, tflm_reference_check


def _nhwc(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Big:
    def __init__(self, float_tflite: bytes, calib: np.ndarray, holdout: np.ndarray) -> None:
        self.float_tflite, self.calib, self.holdout = float_tflite, calib, holdout


@pytest.fixture(scope="module")
def big(one_torch_thread) -> Big:
    """~490k parameters, mostly in two FULLY_CONNECTED layers; ~95% digits accuracy."""
    torch.manual_seed(0)
    net = nn.Sequential(
        _conv(1, 32), _conv(32, 64), _conv(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(128, 1024), nn.ReLU(), nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 10),
    )  # fmt: skip
    x, y = digits_arrays()
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _epoch in range(3):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            opt.zero_grad()
            idx = perm[i : i + 64]
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = float((net(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean())
    assert accuracy > 0.85, accuracy  # trained, so the fidelity figures mean something
    float_tflite = export_float_tflite(net, (1, 1, 32, 32))
    return Big(float_tflite, _nhwc(x[train[:64]]), _nhwc(x[test]))


@pytest.fixture(scope="module")
def big_int8(big) -> bytes:
    return quantize_int8(big.float_tflite, big.calib)


def _raw_quantizer_output(big: Big) -> bytes:
    """What ai-edge-quantizer writes for the same recipe and ranges, before inlining."""
    from ai_edge_quantizer import quantizer

    recipe = recipe_for(big.float_tflite)
    samples = [{"args_0": s[None]} for s in big.calib]
    qsvs = minmax_qsvs(big.float_tflite, "serving_default", samples, recipe)
    q = quantizer.Quantizer(bytearray(big.float_tflite), recipe)
    return bytes(q.quantize(qsvs, enable_progress_report=False).quantized_model)


def _litert_outputs(model: bytes, batch: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    results = []
    for x in np.clip(np.round(batch / scale) + zero, -128, 127).astype(np.int8):
        interpreter.set_tensor(inp["index"], x[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"]).copy())
    return np.stack(results)


def test_big_model_weights_stay_inside_the_flatbuffer(big, big_int8):
    raw = _raw_quantizer_output(big)
    assert external_buffer_count(raw) > 0, (
        "ai-edge-quantizer no longer writes buffers after the flatbuffer for >256 KiB "
        "models: inline_buffers may be unnecessary now (docs/quantization.md)"
    )
    assert len(big_int8) > 256 * 1024
    assert external_buffer_count(big_int8) == 0 and misaligned_buffer_count(big_int8) == 0
    assert big_int8 == inline_buffers(raw)  # quantize_int8 is the quantizer's output, inlined
    np.testing.assert_array_equal(
        _litert_outputs(raw, big.holdout[:64]), _litert_outputs(big_int8, big.holdout[:64])
    )
    refused = tflm_reference_check(raw, big.holdout[:4])
    assert refused.error and "outside the flatbuffer" in refused.error and not refused.passed


def test_tflm_runs_the_big_model_as_litert_does(big, big_int8):
    check = tflm_reference_check(big_int8, big.holdout)
    assert check.error is None and check.samples == len(big.holdout)
    assert check.passed, check.verdict
    if not check.bit_exact:  # only the known FULLY_CONNECTED tie rounding may differ
        assert check.rounding_only and check.max_abs_diff == 1
        assert "FULLY_CONNECTED" in check.first_mismatch
        assert check.verdict.startswith("rounding only")
    assert check.arena_total_bytes > 0 and check.arena_persistent_bytes > 0


def test_first_mismatch_is_searched_over_every_sample(big, big_int8):
    """Sample 0 is bit-exact here; the earliest differing op is still found, with its sample."""
    full = tflm_reference_check(big_int8, big.holdout)
    assert full.mismatched_samples > 0, "no FULLY_CONNECTED tie on this model to localize"
    exact = next(x for x in big.holdout[:16] if tflm_reference_check(big_int8, x[None]).bit_exact)
    batch = np.concatenate([exact[None], big.holdout])
    check = tflm_reference_check(big_int8, batch)
    assert check.mismatched_samples == full.mismatched_samples
    assert check.first_mismatch is not None and check.first_mismatch_sample not in (None, 0)
    assert check.first_mismatch_sample == full.first_mismatch_sample + 1
    alone = tflm_reference_check(big_int8, batch[check.first_mismatch_sample][None])
    assert alone.first_mismatch == check.first_mismatch and alone.first_mismatch_sample == 0
    assert check.first_mismatch in check.verdict


def _divergence(op_type: str, lsb: int, sample: int = 0, op_index: int = 5) -> Divergence:
    return Divergence(op_index, op_type, f"op {op_index} {op_type} (x)", lsb, sample)


def test_rounding_is_only_one_lsb_starting_in_fully_connected():
    fc = [_divergence("FULLY_CONNECTED", 1, 0), _divergence("FULLY_CONNECTED", 1, 3)]
    assert is_rounding_only(1, 2, fc)
    assert not is_rounding_only(2, 2, fc)  # the output is off by more than 1 LSB
    assert not is_rounding_only(1, 3, fc)  # a mismatching sample not localized
    assert not is_rounding_only(1, 2, [fc[0], _divergence("CONV_2D", 1, 3)])
    assert not is_rounding_only(1, 2, [fc[0], _divergence("FULLY_CONNECTED", 2, 3)])
    assert not is_rounding_only(0, 0, [])  # bit-exact is not "rounding"


def _maxpool_model(size: int, channels: int) -> bytes:
    """A one-op int8 MAX_POOL_2D model written with the schema object API (milliseconds)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    def tensor(name: str, buffer: int):
        t = fb.TensorT()
        t.shape, t.type, t.buffer, t.name = (
            [1, size, size, channels],
            fb.TensorType.INT8,
            buffer,
            name,
        )
        t.quantization = fb.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [0.05], [0]
        return t

    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.MAX_POOL_2D
    code.version = 1
    options = fb.Pool2DOptionsT()
    options.strideW = options.strideH = options.filterWidth = options.filterHeight = 1
    options.padding = fb.Padding.VALID
    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    op.builtinOptionsType, op.builtinOptions = fb.BuiltinOptions.Pool2DOptions, options
    subgraph = fb.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs = [tensor("x", 1), tensor("y", 2)], [0], [1]
    subgraph.operators = [op]
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [subgraph]
    model.buffers = [fb.BufferT(), fb.BufferT(), fb.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_tflm_failures_come_back_as_errors_not_tracebacks():
    rng = np.random.default_rng(0)
    small = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
    ok = tflm_reference_check(_maxpool_model(4, 2), small)
    assert ok.bit_exact and ok.passed and ok.verdict == "bit-exact on 3 samples"
    # The arena TFLM's Python interpreter sizes from the model (10x its bytes) is far too
    # small for 2 x 256 KiB of activations: allocation fails.
    huge = tflm_reference_check(_maxpool_model(128, 16), np.zeros((1, 128, 128, 16), np.float32))
    assert huge.error and not huge.passed and huge.verdict.startswith("not run")
    wrong_shape = tflm_reference_check(_maxpool_model(4, 2), small[:, :2])
    assert wrong_shape.error and "TFLM could not run" in wrong_shape.error
    garbage = tflm_reference_check(b"\0" * 64, small)
    assert garbage.error and "not a TFLite flatbuffer" in garbage.error


def test_a_tflm_abort_fails_the_check_not_the_process():
    """TFLM's C++ aborts (SIGABRT) on the opt-in clamp rewrite's SUB form: the check runs in
    a child process, so the build gets an error it can report instead of dying."""
    import litert_torch
    import torch
    from test_rewrites import SHAPE, Clamps

    from ran_edge.convert.quantize import quantize_int8
    from ran_edge.convert.rewrites import rewrite_module

    torch.manual_seed(0)
    n, c, h, w = SHAPE
    example = torch.zeros(n, h, w, c)
    wrapped = litert_torch.to_channel_last_io(Clamps().eval(), args=[0], outputs=[0]).eval()
    rewritten, applied = rewrite_module(wrapped, (example,), ["clamp-to-relu"])
    assert applied
    float_tflite = bytes(litert_torch.convert(rewritten, (example,)).model_content())
    x = np.random.default_rng(0).standard_normal((8, h, w, c)).astype(np.float32)
    check = tflm_reference_check(quantize_int8(float_tflite, x), x[:4])
    assert not check.passed
    assert check.error is not None and "signal 6" in check.error
    assert "crashed" in check.error
