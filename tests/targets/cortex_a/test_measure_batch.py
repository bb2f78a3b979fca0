"""measure.py's batch mode (what `calibrate-target --remote` runs on the board), run as the
board runs it: a subprocess on the script file, on tiny int8 models written here with the
TFLite schema (milliseconds to build, no converter). Also measure_samples_remote end to end
through a "remote" whose ssh is a local shell, so the contract is checked without an sshd.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import pytest

from ran_edge.errors import UsageError
from ran_edge.targets.cortex_a import batch_timing
from ran_edge.targets.cortex_a import measure as measure_module
from ran_edge.targets.cortex_a.calibrate import Sample
from ran_edge.targets.cortex_a.remote import RemoteHost

SCRIPT = Path(measure_module.__file__)
PREFIX = measure_module.PROGRESS_PREFIX


def tiny_add(n: int) -> bytes:
    """An int8 model adding a [1, n] input to itself: one ADD, a valid .tflite."""
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    model.buffers = [s.BufferT()]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = 2
    model.operatorCodes = [code]
    tensors = []
    for name in ("x", "y"):
        tensor = s.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = name, [1, n], s.TensorType.INT8, 0
        tensor.quantization = s.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [0.05], [0]
        tensors.append(tensor)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [op]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture
def models(tmp_path) -> list[Path]:
    paths = [tmp_path / "small.tflite", tmp_path / "large.tflite"]
    for path, n in zip(paths, (16, 4096), strict=True):
        path.write_bytes(tiny_add(n))
    return paths


def _run(*args, python: str = sys.executable) -> subprocess.CompletedProcess:
    command = [python, str(SCRIPT), *(str(a) for a in args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_batch_times_every_model_at_every_thread_count_in_rounds(models):
    done = _run(
        "--batch", *models, "--threads-list", "1,2", "--rounds", 3, "--min-seconds", 0.01,
        "--json", "--progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1  # one JSON object, nothing else
    data = json.loads(done.stdout)
    assert data["ok"] and data["schema"] == "ran-edge/measure-batch"
    assert (data["rounds"], data["runs"], data["warmup"]) == (3, 5, 3)  # calibrate's figures
    order = [(t["index"], t["model"], t["threads"]) for t in data["timings"]]
    assert order == [
        (0, "small.tflite", 1),
        (0, "small.tflite", 2),
        (1, "large.tflite", 1),
        (1, "large.tflite", 2),
    ]
    for timing in data["timings"]:
        rounds = sorted(timing["rounds_ms"])
        assert len(rounds) == 3 and rounds[0] > 0
        assert timing["median_ms"] == rounds[1]  # the median over rounds
        assert timing["best_ms"] == min(timing["rounds_ms"])  # what calibrate fits
    # one progress line before each model of each pass, then a closing one
    progress = [line.split() for line in done.stderr.splitlines() if line.startswith(PREFIX)]
    assert [(int(d), int(t)) for _, d, t in progress] == [(i, 6) for i in range(7)]


def test_batch_median_of_an_even_number_of_rounds_is_the_midpoint(models):
    done = _run("--batch", models[0], "--rounds", 2, "--min-seconds", 0, "--json")
    assert done.returncode == 0, done.stderr
    (timing,) = json.loads(done.stdout)["timings"]
    assert timing["threads"] == 1  # --threads-list defaults to 1
    assert timing["median_ms"] == pytest.approx(sum(timing["rounds_ms"]) / 2)
    assert timing["best_ms"] == min(timing["rounds_ms"])


def test_batch_text_output(models):
    done = _run("--batch", *models, "--rounds", 1, "--min-seconds", 0)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("small.tflite: median ")


def test_batch_unloadable_model_exits_4_naming_it(models, tmp_path):
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer at all")
    done = _run("--batch", models[0], broken, "--rounds", 1, "--min-seconds", 0, "--json")
    assert done.returncode == measure_module.EXIT_BAD_MODEL
    data = json.loads(done.stdout)
    assert data == {"ok": False, "error": "bad_model", "message": data["message"]}
    assert "broken.tflite" in data["message"]


def test_batch_missing_file_exits_4(tmp_path):
    done = _run("--batch", tmp_path / "absent.tflite", "--json")
    assert done.returncode == measure_module.EXIT_BAD_MODEL
    assert "absent.tflite" in json.loads(done.stdout)["message"]


def test_batch_without_runtime_exits_3(models, python_without_litert):
    done = _run("--batch", *models, "--json", python=python_without_litert)
    assert done.returncode == measure_module.EXIT_NO_RUNTIME
    assert json.loads(done.stdout)["error"] == "no_runtime"


@pytest.mark.parametrize(
    "args",
    [
        ["--batch", "a.tflite", "--threads", "2"],
        ["a.tflite", "--batch", "b.tflite"],
        ["a.tflite", "--threads-list", "1,2"],
        ["a.tflite", "--rounds", "2"],
        ["--batch", "a.tflite", "--threads-list", "0"],
        ["--batch", "a.tflite", "--min-seconds", "-1"],
        ["--batch", "a.tflite", "--min-seconds", "inf"],
        [],
    ],
)
def test_bad_arguments_exit_2(args):
    assert _run(*args).returncode == 2


def test_single_model_mode_is_unchanged(models):
    done = _run(models[0], "--threads", 1, "--runs", 3, "--warmup", 1, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["schema"] == "ran-edge/measure" and data["runs"] == 3 and data["warmup"] == 1
    assert data["threads"] == 1 and data["model"] == "small.tflite"


# measure_samples_remote through a local shell standing in for ssh


@dataclass(frozen=True)
class LocalShell(RemoteHost):
    """A RemoteHost whose `ssh` runs the command in a local shell (no sshd needed)."""

    def ssh(self, remote_command: str) -> list[str]:
        return ["sh", "-c", remote_command]


@pytest.fixture
def local_board(monkeypatch, tmp_path):
    board = tmp_path / "board"
    board.mkdir()

    def make_dir(_remote: RemoteHost) -> str:
        folder = board / "ran-edge.work"
        folder.mkdir()
        return str(folder)

    def copy(_remote: RemoteHost, files: list[Path], folder: str) -> None:
        for file in files:
            (Path(folder) / file.name).write_bytes(file.read_bytes())

    monkeypatch.setattr(batch_timing, "make_remote_dir", make_dir)
    monkeypatch.setattr(batch_timing, "copy_to", copy)
    return board


def test_measure_samples_remote_keeps_measure_samples_contract(local_board):
    models = [
        ("add/16 odd name", tiny_add(16), ()),
        ("add_4096", tiny_add(4096), ()),
    ]
    calls = []
    samples = batch_timing.measure_samples_remote(
        LocalShell("board", python=sys.executable),
        models,
        (1, 2),
        lambda done, total: calls.append((done, total)),
        rounds=2,
        min_seconds=0.0,
    )
    assert [(s.name, s.threads) for s in samples] == [
        ("add/16 odd name", 1),
        ("add/16 odd name", 2),
        ("add_4096", 1),
        ("add_4096", 2),
    ]
    assert all(isinstance(s, Sample) and s.measured_ms > 0 for s in samples)
    assert all(math.isfinite(s.measured_ms) for s in samples)
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4)]  # as measure_samples calls on_model
    assert list(local_board.iterdir()) == []  # the remote folder is removed


def test_measure_samples_remote_without_runtime_names_the_fix(local_board, python_without_litert):
    remote = LocalShell("board", python=python_without_litert)
    with pytest.raises(UsageError) as info:
        batch_timing.measure_samples_remote(remote, [("a", tiny_add(16), ())], (1,))
    message = str(info.value)
    assert "cannot measure on board" in message and "\n" not in message
    assert "pip install ai-edge-litert numpy" in message and "--remote-python" in message
    assert list(local_board.iterdir()) == []


def test_measure_samples_remote_without_python_names_the_fix(local_board):
    remote = LocalShell("board", python="/nonexistent/python3")
    with pytest.raises(UsageError, match="has no `/nonexistent/python3`.*--remote-python"):
        batch_timing.measure_samples_remote(remote, [("a", tiny_add(16), ())], (1,))
