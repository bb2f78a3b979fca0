"""A real local Ray cluster for tests: a head and one worker node, each its own `ray start`
process on 127.0.0.1 with a private temp folder, torn down with its whole process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 10
OBJECT_STORE_BYTES = 100_000_000  # Ray's minimum is ~75 MB; the default takes 30% of RAM


def ray_executable() -> str | None:
    path = Path(sys.executable).parent / "ray"
    return str(path) if path.is_file() else shutil.which("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not listen on {port} in {START_TIMEOUT_S} s")


def _wait_for_nodes(address: str, count: int) -> None:
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while sum(n["Alive"] for n in ray.nodes()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Ray worker node did not join in {START_TIMEOUT_S} s")
            time.sleep(0.5)
    finally:
        ray.shutdown()


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # raylet, GCS and workers share the group
    process.wait()


@contextlib.contextmanager
def local_ray_cluster(extra_pythonpath: Path) -> Iterator[str]:
    """Start the cluster; yield its address (HOST:PORT). Workers can import modules in
    `extra_pythonpath` (the tests' job functions)."""
    ray = ray_executable()
    if ray is None:
        raise RuntimeError("no `ray` executable next to this Python")
    tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must be short
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(extra_pythonpath), env.get("PYTHONPATH")])
    )
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # A private cluster on 127.0.0.1: without this, a token another Ray use left in
    # ~/.ray/auth_token switches the new head to token auth that the test's driver lacks.
    env["RAY_AUTH_MODE"] = "disabled"
    common = [
        "--block",
        "--num-cpus=1",
        "--disable-usage-stats",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--node-ip-address=127.0.0.1",
    ]
    processes: list[subprocess.Popen] = []

    def start(args: list[str], log_name: str) -> subprocess.Popen:
        log = tmp / log_name
        with log.open("w") as out:
            process = subprocess.Popen(
                [ray, "start", *args, *common],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        return process

    address = f"127.0.0.1:{port}"
    try:
        head = start(
            ["--head", f"--port={port}", f"--temp-dir={tmp}", "--include-dashboard=false"],
            "head.log",
        )
        _wait_for_port(port, head, tmp / "head.log")
        start([f"--address={address}"], "worker.log")
        _wait_for_nodes(address, 2)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(tmp, ignore_errors=True)
