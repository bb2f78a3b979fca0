"""Every bad input gives one clear message, the right exit code, and no partial artifact."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SQRT_NET, run_cli

from ran_edge.report.metrics import metric_value
from ran_edge.resources import shipped_dir
from ran_edge.targets.loading import TARGET_PATH_ENV

U55_128_TOML = shipped_dir("targets") / "ethos-u55-128.toml"
INT8_MODEL = Path("ethos-u55-128") / "digits_net_make_net_int8.tflite"
FLOAT_MODEL = Path("ethos-u55-128") / "digits_net_make_net_float.tflite"


@pytest.fixture(autouse=True)
def _no_user_targets(monkeypatch):
    monkeypatch.delenv(TARGET_PATH_ENV, raising=False)


def _flat(text: str) -> str:
    """Rich wraps the error at the console width: join the lines back with single spaces."""
    return " ".join(text.split())


def _squeezed(text: str) -> str:
    """No whitespace at all, for paths that rich may fold mid-word."""
    return "".join(text.split())


def assert_error(result, exit_code: int, *words: str, paths: tuple[str, ...] = ()) -> str:
    """One `error:` message on stderr naming `words` (and `paths`), nothing on stdout."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert result.stderr.count("error:") == 1, result.stderr
    assert result.stderr.lstrip().startswith("error:"), result.stderr
    message = _flat(result.stderr)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    for path in paths:
        assert _squeezed(path) in _squeezed(result.stderr), f"{path} not in {message!r}"
    return message


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def hidden_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*")) if folder.exists() else []


def assert_nothing_written(out: Path) -> None:
    assert files_under(out) == []
    assert hidden_under(out) == []


def digits_args(digits_model) -> list:
    return [
        "--model",
        digits_model.spec,
        "--weights",
        digits_model.weights,
        "--calib",
        digits_model.calib,
        "--calib-samples",
        8,
        "--holdout",
        4,
    ]


def build(*args, out: Path, target: str | Path = "ethos-u55-128"):
    return run_cli("build", *args, "--target", target, "--out", out, "-q")


def user_target(
    path: Path,
    name: str,
    system_config: str = "Ethos_U55_High_End_Embedded",
    memory_mode: str = "Shared_Sram",
) -> Path:
    text = U55_128_TOML.read_text()
    text = re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', text)
    text = re.sub(r"(?m)^aliases = .*$", "aliases = []", text)
    text = re.sub(r'(?m)^system_config = ".*"$', f'system_config = "{system_config}"', text)
    text = re.sub(r'(?m)^memory_mode = ".*"$', f'memory_mode = "{memory_mode}"', text)
    path.write_text(text)
    return path


# --- 1. unknown target -----------------------------------------------------------------------


@pytest.mark.parametrize("targets", [["ethos-u55-129"], ["ethos-u55-128", "ethos-u55-129"]])
def test_unknown_target_fails_before_any_work(tmp_path, monkeypatch, digits_model, targets):
    import ran_edge.build.many
    import ran_edge.calib
    import ran_edge.models

    def must_not_run(*args, **kwargs):
        raise AssertionError("work started before the targets were checked")

    for module, name in (
        (ran_edge.models, "load_model"),
        (ran_edge.calib, "load_calibration"),
        (ran_edge.build.many, "convert_model"),
    ):
        monkeypatch.setattr(module, name, must_not_run)
    out = tmp_path / "out"
    args = ["build", *digits_args(digits_model), "--out", out, "-q"]
    for target in targets:
        args += ["--target", target]
    result = run_cli(*args)
    assert_error(result, 2, "unknown target 'ethos-u55-129'", "Did you mean ethos-u55-128")
    assert not out.exists()


def test_unknown_target_in_profile(tmp_path, digits_build):
    out = tmp_path / "out"
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli("profile", model, "--target", "ethos-u65-265", "--out", out)
    assert_error(result, 2, "unknown target 'ethos-u65-265'", "ethos-u65-256")
    assert not out.exists()


def test_same_target_twice(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "build", "--target", "ethos-u55", "--target", "ethos-u55-128", "--out", out, "-q"
    )
    assert_error(result, 2, "ethos-u55-128 given twice")
    assert not out.exists()


# --- 2. model files --------------------------------------------------------------------------

MODEL_FILES = {
    "raises_on_import.py": "raise RuntimeError('broken on purpose')\n",
    "no_factory.py": "from torch import nn\n\n\ndef other():\n    return nn.Identity()\n",
    "factory_raises.py": "def make():\n    raise ValueError('bad config')\n",
    "not_a_module.py": "def make():\n    return 42\n",
}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        pytest.param("nope.py:make", ("model file nope.py does not exist",), id="missing-file"),
        pytest.param(
            "raises_on_import.py:make",
            ("importing", "failed with RuntimeError: broken on purpose"),
            id="import-raises",
        ),
        pytest.param(
            "no_factory.py:make", ("has no factory 'make'", "other"), id="factory-missing"
        ),
        pytest.param(
            "factory_raises.py:make",
            ("factory make()", "raised ValueError: bad config"),
            id="factory-raises",
        ),
        pytest.param(
            "not_a_module.py:make",
            ("returned int, not a torch.nn.Module",),
            id="not-a-module",
        ),
        pytest.param("net.pt", ("looks like a weights file", "--weights"), id="weights-as-model"),
    ],
)
def test_bad_model_file(tmp_path, monkeypatch, spec, words):
    for name, text in MODEL_FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = build("--model", spec, "--input-shape", "1,1,8,8", out=out)
    assert_error(result, 2, *words)
    assert not out.exists()


# --- 3. .pt2 and weights files ---------------------------------------------------------------


def test_corrupt_pt2(tmp_path):
    pt2 = tmp_path / "model.pt2"
    pt2.write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "out"
    result = build("--model", pt2, out=out)
    assert_error(result, 2, "is not a readable torch.export program", paths=(str(pt2),))
    assert not out.exists()


def test_corrupt_weights(tmp_path, digits_model):
    weights = tmp_path / "digits.pt"
    weights.write_bytes(np.random.default_rng(1).bytes(4096))
    out = tmp_path / "out"
    result = build("--model", digits_model.spec, "--weights", weights, out=out)
    assert_error(result, 2, "cannot read weights from", paths=(str(weights),))
    assert not out.exists()


def test_missing_weights(tmp_path, digits_model):
    out = tmp_path / "out"
    result = build("--model", digits_model.spec, "--weights", tmp_path / "no.pt", out=out)
    assert_error(result, 2, "weights file", "does not exist")
    assert not out.exists()


def test_weights_with_mismatched_keys(tmp_path, digits_model):
    state = torch.load(digits_model.weights, weights_only=True)
    state["head.weight"] = state.pop("classifier.weight")
    weights = tmp_path / "renamed.pt"
    torch.save(state, weights)
    out = tmp_path / "out"
    result = build("--model", digits_model.spec, "--weights", weights, out=out)
    assert_error(
        result,
        2,
        "do not match model digits_net_make_net",
        "missing 1 key (classifier.weight)",
        "unexpected 1 key (head.weight)",
    )
    assert not out.exists()


def test_weights_with_mismatched_shapes(tmp_path, digits_model):
    state = torch.load(digits_model.weights, weights_only=True)
    state["classifier.weight"] = torch.zeros(5, 32)
    state["classifier.bias"] = torch.zeros(5)
    weights = tmp_path / "five_classes.pt"
    torch.save(state, weights)
    out = tmp_path / "out"
    result = build("--model", digits_model.spec, "--weights", weights, out=out)
    assert_error(result, 2, "do not fit model digits_net_make_net", "classifier.weight")
    assert not out.exists()


# --- 4. input shapes -------------------------------------------------------------------------


def test_input_shape_that_does_not_fit_the_model(tmp_path, digits_model):
    out = tmp_path / "out"
    result = build(*digits_args(digits_model), "--input-shape", "1,3,32,32", out=out)
    assert_error(result, 2, "input shape (1, 3, 32, 32) does not fit model digits_net_make_net")
    assert not out.exists()


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ("1,3,x", ("--input-shape '1,3,x' is not a list of integers",)),
        ("1,3,32", ("--input-shape '1,3,32' must be four positive integers",)),
        ("1,0,32,32", ("must be four positive integers",)),
        ("2,1,32,32", ("batch must be 1",)),
    ],
)
def test_malformed_input_shape(tmp_path, digits_model, shape, words):
    out = tmp_path / "out"
    result = build(*digits_args(digits_model), "--input-shape", shape, out=out)
    assert_error(result, 2, *words)
    assert not out.exists()


# --- 5. calibration --------------------------------------------------------------------------


def _build_with_calib(digits_model, calib, out, *extra):
    return build(
        "--model",
        digits_model.spec,
        "--weights",
        digits_model.weights,
        "--calib",
        calib,
        "--holdout",
        2,
        *extra,
        out=out,
    )


def test_empty_calibration_folder(tmp_path, digits_model):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "README.txt").write_text("no images here")
    out = tmp_path / "out"
    result = _build_with_calib(digits_model, folder, out)
    assert_error(result, 2, "no images found in calibration folder", paths=(str(folder),))
    assert_nothing_written(out)


def test_calibration_arrays_with_the_wrong_channels(tmp_path, digits_model):
    arrays = tmp_path / "rgb.npy"
    np.save(arrays, np.random.default_rng(0).random((8, 3, 32, 32), dtype=np.float32))
    out = tmp_path / "out"
    result = _build_with_calib(digits_model, arrays, out)
    assert_error(result, 2, "rgb.npy", "(8, 3, 32, 32)", "3 channel(s)", "model takes 1")
    assert_nothing_written(out)


def test_calibration_arrays_with_the_wrong_size(tmp_path, digits_model):
    arrays = tmp_path / "small.npy"
    np.save(arrays, np.random.default_rng(0).random((8, 1, 16, 16), dtype=np.float32))
    out = tmp_path / "out"
    result = _build_with_calib(digits_model, arrays, out)
    assert_error(result, 2, "small.npy", "(8, 1, 16, 16)", "1 x 32 x 32")
    assert_nothing_written(out)


def test_zero_calibration_samples(tmp_path, digits_model):
    out = tmp_path / "out"
    result = _build_with_calib(digits_model, digits_model.calib, out, "--calib-samples", 0)
    assert_error(result, 2, "--calib-samples must be at least 1")
    assert_nothing_written(out)


def test_missing_calibration_path(tmp_path, digits_model):
    missing = tmp_path / "nope.npz"
    out = tmp_path / "out"
    result = _build_with_calib(digits_model, missing, out)
    assert_error(result, 2, "does not exist", paths=(str(missing),))
    assert_nothing_written(out)


def test_unknown_calibration_set_name(tmp_path, digits_model):
    out = tmp_path / "out"
    result = _build_with_calib(digits_model, "photoz", out)
    assert_error(result, 2, "unknown built-in calibration set 'photoz'", "photos")
    assert_nothing_written(out)


# --- 6. profile inputs -----------------------------------------------------------------------


def test_profile_of_a_float_model(tmp_path, digits_build):
    out = tmp_path / "out"
    model = digits_build.model_dir / FLOAT_MODEL
    result = run_cli("profile", model, "--out", out, "-q")
    assert_error(result, 2, "digits_net_make_net_float.tflite is not an int8 model", "float32")
    assert not out.exists()


def test_profile_of_a_text_file(tmp_path):
    fake = tmp_path / "notes.tflite"
    fake.write_text("this is not a model\n" * 10)
    out = tmp_path / "out"
    result = run_cli("profile", fake, "--out", out, "-q")
    assert_error(result, 2, "is not a TFLite flatbuffer", paths=(str(fake),))
    assert not out.exists()


def test_profile_of_a_missing_file(tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "missing.tflite"
    result = run_cli("profile", missing, "--out", out, "-q")
    assert_error(result, 2, "does not exist", paths=(str(missing),))
    assert not out.exists()


# --- 7. Vela fails ---------------------------------------------------------------------------


@pytest.fixture
def vela_failure(tmp_path, digits_build):
    toml = user_target(tmp_path / "bogus.toml", "bogus-mode", memory_mode="No_Such_Mode")
    out = tmp_path / "out"
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli("profile", model, "--target", toml, "--out", out, "-q")
    return result, out / model.stem


def test_vela_failure_is_a_stage_error_with_nothing_left(vela_failure):
    result, model_dir = vela_failure
    assert_error(
        result,
        1,
        "Vela failed",
        "bogus-mode",
        "Memory_Mode.No_Such_Mode not found",
    )
    assert not (model_dir / "bogus-mode").exists()
    assert_nothing_written(model_dir.parent)


def test_a_system_config_vela_does_not_have_is_refused_when_the_profile_loads(tmp_path):
    """The clock comes from the system config, so a profile naming a missing one is bad input."""
    toml = user_target(tmp_path / "bogus.toml", "bogus-system", "No_Such_System")
    result = run_cli("profile", tmp_path / "missing.tflite", "--target", toml, "-q")
    assert_error(result, 2, "no system config 'No_Such_System'", "Ethos_U55_High_End_Embedded")


def test_a_profile_clock_that_disagrees_with_vela_is_refused(tmp_path):
    toml = user_target(tmp_path / "fast.toml", "fast-u55")
    toml.write_text(toml.read_text().replace("clock_hz = 500_000_000", "clock_hz = 800_000_000"))
    result = run_cli("profile", tmp_path / "missing.tflite", "--target", toml, "-q")
    assert_error(result, 2, "npu.clock_hz = 8e+08", "core_clock = 5e+08", "Make them agree")


def test_vela_failure_message_quotes_vela_and_how_to_reproduce(vela_failure):
    """The staging folder (and Vela's log in it) is gone, so the message carries what matters."""
    result, _model_dir = vela_failure
    err = _squeezed(result.stderr)
    assert "Memory_Mode.No_Such_Mode" in err and "notfoundinVelaconfigfile" in err
    assert "Traceback" not in result.stderr and 'File"' not in err
    assert "toreproduce:vela" in err
    assert "Fulllog" not in err


# --- 8. an op that cannot map to the NPU -----------------------------------------------------


@pytest.fixture(scope="module")
def sqrt_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sqrt")
    (folder / "sqrt_net.py").write_text(SQRT_NET)
    calib = folder / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32))
    return ["--model", f"{folder / 'sqrt_net.py'}:make", "--calib", calib, "--holdout", 2]


def test_cpu_fallback_fails_the_build_then_is_allowed(tmp_path, sqrt_model):
    out = tmp_path / "out"
    failed = build(*sqrt_model, out=out)
    message = assert_error(
        failed,
        1,
        "sqrt_net_make is not fully int8 and NPU-mapped on ethos-u55-128",
        "SQRT",
        "--allow-cpu-fallback",
    )
    assert not (out / "sqrt_net_make" / "ethos-u55-128").exists()
    assert_nothing_written(out)

    allowed = build(*sqrt_model, "--allow-cpu-fallback", out=out)
    assert allowed.exit_code == 0, allowed.output
    assert "error:" not in allowed.output
    folder = out / "sqrt_net_make" / "ethos-u55-128"
    report = json.loads((folder / "report.json").read_text())
    fallbacks = report["cpu_fallbacks"]
    assert [f["op_type"] for f in fallbacks] == ["SQRT"]
    reason = fallbacks[0]["reason"]
    assert reason.strip()
    assert reason in message  # the failed build named Vela's own reason
    assert metric_value(report["metrics"], "cpu_ops") > 0
    assert report["conversion"]["gate"]["passed"] is False
    assert report["conversion"]["gate"]["problems"]
    [fallback_time] = [m for m in report["metrics"] if m["name"] == "cpu_fallback_time"]
    # Since report 1.2 the Cortex-M time of the fallback op is estimated (test_system_cost.py).
    assert fallback_time["source"] == "estimated"
    assert fallback_time["value"] > 0
    assert hidden_under(out) == []


# --- 9. a failed rebuild keeps the previous good build ---------------------------------------


def test_failed_rebuild_keeps_the_previous_build(tmp_path, digits_model):
    toml = user_target(tmp_path / "t.toml", "my-target")
    out = tmp_path / "out"
    first = build(*digits_args(digits_model), out=out, target=toml)
    assert first.exit_code == 0, first.output
    folder = out / "digits_net_make_net" / "my-target"
    before = {p.relative_to(folder): p.read_bytes() for p in files_under(folder)}
    assert Path("report.json") in before

    user_target(toml, "my-target", memory_mode="No_Such_Mode")
    second = build(*digits_args(digits_model), out=out, target=toml)
    assert_error(second, 1, "Vela failed", "my-target")
    after = {p.relative_to(folder): p.read_bytes() for p in files_under(folder)}
    assert after == before
    assert hidden_under(out) == []


# --- 10. a real process ----------------------------------------------------------------------


def test_real_process_exit_code_and_streams(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != TARGET_PATH_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "ran_edge.cli", "build", "--target", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.startswith("error:")
    assert "unknown target 'nope'" in _flat(proc.stderr)
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
