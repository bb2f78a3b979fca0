"""Keep the converters' own chatter (C++ logs, tqdm bars, warnings) out of the user's terminal.

litert-torch, the TFLite converter and ai-edge-quantizer print from native code straight to
file descriptors 1 and 2, so redirecting `sys.stdout` is not enough: the descriptors are
pointed at a temporary file for the duration, and its text is kept for error messages.
ran-edge's own progress writes to `progress_stream()`, a duplicate of the terminal's stderr
taken before any redirection, so it stays visible.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

_progress: TextIO | None = None


def progress_stream() -> TextIO:
    """A text stream on the original stderr that `captured_output` does not swallow."""
    global _progress
    if _progress is None:
        try:
            _progress = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
            atexit.register(_progress.close)
        except (AttributeError, OSError, ValueError):  # no real fd (e.g. under a test runner)
            _progress = sys.stderr
    return _progress


@dataclass
class Captured:
    text: str = field(default="")

    def tail(self, lines: int = 8) -> str:
        return "\n".join(self.text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def captured_output() -> Iterator[Captured]:
    """Send fds 1 and 2 (and Python warnings) to a temp file while the block runs."""
    captured = Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    # The process's own descriptors, whatever sys.stdout is at the moment (a test runner's
    # capture, click's CliRunner): native code writes to these.
    fds = (1, 2)
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip(fds, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.text = sink.read().decode(errors="replace")
