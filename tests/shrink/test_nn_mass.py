"""NN-Mass of whole networks: the search's count, so zoo baselines compare with searched nets.

Expected values are computed here from the published stage tables, not by the function.
"""

from __future__ import annotations

import pytest
from torch import nn

from ran_edge.blocks import InvertedResidual
from ran_edge.models import create_model
from ran_edge.models.efficientnet_lite import _STAGES
from ran_edge.models.mobilenet_v2 import _INVERTED_RESIDUAL_SETTING
from ran_edge.models.ran_e import GROUND_TRUTH, SUBNETWORK_C, DownsamplePair, Stack
from ran_edge.search import BlockCost
from ran_edge.search.nn_mass import find_blocks, network_mass, network_nn_mass
from ran_edge.search.search import Space, genome_of

# Minutes of real conversions and Vela runs: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow

SHAPE = (1, 3, 64, 64)  # block structure does not depend on the resolution


@pytest.fixture(scope="module")
def space() -> Space:
    return Space(lambda _slot, _cand: BlockCost(1, 1, 1, 1, 1), 64)


def _acts(expand: int) -> int:
    """Activation layers of an inverted residual: after expand (if any) and depthwise."""
    return 1 if expand == 1 else 2


@pytest.mark.parametrize(("zoo", "stacks"), [("ran_e_gt", GROUND_TRUTH), ("ran_e_c", SUBNETWORK_C)])
def test_ran_e_matches_the_search(space, zoo: str, stacks: tuple[Stack, ...]):
    genome = genome_of(stacks, space.candidates)
    assert genome is not None
    assert network_nn_mass(create_model(zoo), SHAPE) == space.evaluate(genome).nn_mass


def test_efficientnet_lite0_from_its_stage_table():
    expected = sum(2 * _acts(s.expand_ratio) * s.out_ch * s.repeats for s in _STAGES)
    result = network_mass(create_model("efficientnet_lite0"), SHAPE)
    assert result.nn_mass == expected
    assert len(result.blocks) == sum(s.repeats for s in _STAGES)  # stem and head excluded


def test_mobilenet_v2_from_its_stage_table():
    expected = sum(2 * _acts(t) * c * n for t, c, n, _ in _INVERTED_RESIDUAL_SETTING)
    assert network_nn_mass(create_model("mobilenet_v2"), SHAPE) == expected


def test_nested_blocks_count_once_and_unused_ones_not_at_all():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            pair = DownsamplePair(8, 3, 6)  # two inverted residuals inside: one block
            self.outer = nn.Sequential(InvertedResidual(8, 8, expand_ratio=2), pair)
            self.wrap = nn.ModuleList([InvertedResidual(8, 16, expand_ratio=4)])
            self.spare = InvertedResidual(16, 16)  # never called

        def forward(self, x):
            return self.wrap[0](self.outer(x))

    net = Net()
    assert [n for n, _ in find_blocks(net)] == ["outer.0", "outer.1", "wrap.0", "spare"]
    result = network_mass(net, (1, 8, 8, 8))
    assert [b.name for b in result.blocks] == ["outer.0", "outer.1", "wrap.0"]
    assert result.nn_mass == 2 * 2 * 8 + 2 * 4 * 8 + 2 * 2 * 16
    assert net.training  # the caller's mode is restored
