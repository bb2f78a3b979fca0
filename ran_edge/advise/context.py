"""`advise --in-context`: each recommended replacement's saving measured in the network.

The cost table prices a block alone in a sandwich; what the block does to its
neighbours (on Dedicated_Sram targets such as U65, a smaller tensor that stops other
layers' feature maps spilling from the cache to DRAM) it cannot see, which makes U65
savings conservative by ~15% on MobileNetV2 and EfficientNet-Lite0. Here the whole
network is compiled once as it is and once per recommended replacement (that block
alone swapped), with the cost table's compiler (seeded random calibration: cycles
depend on the graph, not the values), and the saving is the difference of Vela's totals
(on a CPU target, of the estimator's: there it catches what the sandwich cannot see,
such as the per-network context term and cold weights beyond L2). Savings of several
replacements are still added as if independent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ran_edge.advise.advice import BlockAdvice
from ran_edge.advise.apply import Replacement, apply_replacements
from ran_edge.advise.sites import replaceable_model
from ran_edge.jobs import JobPool
from ran_edge.models import load_model
from ran_edge.search.compiler import BlockCompiler, LiteRtCompiler, one_torch_thread
from ran_edge.search.progress import progress_bar
from ran_edge.search.table import graph_cost
from ran_edge.targets.loading import Target


def network_cycles(
    model: nn.Module, input_shape: tuple[int, ...], target: Target, compiler: BlockCompiler
) -> int:
    """`model`'s total cycles compiled whole on `target` (Vela, or the CPU estimator)."""
    return graph_cost(compiler.compile(model.eval(), input_shape), target).total_cycles


def variant_cycles(
    model_spec: str,
    weights: Path | None,
    input_shape: tuple[int, ...],
    swap: Replacement | None,
    seed: int,
    target: Target,
    compiler: BlockCompiler,
) -> int:
    """One job: the user's network, loaded afresh (a module defined in a user's file does
    not travel to another process; its spec does), with `swap` applied, compiled whole."""
    with one_torch_thread():
        loaded = load_model(model_spec, weights=weights, input_shape=input_shape)
        model = replaceable_model(loaded.module)
        if swap is not None:
            model = apply_replacements(model, [swap], seed=seed)
        return network_cycles(model, input_shape, target, compiler)


def context_savings(
    model_spec: str,
    weights: Path | None,
    input_shape: tuple[int, ...],
    blocks: Sequence[BlockAdvice],
    target: Target,
    seed: int = 0,
    compiler: BlockCompiler | None = None,
    progress: bool = True,
    pool: JobPool | None = None,
) -> dict[str, int]:
    """Block path -> cycles saved in the whole network by its recommended replacement; the
    network as it is and each variant are compiled as parallel jobs on `pool`."""
    compiler = compiler or LiteRtCompiler()
    pool = pool or JobPool()
    recommended = [b for b in blocks if b.best is not None]
    if not recommended:
        return {}
    swaps: list[Replacement | None] = [None]
    for b in recommended:
        assert b.best is not None
        swaps.append(Replacement(b.site.path, b.site.slot, b.best.form))
    jobs = [(model_spec, weights, input_shape, s, seed, target, compiler) for s in swaps]
    cycles: dict[int, int] = {}
    label = f"in-context check on {target.name} ({pool.where})"
    with progress_bar(label, len(jobs), progress) as advance:
        pool.run(variant_cycles, jobs, cycles.__setitem__, advance)
    return {b.site.path: cycles[0] - cycles[i] for i, b in enumerate(recommended, start=1)}
