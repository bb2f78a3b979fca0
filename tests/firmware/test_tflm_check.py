"""TFLM vs LiteRT reference kernels, and the >256 KiB model whose weights TFLM used to miss.

The big model is a digits CNN with ~490k parameters (int8 weights ~480 KiB), trained for a
few seconds: past the size at which ai-edge-quantizer 0.10 writes buffers after the
flatbuffer, where TFLM silently reads zeros. Its FULLY_CONNECTED layers round some exact
ties differently in TFLM and LiteRT, so some held-out samples really differ by 1 LSB: the
real mismatch the adaptive check (first batch, then every sample on a difference) is
tested with.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import digits_arrays, digits_split
from torch import nn

from ran_edge.convert.export import export_float_tflite
from ran_edge.convert.inline_buffers import (
    external_buffer_count,
    inline_buffers,
    misaligned_buffer_count,
)
from ran_edge.convert.quantize import quantize_int8, recipe_for
from ran_edge.convert.ranges import minmax_qsvs
from ran_edge.firmware.tflm_check import (
    FIRST_BATCH,
    Divergence,
    PendingTflmCheck,
    TflmCheck,
    is_rounding_only,
    start_tflm_check,
    tflm_reference_check,
)


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
    train, test = digits_split()
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


@pytest.fixture(scope="module")
def big_full(big, big_int8) -> TflmCheck:
    """Every held-out sample checked, as the check did before it was adaptive."""
    return tflm_reference_check(big_int8, big.holdout, first_batch=None)


@pytest.fixture(scope="module")
def big_exact(big, big_int8) -> np.ndarray:
    """`FIRST_BATCH` held-out samples on which TFLM and LiteRT agree bit for bit."""
    found = []
    for x in big.holdout[:32]:
        if tflm_reference_check(big_int8, x[None]).bit_exact:
            found.append(x)
        if len(found) == FIRST_BATCH:
            return np.stack(found)
    pytest.fail("fewer than FIRST_BATCH bit-exact samples in the first 32 held-out")


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
    assert refused.samples_checked == 0 and refused.samples_available == 4


def test_tflm_runs_the_big_model_as_litert_does(big, big_full):
    check = big_full
    assert check.error is None and check.samples == len(big.holdout)
    assert check.samples_available == len(big.holdout) and check.samples_skipped == 0
    assert check.passed, check.verdict
    if not check.bit_exact:  # only the known FULLY_CONNECTED tie rounding may differ
        assert check.rounding_only and check.max_abs_diff == 1
        assert "FULLY_CONNECTED" in check.first_mismatch
        assert check.verdict.startswith("rounding only")
    assert check.arena_total_bytes > 0 and check.arena_persistent_bytes > 0


def test_first_mismatch_is_searched_over_every_sample(big, big_int8, big_full, big_exact):
    """Sample 0 is bit-exact here; the earliest differing op is still found, with its sample."""
    full = big_full
    assert full.mismatched_samples > 0, "no FULLY_CONNECTED tie on this model to localize"
    batch = np.concatenate([big_exact[:1], big.holdout])
    check = tflm_reference_check(big_int8, batch, first_batch=None)
    assert check.mismatched_samples == full.mismatched_samples
    assert check.first_mismatch is not None and check.first_mismatch_sample not in (None, 0)
    assert check.first_mismatch_sample == full.first_mismatch_sample + 1
    alone = tflm_reference_check(big_int8, batch[check.first_mismatch_sample][None])
    assert alone.first_mismatch == check.first_mismatch and alone.first_mismatch_sample == 0
    assert check.first_mismatch in check.verdict


def test_the_first_batch_is_all_that_runs_when_it_agrees(big, big_int8, big_full, big_exact):
    """Bit-exact samples first: the check stops after the first batch, though a later
    sample differs."""
    differs = big.holdout[big_full.first_mismatch_sample]
    batch = np.concatenate([big_exact, differs[None], big.holdout[:8]])
    check = tflm_reference_check(big_int8, batch)
    assert check.error is None and check.bit_exact and check.passed
    assert check.samples_checked == check.samples == FIRST_BATCH
    assert check.samples_available == len(batch)
    assert check.samples_skipped == len(batch) - FIRST_BATCH
    assert check.mismatched_samples == 0 and check.first_mismatch is None
    assert check.verdict.startswith(f"bit-exact on {FIRST_BATCH} sample")
    assert f"(the first {FIRST_BATCH} of" in check.verdict
    assert f"of {len(batch)}" in check.verdict
    # The arena is measured all the same: it does not depend on how many samples ran.
    assert check.arena_total_bytes == big_full.arena_total_bytes
    assert check.arena_persistent_bytes == big_full.arena_persistent_bytes
    one = tflm_reference_check(big_int8, batch, first_batch=1)
    assert one.bit_exact and one.samples_checked == 1 and one.samples_available == len(batch)
    everything = tflm_reference_check(big_int8, batch, first_batch=None)
    assert everything.samples_checked == len(batch) and not everything.bit_exact


def test_the_rounding_tie_in_the_first_batch_needs_no_more_samples(
    big, big_int8, big_full, big_exact
):
    """A 1-LSB FULLY_CONNECTED tie as the second sample is recognised after walking that one
    sample; the other samples would not change the verdict, so they do not run."""
    assert big_full.rounding_only  # the known tie, as the full check judges it
    s = big_full.first_mismatch_sample
    batch = np.concatenate([big_exact[:1], big.holdout[s : s + 1], big.holdout])
    check = tflm_reference_check(big_int8, batch, first_batch=2)
    assert check.samples_checked == 2 and check.samples_available == len(batch)
    assert check.mismatched_samples == 1 and check.first_mismatch_sample == 1
    assert check.first_mismatch == big_full.first_mismatch
    assert check.rounding_only and check.passed
    assert check.verdict.startswith("rounding only")


def test_a_fault_in_the_first_batch_checks_every_sample(
    big, big_int8, big_full, big_exact, monkeypatch
):
    """Any other difference is a fault: every sample runs, and the counts and the first
    mismatch are exactly those of checking them all (in this process, where the rounding
    rule can be made to refuse the tie)."""
    import ran_edge.firmware.tflm_check as module

    monkeypatch.setattr(module, "is_rounding_only", lambda *args: False)
    s = big_full.first_mismatch_sample
    batch = np.concatenate([big_exact[:1], big.holdout[s : s + 1], big.holdout])
    check = module._check_in_this_process(big_int8, batch, first_batch=2)
    assert check == module._check_in_this_process(big_int8, batch, first_batch=None)
    assert check.samples_checked == check.samples_available == len(batch)
    assert check.samples_skipped == 0
    assert check.mismatched_samples == big_full.mismatched_samples + 1
    assert check.first_mismatch == big_full.first_mismatch and check.first_mismatch_sample == 1
    assert not check.passed and check.verdict.startswith("MISMATCH")
    assert f"/{len(batch)} samples differ" in check.verdict


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
    ok = tflm_reference_check(_maxpool_model(4, 2), small, first_batch=None)
    assert ok.bit_exact and ok.passed and ok.verdict == "bit-exact on 3 samples"
    assert ok.samples_checked == ok.samples_available == 3
    # The arena TFLM's Python interpreter sizes from the model (10x its bytes) is far too
    # small for 2 x 256 KiB of activations: allocation fails.
    huge = tflm_reference_check(_maxpool_model(128, 16), np.zeros((1, 128, 128, 16), np.float32))
    assert huge.error and not huge.passed and huge.verdict.startswith("not run")
    wrong_shape = tflm_reference_check(_maxpool_model(4, 2), small[:, :2])
    assert wrong_shape.error and "TFLM could not run" in wrong_shape.error
    garbage = tflm_reference_check(b"\0" * 64, small)
    assert garbage.error and "not a TFLite flatbuffer" in garbage.error
    not_samples = tflm_reference_check(_maxpool_model(4, 2), "not samples")
    assert not_samples.error and "could not start" in not_samples.error


def test_start_returns_while_the_check_runs_and_result_waits():
    model = _maxpool_model(4, 2)
    small = np.random.default_rng(1).normal(size=(5, 4, 4, 2)).astype(np.float32)
    pending = start_tflm_check(model, small)
    assert isinstance(pending, PendingTflmCheck)
    other = tflm_reference_check(model, small[:1])  # other work while the child runs
    check = pending.result()
    assert other.bit_exact and pending.done() and pending.result() is check
    assert check == tflm_reference_check(model, small)  # what the blocking call returns
    assert check.bit_exact and check.samples_checked == FIRST_BATCH
    assert check.samples_available == 5
    with start_tflm_check(model, small, first_batch=None) as inside:
        assert inside.result().samples_checked == 5
    assert inside.result().passed  # collected inside the block: kept after it


def test_a_pending_check_left_behind_stops_its_child():
    model = _maxpool_model(4, 2)
    small = np.zeros((3, 4, 4, 2), np.float32)
    with start_tflm_check(model, small) as pending:
        folder = pending._folder
        assert folder is not None and folder.is_dir()
    cancelled = pending.result()  # not collected inside the block: stopped on leaving it
    assert cancelled.error and "cancelled" in cancelled.error and not cancelled.passed
    assert not folder.exists()
    dropped = start_tflm_check(model, small)
    folder, child = dropped._folder, dropped._proc
    del dropped
    gc.collect()
    assert not folder.exists() and child.poll() is not None


def test_the_child_does_not_import_torch(tmp_path):
    """The child starts in a fraction of a second because it imports numpy and the two
    interpreters only: never torch, litert-torch or the quantizer."""
    (tmp_path / "model.tflite").write_bytes(_maxpool_model(4, 2))
    np.save(tmp_path / "samples.npy", np.zeros((2, 4, 4, 2), np.float32))
    heavy = ("torch", "litert_torch", "ai_edge_quantizer", "tensorflow")
    code = (
        f"import runpy, sys; sys.argv = ['tflm_check', {str(tmp_path)!r}, 'all']; "
        "runpy.run_module('ran_edge.firmware.tflm_check', run_name='__main__', alter_sys=True); "
        f"print('HEAVY', [m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]
    result = TflmCheck(**json.loads((tmp_path / "result.json").read_text()))
    assert result.bit_exact and result.samples_checked == 2


class _Clamps(nn.Module):
    """clamp(0, 1), hardtanh and a ReLU6 after a concat (tests/convert/test_rewrites.py's
    `Clamps`, here so that this file runs on its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(3, 8, 3, 1, 1)
        self.c = nn.Conv2d(32, 8, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        z = torch.cat([y.clamp(0, 1), nn.functional.hardtanh(y)], 1)
        return nn.functional.relu6(torch.cat([self.c(z), y[:, :8]], 1))


def test_a_tflm_abort_fails_the_check_not_the_process():
    """TFLM's C++ aborts (SIGABRT) on the opt-in clamp rewrite's SUB form: the check runs in
    a child process, so the build gets an error it can report instead of dying."""
    import litert_torch

    from ran_edge.convert.rewrites import rewrite_module

    torch.manual_seed(0)
    n, c, h, w = (1, 3, 32, 32)
    example = torch.zeros(n, h, w, c)
    wrapped = litert_torch.to_channel_last_io(_Clamps().eval(), args=[0], outputs=[0]).eval()
    rewritten, applied = rewrite_module(wrapped, (example,), ["clamp-to-relu"])
    assert applied
    float_tflite = bytes(litert_torch.convert(rewritten, (example,)).model_content())
    x = np.random.default_rng(0).standard_normal((8, h, w, c)).astype(np.float32)
    check = tflm_reference_check(quantize_int8(float_tflite, x), x[:4])
    assert not check.passed
    assert check.error is not None and "signal 6" in check.error
    assert "crashed" in check.error
