"""`ran-edge shrink --remove-residuals`: RMNet residual removal from the command line, alone
and after DepthShrinker; the written model rebuilds, has no ADD left and builds for the NPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import CalibrationData
from ran_edge.cli.shrink import shrink
from ran_edge.models import load_model
from ran_edge.models.loading import LoadedModel
from ran_edge.shrink import rebuild_deploy
from ran_edge.targets.loading import resolve_target

SHAPE = (1, 1, 32, 32)


def run(*args) -> object:
    return CliRunner().invoke(shrink, [str(a) for a in args], catch_exceptions=False)


def same_function(out, samples: np.ndarray) -> None:
    """The .pt2 program and the module rebuilt from the .json compute the same outputs."""
    program = load_model(str(out)).module
    rebuilt = rebuild_deploy(out.with_suffix(".json"))
    with torch.no_grad():
        for image in torch.from_numpy(samples).split(1):  # exported at batch 1
            assert torch.allclose(program(image), rebuilt(image), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # exports and builds tiny_mbnet (about 40 s)
def test_cli_removes_residuals_alone_and_the_result_builds_without_adds(tmp_path):
    out = tmp_path / "plain.pt2"
    result = run(
        "tiny_mbnet", "--remove-residuals", "--carry-min-scale", 0, "--out", out, "--json", "-q"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    residuals = report["residuals"]
    assert [b["path"] for b in residuals["blocks"] if b["removed"]] == [
        "blocks.0",
        "blocks.2",
        "blocks.3",
        "blocks.5",
    ]
    assert residuals["model_max_rel_err"] < 1e-4
    assert all(b["max_abs_err"] < 1e-12 for b in residuals["blocks"])
    assert report["removed"] == [] and report["recovery"] is None  # no DepthShrinker
    assert report["macs_after"] > report["macs_before"]  # the carried channels cost MACs
    samples = np.random.default_rng(0).random((4, *SHAPE[1:]), dtype=np.float32)
    same_function(out, samples)

    calib = CalibrationData(samples, samples[:2], "random", "random")
    target = resolve_target("ethos-u55-128")
    model = load_model(str(out.with_suffix(".py")) + ":make_model").module
    converted = convert_model(LoadedModel(model, "plain", SHAPE, "test"), calib)
    assert "ADD" not in converted.info.op_types
    build = build_target(converted, target, tmp_path / "build")  # raises on any CPU op
    assert build.profile.vela.cpu_ops == 0


@pytest.mark.slow  # exports tiny_mbnet twice (about 40 s)
def test_cli_removes_residuals_after_depthshrink(tmp_path):
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=np.random.default_rng(1).random((24, *SHAPE[1:]), dtype=np.float32))
    out = tmp_path / "both.pt2"
    result = run(
        "tiny_mbnet", "--remove", "blocks.1,blocks.3", "--epochs", 0, "--calib", calib,
        "--calib-samples", 16, "--holdout", 0, "--remove-residuals", "--out", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "shrink tiny_mbnet (cost: macs)" in text  # DepthShrinker's table
    assert "residuals removed from tiny_mbnet" in text and "residual-free vs deploy" in text
    saved = json.loads(out.with_suffix(".json").read_text())
    removed = {b["path"]: b for b in saved["residuals"]["blocks"]}
    # blocks.3 lost its activations and stayed three convs: its carry needs no bound
    assert removed["blocks.3"]["removed"] and set(removed["blocks.3"]["carry"]) == {"d"}
    assert removed["blocks.0"]["removed"]  # input after the stem's ReLU6: in [0, 6] already
    for path in ("blocks.2", "blocks.5"):  # ReLU6 with a wide proven range: int8 would suffer
        assert not removed[path]["removed"] and "scaled down" in removed[path]["reason"]
    same_function(out, np.load(calib)["x"][:3])


def test_cli_defaults_are_the_request_defaults():
    from ran_edge.shrink.run import ShrinkRequest

    options = {p.name: p.default for p in shrink.params}
    request = ShrinkRequest("tiny_mbnet")
    assert request.remove_residuals is False  # a flag: off unless given
    assert options["carry_min_scale"] == request.carry_min_scale == 1.0
