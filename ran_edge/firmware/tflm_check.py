"""TFLM reference check: the int8 model as a Cortex-M runs it, against LiteRT's reference kernels.

Both interpreters get the same int8 inputs; any output byte that differs means the model
depends on kernel details the firmware will not reproduce. When samples differ, every
mismatching sample is walked op by op (all tensors kept) to find the earliest op whose
output differs; 1-LSB differences that start in FULLY_CONNECTED are a known rounding-mode
difference (TFLM rounds the requantization once, LiteRT's reference kernel twice, so exact
ties land one LSB apart), labelled `rounding_only` rather than reported as a fault.

The check is adaptive: the first `first_batch` samples (default `FIRST_BATCH`, 1) run
first, and the remaining samples run only when one of them differs by more than the known
FULLY_CONNECTED rounding tie, so a fault is still counted, localized and judged over every
sample the caller gave, while a model that agrees (bit for bit, or but for that tie) costs
one sample. TFLM's reference kernels are slow: per 224x224 MobileNetV2 sample ~0.45 s in TFLM and ~0.27 s in LiteRT,
plus ~0.6 s to walk each differing sample op by op, against a fixed ~0.2-0.5 s (process
start and imports, mostly numpy and tflite_micro; building both interpreters takes
~0.05 s). So 16 samples cost ~14 s, a bit-exact first sample ~1.2 s
(benchmarks/tflm_check_cost.py). A 1000-class FULLY_CONNECTED head ties on about a third
of MobileNetV2's samples; a first batch holding one costs the op-by-op walk of that sample
(~0.6 s) to recognise the tie, not the other samples.
`TflmCheck.samples` counts the samples actually checked and `samples_available` those
given; the verdict says when the rest were skipped.

The TFLM run also measures the arena: `head` (planned, non-persistent tensors) and `tail`
(persistent bookkeeping: tensor structs, node structs, per-channel quantization data), which
sizes the firmware arena margin. The check never raises: a model TFLM cannot load or run
comes back with `error` set.

The interpreters run in a child process (`python -m ran_edge.firmware.tflm_check`, which
imports numpy, the two interpreters and two small ran_edge modules, never torch): TFLM's C++
can abort on a model it cannot handle, and that must fail the check, not the build.
`start_tflm_check` starts that child and returns at once, so the caller can do other work
(fidelity, Vela) while it runs; `tflm_reference_check` is `start_tflm_check(...).result()`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ran_edge.quiet import captured_output

_ALLOC = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
ROUNDING_OPS = frozenset({"FULLY_CONNECTED"})  # ops whose 1-LSB tie differences are known
CHILD_TIMEOUT_S = 600.0
# Samples checked before deciding. A kernel fault (weights read as zeros, a kernel computing
# something else, a zero point handled another way) runs through every op of every input and
# changes the whole output, so one sample of full-size input that agrees on every output byte
# is strong evidence; a disagreement brings in every other sample. Tie-like differences on a
# fraction of inputs may go unseen (FULLY_CONNECTED's pass either way). Each sample costs
# ~0.75 s of CPU at 224x224 (MobileNetV2), in a build that is meant to cost little more than
# the converter, quantizer and Vela; callers wanting more pass `first_batch`.
FIRST_BATCH = 1


@dataclass(frozen=True)
class TflmCheck:
    samples: int  # samples run through both interpreters: what `verdict` counts
    bit_exact: bool
    mismatched_samples: int
    max_abs_diff: int
    arena_total_bytes: int
    arena_persistent_bytes: int  # TFLM's "tail": the per-model overhead beyond tensor data
    error: str | None = None  # why TFLM could not run the model, if it could not
    first_mismatch: str | None = None  # the earliest op (over all samples) whose output differs
    first_mismatch_sample: int | None = None  # the sample that shows `first_mismatch`
    rounding_only: bool = False  # every difference is 1 LSB starting in FULLY_CONNECTED
    # Samples the caller gave; more than `samples` when the first batch agreed bit for bit
    # and the rest were skipped (None: not recorded, as `samples`).
    samples_available: int | None = None

    @property
    def samples_checked(self) -> int:
        """Samples both interpreters ran (`samples`, named for contrast with the available)."""
        return self.samples

    @property
    def samples_skipped(self) -> int:
        """Samples given but not run: the first batch was bit-exact, so the rest were not needed."""
        if self.error is not None or self.samples_available is None:
            return 0
        return max(0, self.samples_available - self.samples)

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
            checked = _samples(self.samples)
            skipped = self.samples_skipped
            if skipped:
                return (
                    f"bit-exact on {checked} (the first {self.samples} of "
                    f"{self.samples + skipped}: the rest run only when one differs)"
                )
            return f"bit-exact on {checked}"
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


def _samples(n: int) -> str:
    return "1 sample" if n == 1 else f"{n} samples"


@dataclass(frozen=True)
class Divergence:
    """Where one sample's two runs first part: op position, type, label, size in LSB."""

    op_index: int
    op_type: str
    label: str
    lsb: int
    sample: int


def _failed(reason: str, available: int | None = None) -> TflmCheck:
    return TflmCheck(
        0, False, 0, 0, 0, 0, error=" ".join(reason.split())[:400], samples_available=available
    )


def _log_tail(text: str, failure: str, lines: int = 3) -> str:
    """The exception, then TFLM's last messages without the allocator's bookkeeping lines."""
    kept = [line for line in text.strip().splitlines() if "RecordingMicroAllocator" not in line]
    return " ".join([failure, *kept[-lines:]]).strip()


def _quantize(batch_nhwc: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(batch_nhwc / scale) + zero_point, -128, 127).astype(np.int8)


def _batch_limit(first_batch: int | None, available: int) -> int:
    """How many samples to run before deciding whether the rest are needed."""
    return available if first_batch is None else min(available, max(1, int(first_batch)))


def tflm_reference_check(
    int8_model: bytes, samples_nhwc: np.ndarray, *, first_batch: int | None = FIRST_BATCH
) -> TflmCheck:
    """Check `first_batch` samples in TFLM and LiteRT (reference kernels); all when any differs.

    Give every sample there is: they all run as soon as one of the first batch differs.
    `first_batch=None` runs them all regardless. Blocks until done; never raises. The
    interpreters run in a child process: TFLM's C++ can abort (SIGABRT) on a model it
    cannot handle, and that must fail the check, not kill the build that runs it.
    """
    return start_tflm_check(int8_model, samples_nhwc, first_batch=first_batch).result()


def start_tflm_check(
    int8_model: bytes, samples_nhwc: np.ndarray, *, first_batch: int | None = FIRST_BATCH
) -> PendingTflmCheck:
    """Start `tflm_reference_check` in its child process and return at once. Never raises.

    Use it as a context manager, so that the child is stopped if the caller fails before
    collecting `.result()`:

        with start_tflm_check(model, samples) as pending:
            ...  # other work while TFLM runs
            tflm = pending.result()
    """
    return PendingTflmCheck(int8_model, samples_nhwc, first_batch)


class PendingTflmCheck:
    """A TFLM check running in a child process; `result()` waits for it. Nothing raises."""

    def __init__(
        self, int8_model: bytes, samples_nhwc: np.ndarray, first_batch: int | None = FIRST_BATCH
    ) -> None:
        self._result: TflmCheck | None = None
        self._proc: subprocess.Popen | None = None
        self._folder: Path | None = None
        self._available: int | None = None
        self._started = time.monotonic()
        self._finalizer: weakref.finalize | None = None
        try:
            self._start(int8_model, samples_nhwc, first_batch)
        except Exception as exc:  # bad arguments or no temp space: a failed check, not a crash
            self._discard()
            self._result = _failed(
                f"TFLM check could not start: {type(exc).__name__}: {exc}", self._available
            )

    def _start(self, int8_model: bytes, samples_nhwc: np.ndarray, first_batch: int | None) -> None:
        samples = np.ascontiguousarray(samples_nhwc, dtype=np.float32)
        if samples.ndim == 0:
            raise ValueError(f"samples must be a batch (N x H x W x C), got shape {samples.shape}")
        self._available = len(samples)
        batch = "all" if first_batch is None else str(_batch_limit(first_batch, len(samples)))
        self._folder = folder = Path(tempfile.mkdtemp(prefix="ran-edge-tflm-"))
        (folder / "model.tflite").write_bytes(bytes(int8_model))
        np.save(folder / "samples.npy", samples)
        with (folder / "stdout.txt").open("wb") as out, (folder / "stderr.txt").open("wb") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(folder), batch],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        # Stops the child and removes the folder if this object is dropped uncollected.
        self._finalizer = weakref.finalize(self, _discard, self._proc, folder)

    def done(self) -> bool:
        """Whether `result()` would return without waiting."""
        return self._result is not None or self._proc is None or self._proc.poll() is not None

    def result(self) -> TflmCheck:
        """Wait for the child (at most `CHILD_TIMEOUT_S` from the start) and return its check."""
        if self._result is None:
            try:
                self._result = self._collect()
            except Exception as exc:  # unreadable leftovers: report, never raise
                self._result = _failed(
                    f"TFLM check result unreadable: {type(exc).__name__}: {exc}", self._available
                )
            finally:
                self._discard()
        return self._result

    def cancel(self) -> None:
        """Stop the child if it still runs; `result()` then reports the check as not run."""
        if self._result is None:
            self._discard()
            self._result = _failed("TFLM check cancelled before it finished", self._available)

    def __enter__(self) -> PendingTflmCheck:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cancel()

    def _discard(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs once: kills a running child, removes the folder
        elif self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    def _collect(self) -> TflmCheck:
        proc, folder = self._proc, self._folder
        if proc is None or folder is None:
            return _failed("TFLM check was not started", self._available)
        left = CHILD_TIMEOUT_S - (time.monotonic() - self._started)
        try:
            returncode = proc.wait(timeout=max(left, 0.0))
        except subprocess.TimeoutExpired:
            return _failed(f"TFLM did not finish in {CHILD_TIMEOUT_S:.0f} s", self._available)
        result = folder / "result.json"
        if returncode != 0 or not result.is_file():
            how = f"signal {-returncode}" if returncode < 0 else f"exit {returncode}"
            log = _read(folder / "stderr.txt") or _read(folder / "stdout.txt")
            tail = " ".join(log.strip().splitlines()[-2:])[:200]
            return _failed(
                f"TFLM's interpreter crashed on this model ({how}{'; ' + tail if tail else ''}): "
                "a fault in TFLM's kernels, not in the Ethos-U part, which runs inside the "
                "ethos-u op",
                self._available,
            )
        return TflmCheck(**json.loads(result.read_text()))


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _discard(proc: subprocess.Popen | None, folder: Path) -> None:
    """Stop the child (if still running) and remove its folder."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


def _check_in_this_process(
    int8_model: bytes, samples_nhwc: np.ndarray, first_batch: int | None = FIRST_BATCH
) -> TflmCheck:
    try:
        return _check(int8_model, samples_nhwc, first_batch)
    except Exception as exc:  # TFLM and LiteRT raise many types; the check must report, not crash
        return _failed(f"TFLM check failed: {type(exc).__name__}: {exc}", len(samples_nhwc))


def _check(int8_model: bytes, samples_nhwc: np.ndarray, first_batch: int | None) -> TflmCheck:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    from ran_edge.convert.inline_buffers import external_buffer_count

    available = len(samples_nhwc)
    outside = external_buffer_count(int8_model)
    if outside:
        return _failed(
            f"{outside} buffer(s) are stored outside the flatbuffer, where TFLM reads zeros; "
            "re-serialize with ran_edge.convert.inline_buffers.inline_buffers",
            available,
        )
    tflm, failure = None, ""
    with captured_output() as load_log:
        try:
            tflm = runtime.Interpreter.from_bytes(int8_model)
        except Exception as exc:  # allocation failures surface as RuntimeError/ValueError
            failure = f"{type(exc).__name__}: {exc}"
    if tflm is None:
        # Not fatal: NPU-mapped ops run inside the ethos-u op, not in these TFLM kernels.
        return _failed(
            f"TFLM could not prepare the model ({_log_tail(load_log.text, failure)})", available
        )
    limit = _batch_limit(first_batch, available)
    with captured_output() as log:
        litert = Interpreter(
            model_content=int8_model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
        )
        litert.allocate_tensors()
        inp, out = litert.get_input_details()[0], litert.get_output_details()[0]
        scale, zero_point = inp["quantization"]
        inputs = _quantize(samples_nhwc, scale, zero_point)
        diffs: list[int] = []

        def run(batch: np.ndarray) -> None:
            for x in batch:
                litert.set_tensor(inp["index"], x[None])
                litert.invoke()
                expected = litert.get_tensor(out["index"]).astype(np.int32)
                tflm.set_input(x[None], 0)
                tflm.invoke()
                got = tflm.get_output(0).astype(np.int32)
                diffs.append(int(np.abs(expected - got).max()))

        divergences: list[Divergence] = []
        try:
            run(inputs[:limit])
            if any(diffs):
                # Walk the first batch's differing samples: when they are all the known
                # FULLY_CONNECTED rounding tie, more samples cannot change the verdict;
                # anything else is a fault, judged and localized over every sample.
                divergences = _divergences(int8_model, inputs, _mismatching(diffs))
                if not is_rounding_only(max(diffs), len(_mismatching(diffs)), divergences):
                    run(inputs[limit:])
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
        tflm.print_allocations()
    if failure:
        return _failed(f"TFLM could not run the model ({_log_tail(log.text, failure)})", available)
    alloc = {kind: int(n) for kind, n in _ALLOC.findall(log.text)}
    mismatching = _mismatching(diffs)
    max_diff = max(diffs, default=0)
    walked = {d.sample for d in divergences}
    rest = [i for i in mismatching if i not in walked]
    if rest:
        divergences += _divergences(int8_model, inputs, rest)
    first = min(divergences, key=lambda d: (d.op_index, d.sample), default=None)
    rounding = is_rounding_only(max_diff, len(mismatching), divergences)
    return TflmCheck(
        samples=len(diffs),
        bit_exact=not mismatching,
        mismatched_samples=len(mismatching),
        max_abs_diff=max_diff,
        arena_total_bytes=alloc.get("total", 0),
        arena_persistent_bytes=alloc.get("tail", 0),
        first_mismatch=None if first is None else first.label,
        first_mismatch_sample=None if first is None else first.sample,
        rounding_only=rounding,
        samples_available=available,
    )


def _mismatching(diffs: list[int]) -> list[int]:
    return [i for i, d in enumerate(diffs) if d > 0]


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


def _child(folder: Path, first_batch: int | None) -> None:
    """`python -m ran_edge.firmware.tflm_check FOLDER [N|all]`: the check in its own process."""
    check = _check_in_this_process(
        (folder / "model.tflite").read_bytes(), np.load(folder / "samples.npy"), first_batch
    )
    partial = folder / "result.json.partial"
    partial.write_text(json.dumps(asdict(check)))
    partial.replace(folder / "result.json")  # the parent never reads a half-written result


if __name__ == "__main__":
    _batch = sys.argv[2] if len(sys.argv) > 2 else "all"
    _child(Path(sys.argv[1]), None if _batch == "all" else int(_batch))
