"""The RAN-e family and the reference networks match their published sizes."""

from __future__ import annotations

import pytest
import torch

from ran_edge.models import count_macs, count_params, create_model
from ran_edge.models.ran_e import GROUND_TRUTH, SUBNETWORK_C, CollapsedRanE

# Minutes of real conversions and Vela runs: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow

# Published: RAN-e-GT about 4.5M parameters / 434M MACs, SubNetwork-C about 4.7M / 488M;
# ResNet-18 11.69M / 1.81G; RepVGG-A0 (deploy) 8.30M / 1.36G.
PUBLISHED = {
    "ran_e_gt": (4.5e6, 434e6),
    "ran_e_c": (4.7e6, 488e6),
    "resnet18": (11.69e6, 1.814e9),
    "repvgg_a0": (8.30e6, 1.36e9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_params_and_macs_within_3_percent_of_published(name):
    model = create_model(name)
    params, macs = PUBLISHED[name]
    assert count_params(model) == pytest.approx(params, rel=0.03)
    assert count_macs(model, (1, 3, 224, 224)) == pytest.approx(macs, rel=0.03)


def test_ground_truth_collapses_six_of_sixteen_blocks():
    assert sum(len(s.kernels) for s in GROUND_TRUTH) == 16
    assert sum(sum(s.collapse) for s in GROUND_TRUTH) == 6
    model = create_model("ran_e_gt")
    collapsed = [i for i, b in enumerate(model.blocks) if isinstance(b, CollapsedRanE)]
    assert collapsed == [0, 1, 2, 3, 8, 9]  # four early stacks and both 96->128 blocks
    assert sum(len(s.kernels) for s in SUBNETWORK_C) == 16


def test_outputs_are_class_scores():
    model = create_model("ran_e_c")
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
