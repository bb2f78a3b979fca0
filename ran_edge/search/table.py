"""CostTable: the Vela cost of each candidate block at each slot on one target.

A block's cost is its sandwich's Vela cost minus its two frames' (see `graphs`). Every
compiled graph and every derived cost is cached by content key, so a second query is a
file read, and a second target reuses the int8 graphs and only reruns Vela (~0.3 s).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from ran_edge.models.ran_e_space import Candidate, Slot
from ran_edge.search.cache import SCHEMA, DiskCache, content_key, target_fingerprint
from ran_edge.search.compiler import BlockCompiler, LiteRtCompiler
from ran_edge.search.cost import BlockCost
from ran_edge.search.graphs import BlockGraph, GraphSpec, build_graph, frames_of
from ran_edge.targets.ethos_u.vela import run_vela
from ran_edge.targets.loading import Target, resolve_target


def graph_key(spec: GraphSpec, compiler: BlockCompiler) -> str:
    return content_key(SCHEMA, spec, compiler.identity)


def cost_key(spec: GraphSpec, target: Target, compiler: BlockCompiler) -> str:
    """Key of a graph's Vela cost on one target (the int8 graph itself is target-free)."""
    return content_key(graph_key(spec, compiler), target_fingerprint(target))


def vela_cost(tflite: bytes, target: Target) -> BlockCost:
    """Vela's figures for an int8 flatbuffer on `target`, compiled in a throwaway folder."""
    with tempfile.TemporaryDirectory(prefix="ran-edge-cost-") as tmp:
        model = Path(tmp) / "graph.tflite"
        model.write_bytes(tflite)
        return BlockCost.from_vela(run_vela(model, target, Path(tmp) / "vela"))


def measure_graph(
    spec: GraphSpec, target: Target, cache: DiskCache, compiler: BlockCompiler
) -> BlockCost:
    """Vela cost of `spec` on `target`: from the cache, else compile (or reuse) and run Vela."""
    gkey = graph_key(spec, compiler)
    ckey = cost_key(spec, target, compiler)
    cached = cache.get_bytes("graphs", ckey)
    if cached is not None:
        return BlockCost.from_json(cached.decode())
    tflite = cache.get_bytes("tflite", gkey)
    if tflite is None:
        tflite = compiler.compile(build_graph(spec), spec.input_shape())
        cache.put_bytes("tflite", gkey, tflite)
    cost = vela_cost(tflite, target)
    cache.put_bytes("graphs", ckey, cost.to_json().encode())
    return cost


def _measure_job(
    spec: GraphSpec, target_source: str, cache_root: str, compiler: BlockCompiler
) -> None:
    """Pool worker: one graph, result left in the cache (the parent reads it from there)."""
    import torch

    torch.set_num_threads(1)  # one graph per core; torch's own threads would oversubscribe
    measure_graph(spec, resolve_target(target_source), DiskCache(Path(cache_root)), compiler)


def graphs_needed(slot: Slot, cand: Candidate) -> list[GraphSpec]:
    """The graphs one table entry is derived from."""
    main = BlockGraph(slot, cand)
    return [main, *dict.fromkeys(frames_of(slot))] if cand.is_block else [main]


class CostTable:
    """Block costs on one target, cached under `cache_dir` (shared safely by targets)."""

    def __init__(
        self,
        target: str | Target,
        cache_dir: Path | str,
        compiler: BlockCompiler | None = None,
    ) -> None:
        self.target = resolve_target(target) if isinstance(target, str) else target
        self.cache = DiskCache(Path(cache_dir))
        self.compiler = compiler or LiteRtCompiler()

    def key(self, slot: Slot, cand: Candidate) -> str:
        """sha256 of the candidate, slot, target profile bytes and tool versions."""
        return content_key(
            SCHEMA, slot, cand, target_fingerprint(self.target), self.compiler.identity
        )

    def cost(self, slot: Slot, cand: Candidate) -> BlockCost:
        """The block's cost, compiling in this process whatever is not cached yet."""
        key = self.key(slot, cand)
        cached = self.cache.get_bytes("blocks", key)
        if cached is not None:
            return BlockCost.from_json(cached.decode())
        costs = {g: self.measure(g) for g in graphs_needed(slot, cand)}
        cost = costs[BlockGraph(slot, cand)]
        if cand.is_block:  # producer and consumer may be the same frame: subtract both
            producer, consumer = frames_of(slot)
            cost = cost.minus(costs[producer]).minus(costs[consumer])
        self.cache.put_bytes("blocks", key, cost.to_json().encode())
        return cost

    def measure(self, spec: GraphSpec) -> BlockCost:
        return measure_graph(spec, self.target, self.cache, self.compiler)

    def is_measured(self, spec: GraphSpec) -> bool:
        """True when the graph's cost on this target is cached (measure is a file read)."""
        key = cost_key(spec, self.target, self.compiler)
        return self.cache.get_bytes("graphs", key) is not None

    def fill(self, pairs: Iterable[tuple[Slot, Candidate]], workers: int | None = None) -> None:
        """Measure every missing entry, one graph per process, with a progress bar."""
        pairs = list(dict.fromkeys(pairs))
        missing = [p for p in pairs if self.cache.get_bytes("blocks", self.key(*p)) is None]
        specs = list(dict.fromkeys(g for p in missing for g in graphs_needed(*p)))
        self.measure_all(specs, workers, label=f"cost table {self.target.name}")
        for slot, cand in missing:
            self.cost(slot, cand)  # every graph is cached now: only file reads

    def measure_all(
        self, specs: list[GraphSpec], workers: int | None, label: str, progress: bool = True
    ) -> None:
        """Measure the graphs not cached yet, in parallel (spawned processes: torch and fork
        do not mix); cached ones are skipped so a warm call starts no process."""
        workers = workers or os.cpu_count() or 1
        specs = [s for s in dict.fromkeys(specs) if not self.is_measured(s)]
        if not specs:
            return
        from ran_edge.search.progress import progress_bar

        with progress_bar(label, len(specs), progress) as advance:
            if workers == 1:
                for spec in specs:
                    self.measure(spec)
                    advance()
                return
            args = (str(self.target.source), str(self.cache.root), self.compiler)
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = [pool.submit(_measure_job, spec, *args) for spec in specs]
                for future in as_completed(futures):
                    future.result()
                    advance()
