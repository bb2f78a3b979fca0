"""--remote, for real: an OpenSSH server started on 127.0.0.1 by the test, key login only.

The "board" is this machine; its python is this venv's (--remote-python), so the measurement
script that ran-edge copies over runs exactly as it would on a Raspberry Pi. Skipped, with
the reason, only when sshd is not installed or will not start.
"""

from __future__ import annotations

import getpass
import glob
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from helpers import run_cli

from ran_edge.report.json_report import SCHEMA_FILE
from ran_edge.report.metrics import metric_value
from ran_edge.targets.cortex_a.spec import usable_value
from ran_edge.targets.loading import TARGET_PATH_ENV, load_target_file

SSHD = Path("/usr/sbin/sshd")
INT8_MODEL = Path("ethos-u55-128") / "digits_net_make_net_int8.tflite"


@dataclass(frozen=True)
class Sshd:
    port: int
    key: Path
    known_hosts: Path

    @property
    def remote(self) -> str:
        return f"{getpass.getuser()}@127.0.0.1:{self.port}"

    def args(self, python: str = sys.executable) -> list:
        return [
            "--remote",
            self.remote,
            "--identity",
            self.key,
            "--remote-python",
            python,
            "--ssh-option",
            f"UserKnownHostsFile={self.known_hosts}",
            "--ssh-option",
            "GlobalKnownHostsFile=/dev/null",
        ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, proc: subprocess.Popen, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not SSHD.is_file() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server openssh-client)")
    folder = tmp_path_factory.mktemp("sshd")
    host_key, key = folder / "host_key", folder / "client_key"
    for path in (host_key, key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    authorized = folder / "authorized_keys"
    authorized.write_text((folder / "client_key.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {folder / 'sshd.pid'}",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    proc = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not _wait_for(port, proc):
        proc.kill()
        reason = (proc.communicate(timeout=5)[1] or "").strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"sshd did not start on 127.0.0.1:{port}: {reason[0]}")
    yield Sshd(port, key, folder / "known_hosts")
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(autouse=True)
def _no_user_targets(monkeypatch):
    monkeypatch.delenv(TARGET_PATH_ENV, raising=False)


def _remote_dirs() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "ran-edge.*")))


def _error(result) -> str:
    return " ".join(result.stderr.split())


def _nothing_written(out: Path) -> bool:
    """No file under `out` (the empty folder itself may remain, as for any failed build)."""
    return not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_measures_over_ssh(sshd, digits_build, tmp_path):
    model = digits_build.model_dir / INT8_MODEL
    out = tmp_path / "out"
    before = _remote_dirs()
    result = run_cli(
        "profile", model, "--target", "host", *sshd.args(), "--threads", 1, "--runs", 5,
        "--warmup", 1, "--out", out, "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(SCHEMA_FILE.read_text()))
    cpu = report["cpu"]
    assert cpu["mode"] == "measured" and cpu["where"] == sshd.remote
    assert cpu["measurement"]["runs"] == 5 and cpu["measurement"]["machine"]["hostname"]
    latency = next(m for m in report["metrics"] if m["name"] == "latency")
    assert latency["source"] == "measured" and latency["value"] > 0
    assert metric_value(report["metrics"], "peak_memory") > 0
    assert _remote_dirs() == before, "the remote temp folder must be removed"
    assert sshd.known_hosts.is_file()  # the host key went to the file we named, not ~/.ssh


def test_build_measures_the_board_remotely_and_the_host_here(sshd, digits_model, tmp_path):
    out = tmp_path / "out"
    args = ["build", "--model", digits_model.spec, "--weights", digits_model.weights]
    args += ["--calib", digits_model.calib, "--calib-samples", 8, "--holdout", 4]
    args += ["--target", "rpi4", "--target", "host", *sshd.args(), "--runs", 3, "--warmup", 1]
    result = run_cli(*args, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    folder = out / "digits_net_make_net"
    rpi4 = json.loads((folder / "rpi4" / "report.json").read_text())
    host = json.loads((folder / "host" / "report.json").read_text())
    assert rpi4["cpu"]["mode"] == "measured" and rpi4["cpu"]["where"] == sshd.remote
    assert host["cpu"]["mode"] == "measured" and host["cpu"]["where"] == "local"
    assert "targets side by side" in result.stdout


def test_board_without_litert(sshd, digits_build, tmp_path, python_without_litert):
    out = tmp_path / "out"
    before = _remote_dirs()
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli(
        "profile", model, "--target", "host", *sshd.args(python_without_litert), "--out", out, "-q"
    )
    assert result.exit_code == 2, result.output
    message = _error(result)
    assert f"cannot measure on {sshd.remote}" in message
    assert "is not installed for" in message and "pip install" in message
    assert "--remote-python" in message
    assert "Traceback" not in result.output
    assert _nothing_written(out)
    assert _remote_dirs() == before


def test_unreachable_remote(digits_build, tmp_path):
    out = tmp_path / "out"
    port = _free_port()  # nothing listens there
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli(
        "profile", model, "--target", "rpi4", "--remote", f"pi@127.0.0.1:{port}",
        "--connect-timeout", 3, "--ssh-option", "GlobalKnownHostsFile=/dev/null",
        "--out", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    message = _error(result)
    assert f"cannot reach pi@127.0.0.1:{port} over SSH" in message
    assert "Connection refused" in message or "connect" in message
    assert _nothing_written(out)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("pi@board:99999", "port 99999 is not in 1..65535"),
        ("pi@@board", "is not user@host[:port]"),
        ("pi@board:22/x", "is not user@host[:port]"),
    ],
)
def test_malformed_remote(digits_build, tmp_path, spec, words):
    out = tmp_path / "out"
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli("profile", model, "--target", "rpi4", "--remote", spec, "--out", out)
    assert result.exit_code == 2
    assert words in _error(result)
    assert not out.exists()


def test_remote_needs_a_cpu_target(digits_build, tmp_path):
    out = tmp_path / "out"
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli(
        "profile", model, "--target", "ethos-u55-128", "--remote", "pi@board", "--out", out
    )
    assert result.exit_code == 2
    assert "--remote measures a CPU target" in _error(result)
    assert not out.exists()


@pytest.mark.slow  # builds the quick micro-benchmarks: seconds of the real converter
def test_calibrate_target_over_ssh(sshd, tmp_path):
    path = tmp_path / "host.toml"
    before = _remote_dirs()
    result = run_cli(
        "calibrate-target", "--target", "host", "--quick", *sshd.args(), "--out", path,
        "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert fit["out"] == str(path) and path.is_file()
    assert fit["timings"] and all(t["measured_ms"] > 0 for t in fit["timings"])
    from ran_edge.targets.cortex_a.microbench import select, stacks

    # the quick micro-benchmarks and the quick random stacks, each at every thread count
    n_models = len(select(quick=True)) + len(stacks(quick=True))
    assert len(fit["timings"]) == fit["fit"]["samples"] == n_models * len(fit["threads"])
    # the band comes from the stacks, each predicted by a fit that held it out
    assert fit["band"]["samples"] == len(stacks(quick=True)) * len(fit["threads"])
    assert 0 < fit["band"]["low"] <= fit["band"]["high"] and fit["band"]["coverage"] == 0.9
    assert all(usable_value(k, v) for k, v in fit["params"].items()), fit["params"]
    assert math.isfinite(fit["fit"]["median_abs_pct_error"])
    target = load_target_file(path)
    assert target.name == "host" and target.cpu_model.fitted
    assert sshd.remote in target.cpu_model.source  # the board timed it, not this machine
    assert target.cpu_model.band is not None and sshd.remote in target.cpu_model.band.source
    assert target.cpu_model.band.samples == fit["band"]["samples"]
    assert _remote_dirs() == before, "the remote temp folder must be removed"


def test_calibrate_target_unreachable_remote(tmp_path):
    path = tmp_path / "rpi4.toml"
    port = _free_port()  # nothing listens there
    start = time.monotonic()
    result = run_cli(
        "calibrate-target", "--target", "rpi4", "--remote", f"pi@127.0.0.1:{port}",
        "--connect-timeout", 3, "--ssh-option", "GlobalKnownHostsFile=/dev/null",
        "--out", path, "-q",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    message = _error(result)
    assert f"cannot reach pi@127.0.0.1:{port} over SSH" in message
    assert "Connection refused" in message or "connect" in message
    assert not path.exists() and list(tmp_path.iterdir()) == []
    assert time.monotonic() - start < 30  # checked before building the benchmarks


def test_calibrate_target_board_without_litert(sshd, tmp_path, python_without_litert):
    path = tmp_path / "host.toml"
    result = run_cli(
        "calibrate-target", "--target", "host", "--quick", *sshd.args(python_without_litert),
        "--out", path, "-q",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    message = _error(result)
    assert f"cannot measure on {sshd.remote}" in message
    assert "pip install ai-edge-litert numpy" in message and "--remote-python" in message
    assert not path.exists()


def test_calibrate_target_identity_needs_remote(sshd, tmp_path):
    result = run_cli(
        "calibrate-target", "--target", "host", "--identity", sshd.key, "--out", tmp_path / "x"
    )
    assert result.exit_code == 2
    assert "only apply with --remote" in _error(result)
