"""The search: determinism, constraints, Pareto front, arch file round trip, plot bytes.

No Vela here: a synthetic cost table is written into the cache (under the real compiler's
identity, so `CostTable.fill` finds every entry and compiles nothing) at resolution 64.
A few seconds in all.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ran_edge.errors import UsageError
from ran_edge.models.arch_file import arch_from_dict, arch_to_dict, read_arch, write_arch
from ran_edge.models.loading import load_model
from ran_edge.models.ran_e_space import HEAD, STEM, Arch, build_network, ran_e_slots
from ran_edge.search import (
    COLLAPSED,
    BlockCost,
    Candidate,
    CostTable,
    LinearCorrection,
    LiteRtCompiler,
    Slot,
    summed_cost,
)
from ran_edge.search.context import context_networks
from ran_edge.search.fit import IDENTITY_NOTE, fit_genomes, fit_line
from ran_edge.search.graphs import NetworkGraph
from ran_edge.search.search import (
    Constraints,
    Space,
    dominates,
    pareto_front,
    search,
    violation,
)
from ran_edge.search.table import cost_key

# Minutes of real conversions and Vela runs: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow

RES = 64
TARGET = "ethos-u55-256"


def fake_cost(slot: Slot, cand: Candidate) -> BlockCost:
    """Plausible shapes: MACs grow with kernel x expansion, collapsed blocks are dense but
    cheap in cycles (what the NPU rewards), SRAM grows with the feature map."""
    m = slot.cin * slot.cout * slot.size * slot.size // (slot.stride**2)
    if cand.kind == "ir":
        macs = m * (cand.kernel * cand.kernel + 2 * cand.expand) // 8
        cycles = m * cand.kernel * cand.expand // 6 + 2_000
    elif cand.kind == "collapsed":
        macs = m * 9 // 4
        cycles = m // 5 + 1_000
    else:
        macs, cycles = m, m // 4 + 500
    sram = slot.size * slot.size * max(slot.cin, slot.cout) * (2 + cand.expand)
    return BlockCost(cycles, cycles + 700, sram, m // 64, macs)


def prefill(cache_dir) -> CostTable:
    table = CostTable(TARGET, cache_dir)
    slots = ran_e_slots(RES)
    arch = Arch(RES, tuple((s, COLLAPSED) for s in slots))
    pairs = [(arch.stem, STEM), (arch.head, HEAD)]
    pairs += [(s, c) for s in slots for c in (*_ir(), COLLAPSED)]
    for slot, cand in pairs:
        table.cache.put_bytes(
            "blocks", table.key(slot, cand), fake_cost(slot, cand).to_json().encode()
        )
    return table


def _ir():
    return tuple(Candidate("ir", k, e) for k in (3, 5, 7) for e in (2, 4, 6))


@pytest.fixture(scope="module")
def space() -> Space:
    return Space(fake_cost, RES, clock_hz=500e6)


def test_search_is_deterministic_with_a_seed(space):
    a = search(space, budget=3000, seed=7)
    b = search(space, budget=3000, seed=7)
    c = search(space, budget=3000, seed=8)
    assert [p.genome for p in a.front] == [p.genome for p in b.front]
    assert a.best == b.best and a.evaluated == b.evaluated == 3000
    assert [p.genome for p in a.front] != [p.genome for p in c.front]


def test_front_is_non_dominated_and_feasible(space):
    best = space.best_achievable()
    sram = best["max_sram_kib"] * 1.5
    limits = Constraints(max_macs=14_000_000, max_sram_kib=sram, min_nonlinear=30)
    r = search(space, limits, budget=4000, seed=1)
    assert r.front
    for p in r.feasible:
        assert violation(p, limits) == 0
        assert p.macs <= 14_000_000 and p.sram_kib <= sram and p.nonlinear >= 30
    for p in r.front:
        assert not any(dominates(q, p) for q in r.feasible)
    assert pareto_front(r.feasible) == r.front
    assert r.best.fps == max(p.fps for p in r.feasible)  # the objective: max FPS
    fps = [p.fps for p in r.front]
    assert fps == sorted(fps) and len(set(fps)) == len(fps)


def test_figures_match_the_built_network(space):
    arch_genome = space.known()["RAN-e GT"]
    p = space.evaluate(arch_genome)
    net = build_network(space.arch(arch_genome))
    assert p.params == sum(t.numel() for t in net.parameters())
    assert p.macs == sum(
        c.macs for c in [fake_cost(s, c) for s, c in space.arch(arch_genome).parts()]
    )
    assert p.fps == pytest.approx(500e6 / p.total_cycles)
    # GT: 5 collapsed (1 act each), the collapsed 128->64->128 pair (2), 10 IR (2 each), head 2
    assert p.nonlinear == 5 + 2 + 20 + 2


def test_impossible_constraint_names_it_and_the_best_value(space):
    best = space.best_achievable()
    with pytest.raises(UsageError, match=r"--max-macs 1,000 cannot be met.*smallest.*MACs"):
        search(space, Constraints(max_macs=1000), budget=100)
    with pytest.raises(
        UsageError, match=rf"--min-nonlinear 999 .*largest.* {best['min_nonlinear']} "
    ):
        search(space, Constraints(min_nonlinear=999), budget=100)
    with pytest.raises(UsageError, match="--max-sram"):
        search(space, Constraints(max_sram_kib=0.5), budget=100)
    # exactly the bound is achievable
    r = search(space, Constraints(max_macs=best["max_macs"]), budget=500)
    assert r.best.macs == best["max_macs"]


def test_arch_file_round_trips_and_builds(space, tmp_path):
    arch = space.arch(search(space, budget=500, seed=3).best.genome)
    path = write_arch(tmp_path / "found.json", arch, target=TARGET)
    text = path.read_text()
    assert json.loads(text)["version"] == 1
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    again, _ = read_arch(path)
    assert again == arch
    assert arch_from_dict(arch_to_dict(arch)) == arch
    loaded = load_model(str(path))
    assert loaded.name == "found" and loaded.input_shape == (1, 3, RES, RES)
    with torch.no_grad():
        assert loaded.module(torch.zeros(1, 3, RES, RES)).shape == (1, 1000)


def test_bad_arch_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "ran-edge-arch", "version": 99}))
    with pytest.raises(UsageError, match="version 99"):
        load_model(str(bad))
    data = arch_to_dict(Arch(RES, tuple((s, COLLAPSED) for s in ran_e_slots(RES))))
    data["blocks"][3]["cout"] = 81
    bad.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="block 3"):
        load_model(str(bad))


def _cli(cache, out, *extra):
    from ran_edge.cli.search import search as command

    args = ["--target", TARGET, "--resolution", str(RES), "--budget", "2000", "--seed", "5"]
    args += ["--cache-dir", str(cache), "--out", str(out), "--workers", "1", "--json", *extra]
    return CliRunner().invoke(command, args)


def test_cli_writes_arch_and_identical_plot(tmp_path):
    cache = tmp_path / "cache"
    prefill(cache)
    runs = []
    for i in range(2):
        res = _cli(cache, tmp_path / f"out{i}", "--max-macs", "15000000")
        assert res.exit_code == 0, res.output
        runs.append(json.loads(res.output))
    a, b = runs
    assert a["front"] == b["front"] and a["best"]["macs"] <= 15_000_000
    png = [(tmp_path / f"out{i}" / "pareto.png").read_bytes() for i in range(2)]
    assert png[0][:8] == b"\x89PNG\r\n\x1a\n" and png[0] == png[1]
    arch = [(tmp_path / f"out{i}" / "ran_e_search.json").read_text() for i in range(2)]
    assert arch[0] == arch[1]
    assert set(a["references"]) == {"RAN-e GT", "RAN-e C"}


def test_run_search_as_a_library_call(tmp_path):
    from ran_edge.search.run import SearchRequest, SearchRunResult, run_search

    cache = tmp_path / "cache"
    prefill(cache)
    request = SearchRequest(
        TARGET,
        budget=2000,
        seed=5,
        resolution=RES,
        constraints=Constraints(max_macs=15_000_000),
        cache_dir=cache,
        name="lib",
        out=tmp_path / "lib",
        workers=1,
    )
    result = run_search(request)
    assert isinstance(result, SearchRunResult) and result.target == TARGET
    assert result.fit is None and result.search.evaluated == 2000
    assert result.best is result.search.best and result.best.macs <= 15_000_000
    assert result.best in result.search.front
    assert result.arch == tmp_path / "lib" / "lib.json" and result.plot.is_file()
    arch, data = read_arch(result.arch)
    assert arch == result.search.space.arch(result.best.genome)
    assert data["search"]["constraints"] == {"max_macs": 15_000_000}
    assert data["predicted"]["correction"] == IDENTITY_NOTE
    # the CLI prints the same result (timings aside)
    res = _cli(cache, tmp_path / "cli", "--max-macs", "15000000")
    assert res.exit_code == 0, res.output
    timing = {"seconds", "per_second", "arch", "plot"}
    cli = {k: v for k, v in json.loads(res.output).items() if k not in timing}
    lib = json.loads(json.dumps(result.to_json(), sort_keys=True))
    assert cli == {k: v for k, v in lib.items() if k not in timing}


def test_cli_errors(tmp_path):
    cache = tmp_path / "cache"
    prefill(cache)
    res = _cli(cache, tmp_path / "o", "--max-params", "10")
    assert res.exit_code == 2 and "--max-params 10 cannot be met" in res.output
    res = _cli(cache, tmp_path / "o", "--target", "ethos-u99")
    assert res.exit_code == 2 and "unknown target" in res.output
    res = _cli(cache, tmp_path / "o", "--baseline-report", str(tmp_path / "missing.json"))
    assert res.exit_code == 2 and "--baseline-report" in res.output


def test_jointly_impossible_constraints_name_the_unmet_ones():
    def cheap_collapse(slot: Slot, cand: Candidate) -> BlockCost:
        c = fake_cost(slot, cand)
        return (
            BlockCost(c.npu_cycles, c.total_cycles, c.sram_bytes, c.weight_bytes, 1)
            if (cand.kind == "collapsed")
            else c
        )

    space = Space(cheap_collapse, RES, candidates=(Candidate("ir", 3, 2), COLLAPSED))
    best = space.best_achievable()  # min MACs: all collapsed; max nonlinear: all IR
    limits = Constraints(max_macs=best["max_macs"], min_nonlinear=best["min_nonlinear"])
    with pytest.raises(
        UsageError, match=r"meets --max-macs and --min-nonlinear together.*misses --m"
    ):
        search(space, limits, budget=300)


# --fit: the correction fitted on full-network compiles. The "full compiles" are written
# into the cache as synthetic Vela figures on a known line, so the fit must recover it.

TOTAL_LINE = LinearCorrection(1.25, 40_000.0)
NPU_LINE = LinearCorrection(1.1, -300.0)


def write_full_networks(table: CostTable, space: Space, n: int, seed: int) -> None:
    """Put the networks the fit will ask for where `measure_graph` looks for them."""
    for _, genome in fit_genomes(space, n, seed):
        arch = space.arch(genome)
        s = summed_cost(table, arch)
        full = BlockCost(
            round(NPU_LINE(s.npu_cycles)),
            round(TOTAL_LINE(s.total_cycles)),
            s.sram_bytes,
            s.weight_bytes,
            s.macs,
        )
        key = cost_key(NetworkGraph(arch), table.target, table.compiler)
        table.cache.put_bytes("graphs", key, full.to_json().encode())


def _no_compile(*_args, **_kwargs):
    raise AssertionError("the test expected every full network in the cache")


def test_cli_fit_predicts_through_the_fitted_line(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    table = prefill(cache)
    write_full_networks(table, Space(table.cost, RES), 3, seed=5)
    monkeypatch.setattr(LiteRtCompiler, "compile", _no_compile)
    runs = {}
    for fit in ("0", "3"):
        res = _cli(cache, tmp_path / f"fit{fit}", "--fit", fit)
        assert res.exit_code == 0, res.output
        runs[fit] = json.loads(res.output)
    fitted = runs["3"]["fit"]
    assert fitted["n"] == 3
    assert fitted["networks"] == ["RAN-e GT", "RAN-e C", "fastest per slot"]
    assert fitted["total"]["scale"] == pytest.approx(TOTAL_LINE.scale, rel=1e-4)
    assert fitted["total"]["offset"] == pytest.approx(TOTAL_LINE.offset, rel=1e-2)
    assert fitted["npu"]["scale"] == pytest.approx(NPU_LINE.scale, rel=1e-4)
    assert fitted["total"]["worst_error_pct"] < 0.01
    assert runs["0"]["fit"] is None
    for fit, line in (("0", LinearCorrection()), ("3", TOTAL_LINE)):
        arch, data = read_arch(tmp_path / f"fit{fit}" / "ran_e_search.json")
        best = runs[fit]["best"]
        expected = line(summed_cost(table, arch).total_cycles)
        assert best["total_cycles"] == pytest.approx(expected, rel=1e-4)
        assert best["fps"] == pytest.approx(runs[fit]["clock_hz"] / best["total_cycles"])
        assert data["predicted"]["correction"] == (fitted if fit == "3" else IDENTITY_NOTE)
        assert data["search"]["fit"] == int(fit)


def test_fit_networks_are_seeded_distinct_and_checked(space):
    a, b, c = (fit_genomes(space, 8, seed) for seed in (1, 1, 2))
    assert a == b and a[3:] != c[3:]
    assert [name for name, _ in a[:3]] == ["RAN-e GT", "RAN-e C", "fastest per slot"]
    assert len({g for _, g in a}) == 8
    assert [name for name, _ in fit_genomes(space, 2, 0)] == ["RAN-e GT", "RAN-e C"]
    with pytest.raises(UsageError, match="--fit -1"):
        fit_genomes(space, -1, 0)
    with pytest.raises(UsageError, match="at least 2"):
        fit_genomes(space, 1, 0)
    one = Space(fake_cost, RES, candidates=(COLLAPSED,))
    with pytest.raises(UsageError, match="only 1 distinct"):
        fit_genomes(one, 2, 0)
    with pytest.raises(UsageError, match="same summed cycles"):
        fit_line([5.0, 5.0], [6.0, 7.0])


def test_cli_rejects_a_bad_fit_before_compiling(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    prefill(cache)
    monkeypatch.setattr(LiteRtCompiler, "compile", _no_compile)
    res = _cli(cache, tmp_path / "o", "--fit", "-2")
    assert res.exit_code == 2 and "--fit -2" in res.output
    res = _cli(cache, tmp_path / "o", "--fit", "1")
    assert res.exit_code == 2 and "at least 2 full compiles" in res.output


def test_cli_context_adds_the_terms_measured_on_whole_networks(tmp_path, monkeypatch):
    """The context networks are written into the cache as synthetic Vela figures (table
    sum + 9,000, collapsing block 4 costs 700 more); --context must predict exactly that."""
    cache = tmp_path / "cache"
    table = prefill(cache)
    for graph in context_networks(RES):
        s = summed_cost(table, graph.arch)
        extra = 9_000 + (700 if graph.arch.blocks[4][1] == COLLAPSED else 0)
        full = BlockCost(s.npu_cycles, s.total_cycles + extra, s.sram_bytes, s.weight_bytes, s.macs)
        key = cost_key(graph, table.target, table.compiler)
        table.cache.put_bytes("graphs", key, full.to_json().encode())
    monkeypatch.setattr(LiteRtCompiler, "compile", _no_compile)
    res = _cli(cache, tmp_path / "ctx", "--context")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["context"]["base"] == 9_000
    assert data["context"]["collapse"] == [700 if i == 4 else 0 for i in range(16)]
    assert data["context"]["pair"] == [0] * 15
    arch, written = read_arch(tmp_path / "ctx" / "ran_e_search.json")
    collapsed_4 = arch.blocks[4][1] == COLLAPSED
    expected = summed_cost(table, arch).total_cycles + 9_000 + (700 if collapsed_4 else 0)
    assert data["best"]["total_cycles"] == pytest.approx(expected)
    assert written["predicted"]["context"] == data["context"]
    assert written["search"]["context"] is True
