"""Cost-table fill time: local processes vs a Ray cluster with the same number of workers.

Fills the same RAN-e cost-table entries (slots at --resolution x every block candidate)
twice into empty caches: once with `--workers` local processes, once as Ray tasks on a
local cluster of a head and one worker node with one CPU each (2 worker processes, each its
own `ray start`, as tests/ray_cluster.py starts them). Both caches must hold the same bytes.
A full 224 table is ~130 entries (tens of minutes per fill on 2 cores); --slots takes the
first N slots to keep a run short.

    python benchmarks/ray_fill.py --slots 2            # 2 slots x 10 candidates at 224
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ray_cluster import local_ray_cluster  # noqa: E402

from ran_edge.jobs import JobPool  # noqa: E402
from ran_edge.models.ran_e_space import ran_e_slots  # noqa: E402
from ran_edge.search import ALL_BLOCK_CANDIDATES, CostTable  # noqa: E402


def fill_seconds(target: str, cache: Path, pairs: list, pool: JobPool) -> float:
    start = time.perf_counter()
    CostTable(target, cache, pool=pool).fill(pairs)
    return time.perf_counter() - start


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ethos-u55-128")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--slots", type=int, default=None, help="first N slots (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="local processes")
    args = parser.parse_args()

    slots = ran_e_slots(args.resolution)[: args.slots]
    pairs = [(s, c) for s in slots for c in ALL_BLOCK_CANDIDATES]
    with tempfile.TemporaryDirectory(prefix="ray-fill-") as tmp:
        root = Path(tmp)
        local_s = fill_seconds(args.target, root / "local", pairs, JobPool(args.workers))
        start = time.perf_counter()
        with local_ray_cluster(Path(__file__).resolve().parents[1] / "tests") as address:
            startup_s = time.perf_counter() - start
            ray_s = fill_seconds(args.target, root / "ray", pairs, JobPool(ray_address=address))
        same = files(root / "local") == files(root / "ray")

    table = Table(
        title=f"{len(pairs)} cost-table entries ({len(slots)} slots x "
        f"{len(ALL_BLOCK_CANDIDATES)} candidates) at {args.resolution} on {args.target}"
    )
    for col in ("path", "workers", "fill s", "vs local", "same bytes"):
        table.add_column(col)
    table.add_row("local processes", str(args.workers), f"{local_s:.1f}", "1.00x", "")
    table.add_row(
        "Ray (head + 1 worker node)", "2", f"{ray_s:.1f}", f"{local_s / ray_s:.2f}x", str(same)
    )
    Console().print(table)
    print(f"cluster start-up (not in the fill time): {startup_s:.1f} s")
    if not same:
        raise SystemExit("the two caches differ: Ray and local results must be the same bytes")


if __name__ == "__main__":
    main()
