"""Jobs on a real local Ray cluster (a head and a worker node, separate processes) give the
same results, byte for byte, as local processes; dead workers are retried; errors read well."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli
from pool_jobs import collect, die_once, double, refuse
from ray_cluster import local_ray_cluster, ray_executable

from ran_edge.errors import UsageError
from ran_edge.jobs import JobPool
from ran_edge.models.ran_e_space import Slot
from ran_edge.search import COLLAPSED, Candidate, CostTable

TESTS_DIR = Path(__file__).resolve().parents[1]
TARGET = "ethos-u55-128"
SLOT = Slot(16, 16, 8, 1)
K3 = Candidate("ir", 3, 2)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address():
    if ray_executable() is None:
        pytest.skip("Ray is not installed (pip install 'ran-edge[ray]'; make setup installs it)")
    with local_ray_cluster(TESTS_DIR) as address:
        yield address


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_cost_table_fill_on_ray_writes_the_same_bytes_as_locally(ray_address, tmp_path):
    pairs = [(SLOT, K3), (SLOT, COLLAPSED)]
    CostTable(TARGET, tmp_path / "local", pool=JobPool(1)).fill(pairs)
    CostTable(TARGET, tmp_path / "ray", pool=JobPool(ray_address=ray_address)).fill(pairs)
    local, on_ray = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert len([k for k in local if k.startswith("blocks/")]) == 2
    assert on_ray == local


def test_ray_results_match_local_processes(ray_address):
    jobs = [(v,) for v in range(6)]
    on_ray = collect(JobPool(ray_address=ray_address), double, jobs)
    assert on_ray == collect(JobPool(2), double, jobs) == {i: 2 * i for i in range(6)}


def test_a_ray_worker_that_dies_is_replaced_and_its_job_rerun(ray_address, tmp_path):
    jobs = [(str(tmp_path / "died"), v) for v in range(4)]
    assert collect(JobPool(ray_address=ray_address), die_once, jobs) == {i: 2 * i for i in range(4)}
    assert (tmp_path / "died").exists()  # one worker really did die


def test_a_jobs_own_error_comes_back_as_it_was_raised(ray_address):
    with pytest.raises(UsageError, match="job 1 refused"):
        JobPool(ray_address=ray_address).run(refuse, [(1,)], lambda *_: None)


def test_regress_builds_on_ray_give_the_local_baseline(ray_address, tmp_path, digits_model):
    (tmp_path / "net.py").write_text(
        "from torch import nn\nINPUT_SHAPE = (1, 1, 32, 32)\n\n"
        "def make():\n    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),\n"
        "        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))\n"
    )
    config = tmp_path / "regress.toml"
    config.write_text(
        f'calib_samples = 8\n[[models]]\nname = "net"\nspec = "{tmp_path / "net.py"}:make"\n'
        f'calib = "{digits_model.calib}"\ntargets = ["ethos-u55-128", "ethos-u65-256"]\n'
    )

    def update(baseline: str, *extra: str):
        return run_cli("regress", "--config", config, "--baseline", tmp_path / baseline,
                       "--out", tmp_path / baseline.removesuffix(".json"), "--update", "-q",
                       *extra)  # fmt: skip

    local = update("local.json")
    assert local.exit_code == 0, local.output
    result = update("ray.json", "--ray", ray_address)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ray.json").read_bytes() == (tmp_path / "local.json").read_bytes()
