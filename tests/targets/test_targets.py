"""Target profiles: the shipped TOML files agree with Vela, and user profiles work as documented."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

from ran_edge.errors import UsageError
from ran_edge.report.metrics import metric_value
from ran_edge.resources import shipped_dir
from ran_edge.targets.loading import TARGET_PATH_ENV, list_targets, load_target_file, resolve_target

SHIPPED_DIR = shipped_dir("targets")
SHIPPED_NAMES = {
    "ethos-u55-32",
    "ethos-u55-64",
    "ethos-u55-128",
    "ethos-u55-256",
    "ethos-u55-32-deep-embedded",
    "ethos-u55-64-deep-embedded",
    "ethos-u55-128-deep-embedded",
    "ethos-u55-256-deep-embedded",
    "ethos-u65-256",
    "ethos-u65-512",
    "ethos-u85-128",
    "ethos-u85-256",
    "ethos-u85-512",
    "ethos-u85-1024",
    "ethos-u85-2048",
}
VELA_ACCELERATORS = {
    "ethos-u55-32",
    "ethos-u55-64",
    "ethos-u55-128",
    "ethos-u55-256",
    "ethos-u65-256",
    "ethos-u65-512",
    "ethos-u85-128",
    "ethos-u85-256",
    "ethos-u85-512",
    "ethos-u85-1024",
    "ethos-u85-2048",
}
INT8_MODEL = Path("ethos-u55-128") / "digits_net_make_net_int8.tflite"


def _vela_ini_path() -> Path:
    import ethosu.vela

    path = Path(ethosu.vela.__file__).parent.parent / "config_files" / "Arm" / "vela.ini"
    assert path.is_file(), f"Vela's bundled vela.ini not found at {path}"
    return path


def _vela_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(_vela_ini_path())
    return parser


def _shipped() -> list:
    """The shipped Ethos-U profiles (CPU profiles are checked in test_cpu_targets.py)."""
    targets = [load_target_file(p) for p in sorted(SHIPPED_DIR.glob("*.toml"))]
    return [t for t in targets if t.kind == "ethos-u"]


def _flat(text: str) -> str:
    """Console output re-joined: rich wraps error lines at the terminal width."""
    return " ".join(text.split())


def _u55_128_toml(**replace: str) -> str:
    """The shipped ethos-u55-128 profile text with `key = value` lines replaced."""
    text = (SHIPPED_DIR / "ethos-u55-128.toml").read_text()
    for key, value in replace.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
    return text


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "user-targets"
    folder.mkdir()
    monkeypatch.setenv(TARGET_PATH_ENV, str(folder))
    return folder


@pytest.fixture
def no_user_dir(monkeypatch) -> None:
    monkeypatch.delenv(TARGET_PATH_ENV, raising=False)


# --- shipped profiles agree with Vela --------------------------------------------------------


def test_vela_accelerator_list_is_the_expected_one():
    from ethosu.vela.architecture_features import Accelerator

    assert set(Accelerator.member_list()) == VELA_ACCELERATORS
    help_text = subprocess.run(
        [sys.executable, "-m", "ethosu.vela", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    choices = re.search(r"--accelerator-config \{([^}]*)\}", help_text)
    assert choices is not None
    assert set(choices.group(1).split(",")) == VELA_ACCELERATORS


def test_every_vela_accelerator_has_a_shipped_profile():
    from ethosu.vela.architecture_features import Accelerator

    shipped = {t.npu.accelerator for t in _shipped()}
    assert set(Accelerator.member_list()) <= shipped
    assert shipped <= set(Accelerator.member_list()), "a profile names an unknown accelerator"


def test_shipped_profiles_are_the_documented_fifteen():
    targets = _shipped()
    assert {t.name for t in targets} == SHIPPED_NAMES
    for t in targets:
        assert t.source.name == f"{t.name}.toml"
        assert t.kind == "ethos-u"
        assert t.description


def test_shipped_clock_and_sections_match_vela_ini():
    ini = _vela_ini()
    for t in _shipped():
        assert t.vela.config == "Arm/vela.ini", t.name
        system = f"System_Config.{t.vela.system_config}"
        assert ini.has_section(system), f"{t.name}: {system} not in Vela's vela.ini"
        assert ini.has_section(f"Memory_Mode.{t.vela.memory_mode}"), t.name
        assert t.npu.clock_hz == float(ini[system]["core_clock"]), t.name
        assert t.vela.optimise in ("Performance", "Size")


def test_macs_per_cycle_is_the_accelerator_suffix():
    for t in _shipped():
        assert t.npu.macs_per_cycle == int(t.npu.accelerator.rsplit("-", 1)[1]), t.name


# --- name resolution -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("ethos-u55", "ethos-u55-128"),
        ("ethos-u65", "ethos-u65-256"),
        ("ethos-u85", "ethos-u85-256"),
    ],
)
def test_aliases(no_user_dir, alias, name):
    target = resolve_target(alias)
    assert target.name == name
    assert target.npu.accelerator == name
    assert resolve_target(name) == target


def test_unknown_name_suggests_the_close_one(no_user_dir):
    with pytest.raises(UsageError) as err:
        resolve_target("ethos-u55-129")
    message = str(err.value)
    assert "'ethos-u55-129'" in message
    assert "Did you mean" in message
    assert "ethos-u55-128" in message
    assert "ran-edge targets" in message


def test_toml_path_that_does_not_exist(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        resolve_target(str(tmp_path / "missing.toml"))


# --- user profiles ---------------------------------------------------------------------------


def test_user_profile_is_listed_and_resolvable(user_dir):
    text = _u55_128_toml(name='"my-board"', aliases='["mb"]', memory_mode='"Sram_Only"')
    (user_dir / "board.toml").write_text(text)

    result = run_cli("targets", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout) if row["kind"] == "ethos-u"}
    assert set(rows) == SHIPPED_NAMES | {"my-board"}
    assert rows["my-board"]["aliases"] == ["mb"]
    assert rows["my-board"]["memory_mode"] == "Sram_Only"
    assert rows["my-board"]["file"] == str(user_dir / "board.toml")

    for name in ("my-board", "mb"):
        target = resolve_target(name)
        assert target.name == "my-board"
        assert target.source == user_dir / "board.toml"


def test_user_profile_shadows_shipped_one(user_dir):
    text = _u55_128_toml(description='"my own u55-128"', memory_mode='"Sram_Only"')
    (user_dir / "override.toml").write_text(text)

    listed = [t for t in list_targets() if t.name == "ethos-u55-128"]
    assert len(listed) == 1
    assert listed[0].source == user_dir / "override.toml"
    for name in ("ethos-u55-128", "ethos-u55"):
        target = resolve_target(name)
        assert target.source == user_dir / "override.toml"
        assert target.vela.memory_mode == "Sram_Only"
        assert target.description == "my own u55-128"

    rows = json.loads(run_cli("targets", "--json").stdout)
    assert [r["memory_mode"] for r in rows if r["name"] == "ethos-u55-128"] == ["Sram_Only"]
    assert len([r for r in rows if r["kind"] == "ethos-u"]) == len(SHIPPED_NAMES)


def _ini_section(name: str) -> str:
    """One `[name]` section of Vela's vela.ini, verbatim (Vela's reader is case-sensitive)."""
    text = _vela_ini_path().read_text()
    found = re.search(rf"(?ms)^\[{re.escape(name)}\]\n.*?(?=^\[|^;|\Z)", text)
    assert found is not None, name
    return found.group(0).strip() + "\n"


def _write_own_ini(folder: Path, core_clock: str = "250e6") -> Path:
    """A vela.ini holding one system config copied from Vela's under a new name."""
    system = _ini_section("System_Config.Ethos_U55_High_End_Embedded")
    system = system.replace(
        "[System_Config.Ethos_U55_High_End_Embedded]", "[System_Config.My_System]"
    )
    system, n = re.subn(r"(?m)^core_clock=.*$", f"core_clock={core_clock}", system)
    assert n == 1
    path = folder / "my.ini"
    path.write_text(f"{system}\n{_ini_section('Memory_Mode.Shared_Sram')}")
    return path


def test_user_profile_with_its_own_vela_ini(user_dir, tmp_path, monkeypatch):
    ini = _write_own_ini(user_dir)
    text = _u55_128_toml(
        name='"my-system"',
        aliases="[]",
        clock_hz="250_000_000",
        config='"my.ini"',
        system_config='"My_System"',
    )
    (user_dir / "my-system.toml").write_text(text)
    # The path is relative to the TOML, not to the working directory.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    target = resolve_target("my-system")
    assert Path(target.vela.config) == ini.resolve()
    assert target.vela.system_config == "My_System"
    args = target.vela.cli_args()
    assert args[args.index("--config") + 1] == str(ini.resolve())
    # Also through a direct path to the TOML.
    assert resolve_target(str(user_dir / "my-system.toml")).vela.config == str(ini.resolve())


def test_user_ini_is_what_vela_uses(user_dir, tmp_path, digits_build):
    """Vela really reads the user's ini: its core_clock shows up in the report."""
    _write_own_ini(user_dir, core_clock="250e6")
    toml = user_dir / "my-system.toml"
    toml.write_text(
        _u55_128_toml(
            name='"my-system"',
            aliases="[]",
            clock_hz="250_000_000",
            config='"my.ini"',
            system_config='"My_System"',
        )
    )
    out = tmp_path / "out"
    result = run_cli(
        "profile",
        digits_build.model_dir / INT8_MODEL,
        "--target",
        "my-system",
        "--out",
        out,
        "--json",
        "-q",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"]["system_config"] == "My_System"
    assert report["target"]["clock_hz"] == 250e6
    shipped = digits_build.reports["ethos-u55-128"]
    # Half the clock of the shipped profile: fewer inferences per second.
    assert metric_value(report["metrics"], "inferences_per_second") < metric_value(
        shipped["metrics"], "inferences_per_second"
    )


# --- malformed profiles ----------------------------------------------------------------------


def _bad_profile_cases() -> list:
    base = _u55_128_toml()
    no_npu = re.sub(r"(?s)\[npu\].*?(?=\[vela\])", "", base)
    return [
        pytest.param(base + "\nthis is = = not toml\n", "not valid TOML", id="malformed"),
        pytest.param(no_npu, "`npu`", id="no-npu"),
        pytest.param(re.sub(r"(?m)^accelerator = .*$", "", base), "`accelerator`", id="no-accel"),
        pytest.param(_u55_128_toml(macs_per_cycle='"x"'), "`macs_per_cycle`", id="wrong-type"),
        pytest.param(_u55_128_toml(kind='"gpu"'), "kind 'gpu' is not supported", id="kind"),
        pytest.param(_u55_128_toml(optimise='"Fastest"'), "vela.optimise", id="optimise"),
        pytest.param(_u55_128_toml(config='"missing.ini"'), "missing.ini", id="no-config-file"),
    ]


@pytest.mark.parametrize(("text", "words"), _bad_profile_cases())
def test_malformed_profile_names_file_and_field(tmp_path, no_user_dir, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        load_target_file(path)
    message = str(err.value)
    assert str(path) in message
    assert words in message
    with pytest.raises(UsageError):
        resolve_target(str(path))


def test_wrong_type_says_what_was_expected(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(_u55_128_toml(macs_per_cycle='"x"'))
    with pytest.raises(UsageError, match=r"wrong type; expected int"):
        load_target_file(path)


def test_malformed_user_profile_fails_targets_listing_cleanly(user_dir):
    (user_dir / "broken.toml").write_text("name = \n")
    result = run_cli("targets")
    assert result.exit_code == 2
    assert "error:" in result.stderr
    assert "broken.toml" in "".join(result.stderr.split())
    assert "not valid TOML" in _flat(result.stderr)
    assert "Traceback" not in result.output


def test_unknown_accelerator_in_profile_is_a_usage_error(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text(_u55_128_toml(accelerator='"ethos-u55-129"'))
    with pytest.raises(UsageError, match="ethos-u55-129"):
        load_target_file(path)


# --- `ran-edge targets` ----------------------------------------------------------------------


def test_targets_table_lists_every_shipped_profile(no_user_dir):
    result = run_cli("targets")
    assert result.exit_code == 0, result.output
    for name in SHIPPED_NAMES:
        assert re.search(rf"(?m)^\W*{re.escape(name)}\s", result.stdout), name
    assert "Ethos_U55_High_End_Embedded" in result.stdout
    assert "ethos-u55" in result.stdout  # an alias column


def test_targets_json(no_user_dir):
    result = run_cli("targets", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    rows = [r for r in rows if r["kind"] == "ethos-u"]  # CPU rows: test_cpu_targets.py
    assert {r["name"] for r in rows} == SHIPPED_NAMES
    keys = {"name", "aliases", "accelerator", "macs_per_cycle", "clock_hz"}
    keys |= {"system_config", "memory_mode"}
    by_name = {}
    for row in rows:
        assert keys <= set(row)
        assert isinstance(row["aliases"], list)
        assert isinstance(row["macs_per_cycle"], int)
        by_name[row["name"]] = row
    u55 = by_name["ethos-u55-128"]
    assert u55["aliases"] == ["ethos-u55"]
    assert u55["accelerator"] == "ethos-u55-128"
    assert u55["macs_per_cycle"] == 128
    assert u55["clock_hz"] == 500e6
    assert u55["system_config"] == "Ethos_U55_High_End_Embedded"
    assert u55["memory_mode"] == "Shared_Sram"
    assert by_name["ethos-u85-256"]["aliases"] == ["ethos-u85"]
    assert by_name["ethos-u65-256"]["aliases"] == ["ethos-u65"]


# --- a user profile that changes the answer --------------------------------------------------


@pytest.fixture(scope="module")
def sram_only(tmp_path_factory, digits_build) -> dict:
    """`ran-edge profile` of the digits int8 model on a user Sram_Only copy of ethos-u55-128."""
    folder = tmp_path_factory.mktemp("sram-only")
    toml = folder / "my-u55-sram-only.toml"
    toml.write_text(
        _u55_128_toml(name='"my-u55-sram-only"', aliases="[]", memory_mode='"Sram_Only"')
    )
    out = folder / "out"
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli("profile", model, "--target", toml, "--out", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == json.loads((out / model.stem / "my-u55-sram-only" / "report.json").read_text())
    return report


def test_sram_only_user_profile_builds(sram_only, digits_build):
    report = sram_only
    assert report["target"]["name"] == "my-u55-sram-only"
    assert report["target"]["memory_mode"] == "Sram_Only"
    assert report["target"]["system_config"] == "Ethos_U55_High_End_Embedded"

    shipped = digits_build.reports["ethos-u55-128"]
    assert shipped["target"]["memory_mode"] == "Shared_Sram"
    flash = metric_value(shipped["metrics"], "off_chip_flash_used")
    assert flash > 0
    # No off-chip flash: the weights now live in SRAM. Vela files read-only data in an
    # SRAM-only system under "on-chip flash" (same characteristics as SRAM).
    assert metric_value(report["metrics"], "off_chip_flash_used") == 0
    assert metric_value(report["metrics"], "dram_used") == 0
    assert metric_value(report["metrics"], "on_chip_flash_used") == pytest.approx(flash, abs=0.5)
    sram_total = metric_value(report["metrics"], "sram_used") + metric_value(
        report["metrics"], "on_chip_flash_used"
    )
    assert sram_total > metric_value(shipped["metrics"], "sram_used")
    # Same network, same MACs; weights no longer wait on flash, so it is not slower.
    assert metric_value(report["metrics"], "macs") == metric_value(shipped["metrics"], "macs")
    assert metric_value(report["metrics"], "inferences_per_second") >= metric_value(
        shipped["metrics"], "inferences_per_second"
    )


def test_sram_only_sram_used_includes_the_weights(sram_only, digits_build):
    """Vela files Sram_Only weights under on-chip flash; `sram_total` puts them back in SRAM."""
    shipped = digits_build.reports["ethos-u55-128"]
    m = sram_only["metrics"]
    assert metric_value(m, "sram_total") == pytest.approx(
        metric_value(m, "sram_used") + metric_value(m, "on_chip_flash_used")
    )
    assert metric_value(m, "sram_total") > metric_value(shipped["metrics"], "sram_total")
    assert metric_value(shipped["metrics"], "sram_total") == metric_value(
        shipped["metrics"], "sram_used"
    )


def test_the_npu_clock_comes_from_the_vela_config(user_dir):
    """Left out of the TOML, the clock is the system config's core_clock (one source); a TOML
    clock that disagrees with it is refused with both figures and the fix."""
    _write_own_ini(user_dir, core_clock="300e6")
    no_clock = _u55_128_toml(
        name='"own-clock"', aliases="[]", config='"my.ini"', system_config='"My_System"'
    )
    no_clock = re.sub(r"(?m)^clock_hz = .*\n", "", no_clock, count=1)
    (user_dir / "own-clock.toml").write_text(no_clock)
    assert resolve_target("own-clock").npu.clock_hz == 300e6
    wrong = _u55_128_toml(name='"wrong-clock"', aliases="[]", clock_hz="400_000_000")
    path = user_dir.parent / "wrong-clock.toml"
    path.write_text(wrong)
    with pytest.raises(UsageError, match=r"npu.clock_hz = 4e\+08 but Vela times .* 5e\+08"):
        load_target_file(path)


def test_profile_hash_covers_the_files_it_pulls_in(user_dir):
    """`Target.sha256` (recorded in every report) changes with the profile's own Vela ini."""
    ini = _write_own_ini(user_dir, core_clock="250e6")
    text = _u55_128_toml(
        name='"hashed"', aliases="[]", clock_hz="250_000_000", config='"my.ini"',
        system_config='"My_System"',
    )  # fmt: skip
    (user_dir / "hashed.toml").write_text(text)
    before = resolve_target("hashed").sha256
    ini.write_text(ini.read_text() + "\n# an edit\n")
    assert resolve_target("hashed").sha256 != before
