"""DepthShrinker: gates pick blocks by ratio with straight-through gradients, a cost
function decides each merge, removal + merge is exact, the result runs 100% on the NPU
with collapsed blocks at higher MAC utilisation, and `ran-edge shrink` ties it together.

A TinyMBNet trained on scikit-learn's digits (a few seconds on one CPU thread) is the
model throughout, so accuracy figures are real held-out accuracy.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import TrainedDigits
from torch import nn

from ran_edge.blocks import InvertedResidual
from ran_edge.blocks.inverted_residual import collapse_inverted_residual
from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import CalibrationData
from ran_edge.cli.shrink import shrink
from ran_edge.errors import UsageError
from ran_edge.models import create_model, load_model
from ran_edge.models.loading import LoadedModel
from ran_edge.shrink import (
    ActivationGate,
    GateSearch,
    ShrinkPlan,
    TopKMask,
    TrainConfig,
    accuracy,
    apply_plan,
    check_removal,
    compare_costs,
    deploy_verified,
    depthshrink,
    macs_cost,
    module_macs,
    plan_shrink,
    predict,
    rebuild_deploy,
    search_removal,
    shrinkable_blocks,
    to_shrinkable,
    train_student,
    verify_equivalent,
)
from ran_edge.shrink.cost import VelaBlockCost
from ran_edge.shrink.depthshrink import chain_deploy, linearized
from ran_edge.shrink.gates import removal_count
from ran_edge.targets.loading import resolve_target

SHAPE = (1, 1, 32, 32)
BLOCKS = [f"blocks.{i}" for i in range(6)]
QUIET = TrainConfig(epochs=1, progress=False)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


@pytest.fixture(scope="module")
def digits(trained_tiny_mbnet) -> TrainedDigits:
    return trained_tiny_mbnet


@dataclass(frozen=True)
class Shrunk:
    plan: ShrinkPlan
    shrunk: nn.Module  # train form, activations removed, recovered
    deploy: nn.Module


REMOVED = ("blocks.0", "blocks.1", "blocks.3")


@pytest.fixture(scope="module")
def shrunk(digits) -> Shrunk:
    plan = plan_shrink(digits.model, REMOVED, SHAPE)
    model = apply_plan(digits.model, plan)
    config = TrainConfig(epochs=2, progress=False)
    train_student(
        model, digits.train_x, teacher=digits.model, feature_paths=plan.removed, config=config
    )
    deploy, plan, check = deploy_verified(model, plan, SHAPE)
    assert check.equivalent, check
    return Shrunk(plan, model, deploy)


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_trained_model_is_a_real_classifier(digits):
    assert digits.accuracy > 0.95


# --- gates -----------------------------------------------------------------------------------


def test_gate_blends_activation_and_identity():
    gate = ActivationGate(nn.ReLU6())
    x = torch.linspace(-3, 8, 12)
    gate.gate = torch.tensor(1.0)
    assert torch.equal(gate(x), nn.functional.relu6(x))
    gate.gate = torch.tensor(0.0)
    assert torch.equal(gate(x), x)
    gate.gate = None  # standalone: the logit's sign decides, gradient through the sigmoid
    gate.logit.data.fill_(-1.0)
    out = gate(x)
    assert torch.equal(out, x)
    out.sum().backward()
    assert gate.logit.grad is not None and gate.logit.grad != 0


@pytest.mark.parametrize("ratio", [0.0, 0.17, 0.34, 0.5, 0.83, 1.0])
def test_topk_keeps_blocks_by_removal_ratio(ratio):
    model = create_model("tiny_mbnet")
    search = GateSearch(model, shrinkable_blocks(model), ratio)
    with torch.no_grad():
        for index, logit in enumerate(search.parameters()):
            logit.fill_(float(index * 7 % 5))
        mask = search.refresh()
    removed = removal_count(6, ratio)
    assert int(mask.sum()) == 6 - removed
    state = search.state()
    assert len(state.removed) == removed and len(state.kept) == 6 - removed
    ranked = sorted(state.scores, key=lambda p: (-state.scores[p], BLOCKS.index(p)))
    assert set(state.kept) == set(ranked[: 6 - removed])
    search.remove()
    with pytest.raises(UsageError, match="between 0 and 1"):
        removal_count(6, 1.5)


def test_straight_through_gradient_reaches_every_logit():
    scores = torch.tensor([0.3, -1.0, 2.0, 0.1], requires_grad=True)
    mask = TopKMask.apply(scores, 2)
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (mask * weights).sum().backward()
    assert torch.equal(scores.grad, weights)  # identity backward: removed blocks learn too

    model = create_model("tiny_mbnet").train()
    search = GateSearch(model, shrinkable_blocks(model), 0.5)
    model(torch.randn(4, *SHAPE[1:])).logsumexp(1).sum().backward()
    grads = [logit.grad for logit in search.parameters()]
    assert all(g is not None and float(g) != 0.0 for g in grads)
    state = search.finalize()
    for path in BLOCKS:
        block = model.get_submodule(path)
        acts = (block.expand_act, block.dw_act)
        assert not any(isinstance(a, ActivationGate) for a in acts)
        expected = nn.Identity if path in state.removed else nn.ReLU6
        assert all(isinstance(a, expected) for a in acts), path
    assert not model._forward_pre_hooks  # the controller's hook is gone


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_search_removes_the_ratio_and_leaves_the_model_alone(digits):
    before = {k: v.clone() for k, v in digits.model.state_dict().items()}
    result = search_removal(digits.model, digits.train_x[:256], 0.5, config=QUIET)
    assert len(result.removed) == 3 and len(result.kept) == 3
    assert set(result.removed) | set(result.kept) == set(BLOCKS)
    assert max(result.scores[p] for p in result.removed) <= min(
        result.scores[p] for p in result.kept
    )
    assert result.train is not None and result.train.steps == 4
    after = digits.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert shrinkable_blocks(digits.model) == {p: ["expand_act", "dw_act"] for p in BLOCKS}


# --- cost and plan ---------------------------------------------------------------------------


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_mac_cost_merges_only_where_macs_fall(digits):
    plan = plan_shrink(digits.model, BLOCKS, SHAPE)
    assert plan.merged == ("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.5")
    five = plan.block("blocks.3")  # 5x5 depthwise, t = 4: 24*24*25 > 4*24*(48+25)
    assert not five.merged and "would not lower the cost" in five.reason
    assert five.cost_before == 448_512 and five.cost_after == 921_600
    assert five.macs_after == five.macs_before
    down = plan.block("blocks.1")
    assert down.merged_conv == "3x3 16->24 stride 2" and down.macs_after == 221_184
    assert down.macs_after < down.macs_before == 397_312


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_cost_function_is_pluggable(digits):
    def ops(module: nn.Module, _shape) -> float:  # fewer ops is better (latency-bound NPU)
        return float(sum(isinstance(m, nn.Conv2d) for m in module.modules()))

    def bigger(module: nn.Module, shape) -> float:  # perverse: more MACs is better
        return -macs_cost(module, shape)

    def never(module: nn.Module, _shape) -> float:  # any single dense conv is a penalty
        return 1.0 if isinstance(module, nn.Conv2d) else 0.0

    assert plan_shrink(digits.model, BLOCKS, SHAPE, cost=ops).merged == tuple(BLOCKS)
    assert plan_shrink(digits.model, BLOCKS, SHAPE, cost=bigger).merged == ("blocks.3",)
    assert plan_shrink(digits.model, BLOCKS, SHAPE, cost=never, cost_name="x").merged == ()
    block = digits.model.blocks[3]
    chain, merged = chain_deploy(linearized(block, merge=False)), linearized(block, merge=True)
    assert compare_costs(chain, merged, (1, 24, 8, 8), macs_cost).before == 448_512


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_vela_cost_merges_what_macs_would_not(digits, monkeypatch):
    """The 5x5 block doubles its MACs when collapsed, yet Vela runs it faster: the
    depthwise conv it removes runs at a fraction of the NPU's MAC rate."""
    block, shape = digits.model.blocks[3], (1, 24, 8, 8)
    chain = chain_deploy(linearized(block, merge=False))
    merged = collapse_inverted_residual(linearized(block, merge=True))
    assert not compare_costs(chain, merged, shape, macs_cost).merge_pays
    cost = VelaBlockCost("ethos-u55-128")
    compiled = []
    real = cost._compile
    monkeypatch.setattr(cost, "_compile", lambda m, s: compiled.append(1) or real(m, s))
    cycles = compare_costs(chain, merged, shape, cost)
    assert 0 < cycles.after < cycles.before  # measured: 20,886 -> 13,248 cycles
    plan = plan_shrink(digits.model, ["blocks.3"], SHAPE, cost=cost, cost_name="vela")
    assert plan.merged == ("blocks.3",) and "vela" in plan.block("blocks.3").reason
    assert len(compiled) == 2 and len(cost.cache) == 2  # the plan reused both compiles
    with pytest.raises(UsageError, match="nope-9"):
        VelaBlockCost("nope-9")


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_explicit_removal_is_checked(digits):
    assert check_removal(digits.model, ["blocks.3", "blocks.0"]) == ("blocks.3", "blocks.0")
    with pytest.raises(UsageError, match="not a shrinkable block.*blocks.0, blocks.1"):
        check_removal(digits.model, ["blocks.9"])
    with pytest.raises(UsageError, match="not a shrinkable block"):
        check_removal(digits.model, ["stem"])
    with pytest.raises(UsageError, match="listed twice"):
        check_removal(digits.model, ["blocks.1", "blocks.1"])


# --- exactness -------------------------------------------------------------------------------


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_remove_then_merge_is_exact(digits, shrunk):
    assert shrunk.plan.merged == ("blocks.0", "blocks.1")
    for path in shrunk.plan.merged:
        train, deploy = shrunk.shrunk.get_submodule(path), shrunk.deploy.get_submodule(path)
        assert isinstance(train, InvertedResidual) and train.border == "bias"
        assert isinstance(deploy, nn.Conv2d)  # one conv, residual in the centre tap
        shape = shrunk.plan.block(path).input_shape
        eq = verify_equivalent(train, deploy, shape, rtol=1e-5)
        assert eq.max_rel_err <= 1e-5 and eq.border_max_rel_err <= 1e-5, (path, eq)
    five = shrunk.shrunk.get_submodule("blocks.3")
    assert five.border == "zeros" and five.is_linear  # removed, kept as three convs
    ours, theirs = predict(shrunk.deploy, digits.test_x), predict(shrunk.shrunk, digits.test_x)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))
    assert accuracy(shrunk.deploy, digits.test_x, digits.test_y) == accuracy(
        shrunk.shrunk, digits.test_x, digits.test_y
    )
    assert module_macs(shrunk.deploy, SHAPE) < module_macs(digits.model, SHAPE)


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_recovery_brings_accuracy_back(digits, shrunk):
    removed_only = apply_plan(digits.model, shrunk.plan)
    assert accuracy(removed_only, digits.test_x, digits.test_y) < 0.5
    assert accuracy(shrunk.shrunk, digits.test_x, digits.test_y) > 0.9


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_inexact_merge_is_kept_unmerged_with_the_reason(digits, monkeypatch):
    plan = plan_shrink(digits.model, ["blocks.0"], SHAPE)
    model = apply_plan(digits.model, plan)
    real = collapse_inverted_residual

    def broken(block):
        conv = real(block)
        conv.bias.data += 1.0
        return conv

    monkeypatch.setattr(depthshrink, "collapse_inverted_residual", broken)
    deploy, fixed, check = deploy_verified(model, plan, SHAPE)
    assert fixed.merged == () and "collapse not exact" in fixed.block("blocks.0").reason
    assert check.equivalent
    assert verify_equivalent(model, deploy, SHAPE).equivalent


def test_zoo_mobilenet_v2_becomes_shrinkable_exactly():
    zoo = load_model("mobilenet_v2_035_96").module
    converted, count = to_shrinkable(zoo)
    assert count == 17 and len(shrinkable_blocks(converted)) == 17
    assert verify_equivalent(zoo, converted, (1, 3, 96, 96), seeds=1).max_rel_err < 1e-5


# --- on the NPU ------------------------------------------------------------------------------


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_shrunk_model_runs_fully_on_the_npu_with_better_mac_utilisation(digits, shrunk, tmp_path):
    from ran_edge.blocks import to_deploy

    calib = CalibrationData(digits.train_x[:32], digits.test_x[:8], "digits", "digits")
    target = resolve_target("ethos-u55-128")
    rows = {}
    for name, model in (("original", to_deploy(digits.model)), ("shrunk", shrunk.deploy)):
        converted = convert_model(LoadedModel(model, name, SHAPE, "test"), calib)
        build = build_target(converted, target, tmp_path)  # raises on any CPU op
        assert build.profile.vela.cpu_ops == 0
        rows[name] = {r.path: r for r in build.report.modules}
    for path in shrunk.plan.merged:
        before, after = rows["original"][path], rows["shrunk"][path]
        assert after.mac_utilisation_pct > before.mac_utilisation_pct, path
        assert after.cycles < before.cycles, path


# --- CLI -------------------------------------------------------------------------------------


def run(*args) -> object:
    return CliRunner().invoke(shrink, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --remove-ratio"),
        (["--remove-ratio", "0.5", "--remove", "blocks.1"], "exactly one of"),
        (["--remove-ratio", "1.5"], "must be in (0, 1]"),
        (["--remove", " , "], "--remove is empty"),
        (["--remove", "blocks.1", "--out", "x.pt"], "must end in .pt2"),
        (["--remove", "blocks.1", "--cost", "vela", "--target", "nope-9"], "nope-9"),
        (["--remove", "blocks.1", "--input-shape", "1,1,32"], "must be four positive integers"),
    ],
)
def test_cli_usage_errors(args, message):
    result = run("tiny_mbnet", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output


def test_cli_refuses_what_it_cannot_shrink(tmp_path):
    result = run("model.pt2", "--remove", "blocks.1")
    assert result.exit_code == 2 and "exported graph" in result.output
    result = run("mobilenet_v2_035_96", "--remove", "features.0", "--calib-samples", "4")
    assert result.exit_code == 2 and "not a shrinkable block" in result.output
    calib, labels = tmp_path / "calib.npz", tmp_path / "labels.npz"
    np.savez(calib, x=np.zeros((4, 1, 32, 32), np.float32))
    np.savez(labels, x=np.zeros((4, 1, 16, 16), np.float32), y=np.zeros(4, np.int64))
    result = run(
        "tiny_mbnet", "--remove", "blocks.1", "--calib", calib, "--labels-npz", labels,
        "--calib-samples", "2", "--holdout", "0",
    )  # fmt: skip
    assert result.exit_code == 2 and "x has shape (4, 1, 16, 16)" in result.output


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_cli_shrinks_writes_and_the_result_builds(digits, tmp_path):
    weights = tmp_path / "digits.pt"
    torch.save(digits.model.state_dict(), weights)
    calib = tmp_path / "calib.npz"
    np.savez(calib, x=digits.train_x[:300])
    out = tmp_path / "small.pt2"
    result = run(
        "tiny_mbnet", "--weights", weights, "--calib", calib, "--calib-samples", 128,
        "--holdout", 16, "--remove-ratio", 0.5, "--search-epochs", 1, "--epochs", 1,
        "--out", out, "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["removed"]) == 3 and set(report["merged"]) <= set(report["removed"])
    assert "blocks.3" not in report["merged"]  # MACs would double
    assert report["macs_after"] <= report["macs_before"]
    assert report["recovery"]["loss"].startswith("distillation")
    assert report["verification"]["model_max_rel_err"] < 1e-5
    for path in report["files"].values():
        assert Path(path).is_file()
    program = load_model(str(out)).module
    rebuilt = rebuild_deploy(out.with_suffix(".json"))
    with torch.no_grad():
        for image in torch.from_numpy(digits.test_x[:4]).split(1):  # exported at batch 1
            assert torch.allclose(program(image), rebuilt(image), rtol=1e-5, atol=1e-5)
    table = run(
        "tiny_mbnet", "--weights", weights, "--calib", calib, "--calib-samples", 64,
        "--holdout", 0, "--remove", "blocks.1,blocks.3", "--epochs", 0, "--out", out, "-q",
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "kept unmerged: merging would not lower the cost" in table.stdout
    assert "merged into one 3x3 16->24 stride 2 conv" in table.stdout


# --- library call ----------------------------------------------------------------------------


class Recorder:
    """A BuildProgress that remembers what it was told."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextlib.contextmanager
    def stage(self, label: str):
        yield
        self.lines.append(label)

    @contextlib.contextmanager
    def measure(self, label: str):
        yield None

    def note(self, message: str) -> None:
        self.lines.append(message)


@pytest.mark.slow  # trains the digits TinyMBNet (about 12 s) or builds it
def test_run_shrink_returns_the_typed_result_it_wrote(digits, tmp_path):
    from ran_edge.shrink.run import Recovery, ShrinkRequest, run_shrink

    weights, calib, labels = tmp_path / "d.pt", tmp_path / "calib.npz", tmp_path / "labels.npz"
    torch.save(digits.model.state_dict(), weights)
    np.savez(calib, x=digits.train_x[:200])
    np.savez(labels, x=digits.train_x[:128], y=digits.train_y[:128])
    out = tmp_path / "lib" / "small.pt2"
    request = ShrinkRequest(
        "tiny_mbnet",
        weights=weights,
        remove=("blocks.1", "blocks.3"),
        calib=str(calib),
        calib_samples=64,
        holdout=16,
        epochs=1,
        labels_npz=labels,
        out=out,
    )
    progress = Recorder()
    result = run_shrink(request, progress)
    assert result.model == "tiny_mbnet" and result.converted_blocks == 0
    assert result.removed == ("blocks.1", "blocks.3") and result.merged == ("blocks.1",)
    assert result.gate_search is None  # explicit removal: no gate search
    assert isinstance(result.recovery, Recovery) and result.recovery.loss == "cross-entropy"
    assert result.recovery.train.steps == 2  # 128 labelled images, batch 64, one epoch
    assert result.agreement_before is not None and result.agreement_after is not None
    assert result.macs_after < result.macs_before and result.params_after < result.params_before
    assert result.verification.equivalent
    assert set(result.verification.blocks) == {"blocks.1"}
    assert result.source.weights == str(weights.resolve())
    assert result.files.program == out and all(
        Path(p).is_file() for p in vars(result.files).values()
    )
    assert progress.lines[0] == "load model tiny_mbnet" and progress.lines[-1] == f"write {out}"
    # the .json beside the model records the description; --json adds the files
    saved = json.loads(result.files.description.read_text())
    extra = {"format", "input_shape", "files"}
    assert {k: v for k, v in saved.items() if k not in extra} == json.loads(
        json.dumps(result.description())
    )
    data = result.to_json()
    assert list(data)[-1] == "files" and data["files"]["program"] == str(out)
    assert data["recovery"]["loss"] == "cross-entropy" and data["search_scores"] is None
    assert data["holdout_agreement_after_recovery"]["top1"] == result.agreement_after.top1_agreement


def test_run_shrink_checks_the_request_before_any_work(tmp_path):
    from ran_edge.shrink.run import ShrinkRequest, run_shrink

    with pytest.raises(UsageError, match="exactly one of"):
        run_shrink(ShrinkRequest("tiny_mbnet"))
    with pytest.raises(UsageError, match="--remove is empty"):
        run_shrink(ShrinkRequest("tiny_mbnet", remove=()))
    with pytest.raises(UsageError, match="must end in .pt2"):
        run_shrink(ShrinkRequest("tiny_mbnet", remove_ratio=0.5, out=tmp_path / "x.pt"))


def test_cli_defaults_are_the_request_defaults():
    from dataclasses import fields

    from ran_edge.shrink.run import ShrinkRequest

    defaults = {f.name: f.default for f in fields(ShrinkRequest)}
    options = {p.name: p.default for p in shrink.params}
    for option, field in (
        ("calib_samples", "calib_samples"),
        ("holdout", "holdout"),
        ("epochs", "epochs"),
        ("search_epochs", "search_epochs"),
        ("cost_name", "cost"),
        ("target", "target"),
        ("seed", "seed"),
    ):
        assert options[option] == defaults[field], option
