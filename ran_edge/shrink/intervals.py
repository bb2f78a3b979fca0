"""Proven value bounds at every residual block's input, by interval arithmetic over the
network's torch.fx graph.

Why a proof and not calibration statistics: residual removal through a bounded activation
(ReLU6) is exact only inside the carried range, and "inside on the samples we saw" is not
exact. The graph is traced with the handled blocks (`residual_chain.HANDLED`) as leaves, so
each block's input is one node; the bound flows from the network input (unbounded unless
the caller gives a range) through convs, BatchNorm, activations, pools and adds
(`ran_edge.reparam.bounds`, `residual_chain.chain_interval`). Any op the rules do not cover
makes its output unbounded, which is always sound: it can only cost a refusal.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from ran_edge.reparam.bounds import Interval, activation_interval, module_interval
from ran_edge.shrink.residual_chain import block_chain, chain_interval, is_block

_FUNCTION_ACTS: dict[object, nn.Module] = {
    torch.relu: nn.ReLU(),
    F.relu: nn.ReLU(),
    F.relu6: nn.ReLU6(),
    F.hardswish: nn.Hardswish(),
}


@dataclass(frozen=True)
class BlockBounds:
    """Per block path, the proven bounds of its input; `note` says how they were found."""

    inputs: dict[str, Interval] = field(default_factory=dict)
    note: str = ""


class _BlockTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_block(m) or super().is_leaf_module(m, module_qualified_name)


def block_input_bounds(model: nn.Module, input_range: Interval | None = None) -> BlockBounds:
    """Bounds at the input of every handled block `model` calls (eval-mode semantics)."""
    start = input_range if input_range is not None else Interval.unbounded()
    try:
        graph = _BlockTracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - any trace failure only means "no bounds"
        return BlockBounds(
            note=f"no bounds: torch.fx could not trace the model ({type(exc).__name__}: "
            f"{exc}); only blocks that need no bound (ReLU pairs, no activation) are carried"
        )
    env: dict[torch.fx.Node, Interval] = {}
    inputs: dict[str, Interval] = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            env[node] = start
        elif node.op == "call_module":
            env[node] = _module_node(model, node, env, inputs)
        elif node.op == "call_function":
            env[node] = _function_node(node, env)
        else:
            env[node] = Interval.unbounded()
    where = "the input range given" if input_range is not None else "an unbounded input"
    return BlockBounds(inputs, f"proven by interval arithmetic from {where}")


def _arg(env: dict[torch.fx.Node, Interval], arg: object) -> Interval:
    if isinstance(arg, torch.fx.Node):
        return env.get(arg, Interval.unbounded())
    if isinstance(arg, int | float):
        return Interval.of(arg, arg)
    return Interval.unbounded()


def _module_node(model, node, env, inputs: dict[str, Interval]) -> Interval:
    module = model.get_submodule(node.target)
    x = _arg(env, node.args[0]) if node.args else Interval.unbounded()
    try:
        if is_block(module):
            seen = inputs.get(node.target)
            inputs[node.target] = x if seen is None else seen.union(x)
            chain = block_chain(module)
            return chain_interval(chain, x) if chain is not None else Interval.unbounded()
        return module_interval(module, x) or Interval.unbounded()
    except Exception:  # noqa: BLE001 - e.g. channel counts that do not line up: unknown
        return Interval.unbounded()


def _function_node(node: torch.fx.Node, env: dict[torch.fx.Node, Interval]) -> Interval:
    if node.target in (operator.add, torch.add) and len(node.args) == 2 and not node.kwargs:
        a, b = (_arg(env, arg) for arg in node.args)
        if a.lo.dim() == 0 or b.lo.dim() == 0 or a.lo.shape == b.lo.shape:
            return a + b
    act = _FUNCTION_ACTS.get(node.target)
    if act is not None and node.args:
        return activation_interval(act, _arg(env, node.args[0])) or Interval.unbounded()
    return Interval.unbounded()
