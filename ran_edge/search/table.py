"""CostTable: the cost of each candidate block at each slot on one target.

A graph's cost is the target's: Vela's figures on Ethos-U, the CPU estimator's on a
Cortex-A / host profile (`graph_cost`). A block's cost is its sandwich's cost minus its two
frames' (see `graphs`). Every
compiled graph and every derived cost is cached by content key, so a second query is a
file read, and a second target reuses the int8 graphs and only reruns Vela (~0.3 s).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from ran_edge.convert.tflite_ops import activation_peak_bytes, read_op_costs
from ran_edge.jobs import JobPool
from ran_edge.models.ran_e_space import Candidate, Slot
from ran_edge.search.cache import SCHEMA, DiskCache, content_key, target_fingerprint
from ran_edge.search.compiler import BlockCompiler, LiteRtCompiler, one_torch_thread
from ran_edge.search.cost import BlockCost
from ran_edge.search.graphs import BlockGraph, GraphSpec, build_graph, frames_of
from ran_edge.targets.cortex_a.estimate import estimate_ops
from ran_edge.targets.ethos_u.vela import run_vela
from ran_edge.targets.loading import Target, resolve_target


def graph_key(spec: GraphSpec, compiler: BlockCompiler) -> str:
    return content_key(SCHEMA, spec, compiler.identity)


def cost_key(spec: GraphSpec, target: Target, compiler: BlockCompiler) -> str:
    """Key of a graph's cost on one target (the int8 graph itself is target-free)."""
    return content_key(graph_key(spec, compiler), target_fingerprint(target))


def vela_cost(tflite: bytes, target: Target) -> BlockCost:
    """Vela's figures for an int8 flatbuffer on `target`, compiled in a throwaway folder."""
    with tempfile.TemporaryDirectory(prefix="ran-edge-cost-") as tmp:
        model = Path(tmp) / "graph.tflite"
        model.write_bytes(tflite)
        return BlockCost.from_vela(run_vela(model, target, Path(tmp) / "vela"))


def estimated_cost(tflite: bytes, target: Target) -> BlockCost:
    """The CPU estimator's figures for an int8 flatbuffer on a Cortex-A / host `target`, at
    the profile's threads (what `ran-edge build` reports for it)."""
    costs = read_op_costs(tflite)
    params = target.cpu_model.params
    estimate = estimate_ops(costs, target.cpu, params, target.cpu.default_threads)
    return BlockCost.from_cpu_estimate(estimate, activation_peak_bytes(costs))


def graph_cost(tflite: bytes, target: Target) -> BlockCost:
    """An int8 graph's cost on `target`, by the target's own cost model."""
    return estimated_cost(tflite, target) if target.is_cpu else vela_cost(tflite, target)


def measure_graph(
    spec: GraphSpec, target: Target, cache: DiskCache, compiler: BlockCompiler
) -> BlockCost:
    """Cost of `spec` on `target`: from the cache, else compile (or reuse) and cost it."""
    cached = cached_cost(cache, "graphs", cost_key(spec, target, compiler))
    if cached is not None:
        return cached
    tflite = cache.get_bytes("tflite", graph_key(spec, compiler))
    result = cost_graph(spec, target, compiler, tflite)
    store_cost(cache, spec, target, compiler, result)
    return BlockCost.from_json(result[1])


def cost_graph(
    spec: GraphSpec, target: Target, compiler: BlockCompiler, tflite: bytes | None
) -> tuple[bytes, str]:
    """(int8 graph, its cost as JSON) of one graph: a job for a local process or a Ray task.

    It touches no cache: the caller stores both, so a worker on another machine needs no
    shared disk, and a failed fill keeps every entry finished before it."""
    with one_torch_thread():
        if tflite is None:
            tflite = compiler.compile(build_graph(spec), spec.input_shape())
        return tflite, graph_cost(tflite, target).to_json()


def cached_cost(cache: DiskCache, kind: str, key: str) -> BlockCost | None:
    """A cached cost, or None when absent or unreadable (a truncated or foreign file is
    recomputed and overwritten, never used)."""
    data = cache.get_bytes(kind, key)
    if data is None:
        return None
    try:
        return BlockCost.from_json(data.decode())
    except (UnicodeDecodeError, ValueError, TypeError):
        return None


def store_cost(
    cache: DiskCache,
    spec: GraphSpec,
    target: Target,
    compiler: BlockCompiler,
    result: tuple[bytes, str],
) -> None:
    """File `cost_graph`'s result under its content keys, entry by entry, atomically."""
    tflite, cost_json = result
    gkey = graph_key(spec, compiler)
    if cache.get_bytes("tflite", gkey) is None:
        cache.put_bytes("tflite", gkey, tflite)
    cache.put_bytes("graphs", cost_key(spec, target, compiler), cost_json.encode())


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
        pool: JobPool | None = None,
    ) -> None:
        self.target = resolve_target(target) if isinstance(target, str) else target
        self.cache = DiskCache(Path(cache_dir))
        self.compiler = compiler or LiteRtCompiler()
        self.pool = pool or JobPool()

    def key(self, slot: Slot, cand: Candidate) -> str:
        """sha256 of the candidate, slot, target profile bytes and tool versions."""
        return content_key(
            SCHEMA, slot, cand, target_fingerprint(self.target), self.compiler.identity
        )

    def cost(self, slot: Slot, cand: Candidate) -> BlockCost:
        """The block's cost, compiling in this process whatever is not cached yet."""
        key = self.key(slot, cand)
        cached = cached_cost(self.cache, "blocks", key)
        if cached is not None:
            return cached
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
        return cached_cost(self.cache, "graphs", key) is not None

    def fill(self, pairs: Iterable[tuple[Slot, Candidate]]) -> None:
        """Measure every missing entry, one graph per job, with a progress bar."""
        pairs = list(dict.fromkeys(pairs))
        missing = [p for p in pairs if cached_cost(self.cache, "blocks", self.key(*p)) is None]
        specs = list(dict.fromkeys(g for p in missing for g in graphs_needed(*p)))
        self.measure_all(specs, label=f"cost table {self.target.name}")
        for slot, cand in missing:
            self.cost(slot, cand)  # every graph is cached now: only file reads

    def measure_all(self, specs: list[GraphSpec], label: str, progress: bool = True) -> None:
        """Measure the graphs not cached yet on the table's pool (local processes or Ray);
        cached ones are skipped, so a warm call starts no process."""
        specs = [s for s in dict.fromkeys(specs) if not self.is_measured(s)]
        if not specs:
            return
        from ran_edge.search.progress import progress_bar

        jobs = [
            (
                s,
                self.target,
                self.compiler,
                self.cache.get_bytes("tflite", graph_key(s, self.compiler)),
            )
            for s in specs
        ]

        def on_result(index: int, result: tuple[bytes, str]) -> None:
            store_cost(self.cache, specs[index], self.target, self.compiler, result)

        with progress_bar(f"{label} ({self.pool.where})", len(specs), progress) as advance:
            self.pool.run(cost_graph, jobs, on_result, advance)
