"""slice_ops: every operator of a real int8 model as a one-op model that LiteRT loads and runs,
costed exactly as the op was in its source model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ran_edge.convert.op_slices import slice_ops
from ran_edge.convert.tflite_ops import read_op_costs


class _ConvAdd(nn.Module):
    """conv -> relu6 -> conv, added to the input: CONV_2D (x2), ADD, and any (DE)QUANTIZE."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.act(self.a(x)))


@pytest.fixture(scope="module")
def model() -> bytes:
    from ran_edge.quiet import captured_output
    from ran_edge.targets.cortex_a.microbench import build_int8

    with captured_output():
        return build_int8(_ConvAdd(), (1, 8, 16, 16))


def _interpreter(data: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    return interpreter


@pytest.mark.slow  # the converter: a few seconds
def test_every_op_becomes_a_one_op_model_that_runs(model):
    source = read_op_costs(model)
    slices = slice_ops(model)
    assert [s.index for s in slices] == list(range(len(source)))
    assert [s.op for s in slices] == [c.op for c in source]
    assert {"CONV_2D", "ADD"} <= {s.op for s in slices}
    for piece in slices:
        (cost,) = read_op_costs(piece.model)  # exactly one operator
        assert cost.op == piece.op
        interpreter = _interpreter(piece.model)
        inputs = interpreter.get_input_details()
        assert inputs, piece.op  # its activations are the model's inputs
        for detail in inputs:
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interpreter.invoke()
        (output,) = interpreter.get_output_details()
        assert tuple(interpreter.get_tensor(output["index"]).shape) == cost.output


@pytest.mark.slow
def test_a_slice_costs_what_its_op_cost_in_the_source(model):
    source = read_op_costs(model)
    for piece, original in zip(slice_ops(model), source, strict=True):
        (cost,) = read_op_costs(piece.model)
        assert (cost.op, cost.output, cost.inputs, cost.weights) == (
            original.op,
            original.output,
            original.inputs,
            original.weights,
        )
        assert (cost.macs, cost.in_elements, cost.out_elements) == (
            original.macs,
            original.in_elements,
            original.out_elements,
        )
        assert (cost.activation_bytes, cost.weight_bytes, cost.dtype, cost.window) == (
            original.activation_bytes,
            original.weight_bytes,
            original.dtype,
            original.window,
        )
        assert cost.consumers == ()  # alone, nothing reads its output
    convs = [c for c in source if c.op == "CONV_2D"]
    assert len(convs) == 2 and all(c.macs > 0 and c.weight_bytes > 0 for c in convs)
