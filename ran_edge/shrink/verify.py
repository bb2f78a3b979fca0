"""Numerical equivalence of two modules (a train form and its deploy form, say).

Errors are measured on random inputs over the whole output map, and separately on the
outer ring of the map, where padding conventions show up: a merge that is wrong only at
the borders has a tiny interior error and a large border error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ran_edge.errors import UsageError


@dataclass(frozen=True)
class Equivalence:
    """How far `b` is from the reference `a`, worst case over all seeds.

    Relative errors are max |a - b| divided by max |a| of the same output (elementwise
    ratios blow up where `a` crosses zero). `argmax_equal` compares the top class: the
    argmax over dim 1 after a global average over any spatial dims.
    """

    max_abs_err: float
    max_rel_err: float
    border_max_err: float
    border_max_rel_err: float
    interior_max_err: float
    argmax_equal: bool
    rtol: float

    @property
    def equivalent(self) -> bool:
        return self.max_rel_err <= self.rtol and self.argmax_equal


def verify_equivalent(
    a: nn.Module,
    b: nn.Module,
    input_shape: tuple[int, ...],
    *,
    seeds: int = 3,
    rtol: float = 1e-5,
    border_width: int = 3,
) -> Equivalence:
    """Compare `a` (reference) and `b` in eval mode on `seeds` seeded random-normal inputs.

    Modes are restored afterwards; the global RNG is untouched. `border_width` is how many
    rows and columns at each edge of a 4-D output count as the border ring.
    """
    if seeds < 1:
        raise UsageError(f"seeds must be >= 1, got {seeds}")
    like = _first_tensor(a) if _first_tensor(a) is not None else _first_tensor(b)
    dtype = like.dtype if like is not None else torch.float32
    device = like.device if like is not None else torch.device("cpu")
    worst = dict.fromkeys(("abs", "rel", "border", "border_rel", "interior"), 0.0)
    argmax_equal = True
    modes = (a.training, b.training)
    a.eval()
    b.eval()
    try:
        with torch.no_grad():
            for seed in range(seeds):
                generator = torch.Generator().manual_seed(seed)
                x = torch.randn(input_shape, generator=generator).to(device=device, dtype=dtype)
                out_a, out_b = _as_tensor(a(x), "a"), _as_tensor(b(x), "b")
                if out_a.shape != out_b.shape:
                    raise UsageError(
                        f"outputs differ in shape: {tuple(out_a.shape)} vs {tuple(out_b.shape)}"
                    )
                _accumulate(worst, out_a.double(), out_b.double(), border_width)
                argmax_equal &= bool(torch.equal(_top_class(out_a), _top_class(out_b)))
    finally:
        a.train(modes[0])
        b.train(modes[1])
    return Equivalence(
        max_abs_err=worst["abs"],
        max_rel_err=worst["rel"],
        border_max_err=worst["border"],
        border_max_rel_err=worst["border_rel"],
        interior_max_err=worst["interior"],
        argmax_equal=argmax_equal,
        rtol=rtol,
    )


def _accumulate(worst: dict[str, float], a: Tensor, b: Tensor, border_width: int) -> None:
    diff = (a - b).abs()
    scale = float(a.abs().max()) if a.numel() else 0.0
    abs_err = float(diff.max()) if diff.numel() else 0.0
    border, interior = _split_border(diff, border_width)
    worst["abs"] = max(worst["abs"], abs_err)
    worst["rel"] = max(worst["rel"], _ratio(abs_err, scale))
    worst["border"] = max(worst["border"], border)
    worst["border_rel"] = max(worst["border_rel"], _ratio(border, scale))
    worst["interior"] = max(worst["interior"], interior)


def _split_border(diff: Tensor, width: int) -> tuple[float, float]:
    """(max on the outer ring, max inside it) of a 4-D error map; (0, max) otherwise."""
    whole = float(diff.max()) if diff.numel() else 0.0
    if diff.dim() != 4:
        return 0.0, whole
    h, w = diff.shape[-2:]
    wh, ww = min(width, h // 2), min(width, w // 2)
    inside = diff[..., wh : h - wh, ww : w - ww]
    interior = float(inside.max()) if inside.numel() else 0.0
    ring = diff.clone()
    ring[..., wh : h - wh, ww : w - ww] = 0
    return float(ring.max()), interior


def _ratio(err: float, scale: float) -> float:
    if scale > 0:
        return err / scale
    return 0.0 if err == 0 else float("inf")


def _top_class(out: Tensor) -> Tensor:
    if out.dim() > 2:
        out = out.flatten(2).mean(dim=2)
    return out.reshape(out.shape[0], -1).argmax(dim=1)


def _as_tensor(out: object, name: str) -> Tensor:
    if not isinstance(out, Tensor):
        raise UsageError(
            f"module {name} returned {type(out).__name__}; verify_equivalent compares modules "
            "with a single tensor output."
        )
    return out


def _first_tensor(module: nn.Module) -> Tensor | None:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor
    return None
