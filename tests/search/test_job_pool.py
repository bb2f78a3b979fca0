"""The local side of the job pool: results by job, a dead worker replaced, Ray never imported
without an address, and a bad or silent --ray address refused before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import run_cli
from pool_jobs import collect, die_once, double
from ray_cluster import free_port

from ran_edge.errors import UsageError
from ran_edge.jobs import JobPool


def test_local_processes_return_every_result_by_job():
    jobs = [(v,) for v in range(5)]
    assert collect(JobPool(2), double, jobs) == collect(JobPool(1), double, jobs)
    assert collect(JobPool(2), double, jobs) == {i: 2 * i for i in range(5)}


def test_a_local_worker_that_dies_is_replaced_and_its_job_rerun(tmp_path):
    jobs = [(str(tmp_path / "died"), v) for v in range(4)]
    assert collect(JobPool(2), die_once, jobs) == {i: 2 * i for i in range(4)}
    assert (tmp_path / "died").exists()  # one worker really did die


def test_the_local_path_never_imports_ray():
    probe = (
        "import sys\nsys.path.insert(0, 'tests')\nfrom pool_jobs import collect, double\n"
        "from ran_edge.jobs import JobPool\nassert collect(JobPool(2), double, [(1,), (2,)])\n"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", [["search", "--target", "ethos-u55-128"], ["regress"]])
def test_an_address_nothing_answers_at_is_one_readable_error(tmp_path, command):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli(
        *command, "--ray", address, "--cache-dir" if command[0] == "search" else "--out", tmp_path
    )
    assert result.exit_code == 2, result.output
    assert f"no Ray cluster answers at {address}" in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.rglob("*"))  # nothing was written


def test_ray_address_from_the_environment(tmp_path, monkeypatch):
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    result = run_cli("search", "--target", "ethos-u55-128", "--cache-dir", tmp_path)
    assert result.exit_code == 2
    assert f"no Ray cluster answers at {address}" in result.output


def test_an_address_that_is_not_host_port_is_refused():
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        JobPool(ray_address="my-cluster").check()


def test_a_jobs_own_error_is_raised_as_itself_not_as_a_dead_worker():
    from pool_jobs import vela_crash

    from ran_edge.targets.ethos_u.vela import VelaCrash

    # both jobs crash; whichever the pool hears of first is raised
    with pytest.raises(VelaCrash, match="Vela crashed on job [34]") as caught:
        JobPool(2).run(vela_crash, [(3,), (4,)], lambda *_: None)
    assert caught.value.returncode == -11


def test_after_a_failed_job_the_finished_results_are_still_stored():
    from pool_jobs import fail_first

    stored: dict[int, object] = {}
    with pytest.raises(UsageError, match="job 0 refused"):
        JobPool(2).run(fail_first, [(v,) for v in range(4)], stored.__setitem__)
    assert all(stored[i] == 2 * i for i in stored)  # what finished is kept, and right


def test_localhost_addresses_are_checked_too():
    with pytest.raises(UsageError, match="no Ray cluster answers at localhost"):
        JobPool(ray_address=f"localhost:{free_port()}").check()
