"""Model zoo and model loading: zoo names, `file.py:factory` and `.pt2` specs to nn.Modules.

Importing this package is free (no torch): `ran-edge models` lists the zoo from `zoo.json`
(see `catalogue`). Names load on first use; the zoo registers its families on first lookup.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LoadedModel": "loading",
    "load_model": "loading",
    "count_macs": "complexity",
    "count_params": "complexity",
    "ModelEntry": "registry",
    "create_model": "registry",
    "get_entry": "registry",
    "list_models": "registry",
    "register_model": "registry",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ran_edge.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ran_edge.models' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
