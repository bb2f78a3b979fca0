"""`advise --in-context`: each recommended replacement's saving measured in the network.

The cost table prices a block alone in a sandwich; what the block does to its
neighbours (on Dedicated_Sram targets such as U65, a smaller tensor that stops other
layers' feature maps spilling from the cache to DRAM) it cannot see, which makes U65
savings conservative by ~15% on MobileNetV2 and EfficientNet-Lite0. Here the whole
network is compiled once as it is and once per recommended replacement (that block
alone swapped), with the cost table's compiler (seeded random calibration: cycles
depend on the graph, not the values), and the saving is the difference of Vela's totals.
Savings of several replacements are still added as if independent.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from torch import nn

from ran_edge.advise.advice import BlockAdvice
from ran_edge.advise.apply import Replacement, apply_replacements
from ran_edge.search.compiler import BlockCompiler, LiteRtCompiler
from ran_edge.search.progress import progress_bar
from ran_edge.search.table import vela_cost
from ran_edge.targets.loading import Target


def network_cycles(
    model: nn.Module, input_shape: tuple[int, ...], target: Target, compiler: BlockCompiler
) -> int:
    """Vela's total cycles for `model` compiled whole on `target`."""
    return vela_cost(compiler.compile(model.eval(), input_shape), target).total_cycles


def context_savings(
    teacher: nn.Module,
    input_shape: tuple[int, ...],
    blocks: Sequence[BlockAdvice],
    target: Target,
    seed: int = 0,
    compiler: BlockCompiler | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Block path -> cycles saved in the whole network by its recommended replacement."""
    compiler = compiler or LiteRtCompiler()
    recommended = [b for b in blocks if b.best is not None]
    savings: dict[str, int] = {}
    if not recommended:
        return savings
    label = f"in-context check on {target.name}"
    with progress_bar(label, 1 + len(recommended), progress) as advance:
        base = network_cycles(teacher, input_shape, target, compiler)
        advance()
        for b in recommended:
            assert b.best is not None
            swap = Replacement(b.site.path, b.site.slot, b.best.form)
            model = apply_replacements(copy.deepcopy(teacher), [swap], seed=seed)
            savings[b.site.path] = base - network_cycles(model, input_shape, target, compiler)
            advance()
    return savings
