"""Job functions the pool tests send to local processes and Ray workers (importable there)."""

from __future__ import annotations

import os
from pathlib import Path

from ran_edge.errors import UsageError


def collect(pool, fn, jobs) -> dict[int, object]:
    """`pool.run`'s results by job index."""
    results: dict[int, object] = {}
    pool.run(fn, jobs, results.__setitem__)
    return results


def double(value: int) -> int:
    return 2 * value


def die_once(marker: str, value: int) -> int:
    """Kills its own process the first time any job runs (as the OOM killer would)."""
    path = Path(marker)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return 2 * value
    os.close(fd)
    os._exit(1)


def refuse(value: int) -> int:
    raise UsageError(f"job {value} refused: a readable error travels back as it is")
