"""Whether collapsing a block pays: a pluggable cost, MACs by default, Vela cycles on demand.

Collapsing a linear inverted residual is exact but not free: the dense kxk conv has
`Cin * Cout * k^2` MACs per output pixel against `t * Cin * (Cin + Cout + k^2)` for the
chain (docs/shrink.md), so a 5x5 block, or one without an expand layer, gets more
expensive, while on Ethos-U the dense conv can still win because depthwise convs run at
low MAC utilisation. Which one is cheaper is therefore a hardware question, answered per
block by a cost function:

    cost(module: nn.Module, input_shape: tuple[int, ...]) -> float      # lower is better

evaluated on the block before the merge and after it; `decide_merge` merges only when
the cost after is strictly lower. `macs_cost` counts MACs with forward hooks;
`vela_block_cost(target)` compiles the single block with Vela and returns its cycles.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from ran_edge.errors import UsageError
from ran_edge.probe import probe_forward

BlockCost = Callable[[nn.Module, tuple[int, ...]], float]


def module_macs(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Exact multiply-accumulates of every Conv2d and Linear in one forward (forward hooks).

    A conv counts `in_channels / groups * kh * kw` MACs per output element; bias adds,
    activations, pads and residual adds count 0.
    """
    total = 0

    def conv_hook(conv: nn.Conv2d, _inputs, out) -> None:
        nonlocal total
        kh, kw = conv.kernel_size
        total += out.numel() * (conv.in_channels // conv.groups) * kh * kw

    def linear_hook(linear: nn.Linear, _inputs, out) -> None:
        nonlocal total
        total += out.numel() * linear.in_features

    hooks = []
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            hooks.append(sub.register_forward_hook(conv_hook))
        elif isinstance(sub, nn.Linear):
            hooks.append(sub.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    try:
        probe_forward(module, tuple(input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        module.train(was_training)
    return total


def macs_cost(module: nn.Module, input_shape: tuple[int, ...]) -> float:
    """The default cost: MACs (what a CPU or an ideal accelerator pays)."""
    return float(module_macs(module, input_shape))


@dataclass
class VelaBlockCost:
    """Vela's total cycles for one block compiled alone for `target` (int8, NPU).

    The block is exported with litert-torch, quantized on a few seeded random samples and
    compiled with Vela in a temporary folder. Results are cached by block structure and
    shapes (weights change Vela's figure only through weight compression), so a search
    that asks about the same block shape twice compiles it once.
    """

    target: str = "ethos-u55-128"
    samples: int = 4
    seed: int = 0
    cache: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ran_edge.targets.loading import resolve_target

        resolved = resolve_target(self.target)
        if getattr(resolved, "kind", "ethos-u") != "ethos-u":
            raise UsageError(
                f"the Vela cost needs an Ethos-U target; {resolved.name} is "
                f"{resolved.kind}. Pass an ethos-u target (see `ran-edge targets`)."
            )
        self._target = resolved

    def key(self, module: nn.Module, input_shape: tuple[int, ...]) -> str:
        text = f"{self._target.name}|{tuple(input_shape)}|{module!r}"
        return hashlib.sha256(text.encode()).hexdigest()

    def __call__(self, module: nn.Module, input_shape: tuple[int, ...]) -> float:
        key = self.key(module, input_shape)
        if key not in self.cache:
            self.cache[key] = float(self._compile(module, tuple(input_shape)))
        return self.cache[key]

    def _compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> int:
        from ran_edge.convert.export import export_float_tflite
        from ran_edge.convert.quantize import quantize_int8
        from ran_edge.targets.ethos_u.profile import profile_ethos_u

        module = module.eval()
        n, c, h, w = input_shape
        rng = np.random.default_rng(self.seed)
        calibration = rng.standard_normal((self.samples, h, w, c)).astype(np.float32)
        float_model = export_float_tflite(module, (1, c, h, w))
        int8_model = quantize_int8(float_model, calibration)
        with tempfile.TemporaryDirectory(prefix="ran-edge-cost-") as tmp:
            path = Path(tmp) / "block_int8.tflite"
            path.write_bytes(int8_model)
            profile = profile_ethos_u(path, self._target, Path(tmp) / "vela")
        return profile.vela.summary.cycles_total


def vela_block_cost(target: str = "ethos-u55-128", *, samples: int = 4) -> VelaBlockCost:
    """A cost function returning Vela's total cycles for a block on `target` (cached)."""
    return VelaBlockCost(target=target, samples=samples)


COSTS: dict[str, Callable[[str], BlockCost]] = {
    "macs": lambda _target: macs_cost,
    "vela": lambda target: vela_block_cost(target),
}


def resolve_cost(name: str, target: str = "ethos-u55-128") -> BlockCost:
    """`macs` or `vela` (on `target`) as a cost function."""
    if name not in COSTS:
        raise UsageError(f"unknown cost {name!r}; use one of: {', '.join(COSTS)}.")
    return COSTS[name](target)


@dataclass(frozen=True)
class CostComparison:
    """A block's cost before and after a candidate merge."""

    before: float
    after: float

    @property
    def merge_pays(self) -> bool:
        return self.after < self.before


def compare_costs(
    before: nn.Module, after: nn.Module, input_shape: tuple[int, ...], cost: BlockCost
) -> CostComparison:
    """Evaluate `cost` on both forms of one block at the block's input shape."""
    return CostComparison(cost(before, input_shape), cost(after, input_shape))
