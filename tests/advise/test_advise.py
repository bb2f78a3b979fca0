"""`ran-edge advise`: sites found in real networks, the selection rules, and one real run
with --apply whose prediction is checked against Vela on the rewritten network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import BUILD_TARGETS, layer_report, run_cli

from ran_edge.advise.advice import (
    Advice,
    Assessed,
    InNetwork,
    Rates,
    Thresholds,
    advise_block,
    assess,
    graphs_to_measure,
    in_network,
    with_context,
)
from ran_edge.advise.apply import rebuild_advised
from ran_edge.advise.forms import FormGraph, replacement_forms
from ran_edge.advise.sites import BlockForm, Site, find_sites, replaceable_model
from ran_edge.models import create_model, load_model
from ran_edge.models.ran_e_space import Slot
from ran_edge.models.registry import get_entry
from ran_edge.models.tiny_mbnet import _BLOCKS
from ran_edge.report.model import Report
from ran_edge.search.cost import BlockCost
from ran_edge.search.graphs import FrameGraph
from ran_edge.targets.loading import resolve_target

# Minutes of real conversions and Vela runs: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


def _sites(name: str) -> dict[str, Site]:
    model = replaceable_model(create_model(name))
    sites, skipped = find_sites(model, get_entry(name).input_shape)
    assert skipped == []
    return {s.path: s for s in sites}


# --- sites -----------------------------------------------------------------------------------


def test_sites_of_tiny_mbnet_follow_its_block_table():
    sites = _sites("tiny_mbnet")
    cin, size = 16, 16  # stem: 16 channels, 32x32 halved
    assert list(sites) == [f"blocks.{i}" for i in range(len(_BLOCKS))]
    for i, (cout, stride, expand, kernel) in enumerate(_BLOCKS):
        site = sites[f"blocks.{i}"]
        assert site.slot == Slot(cin, cout, size, stride)
        assert site.form == BlockForm("ir", kernel, float(expand), "ReLU6")
        cin, size = cout, (size + stride - 1) // stride


def test_sites_of_zoo_mobilenet_v2_and_efficientnet_lite0():
    mbv2 = _sites("mobilenet_v2")
    assert len(mbv2) == 17  # torchvision's 17 inverted residuals
    assert mbv2["features.1"].slot == Slot(32, 16, 112, 1)
    assert mbv2["features.1"].form == BlockForm("ir", 3, 1.0, "ReLU6")
    assert mbv2["features.2"].slot == Slot(16, 24, 112, 2)
    assert mbv2["features.2"].form.expand == 6.0
    assert mbv2["features.17"].slot == Slot(160, 320, 7, 1)
    lite0 = _sites("efficientnet_lite0")
    assert len(lite0) == 16
    assert sum(s.form.kernel == 5 for s in lite0.values()) == 9  # stages 3, 5, 6: 2 + 3 + 4


def test_replacements_never_shrink_a_block_unless_allowed():
    site = Site("b", Slot(24, 24, 8, 1), BlockForm("ir", 5, 4.0, "ReLU6"), 0)
    default = replacement_forms(site, allow_smaller=False)
    assert default[0] == BlockForm("collapsed", 3, 1.0, "ReLU6")
    irs = [f for f in default if f.kind == "ir"]
    assert {(f.kernel, f.expand) for f in irs} == {(5, 6.0), (7, 4.0), (7, 6.0)}
    assert all(f.act == "ReLU6" for f in default)
    everything = replacement_forms(site, allow_smaller=True)
    assert len(everything) == 1 + 9 - 1  # collapsed + every IR but the current form
    assert site.form not in everything


# --- selection -------------------------------------------------------------------------------


def _fake_measure(cycles: dict[BlockForm, int]):
    """Sandwich costs from a table; frames cost 100 cycles each (subtracted back out)."""

    def measure(spec):
        if isinstance(spec, FrameGraph):
            return BlockCost(100, 100, 0, 0, 0)
        c = cycles[spec.form] + 200
        return BlockCost(c, c, 1024, 0, 0)

    return measure


def test_the_fastest_replacement_wins_only_past_the_gain_floor():
    site = Site("b", Slot(16, 16, 8, 1), BlockForm("ir", 3, 4.0, "ReLU6"), 0)
    forms = replacement_forms(site, allow_smaller=False)
    cycles = {site.form: 1000, **{f: 990 - i for i, f in enumerate(forms)}}
    cycles[forms[0]] = 850  # collapsed: 15% faster
    net = InNetwork(1000, 0, 10.0, 20.0)
    measure = _fake_measure(cycles)
    advice = advise_block(Assessed(site, net, True), measure, Thresholds(min_gain_pct=10))
    assert advice.current.total_cycles == 1000  # frames subtracted
    assert advice.network.cycles == 1000
    assert advice.best.form == forms[0] and advice.gain_cycles == 150
    strict = advise_block(Assessed(site, net, True), measure, Thresholds(min_gain_pct=20))
    assert strict.best is None and strict.gain_cycles == 0
    unflagged = advise_block(Assessed(site, net, False), measure, Thresholds(min_gain_pct=10))
    assert unflagged.best is None and len(unflagged.options) == len(forms)


def test_gains_are_differences_so_negative_table_figures_still_decide_right():
    """Where a slot's frames alone cost more than inside the sandwich (DRAM spill on U65),
    absolute block figures go negative; only the difference may decide."""
    site = Site("b", Slot(16, 16, 8, 1), BlockForm("ir", 3, 4.0, "ReLU6"), 0)
    forms = replacement_forms(site, allow_smaller=False)
    net = InNetwork(1000, 0, 10.0, 20.0)
    faster = {site.form: -700, **{f: -700 for f in forms}, forms[0]: -850}
    advice = advise_block(Assessed(site, net, True), _fake_measure(faster), Thresholds())
    assert advice.best.form == forms[0] and advice.gain_cycles == 150
    slower = {site.form: -700, **{f: -690 for f in forms}}
    advice = advise_block(Assessed(site, net, True), _fake_measure(slower), Thresholds())
    assert advice.best is None


def test_in_context_savings_can_overrule_the_table():
    site = Site("b", Slot(16, 16, 8, 1), BlockForm("ir", 3, 4.0, "ReLU6"), 0)
    forms = replacement_forms(site, allow_smaller=False)
    net = InNetwork(1000, 0, 10.0, 20.0)
    cycles = {site.form: 1000, **{f: 1000 for f in forms}, forms[0]: 800}
    block = advise_block(Assessed(site, net, True), _fake_measure(cycles), Thresholds())
    advice = Advice("m", "t", 1e6, 5000, 10.0, Thresholds(), (block,), ())
    assert advice.predicted_cycles == 4800
    confirmed = with_context(advice, {"b": 600})
    assert confirmed.blocks[0].best == block.best and confirmed.predicted_cycles == 4400
    assert confirmed.table_predicted_fps == advice.predicted_fps
    overruled = with_context(advice, {"b": 50})  # under 10% of the block's 1,000 cycles
    assert overruled.blocks[0].best is None and overruled.predicted_cycles == 5000


def test_in_network_figures_match_the_reports_own_module_rows(digits_build):
    report = Report.from_dict(digits_build.reports[BUILD_TARGETS[0]])
    target = resolve_target(BUILD_TARGETS[0])
    rows = {r.path: r for r in report.modules}
    for path in ("stem", "block", "block.1", "down"):
        mine = in_network(report, path, target.npu.macs_per_cycle)
        assert mine.cycles == rows[path].cycles and mine.macs == rows[path].macs
        assert mine.mac_utilisation_pct == pytest.approx(rows[path].mac_utilisation_pct)
        assert mine.share_pct == pytest.approx(rows[path].cycle_share_pct)


def test_flags_need_low_utilisation_and_a_real_share():
    sites = [
        Site("a", Slot(8, 8, 8, 1), BlockForm("ir", 3, 6.0, "ReLU6"), 0),
        Site("b", Slot(8, 8, 8, 1), BlockForm("ir", 3, 6.0, "ReLU6"), 0),
        Site("c", Slot(8, 8, 8, 1), BlockForm("ir", 3, 6.0, "ReLU6"), 0),
    ]
    # a: slow and big; b: efficient; c: slow but tiny. 2 MACs/cycle.
    rows = [("a.conv", 500, 100), ("b.conv", 450, 800), ("c.conv", 10, 2), ("head", 40, 80)]
    report = layer_report("ethos-u", rows, cycles_total=1000)
    rates = Rates(1e9, 2, True, "Vela")
    assessed = assess(report, rates, sites, Thresholds(max_utilisation_pct=30, min_share_pct=3))
    assert [a.wasteful for a in assessed] == [True, False, False]
    assert assessed[0].network == InNetwork(500, 100, 10.0, 50.0)
    specs = graphs_to_measure(assessed, Thresholds(), cost_all=False)
    assert {s.slot for s in specs if isinstance(s, FormGraph)} == {sites[0].slot}
    assert len(graphs_to_measure(assessed, Thresholds(), cost_all=True)) == len(specs)  # same slot


# --- the command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tiny_mbnet", "--target", "ethos-u99"], "ethos-u99"),
        (["model.pt2"], "no module paths"),
        (["tiny_mbnet", "--apply", "--apply-out", "x.onnx"], "must end in .pt2"),
        (["tiny_mbnet", "--input-shape", "1,1,32"], "N,C,H,W"),
    ],
)
def test_bad_input_is_refused_before_any_work(args, message, tmp_path):
    result = run_cli("advise", *args, "--out", tmp_path, "-q")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_network_without_inverted_residuals_gets_a_plain_answer(digits_build, digits_model):
    result = run_cli(
        "advise", digits_model.spec, "--weights", digits_model.weights,
        "--calib", digits_model.calib, "--calib-samples", 64, "--holdout", 48,
        "--out", digits_build.out, "--target", BUILD_TARGETS[0], "--apply", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "has no sites to advise on" in result.stdout
    assert "nothing to apply" in result.stdout
    assert not (digits_build.out / "make_net_advised").exists()


@pytest.fixture(scope="module")
def advised(trained_tiny_mbnet, tmp_path_factory):
    """One real advise --apply run on the trained TinyMBNet (two flagged blocks)."""
    folder = tmp_path_factory.mktemp("advise")
    weights, calib = folder / "tiny.pt", folder / "calib.npz"
    torch.save(trained_tiny_mbnet.model.state_dict(), weights)
    np.savez(calib, x=trained_tiny_mbnet.train_x)
    result = run_cli(
        "advise", "tiny_mbnet", "--weights", weights, "--calib", calib,
        "--calib-samples", 1024, "--holdout", 64, "--min-share", 15, "--epochs", 6,
        "--out", folder / "build", "--cache-dir", folder / "cache", "--target", "ethos-u55-128",
        "--in-context", "--apply", "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), trained_tiny_mbnet


def test_advice_flags_the_depthwise_heavy_blocks_and_collapses_them(advised):
    data, _ = advised
    blocks = {b["path"]: b for b in data["blocks"]}
    flagged = sorted(p for p, b in blocks.items() if b["wasteful"])
    assert flagged == ["blocks.0", "blocks.3"]  # the two that take >= 15% of the cycles
    for path in flagged:
        b = blocks[path]
        assert b["context_gain_cycles"] > 0 and b["gain_cycles"] == b["context_gain_cycles"]
        assert b["network"]["mac_utilisation_pct"] < 30 and b["network"]["share_pct"] >= 15
        assert b["recommended"] == "collapsed 3x3" and b["gain_cycles"] > 0
        # the sandwich-costed current block agrees with its rows in the network
        now = b["current_table_cost"]["total_cycles"]
        assert now == pytest.approx(b["network"]["cycles"], rel=0.1)
    assert data["predicted"]["fps"] > data["network"]["fps"]


def test_applied_network_is_as_fast_as_predicted_and_recovers(advised):
    data, digits = advised
    applied = data["applied"]
    assert applied["replaced"] == ["blocks.0", "blocks.3"]
    assert data["predicted"]["in_context"]
    assert abs(applied["prediction_error_pct"]) < 2.0  # in-context savings vs Vela
    table_error = (data["predicted"]["table_fps"] - applied["fps"]) / applied["fps"]
    assert abs(table_error) < 0.05  # the cost table alone, each block in its sandwich
    assert applied["fps"] > data["network"]["fps"]
    assert applied["agreement_after"] > applied["agreement_before"]
    assert applied["agreement_after"] >= 0.85
    report = json.loads(Path(applied["report"]).read_text())
    rows = {r["path"] for r in report["modules"]["rows"]}
    assert {"blocks.0", "blocks.3"} <= rows  # the .py keeps module paths
    program = load_model(applied["files"]["program"]).module
    rebuilt = rebuild_advised(Path(applied["files"]["description"]))
    with torch.no_grad():
        for image in torch.from_numpy(digits.test_x[:4]).split(1):
            assert torch.allclose(program(image), rebuilt(image), rtol=1e-5, atol=1e-5)
    kinds = {type(rebuilt.get_submodule(p)).__name__ for p in applied["replaced"]}
    assert kinds == {"CollapsedBlock"}
