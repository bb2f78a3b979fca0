"""The estimator's list of int8 ops XNNPACK leaves to TFLite, checked against the installed
LiteRT op by op: each op alone between the model's input and a conv, through ran-edge's own
export + int8 quantisation. An upgrade that changes the delegate's coverage fails here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ran_edge.convert.tflite_ops import read_op_costs
from ran_edge.quiet import captured_output
from ran_edge.targets.cortex_a.delegation import NOT_DELEGATED_INT8, ops_outside_xnnpack
from ran_edge.targets.cortex_a.estimate import cost_class
from ran_edge.targets.cortex_a.microbench import build_int8

pytestmark = pytest.mark.slow  # seconds of real converter per case


class _Then(nn.Module):
    """`first` on the input, then a 1x1 conv: the op under test sits alone in the graph."""

    def __init__(self, first: nn.Module) -> None:
        super().__init__()
        self.first, self.conv = first, nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.first(x))


class _Sqrt(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.relu(x) + 1)


CASES = {
    "HARD_SWISH": nn.Hardswish(),
    "AVERAGE_POOL_2D": nn.AvgPool2d(2),
    "RESIZE_NEAREST_NEIGHBOR": nn.Upsample(scale_factor=2, mode="nearest"),
    "PADV2": nn.MaxPool2d(3, 2, 1),  # a padded max pool pads with the int8 minimum
    "RELU": nn.ReLU(),
    "SQRT": _Sqrt(),
}


def _model(first: nn.Module) -> bytes:
    torch.manual_seed(0)
    with captured_output():
        return build_int8(_Then(first), (1, 8, 16, 16))


@pytest.mark.parametrize("op", sorted(CASES))
def test_each_listed_op_runs_outside_xnnpack(op):
    model = _model(CASES[op])
    assert op in {c.op for c in read_op_costs(model)}, "the case no longer lowers to the op"
    assert op in ops_outside_xnnpack(model)
    assert op in NOT_DELEGATED_INT8


def test_delegated_ops_are_not_reported_and_are_costed_as_xnnpack():
    model = _model(nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6()))
    assert ops_outside_xnnpack(model) == []
    assert all(cost_class(c) != "reference" for c in read_op_costs(model))
