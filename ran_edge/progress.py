"""How the library reports progress without knowing about terminals: a `BuildProgress` is two
context managers, a stage (a spinner, a tick and its time) and a measurement (a bar over timed
runs). The CLI supplies a rich one; the default is silent."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Protocol

# Called as done, total while a CPU target is being timed.
MeasureUpdate = Callable[[int, int], None]


class BuildProgress(Protocol):
    def stage(self, label: str) -> contextlib.AbstractContextManager[None]: ...

    def measure(self, label: str) -> contextlib.AbstractContextManager[MeasureUpdate | None]: ...

    def note(self, message: str) -> None: ...


class Silent:
    """No output: what library callers (tests, benchmarks, advise) get by default."""

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[None]:
        yield

    @contextlib.contextmanager
    def measure(self, label: str) -> Iterator[MeasureUpdate | None]:
        yield None

    def note(self, message: str) -> None:
        pass


SILENT = Silent()
