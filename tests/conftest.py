"""Shared fixtures: a trained tiny digits model, one real end-to-end build reused by tests, and
a python without ai-edge-litert to play a bare board.

Everything runs the real tools (litert-torch, ai-edge-quantizer, LiteRT, Vela) on models
and data made here: scikit-learn's shipped digits, nothing downloaded.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    BUILD_TARGETS,
    DIGITS_NET,
    Build,
    DigitsModel,
    TrainedDigits,
    digits_arrays,
    digits_split,
    run_cli,
)


@pytest.fixture(scope="session")
def python_without_litert() -> str:
    """The system python, to play a board without ai-edge-litert (skips where it is absent or
    has it)."""
    python = Path("/usr/bin/python3")  # no numpy, no ai-edge-litert on a clean system
    if not python.is_file():
        pytest.skip(f"{python} not present to play a board without ai-edge-litert")
    probe = subprocess.run([str(python), "-c", "import ai_edge_litert"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip(f"{python} has ai-edge-litert; it cannot play a board without it")
    return str(python)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny tensors: extra intra-op threads only contend on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_tiny_mbnet() -> TrainedDigits:
    """The zoo's TinyMBNet (six ran_edge.blocks inverted residuals) trained on digits."""
    from ran_edge.models import create_model
    from ran_edge.shrink.distill import TrainConfig, accuracy, train_student

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only contend
    try:
        x, y = digits_arrays()
        train, test = digits_split()
        model = create_model("tiny_mbnet")
        config = TrainConfig(epochs=4, lr=3e-3, progress=False)
        train_student(model, x[train], labels=y[train], config=config)
        acc = accuracy(model, x[test], y[test])
    finally:
        torch.set_num_threads(threads)
    return TrainedDigits(model, x[train], y[train], x[test], y[test], acc)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory) -> DigitsModel:
    """DigitsNet trained for a few seconds on CPU (seeded), with a calibration .npz."""
    from ran_edge.models import load_model

    x, y = digits_arrays()
    train, test = digits_split()
    torch.manual_seed(0)  # before building: the init draws from the global RNG too
    loaded = load_model(f"{DIGITS_NET}:make_net")
    net = loaded.module.train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    threads = torch.get_num_threads()
    # One thread whichever test builds it first: float sums in another order train other
    # weights, and the fidelity tests read figures off this model.
    torch.set_num_threads(1)
    try:
        for _epoch in range(6):
            perm = torch.randperm(len(xt))
            for i in range(0, len(xt), 64):
                idx = perm[i : i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    net.eval()
    with torch.no_grad():
        acc = float((net(torch.from_numpy(x[test])).argmax(1).numpy() == y[test]).mean())
    folder = tmp_path_factory.mktemp("digits")
    weights = folder / "digits.pt"
    torch.save(net.state_dict(), weights)
    calib = folder / "digits_calib.npz"
    np.savez(calib, x=x[train[:200]])
    return DigitsModel(f"{DIGITS_NET}:make_net", weights, calib, x[test], y[test], acc)


@pytest.fixture(scope="session")
def digits_build(digits_model, tmp_path_factory) -> Build:
    """One real two-target build through the CLI, shared by the tests that inspect it."""
    out = tmp_path_factory.mktemp("build")
    args = ["build", "--model", digits_model.spec, "--weights", digits_model.weights]
    args += ["--calib", digits_model.calib, "--calib-samples", 64, "--holdout", 48]
    args += ["--out", out, "-q"]
    for target in BUILD_TARGETS:
        args += ["--target", target]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    model_dir = out / "digits_net_make_net"
    reports = {t: json.loads((model_dir / t / "report.json").read_text()) for t in BUILD_TARGETS}
    return Build(out, model_dir, reports, result.stdout)
