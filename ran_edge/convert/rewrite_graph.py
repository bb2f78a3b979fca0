"""Helpers the graph rewrites share: node shapes, arguments, and inserting replacements.

Replacement nodes inherit the replaced node's module meta (`nn_module_stack`, ...): litert-
torch names TFLite ops after it, and ran-edge attributes Vela's per-op costs to PyTorch
modules by those names, so a rewritten op still counts toward the module it came from.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import fx

aten = torch.ops.aten

# Node meta worth carrying onto replacement nodes: the module path is what per-module
# attribution and litert-torch's op names are built from.
_META_KEYS = ("nn_module_stack", "stack_trace", "source_fn_stack", "torch_fn", "from_node")

# What one rewrite pass returns: each replaced node with a line saying what it became.
Replacements = list[tuple[fx.Node, str]]


def shape_of(node: object) -> tuple[int, ...] | None:
    """The static shape of a node's value, or None when it is unknown or not a tensor."""
    if not isinstance(node, fx.Node):
        return None
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    try:
        return tuple(int(d) for d in val.shape)
    except (TypeError, ValueError):  # symbolic sizes
        return None


def is_float(node: fx.Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and val.dtype.is_floating_point


def module_path(node: fx.Node) -> str:
    """The innermost torch module a node was traced in (its nn_module_stack's last entry)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, _type = list(stack.values())[-1]
    return str(path)


def norm_dims(dims: object, rank: int) -> tuple[int, ...] | None:
    if dims is None:
        return None
    if isinstance(dims, int):
        dims = [dims]
    try:
        return tuple(sorted({int(d) % rank for d in dims}))  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None


class Builder:
    """Inserts replacement nodes before `anchor`, each carrying the anchor's module meta."""

    def __init__(self, graph: fx.Graph, anchor: fx.Node) -> None:
        self.graph = graph
        self.anchor = anchor
        self.meta = {k: anchor.meta[k] for k in _META_KEYS if k in anchor.meta}

    def call(self, target, *args, val: torch.Tensor | None = None) -> fx.Node:
        with self.graph.inserting_before(self.anchor):
            node = self.graph.call_function(target, tuple(args))
        node.meta.update(self.meta)
        if val is not None:
            node.meta["val"] = val
        return node

    def replace(self, new: fx.Node) -> None:
        """Route every user of the anchor to `new` (which takes over its value meta)."""
        if "val" in self.anchor.meta:
            new.meta["val"] = self.anchor.meta["val"]
        self.anchor.replace_all_uses_with(new)
        self.graph.erase_node(self.anchor)


def call_nodes(gm: fx.GraphModule, targets: Iterable) -> list[fx.Node]:
    wanted = set(targets)
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in wanted]


def arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def constant(gm: fx.GraphModule, anchor: fx.Node, name: str, value: torch.Tensor) -> fx.Node:
    """A get_attr node for a buffer on the graph module, inserted before `anchor`."""
    if not hasattr(gm, name):
        gm.register_buffer(name, value)
    with gm.graph.inserting_before(anchor):
        return gm.graph.get_attr(name)


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)
