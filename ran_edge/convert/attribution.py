"""Map TFLite/Vela op names back to the PyTorch modules they came from.

litert-torch names each op after the module stack that produced it, e.g.
`...ChannelLastIOWrapper/pkg.Net_wrapped/torch.nn.modules.container.Sequential_stem/
torch.nn.modules.conv.Conv2d_0;2`: one segment per module, `<class path>_<attribute>`,
several candidates joined by `;;` when ops were fused, a tensor index after `;`.
With the torch model at hand the segments are matched exactly; without it (a .tflite
made elsewhere) the attribute is read as the text after the class name.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model side needs torch; reading op names does not
    from torch import nn

UNATTRIBUTED = "(unattributed)"
_WEIGHTED_CLASSES = ("Conv1d", "Conv2d", "ConvTranspose2d", "Linear")
_TENSOR_SUFFIX = re.compile(r"(;\d*)?(_intermediate)?$")


def module_segment_map(model: nn.Module) -> dict[str, str]:
    """`segment chain -> module path` for every submodule, in litert-torch's naming."""
    segments: dict[str, str] = {}
    chain_of: dict[str, str] = {"": ""}
    for path, module in model.named_modules():
        if not path:
            continue
        parent, _, attr = path.rpartition(".")
        cls = type(module)
        segment = f"{cls.__module__}.{cls.__qualname__}_{attr}"
        chain = f"{chain_of[parent]}/{segment}" if chain_of[parent] else segment
        chain_of[path] = chain
        segments[chain] = path
    return segments


@dataclass(frozen=True)
class ModuleIndex:
    """What we know of the torch model to attribute ops: name segments and per-layer MACs."""

    segments: dict[str, str]
    macs: dict[str, int]

    @classmethod
    def from_model(cls, model: nn.Module, input_shape: tuple[int, ...]) -> ModuleIndex:
        return cls(module_segment_map(model), layer_macs(model, input_shape))


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    from torch import nn

    from ran_edge.probe import probe_forward

    """MACs of each Conv2d/Linear module for one forward pass, by module path."""
    macs: dict[str, int] = {}
    hooks = []
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):

            def conv_hook(m, _inp, out, path=path):
                per_output = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                macs[path] = macs.get(path, 0) + out.numel() * per_output

            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):

            def linear_hook(m, _inp, out, path=path):
                macs[path] = macs.get(path, 0) + out.numel() * m.in_features

            hooks.append(module.register_forward_hook(linear_hook))
    try:
        probe_forward(model, input_shape)
    finally:
        for hook in hooks:
            hook.remove()
    return macs


def _strip_root(candidate: str) -> list[str]:
    """Drop the channel-last wrapper and the user's root module from a name's segments."""
    parts = _TENSOR_SUFFIX.sub("", candidate).split("/")
    if parts and parts[0].endswith("ChannelLastIOWrapper"):
        parts = parts[2:]
    return parts


def _heuristic_path(parts: list[str]) -> str:
    attrs = []
    for part in parts:
        if "." not in part:  # not a module segment (e.g. an output tensor's name)
            return ""
        tail = part.rsplit(".", 1)[-1]
        _, sep, attr = tail.partition("_")
        if not sep:
            return ""
        attrs.append(attr)
    return ".".join(attrs)


def _is_weighted(parts: list[str]) -> bool:
    return bool(parts) and any(f".{c}_" in parts[-1] for c in _WEIGHTED_CLASSES)


def module_of(op_name: str, segment_map: dict[str, str] | None = None) -> str:
    """The PyTorch module path an op belongs to, or UNATTRIBUTED."""
    candidates = [_strip_root(c) for c in op_name.split(";;") if c]
    candidates = [c for c in candidates if c and c[0]]
    # A fused op lists every module it absorbed; the conv/linear is the op itself.
    ordered = sorted(candidates, key=lambda p: (not _is_weighted(p), -len(p)))
    for parts in ordered:
        chain = "/".join(parts)
        if segment_map is not None and chain in segment_map:
            return segment_map[chain]
        if segment_map is None:
            path = _heuristic_path(parts)
            if path:
                return path
    return UNATTRIBUTED


def ancestors(path: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]; the unattributed bucket stays whole."""
    if path == UNATTRIBUTED:
        return [path]
    parts = path.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def attribute_layers(layers: list[tuple[str, int]], index: ModuleIndex | None) -> list[str]:
    """Module path of each (op name, MACs) pair.

    Names come first. An op that does MACs but whose name carries no conv/linear module
    (litert-torch names the last op after the graph output, and an op can be named after
    the PAD of the module that consumes it) is matched by MAC count to the one conv/linear
    module with exactly that many MACs that no named op has claimed.
    """
    segments = index.segments if index else None
    paths = [module_of(name, segments) for name, _ in layers]
    if index is None:
        return paths

    def has_weights(path: str) -> bool:
        return path in index.macs or any(p.startswith(path + ".") for p in index.macs)

    unsure = [
        i
        for i, (_, macs) in enumerate(layers)
        if macs and (paths[i] == UNATTRIBUTED or not has_weights(paths[i]))
    ]
    claimed = {p for i, p in enumerate(paths) if i not in unsure}
    free = Counter(m for p, m in index.macs.items() if p not in claimed)
    for i in unsure:
        macs = layers[i][1]
        if free[macs] != 1:
            continue
        paths[i] = next(p for p, m in index.macs.items() if m == macs and p not in claimed)
        claimed.add(paths[i])
        free[macs] = 0
    return paths


@dataclass(frozen=True)
class ModuleCost:
    """Cycles and MACs summed over every op a module (and its children) produced."""

    path: str
    depth: int
    ops: int
    cycles: int
    macs: int
    mac_utilisation_pct: float  # MACs per cycle as % of the target's peak
    cycle_share_pct: float


def roll_up_modules(
    rows: list[tuple[str, int, int]], peak_macs_per_cycle: float
) -> list[ModuleCost]:
    """(module path, cycles, MACs) per op, summed into every ancestor of each path; the same
    table for every target kind. Rows with neither cycles nor MACs (fused activations) are
    part of their producer and left out."""
    ops: dict[str, int] = defaultdict(int)
    cycles: dict[str, int] = defaultdict(int)
    macs: dict[str, int] = defaultdict(int)
    for module, op_cycles, op_macs in rows:
        if op_cycles == 0 and op_macs == 0:
            continue
        for path in ancestors(module):
            ops[path] += 1
            cycles[path] += op_cycles
            macs[path] += op_macs
    total = sum(c for _, c, _ in rows)
    result = []
    for path in sorted(cycles):
        peak = cycles[path] * peak_macs_per_cycle
        util = 100.0 * macs[path] / peak if peak else 0.0
        share = 100.0 * cycles[path] / total if total else 0.0
        depth = 1 if path.startswith("(") else path.count(".") + 1
        result.append(ModuleCost(path, depth, ops[path], cycles[path], macs[path], util, share))
    return result


def modules_json(modules, depth: int) -> dict:
    """Cycles per PyTorch module, every module and each of its ancestors."""
    return {
        "depth": depth,
        "rows": [
            {
                "path": m.path,
                "depth": m.depth,
                "ops": m.ops,
                "cycles": m.cycles,
                "macs": m.macs,
                "mac_utilisation_pct": m.mac_utilisation_pct,
                "cycle_share_pct": m.cycle_share_pct,
            }
            for m in modules
        ],
    }
