"""Run a command, reading its stderr line by line as it comes (for progress), stdout whole."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str  # every stderr line that was not handed to `on_line` as progress

    def last_error_line(self) -> str:
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"


def run_streaming(
    command: Sequence[str],
    on_line: Callable[[str], bool] | None = None,
    *,
    stdin: int | None = subprocess.DEVNULL,
) -> Finished:
    """Run `command`; `on_line(line)` sees each stderr line and returns True if it consumed it.

    stdout is read on a thread so neither pipe can fill up and stall the child.
    """
    proc = subprocess.Popen(
        list(command),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    kept: list[str] = []
    for line in proc.stderr:
        if on_line is None or not on_line(line.rstrip("\n")):
            kept.append(line)
    proc.wait()
    reader.join()
    return Finished(proc.returncode, "".join(chunks), "".join(kept))
