"""TFLM reference check: the int8 model as a Cortex-M runs it, against LiteRT's reference kernels.

Both interpreters get the same int8 inputs; any output byte that differs means the model
depends on kernel details the firmware will not reproduce. When samples differ, every
mismatching sample is walked op by op (all tensors kept) to find the earliest op whose
output differs; 1-LSB differences that start in FULLY_CONNECTED are a known rounding-mode
difference (TFLM rounds the requantization once, LiteRT's reference kernel twice, so exact
ties land one LSB apart), labelled `rounding_only` rather than reported as a fault.

The TFLM run also measures the arena: `head` (planned, non-persistent tensors) and `tail`
(persistent bookkeeping: tensor structs, node structs, per-channel quantization data), which
sizes the firmware arena margin. The check never raises: a model TFLM cannot load or run
comes back with `error` set.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ran_edge.quiet import captured_output

_ALLOC = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
ROUNDING_OPS = frozenset({"FULLY_CONNECTED"})  # ops whose 1-LSB tie differences are known
CHILD_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class TflmCheck:
    samples: int
    bit_exact: bool
    mismatched_samples: int
    max_abs_diff: int
    arena_total_bytes: int
    arena_persistent_bytes: int  # TFLM's "tail": the per-model overhead beyond tensor data
    error: str | None = None  # why TFLM could not run the model, if it could not
    first_mismatch: str | None = None  # the earliest op (over all samples) whose output differs
    first_mismatch_sample: int | None = None  # the sample that shows `first_mismatch`
    rounding_only: bool = False  # every difference is 1 LSB starting in FULLY_CONNECTED

    @property
    def passed(self) -> bool:
        """Bit-exact, or differing only by the known FULLY_CONNECTED rounding mode."""
        return self.error is None and (self.bit_exact or self.rounding_only)

    @property
    def verdict(self) -> str:
        """One line for a report."""
        if self.error is not None:
            return f"not run: {self.error}"
        if self.bit_exact:
            return f"bit-exact on {self.samples} samples"
        where = f"; first at {self.first_mismatch}" if self.first_mismatch else ""
        if self.first_mismatch_sample is not None:
            where += f" (sample {self.first_mismatch_sample})"
        counts = f"{self.mismatched_samples}/{self.samples} samples differ"
        if self.rounding_only:
            return (
                f"rounding only: {counts} by 1 LSB{where}: FULLY_CONNECTED rounds exact ties "
                "once in TFLM, twice in LiteRT's reference kernel"
            )
        return f"MISMATCH: {counts} (max |diff| {self.max_abs_diff} LSB){where}"


@dataclass(frozen=True)
class Divergence:
    """Where one sample's two runs first part: op position, type, label, size in LSB."""

    op_index: int
    op_type: str
    label: str
    lsb: int
    sample: int


def _failed(reason: str) -> TflmCheck:
    return TflmCheck(0, False, 0, 0, 0, 0, error=" ".join(reason.split())[:400])


def _log_tail(text: str, failure: str, lines: int = 3) -> str:
    """The exception, then TFLM's last messages without the allocator's bookkeeping lines."""
    kept = [line for line in text.strip().splitlines() if "RecordingMicroAllocator" not in line]
    return " ".join([failure, *kept[-lines:]]).strip()


def _quantize(batch_nhwc: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(batch_nhwc / scale) + zero_point, -128, 127).astype(np.int8)


def tflm_reference_check(int8_model: bytes, samples_nhwc: np.ndarray) -> TflmCheck:
    """Run every sample through TFLM and LiteRT (reference kernels); compare bytes. Never raises.

    The interpreters run in a child process: TFLM's C++ can abort (SIGABRT) on a model it
    cannot handle, and that must fail the check, not kill the build that runs it.
    """
    with tempfile.TemporaryDirectory(prefix="ran-edge-tflm-") as tmp:
        folder = Path(tmp)
        (folder / "model.tflite").write_bytes(int8_model)
        np.save(folder / "samples.npy", np.ascontiguousarray(samples_nhwc, dtype=np.float32))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", __name__, str(folder)],
                capture_output=True,
                text=True,
                check=False,
                timeout=CHILD_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return _failed(f"TFLM did not finish in {CHILD_TIMEOUT_S:.0f} s")
        result = folder / "result.json"
        if proc.returncode != 0 or not result.is_file():
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])[:200]
            return _failed(
                f"TFLM's interpreter crashed on this model ({how}{'; ' + tail if tail else ''}): "
                "a fault in TFLM's kernels, not in the Ethos-U part, which runs inside the "
                "ethos-u op"
            )
        return TflmCheck(**json.loads(result.read_text()))


def _check_in_this_process(int8_model: bytes, samples_nhwc: np.ndarray) -> TflmCheck:
    try:
        return _check(int8_model, samples_nhwc)
    except Exception as exc:  # TFLM and LiteRT raise many types; the check must report, not crash
        return _failed(f"TFLM check failed: {type(exc).__name__}: {exc}")


def _check(int8_model: bytes, samples_nhwc: np.ndarray) -> TflmCheck:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    from ran_edge.convert.inline_buffers import external_buffer_count

    outside = external_buffer_count(int8_model)
    if outside:
        return _failed(
            f"{outside} buffer(s) are stored outside the flatbuffer, where TFLM reads zeros; "
            "re-serialize with ran_edge.convert.inline_buffers.inline_buffers"
        )
    tflm, failure = None, ""
    with captured_output() as load_log:
        try:
            tflm = runtime.Interpreter.from_bytes(int8_model)
        except Exception as exc:  # allocation failures surface as RuntimeError/ValueError
            failure = f"{type(exc).__name__}: {exc}"
    if tflm is None:
        # Not fatal: NPU-mapped ops run inside the ethos-u op, not in these TFLM kernels.
        return _failed(f"TFLM could not prepare the model ({_log_tail(load_log.text, failure)})")
    with captured_output() as log:
        litert = Interpreter(
            model_content=int8_model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
        )
        litert.allocate_tensors()
        inp, out = litert.get_input_details()[0], litert.get_output_details()[0]
        scale, zero_point = inp["quantization"]
        inputs = _quantize(samples_nhwc, scale, zero_point)
        diffs = []
        try:
            for x in inputs:
                litert.set_tensor(inp["index"], x[None])
                litert.invoke()
                expected = litert.get_tensor(out["index"]).astype(np.int32)
                tflm.set_input(x[None], 0)
                tflm.invoke()
                got = tflm.get_output(0).astype(np.int32)
                diffs.append(int(np.abs(expected - got).max()))
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        tflm.print_allocations()
    if failure:
        return _failed(f"TFLM could not run the model ({_log_tail(log.text, failure)})")
    alloc = {kind: int(n) for kind, n in _ALLOC.findall(log.text)}
    mismatching = [i for i, d in enumerate(diffs) if d > 0]
    max_diff = max(diffs, default=0)
    divergences = _divergences(int8_model, inputs, mismatching) if mismatching else []
    first = min(divergences, key=lambda d: (d.op_index, d.sample), default=None)
    rounding = is_rounding_only(max_diff, len(mismatching), divergences)
    return TflmCheck(
        samples=len(samples_nhwc),
        bit_exact=not mismatching,
        mismatched_samples=len(mismatching),
        max_abs_diff=max_diff,
        arena_total_bytes=alloc.get("total", 0),
        arena_persistent_bytes=alloc.get("tail", 0),
        first_mismatch=None if first is None else first.label,
        first_mismatch_sample=None if first is None else first.sample,
        rounding_only=rounding,
    )


def is_rounding_only(max_diff: int, mismatched: int, divergences: list[Divergence]) -> bool:
    """Every mismatching sample is off by <= 1 LSB and first parts in FULLY_CONNECTED by 1 LSB."""
    return (
        mismatched > 0
        and max_diff <= 1
        and len(divergences) == mismatched
        and all(d.op_type in ROUNDING_OPS and d.lsb <= 1 for d in divergences)
    )


def _divergences(int8_model: bytes, inputs: np.ndarray, samples: list[int]) -> list[Divergence]:
    """Per mismatching sample, the first op (execution order) whose output differs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    found = []
    with captured_output():
        ref = Interpreter(
            model_content=int8_model,
            experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=True,
        )
        ref.allocate_tensors()
        micro = runtime.Interpreter.from_bytes(
            int8_model, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors
        )
        names = {t["index"]: t["name"] for t in ref.get_tensor_details()}
        ops = ref._get_ops_details()  # noqa: SLF001 - LiteRT's only op listing
        input_index = ref.get_input_details()[0]["index"]
        for sample in samples:
            x = inputs[sample][None]
            ref.set_tensor(input_index, x)
            ref.invoke()
            micro.set_input(x, 0)
            micro.invoke()
            for position, op in enumerate(ops):
                lsb = max((_lsb_diff(ref, micro, int(t)) for t in op["outputs"]), default=0)
                if lsb:
                    name = names[int(op["outputs"][0])][-80:]
                    label = f"op {position} {op['op_name']} ({name})"
                    found.append(Divergence(position, op["op_name"], label, lsb, sample))
                    break
    return found


def _lsb_diff(ref, micro, index: int) -> int:
    """Largest integer difference between the two runs' copies of one tensor."""
    expected = ref.get_tensor(index)
    found = micro.GetTensor(index, 0)
    got = np.asarray(found["tensor_data"] if isinstance(found, dict) else found)
    got = got.reshape(expected.shape)
    return int(np.abs(expected.astype(np.int64) - got.astype(np.int64)).max(initial=0))


def _child(folder: Path) -> None:
    """`python -m ran_edge.firmware.tflm_check FOLDER`: the check, isolated in its own process."""
    check = _check_in_this_process(
        (folder / "model.tflite").read_bytes(), np.load(folder / "samples.npy")
    )
    (folder / "result.json").write_text(json.dumps(asdict(check)))


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
