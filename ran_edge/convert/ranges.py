"""Activation ranges from a calibration set: the global min/max, or outlier-robust clipping.

ai-edge-quantizer's default calibration keeps a 0.95 moving average of per-sample min/max,
which, fed one sample at a time, clips the extremes (the winning logit most of all). Its
`Calibrator` takes another update function; `minmax` passes `qsv_utils.min_max_update`,
so every activation's range is the true min/max over the whole calibration set.

The robust methods narrow the range of *intermediate* activations only, from a
`HISTOGRAM_BINS`-bin histogram of each tensor over the calibration set (inside its global
min/max, so memory does not grow with the set):

- `percentile`: each tail clipped at the `PERCENTILE`th percentile of the values;
- `mse`: the int8 range (scale and zero point as the quantizer derives them) that minimises
  the expected squared error, rounding (step^2/12 per value) plus clipping.

The model's input and output keep their global min/max (the input range is the data
contract; the output's extremes are the decision), as do tensors tied to the output by ops
the quantizer constrains to share their input's range (RESHAPE, pooling, PAD, ...), and any
tensor the caller lists in `keep` (int16 activations: their 65,536 steps make clipping cost
more than it saves). A range is only ever narrowed, never widened. Shared ranges across
constrained ops (concat, pooling, reshape) are still enforced by the quantizer itself when
it turns these ranges into scales.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np

from ran_edge.errors import UsageError
from ran_edge.quiet import captured_output

CALIBRATION_METHODS = ("minmax", "percentile", "mse")
ROBUST_MIN_SAMPLES = 16  # below this, a tail percentile or an MSE optimum is noise
PERCENTILE = 99.99  # of each tail, per tensor
HISTOGRAM_BINS = 2048
_MSE_CANDIDATES = 129  # clip points per side, geometric from the extreme down to 1/256 of it

QSV = dict[str, np.ndarray]  # the quantizer's per-tensor statistics: {"min": ..., "max": ...}


def check_method(method: str, samples: int) -> None:
    """UsageError unless `method` is known and has enough calibration samples."""
    if method not in CALIBRATION_METHODS:
        raise UsageError(
            f"unknown calibration method {method!r}: use one of {', '.join(CALIBRATION_METHODS)}"
        )
    if method != "minmax" and samples < ROBUST_MIN_SAMPLES:
        raise UsageError(
            f"--calib-method {method} needs at least {ROBUST_MIN_SAMPLES} calibration samples, "
            f"got {samples}: raise --calib-samples, or use --calib-method minmax"
        )


def minmax_qsvs(
    float_tflite: bytes, signature_key: str, samples: list[dict], recipe: list[dict]
) -> dict[str, QSV]:
    """Global min/max of every activation the recipe quantizes, over all `samples`."""
    with captured_output():
        from ai_edge_quantizer import calibrator, recipe_manager
        from ai_edge_quantizer.utils import qsv_utils

    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe)
    with captured_output():
        calib = calibrator.Calibrator(
            bytes(float_tflite),
            num_threads=os.cpu_count() or 1,
            qsv_update_func=qsv_utils.min_max_update,
        )
        calib.calibrate({signature_key: samples}, manager)
    return calib.get_model_qsvs()


@dataclass(frozen=True)
class Histogram:
    """Counts of one tensor's values over the calibration set, in bins over [lo, hi]."""

    counts: np.ndarray  # int64, HISTOGRAM_BINS
    lo: float  # <= 0
    hi: float  # >= 0

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.lo, self.hi, len(self.counts) + 1)

    @property
    def centers(self) -> np.ndarray:
        edges = self.edges
        return (edges[:-1] + edges[1:]) / 2


def _span(qsv: QSV) -> tuple[float, float]:
    return min(float(np.min(qsv["min"])), 0.0), max(float(np.max(qsv["max"])), 0.0)


def collect_histograms(
    float_tflite: bytes, samples_nhwc: np.ndarray, spans: Mapping[str, tuple[float, float]]
) -> dict[str, Histogram]:
    """Histogram each named tensor over all samples, within its (lo, hi) span.

    Runs LiteRT with every tensor kept and the default delegate off (an XNNPACK partition
    would hide the tensors inside it).
    """
    from ran_edge.convert.tflite_info import make_interpreter

    with captured_output():
        interpreter = make_interpreter(float_tflite, keep_all_tensors=True)
    index = {}
    for detail in interpreter.get_tensor_details():
        index.setdefault(detail["name"], detail["index"])
    wanted = {name: span for name, span in spans.items() if name in index and span[1] > span[0]}
    counts = {name: np.zeros(HISTOGRAM_BINS, np.int64) for name in wanted}
    input_index = interpreter.get_input_details()[0]["index"]
    for sample in samples_nhwc:
        interpreter.set_tensor(input_index, sample[None].astype(np.float32))
        interpreter.invoke()
        for name, (lo, hi) in wanted.items():
            values = interpreter.get_tensor(index[name]).astype(np.float64).ravel()
            bins = ((values - lo) * (HISTOGRAM_BINS / (hi - lo))).astype(np.int64)
            np.clip(bins, 0, HISTOGRAM_BINS - 1, out=bins)
            counts[name] += np.bincount(bins, minlength=HISTOGRAM_BINS)
    return {name: Histogram(counts[name], lo, hi) for name, (lo, hi) in wanted.items()}


def percentile_range(hist: Histogram, percentile: float = PERCENTILE) -> tuple[float, float]:
    """Each tail clipped at `percentile` (bin-conservative: the bin's outer edge)."""
    cdf = np.cumsum(hist.counts)
    total = cdf[-1]
    edges = hist.edges
    tail = total * (1.0 - percentile / 100.0)
    lo_bin = int(np.searchsorted(cdf, tail, side="right"))
    hi_bin = int(np.searchsorted(cdf, total - tail, side="left"))
    lo = float(edges[min(lo_bin, len(hist.counts) - 1)])
    hi = float(edges[min(hi_bin, len(hist.counts) - 1) + 1])
    return min(lo, 0.0), max(hi, 0.0)


def _int8_grid(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The quantizer's asymmetric int8 grid for ranges [lo, hi]: (step, lowest, highest)."""
    step = np.maximum(hi - lo, 1e-9) / 255.0
    zero_point = np.rint(-128.0 - lo / step)
    return step, (-128.0 - zero_point) * step, (127.0 - zero_point) * step


def _expected_error(hist: Histogram, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sum of squared int8 errors per candidate range: step^2/12 per value inside the grid,
    squared distance to the grid's end outside it (O(1) per candidate from prefix sums)."""
    x, c = hist.centers, hist.counts.astype(np.float64)
    sums = [np.concatenate([[0.0], np.cumsum(c * x**k)]) for k in range(3)]
    step, low, high = _int8_grid(lo, hi)
    above = np.searchsorted(x, high, side="right")  # bins from here on are clipped high
    below = np.searchsorted(x, low, side="left")  # bins before here are clipped low
    n_above, s1_above, s2_above = (s[-1] - s[above] for s in sums)
    n_below, s1_below, s2_below = (s[below] for s in sums)
    clipped = s2_above - 2 * high * s1_above + high**2 * n_above
    clipped += s2_below - 2 * low * s1_below + low**2 * n_below
    inside = sums[0][-1] - n_above - n_below
    return np.maximum(clipped, 0.0) + inside * step**2 / 12.0


def mse_range(hist: Histogram) -> tuple[float, float]:
    """The int8 range with the least expected squared error over the histogram.

    A joint search over both ends: each from its extreme down to 1/256 of it (geometric).
    """
    fractions = 2.0 ** -np.linspace(0.0, 8.0, _MSE_CANDIDATES)
    los = hist.lo * fractions if hist.lo < 0 else np.zeros(1)
    his = hist.hi * fractions if hist.hi > 0 else np.zeros(1)
    lo, hi = (grid.ravel() for grid in np.meshgrid(los, his, indexing="ij"))
    best = int(np.argmin(_expected_error(hist, lo, hi)))
    return float(lo[best]), float(hi[best])


_RANGE_FUNCTIONS = {"percentile": percentile_range, "mse": mse_range}


def robust_qsvs(
    float_tflite: bytes,
    samples_nhwc: np.ndarray,
    qsvs: Mapping[str, QSV],
    method: str,
    keep: Collection[str] = (),
) -> dict[str, QSV]:
    """`qsvs` with each per-tensor activation range narrowed by `method`; `keep` unchanged."""
    range_of = _RANGE_FUNCTIONS[method]
    held = set(keep) | tied_to_io(float_tflite)
    spans = {
        name: _span(qsv)
        for name, qsv in qsvs.items()
        if name not in held and {"min", "max"} <= qsv.keys() and np.size(qsv["min"]) == 1
    }
    histograms = collect_histograms(float_tflite, samples_nhwc, spans)
    result = dict(qsvs)
    for name, hist in histograms.items():
        lo, hi = range_of(hist)
        qsv = qsvs[name]
        lo, hi = max(lo, float(np.min(qsv["min"]))), min(hi, float(np.max(qsv["max"])))
        result[name] = {
            **qsv,
            "min": np.full_like(qsv["min"], lo),
            "max": np.full_like(qsv["max"], hi),
        }
    return result


def tied_to_io(float_tflite: bytes) -> set[str]:
    """The graph's input/output tensors and those sharing the output's range through ops the
    quantizer constrains to their input's scale (RESHAPE, pooling, PAD, ...)."""
    from ai_edge_litert.interpreter import Interpreter

    with captured_output():
        from ai_edge_quantizer.algorithms.utils import common_utils
        from ai_edge_quantizer.utils import constrained_ops_utils

        same_as_input = {
            str(getattr(op, "value", op))
            for op in constrained_ops_utils.get_constrained_op_list(
                common_utils.OpQuantConstraint.SAME_AS_INPUT_SCALE
            )
        }
        interpreter = Interpreter(model_content=bytes(float_tflite))
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    held = {names[d["index"]] for d in interpreter.get_input_details()}
    frontier = [d["index"] for d in interpreter.get_output_details()]
    producer = {
        int(t): op
        for op in interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only op listing
        for t in op["outputs"]
    }
    while frontier:
        tensor = frontier.pop()
        if names[tensor] in held:
            continue
        held.add(names[tensor])
        op = producer.get(tensor)
        if op is not None and op["op_name"] in same_as_input and len(op["inputs"]):
            frontier.append(int(op["inputs"][0]))
    return held
