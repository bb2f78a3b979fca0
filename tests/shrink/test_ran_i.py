"""RAN-i: the published ConvNeXt-T / RAN-i-T figures, the MAC formula against forward
hooks, the NN-Mass search under a MAC budget, and the BN/ReLU6 ConvNeXt on the NPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ran_edge.blocks import to_deploy, train_only_modules
from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import CalibrationData
from ran_edge.errors import UsageError
from ran_edge.models import count_macs, count_params, get_entry
from ran_edge.models.convnext_bn import ConvNeXtBN
from ran_edge.models.loading import LoadedModel
from ran_edge.models.registry import calibrate_batchnorm
from ran_edge.shrink import convnext_macs, nn_mass, preset, search_scaling, uniform_scale
from ran_edge.shrink.ran_i import PRESETS, ScaledConfig
from ran_edge.targets.loading import resolve_target


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


# Published: ConvNeXt-T 4.46 GMACs, NN-Mass 13,248; RAN-i-T 3.28 GMACs, NN-Mass 14,710.
PUBLISHED = {
    "convnext_t": (4.46e9, 13_248, "convnext_t_bn"),
    "ran_i_t": (3.28e9, 14_710, "ran_i_t"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_figures(name):
    macs, mass, zoo_name = PUBLISHED[name]
    config = preset(name)
    assert config.nn_mass == mass
    assert config.macs == pytest.approx(macs, rel=0.03)
    entry = get_entry(zoo_name)
    assert entry.input_shape == (1, 3, 224, 224) and entry.family == "convnext_bn"
    model = entry.factory().eval()  # the factory alone: no BN statistics pass at 224
    assert (model.depths, model.widths) == PRESETS[name]
    assert count_macs(model, (1, 3, 224, 224)) == config.macs  # the formula is exact


def test_exact_figures_we_get():
    assert preset("convnext_t").macs == 4_455_531_264
    assert preset("ran_i_t").macs == 3_284_745_947
    assert preset("ran_i_t").macs < preset("convnext_t").macs
    assert preset("ran_i_t").nn_mass > preset("convnext_t").nn_mass  # deeper-thinner
    # RAN-i-T is ConvNeXt-T x 5/3 deeper and x 2/3 thinner; the published 511 is kept.
    assert uniform_scale(PRESETS["convnext_t"], 5 / 3, 2 / 3, width_divisor=1) == (
        (5, 5, 15, 5),
        (64, 128, 256, 512),
    )


def test_formula_matches_hooks_at_odd_sizes():
    depths, widths = (1, 2, 1), (24, 40, 72)
    model = ConvNeXtBN(depths, widths, num_classes=7, in_channels=1).eval()
    for side in (64, 70, 99):
        expected = convnext_macs(depths, widths, resolution=side, in_channels=1, num_classes=7)
        assert count_macs(model, (1, 1, side, side)) == expected, side


def test_search_maximises_nn_mass_within_budget():
    budget = preset("convnext_t").macs
    found = search_scaling(budget)
    best = found.best
    assert best.macs <= budget and best.nn_mass > found.base.nn_mass
    assert all(w % 16 == 0 for w in best.widths)  # Ethos-U friendly
    base_depths, base_widths = PRESETS["convnext_t"]
    assert all(d >= b for d, b in zip(best.depths, base_depths, strict=True))  # deeper
    assert all(w <= b for w, b in zip(best.widths, base_widths, strict=True))  # thinner
    floors = [-(-w * 2 // 3 // 16) * 16 for w in base_widths]  # default min_width_mult 2/3
    assert all(w >= f for w, f in zip(best.widths, floors, strict=True))
    # Locally optimal: no single-stage step inside the bounds raises NN-Mass within budget.
    for stage in range(4):
        for dd, dw in ((1, 0), (0, 16), (1, -16), (-1, 16)):
            depths, widths = list(best.depths), list(best.widths)
            depths[stage] += dd
            widths[stage] += dw
            if not (
                base_depths[stage] <= depths[stage] <= 3 * base_depths[stage]
                and floors[stage] <= widths[stage] <= base_widths[stage]
            ):
                continue
            neighbour = ScaledConfig.of(depths, widths)
            assert neighbour.macs > budget or neighbour.nn_mass <= best.nn_mass


def test_uniform_search_rediscovers_ran_i_t():
    found = search_scaling(3_300_000_000, uniform=True)
    assert found.best.depths == (5, 5, 15, 5)
    assert found.best.widths == (64, 128, 256, 512)  # 511 published; 512 on the 16-grid
    assert found.best.nn_mass == 14_720


def test_bad_scaling_inputs():
    with pytest.raises(UsageError, match="one depth per width"):
        nn_mass([3, 3], [96])
    with pytest.raises(UsageError, match="no configuration fits"):
        search_scaling(10_000)
    with pytest.raises(UsageError, match="unknown preset"):
        preset("ran_i_xl")
    with pytest.raises(UsageError, match="unknown activation"):
        ConvNeXtBN(act="swish")


@pytest.mark.slow  # end to end: seconds of real tools
def test_convnext_bn_deploys_without_norms_and_runs_on_the_npu(tmp_path):
    torch.manual_seed(0)
    model = ConvNeXtBN((1, 1, 2, 1), (16, 32, 48, 64), num_classes=10)
    calibrate_batchnorm(model, (1, 3, 64, 64))
    deploy = to_deploy(model)
    assert train_only_modules(deploy) == []
    assert count_params(deploy) < count_params(model)  # every BN folded into a conv
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((16, 3, 64, 64)).astype(np.float32)
    calib = CalibrationData(samples[:12], samples[12:], "random", "random")
    converted = convert_model(LoadedModel(deploy, "convnext_bn_small", (1, 3, 64, 64), "t"), calib)
    assert "GELU" not in converted.info.op_types and "HARD_SWISH" not in converted.info.op_types
    build = build_target(converted, resolve_target("ethos-u55-128"), tmp_path)  # raises on CPU ops
    assert build.profile.vela.cpu_ops == 0
