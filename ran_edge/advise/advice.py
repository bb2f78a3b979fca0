"""Advice: which blocks (or convs) of a network cost the most for what they do, and what the
cost table would put there. One mechanism for every target; only the costs differ (Vela
on Ethos-U, the CPU estimator on Cortex-A / host).

Two sources, each used for what it measures best:

- the network's own report (per-layer rows attributed to module paths: Vela's on
  Ethos-U, the estimator's on a CPU) says how a site behaves *in this network*: its
  cycles, its share of the total and its MAC utilisation. On Ethos-U a block is
  *flagged* when its utilisation is below a threshold (default 30%: dense convs reach
  50-65%, depthwise-heavy blocks 10-25%) while its share of cycles is at least
  `min_share_pct` (not the network's own utilisation: a weight-streaming classifier can
  pull that down to a few percent). On a CPU the share alone flags a site: there, the
  operator search is about cheaper operators, and a well-used dense conv is where the
  time goes.
- the cost table says what each replacement *would* cost at that slot. The current
  form is costed by the same sandwich method, so the gain is table minus table, not a
  table figure against a network row.

The predicted network after the advice is the report's total minus the summed gains;
`advise --apply` builds the rewritten network and prints Vela's figure beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ran_edge.advise.forms import FormGraph, build_form, replacement_forms
from ran_edge.advise.request import Thresholds
from ran_edge.advise.sites import BlockForm, Site
from ran_edge.errors import StageError
from ran_edge.report.model import Report
from ran_edge.search.cost import BlockCost
from ran_edge.search.graphs import GraphSpec, frames_of
from ran_edge.targets.cortex_a.profile import peak_macs_per_cycle
from ran_edge.targets.loading import Target

Measure = Callable[[GraphSpec], BlockCost]


@dataclass(frozen=True)
class InNetwork:
    """A site's figures in the network's report (Vela's, or the CPU estimator's)."""

    cycles: int
    macs: int
    mac_utilisation_pct: float
    share_pct: float


@dataclass(frozen=True)
class Option:
    """One replacement form at a site, with its table cost and parameter count."""

    form: BlockForm
    cost: BlockCost
    params: int


@dataclass(frozen=True)
class Assessed:
    """A site, its figures in the network and whether it is flagged as wasting the NPU."""

    site: Site
    network: InNetwork
    wasteful: bool


@dataclass(frozen=True)
class BlockAdvice:
    site: Site
    network: InNetwork
    wasteful: bool
    current: BlockCost | None  # table cost of the block as it is (costed sites only)
    options: tuple[Option, ...]
    best: Option | None  # None: keep the block
    # the saving measured by compiling the whole network with this one replacement
    # (`advise --in-context`); None when not measured
    context_gain_cycles: int | None = None

    @property
    def table_gain_cycles(self) -> int:
        if self.best is None or self.current is None:
            return 0
        return self.current.total_cycles - self.best.cost.total_cycles

    @property
    def gain_cycles(self) -> int:
        """The in-context saving when measured, else the cost table's."""
        if self.best is not None and self.context_gain_cycles is not None:
            return self.context_gain_cycles
        return self.table_gain_cycles


@dataclass(frozen=True)
class Advice:
    model: str
    target: str
    clock_hz: float
    network_cycles: int
    network_utilisation_pct: float
    thresholds: Thresholds
    blocks: tuple[BlockAdvice, ...]
    skipped: tuple[str, ...]
    figures: str = "Vela"  # who costs the network and the replacements
    utilisation_flags: bool = True  # False on a CPU: the share alone flags a site

    @property
    def fps(self) -> float:
        return self.clock_hz / self.network_cycles

    @property
    def recommended(self) -> list[BlockAdvice]:
        return [b for b in self.blocks if b.best is not None]

    @property
    def predicted_cycles(self) -> int:
        return self.network_cycles - sum(b.gain_cycles for b in self.blocks)

    @property
    def predicted_fps(self) -> float:
        return self.clock_hz / max(self.predicted_cycles, 1)

    @property
    def table_predicted_fps(self) -> float:
        """The prediction from the cost table alone (differs with --in-context)."""
        cycles = self.network_cycles - sum(b.table_gain_cycles for b in self.recommended)
        return self.clock_hz / max(cycles, 1)


def report_metric(report: Report, name: str) -> float:
    """A figure the advice cannot do without (`report.value`, which finds it): absent or
    unavailable is an error that says which and why."""
    value = report.value(name)
    if value is None:
        m = report.metric(name)
        why = f"it is unavailable: {m.reason}" if m is not None else "the report has none"
        raise StageError(
            f"advice needs {name} from {report.model.name}'s report on {report.target.name}, "
            f"but {why}."
        )
    return float(value)


def in_network(report: Report, path: str | None, macs_per_cycle: float) -> InNetwork:
    """Sum of the report's per-layer rows whose module is `path` or inside it (all rows
    for None), with utilisation computed as the report's per-module rows compute it."""
    prefix = f"{path}."
    rows = [
        r for r in report.layers if path is None or r.module == path or r.module.startswith(prefix)
    ]
    cycles = sum(int(r.cycles) for r in rows)
    macs = sum(int(r.macs) for r in rows)
    total = report_metric(report, "cycles_total")
    util = 100.0 * macs / (cycles * macs_per_cycle) if cycles else 0.0
    return InNetwork(cycles, macs, util, 100.0 * cycles / total if total else 0.0)


@dataclass(frozen=True)
class Rates:
    """What a target's cycles and utilisation are counted against."""

    clock_hz: float
    macs_per_cycle: float  # the peak utilisation is measured against
    flags_by_utilisation: bool  # Ethos-U: a well-used block is not flagged; CPU: share only
    figures: str  # who says what the network costs: "Vela" or "CPU estimator"


def target_rates(target: Target) -> Rates:
    if target.is_npu:
        return Rates(target.npu.clock_hz, target.npu.macs_per_cycle, True, "Vela")
    cpu, params = target.cpu, target.cpu_model.params
    clock = cpu.clock_hz or params.reference_clock_hz  # as the estimator counts cycles
    peak = peak_macs_per_cycle(target, cpu.default_threads)  # capped at cores on load
    return Rates(clock, peak, False, "CPU estimator")


def assess(
    report: Report, rates: Rates, sites: Sequence[Site], thresholds: Thresholds
) -> list[Assessed]:
    """Each site's in-network figures, flagged when it takes at least `min_share_pct` of
    the network's cycles and (on Ethos-U) its MAC utilisation is below the limit."""
    limit = thresholds.max_utilisation_pct if rates.flags_by_utilisation else float("inf")
    out = []
    for site in sites:
        net = in_network(report, site.path, rates.macs_per_cycle)
        wasteful = net.mac_utilisation_pct < limit and net.share_pct >= thresholds.min_share_pct
        out.append(Assessed(site, net, wasteful))
    return out


def forms_for(site: Site, thresholds: Thresholds) -> list[BlockForm]:
    return replacement_forms(site, thresholds.allow_smaller, thresholds.conv_forms)


def graphs_to_measure(
    assessed: Sequence[Assessed], thresholds: Thresholds, cost_all: bool
) -> list[GraphSpec]:
    """Every graph the advice will cost (flagged sites, or all), to compile in parallel
    first: per site its current form, its replacements and its two frames."""
    specs: list[GraphSpec] = []
    for a in assessed:
        if a.wasteful or cost_all:
            forms = [a.site.form, *forms_for(a.site, thresholds)]
            specs += [FormGraph(a.site.slot, f) for f in forms]
            specs += frames_of(a.site.slot)
    return list(dict.fromkeys(specs))


def block_cost(measure: Measure, graph: FormGraph) -> BlockCost:
    """The form's sandwich cost minus the slot's producer and consumer frames."""
    producer, consumer = frames_of(graph.slot)
    return measure(graph).minus(measure(producer)).minus(measure(consumer))


def advise_block(a: Assessed, measure: Measure | None, thresholds: Thresholds) -> BlockAdvice:
    """Cost the site's replacements (when `measure` is given) and pick the fastest one that
    saves at least `min_gain_pct` of the block's cycles in the network; flagged sites only."""
    if measure is None:
        return BlockAdvice(a.site, a.network, a.wasteful, None, (), None)
    site = a.site
    current = block_cost(measure, FormGraph(site.slot, site.form))
    options = tuple(
        Option(f, block_cost(measure, FormGraph(site.slot, f)), _params(site, f))
        for f in forms_for(site, thresholds)
    )
    ranked = sorted(options, key=lambda o: (o.cost.total_cycles, o.params, o.form.label()))
    # The gain is a difference of two sandwiches, so the frames cancel; it must be a real
    # share of what the block costs in this network (absolute table figures can even be
    # negative on targets whose frames alone spill to DRAM, e.g. U65 at 112x112).
    need = a.network.cycles * thresholds.min_gain_pct / 100
    best = None
    if ranked and a.wasteful:
        gain = current.total_cycles - ranked[0].cost.total_cycles
        best = ranked[0] if gain > 0 and gain >= need else None
    return BlockAdvice(site, a.network, a.wasteful, current, options, best)


def _params(site: Site, form: BlockForm) -> int:
    return sum(p.numel() for p in build_form(site.slot, form).parameters())


def make_advice(
    *,
    model: str,
    target: Target,
    report: Report,
    assessed: Sequence[Assessed],
    skipped: Sequence[str],
    thresholds: Thresholds,
    measure: Measure,
    cost_all: bool = False,
) -> Advice:
    """Cost the flagged sites (or all with `cost_all`) and pick their replacements."""
    rates = target_rates(target)
    blocks = tuple(
        advise_block(a, measure if (a.wasteful or cost_all) else None, thresholds) for a in assessed
    )
    return Advice(
        model=model,
        target=target.name,
        clock_hz=rates.clock_hz,
        network_cycles=int(report_metric(report, "cycles_total")),
        network_utilisation_pct=in_network(report, None, rates.macs_per_cycle).mac_utilisation_pct,
        thresholds=thresholds,
        blocks=blocks,
        skipped=tuple(skipped),
        figures=rates.figures,
        utilisation_flags=rates.flags_by_utilisation,
    )


def with_context(advice: Advice, savings: dict[str, int]) -> Advice:
    """`advice` with in-context savings: a recommendation stays only if its measured
    saving still passes the gain rule (positive, at least `min_gain_pct` of the block)."""
    blocks = []
    for b in advice.blocks:
        saving = savings.get(b.site.path)
        if saving is not None:
            need = b.network.cycles * advice.thresholds.min_gain_pct / 100
            passes = saving > 0 and saving >= need
            b = replace(b, context_gain_cycles=saving, best=b.best if passes else None)
        blocks.append(b)
    return replace(advice, blocks=tuple(blocks))
