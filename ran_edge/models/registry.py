"""Name -> factory registry for the built-in model zoo (timm-style).

Models register themselves with `@register_model`; callers build them by name with
`create_model`, which seeds initialisation so the same name always gives bit-identical
weights (reproducible conversions and reports even without a checkpoint).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ran_edge.errors import UsageError

ModelFactory = Callable[..., nn.Module]

DEFAULT_INPUT_SHAPE: tuple[int, int, int, int] = (1, 3, 224, 224)
_SEED = 0


@dataclass(frozen=True)
class ModelEntry:
    """One zoo model: how to build it and what input it expects (NCHW)."""

    name: str
    factory: ModelFactory
    input_shape: tuple[int, ...]
    family: str
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
FAMILIES = (
    "convnext_bn",
    "efficientnet_lite",
    "mobilenet_v2",
    "ran_e",
    "reference_nets",
    "tiny_mbnet",
)


def _registry() -> dict[str, ModelEntry]:
    """The zoo, its family modules imported (they register on import) the first time."""
    for family in FAMILIES:
        importlib.import_module(f"ran_edge.models.{family}")
    return _REGISTRY


def register_model(
    name: str,
    *,
    input_shape: tuple[int, ...] = DEFAULT_INPUT_SHAPE,
    family: str,
    description: str,
) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator adding a factory (taking `**kwargs` such as `num_classes`) to the zoo."""

    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(
            name=name,
            factory=factory,
            input_shape=tuple(input_shape),
            family=family,
            description=description,
        )
        return factory

    return decorate


def get_entry(name: str) -> ModelEntry:
    """Look up a zoo entry; unknown names raise a UsageError with close suggestions."""
    try:
        return _registry()[name]
    except KeyError:
        raise UsageError(_unknown_message(name)) from None


def list_models() -> list[ModelEntry]:
    """All registered models, sorted by name."""
    registry = _registry()
    return [registry[n] for n in sorted(registry)]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a zoo model in eval mode with deterministic (seeded) initial weights.

    Seeding happens inside `fork_rng`, so the caller's global RNG state is untouched.
    BatchNorm statistics are then measured on seeded random inputs (see
    `calibrate_batchnorm`), so an untrained zoo model has trained-like activation ranges.
    """
    entry = get_entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = entry.factory(**kwargs)
        calibrate_batchnorm(model, entry.input_shape)
    return model.eval()


def calibrate_batchnorm(model: nn.Module, input_shape: tuple[int, ...], batches: int = 4) -> None:
    """Set BN running statistics from forward passes on standard-normal inputs.

    With default statistics (mean 0, var 1) a random-init network's activations shrink
    layer after layer (1e-8 by the end of MobileNetV2): int8 calibration then picks
    scales TFLM refuses and CPU convolutions crawl through denormals. Measured
    statistics normalise every layer, as training would.
    """
    measure_batchnorm(model, (torch.randn(8, *input_shape[1:]) for _ in range(batches)))


def measure_batchnorm(
    model: nn.Module, batches: Iterable[torch.Tensor], rest_in_eval: bool = False
) -> None:
    """Set every BN's running statistics to their exact average over `batches` (train-mode
    forward passes, no gradients). `rest_in_eval`: only the BNs run in train mode (dropout
    and the like stay off); otherwise the whole model does, as `calibrate_batchnorm` always
    has. Ends in eval mode (untouched when there is no BN)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved_momentum = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    model.train(not rest_in_eval)
    for bn in bns:
        bn.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    for bn, momentum in zip(bns, saved_momentum, strict=True):
        bn.momentum = momentum
    model.eval()


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_registry()), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return (
        f"unknown model {name!r}.{hint} Run `ran-edge models` to list the built-in models, "
        f"or pass a model file as path/to/file.py:factory or an exported program .pt2. "
        f"Known models: {', '.join(sorted(_REGISTRY))}."
    )
