"""Fit a CPU profile's [cpu_model] parameters to measured latencies, and write them as TOML.

The fit minimises the squared log error of the estimator against measured medians (so a
10 µs op and a 10 ms model count alike), with a weak pull towards the starting values so
parameters the data cannot see stay put instead of drifting. `ran-edge calibrate-target`
times the built-in micro-benchmarks and random op stacks (ran_edge/targets/cortex_a/
microbench.py) on this machine, or on a board over SSH, and fits. Its uncertainty band comes
from stacks the fit did not see: two folds, each half of the stacks held out in turn.
benchmarks/cpu_estimator.py fits the same way and predicts networks of other families.
"""

from __future__ import annotations

import json
import math
import platform
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from functools import partial
from pathlib import Path

import numpy as np

from ran_edge.atomic import write_atomic
from ran_edge.convert.tflite_ops import OpCost
from ran_edge.errors import UsageError
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.targets.cortex_a.estimate import estimate_ops
from ran_edge.targets.cortex_a.measure import cpu_model_name, measure_bytes
from ran_edge.targets.cortex_a.remote import RemoteHost
from ran_edge.targets.cortex_a.spec import SHARES, CpuModelParams, CpuSpec, UncertaintyBand
from ran_edge.targets.loading import Target, resolve_target

# A conv GEMM's tile of output channels is a step, not a slope, so the fit tries each width
# and keeps the best: XNNPACK's int8 kernels use 8 or 16 on NEON, 16 on AVX, 64 on x86 AMX;
# then, at that width, each tile of output pixels (rows): 4-8 on NEON, 16 on AMX; whether
# convs on up to 4 output pixels run a pixel-at-a-time kernel (x86 AMX builds); and the step
# in which a tap's input channels are reduced (x86 AMX: 64 bytes; NEON dot products: 4-8).
CONV_TILES = (1, 8, 16, 32, 64)
CONV_ROW_TILES = (1, 4, 8, 16)
CONV_DEPTH_TILES = (1, 8, 32, 64)
CONV_ROWWISE_MAX_M = (0, 4)
STEP_VALUES: dict[str, tuple[float, ...]] = {
    "conv_tile_n": CONV_TILES,
    "conv_tile_m": CONV_ROW_TILES,
    "conv_rowwise_max_m": CONV_ROWWISE_MAX_M,
    "conv_tile_k": CONV_DEPTH_TILES,
}
STEPS = tuple(STEP_VALUES)
RESCALING = ("conv_tile_n", "conv_tile_k")  # steps that rescale every conv term
# Parameters a calibration fits by least squares; the steps are tried, the reference clock is
# a fact.
FITTED = tuple(n for n in CpuModelParams.names() if n not in ("reference_clock_hz", *STEPS))
PRIOR_WEIGHT = 0.05
# Terms off by default (0 cycles) start from these when fitted: log-space needs a positive
# start, and one within the fit's bounds (x1e4) of where the term lands on a CPU.
SWITCHED_ON_START = {"handoff_cycles_per_byte": 0.1, "partition_wake_cycles": 10000.0}
SWITCHED_ON_DEFAULT_START = 1.0
BAND_COVERAGE = 0.9
# Timing passes over the whole set, each run at least MIN_SECONDS per model and thread count.
# A shared or virtual machine changes speed in phases of seconds (by 40% on the development
# VM); many short passes make it likely every model lands in a quick phase at least once.
ROUNDS, QUICK_ROUNDS, MIN_SECONDS = 6, 3, 0.02


@dataclass(frozen=True)
class Sample:
    """One model timed at one thread count."""

    name: str
    costs: tuple[OpCost, ...]
    threads: int
    measured_ms: float


@dataclass(frozen=True)
class FitStats:
    samples: int
    median_abs_pct_error: float
    spearman: float


def time_model(model: bytes, threads: int, *, min_seconds: float = 0.15, runs: int = 5) -> float:
    """Median latency (ms) of `model` here, in this process: at least `runs` and `min_seconds`."""
    result = measure_bytes(model, "bench", threads, runs, warmup=3, min_seconds=min_seconds)
    return float(result["latency_ms"]["median"])


def predict(sample: Sample, spec: CpuSpec, params: CpuModelParams) -> float:
    return estimate_ops(list(sample.costs), spec, params, sample.threads).latency_ms


def _with(params: CpuModelParams, names: Sequence[str], log_values: np.ndarray) -> CpuModelParams:
    values = {n: float(math.exp(v)) for n, v in zip(names, log_values, strict=True)}
    for share in SHARES:
        if share in values:
            values[share] = min(values[share], 1.0)
    return replace(params, **values)


def is_stack(name: str) -> bool:
    return name.startswith("stack")


def group_weights(samples: Sequence[Sample]) -> np.ndarray:
    """Weights that give the single-op models and the stacks equal say in a fit.

    Ops alone pin each rate; whole networks pin how ops add up. Counted one by one, the many
    single ops would drown the stacks, and the fit would predict ops alone, not networks."""
    stacks = np.array([is_stack(s.name) for s in samples])
    n_stacks, n_ops = int(stacks.sum()), int((~stacks).sum())
    if not n_stacks or not n_ops:
        return np.ones(len(samples))
    return np.where(stacks, 0.5 * len(samples) / n_stacks, 0.5 * len(samples) / n_ops)


def fit(
    samples: Sequence[Sample],
    spec: CpuSpec,
    start: CpuModelParams,
    names: Sequence[str] = FITTED,
    prior_weight: float = PRIOR_WEIGHT,
    steps: Mapping[str, Sequence[float]] = STEP_VALUES,
) -> CpuModelParams:
    """Parameters `names` fitted to `samples` (log-error least squares, single ops and stacks
    weighted alike), others kept from `start`; then, step by step in STEPS order, once per
    value `steps` lists for it, keeping the best fit (a step `steps` leaves out keeps start's
    value)."""
    best = _fit_once(samples, spec, start, names, prior_weight)
    for field in STEPS:
        base = best[0]
        for step in steps.get(field, ()):
            if float(step) == getattr(base, field):
                continue
            tried = replace(start, **{field: float(step)}, **_steps(base, but=field))
            # a tile width rescales every conv term: from the start; a finer step, from the
            # best fit so far (from the start, the fit falls into a worse minimum)
            init = None if field in RESCALING else replace(base, **_steps(tried))
            if field == "conv_rowwise_max_m":  # from a pixel costing a whole tile of rows
                init = replace(init, conv_rowwise_rows=tried.conv_tile_m)
            candidate = _fit_once(samples, spec, tried, names, prior_weight, init)
            best = min(best, candidate, key=lambda f: f[1])
    return best[0]


def _steps(params: CpuModelParams, but: str = "") -> dict[str, float]:
    return {f: getattr(params, f) for f in STEPS if f != but}


def _fit_once(
    samples: Sequence[Sample],
    spec: CpuSpec,
    start: CpuModelParams,
    names: Sequence[str],
    prior_weight: float,
    init: CpuModelParams | None = None,
) -> tuple[CpuModelParams, float]:
    """One least-squares fit from `init` (default: `start`), pulled weakly towards `start`:
    the parameters and the cost they reach."""
    from scipy.optimize import least_squares

    start = replace(
        start,
        **{
            n: SWITCHED_ON_START.get(n, SWITCHED_ON_DEFAULT_START)
            for n in names
            if getattr(start, n) <= 0
        },
    )
    x0 = np.array([math.log(getattr(start, n)) for n in names])
    measured = np.log([s.measured_ms for s in samples])
    root_weights = np.sqrt(group_weights(samples))
    lower = x0 - math.log(1e4)
    upper = x0 + math.log(1e4)
    for share in SHARES:
        if share in names:
            upper[list(names).index(share)] = 0.0  # a share is at most 1

    def residuals(x: np.ndarray) -> np.ndarray:
        params = _with(start, names, x)
        predicted = np.log([predict(s, spec, params) for s in samples])
        return np.concatenate([root_weights * (predicted - measured), prior_weight * (x - x0)])

    first = x0 if init is None else np.array([math.log(getattr(init, n)) for n in names])
    first = np.clip(first, lower + 1e-9, upper - 1e-9)
    result = least_squares(residuals, first, bounds=(lower, upper), method="trf", x_scale=1.0)
    return _with(start, names, result.x), float(result.cost)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def stats(samples: Sequence[Sample], spec: CpuSpec, params: CpuModelParams) -> FitStats:
    predicted = [predict(s, spec, params) for s in samples]
    measured = [s.measured_ms for s in samples]
    errors = [abs(p - m) / m * 100 for p, m in zip(predicted, measured, strict=True)]
    return FitStats(len(samples), float(np.median(errors)), spearman(predicted, measured))


# Times models at thread counts in one fresh measure.py process, the least of interleaved
# passes' medians (load only adds time): batch_timing.measure_samples_here, or
# measure_samples_remote on a board.
Timer = Callable[..., list[Sample]]


def _toml_value(value: float) -> str:
    return f"{value:.6g}" if not float(value).is_integer() or abs(value) < 1e6 else f"{value:.0f}"


def cpu_model_table(
    params: CpuModelParams,
    source: str,
    fit_stats: FitStats | None,
    *,
    reference_clock: bool = True,
    band: UncertaintyBand | None = None,
) -> str:
    """A [cpu_model] TOML table for `params`, saying where they came from, with its band.

    `reference_clock` False drops reference_clock_hz (a profile with a clock_hz ignores it)."""
    lines = ["[cpu_model]"]
    lines.append(f"source = {source!r}".replace("'", '"'))
    lines.append("fitted = true")
    if fit_stats is not None:
        lines.append(
            f"# fit: {fit_stats.samples} timings, median abs error "
            f"{fit_stats.median_abs_pct_error:.1f}%, Spearman {fit_stats.spearman:.3f}"
        )
    for name, value in asdict(params).items():
        if name == "reference_clock_hz" and not reference_clock:
            continue
        lines.append(f"{name} = {_toml_value(value)}")
    if band is not None:
        lines.append(
            f"# uncertainty band: measured / estimated lies in [band_low, band_high] for "
            f"{band.coverage:.0%} of networks the fit did not see"
        )
        lines.append(f"band_low = {_toml_value(band.low)}")
        lines.append(f"band_high = {_toml_value(band.high)}")
        lines.append(f"band_coverage = {band.coverage:g}")
        lines.append(f"band_samples = {band.samples}")
        lines.append(f"band_source = {json.dumps(band.source)}")
    return "\n".join(lines) + "\n"


_TABLE = re.compile(r"(?ms)^\[cpu_model\]\n.*?(?=^\[|\Z)")


def with_cpu_model(profile_text: str, table: str) -> str:
    """The profile's TOML text with its [cpu_model] table replaced (comments elsewhere kept)."""
    if _TABLE.search(profile_text):
        return _TABLE.sub(lambda _: table + "\n", profile_text, count=1).rstrip("\n") + "\n"
    return profile_text.rstrip("\n") + "\n\n" + table


def calibration_source(where: str) -> str:
    return f"ran-edge calibrate-target on {where}, {date.today().isoformat()}"


def band_from_ratios(
    ratios: Sequence[float], source: str, coverage: float = BAND_COVERAGE
) -> UncertaintyBand:
    """A log-normal prediction interval for measured / estimated, from held-out ratios.

    mean +- t(n-1) * sd * sqrt(1 + 1/n) in log space: the interval a new network's ratio falls
    in with probability `coverage`, honest about the few timings it rests on."""
    from scipy.stats import t as student_t

    logs = np.log(np.asarray(ratios, dtype=float))
    n = len(logs)
    if n < 3:
        raise UsageError(f"an uncertainty band needs at least 3 held-out timings, got {n}.")
    half = student_t.ppf((1 + coverage) / 2, n - 1) * logs.std(ddof=1) * math.sqrt(1 + 1 / n)
    mean = float(logs.mean())
    return UncertaintyBand(
        round(math.exp(mean - half), 4), round(math.exp(mean + half), 4), coverage, n, source
    )


def with_tile(start: CpuModelParams, fitted: CpuModelParams) -> CpuModelParams:
    """`start` with the conv tiles a full fit chose: held-out folds keep them, not search them."""
    return replace(start, **_steps(fitted))


def held_out_ratios(
    samples: Sequence[Sample],
    spec: CpuSpec,
    start: CpuModelParams,
    is_check: Callable[[str], bool],
    folds: int = 2,
) -> list[float]:
    """measured / estimated for every `is_check` sample, each predicted by a fit without it.

    The check models are split into `folds` by name; each fold is predicted by parameters fitted
    on every other sample, so no ratio comes from a model its parameters have seen."""
    names = sorted({s.name for s in samples if is_check(s.name)})
    ratios = []
    for fold in range(folds):
        held = set(names[fold::folds])
        params = fit([s for s in samples if s.name not in held], spec, start, steps={})
        ratios += [s.measured_ms / predict(s, spec, params) for s in samples if s.name in held]
    return ratios


@dataclass(frozen=True)
class Calibration:
    """What `calibrate-target` found: the fitted parameters, how well they fit, the timings,
    and the band its held-out stacks give."""

    params: CpuModelParams
    fit: FitStats
    samples: tuple[Sample, ...]
    threads: tuple[int, ...]
    band: UncertaintyBand


def build_calibration_models(
    quick: bool, progress: Callable[[int, int], None] | None = None, total: int | None = None
) -> list[tuple[str, bytes, tuple[OpCost, ...]]]:
    """The micro-benchmarks and random stacks, built to int8 (names, bytes, op costs)."""
    from ran_edge.convert.tflite_ops import read_op_costs
    from ran_edge.quiet import captured_output
    from ran_edge.targets.cortex_a.microbench import build_bench, build_stack, select, stacks

    builds = [(b.name, partial(build_bench, b)) for b in select(quick)]
    builds += [(s.name, partial(build_stack, s)) for s in stacks(quick)]
    models = []
    for i, (name, build) in enumerate(builds):
        if progress is not None:
            progress(i, total or len(builds))
        with captured_output():
            data = build()
        models.append((name, data, tuple(read_op_costs(data))))
    return models


def calibrate_target(
    spec: CpuSpec,
    start: CpuModelParams,
    *,
    quick: bool = False,
    progress: Callable[[int, int], None] | None = None,
    timer: Timer | None = None,
    where: str = "this machine",
) -> Calibration:
    """Build the micro-benchmarks and stacks, time them at 1 and all threads, fit, and derive
    the uncertainty band from the stacks each fold held out.

    `progress(done, total)` counts built models, then timed passes over models."""
    from ran_edge.targets.cortex_a.microbench import select, stacks

    n_models = len(select(quick)) + len(stacks(quick))
    rounds = QUICK_ROUNDS if quick else ROUNDS
    total = n_models * (1 + rounds)
    models = build_calibration_models(quick, progress, total)
    threads = tuple(sorted({1, spec.default_threads}))

    def on_model(done: int, _passes_total: int) -> None:
        if progress is not None:
            progress(n_models + done, total)

    if timer is None:
        from ran_edge.targets.cortex_a.batch_timing import measure_samples_here

        timer = measure_samples_here
    samples = timer(models, threads, on_model, rounds=rounds, min_seconds=MIN_SECONDS)
    if progress is not None:
        progress(total, total)
    params = fit(samples, spec, start)
    ratios = held_out_ratios(samples, spec, with_tile(start, params), is_stack)
    band = band_from_ratios(
        ratios,
        f"calibrate-target on {where}: {len(ratios)} timings of random stacks, "
        "each predicted by a fit that held it out",
    )
    return Calibration(params, stats(samples, spec, params), tuple(samples), threads, band)


@dataclass(frozen=True)
class CalibratedProfile:
    """`calibrate-target`'s outcome: the target, the profile file written, the fit."""

    target: Target
    path: Path
    calibration: Calibration
    seconds: float

    def to_json(self) -> dict:
        result = self.calibration
        return {
            "target": self.target.name,
            "out": str(self.path),
            "threads": list(result.threads),
            "fit": vars(result.fit),
            "params": vars(result.params),
            "band": vars(result.band),
            "timings": [
                {"model": s.name, "threads": s.threads, "measured_ms": s.measured_ms}
                for s in result.samples
            ],
            "seconds": self.seconds,
        }


def calibrate_profile(
    target_name: str,
    out: Path | None,
    *,
    quick: bool = False,
    progress: BuildProgress = SILENT,
    remote: RemoteHost | None = None,
) -> CalibratedProfile:
    """The `calibrate-target` command: fit the CPU profile `target_name` to this machine (or to
    the board at `remote`, timed over SSH) and write it, comments kept, with its [cpu_model]
    replaced (default: ./<name>.calibrated.toml)."""
    target = resolve_target(target_name)
    if not target.is_cpu:
        raise UsageError(
            f"{target.name} is an {target.kind} target: its figures come from Vela, not from "
            "a fitted model. calibrate-target fits CPU (cortex-a) profiles such as host or rpi4."
        )
    path = out or Path(f"{target.name}.calibrated.toml")
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a .toml file path.")
    start = time.perf_counter()
    timer = None
    if remote is not None:
        from ran_edge.targets.cortex_a.batch_timing import measure_samples_remote

        timer = partial(measure_samples_remote, remote)
    where = remote.label if remote is not None else _machine_label()
    where = f"{where} ({target.cpu.cores} cores)"
    with progress.measure("build + time micro-benchmarks and stacks") as update:
        result = calibrate_target(
            target.cpu,
            target.cpu_model.params,
            quick=quick,
            progress=update,
            timer=timer,
            where=where,
        )
    table_text = cpu_model_table(
        result.params,
        calibration_source(where),
        result.fit,
        reference_clock=target.cpu.clock_hz is None,
        band=result.band,
    )
    write_atomic(path, with_cpu_model(target.source.read_text(), table_text).encode())
    return CalibratedProfile(target, path, result, time.perf_counter() - start)


def _machine_label() -> str:
    return f"{platform.node()}, {cpu_model_name()}"
