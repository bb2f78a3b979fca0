"""Parameter and MAC counts, for model listings and for sanity-checking the NPU's cycle figures."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ran_edge.probe import probe_forward


def count_params(module: nn.Module) -> int:
    """Number of parameters (weights and biases; BN running stats are buffers, not counted)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of all Conv2d and Linear layers for one forward of `input_shape`.

    The batch dimension counts (batch 2 gives twice the MACs). Grouped and depthwise convs
    count `in_channels / groups` inputs per output. Bias adds, BN, activations and pooling
    are not counted: they are cheap next to the convolutions and commonly left out.

    Counted at the aten-op level (conv, mm/addmm/bmm) rather than with forward hooks on
    nn.Conv2d/nn.Linear, so functional convs in user models and exported `.pt2` graphs
    (which have no such submodules) are counted too. Runs one forward pass on zeros under
    no_grad, in eval mode, so BN running stats are untouched.
    """
    counter = FlopCounterMode(display=False)
    with _eval_mode(module), counter:
        probe_forward(module, input_shape)
    return counter.get_total_flops() // 2  # the counter reports 2 FLOPs per MAC


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Temporarily switch to eval mode; exported graphs (which refuse .eval()) are left as is."""
    was_training = module.training
    try:
        module.eval()
    except NotImplementedError:  # torch.export's GraphModule: mode was fixed at export time
        was_training = False
    try:
        yield
    finally:
        if was_training:
            module.train()
