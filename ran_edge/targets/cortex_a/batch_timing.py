"""Time calibration models in one fresh measure.py process: here, or on a board over SSH.

Here (`measure_samples_here`): a process of its own, so nothing the calibration's build left
behind (the converter's thread pools, torch's spinning workers) shares the cores with the
timing; in the building process, 1-thread timings of whole networks came out up to 40% slow.
On a board (`measure_samples_remote`, `calibrate-target --remote`): one scp (the models and
measure.py) and one ssh call running the script's batch mode, instead of a connection per
model and thread count: a full calibration is ~100 timings, and an SSH handshake on a
Raspberry Pi costs a good part of a second. Both paths run the same batch mode (rounds
interleaved over the models), so a profile fitted remotely and one fitted on the board itself
come from the same procedure. Only the timing runs remotely; the fit runs here.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ran_edge.convert.tflite_ops import OpCost
from ran_edge.errors import StageError, UsageError
from ran_edge.targets.cortex_a import measure as measure_module
from ran_edge.targets.cortex_a.calibrate import Sample
from ran_edge.targets.cortex_a.remote import (
    SSH_UNREACHABLE,
    RemoteHost,
    _unreachable,
    copy_to,
    make_remote_dir,
    remove_remote_dir,
    run_in,
)
from ran_edge.targets.cortex_a.streaming import Finished, run_streaming

MEASURE_SCRIPT = Path(measure_module.__file__)
EXIT_NO_COMMAND = 127  # the shell's status when `--remote-python` does not exist there
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# Run by the board's python: its version and what measure.py needs that it lacks. Python 2
# syntax too, so an old interpreter answers instead of failing to parse.
_PROBE = """import sys
missing = []
for name in ("numpy", "ai_edge_litert.interpreter"):
    try:
        __import__(name)
    except Exception:
        missing.append(name.split(".")[0].replace("_", "-"))
print("%d.%d %s" % (sys.version_info[0], sys.version_info[1], " ".join(missing)))
"""


def check_board(remote: RemoteHost) -> None:
    """One ssh call: is the board reachable, with Python 3.8+, numpy and ai-edge-litert?

    Calibration builds its models for a minute before timing them; this fails in seconds."""
    command = remote.ssh(" ".join(shlex.quote(a) for a in [remote.python, "-c", _PROBE]))
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    errors = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    last_error = errors[-1] if errors else f"exit status {proc.returncode}"
    if proc.returncode == SSH_UNREACHABLE:
        raise _unreachable(remote, last_error)
    if proc.returncode == EXIT_NO_COMMAND:
        raise _no_python(remote, proc.stderr)
    answer = proc.stdout.strip().splitlines()[-1].split() if proc.stdout.strip() else []
    version = re.fullmatch(r"(\d+)\.(\d+)", answer[0]) if answer else None
    if proc.returncode != 0 or version is None:
        raise UsageError(
            f"`{remote.python}` on {remote.label} did not run a Python check ({last_error}); "
            "name a Python 3.8+ interpreter there with --remote-python."
        )
    missing = answer[1:]
    if (int(version[1]), int(version[2])) < (3, 8):
        raise UsageError(
            f"`{remote.python}` on {remote.label} is Python {version[0]}; the measurement needs "
            "3.8+: name a newer interpreter with --remote-python."
        )
    if missing:
        raise _no_runtime(remote, f"{' and '.join(missing)} not installed for {remote.python}")


def _no_python(remote: RemoteHost, stderr: str) -> UsageError:
    """The shell found no `remote.python` (exit 127); its own words, not a command-not-found
    handler's closing advice or ssh's known-hosts warning."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    name = Path(remote.python).name
    said = next((line for line in lines if name in line), lines[-1] if lines else "not found")
    return UsageError(
        f"{remote.label} has no `{remote.python}` ({said}); install python3 there or name "
        "the interpreter with --remote-python."
    )


def _no_runtime(remote: RemoteHost, what: str) -> UsageError:
    return UsageError(
        f"cannot measure on {remote.label}: {what}; run `{remote.python} -m pip install "
        "ai-edge-litert numpy` there (a 64-bit OS on a Raspberry Pi), or pass --remote-python "
        "for an interpreter that has both."
    )


def _file_name(index: int, name: str) -> str:
    """A name safe on any shell and filesystem, unique by its index prefix."""
    stem = _UNSAFE.sub("_", name).strip("._")[:60] or "model"
    return f"{index:03d}_{stem}.tflite"


def _progress_reader(
    on_model: Callable[[int, int], None] | None,
) -> Callable[[str], bool]:
    """Consumes the batch's progress lines and hands them to `on_model(done, total)`.

    `on_model` is called before each model of each pass, never with done == total, so the
    batch's closing line is swallowed."""

    def on_line(line: str) -> bool:
        if not line.startswith(measure_module.PROGRESS_PREFIX):
            return False
        parts = line.split()
        if on_model is not None and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            done, total = int(parts[1]), int(parts[2])
            if done < total:
                on_model(done, total)
        return True

    return on_line


def _result(done: Finished, remote: RemoteHost) -> dict:
    """The batch's JSON object, or a one-line error naming the fix."""
    where = remote.label
    if done.returncode == SSH_UNREACHABLE:
        raise UsageError(
            f"lost the SSH connection to {where} while timing the micro-benchmarks: "
            f"{done.last_error_line()}; check the board is up and run calibrate-target again."
        )
    if done.returncode == EXIT_NO_COMMAND:
        raise _no_python(remote, done.stderr)
    lines = [line for line in done.stdout.strip().splitlines() if line.startswith("{")]
    try:
        data = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        old_python = "SyntaxError" in done.stderr or "importlib.metadata" in done.stderr
        hint = (
            f"; `{remote.python}` there is older than Python 3.8: pass --remote-python for a "
            "newer one."
            if old_python
            else "."
        )
        raise StageError(
            f"timing the micro-benchmarks on {where} printed no result (exit "
            f"{done.returncode}): {done.last_error_line()}{hint}"
        )
    if data.get("ok"):
        return data
    message = str(data.get("message", data))
    if data.get("error") == "no_runtime":
        raise _no_runtime(remote, message.split(";")[0])
    if data.get("error") == "bad_model":
        raise StageError(
            f"LiteRT on {where} cannot run a micro-benchmark: {message}; upgrade it there "
            f"(`{remote.python} -m pip install -U ai-edge-litert`)."
        )
    raise StageError(f"timing the micro-benchmarks on {where} failed: {message}")


def _samples(
    data: dict,
    models: Sequence[tuple[str, bytes, tuple[OpCost, ...]]],
    names: Sequence[str],
    threads_list: Sequence[int],
    where: str,
) -> list[Sample]:
    """Samples in the models' order (each model, each thread count) from the batch JSON."""
    best: dict[tuple[int, int], float] = {}
    try:
        for timing in data["timings"]:
            index, threads = int(timing["index"]), int(timing["threads"])
            if not 0 <= index < len(names) or timing["model"] != names[index]:
                raise ValueError(f"timing for an unknown model {timing['model']!r}")
            best[(index, threads)] = float(timing["best_ms"])
        return [
            Sample(name, costs, threads, best[(i, threads)])
            for i, (name, _data, costs) in enumerate(models)
            for threads in threads_list
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise StageError(
            f"the timings from {where} do not match the models sent ({exc!r}); the copied "
            "measure.py and this ran-edge disagree, which should not happen: please report it."
        ) from None


def measure_samples_remote(
    remote: RemoteHost,
    models: Sequence[tuple[str, bytes, tuple[OpCost, ...]]],
    threads_list: Sequence[int],
    on_model: Callable[[int, int], None] | None = None,
    rounds: int = 3,
    min_seconds: float = 0.05,
) -> list[Sample]:
    """Times `models` at each thread count on the board at `remote` (UsageError if unreachable).

    One Sample per model and thread count, in that order, and `on_model(done, total)`
    called as each pass reaches each model. The remote temp folder is removed afterwards."""
    if not models or not threads_list:
        return []
    names = [_file_name(i, name) for i, (name, _data, _costs) in enumerate(models)]
    with tempfile.TemporaryDirectory(prefix="ran-edge-calibrate-") as tmp:
        files = []
        for file_name, (_name, data, _costs) in zip(names, models, strict=True):
            path = Path(tmp) / file_name
            path.write_bytes(data)
            files.append(path)
        folder = make_remote_dir(remote)
        copy_to(remote, [*files, MEASURE_SCRIPT], folder)  # removes the folder if it fails
    argv = [remote.python, MEASURE_SCRIPT.name, "--batch", *names]
    argv += ["--threads-list", ",".join(str(t) for t in threads_list)]
    argv += ["--rounds", str(rounds), "--min-seconds", repr(float(min_seconds))]
    argv += ["--json", "--progress"]
    done = run_streaming(remote.ssh(run_in(remote, folder, argv)), _progress_reader(on_model))
    if done.returncode == SSH_UNREACHABLE:
        # the remote shell died with the connection before its `rm -rf`: try once more
        remove_remote_dir(remote, folder)
    return _samples(_result(done, remote), models, names, threads_list, remote.label)


def measure_samples_here(
    models: Sequence[tuple[str, bytes, tuple[OpCost, ...]]],
    threads_list: Sequence[int],
    on_model: Callable[[int, int], None] | None = None,
    rounds: int = 3,
    min_seconds: float = 0.05,
    processes: int = 2,
) -> list[Sample]:
    """`measure_samples_remote` on this machine: the batch script in fresh processes.

    The passes are split over `processes` processes one after another, and each figure is the
    least any of them measured: on the development VM one process could run a model 40%
    slower in every pass than the next process did."""
    if not models or not threads_list:
        return []
    names = [_file_name(i, name) for i, (name, _data, _costs) in enumerate(models)]
    processes = max(1, min(processes, rounds))
    per_process = [rounds // processes + (i < rounds % processes) for i in range(processes)]
    best: list[Sample] | None = None
    done_before = 0
    with tempfile.TemporaryDirectory(prefix="ran-edge-calibrate-") as tmp:
        for file_name, (_name, data, _costs) in zip(names, models, strict=True):
            (Path(tmp) / file_name).write_bytes(data)
        for passes in per_process:
            argv = [sys.executable, str(MEASURE_SCRIPT), "--batch"]
            argv += [str(Path(tmp) / n) for n in names]
            argv += ["--threads-list", ",".join(str(t) for t in threads_list)]
            argv += ["--rounds", str(passes), "--min-seconds", repr(float(min_seconds))]
            argv += ["--json", "--progress"]

            def shifted(done: int, _total: int, offset: int = done_before) -> None:
                if on_model is not None:
                    on_model(offset + done, rounds * len(models))

            finished = run_streaming(argv, _progress_reader(shifted))
            lines = [line for line in finished.stdout.strip().splitlines() if line.startswith("{")]
            data = json.loads(lines[-1]) if lines else {}
            if not data.get("ok"):
                raise StageError(
                    f"timing the calibration models here failed (exit {finished.returncode}): "
                    f"{data.get('message') or finished.last_error_line()}"
                )
            samples = _samples(data, models, names, threads_list, "here")
            best = (
                samples
                if best is None
                else [
                    a if a.measured_ms <= b.measured_ms else b
                    for a, b in zip(best, samples, strict=True)
                ]
            )
            done_before += passes * len(models)
    return best or []
