"""Cost table: cached by content, keyed by target, plausible costs, predictor sums.

Real tools on a tiny slot (32 channels at 16x16, three graphs): about 20 s.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

import pytest
from torch import nn

from ran_edge.jobs import JobPool
from ran_edge.models.ran_e_space import Arch
from ran_edge.search import (
    COLLAPSED,
    BlockCost,
    Candidate,
    CostTable,
    LinearCorrection,
    LiteRtCompiler,
    Predictor,
    Slot,
    random_arch,
    summed_cost,
)

# Minutes of real conversions and Vela runs: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow

SLOT = Slot(cin=32, cout=32, size=16, stride=1)
K3 = Candidate("ir", kernel=3, expand=2)
K7 = Candidate("ir", kernel=7, expand=2)
TARGET = "ethos-u55-128"


@dataclass
class CountingCompiler:
    """The real compiler, counting how often it is asked to compile."""

    inner: LiteRtCompiler = field(default_factory=LiteRtCompiler)
    calls: int = 0

    @property
    def identity(self) -> str:
        return self.inner.identity

    def compile(self, module: nn.Module, input_shape: tuple[int, ...]) -> bytes:
        self.calls += 1
        return self.inner.compile(module, input_shape)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cost-cache")
    compiler = CountingCompiler()
    table = CostTable(TARGET, cache, compiler)
    costs = {c: table.cost(SLOT, c) for c in (K3, K7)}
    return table, compiler, costs


def test_cache_hit_does_not_recompile(filled):
    table, compiler, costs = filled
    assert compiler.calls == 3  # k3 sandwich, k7 sandwich, one frame (cin == cout)
    files = {kind: table.cache.count(kind) for kind in ("tflite", "graphs", "blocks")}
    again_compiler = CountingCompiler()
    again = CostTable(TARGET, table.cache.root, again_compiler)
    assert again.cost(SLOT, K3) == costs[K3]
    assert again.cost(SLOT, K7) == costs[K7]
    assert again_compiler.calls == 0
    assert {kind: table.cache.count(kind) for kind in files} == files


def test_fill_of_cached_entries_does_nothing(filled):
    table, _, costs = filled
    compiler = CountingCompiler()
    CostTable(TARGET, table.cache.root, compiler, pool=JobPool(1)).fill([(SLOT, K3), (SLOT, K7)])
    assert compiler.calls == 0


def test_an_unreadable_cache_entry_is_recomputed_never_used(filled):
    table, _, costs = filled
    entry = table.cache.path("blocks", table.key(SLOT, K3))
    entry.write_text('{"npu_cycles": 1')  # truncated, as a crash of another writer might leave
    assert table.cost(SLOT, K3) == costs[K3]
    assert json.loads(entry.read_text())["npu_cycles"] == costs[K3].npu_cycles


def test_key_changes_with_target_slot_and_candidate(filled, tmp_path):
    table, _, _ = filled
    other = CostTable("ethos-u65-256", tmp_path)
    assert other.key(SLOT, K3) != table.key(SLOT, K3)
    assert table.key(SLOT, K7) != table.key(SLOT, K3)
    assert table.key(Slot(32, 32, 8, 1), K3) != table.key(SLOT, K3)
    assert CostTable(TARGET, tmp_path).key(SLOT, K3) == table.key(SLOT, K3)


def test_costs_are_positive_and_k7_costs_more_than_k3(filled):
    _, _, costs = filled
    for cost in costs.values():
        assert min(cost.npu_cycles, cost.total_cycles, cost.weight_bytes, cost.macs) > 0
        assert cost.sram_bytes > 0
    assert costs[K7].npu_cycles > costs[K3].npu_cycles
    # the block's own MACs, producer and consumer subtracted: expand, depthwise, project
    hidden = SLOT.cin * 2
    pixels = SLOT.size * SLOT.size
    expected = pixels * (SLOT.cin * hidden + hidden * 9 + hidden * SLOT.cout)
    assert costs[K3].macs == expected


def test_predictor_sum_matches_table(filled):
    table, _, costs = filled
    arch = Arch(resolution=32, blocks=((SLOT, K3), (SLOT, K7)))
    parts_cost = BlockCost(1000, 2000, 10, 5, 7)
    stub = {p: parts_cost for p in (arch.parts()[0], arch.parts()[-1])}
    stub.update(costs)

    class Stub:
        def cost(self, slot, cand):
            return stub.get((slot, cand)) or table.cost(slot, cand)

    summed = summed_cost(Stub(), arch)
    assert summed.total_cycles == 2 * 2000 + costs[K3].total_cycles + costs[K7].total_cycles
    assert summed.npu_cycles == 2 * 1000 + costs[K3].npu_cycles + costs[K7].npu_cycles
    assert summed.sram_bytes == max(c.sram_bytes for c in costs.values())
    fitted = Predictor(Stub(), LinearCorrection(2.0, 10.0), LinearCorrection())
    total, npu = fitted.predict(arch)
    assert total == 2.0 * summed.total_cycles + 10.0
    assert npu == summed.npu_cycles


def test_linear_correction_recovers_a_line():
    fit = LinearCorrection.fit([1.0, 2.0, 3.0], [12.0, 14.0, 16.0])
    assert fit.scale == pytest.approx(2.0) and fit.offset == pytest.approx(10.0)


def test_random_arch_covers_the_ran_e_skeleton():
    arch = random_arch(random.Random(0), resolution=128)
    assert len(arch.blocks) == 16
    assert arch.stem == Slot(3, 16, 128, 2)
    assert arch.head == Slot(224, 1000, 4, 1)
    assert all(c.kind in ("ir", "collapsed") for _, c in arch.blocks)
    with pytest.raises(ValueError):
        Candidate("ir", kernel=4, expand=2)
    with pytest.raises(ValueError):
        Candidate("collapsed", kernel=5)
    assert COLLAPSED.is_block
