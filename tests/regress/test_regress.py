"""The CI gate on Vela estimates: worse fails naming the metric, better passes, bad baselines
are explained, and --update writes a stable file."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from helpers import run_cli

from ran_edge.errors import UsageError
from ran_edge.regress.baseline import read_baseline
from ran_edge.regress.config import load_config

NET = """
import torch
from torch import nn

INPUT_SHAPE = (1, 1, 32, 32)


def _cbr(cin, cout, k, s, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())


class Net(nn.Module):
    def __init__(self, dense_middle: bool, extra_block: bool):
        super().__init__()
        self.stem = _cbr(1, 16, 3, 2)
        # The slowed variant swaps the depthwise conv for a dense 5x5 one.
        self.mid = _cbr(16, 16, 5, 1) if dense_middle else _cbr(16, 16, 3, 1, groups=16)
        self.extra = _cbr(16, 16, 3, 1) if extra_block else nn.Identity()
        self.head = _cbr(16, 32, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.head(self.extra(self.mid(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def baseline():
    return Net(dense_middle=False, extra_block=True)


def slower():
    return Net(dense_middle=True, extra_block=True)


def faster():
    return Net(dense_middle=False, extra_block=False)
"""


@pytest.fixture
def gate(tmp_path, digits_model):
    """A gate config for one model on two targets; `use(factory)` points it at a variant."""
    (tmp_path / "net.py").write_text(NET)
    config = tmp_path / "regress.toml"

    def use(factory: str) -> None:
        config.write_text(
            f"calib_samples = 8\n[tolerances]\ncycles_total = 0.5\n"
            f'[[models]]\nname = "net"\nspec = "{tmp_path / "net.py"}:{factory}"\n'
            f'calib = "{digits_model.calib}"\ntargets = ["ethos-u55-128", "ethos-u65-256"]\n'
        )

    def run(*args):
        return run_cli("regress", "--config", config, "--baseline", tmp_path / "baseline.json",
                       "--out", tmp_path / "build", "-q", *args)  # fmt: skip

    use("baseline")
    assert run("--update").exit_code == 0
    return use, run, tmp_path


def test_unchanged_model_passes(gate):
    _use, run, _ = gate
    result = run("--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["regressions"] == 0
    assert {d["verdict"] for d in payload["deltas"]} == {"same"}


def test_a_slowed_model_fails_naming_the_metric(gate):
    use, run, tmp_path = gate
    use("slower")
    result = run("--junit", tmp_path / "junit.xml")
    assert result.exit_code == 1
    assert "net@ethos-u55-128 cycles_total" in result.stderr
    assert "--update" in result.stderr
    assert "worse" in result.stdout
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert int(suite.get("failures")) >= 1
    failing = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert "net@ethos-u55-128" in failing


def test_a_faster_model_passes_and_is_reported_better(gate):
    use, run, _ = gate
    use("faster")
    result = run("--json")
    assert result.exit_code == 0, result.output
    deltas = json.loads(result.stdout)["deltas"]
    cycles = [d for d in deltas if d["metric"] == "cycles_total"]
    assert cycles and all(d["verdict"] == "better" for d in cycles)


def test_update_is_deterministic_and_sorted(gate):
    _use, run, tmp_path = gate
    path = tmp_path / "baseline.json"
    first = path.read_bytes()
    assert run("--update").exit_code == 0
    assert path.read_bytes() == first
    entries = list(json.loads(first)["entries"])
    assert entries == sorted(entries) == ["net@ethos-u55-128", "net@ethos-u65-256"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"schema": "something-else"}', "not a ran-edge baseline"),
        ('{"schema": "ran-edge/baseline", "schema_version": 9, "entries": {}}', "schema_version 9"),
        ('{"schema": "ran-edge/baseline", "schema_version": 1, "entries": {"net": {}}}', "model@target"),
        ('{"schema": "ran-edge/baseline", "schema_version": 1, "entries": {"a@b": {"fps": 1}}}', "unknown metric 'fps'"),
        ('{"schema": "ran-edge/baseline", "schema_version": 1, "entries": {"a@b": {"cycles_total": "9"}}}', "not a finite number"),
    ],
)  # fmt: skip
def test_corrupt_or_hand_edited_baseline_is_explained(tmp_path, content, words):
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=words):
        read_baseline(path)


def test_cli_reports_a_broken_baseline_with_exit_2(gate):
    _use, run, tmp_path = gate
    (tmp_path / "baseline.json").write_text("{truncated")
    result = run()
    assert result.exit_code == 2
    assert "not valid JSON" in result.stderr and "--update" in result.stderr


@pytest.mark.parametrize(("floor", "exit_code"), [(5.0, 0), (99.0, 1)])
def test_int8_fidelity_is_gated_against_floors(tmp_path, digits_build, floor, exit_code):
    """With `holdout`, the gate reads each report's SQNR and top-1 agreement too."""
    config = tmp_path / "regress.toml"
    config.write_text(
        f"holdout = 48\n[floors]\nsqnr = {floor}\ntop1_agreement = 90.0\n"
        '[[models]]\nname = "digits_net_make_net"\ntargets = ["ethos-u55-128"]\n'
    )
    baseline = tmp_path / "baseline.json"
    common = ("--config", config, "--baseline", baseline, "--reports", digits_build.out, "-q")
    assert run_cli("regress", *common, "--update").exit_code == 0
    entry = read_baseline(baseline)[0]["digits_net_make_net@ethos-u55-128"]
    assert entry["sqnr"] > 5.0 and entry["top1_agreement"] >= 90.0
    result = run_cli("regress", *common, "--json")
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert "digits_net_make_net@ethos-u55-128 sqnr" in " ".join(result.stderr.split())
        assert "floor" in result.stderr


def test_gating_fidelity_without_holdout_is_refused(tmp_path):
    config = tmp_path / "regress.toml"
    config.write_text('[floors]\nsqnr = 25\n[[models]]\nname = "m"\ntargets = ["ethos-u55-128"]\n')
    with pytest.raises(UsageError, match="holdout"):
        load_config(config)


def test_reports_made_with_another_profile_are_refused(tmp_path, digits_build, monkeypatch):
    """report.json records its target profile's hash: a report built with an older version of
    the profile is not compared with a baseline as if nothing had changed."""
    import shutil

    from ran_edge.targets.loading import TARGET_PATH_ENV, resolve_target

    shipped = resolve_target("ethos-u55-128").source
    user = tmp_path / "targets"
    user.mkdir()
    edited = shipped.read_text().replace('optimise = "Performance"', 'optimise = "Size"')
    (user / shipped.name).write_text(edited)  # shadows the shipped profile of that name
    monkeypatch.setenv(TARGET_PATH_ENV, str(user))
    config = tmp_path / "regress.toml"
    config.write_text('[[models]]\nname = "digits_net_make_net"\ntargets = ["ethos-u55-128"]\n')
    reports = tmp_path / "reports"
    shutil.copytree(digits_build.out, reports)
    common = ("--config", config, "--baseline", tmp_path / "b.json", "--reports", reports)
    result = run_cli("regress", *common, "--update", "-q")
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "was made with target profile" in message and "rebuild the report" in message
