"""Vela's process, started ahead of time: it imports Vela while the caller is still loading,
then runs the one compile it is sent, exactly as `python -m ethosu.vela ARGS` would (fresh
process, same entry point, same output), so crash isolation and byte-identical logs stay.

`ran-edge profile` starts one first thing (`prestart`), and a build starts one per Ethos-U
target before it converts, which takes Vela's ~0.4 s of imports off the path after the
model is quantized; a compile with none waiting gets a fresh process (`take`). A worker that
is never sent a compile exits when its parent does (its stdin closes). Light on purpose: no
Vela and no ran_edge imports at module level.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

MAX_SPARES = 8  # pre-started workers kept at most (a failed build may leave some unused)
_spares: list[subprocess.Popen] = []
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
    """Start a worker now (it begins importing Vela) for a later `take`."""
    with _lock:
        _spares[:] = [p for p in _spares if p.poll() is None]
        if len(_spares) < MAX_SPARES:
            _spares.append(_spawn())


def take() -> subprocess.Popen:
    """A worker for one compile: a pre-started one when there is one, else a fresh one."""
    with _lock:
        while _spares:
            proc = _spares.pop(0)
            if proc.poll() is None:
                return proc
    return _spawn()


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
