"""The one place that knows litert-torch: PyTorch module -> float TFLite, channel-last I/O.

Channel-last I/O makes the TFLite input NHWC, as firmware and cameras deliver it, and
spares the graph the TRANSPOSE that Ethos-U cannot run. litert-torch keeps each torch
module's path in the TFLite op names, which per-module attribution relies on.
"""

from __future__ import annotations

import os
from importlib.metadata import version

import torch
from torch import nn

from ran_edge.errors import StageError
from ran_edge.probe import probe_forward
from ran_edge.quiet import captured_output

# Quiet the converter's progress printer and C++ logs; ran-edge shows its own progress.
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "3")


def litert_torch_version() -> str:
    return version("litert-torch")


def export_float_tflite(module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """Convert `module` (eval mode) to a float32 TFLite flatbuffer with NHWC input.

    `input_shape` is the PyTorch NCHW shape; the TFLite input is its NHWC transpose.
    4-D outputs are made channel-last too, so no layout op survives at either end.
    """
    with captured_output():  # heavy import, noisy native logging: only when converting
        import litert_torch

    module = module.eval()
    n, c, h, w = input_shape
    example = torch.zeros(n, h, w, c)
    out = probe_forward(module, input_shape)
    outputs = [0] if isinstance(out, torch.Tensor) and out.dim() == 4 else None
    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=outputs).eval()
    try:
        with captured_output():
            edge_model = litert_torch.convert(wrapped, (example,))
    except Exception as exc:  # the converter raises many types; all mean "cannot export"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(
            f"litert-torch could not export the model: {type(exc).__name__}: {first}. "
            "Models must be torch.export-able (no data-dependent control flow) and use "
            "ops with a TFLite equivalent."
        ) from None
    return bytes(edge_model.model_content())
