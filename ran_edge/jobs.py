"""Independent jobs run in local processes, or as Ray tasks when a cluster address is given.

Cost-table fills, `advise` compilations, `search --fit` and `regress` all hand a module-level
function and a list of argument tuples to `JobPool.run`. Both paths call the same function
with the same arguments, and every result comes back to the calling process, which stores
it as it arrives (`on_result`): results are identical either way, and a failure half-way
loses nothing already finished. Locally, a worker process that dies is replaced and its
jobs rerun (twice at most); on Ray, the cluster retries a task whose worker died.

Ray is optional (`pip install ran-edge[ray]`) and imported only when an address is given:
`--ray ADDRESS` on the commands, or the RAY_ADDRESS environment variable Ray itself reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from ran_edge.errors import StageError

# A local worker process that dies (killed, out of memory) is replaced this many times.
LOCAL_RETRIES = 2

OnResult = Callable[[int, Any], None]


@dataclass(frozen=True)
class JobPool:
    """Where jobs run: `workers` local processes (default: one per core) or a Ray cluster."""

    workers: int | None = None
    ray_address: str | None = None

    def check(self) -> None:
        """Fail now, before any work, on a Ray address nothing answers at (UsageError)."""
        if self.ray_address:
            from ran_edge.ray_jobs import check_reachable

            check_reachable(self.ray_address)

    @property
    def where(self) -> str:
        return f"Ray at {self.ray_address}" if self.ray_address else "local processes"

    def run(
        self,
        fn: Callable[..., Any],
        jobs: Sequence[tuple],
        on_result: OnResult,
        advance: Callable[[], None] = lambda: None,
    ) -> None:
        """Call `fn(*job)` for every job; `on_result(index, result)` in this process as each
        finishes (in completion order), then `advance()`. The first job error is raised."""
        if not jobs:
            return
        if self.ray_address:
            from ran_edge.ray_jobs import run_on_ray

            run_on_ray(self.ray_address, fn, jobs, on_result, advance)
            return
        workers = min(self.workers or os.cpu_count() or 1, len(jobs))
        if workers == 1:
            for index, job in enumerate(jobs):
                on_result(index, fn(*job))
                advance()
            return
        _run_in_processes(fn, jobs, workers, on_result, advance)


def _drain(
    futures: dict[Future, int],
    on_result: OnResult,
    pending: set[int],
    advance: Callable[[], None],
) -> BaseException | None:
    """Hand each result to `on_result` as it comes. After the first job error, queued jobs
    are cancelled, the running ones still stored, and that error returned (a dead worker,
    BrokenProcessPool, is raised at once: the caller replaces the pool)."""
    error: BaseException | None = None
    while futures:
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        for future in done:
            index = futures.pop(future)
            if future.cancelled():
                continue
            try:
                result = future.result()
            except BrokenProcessPool:
                raise
            except Exception as exc:
                if error is None:
                    error = exc
                    for queued in futures:
                        queued.cancel()
                continue
            on_result(index, result)
            pending.discard(index)
            advance()
    return error


def _run_in_processes(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int,
    on_result: OnResult,
    advance: Callable[[], None],
) -> None:
    """Spawned processes (torch and fork do not mix); a broken pool is replaced and only the
    unfinished jobs are resubmitted."""
    pending = set(range(len(jobs)))
    for attempt in range(LOCAL_RETRIES + 1):
        try:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures: dict[Future, int] = {pool.submit(fn, *jobs[i]): i for i in pending}
                error = _drain(futures, on_result, pending, advance)
            if error is not None:
                raise error
            return
        except BrokenProcessPool as exc:
            if attempt == LOCAL_RETRIES:
                raise StageError(
                    f"a worker process died {LOCAL_RETRIES + 1} times ({exc}); {len(pending)} "
                    "job(s) unfinished. Finished results are kept; rerun with fewer --workers "
                    "if memory is short."
                ) from None
