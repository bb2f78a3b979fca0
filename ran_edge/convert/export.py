"""The one place that knows litert-torch: PyTorch module -> float TFLite, channel-last I/O.

Channel-last I/O makes the TFLite input NHWC, as firmware and cameras deliver it, and
spares the graph the TRANSPOSE that Ethos-U cannot run. litert-torch keeps each torch
module's path in the TFLite op names, which per-module attribution relies on.

Before conversion the exported graph goes through `ran_edge.convert.rewrites` (on by
default): patterns users write every day (`x.mean((2, 3))`, LeakyReLU, ...) that would
otherwise end on the CPU are replaced by equivalent ones the NPU runs. What fired is
returned by `export_float_tflite_with_rewrites`, so builds can say what they changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from importlib.metadata import version

import torch
from torch import nn

from ran_edge.convert.rewrites import AppliedRewrite, export_and_rewrite
from ran_edge.errors import StageError
from ran_edge.probe import probe_forward
from ran_edge.quiet import captured_output

# Quiet the converter's progress printer and C++ logs; ran-edge shows its own progress.
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GLOG_minloglevel", "3")


# The attribute litert-torch's ChannelLastIOWrapper keeps the user's module under.
_WRAPPED = "wrapped"


def litert_torch_version() -> str:
    return version("litert-torch")


def export_float_tflite(
    module: nn.Module, input_shape: tuple[int, ...], *, rewrites: bool = True
) -> bytes:
    """Convert `module` (eval mode) to a float32 TFLite flatbuffer with NHWC input.

    `input_shape` is the PyTorch NCHW shape; the TFLite input is its NHWC transpose.
    4-D outputs are made channel-last too, so no layout op survives at either end.
    `rewrites=False` converts the graph exactly as written (see `ran_edge.convert.rewrites`).
    """
    tflite, _applied = export_float_tflite_with_rewrites(module, input_shape, rewrites=rewrites)
    return tflite


def export_float_tflite_with_rewrites(
    module: nn.Module, input_shape: tuple[int, ...], *, rewrites: bool = True
) -> tuple[bytes, tuple[AppliedRewrite, ...]]:
    """`export_float_tflite`, plus the NPU rewrites that fired (empty when none did)."""
    with captured_output():  # heavy import, noisy native logging: only when converting
        import litert_torch

    module = module.eval()
    n, c, h, w = input_shape
    example = torch.zeros(n, h, w, c)
    out = probe_forward(module, input_shape)
    outputs = [0] if isinstance(out, torch.Tensor) and out.dim() == 4 else None
    wrapped: nn.Module = litert_torch.to_channel_last_io(module, args=[0], outputs=outputs).eval()
    applied: list[AppliedRewrite] = []
    exported = None
    with _contiguous_input(module):
        if rewrites:
            wrapped, applied, exported = _rewrite(wrapped, example)
        try:
            with captured_output(), _reuse_export(wrapped, example, exported):
                edge_model = litert_torch.convert(wrapped, (example,))
        except Exception as exc:  # the converter raises many types; all mean "cannot export"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StageError(
                f"litert-torch could not export the model: {type(exc).__name__}: {first}. "
                "Models must be torch.export-able (no data-dependent control flow) and use "
                "ops with a TFLite equivalent."
            ) from None
    return bytes(edge_model.model_content()), tuple(applied)


@contextlib.contextmanager
def _contiguous_input(module: nn.Module) -> Iterator[None]:
    """Hand `module` a contiguous NCHW input while it is exported.

    The channel-last wrapper passes the module a permuted (channels-last strided) view of
    the NHWC input, so every map inside is channels-last in memory and the classifier idiom
    `x.view(x.size(0), -1)` fails to trace ("Cannot view a tensor with shape ... and
    strides ..."), though it runs on any NCHW tensor the user feeds. A contiguous copy is
    what the user's own forward sees; the converter drops it (layouts are its business).
    """
    handle = module.register_forward_pre_hook(_make_contiguous)
    try:
        yield
    finally:
        handle.remove()


def _make_contiguous(_module: nn.Module, args: tuple) -> tuple:
    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


def find_rewrites(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[AppliedRewrite, ...]:
    """The rewrites `export_float_tflite` would apply to `module`, without converting it
    (one torch.export, seconds): for reports and `ran-edge check`."""
    with captured_output():
        import litert_torch

    module = module.eval()
    n, c, h, w = input_shape
    wrapped = litert_torch.to_channel_last_io(module, args=[0]).eval()
    with _contiguous_input(module):
        _rewritten, applied, _exported = _rewrite(wrapped, torch.zeros(n, h, w, c))
    return tuple(applied)


def _rewrite(wrapped: nn.Module, example: torch.Tensor):
    """Rewrite the exported graph; a model torch.export cannot trace converts unchanged
    (litert-torch then reports why it cannot export it). Also returns the exported program
    when nothing fired, for `_reuse_export`."""
    try:
        with captured_output():
            rewritten, applied, exported = export_and_rewrite(wrapped, (example,))
    except Exception:  # export errors are litert-torch's to report, with its own message
        return wrapped, [], None
    return rewritten, [replace(a, module=_user_path(a.module)) for a in applied], exported


@contextlib.contextmanager
def _reuse_export(
    module: nn.Module, example: torch.Tensor, exported: torch.export.ExportedProgram | None
) -> Iterator[None]:
    """litert-torch starts with `torch.export.export(module, (example,), strict=False)`. When
    the rewrite pass has just made that very program (same module object, same input tensor,
    same options) and changed nothing, hand it over instead of tracing again: one export of
    the network saved (~0.8 s of a MobileNetV2 build), the same bytes out. Any other call goes
    to torch unchanged. Conversion runs on one thread, so patching for its duration is safe."""
    if exported is None:
        yield
        return
    original = torch.export.export

    def export(mod, args=(), kwargs=None, *, dynamic_shapes=None, strict=False, **rest):
        same = mod is module and len(args) == 1 and args[0] is example
        if same and not kwargs and dynamic_shapes is None and strict is False and not rest:
            return exported
        return original(mod, args, kwargs, dynamic_shapes=dynamic_shapes, strict=strict, **rest)

    torch.export.export = export
    try:
        yield
    finally:
        torch.export.export = original


def _user_path(path: str) -> str:
    """A module path inside the channel-last wrapper, as the user's module names it."""
    return "" if path == _WRAPPED else path.removeprefix(_WRAPPED + ".")
