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


def vela_crash(value: int) -> int:
    """Raises the error a crashed Vela raises (it must survive the trip between processes)."""
    from ran_edge.targets.ethos_u.vela import VelaCrash

    raise VelaCrash(f"Vela crashed on job {value}", -11)


def fail_first(value: int) -> int:
    """Job 0 fails at once; the others take a moment and succeed."""
    import time

    if value == 0:
        raise UsageError("job 0 refused")
    time.sleep(0.2)
    return 2 * value
