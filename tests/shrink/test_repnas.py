"""RepNAS: every candidate branch and every searched block merges exactly into one conv of
the layer's own geometry (float64, borders included), the top-k budget and its fade work as
documented, bad budgets and unlabelled data are refused before any work, and `ran-edge
repnas` on real digits writes a model that builds to int8 with the plain model's convs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import ASSETS
from torch import nn
from torch.nn import functional as F

from ran_edge.blocks import ConvBN, to_deploy
from ran_edge.cli.repnas import repnas
from ran_edge.errors import UsageError
from ran_edge.shrink import verify_equivalent
from ran_edge.shrink.repnas import (
    CANDIDATES,
    BranchSearch,
    LayerShape,
    PaddedChain,
    RepBranchBlock,
    available_candidates,
    branch_blocks,
    check_budget,
    check_merge,
    find_sites,
    make_branch,
    to_searchable,
)
from ran_edge.shrink.repnas.search import fade_at

NET = f"{ASSETS / 'digits_cnn16.py'}:make_net"
SHAPE = (1, 1, 16, 16)
RTOL64 = 1e-10


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


def randomize_bn(module: nn.Module, seed: int) -> nn.Module:
    """Random BN statistics and affine terms, so folded biases and scales are far from 0/1."""
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=gen))
            bn.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.3)
            bn.weight.data.copy_(torch.randn(n, generator=gen))
            bn.bias.data.copy_(torch.randn(n, generator=gen))
    return module


def assert_layer_geometry(conv: nn.Conv2d, shape: LayerShape) -> None:
    k = shape.kernel_size
    assert isinstance(conv, nn.Conv2d) and conv.bias is not None
    assert tuple(conv.weight.shape) == (
        shape.out_channels,
        shape.in_channels // shape.groups,
        k,
        k,
    )
    assert conv.stride == (shape.stride,) * 2 and conv.padding == (k // 2,) * 2
    assert conv.groups == shape.groups


# --- exact merges ---------------------------------------------------------------------------

# (in, out, kernel, stride, groups, input size): dense, grouped, depthwise; odd and even
# sizes so stride-2 borders fall both ways; 5x5 as well as 3x3.
LAYERS = [
    (4, 4, 3, 1, 1, 9),
    (4, 6, 3, 2, 1, 10),
    (6, 6, 5, 1, 2, 11),
    (8, 8, 3, 2, 8, 9),
    (6, 6, 3, 1, 6, 8),
]


@pytest.mark.parametrize(("cin", "cout", "k", "stride", "groups", "size"), LAYERS)
def test_every_branch_merges_exactly_borders_included(cin, cout, k, stride, groups, size):
    shape = LayerShape(cin, cout, k, stride, groups)
    names = available_candidates(cin, cout, stride)
    assert ("identity" in names) == (cin == cout and stride == 1)
    for index, name in enumerate(names):
        branch = randomize_bn(make_branch(name, cin, cout, k, stride, groups).double(), index)
        block = RepBranchBlock(shape, {name: branch}).double()
        conv = block.to_deploy()
        assert_layer_geometry(conv, shape)
        check = verify_equivalent(block, conv, (2, cin, size, size), rtol=RTOL64)
        assert check.max_rel_err < RTOL64, (name, check)
        assert check.border_max_rel_err < RTOL64, (name, check)


def test_chains_need_bias_aware_padding_on_the_border():
    """Zero-padding the inner map (the naive 1x1 -> 3x3) is wrong exactly where the ring is."""
    chain = randomize_bn(make_branch("1x1_kxk", 4, 4, 3, 1, 1).double(), 0).eval()
    assert isinstance(chain, PaddedChain)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        naive = chain.bn(chain.second(chain.first(x)))
        merged = chain.to_deploy()(x)
        exact = chain(x)
    assert torch.allclose(merged, exact, rtol=0, atol=1e-12)
    diff = (naive - exact).abs()
    assert diff[..., 1:-1, 1:-1].max() < 1e-12 and diff.max() > 1e-3


def searched_block(seed: int, budget: int = 3) -> RepBranchBlock:
    shape = LayerShape(6, 6, 3, 1, 1)
    torch.manual_seed(seed)
    branches = {n: make_branch(n, 6, 6, 3, 1, 1) for n in CANDIDATES}
    block = randomize_bn(RepBranchBlock(shape, branches, budget).double(), seed)
    with torch.no_grad():
        block.alpha.copy_(torch.randn(len(CANDIDATES), generator=torch.Generator().manual_seed(9)))
    return block


def test_searched_block_merges_exactly_and_finalize_changes_nothing():
    block = searched_block(0)
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    block.train().fade = 1.0
    block(x).sum().backward()  # training moves the BN statistics; alpha gets a gradient
    assert block.alpha.grad is not None and bool((block.alpha.grad != 0).all())
    block.eval().fade = 0.0
    expected = torch.topk(block.alpha.detach(), 3).indices.sort().values.tolist()
    assert block.chosen() == tuple(CANDIDATES[i] for i in expected)
    with torch.no_grad():
        before = block(x)
    deploy = block.to_deploy()
    kept = block.finalize()
    assert kept == block.names and block.alpha is None and len(kept) == 3
    with torch.no_grad():
        assert torch.allclose(block(x), before, rtol=0, atol=1e-12)
    check = verify_equivalent(block, deploy, (2, 6, 9, 9), rtol=RTOL64)
    assert check.max_rel_err < RTOL64 and check.border_max_rel_err < RTOL64, check
    assert_layer_geometry(deploy, block.shape)


def test_budget_is_a_top_k_mask_reached_by_fading_the_rest():
    block = searched_block(1, budget=2).eval()
    x = torch.randn(1, 6, 8, 8, dtype=torch.float64)
    kept = [i for i, n in enumerate(block.names) if n in block.chosen()]
    dropped = [i for i in range(len(CANDIDATES)) if i not in kept]
    block.fade = 1.0
    assert torch.equal(block.factors().detach(), torch.ones(7, dtype=torch.float64))
    block.fade = 0.25
    factors = block.factors()
    assert torch.equal(factors.detach()[kept], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(factors.detach()[dropped], torch.full((5,), 0.25, dtype=torch.float64))
    factors.sum().backward()  # straight through a sigmoid, to every alpha
    sigmoid = torch.sigmoid(block.alpha.detach())
    assert torch.allclose(block.alpha.grad, sigmoid * (1 - sigmoid))
    with pytest.raises(UsageError, match="still searching"):
        block.to_deploy()
    block.fade = 0.0
    assert int((block.factors() != 0).sum()) == 2
    with torch.no_grad():
        expected = sum(block.branches[block.names[i]](x) for i in kept)
        assert torch.allclose(block(x), expected, atol=1e-12)
    block.train().noise = 5.0  # logistic noise reorders the top-k in training only
    torch.manual_seed(0)
    sets = {tuple(int(i) for i in block.factors().detach().nonzero()) for _ in range(20)}
    assert len(sets) > 1 and all(len(s) == 2 for s in sets)
    assert block.eval().chosen() == tuple(block.names[i] for i in kept)
    assert [fade_at(p) for p in (0.0, 0.3, 0.5, 0.7, 1.0)] == pytest.approx([1, 1, 0.5, 0, 0])
    assert fade_at(0.0, 0.0, 0.0) == 0.0  # an empty window: hard top-k from the first step


def test_search_controller_fades_only_in_training_and_finalizes_every_block():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    to_searchable(model, find_sites(model), 2)
    search = BranchSearch(model, total_steps=10, noise=1.0, fade_start=0.0, fade_end=0.5)
    block = model[0]
    model.train()
    for _ in range(3):
        model(torch.randn(2, 4, 6, 6))
    assert block.fade == pytest.approx(1 - 2 / 5) and block.noise == pytest.approx(0.8)
    model.eval()
    model(torch.randn(1, 4, 6, 6))
    assert search.step == 3
    choices = search.finalize()
    assert [c.path for c in choices] == ["0"] and len(choices[0].chosen) == 2
    assert set(choices[0].weights) == set(choices[0].candidates) and block.alpha is None
    assert block.noise == 0.0 and block.fade == 0.0


# --- sites, budgets, data ------------------------------------------------------------------


def test_sites_replace_kxk_conv_bn_and_keep_every_path():
    from ran_edge.models import create_model

    model = create_model("tiny_mbnet")
    sites = find_sites(model)
    paths = [s.path for s in sites.sites]
    assert paths[0] == "stem.0"  # a ConvBN: the whole unit is replaced
    assert "blocks.0.depthwise" in paths and "blocks.3.depthwise" in paths
    dw = next(s for s in sites.sites if s.path == "blocks.3.depthwise")
    assert (dw.shape.kernel_size, dw.shape.groups) == (5, dw.shape.in_channels)
    assert "identity" in dw.candidates
    assert not any("expand" in p or "project" in p for p in paths)  # 1x1: nothing to merge
    net = find_sites(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8)))
    assert net.sites[0].bn_path == "1" and "identity" not in net.sites[0].candidates
    odd = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=0), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, 1, 2, 2)
    )
    assert set(find_sites(odd).skipped) == {"0", "1", "2"} and not find_sites(odd).sites
    searchable = to_searchable(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8)), net, 1)
    assert isinstance(searchable[1], nn.Identity) and list(branch_blocks(searchable)) == ["0"]
    original = ConvBN(4, 4, 3)
    wrapped = to_searchable(nn.Sequential(original), find_sites(nn.Sequential(original)), None)
    kxk = wrapped[0].branches["kxk"]
    assert torch.equal(kxk[0].weight, original.conv.weight)  # starts from the layer


def test_budget_must_leave_each_layer_a_valid_choice():
    sites = find_sites(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1)))
    check_budget(sites, 6)
    check_budget(sites, None)
    with pytest.raises(UsageError, match="keeps no branch"):
        check_budget(sites, 0)
    with pytest.raises(
        UsageError, match=r"exceeds the 6 candidate branches of layer 0.*--budget 6"
    ):
        check_budget(sites, 7)
    with pytest.raises(UsageError, match="no kxk conv"):
        check_budget(find_sites(nn.Sequential(nn.Conv2d(3, 8, 1))), 2)
    with pytest.raises(UsageError, match="unknown branch 'nope'"):
        find_sites(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)), ("kxk", "nope"))


def digits16(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=SHAPE[2:], mode="bilinear", align_corners=False).numpy()
    y = digits.target.astype(np.int64)
    return (x, y) if n is None else (x[:n], y[:n])


def run(*args) -> object:
    return CliRunner().invoke(repnas, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("repnas-data")
    x, y = digits16(600)
    np.savez(folder / "digits16.npz", x=x, y=y)
    np.savez(folder / "unlabelled.npz", x=x)
    np.save(folder / "images.npy", x)
    return folder


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "--budget 0 keeps no branch; keep at least 1 per layer"),
        (["--budget", "7"], "exceeds the 6 candidate branches of layer features.0.0"),
        (["--budget", "two"], "use e.g. --budget 2 or --budget all"),
        (["--candidates", "1x1,5x5"], "unknown branch 5x5"),
        (["--candidates", "1x1,identity", "--budget", "2"], "exceeds the 1 candidate branches"),
        (["--data", "unlabelled.npz"], "is unlabelled (no array 'y')"),
        (["--data", "images.npy"], "is not a labelled dataset"),
        (["--data", "."], "is not a labelled dataset"),
        (["--holdout", "600"], "--holdout 600 leaves no training images"),
        (["--out", "x.pt"], "must end in .pt2"),
    ],
)
def test_cli_refuses_bad_budgets_and_unlabelled_data_and_writes_nothing(
    labelled, tmp_path, args, message
):
    data = ["--data", labelled / "digits16.npz"]
    if "--data" in args:
        data, args = ["--data", labelled / args[1]], args[2:]
    out = tmp_path / "model.pt2"
    result = run(NET, *data, "--out", out, "--epochs", 0, "-q", *args)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert message in text and text.count("error:") == 1, text
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_needs_data():
    result = run(NET)
    assert result.exit_code == 2 and "--data" in result.output


def test_cli_defaults_are_the_request_defaults():
    from dataclasses import fields

    from ran_edge.shrink.repnas.run import RepnasRequest

    defaults = {f.name: f.default for f in fields(RepnasRequest)}
    options = {p.name: p.default for p in repnas.params}
    assert options["budget"] == str(defaults["budget"])
    assert tuple(options["candidates_text"].split(",")) == defaults["candidates"] == CANDIDATES
    for name in ("epochs", "finetune_epochs", "lr", "arch_lr", "batch_size", "holdout", "seed"):
        assert options[name] == defaults[name], name


# --- end to end on digits ------------------------------------------------------------------


def int8_conv_ops(model: nn.Module, calib: np.ndarray) -> list[str]:
    from ran_edge.convert.export import export_float_tflite
    from ran_edge.convert.quantize import quantize_int8
    from ran_edge.convert.tflite_info import inspect_tflite

    int8 = quantize_int8(export_float_tflite(model, SHAPE), calib.transpose(0, 2, 3, 1).copy())
    info = inspect_tflite(int8)
    assert info.int8_io and not info.float_op_types
    return [op for op in info.op_types if "CONV" in op]


@pytest.mark.slow  # trains a small CNN on digits (a few seconds) and converts two models
def test_cli_searches_digits_and_the_model_builds_with_the_plain_convs(labelled, tmp_path):
    from ran_edge.models import load_model
    from ran_edge.shrink.repnas.artifacts import rebuild_repnas

    out = tmp_path / "odbb.pt2"
    result = run(
        NET, "--data", labelled / "digits16.npz", "--budget", 2, "--epochs", 3,
        "--finetune-epochs", 1, "--lr", 3e-3, "--holdout", 100, "--out", out, "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [layer["path"] for layer in report["layers"]] == [f"features.{i}.0" for i in range(3)]
    for layer in report["layers"]:
        assert len(layer["chosen"]) == 2 and set(layer["chosen"]) <= set(layer["candidates"])
        ranked = sorted(layer["weights"], key=lambda n: -layer["weights"][n])
        assert set(layer["chosen"]) == set(ranked[:2])  # top-k by architecture weight
    assert "identity" in report["layers"][2]["candidates"]  # 16 -> 16, stride 1
    assert "identity" not in report["layers"][1]["candidates"]  # stride 2
    assert report["plain"] == report["deploy"]  # convs, MACs and params: the plain network
    assert report["verification"]["model_float64_max_rel_err"] < 1e-9
    assert max(report["verification"]["blocks_float64_border_max_rel_err"].values()) < 1e-9
    losses = report["search"]["epoch_losses"]
    assert losses[-1] < losses[0] and 0 <= report["holdout_accuracy"] <= 1
    assert report["search"]["steps"] == 3 * 8 and report["finetune"]["steps"] == 8
    files = {k: Path(v) for k, v in report["files"].items()}
    assert all(p.is_file() for p in files.values())
    program = load_model(str(out)).module
    rebuilt = rebuild_repnas(files["description"])
    x, _ = digits16(64)
    with torch.no_grad():
        for image in torch.from_numpy(x[:3]).split(1):
            assert torch.allclose(program(image), rebuilt(image), rtol=1e-5, atol=1e-5)
    plain = to_deploy(load_model(NET).module)
    ops = int8_conv_ops(program, x)
    assert ops == int8_conv_ops(plain, x) and len(ops) == 3, ops
    table = run(
        NET, "--data", labelled / "digits16.npz", "--budget", "all", "--epochs", 0,
        "--finetune-epochs", 0, "--holdout", 0, "--out", tmp_path / "dbb.pt2", "-q",
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "budget all (DBB)" in table.stdout and "not searched" in table.stdout
    assert "deploy convs 3 -> 3" in table.stdout


def test_merge_check_covers_each_block_and_the_model():
    from ran_edge.models import load_model

    model = load_model(NET).module
    model = to_searchable(model, find_sites(model), 3, seed=1)
    for block in branch_blocks(model).values():
        randomize_bn(block, 3)
        block.finalize()
    check = check_merge(model, SHAPE)
    assert set(check.blocks) == {f"features.{i}.0" for i in range(3)}
    assert check.equivalent and check.model_float64.max_rel_err < RTOL64
    assert all(e.border_max_rel_err < RTOL64 for e in check.blocks.values())
