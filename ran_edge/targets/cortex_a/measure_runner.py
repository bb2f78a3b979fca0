"""Run ran_edge/targets/cortex_a/measure.py in a fresh process, here or on a board, and read its JSON.

A fresh process per model keeps the peak-memory figure (VmHWM) the model's own. The same
file runs remotely, so a figure measured on a Raspberry Pi and one measured here come from
identical code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ran_edge.errors import StageError, UsageError
from ran_edge.targets.cortex_a import measure as measure_module
from ran_edge.targets.cortex_a.remote import RemoteHost, copy_to, make_remote_dir, run_in
from ran_edge.targets.cortex_a.streaming import run_streaming

MEASURE_SCRIPT = Path(measure_module.__file__)
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Measurement:
    """What one measurement run produced (latencies in ms, memory in KiB)."""

    where: str  # "local" or user@host[:port]
    threads: int
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
    xnnpack_partitions: int
    machine: dict

    @property
    def inferences_per_second(self) -> float:
        return 1e3 / self.median_ms

    @classmethod
    def from_json(cls, data: dict, where: str) -> Measurement:
        lat = data["latency_ms"]
        return cls(
            where=where,
            threads=int(data["threads"]),
            runs=int(data["runs"]),
            warmup=int(data["warmup"]),
            median_ms=float(lat["median"]),
            p90_ms=float(lat["p90"]),
            mean_ms=float(lat["mean"]),
            min_ms=float(lat["min"]),
            max_ms=float(lat["max"]),
            peak_rss_delta_kib=int(data["memory"]["peak_rss_delta_kib"]),
            init_ms=float(data["init_ms"]),
            runtime=str(data["runtime"]),
            runtime_version=str(data["runtime_version"]),
            xnnpack_partitions=int(data["delegate"]["partitions"]),
            machine=dict(data["machine"]),
        )


def _args(model_name: str, threads: int, runs: int, warmup: int) -> list[str]:
    return [model_name, "--threads", str(threads), "--runs", str(runs)] + [
        "--warmup",
        str(warmup),
        "--json",
        "--progress",
    ]


def _progress_reader(progress: Progress | None) -> Callable[[str], bool]:
    def on_line(line: str) -> bool:
        if not line.startswith(measure_module.PROGRESS_PREFIX):
            return False
        if progress is not None:
            _, done, total = line.split()
            progress(int(done), int(total))
        return True

    return on_line


def _parse(stdout: str, stderr_tail: str, where: str) -> dict:
    """The measure script's JSON object, or the right error for what went wrong."""
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise StageError(f"the measurement on {where} printed no result: {stderr_tail}")
    data = json.loads(lines[-1])
    if data.get("ok"):
        return data
    if data.get("error") == "no_runtime":
        hint = " (pass --remote-python for another interpreter)" if where != "local" else ""
        raise UsageError(f"cannot measure on {where}: {data['message']}{hint}")
    raise StageError(f"the measurement on {where} failed: {data.get('message', data)}")


def measure_local(
    model: Path, threads: int, runs: int, warmup: int, progress: Progress | None = None
) -> Measurement:
    """Measure on this machine, in a fresh interpreter running the measure script directly."""
    command = [sys.executable, str(MEASURE_SCRIPT), *_args(str(model), threads, runs, warmup)]
    done = run_streaming(command, _progress_reader(progress))
    return Measurement.from_json(_parse(done.stdout, done.last_error_line(), "local"), "local")


def measure_remote(
    model: Path,
    remote: RemoteHost,
    threads: int,
    runs: int,
    warmup: int,
    progress: Progress | None = None,
) -> Measurement:
    """Copy model + measure script to the board, run them with its python, clean up."""
    folder = make_remote_dir(remote)
    copy_to(remote, [model, MEASURE_SCRIPT], folder)
    argv = [remote.python, MEASURE_SCRIPT.name, *_args(model.name, threads, runs, warmup)]
    done = run_streaming(remote.ssh(run_in(remote, folder, argv)), _progress_reader(progress))
    if done.returncode == 255:
        raise UsageError(
            f"lost the SSH connection to {remote.label} while measuring: {done.last_error_line()}"
        )
    if done.returncode == 127:
        raise UsageError(
            f"{remote.label} has no `{remote.python}` ({done.last_error_line()}); install "
            "python3 there or name the interpreter with --remote-python."
        )
    return Measurement.from_json(
        _parse(done.stdout, done.last_error_line(), remote.label), remote.label
    )
