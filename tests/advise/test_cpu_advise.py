"""`ran-edge advise` on CPU targets: conv sites, their cheaper stand-ins, costs from the CPU
estimator through the same cost table and advice code as Ethos-U, and one real
`advise --target rpi3 --apply` run on the trained digits network."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import digits_arrays, digits_split, layer_report, run_cli
from torch import nn

from ran_edge.advise.advice import Rates, assess, target_rates
from ran_edge.advise.forms import MIN_CHANNELS, FormGraph, build_form, replacement_forms
from ran_edge.advise.request import CONV_FORMS, Thresholds
from ran_edge.advise.sites import BlockForm, Site, find_sites, replaceable_model
from ran_edge.blocks import CollapsedBlock, ConvBN, InvertedResidual
from ran_edge.convert.tflite_ops import read_op_costs
from ran_edge.models import create_model, load_model
from ran_edge.models.ran_e_space import Slot
from ran_edge.search.compiler import LiteRtCompiler
from ran_edge.search.graphs import build_graph
from ran_edge.search.table import CostTable, graph_cost
from ran_edge.targets.cortex_a.estimate import estimate_ops
from ran_edge.targets.loading import resolve_target


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


def _conv_site(cin: int, cout: int, size: int, stride: int, kernel: int = 3) -> Site:
    return Site("c", Slot(cin, cout, size, stride), BlockForm("conv", kernel, 1.0, ""), 0)


# --- stand-ins ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cin", "cout", "size", "stride", "kernel"),
    [(32, 64, 16, 1, 3), (32, 64, 15, 2, 3), (16, 33, 9, 2, 5), (64, 64, 7, 1, 7)],
)
def test_every_stand_in_keeps_the_dense_convs_output_shape(cin, cout, size, stride, kernel):
    site = _conv_site(cin, cout, size, stride, kernel)
    dense = nn.Conv2d(cin, cout, kernel, stride, kernel // 2)
    x = torch.randn(2, cin, size, size)
    forms = replacement_forms(site, allow_smaller=False)
    assert {f.kind for f in forms} == set(CONV_FORMS) - ({"grouped"} if cout % 2 else set())
    for form in forms:
        module = build_form(site.slot, form).eval()
        assert module(x).shape == dense(x).shape, form.label()
        params = sum(p.numel() for p in module.parameters())
        assert params < sum(p.numel() for p in dense.parameters()), form.label()


def test_stand_ins_keep_enough_channels_or_are_not_offered():
    stem = replacement_forms(_conv_site(1, 16, 32, 2), allow_smaller=False)
    # 1 input channel: no depthwise or grouped part, and a low-rank pair has more MACs
    assert [f.label() for f in stem] == ["ghost 3x3"]
    wide = replacement_forms(_conv_site(64, 64, 8, 1), False, conv_kinds=("lowrank",))
    assert [f.label() for f in wide] == ["low-rank 3x1+1x3 r0.5", "low-rank 3x1+1x3 r0.25"]
    narrow = replacement_forms(_conv_site(8, 8, 8, 1), allow_smaller=False)
    assert [f.kind for f in narrow] == ["separable"]
    chosen = replacement_forms(_conv_site(64, 64, 8, 1), False, conv_kinds=("grouped",))
    assert [f.label() for f in chosen] == ["grouped 3x3 g2", "grouped 3x3 g4"]
    assert all(64 // int(f.expand) >= MIN_CHANNELS for f in chosen)


# --- sites -------------------------------------------------------------------------------------


class _Mixed(nn.Module):
    """Every kind of conv a site search meets: a ConvBN, a plain conv, a 1x1, a depthwise,
    a dilated one, an even kernel, and convs inside structured blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, 16, 3, 2)
        self.plain = nn.Conv2d(16, 16, 5, 1, 2)
        self.point = nn.Conv2d(16, 16, 1)
        self.depthwise = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.dilated = nn.Conv2d(16, 16, 3, 1, 2, dilation=2)
        self.even = nn.Conv2d(16, 16, 2, 1, 1)
        self.ir = InvertedResidual(16, 16, 1, 4, 3)
        self.collapsed = CollapsedBlock(16, 16, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.point(self.plain(self.stem(x)))
        x = self.dilated(self.depthwise(x))
        return self.collapsed(self.ir(self.even(x)[..., :-1, :-1]))


def test_conv_sites_are_dense_convs_outside_structured_blocks():
    model = replaceable_model(_Mixed())
    sites, skipped = find_sites(model, (1, 3, 32, 32), "convs")
    assert [(s.path, s.slot, s.form.kernel) for s in sites] == [
        ("stem.conv", Slot(3, 16, 32, 2), 3),
        ("plain", Slot(16, 16, 16, 1), 5),
    ]
    assert [s.split(":")[0] for s in skipped] == ["dilated", "even"]
    both, _ = find_sites(model, (1, 3, 32, 32), "all")
    assert [s.path for s in both] == ["stem.conv", "plain", "ir"]
    blocks, _ = find_sites(model, (1, 3, 32, 32), "blocks")
    assert [s.path for s in blocks] == ["ir"]


def test_resnet18_has_its_seventeen_dense_convs_as_sites():
    model = replaceable_model(create_model("resnet18"))
    sites, skipped = find_sites(model, (1, 3, 64, 64), "all")
    assert skipped == []
    assert len(sites) == 17  # the 7x7 stem and sixteen 3x3s; the 1x1 shortcuts are not sites
    assert sites[0].slot == Slot(3, 64, 64, 2) and sites[0].form.kernel == 7
    assert sites[-1].slot == Slot(512, 512, 2, 1)


def test_on_a_cpu_share_alone_flags_a_site():
    sites = [_conv_site(8, 8, 8, 1), _conv_site(8, 8, 8, 1), _conv_site(8, 8, 8, 1)]
    sites = [Site(p, s.slot, s.form, 0) for p, s in zip("abc", sites, strict=True)]
    rows = [("a", 500, 100), ("b", 450, 90_000), ("c", 10, 2), ("head", 40, 80)]
    report = layer_report("cortex-a", rows, cycles_total=1000)
    thresholds = Thresholds(max_utilisation_pct=30, min_share_pct=3)
    cpu = assess(report, Rates(1e9, 100.0, False, "CPU estimator"), sites, thresholds)
    npu = assess(report, Rates(1e9, 100.0, True, "Vela"), sites, thresholds)
    assert [a.wasteful for a in cpu] == [True, True, False]  # b runs well, but is 45%
    assert [a.wasteful for a in npu] == [True, False, False]


# --- costs -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cpu_costs_are_the_estimators_figures_for_the_compiled_graph(tmp_path):
    """The cost table on a CPU target is the estimator on the same int8 graph; the stand-ins
    it prices are cheaper than the dense conv at a compute-bound slot."""
    rpi3 = resolve_target("rpi3")
    table = CostTable(rpi3, tmp_path / "cache")
    site = _conv_site(64, 64, 16, 1)
    dense = FormGraph(site.slot, site.form)
    costs = {f.label(): table.measure(FormGraph(site.slot, f)).total_cycles for f in [
        site.form, *replacement_forms(site, allow_smaller=False)
    ]}  # fmt: skip
    assert all(v < costs["conv 3x3"] for k, v in costs.items() if k != "conv 3x3"), costs
    tflite = LiteRtCompiler().compile(build_graph(dense), dense.input_shape())
    ops = read_op_costs(tflite)
    estimate = estimate_ops(ops, rpi3.cpu, rpi3.cpu_model.params, rpi3.cpu.default_threads)
    assert costs["conv 3x3"] == round(estimate.cycles) == graph_cost(tflite, rpi3).total_cycles
    # a second table on the same cache reads every figure back; a profile loaded with other
    # rates or cores (same file: `host` resolves them where it is loaded) does not
    assert CostTable(rpi3, tmp_path / "cache").is_measured(dense)
    model = rpi3.cpu_model
    slower = replace(model, params=replace(model.params, conv_macs_per_cycle=1.0))
    other_rates = replace(rpi3, spec=replace(rpi3.spec, cpu_model=slower))
    other_cores = replace(rpi3, spec=replace(rpi3.spec, cpu=replace(rpi3.cpu, cores=2)))
    assert other_rates.sha256 == rpi3.sha256
    for target in (other_rates, other_cores):
        assert not CostTable(target, tmp_path / "cache").is_measured(dense)


# --- the command -------------------------------------------------------------------------------


NO_COST_MODEL = """name = "bare-a53"
kind = "cortex-a"
description = "a Cortex-A53 board with no [cpu_model]"
[cpu]
core = "cortex-a53"
cores = 4
clock_hz = 1.2e9
simd = ["neon"]
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tiny_mbnet", "--target", "{bare}"], "has no [cpu_model] table"),
        (["tiny_mbnet", "--target", "rpi3", "--forms", "separable,fft"], "--forms separable,fft"),
        (["tiny_mbnet", "--target", "rpi3", "--forms", ","], "give one or more of"),
    ],
)
def test_bad_cpu_input_is_refused_before_any_work(args, message, tmp_path):
    bare = tmp_path / "bare-a53.toml"
    bare.write_text(NO_COST_MODEL)
    out = tmp_path / "out"
    args = [a.replace("{bare}", str(bare)) for a in args]
    result = run_cli("advise", *args, "--out", out, "-q")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not out.exists()


class _Stem(nn.Module):
    """One 1-channel stem conv: no depthwise or grouped stand-in can keep 8 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, 1, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x).mean((2, 3)))


def make_stem() -> nn.Module:
    return _Stem()


def test_forms_no_site_can_take_are_refused_before_the_build(tmp_path):
    out = tmp_path / "out"
    spec = f"{Path(__file__)}:make_stem"
    result = run_cli(
        "advise", spec, "--input-shape", "1,1,16,16", "--target", "rpi3",
        "--forms", "separable,grouped", "--out", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "gives no candidate for any of the 1 conv sites" in result.output
    assert "no stand-in fits these convs" in result.output
    assert not out.exists()


@pytest.fixture(scope="module")
def cpu_advised(digits_model, tmp_path_factory):
    """One real `advise --target rpi3 --apply` on the trained digits network."""
    folder = tmp_path_factory.mktemp("cpu-advise")
    x, _ = digits_arrays()
    train, _ = digits_split()
    calib = folder / "digits_1000.npz"
    np.savez(calib, x=x[train[:1000]])  # the network's own training images, no labels
    result = run_cli(
        "advise", digits_model.spec, "--weights", digits_model.weights,
        "--calib", calib, "--calib-samples", 1000, "--holdout", 200, "--epochs", 4,
        "--target", "rpi3", "--out", folder / "build", "--cache-dir", folder / "cache",
        "--apply", "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_rpi3_advice_replaces_the_dense_convs_and_predicts_the_rebuilt_network(cpu_advised):
    data = cpu_advised
    assert data["format"] == "ran-edge-advice/2" and data["figures"] == "CPU estimator"
    blocks = {b["path"]: b for b in data["blocks"]}
    assert sorted(blocks) == ["down.0", "stem.0"]  # the depthwise and 1x1 are not sites
    down = blocks["down.0"]
    assert down["form"]["label"] == "conv 3x3" and down["recommended"] is not None
    labels = {o["form"]["label"] for o in down["options"]}
    assert {"separable 3x3", "grouped 3x3 g2", "ghost 3x3"} <= labels
    # the sandwich-costed conv agrees with its rows in the network's own estimate
    assert down["current_table_cost"]["total_cycles"] == pytest.approx(
        down["network"]["cycles"], rel=0.15
    )
    applied = data["applied"]
    assert "down.0" in applied["replaced"]
    assert applied["fps"] > data["network"]["fps"]
    assert abs(applied["prediction_error_pct"]) < 5.0  # table prediction vs the rebuilt estimate
    assert applied["agreement_after"] >= applied["agreement_before"]
    assert applied["agreement_after"] >= 0.6  # measured 0.735: grouped g4 on a 32-channel conv
    rebuilt = load_model(f"{applied['files']['factory']}:make_model").module
    kinds = {type(rebuilt.get_submodule(p)).__name__ for p in applied["replaced"]}
    assert kinds <= {"SeparableConv", "LowRankConv", "GhostConv", "Conv2d"}
    report = json.loads(Path(applied["report"]).read_text())
    assert report["target"]["name"] == "rpi3"
    program = load_model(applied["files"]["program"]).module
    images = np.random.default_rng(0).random((2, 1, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        for x in map(torch.from_numpy, images):  # the program is exported at batch 1
            assert torch.allclose(program(x), rebuilt.eval()(x), rtol=1e-5, atol=1e-5)


def test_target_rates_count_cycles_as_each_target_does():
    rpi3, npu = resolve_target("rpi3"), resolve_target("ethos-u55-128")
    cpu_rates = target_rates(rpi3)
    assert cpu_rates.clock_hz == rpi3.cpu.clock_hz and not cpu_rates.flags_by_utilisation
    params = rpi3.cpu_model.params
    assert cpu_rates.macs_per_cycle == params.conv_macs_per_cycle * rpi3.cpu.default_threads
    npu_rates = target_rates(npu)
    assert (npu_rates.clock_hz, npu_rates.macs_per_cycle) == (npu.npu.clock_hz, 128)
    assert npu_rates.flags_by_utilisation and npu_rates.figures == "Vela"


class _Shared(nn.Module):
    """One conv called twice, and one module reachable at two paths."""

    def __init__(self) -> None:
        super().__init__()
        self.twice = nn.Conv2d(16, 16, 3, 1, 1)
        self.left = nn.Conv2d(16, 16, 3, 1, 1)
        self.right = self.left
        self.once = nn.Conv2d(16, 16, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.once(self.right(self.twice(self.twice(x))))


def test_a_conv_used_twice_is_not_a_site():
    sites, skipped = find_sites(_Shared(), (1, 16, 8, 8), "convs")
    assert [s.path for s in sites] == ["once"]
    assert skipped == [
        "twice: used 2 times (shared or called again)",
        "left: used 2 times (shared or called again)",
    ]


def test_bn_statistics_use_even_batches_and_never_a_single_image():
    from ran_edge.advise.run import _even_batches

    assert [len(b) for b in _even_batches(torch.zeros(65, 1, 4, 4))] == [33, 32]
    assert [len(b) for b in _even_batches(torch.zeros(3, 1, 4, 4))] == [3]
    assert _even_batches(torch.zeros(1, 1, 4, 4)) == []
