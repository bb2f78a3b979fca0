"""The light commands answer without loading torch, litert-torch or TensorFlow (seconds saved
on every call), and an Ethos-U `profile` of a .tflite needs none of them either."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import BUILD_TARGETS

HEAVY = ("torch", "litert_torch", "tensorflow")
PROBE = (
    "import sys\nfrom ran_edge.cli import main\n"
    "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
    f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    "print('EXIT:', code)"
)


def loaded_heavy(*args: str) -> tuple[list[str], str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, check=True
    )
    lines = out.stdout.splitlines()
    heavy = next(line for line in reversed(lines) if line.startswith("HEAVY:"))
    exit_line = lines[-1]
    return [m for m in heavy.removeprefix("HEAVY:").split(",") if m], exit_line


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["targets"],
        ["targets", "--json"],
        ["models"],
        ["regress", "--help"],
        ["report", "--help"],
        ["build", "--help"],
        ["profile", "--help"],
        ["repnas", "--help"],
    ],
)
def test_light_commands_import_no_heavy_package(args):
    heavy, exit_line = loaded_heavy(*args)
    assert exit_line == "EXIT: 0"
    assert heavy == []


def test_report_and_ethos_u_profile_import_no_heavy_package(digits_build, tmp_path):
    heavy, exit_line = loaded_heavy("report", digits_build.model_dir, "--out", tmp_path / "r.html")
    assert (exit_line, heavy) == ("EXIT: 0", [])
    model = digits_build.model_dir / BUILD_TARGETS[0] / "digits_net_make_net_int8.tflite"
    heavy, exit_line = loaded_heavy("profile", model, "--out", tmp_path / "p", "-q")
    assert (exit_line, heavy) == ("EXIT: 0", [])
    assert (tmp_path / "p" / model.stem / "ethos-u55-128" / "report.json").is_file()
