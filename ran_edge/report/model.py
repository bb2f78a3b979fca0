"""The typed, read-only `Report`: the one way every reader gets at a report.json.

`Report.from_dict` checks a report against the published schema (`report.schema.json`) at the
boundary and turns it into frozen dataclasses; `load_report` does the same for a file, with
an error that says what is wrong and how to fix it. Everything past the boundary reads
attributes (`report.target.clock_hz`, `report.metric("latency")`), never string keys; the
original JSON stays in `Report.raw` and `to_dict()` hands it back unchanged, so what is
written or printed is exactly what was validated.

Import-light: the standard library only (jsonschema is imported when validating).
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ran_edge.errors import UsageError
from ran_edge.report.traffic import AreaTraffic, MemoryTraffic, areas_from_json

SCHEMA_ID = "ran-edge/report"
SCHEMA_VERSION = "1.6"
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")
REPORT_FILE = "report.json"
READS_MAJOR = 1
REBUILD = "rebuild it with `ran-edge build` or `ran-edge profile`"

Number = float | int


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricValue:
    """One figure with its unit and origin, or (`value` None) why it cannot be given.

    The writers build these (`ran_edge.report.metrics.Metric` is this class) and the readers
    get them back from `Report.metric`: an unavailable figure is a MetricValue with `value`
    None and its `reason`, never an exception and never 0.

    An estimated figure may carry an uncertainty band (1.5): `interval` (low, high), in the
    figure's unit, holds the true value for `coverage` (e.g. 0.9) of the networks the
    estimator was checked on (docs/cpu-targets.md, "Uncertainty band")."""

    name: str
    unit: str
    value: Number | None = None
    source: str | None = "vela"  # vela, litert, ran-edge, measured, estimated; None: unavailable
    reason: str = ""  # why the figure is unavailable
    interval: tuple[float, float] | None = None  # 1.5: (low, high) in `unit`
    coverage: float | None = None  # 1.5: the share of held-out networks `interval` holds

    def __post_init__(self) -> None:
        if (self.interval is None) != (self.coverage is None):
            raise ValueError(
                f"metric {self.name}: an interval needs its coverage, and coverage an interval"
            )
        if self.interval is not None:
            object.__setattr__(self, "interval", tuple(self.interval))

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_json(self) -> dict:
        value = self.value
        reason = self.reason
        if isinstance(value, float) and math.isnan(value):
            value, reason = None, reason or "the figure is not a number (NaN)"
        if value is None:
            return {
                "name": self.name,
                "unit": self.unit,
                "availability": "unavailable",
                "reason": reason,
            }
        if isinstance(value, float) and math.isinf(value):
            value = "inf" if value > 0 else "-inf"
        out = {"name": self.name, "value": value, "unit": self.unit, "source": self.source}
        if self.interval is not None and all(math.isfinite(x) for x in self.interval):
            low, high = self.interval
            out["interval"] = {"low": low, "high": high, "coverage": self.coverage}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricValue:
        name, unit = data["name"], data.get("unit", "")
        if data.get("availability") == "unavailable" or data.get("value") is None:
            return cls(name, unit, None, None, data.get("reason") or "unavailable")
        value = data["value"]
        if isinstance(value, str):  # "inf" / "-inf", as to_json writes infinities
            try:
                value = float(value)
            except ValueError:
                return cls(name, unit, None, None, f"not a number: {value!r}")
        band = data.get("interval")  # 1.5; absent in older reports and on exact figures
        if band is None:
            return cls(name, unit, value, data.get("source"))
        return cls(
            name,
            unit,
            value,
            data.get("source"),
            interval=(band["low"], band["high"]),
            coverage=band["coverage"],
        )


def find_metric(metrics: Iterable[MetricValue], name: str) -> MetricValue | None:
    """The metric called `name` (None when the list has none): the only finder there is."""
    return next((m for m in metrics if m.name == name), None)


def _metrics(rows: Iterable[Mapping]) -> tuple[MetricValue, ...]:
    return tuple(MetricValue.from_json(m) for m in rows)


# ---------------------------------------------------------------- sections


def _record(cls, d: Mapping, **given: Any):
    """`cls` read from one JSON object, field by field: a field without a default is
    required, one with a default may be absent (older reports); `given` supplies the fields
    whose JSON needs converting or has another name."""
    values = {}
    for f in fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
        elif f.default is MISSING and f.default_factory is MISSING or f.name in d:
            values[f.name] = d[f.name]
    return cls(**values)


@dataclass(frozen=True)
class ModelFacts:
    """What we know of the model before any target: identity, shape, size."""

    name: str
    source: str  # zoo:..., file:...:factory, pt2:..., or the .tflite profiled
    input_shape: tuple[int, ...]
    params: int | None
    macs: int | None  # PyTorch MAC count (None for profile)
    weights: str  # where the weights came from: figures from random weights differ a little

    @property
    def random_weights(self) -> bool:
        return self.weights.startswith("random")

    @classmethod
    def from_json(cls, d: Mapping) -> ModelFacts:
        return cls(
            name=d["name"],
            source=d.get("source", ""),
            input_shape=tuple(d.get("input_shape", ())),
            params=d.get("params"),
            macs=d.get("macs"),
            weights=d.get("weights", ""),
        )


@dataclass(frozen=True)
class CalibrationFacts:
    name: str
    description: str
    samples: int
    holdout: int
    method: str | None = None  # 1.3: minmax, percentile or mse

    @classmethod
    def from_json(cls, d: Mapping | None) -> CalibrationFacts | None:
        if d is None:
            return None
        return _record(cls, d)


@dataclass(frozen=True)
class TensorFacts:
    """An I/O tensor of the int8 model (shape NHWC)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def from_json(cls, d: Mapping) -> TensorFacts:
        return _record(cls, d, shape=tuple(d["shape"]))


@dataclass(frozen=True)
class Rewrite:
    """A converter rewrite applied to the network (1.3)."""

    rewrite: str
    module: str  # "" for the top level
    detail: str = ""


@dataclass(frozen=True)
class Quantization:
    """How the model was quantized (1.3); None in a report of `profile`."""

    method: str
    int16_activations: tuple[str, ...]  # PyTorch modules whose ops got int16 activations
    int16_tensors: int | None
    rewrites: tuple[Rewrite, ...]
    mixed_precision: Mapping[str, Any] | None  # --auto-mixed-precision's steps, as written

    @classmethod
    def from_json(cls, d: Mapping | None) -> Quantization | None:
        if not d:
            return None
        rewrites = tuple(
            Rewrite(r.get("rewrite", ""), r.get("module", ""), r.get("detail", ""))
            for r in d.get("rewrites", ())
        )
        return cls(
            method=d["method"],
            int16_activations=tuple(d.get("int16_activations", ())),
            int16_tensors=d.get("int16_tensors"),
            rewrites=rewrites,
            mixed_precision=d.get("mixed_precision"),
        )


@dataclass(frozen=True)
class Conversion:
    inputs: tuple[TensorFacts, ...] = ()
    outputs: tuple[TensorFacts, ...] = ()
    int8_io: bool = True
    op_counts: Mapping[str, int] = field(default_factory=dict)  # TFLite op type -> count
    gate_passed: bool = True  # fully int8 and NPU-mapped
    gate_problems: tuple[str, ...] = ()  # every reason it is not
    quantization: Quantization | None = None

    @classmethod
    def from_json(cls, d: Mapping) -> Conversion:
        gate = d.get("gate") or {"passed": True, "problems": []}
        return cls(
            inputs=tuple(TensorFacts.from_json(t) for t in d.get("inputs", ())),
            outputs=tuple(TensorFacts.from_json(t) for t in d.get("outputs", ())),
            int8_io=bool(d.get("int8_io", True)),
            op_counts=dict(d.get("op_counts", {})),
            gate_passed=bool(gate["passed"]),
            gate_problems=tuple(gate["problems"]),
            quantization=Quantization.from_json(d.get("quantization")),
        )


@dataclass(frozen=True)
class FidelityFacts:
    """int8 against float on held-out samples (`samples` 0: not measured, each metric says why)."""

    samples: int = 0
    metrics: tuple[MetricValue, ...] = ()

    def metric(self, name: str) -> MetricValue | None:
        return find_metric(self.metrics, name)

    def value(self, name: str) -> Number | None:
        m = self.metric(name)
        return None if m is None else m.value

    @classmethod
    def from_json(cls, d: Mapping | None) -> FidelityFacts:
        if not d:
            return cls()
        return cls(int(d.get("samples", 0)), _metrics(d.get("metrics", ())))


@dataclass(frozen=True)
class TflmFacts:
    """The int8 model in TFLM against LiteRT's reference kernels (1.1); None for profile."""

    samples: int
    bit_exact: bool
    mismatched_samples: int
    max_abs_diff: int  # LSB
    arena_total_bytes: int
    arena_persistent_bytes: int  # TFLM's per-model overhead: sizes the firmware arena margin
    error: str | None = None  # TFLM could not prepare the model
    first_mismatch: str | None = None  # the earliest op whose output differs
    passed: bool | None = None  # 1.3: bit-exact, or 1-LSB rounding differences only

    @classmethod
    def from_json(cls, d: Mapping | None) -> TflmFacts | None:
        if d is None:
            return None
        return _record(cls, d)


@dataclass(frozen=True)
class SensitivityRow:
    index: int
    op_type: str
    tensor: str
    module: str
    dtype: str  # int8 or int16 activations
    sqnr_db: float  # cumulative: carries the inputs' error
    exact: bool
    drop_db: float | None = None  # what this op adds


@dataclass(frozen=True)
class Sensitivity:
    """Per-op SQNR of the quantized model against float (1.3)."""

    samples: int
    cap_db: float
    rows: tuple[SensitivityRow, ...]

    def worst(self, count: int) -> tuple[SensitivityRow, ...]:
        """The ops furthest from float, worst first."""
        return tuple(sorted(self.rows, key=lambda r: (r.sqnr_db, r.index))[:count])

    @classmethod
    def from_json(cls, d: Mapping | None) -> Sensitivity | None:
        if not d:
            return None
        rows = tuple(_record(SensitivityRow, r) for r in d.get("rows", ()))
        return cls(int(d["samples"]), float(d["cap_db"]), rows)


@dataclass(frozen=True)
class HostCpu:
    """The Cortex-M that runs an Ethos-U target's CPU-fallback ops (1.2)."""

    core: str
    clock_hz: float  # Hz
    clock_assumed: bool
    cycle_costs: str  # file name of its cycle-cost table

    @classmethod
    def from_json(cls, d: Mapping | None) -> HostCpu | None:
        if not d:
            return None
        return _record(cls, d)


@dataclass(frozen=True)
class TargetFacts:
    """The target as the report was made for it. Fields of the other kind are None."""

    name: str
    kind: str  # "ethos-u" or "cortex-a"
    description: str = ""
    profile_path: str | None = None  # 1.4: the profile TOML (None in older reports)
    profile_sha256: str | None = None  # 1.4
    clock_hz: float | None = None  # Hz; None: no fixed clock (cortex-a host)
    # ethos-u
    accelerator: str | None = None
    macs_per_cycle: int | None = None
    system_config: str | None = None
    memory_mode: str | None = None
    optimise: str | None = None
    arena_cache_size_bytes: int | None = None
    host_cpu: HostCpu | None = None
    # cortex-a
    core: str | None = None
    cores: int | None = None
    simd: tuple[str, ...] = ()
    threads: int | None = None
    l1d_bytes: int | None = None
    l2_bytes: int | None = None
    l3_bytes: int | None = None
    memory: str | None = None
    memory_bandwidth_bytes_per_s: float | None = None

    @property
    def is_cpu(self) -> bool:
        return self.kind == "cortex-a"

    @property
    def sram_only(self) -> bool:
        return self.memory_mode == "Sram_Only"

    @classmethod
    def from_json(cls, d: Mapping) -> TargetFacts:
        return _record(
            cls,
            d,
            arena_cache_size_bytes=d.get("arena_cache_size"),
            host_cpu=HostCpu.from_json(d.get("host_cpu")),
            simd=tuple(d.get("simd") or ()),
        )


@dataclass(frozen=True)
class CpuFallback:
    """An op Vela left on the CPU, Vela's reason, and (1.2-1.3) where from, the fix, its cost."""

    op_type: str
    name: str  # its output tensor
    reason: str
    module: str | None = None
    fix: str | None = None
    host_cycles: int | None = None
    host_time_ms: float | None = None

    @classmethod
    def from_json(cls, d: Mapping) -> CpuFallback:
        return _record(cls, d)


@dataclass(frozen=True)
class LayerRow:
    """One op in network order: Vela's row (ethos-u) or the estimator's (cortex-a)."""

    index: int
    op: str
    npu_op: str
    placement: str  # "NPU" or "CPU"
    cycles: int  # with memory-access stalls
    npu_cycles: int  # compute only
    macs: int
    mac_utilisation_pct: float
    memory_bound: bool
    sram_bytes: int
    module: str
    name: str
    time_us: float | None = None  # cortex-a
    op_class: str | None = None  # cortex-a
    kernel: str | None = None  # cortex-a: xnnpack or reference
    bytes: int | None = None  # cortex-a
    bound_by: str | None = None  # 1.6, ethos-u: the memory area a memory-bound op waits on
    memory: tuple[AreaTraffic, ...] = ()  # 1.6, ethos-u: per area it touches

    def area(self, name: str) -> AreaTraffic | None:
        """The op's traffic in memory area `name`; None when it moved nothing there."""
        return next((a for a in self.memory if a.area == name), None)

    @classmethod
    def from_json(cls, d: Mapping) -> LayerRow:
        return _record(cls, d, memory=areas_from_json(d.get("memory")))


@dataclass(frozen=True)
class ModuleRow:
    """Cycles of one PyTorch module (and, in other rows, of each of its ancestors)."""

    path: str
    depth: int
    ops: int
    cycles: int
    macs: int
    mac_utilisation_pct: float
    cycle_share_pct: float

    @classmethod
    def from_json(cls, d: Mapping) -> ModuleRow:
        return _record(cls, d)


@dataclass(frozen=True)
class CpuMeasurement:
    runs: int
    warmup: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    peak_rss_delta_kib: int
    init_ms: float
    runtime: str
    runtime_version: str
    xnnpack_partitions: int | None
    machine: Mapping[str, Any]


@dataclass(frozen=True)
class CpuEstimate:
    latency_ms: float
    cycles: float
    clock_hz: float | None  # Hz
    threads: int


@dataclass(frozen=True)
class CpuRun:
    """How a cortex-a report's figures were obtained (1.2): measured or estimated."""

    mode: str  # "measured" or "estimated"
    threads: int
    where: str | None  # local, user@host:port; None when estimated
    measurement: CpuMeasurement | None
    estimate: CpuEstimate
    cpu_model: Mapping[str, Any]  # source, fitted, params (1.5: band): the [cpu_model] used
    layers_source: str = "estimated"

    @property
    def band(self) -> Mapping[str, Any] | None:
        """1.5: the profile's uncertainty band (low, high: ratios measured / estimated,
        coverage, samples, source); None when the profile has none or the report predates it."""
        return self.cpu_model.get("band")

    @property
    def band_known(self) -> bool:
        """Whether the report says if the profile has a band (1.5 on); older reports do not."""
        return "band" in self.cpu_model

    @classmethod
    def from_json(cls, d: Mapping | None) -> CpuRun | None:
        if d is None:
            return None
        m = d.get("measurement")
        e = d["estimate"]
        return cls(
            mode=d["mode"],
            threads=d["threads"],
            where=d.get("where"),
            measurement=None
            if m is None
            else _record(
                CpuMeasurement,
                m,
                xnnpack_partitions=m.get("xnnpack_partitions"),
                machine=dict(m.get("machine") or {}),
            ),
            estimate=_record(CpuEstimate, e, clock_hz=e.get("clock_hz")),
            cpu_model=dict(d.get("cpu_model") or {}),
            layers_source=d.get("layers_source", "estimated"),
        )


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class Report:
    """One model on one target, typed. Build it with `Report.from_dict` or `load_report`."""

    schema_version: str
    model: ModelFacts
    target: TargetFacts
    metrics: tuple[MetricValue, ...] = ()
    fidelity: FidelityFacts = FidelityFacts()
    conversion: Conversion = Conversion()
    ran_edge_version: str = ""
    tools: Mapping[str, str] = field(default_factory=dict)
    calibration: CalibrationFacts | None = None
    tflm: TflmFacts | None = None
    sensitivity: Sensitivity | None = None
    cpu_fallbacks: tuple[CpuFallback, ...] = ()
    layers: tuple[LayerRow, ...] = ()
    modules: tuple[ModuleRow, ...] = ()
    module_depth: int = 1  # the depth the console shows by default
    artifacts: Mapping[str, str] = field(default_factory=dict)  # role -> file name
    vela_command: tuple[str, ...] = ()  # [] for cortex-a
    inputs_sha256: str | None = None
    cpu: CpuRun | None = None  # cortex-a only
    memory_traffic: MemoryTraffic | None = None  # 1.6, ethos-u: per memory area, NPU busy
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # ---- metrics: the one way to find a figure by name

    def metric(self, name: str) -> MetricValue | None:
        """The target metric `name`: None when the report has none; an unavailable one comes
        back with `value` None and its `reason`."""
        return find_metric(self.metrics, name)

    def value(self, name: str) -> Number | None:
        """The target metric's value; None when absent or unavailable."""
        m = self.metric(name)
        return None if m is None else m.value

    def fidelity_metric(self, name: str) -> MetricValue | None:
        return self.fidelity.metric(name)

    def fidelity_value(self, name: str) -> Number | None:
        return self.fidelity.value(name)

    # ---- conveniences

    @property
    def is_cpu(self) -> bool:
        return self.target.is_cpu

    def modules_at(self, depth: int | None = None) -> tuple[ModuleRow, ...]:
        """Module costs cut at `depth` (default: the report's), costliest first: every module
        at that depth, and any shallower one that has no child."""
        depth = depth or self.module_depth
        paths = {r.path for r in self.modules}
        keep = [
            r
            for r in self.modules
            if r.depth == depth
            or (r.depth < depth and not any(p.startswith(r.path + ".") for p in paths))
        ]
        return tuple(sorted(keep, key=lambda r: -r.cycles))

    def to_dict(self) -> dict:
        """The report.json object this Report was read from (a copy: the Report stays frozen)."""
        if not self.raw:
            raise ValueError("this Report was built in code, not read from JSON: no dict to give")
        return copy.deepcopy(dict(self.raw))

    # ---- the boundary

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, validate: bool = True, source: str | Path | None = None
    ) -> Report:
        """A Report from a report.json object. `validate` checks it against the published
        schema first (a failure is a UsageError naming `source`, the field and the fix); pass
        False only for a dict that was just validated (the build writes and validates it)."""
        where = str(source) if source is not None else "the report"
        if validate:
            check_report(data, where)
        try:
            return cls._parse(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if validate:  # the schema passed, so this is a reader bug: say so
                raise
            raise UsageError(
                f"{where} is not a complete ran-edge report ({type(exc).__name__}: {exc}); "
                f"{REBUILD}."
            ) from None

    @classmethod
    def _parse(cls, d: Mapping[str, Any]) -> Report:
        modules = d.get("modules") or {"depth": 1, "rows": []}
        return cls(
            schema_version=str(d["schema_version"]),
            model=ModelFacts.from_json(d["model"]),
            target=TargetFacts.from_json(d["target"]),
            metrics=_metrics(d.get("metrics", ())),
            fidelity=FidelityFacts.from_json(d.get("fidelity")),
            conversion=Conversion.from_json(d.get("conversion") or {}),
            ran_edge_version=d.get("ran_edge_version", ""),
            tools=dict(d.get("tools") or {}),
            calibration=CalibrationFacts.from_json(d.get("calibration")),
            tflm=TflmFacts.from_json(d.get("tflm")),
            sensitivity=Sensitivity.from_json(d.get("sensitivity")),
            cpu_fallbacks=tuple(CpuFallback.from_json(f) for f in d.get("cpu_fallbacks", ())),
            layers=tuple(LayerRow.from_json(r) for r in d.get("layers", ())),
            modules=tuple(ModuleRow.from_json(r) for r in modules.get("rows", ())),
            module_depth=int(modules.get("depth", 1)),
            artifacts=dict(d.get("artifacts") or {}),
            vela_command=tuple(d.get("vela_command") or ()),
            inputs_sha256=d.get("inputs_sha256"),
            cpu=CpuRun.from_json(d.get("cpu")),
            memory_traffic=MemoryTraffic.from_json(d.get("memory_traffic")),
            raw=d,
        )


# ---------------------------------------------------------------- validation and loading


def schema_error(data: object) -> tuple[str, str] | None:
    """The most relevant way `data` breaks the published schema, as (JSON path, message);
    None when it conforms."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(data))
    if error is None:
        return None
    return "/".join(str(p) for p in error.absolute_path) or "(top)", error.message


def check_report(data: object, where: str = "the report") -> None:
    """Refuse anything this ran-edge cannot read correctly, saying why and what to do: not a
    ran-edge report, another major version, or a report that breaks the schema."""
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA_ID:
        found = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
        raise UsageError(
            f"{where} is not a ran-edge report (schema {found!r}, expected {SCHEMA_ID!r}); "
            "pass a report.json written by `ran-edge build` or `ran-edge profile`."
        )
    version = str(data.get("schema_version", ""))
    if version.split(".")[0] != str(READS_MAJOR):
        raise UsageError(
            f"{where} has schema_version {version!r}, but this ran-edge reads "
            f"{READS_MAJOR}.x; rebuild the report with this ran-edge, or use the ran-edge "
            "version that wrote it."
        )
    problem = schema_error(data)
    if problem is not None:
        path, message = problem
        raise UsageError(
            f"{where} does not match the report schema {version} at {path}: {message}. "
            f"It is truncated, hand-edited or from another ran-edge; {REBUILD}."
        )


def load_report(path: str | Path) -> Report:
    """Read and check one report.json (or the report.json in a target folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.is_file():
        raise UsageError(
            f"{path} does not exist; pass a report.json (or its build/<model>/<target> folder) "
            "written by `ran-edge build` or `ran-edge profile`."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); {REBUILD}."
        ) from None
    return Report.from_dict(data, source=path)


@functools.cache
def schema() -> dict:
    """The published JSON Schema of report.json."""
    return json.loads(SCHEMA_FILE.read_text())


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def by_target(reports: Sequence[Report]) -> list[Report]:
    """Reports in target-name order (pages and tables list targets that way)."""
    return sorted(reports, key=lambda r: r.target.name)
