"""Per-layer sensitivity on the trained digits model: real export, quantizer and LiteRT."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from ran_edge.convert.attribution import ModuleIndex
from ran_edge.convert.export import export_float_tflite
from ran_edge.convert.fidelity import measure_fidelity
from ran_edge.convert.quantize import quantize_int8
from ran_edge.convert.sensitivity import (
    SQNR_CAP_DB,
    attribute_sensitivity,
    measure_sensitivity,
    sqnr_capped,
)
from ran_edge.errors import UsageError
from ran_edge.models import load_model

HOLDOUT = 48


@dataclass(frozen=True)
class Converted:
    float_tflite: bytes
    int8_tflite: bytes
    calibration: np.ndarray  # NHWC
    holdout: np.ndarray  # NHWC
    modules: ModuleIndex


def nhwc(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def converted(digits_model, one_torch_thread) -> Converted:
    loaded = load_model(digits_model.spec, weights=digits_model.weights)
    float_tflite = export_float_tflite(loaded.module, loaded.input_shape)
    with np.load(digits_model.calib) as npz:
        calibration = nhwc(npz["x"][:64])
    int8_tflite = quantize_int8(float_tflite, calibration)
    modules = ModuleIndex.from_model(loaded.module, tuple(loaded.input_shape))
    holdout = nhwc(digits_model.test_x[:HOLDOUT])
    return Converted(float_tflite, int8_tflite, calibration, holdout, modules)


@pytest.fixture(scope="module")
def int8_sensitivity(converted):
    return measure_sensitivity(converted.float_tflite, converted.int8_tflite, converted.holdout)


def test_every_op_is_scored_with_a_finite_sensible_sqnr(int8_sensitivity):
    ops = int8_sensitivity.ops
    # DigitsNet: PAD, conv (as DW: 1 input channel), DW, 1x1 conv, PAD, conv, MEAN, FC.
    assert [op.op_type for op in ops] == [
        "PAD",
        "DEPTHWISE_CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "PAD",
        "CONV_2D",
        "MEAN",
        "FULLY_CONNECTED",
    ]
    assert int8_sensitivity.samples == HOLDOUT and not int8_sensitivity.skipped
    for op in ops:
        assert op.dtype == "int8" and not op.exact
        assert math.isfinite(op.sqnr_db) and 10.0 < op.sqnr_db < 70.0, op
        assert 0.0 < op.max_abs_error < 2.0 and op.rms_float > 0.0
    # The first op only pads the int8-quantized input (8 bits of a [0, 1] image: ~50 dB);
    # noise accumulates downstream, so every later tensor is noisier.
    assert ops[0].sqnr_db > 45.0 and ops[0].drop_db is None
    assert all(op.sqnr_db < ops[0].sqnr_db - 10.0 for op in ops[1:])
    # A PAD copies its input: it adds no noise of its own.
    assert ops[4].drop_db == pytest.approx(0.0, abs=0.01)
    # MACs are read from the weight shapes: 16x16x16 outputs x 3x3 taps for the stem.
    assert ops[1].macs == 16 * 16 * 16 * 9 and ops[-1].macs == 32 * 10


def test_the_last_op_is_the_logit_sqnr_of_measure_fidelity(converted, int8_sensitivity):
    fidelity = measure_fidelity(converted.float_tflite, converted.int8_tflite, converted.holdout)
    # Both sum noise and signal over all samples; they differ only by XNNPACK's rounding,
    # which measure_fidelity's interpreter uses and the all-tensors one cannot.
    assert int8_sensitivity.output.tensor == "serving_default_output_0_output"
    assert int8_sensitivity.output.sqnr_db == pytest.approx(fidelity.sqnr_db, abs=0.3)


def test_worst_lists_the_lowest_sqnr_first(int8_sensitivity):
    worst = int8_sensitivity.worst(3)
    assert len(worst) == 3
    assert [w.sqnr_db for w in worst] == sorted(w.sqnr_db for w in worst)
    assert worst[0].sqnr_db == min(op.sqnr_db for op in int8_sensitivity.ops)
    others = [op for op in int8_sensitivity.ops if op not in worst]
    assert all(op.sqnr_db >= worst[-1].sqnr_db for op in others)


def test_rows_are_attributed_to_pytorch_modules(converted, int8_sensitivity):
    rows = attribute_sensitivity(int8_sensitivity, converted.modules)
    modules = [row.module for row in rows]
    # The FC is named after the graph output; it is matched to `classifier` by its MACs.
    assert modules == [
        "stem.0",
        "stem.0",
        "block.0.0",
        "block.1.0",
        "down.0",
        "down.0",
        "pool",
        "classifier",
    ]
    # Without the torch model the path is read from the op name; the output-named FC cannot be.
    heuristic = [row.module for row in attribute_sensitivity(int8_sensitivity)]
    assert heuristic[:7] == modules[:7] and heuristic[7] == "(unattributed)"
    row = rows[3].as_dict()
    assert row["module"] == "block.1.0" and json.dumps(row, allow_nan=False)


def test_raising_the_worst_layer_to_int16_improves_that_layer(converted, int8_sensitivity):
    output = int8_sensitivity.output.tensor
    worst = next(op for op in int8_sensitivity.worst(8) if op.tensor != output)
    mixed = quantize_int8(
        converted.float_tflite, converted.calibration, int16_tensors=[worst.tensor]
    )
    raised = measure_sensitivity(converted.float_tflite, mixed, converted.holdout)
    after = raised.by_tensor()[worst.tensor]
    assert after.dtype == "int16"
    # Only this op's own output rounding goes (its input and weights stay int8, and the
    # error upstream is unchanged), so the gain is small but real: less noise, same signal.
    # (The largest single-element error is not part of the claim: it rides on the int8
    # input's rounding and moves either way by a few thousandths.)
    assert after.sqnr_db > worst.sqnr_db, (worst, after)
    assert after.rms_float == pytest.approx(worst.rms_float)
    # The int8<->int16 QUANTIZE ops around it have no float op: skipped, and said why.
    assert [s.op_type for s in raised.skipped] == ["QUANTIZE", "QUANTIZE"]
    assert all("inserted by the quantizer" in s.reason for s in raised.skipped)
    # Every float op is still scored, at its own index in the larger graph.
    assert len(raised.ops) == len(int8_sensitivity.ops)
    # The requantized input counts as this op's input: its own drop stays a real figure.
    assert after.drop_db is not None


def test_identical_models_are_exact_and_json_safe(converted):
    same = measure_sensitivity(
        converted.float_tflite, converted.float_tflite, converted.holdout[:4]
    )
    assert same.ops and all(op.exact and op.sqnr_db == SQNR_CAP_DB for op in same.ops)
    assert all(op.max_abs_error == 0.0 for op in same.ops)
    json.dumps([op.as_dict() for op in same.ops], allow_nan=False)  # no Infinity in reports


def test_sqnr_is_capped_both_ways():
    assert sqnr_capped(1.0, 0.0) == (SQNR_CAP_DB, True)
    assert sqnr_capped(0.0, 1.0) == (-SQNR_CAP_DB, False)
    assert sqnr_capped(100.0, 1.0) == (pytest.approx(20.0), False)


def test_no_holdout_is_refused(converted):
    with pytest.raises(UsageError, match="held-out"):
        measure_sensitivity(converted.float_tflite, converted.int8_tflite, converted.holdout[:0])
