"""Name -> factory registry for the built-in model zoo (timm-style).

Models register themselves with `@register_model`; callers build them by name with
`create_model`, which seeds initialisation so the same name always gives bit-identical
weights (reproducible conversions and reports even without a checkpoint).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
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
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(_unknown_message(name)) from None


def list_models() -> list[ModelEntry]:
    """All registered models, sorted by name."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a zoo model in eval mode with deterministic (seeded) initial weights.

    Seeding happens inside `fork_rng`, so the caller's global RNG state is untouched.
    """
    entry = get_entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = entry.factory(**kwargs)
    return model.eval()


def _unknown_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return (
        f"unknown model {name!r}.{hint} Run `ran-edge models` to list the built-in models, "
        f"or pass a model file as path/to/file.py:factory or an exported program .pt2. "
        f"Known models: {', '.join(sorted(_REGISTRY))}."
    )
