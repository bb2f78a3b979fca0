"""Mixed precision (int16 activations) on real models: export, quantizer, LiteRT and Vela."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ran_edge.build.mixed_precision import (
    OUTPUT_REASON,
    AutoGoal,
    auto_mixed_precision,
    float_ops,
    int16_tensors_for_modules,
)
from ran_edge.convert.attribution import ModuleIndex
from ran_edge.convert.export import export_float_tflite
from ran_edge.convert.fidelity import measure_fidelity
from ran_edge.convert.quantize import quantize_int8
from ran_edge.convert.sensitivity import measure_sensitivity
from ran_edge.errors import UsageError
from ran_edge.models import load_model
from ran_edge.targets.ethos_u.profile import profile_ethos_u
from ran_edge.targets.ethos_u.vela_int16 import vela_int16_op_types
from ran_edge.targets.loading import resolve_target

TARGET = "ethos-u55-128"


def nhwc(batch: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(batch.transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def digits(digits_model, one_torch_thread):
    """The trained DigitsNet as float TFLite, with its calibration and held-out rows."""
    loaded = load_model(digits_model.spec, weights=digits_model.weights)
    float_tflite = export_float_tflite(loaded.module, loaded.input_shape)
    with np.load(digits_model.calib) as npz:
        calibration = nhwc(npz["x"][:64])
    modules = ModuleIndex.from_model(loaded.module, tuple(loaded.input_shape))
    return float_tflite, calibration, nhwc(digits_model.test_x[:32]), modules


def _dtypes(model: bytes) -> dict[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_content=model).get_tensor_details()
    return {d["name"]: np.dtype(d["dtype"]).name for d in details}


def test_module_paths_map_to_their_ops_in_op_order(digits):
    float_tflite, _, _, modules = digits
    ops = {op.tensor: op for op in float_ops(float_tflite, modules)}
    tensors = int16_tensors_for_modules(float_tflite, ["down", "block.0"], modules)
    # `down` holds its conv and the PAD in front of it; `block.0` its depthwise conv.
    assert [(ops[t].module, ops[t].op_type) for t in tensors] == [
        ("block.0.0", "DEPTHWISE_CONV_2D"),
        ("down.0", "PAD"),
        ("down.0", "CONV_2D"),
    ]
    assert int16_tensors_for_modules(float_tflite, ["down", "down.0"], modules)[-1] == tensors[-1]


@pytest.mark.slow
def test_explicit_int16_modules_quantize_int16_and_stay_on_the_npu(digits, tmp_path):
    float_tflite, calibration, _, modules = digits
    tensors = int16_tensors_for_modules(float_tflite, ["block"], modules)
    model = quantize_int8(float_tflite, calibration, int16_tensors=tensors)
    dtypes = _dtypes(model)
    assert [dtypes[t] for t in tensors] == ["int16", "int16"]
    assert sum(d == "int16" for d in dtypes.values()) == 3  # + the requantized block input
    path = tmp_path / "mixed.tflite"
    path.write_bytes(model)
    vela = profile_ethos_u(path, resolve_target(TARGET), tmp_path / "vela").vela
    assert vela.cpu_ops == 0 and vela.npu_ops > 0


def test_a_module_with_no_op_is_refused_with_the_nearest_paths(digits):
    float_tflite, _, _, modules = digits
    with pytest.raises(UsageError) as caught:
        int16_tensors_for_modules(float_tflite, ["blok.1"], modules)
    message = str(caught.value)
    assert "\n" not in message and "no op of the converted model" in message
    assert "did you mean block.1" in message


def test_the_output_layer_is_refused_because_io_stays_int8(digits):
    float_tflite, _, _, modules = digits
    with pytest.raises(UsageError) as caught:
        int16_tensors_for_modules(float_tflite, ["classifier"], modules)
    assert "FULLY_CONNECTED" in str(caught.value) and OUTPUT_REASON in str(caught.value)


class _RmsNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-3)


class _NormNet(nn.Module):
    """conv -> RMS norm (MUL, channel mean, RSQRT) -> conv: Vela's RSQRT takes int8 only."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.norm = _RmsNorm()
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.relu(self.conv(x))))


def test_an_op_vela_cannot_run_in_int16_is_refused_by_name(one_torch_thread):
    torch.manual_seed(0)
    net = _NormNet().eval()
    float_tflite = export_float_tflite(net, (1, 1, 8, 8))
    modules = ModuleIndex.from_model(net, (1, 1, 8, 8))
    norm_ops = [op for op in float_ops(float_tflite, modules) if op.module == "norm"]
    assert "RSQRT" in {op.op_type for op in norm_ops}
    # MUL and the channel mean (a 1x1 CONV_2D) run in int16; Vela 5.2's RSQRT does not.
    refused = next(op for op in norm_ops if op.op_type not in vela_int16_op_types())
    assert refused.op_type == "RSQRT"
    with pytest.raises(UsageError) as caught:
        int16_tensors_for_modules(float_tflite, ["norm"], modules)
    message = str(caught.value)
    assert "\n" not in message
    assert f"its {refused.op_type} op (norm) cannot take int16 activations" in message
    assert f"Vela refuses int16 for {refused.op_type}: IFM must be int8" in message
    # The module next to it is fine.
    assert len(int16_tensors_for_modules(float_tflite, ["conv"], modules)) == 1


@pytest.mark.slow
def test_automatic_mode_beats_int8_and_stays_on_the_npu(digits):
    float_tflite, calibration, holdout, modules = digits
    goal = AutoGoal(
        sqnr_db=60.0,
        max_steps=3,
        candidates_per_step=2,
        min_gain_db=0.0,
        give_up_when_unreachable=False,  # this test is about the search itself
    )
    result = auto_mixed_precision(
        float_tflite, calibration, holdout, TARGET, modules=modules, goal=goal
    )
    assert not result.reached and result.stop_reason.startswith("step budget spent (3 choices)")
    # Every int16-capable op raised is far below 60 dB: int8 weights set the limit.
    assert "int8 weights" in result.stop_reason and result.all_int16_sqnr_db < 40.0
    assert result.baseline.sqnr_db is not None and result.baseline.cycles > 0
    assert result.fidelity.sqnr_db > result.baseline.sqnr_db
    assert result.int16_tensors and result.cycles > result.baseline.cycles
    assert result.extra_cycles_pct > 0.0
    assert len(result.steps) == 3
    for step in result.steps:
        assert step.kept and step.cpu_ops == 0 and step.cycles > 0
        # The layer raised is never further from float (a ReLU6 output can already be as
        # close as int16 gets it: equal to 3 decimals on one CPU's weights) ...
        assert step.layer_sqnr_after_db >= step.layer_sqnr_before_db
    # ... and the raising does bring layers closer.
    assert any(s.layer_sqnr_after_db > s.layer_sqnr_before_db for s in result.steps)
    # The model handed back is what was measured, and is int8 at both ends.
    fidelity = measure_fidelity(float_tflite, result.model, holdout)
    assert fidelity.sqnr_db == pytest.approx(result.fidelity.sqnr_db)
    dtypes = _dtypes(result.model)
    assert {dtypes[t] for t in result.int16_tensors} == {"int16"}
    sensitivity = measure_sensitivity(float_tflite, result.model, holdout)
    assert {op.tensor for op in sensitivity.ops if op.dtype == "int16"} == set(result.int16_tensors)
    json.dumps(result.as_dict(), allow_nan=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "final.tflite"
        path.write_bytes(result.model)
        assert profile_ethos_u(path, resolve_target(TARGET), Path(tmp) / "v").vela.cpu_ops == 0


@pytest.mark.slow
def test_automatic_mode_drops_choices_over_the_cycle_budget(digits):
    float_tflite, calibration, holdout, modules = digits
    goal = AutoGoal(
        sqnr_db=60.0,
        max_steps=2,
        candidates_per_step=1,
        max_extra_cycles_pct=0.5,
        min_gain_db=-100.0,  # judge the cycle budget alone
        give_up_when_unreachable=False,
    )
    result = auto_mixed_precision(
        float_tflite, calibration, holdout, TARGET, modules=modules, goal=goal
    )
    assert [s.kept for s in result.steps] == [False, False]
    for step in result.steps:
        assert step.extra_cycles_pct > 0.5
        assert step.reason.startswith(f"dropped: +{step.extra_cycles_pct:.1f}% cycles exceeds")
    assert len({s.tensors for s in result.steps}) == 2  # a dropped layer is not tried again
    assert result.int16_tensors == () and result.extra_cycles_pct == 0.0
    assert result.fidelity.sqnr_db == pytest.approx(result.baseline.sqnr_db, abs=1e-3)


def test_an_unreachable_goal_ships_the_int8_model_without_searching(digits):
    """When even every int16-capable op raised stays below the goal, no cycles are spent."""
    float_tflite, calibration, holdout, modules = digits
    result = auto_mixed_precision(
        float_tflite, calibration, holdout, TARGET, modules=modules, goal=AutoGoal(sqnr_db=60.0)
    )
    assert result.all_int16_sqnr_db < 60.0
    assert result.steps == () and result.int16_tensors == () and result.extra_cycles_pct == 0.0
    assert result.stop_reason.startswith("search skipped")
    assert "int8 weights" in result.stop_reason and not result.reached


def test_a_goal_already_met_by_int8_raises_nothing(digits):
    float_tflite, calibration, holdout, modules = digits
    goal = AutoGoal(sqnr_db=None, top1_agreement=0.5)
    result = auto_mixed_precision(
        float_tflite, calibration, holdout, TARGET, modules=modules, goal=goal
    )
    assert result.reached and result.stop_reason == "goal reached"
    assert result.steps == () and result.int16_tensors == ()
    excluded = {(e.module, e.reason) for e in result.excluded}
    assert ("classifier", OUTPUT_REASON) in excluded


def test_automatic_mode_refuses_a_cpu_target_and_a_missing_goal(digits):
    float_tflite, calibration, holdout, _ = digits
    with pytest.raises(UsageError, match="Ethos-U target"):
        auto_mixed_precision(float_tflite, calibration, holdout, "host")
    with pytest.raises(UsageError, match="needs a goal"):
        auto_mixed_precision(
            float_tflite, calibration, holdout, TARGET, goal=AutoGoal(sqnr_db=None)
        )
