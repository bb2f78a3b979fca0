"""The `search` command as a function: fill the cost table, optionally fit the predictor's
correction on full-network compiles, search, write <name>.json and pareto.png.

The pieces are the search package's: `CostTable` (cached, parallel table fill),
`fit.fit_correction`, `search.Space` / `search.search`, `arch_file.write_arch` and
`pareto_plot.write_pareto_png`; this module only puts them in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ran_edge.errors import UsageError
from ran_edge.jobs import JobPool
from ran_edge.models.arch_file import write_arch
from ran_edge.models.ran_e_space import (
    ALL_BLOCK_CANDIDATES,
    Candidate,
    ran_e_slots,
    space_parts,
)
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.search.context import ContextTerms, context_networks, context_terms
from ran_edge.search.fit import IDENTITY_NOTE, Fit, check_fit_count, fit_correction
from ran_edge.search.pareto_plot import Marker, baseline_from_report, write_pareto_png
from ran_edge.search.search import (
    Constraints,
    Point,
    SearchResult,
    Space,
    check_possible,
    result_json,
    search,
)
from ran_edge.search.table import CostTable
from ran_edge.targets.loading import resolve_target

DEFAULT_CACHE_DIR = Path("build/cost-cache")


@dataclass(frozen=True)
class SearchRequest:
    """Everything `ran-edge search` takes."""

    target: str  # Ethos-U target name, alias or TOML path
    budget: int = 20_000  # distinct architectures to evaluate
    seed: int = 0
    resolution: int = 224  # square input the table is measured at
    constraints: Constraints = Constraints()
    cache_dir: Path = DEFAULT_CACHE_DIR  # shared by targets and runs
    name: str = "ran_e_search"  # architecture name: <out>/<name>.json
    out: Path | None = None  # None: build/<name>
    baseline_reports: tuple[Path, ...] = ()  # builds' report.json, marked on the plot
    workers: int | None = None  # table-fill processes (None: cores)
    ray_address: str | None = None  # a Ray cluster runs the compiles instead (--ray)
    fit: int = 0  # full networks compiled to fit the correction (0: plain table sum)
    context: bool = False  # add the measured context terms (32 whole networks, cached)
    candidates: Sequence[Candidate] = ALL_BLOCK_CANDIDATES

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("build") / self.name


@dataclass(frozen=True)
class SearchRunResult:
    """What `run_search` did; `to_json()` is what `ran-edge search --json` prints."""

    target: str  # the resolved target's name
    search: SearchResult  # the space, Pareto front, chosen point, references
    fit: Fit | None  # the fitted correction (None: --fit 0, identity)
    context: ContextTerms | None  # the measured context terms (None: --context off)
    arch: Path  # <out>/<name>.json
    plot: Path  # <out>/pareto.png

    @property
    def best(self) -> Point:
        return self.search.best

    def to_json(self) -> dict[str, Any]:
        return {
            **result_json(self.search),
            "fit": self.fit.summary() if self.fit is not None else None,
            "context": self.context.to_json() if self.context is not None else None,
            "target": self.target,
            "arch": str(self.arch),
            "plot": str(self.plot),
        }


def run_search(req: SearchRequest, progress: BuildProgress = SILENT) -> SearchRunResult:
    """Search the RAN-e space on `req.target`; UsageError (before any compile) on a bad
    name, a CPU target, an unreadable baseline report, an impossible constraint or --fit."""

    name, candidates, limits = req.name, tuple(req.candidates), req.constraints
    if not name or not all(ch.isalnum() or ch in "_-." for ch in name):
        raise UsageError(f"--name {name!r}: use letters, digits, '_', '-' or '.'.")
    tgt = resolve_target(req.target)
    if not tgt.is_npu:
        raise UsageError(f"target {tgt.name!r} is not an Ethos-U NPU; the search needs one.")
    baselines = [baseline_from_report(Path(p)) for p in req.baseline_reports]  # fail early
    pool = JobPool(req.workers, req.ray_address)
    pool.check()
    slots = ran_e_slots(req.resolution)
    check_fit_count(req.fit, len(candidates) ** len(slots))  # before any compile

    # The table fill and the fit draw their own progress bars (CostTable.measure_all).
    table = CostTable(tgt, req.cache_dir, pool=pool)
    table.fill(space_parts(req.resolution, candidates))
    terms = None
    if req.context:
        networks = context_networks(req.resolution)
        table.measure_all(networks, label=f"context networks {tgt.name}")
        terms = context_terms(table.measure, table.cost, req.resolution)
    clock = tgt.npu.clock_hz
    space = Space(table.cost, req.resolution, candidates, clock_hz=clock, context=terms)
    check_possible(space, limits)  # before the full compiles a fit would spend
    fitted = fit_correction(table, space, req.fit, req.seed) if req.fit else None
    if fitted is not None:
        space = space.corrected(fitted.total.correction, fitted.npu.correction)
    with progress.stage(f"search {req.budget:,} architectures"):
        result = search(space, limits, budget=req.budget, seed=req.seed)

    fit_summary = fitted.summary() if fitted is not None else None
    best = result.best
    out = req.out_dir
    arch_path = write_arch(
        out / f"{name}.json",
        space.arch(best.genome),
        name=name,
        target=tgt.name,
        predicted={
            **best.figures(),
            "correction": fit_summary or IDENTITY_NOTE,
            "context": terms.to_json() if terms is not None else None,
        },
        search={
            "seed": req.seed,
            "budget": req.budget,
            "fit": req.fit,
            "context": req.context,
            "constraints": {k: v for k, v in asdict(limits).items() if v is not None},
            "proven_optimum": result.proven_best,
        },
    )
    markers = [Marker(n, p.macs, p.fps, "predicted") for n, p in sorted(result.references.items())]
    plot = write_pareto_png(
        out / "pareto.png",
        [(p.macs, p.fps) for p in result.front],
        [(p.macs, p.fps) for p in result.feasible],
        (best.macs, best.fps),
        [*markers, *baselines],
        f"RAN-e search on {tgt.name} at {req.resolution}x{req.resolution}",
    )
    return SearchRunResult(tgt.name, result, fitted, terms, arch_path, plot)
