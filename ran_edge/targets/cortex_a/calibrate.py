"""Fit a CPU profile's [cpu_model] parameters to measured latencies, and write them as TOML.

The fit minimises the squared log error of the estimator against measured medians (so a
10 µs op and a 10 ms model count alike), with a weak pull towards the starting values so
parameters the data cannot see stay put instead of drifting. `ran-edge calibrate-target`
times the built-in micro-benchmarks (ran_edge/targets/cortex_a/microbench.py) on this machine and fits;
benchmarks/cpu_estimator.py fits on one set of models and predicts another.
"""

from __future__ import annotations

import math
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np

from ran_edge.atomic import write_atomic
from ran_edge.convert.tflite_ops import OpCost
from ran_edge.errors import UsageError
from ran_edge.progress import SILENT, BuildProgress
from ran_edge.targets.cortex_a.estimate import estimate_ops
from ran_edge.targets.cortex_a.measure import cpu_model_name, measure_bytes
from ran_edge.targets.cortex_a.spec import CpuModelParams, CpuSpec
from ran_edge.targets.loading import Target, resolve_target

# Parameters a calibration fits; the rest (the reference clock) are facts, not fitted.
FITTED = tuple(n for n in CpuModelParams.names() if n != "reference_clock_hz")
PRIOR_WEIGHT = 0.05


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
    if "parallel_efficiency" in values:
        values["parallel_efficiency"] = min(values["parallel_efficiency"], 1.0)
    return replace(params, **values)


def fit(
    samples: Sequence[Sample],
    spec: CpuSpec,
    start: CpuModelParams,
    names: Sequence[str] = FITTED,
    prior_weight: float = PRIOR_WEIGHT,
) -> CpuModelParams:
    """Parameters `names` fitted to `samples` (log-error least squares), others kept from `start`."""
    from scipy.optimize import least_squares

    x0 = np.array([math.log(getattr(start, n)) for n in names])
    measured = np.log([s.measured_ms for s in samples])
    lower = x0 - math.log(1e4)
    upper = x0 + math.log(1e4)
    if "parallel_efficiency" in names:
        upper[list(names).index("parallel_efficiency")] = 0.0  # efficiency <= 1

    def residuals(x: np.ndarray) -> np.ndarray:
        params = _with(start, names, x)
        predicted = np.log([predict(s, spec, params) for s in samples])
        return np.concatenate([predicted - measured, prior_weight * (x - x0)])

    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    result = least_squares(residuals, x0, bounds=(lower, upper), method="trf", x_scale=1.0)
    return _with(start, names, result.x)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(a) > 2 else float("nan")


def stats(samples: Sequence[Sample], spec: CpuSpec, params: CpuModelParams) -> FitStats:
    predicted = [predict(s, spec, params) for s in samples]
    measured = [s.measured_ms for s in samples]
    errors = [abs(p - m) / m * 100 for p, m in zip(predicted, measured, strict=True)]
    return FitStats(len(samples), float(np.median(errors)), spearman(predicted, measured))


def measure_samples(
    models: Sequence[tuple[str, bytes, tuple[OpCost, ...]]],
    threads_list: Sequence[int],
    on_model: Callable[[int, int], None] | None = None,
    rounds: int = 3,
    min_seconds: float = 0.05,
) -> list[Sample]:
    """Median over `rounds` passes through all models at every thread count (in this process).

    Passes rather than one long run per model: on a shared machine, load comes and goes, and
    interleaving spreads it over all models instead of landing on a few.
    """
    timings: dict[tuple[int, int], list[float]] = {}
    total = rounds * len(models)
    for r in range(rounds):
        for i, (_name, data, _costs) in enumerate(models):
            if on_model is not None:
                on_model(r * len(models) + i, total)
            for threads in threads_list:
                ms = time_model(data, threads, min_seconds=min_seconds)
                timings.setdefault((i, threads), []).append(ms)
    return [
        Sample(name, costs, threads, float(np.median(timings[(i, threads)])))
        for i, (name, _data, costs) in enumerate(models)
        for threads in threads_list
    ]


def _toml_value(value: float) -> str:
    return f"{value:.6g}" if not float(value).is_integer() or abs(value) < 1e6 else f"{value:.0f}"


def cpu_model_table(
    params: CpuModelParams,
    source: str,
    fit_stats: FitStats | None,
    *,
    reference_clock: bool = True,
) -> str:
    """A [cpu_model] TOML table for `params`, saying where they came from.

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
    return "\n".join(lines) + "\n"


_TABLE = re.compile(r"(?ms)^\[cpu_model\]\n.*?(?=^\[|\Z)")


def with_cpu_model(profile_text: str, table: str) -> str:
    """The profile's TOML text with its [cpu_model] table replaced (comments elsewhere kept)."""
    if _TABLE.search(profile_text):
        return _TABLE.sub(lambda _: table + "\n", profile_text, count=1).rstrip("\n") + "\n"
    return profile_text.rstrip("\n") + "\n\n" + table


def calibration_source(where: str) -> str:
    return f"ran-edge calibrate-target on {where}, {date.today().isoformat()}"


@dataclass(frozen=True)
class Calibration:
    """What `calibrate-target` found: the fitted parameters, how well they fit, the timings."""

    params: CpuModelParams
    fit: FitStats
    samples: tuple[Sample, ...]
    threads: tuple[int, ...]


def calibrate_target(
    spec: CpuSpec,
    start: CpuModelParams,
    *,
    quick: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Build the micro-benchmarks, time them here at 1 and all threads, fit the parameters.

    `progress(done, total)` counts built models, then timed passes over models."""
    from ran_edge.convert.tflite_ops import read_op_costs
    from ran_edge.quiet import captured_output
    from ran_edge.targets.cortex_a.microbench import build_bench, select

    benches = select(quick)
    rounds = 2 if quick else 3
    total = len(benches) * (1 + rounds)
    models = []
    for i, bench in enumerate(benches):
        if progress is not None:
            progress(i, total)
        with captured_output():
            data = build_bench(bench)
        models.append((bench.name, data, tuple(read_op_costs(data))))
    threads = tuple(sorted({1, spec.default_threads}))

    def on_model(done: int, _passes_total: int) -> None:
        if progress is not None:
            progress(len(benches) + done, total)

    samples = measure_samples(models, threads, on_model, rounds=rounds, min_seconds=0.05)
    if progress is not None:
        progress(total, total)
    params = fit(samples, spec, start)
    return Calibration(params, stats(samples, spec, params), tuple(samples), threads)


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
            "timings": [
                {"model": s.name, "threads": s.threads, "measured_ms": s.measured_ms}
                for s in result.samples
            ],
            "seconds": self.seconds,
        }


def calibrate_profile(
    target_name: str, out: Path | None, *, quick: bool = False, progress: BuildProgress = SILENT
) -> CalibratedProfile:
    """The `calibrate-target` command: fit the CPU profile `target_name` to this machine and
    write it, comments kept, with its [cpu_model] replaced (default: ./<name>.calibrated.toml)."""
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
    with progress.measure("build + time micro-benchmarks") as update:
        result = calibrate_target(target.cpu, target.cpu_model.params, quick=quick, progress=update)
    where = f"{_machine_label()} ({target.cpu.cores} cores)"
    table_text = cpu_model_table(
        result.params,
        calibration_source(where),
        result.fit,
        reference_clock=target.cpu.clock_hz is None,
    )
    write_atomic(path, with_cpu_model(target.source.read_text(), table_text).encode())
    return CalibratedProfile(target, path, result, time.perf_counter() - start)


def _machine_label() -> str:
    return f"{platform.node()}, {cpu_model_name()}"
