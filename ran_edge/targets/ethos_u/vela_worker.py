"""Vela's process, started ahead of time: it imports Vela while the caller is still loading,
then runs the one compile it is sent, exactly as `python -m ethosu.vela ARGS` would (fresh
process, same entry point, same output), so crash isolation and byte-identical logs stay.

`ran-edge profile` starts one first thing (`prestart`), which takes Vela's ~0.4 s of
imports off the path; every other caller gets a fresh one per compile (`take`). A worker that
is never sent a compile exits when its parent does (its stdin closes). Light on purpose: no
Vela and no ran_edge imports at module level.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

_spare: subprocess.Popen | None = None
_lock = threading.Lock()


def _spawn() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ran_edge.targets.ethos_u.vela_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def prestart() -> None:
    """Start a worker now (it begins importing Vela) for the next `take`."""
    global _spare
    with _lock:
        if _spare is None or _spare.poll() is not None:
            _spare = _spawn()


def take() -> subprocess.Popen:
    """A worker for one compile: the pre-started one when there is one, else a fresh one."""
    global _spare
    with _lock:
        proc, _spare = _spare, None
    if proc is None or proc.poll() is not None:
        proc = _spawn()
    return proc


def request(argv: list[str], cwd: str) -> str:
    """The line a worker reads: Vela's arguments and the folder to run it in."""
    return json.dumps({"argv": argv, "cwd": cwd}) + "\n"


def _serve() -> int:
    from ethosu.vela.vela import main  # the import a pre-started worker does ahead of time

    line = sys.stdin.readline()
    if not line:
        return 0  # the parent finished without a compile for us
    job = json.loads(line)
    os.chdir(job["cwd"])
    sys.argv = ["vela", *job["argv"]]
    return main(job["argv"])


if __name__ == "__main__":
    sys.exit(_serve())
