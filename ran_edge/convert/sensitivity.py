"""Per-layer quantization sensitivity: where in the network the int8 model drifts from float.

Both models run in LiteRT on the same held-out inputs with every intermediate tensor kept
(`experimental_preserve_all_tensors`, default delegates off: an XNNPACK partition would
hide the tensors inside it). Each op of the quantized model whose output tensor has a
counterpart of the same name in the float model is scored by the SQNR of that tensor,
dequantized, against the float one, summed over all samples.

ai-edge-quantizer keeps the float model's tensor names for every op it quantizes; the
int8<->int16 QUANTIZE ops it inserts around int16 ops output `<name>_quantized`, which no
float op produces, so they are skipped (and listed as such).

The SQNR is cumulative: it holds the error of every op upstream as well as this op's own.
`drop_db` (this op's SQNR below that of its worst scored input) is the part this op adds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ran_edge.convert.attribution import ModuleIndex, attribute_layers
from ran_edge.errors import RanEdgeError

# float32 carries ~24 bits (~144 dB); a tensor reproduced without any error is reported at
# this cap with `exact=True`, so every figure stays a finite, JSON-safe, sortable number.
SQNR_CAP_DB = 150.0
INSERTED_SUFFIX = "_quantized"


@dataclass(frozen=True)
class OpSensitivity:
    """One op of the quantized model: how far its output is from the float model's."""

    index: int  # op index in the quantized model
    op_type: str  # TFLite builtin name, e.g. CONV_2D
    tensor: str  # output tensor name, the same in both models
    dtype: str  # the output's storage type in the quantized model: int8, int16 (or float32)
    sqnr_db: float  # within [-SQNR_CAP_DB, SQNR_CAP_DB]; SQNR_CAP_DB with exact=True
    exact: bool  # no error at all (identical tensors)
    drop_db: float | None  # SQNR lost in this op vs its worst scored input (None: none scored)
    max_abs_error: float
    rms_float: float  # RMS of the float tensor: the scale the error is relative to
    macs: int  # of this op, so MAC-less names can be attributed like Vela's rows

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SkippedOp:
    """An op of the quantized model with nothing to compare against, and why."""

    index: int
    op_type: str
    tensor: str
    reason: str


@dataclass(frozen=True)
class Sensitivity:
    """Every scored op of the quantized model, in execution order."""

    samples: int
    ops: tuple[OpSensitivity, ...]
    skipped: tuple[SkippedOp, ...]

    def worst(self, n: int = 5) -> tuple[OpSensitivity, ...]:
        """The `n` ops with the lowest SQNR (ties: earlier op first)."""
        return tuple(sorted(self.ops, key=lambda o: (o.sqnr_db, o.index))[:n])

    def by_tensor(self) -> dict[str, OpSensitivity]:
        return {op.tensor: op for op in self.ops}

    @property
    def output(self) -> OpSensitivity | None:
        """The last scored op: for a single-output model, the logits."""
        return self.ops[-1] if self.ops else None


@dataclass(frozen=True)
class LayerSensitivity:
    """An op's sensitivity with the PyTorch module it came from."""

    op: OpSensitivity
    module: str

    def as_dict(self) -> dict:
        return {"module": self.module, **self.op.as_dict()}


def sqnr_capped(signal: float, noise: float) -> tuple[float, bool]:
    """(SQNR in dB clamped to +-SQNR_CAP_DB, exact) from summed squares."""
    if noise == 0.0:
        return SQNR_CAP_DB, True
    if signal == 0.0:
        return -SQNR_CAP_DB, False
    db = 10.0 * math.log10(signal / noise)
    return max(-SQNR_CAP_DB, min(SQNR_CAP_DB, db)), False


@dataclass
class _Accumulator:
    """Running sums over samples, so memory stays one tensor per op whatever the count."""

    signal: float = 0.0
    noise: float = 0.0
    max_abs: float = 0.0
    count: int = 0

    def add(self, reference: np.ndarray, test: np.ndarray) -> None:
        # float32 throughout: the passes over large maps are memory-bound, and float32 sums
        # are off by ~1e-5 relative, far below the 0.001 dB figures are rounded to.
        ref = reference.astype(np.float32, copy=False).ravel()
        diff = ref - test.astype(np.float32, copy=False).ravel()
        self.signal += float(np.dot(ref, ref))
        self.noise += float(np.dot(diff, diff))
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()), -float(diff.min()))
        self.count += ref.size


def _interpreter(model: bytes):
    """LiteRT over `model` with every tensor kept and no delegate (whose tensors it hides)."""
    from ran_edge.convert.tflite_info import make_interpreter

    return make_interpreter(model, keep_all_tensors=True)


def _quantize_input(sample: np.ndarray, detail: dict) -> np.ndarray:
    """A float sample as the model's input type, with the input's own scale/zero-point."""
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return sample.astype(dtype, copy=False)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(sample / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(value: np.ndarray, detail: dict) -> np.ndarray | None:
    """A quantized activation as float; float stays float; other ints (indices) are None."""
    if np.issubdtype(value.dtype, np.floating):
        return value
    params = detail.get("quantization_parameters", {})
    scales = np.asarray(params.get("scales", ()), dtype=np.float64)
    if scales.size == 0 or not np.any(scales):
        return None
    zeros = np.asarray(params.get("zero_points", ()), dtype=np.float64)
    if scales.size > 1:  # per-axis (not seen on activations, but exact if it comes)
        axis = int(params.get("quantized_dimension", 0))
        shape = [1] * value.ndim
        shape[axis] = scales.size
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return (value.astype(np.float32) - zeros.astype(np.float32)) * scales.astype(np.float32)


def _op_outputs(interpreter) -> dict[str, int]:
    """Name -> tensor index of every op output (constants are never op outputs)."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    names: dict[str, int] = {}
    for op in interpreter._get_ops_details():  # noqa: SLF001 - LiteRT's only op listing
        for i in op["outputs"]:
            if int(i) in tensors:
                names[str(tensors[int(i)]["name"])] = int(i)
    return names


@dataclass(frozen=True)
class _Pair:
    index: int
    op_type: str
    tensor: str
    quant_id: int
    float_id: int
    input_tensors: tuple[str, ...]


def _pairs(q_interp, f_interp) -> tuple[list[_Pair], list[SkippedOp]]:
    """Match each quantized op's outputs to float op outputs of the same name."""
    tensors = {t["index"]: t for t in q_interp.get_tensor_details()}
    float_outputs = _op_outputs(f_interp)
    pairs, skipped = [], []
    for op in q_interp._get_ops_details():  # noqa: SLF001 - LiteRT's only op listing
        inputs = tuple(
            str(tensors[int(i)]["name"]) for i in op["inputs"] if int(i) >= 0 and int(i) in tensors
        )
        for out in op["outputs"]:
            name = str(tensors[int(out)]["name"])
            if name in float_outputs:
                pair = _Pair(
                    int(op["index"]), op["op_name"], name, int(out), float_outputs[name], inputs
                )
                pairs.append(pair)
                continue
            if op["op_name"] == "QUANTIZE" and name.endswith(INSERTED_SUFFIX):
                reason = "inserted by the quantizer (int8<->int16 requantize): no float op"
            else:
                reason = "no float tensor of that name"
            skipped.append(SkippedOp(int(op["index"]), op["op_name"], name, reason))
    return pairs, skipped


def _macs_by_index(model: bytes) -> dict[int, int]:
    from ran_edge.convert.tflite_ops import read_op_costs

    return {cost.index: cost.macs for cost in read_op_costs(model)}


def measure_sensitivity(
    float_tflite: bytes, quant_tflite: bytes, holdout_nhwc: np.ndarray
) -> Sensitivity:
    """Per-op SQNR of `quant_tflite` (int8 or mixed int8/int16) against `float_tflite`.

    `holdout_nhwc` is N x H x W x C float32, one sample per row, as the float model takes it.
    """
    from ran_edge.errors import UsageError

    if holdout_nhwc.ndim != 4 or len(holdout_nhwc) == 0:
        raise UsageError("sensitivity needs held-out samples: give at least one (--holdout).")
    f_interp, q_interp = _interpreter(float_tflite), _interpreter(quant_tflite)
    pairs, skipped = _pairs(q_interp, f_interp)
    q_details = {t["index"]: t for t in q_interp.get_tensor_details()}
    f_in, q_in = f_interp.get_input_details()[0], q_interp.get_input_details()[0]
    usable, stats = [], {}
    for sample in holdout_nhwc:
        x = sample[None].astype(np.float32)
        f_interp.set_tensor(f_in["index"], x)
        q_interp.set_tensor(q_in["index"], _quantize_input(x, q_in))
        f_interp.invoke()
        q_interp.invoke()
        for pair in pairs:
            test = _dequantize(q_interp.get_tensor(pair.quant_id), q_details[pair.quant_id])
            if test is None:
                continue
            stats.setdefault(pair.index, _Accumulator()).add(
                f_interp.get_tensor(pair.float_id), test
            )
    for pair in pairs:
        if pair.index in stats:
            usable.append(pair)
        else:
            reason = "not a quantized activation (an integer index or shape)"
            skipped.append(SkippedOp(pair.index, pair.op_type, pair.tensor, reason))
    return Sensitivity(
        samples=len(holdout_nhwc),
        ops=_score(usable, stats, q_details, _macs_by_index(quant_tflite)),
        skipped=tuple(sorted(skipped, key=lambda s: s.index)),
    )


def _score(
    pairs: list[_Pair], stats: dict[int, _Accumulator], details: dict, macs: dict[int, int]
) -> tuple[OpSensitivity, ...]:
    scored: dict[str, float] = {}  # tensor -> SQNR, through the inserted requantize ops
    rows = []
    for pair in pairs:
        acc = stats[pair.index]
        db, exact = sqnr_capped(acc.signal, acc.noise)
        upstream = [scored[_base(t)] for t in pair.input_tensors if _base(t) in scored]
        rows.append(
            OpSensitivity(
                index=pair.index,
                op_type=pair.op_type,
                tensor=pair.tensor,
                dtype=np.dtype(details[pair.quant_id]["dtype"]).name,
                sqnr_db=round(db, 3),
                exact=exact,
                drop_db=round(min(upstream) - db, 3) if upstream else None,
                max_abs_error=acc.max_abs,
                rms_float=math.sqrt(acc.signal / acc.count) if acc.count else 0.0,
                macs=macs.get(pair.index, 0),
            )
        )
        scored[pair.tensor] = db
    return tuple(rows)


def _base(tensor: str) -> str:
    return tensor.removesuffix(INSERTED_SUFFIX)


def attribute_sensitivity(
    sensitivity: Sensitivity, modules: ModuleIndex | None = None
) -> tuple[LayerSensitivity, ...]:
    """Each scored op with its PyTorch module path, attributed as Vela's cycle rows are.

    With `modules` (the torch model's index) names match exactly and MAC-only ops (the last
    op, named after the graph output) are matched by MAC count; without it, the path is
    read from the op name.
    """
    ops = sensitivity.ops
    paths = attribute_layers([(op.tensor, op.macs) for op in ops], modules)
    return tuple(LayerSensitivity(op, path) for op, path in zip(ops, paths, strict=True))


def sensitivity_rows(float_tflite: bytes, quant: bytes, holdout: np.ndarray, modules):
    """Per-op sensitivity, or () when this model's tensors cannot be paired: an analysis
    that fails must not fail a build whose int8 model is fine (the report says it is missing)."""
    try:
        return attribute_sensitivity(measure_sensitivity(float_tflite, quant, holdout), modules)
    except RanEdgeError:
        raise
    except Exception:  # noqa: BLE001 - LiteRT raises many types on unusual graphs
        return ()


def sensitivity_json(rows: tuple[LayerSensitivity, ...], samples: int) -> dict | None:
    if not rows:
        return None
    keys = ("index", "op_type", "tensor", "dtype", "sqnr_db", "exact", "drop_db")
    return {
        "samples": samples,
        "cap_db": SQNR_CAP_DB,
        "rows": [{"module": r.module} | _pick(r.op.as_dict(), keys) for r in rows],
    }


def _pick(row: dict, keys: tuple[str, ...]) -> dict:
    return {k: row[k] for k in keys}
