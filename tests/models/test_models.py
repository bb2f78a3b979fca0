"""Model zoo, complexity counts and model loading (CPU only, no conversion)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from ran_edge.errors import UsageError
from ran_edge.models import (
    LoadedModel,
    count_macs,
    count_params,
    create_model,
    get_entry,
    list_models,
    load_model,
)

# Whole zoo networks built and counted: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow

ZOO = {
    "mobilenet_v2",
    "mobilenet_v2_075",
    "mobilenet_v2_050",
    "mobilenet_v2_035",
    "mobilenet_v2_035_96",
    "efficientnet_lite0",
    "efficientnet_lite0_96",
}

# --- zoo -------------------------------------------------------------------------------------


def test_zoo_is_registered_and_sorted() -> None:
    names = [e.name for e in list_models()]
    assert names == sorted(names)
    assert set(names) >= ZOO
    assert get_entry("mobilenet_v2_035_96").input_shape == (1, 3, 96, 96)
    assert get_entry("efficientnet_lite0").input_shape == (1, 3, 224, 224)
    assert get_entry("efficientnet_lite0").family == "efficientnet_lite"


def test_mobilenet_v2_complexity() -> None:
    model = create_model("mobilenet_v2")
    assert count_params(model) == 3_504_872  # torchvision's figure
    assert count_macs(model, (1, 3, 224, 224)) == pytest.approx(300e6, rel=0.03)


def test_efficientnet_lite0_complexity() -> None:
    model = create_model("efficientnet_lite0")
    params = count_params(model)
    assert params == 4_652_008
    assert params == pytest.approx(4.65e6, rel=0.02)
    assert 385e6 <= count_macs(model, (1, 3, 224, 224)) <= 407e6


def test_mobilenet_v2_layout_matches_torchvision() -> None:
    model = create_model("mobilenet_v2")
    keys = model.state_dict().keys()
    assert "features.0.0.weight" in keys
    assert "features.1.conv.0.0.weight" in keys  # t=1 block: depthwise first
    assert "features.2.conv.3.running_var" in keys
    assert "features.18.0.weight" in keys and "classifier.1.weight" in keys
    assert isinstance(model.pool, nn.AdaptiveAvgPool2d)


def test_widths_and_num_classes() -> None:
    assert create_model("mobilenet_v2_035").features[-1][0].out_channels == 1280
    small = create_model("mobilenet_v2_035_96", num_classes=10)
    assert small(torch.zeros(1, 3, 96, 96)).shape == (1, 10)
    lite = create_model("efficientnet_lite0_96", num_classes=7)
    assert lite.stem[0].out_channels == 32 and lite.head[0].out_channels == 1280
    assert len(lite.blocks) == 16
    assert lite(torch.zeros(1, 3, 96, 96)).shape == (1, 7)


def test_create_model_is_deterministic_and_leaves_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = create_model("mobilenet_v2_035_96").state_dict()
    b = create_model("mobilenet_v2_035_96").state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not create_model("mobilenet_v2_035_96").training


def test_count_macs_handles_grouped_conv_and_batch() -> None:
    model = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False))
    assert count_macs(model, (1, 8, 4, 4)) == 16 * 4 * 4 * (8 // 4) * 9
    assert count_macs(model, (2, 8, 4, 4)) == 2 * 16 * 4 * 4 * 2 * 9
    assert model.training  # mode restored


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(UsageError) as err:
        create_model("mobilenetv2")
    assert "mobilenet_v2" in str(err.value)
    assert "ran-edge models" in str(err.value)
    with pytest.raises(UsageError, match="efficientnet_lite0"):
        load_model("efficientnet_lite")


# --- zoo loading -----------------------------------------------------------------------------


def test_load_zoo_default_and_override_shape() -> None:
    loaded = load_model("mobilenet_v2_035_96")
    assert isinstance(loaded, LoadedModel)
    assert loaded.input_shape == (1, 3, 96, 96)
    assert loaded.name == "mobilenet_v2_035_96"
    assert not loaded.module.training
    assert load_model("mobilenet_v2_035_96", input_shape=(1, 3, 64, 64)).input_shape == (
        1,
        3,
        64,
        64,
    )


@pytest.mark.parametrize("shape", [(1, 3, 96), (1, 3, 0, 96), (1, 3, 96.0, 96), "1,3,96,96"])
def test_bad_input_shape(shape: object) -> None:
    with pytest.raises(UsageError, match="NCHW"):
        load_model("mobilenet_v2_035_96", input_shape=shape)  # type: ignore[arg-type]


def test_input_shape_that_does_not_fit() -> None:
    with pytest.raises(UsageError) as err:
        load_model("mobilenet_v2_035_96", input_shape=(1, 1, 96, 96))
    msg = str(err.value)
    assert "(1, 1, 96, 96) does not fit model mobilenet_v2_035_96" in msg
    assert "--input-shape" in msg


def test_zoo_weights_with_other_num_classes(tmp_path: Path) -> None:
    src = create_model("mobilenet_v2_035_96", num_classes=5)
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pt")
    loaded = load_model("mobilenet_v2_035_96", weights=tmp_path / "w.pt")
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), src(x))


# --- file.py:factory -------------------------------------------------------------------------

TINY = """
import torch
from torch import nn

INPUT_SHAPE = (1, 3, 16, 16)

class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))

def build():
    return Tiny()
"""


def _write(tmp_path: Path, text: str, name: str = "net.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_file_factory_round_trip_with_weights(tmp_path: Path) -> None:
    path = _write(tmp_path, TINY)
    first = load_model(f"{path}:build")
    assert first.name == "net_build"
    assert first.input_shape == (1, 3, 16, 16)  # from INPUT_SHAPE
    assert str(tmp_path) not in sys.path
    trained = first.module
    with torch.no_grad():  # make the weights differ from a fresh build
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
        trained.bn.running_mean.fill_(0.3)
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    second = load_model(f"{path}:build", weights=tmp_path / "w.pt")
    assert not second.module.training
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(second.module(x), trained.eval()(x))


def test_file_shape_from_module_attribute_and_required(tmp_path: Path) -> None:
    attr = _write(
        tmp_path,
        TINY.replace("INPUT_SHAPE = (1, 3, 16, 16)", "")
        + "\ndef with_attr():\n    m = Tiny()\n    m.input_shape = (1, 3, 8, 8)\n    return m\n",
    )
    assert load_model(f"{attr}:with_attr").input_shape == (1, 3, 8, 8)
    assert load_model(f"{attr}:build", input_shape=(1, 3, 12, 12)).input_shape == (1, 3, 12, 12)
    with pytest.raises(UsageError, match="does not declare its input shape.*--input-shape"):
        load_model(f"{attr}:build")


def test_file_sibling_import(tmp_path: Path) -> None:
    _write(tmp_path, TINY, name="tiny_layers_for_test.py")
    path = _write(
        tmp_path, "from tiny_layers_for_test import Tiny\n\ndef make():\n    return Tiny()\n"
    )
    assert load_model(f"{path}:make", input_shape=(1, 3, 16, 16)).name == "net_make"
    assert str(tmp_path) not in sys.path


def test_file_errors(tmp_path: Path) -> None:
    good = _write(tmp_path, TINY)
    bad_import = _write(tmp_path, "raise ValueError('boom')\n", "bad_import.py")
    raising = _write(tmp_path, "def f():\n    raise RuntimeError('kaput')\n", "raising.py")
    not_module = _write(tmp_path, "def f():\n    return 42\n", "not_module.py")
    not_callable = _write(tmp_path, "X = 3\n", "not_callable.py")
    cases = {
        f"{tmp_path / 'nope.py'}:build": ["does not exist"],
        f"{good}:missing": ["no factory 'missing'", "build"],
        f"{good}": ["no factory", ":<factory>"],
        f"{bad_import}:f": ["importing", "ValueError: boom"],
        f"{raising}:f": ["factory f()", "RuntimeError: kaput"],
        f"{not_module}:f": ["returned int", "nn.Module"],
        f"{not_callable}:X": ["not a callable"],
        f"{tmp_path / 'model.onnx'}": ["not a zoo name", ".pt2"],
        f"{tmp_path / 'model.pth'}": ["weights file", "--weights"],
    }
    for spec, words in cases.items():
        with pytest.raises(UsageError) as err:
            load_model(spec, input_shape=(1, 3, 16, 16))
        for word in words:
            assert word in str(err.value), (spec, str(err.value))


def test_weights_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, TINY)
    spec = f"{path}:build"
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    torch.save(
        {"conv.weight": torch.zeros(4, 3, 3, 3), "extra.bias": torch.zeros(1)},
        tmp_path / "partial.pt",
    )
    torch.save(nn.Linear(2, 2), tmp_path / "pickled_module.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    bad_shape = load_model(spec).module.state_dict()
    bad_shape["fc.weight"] = torch.zeros(3, 4)
    torch.save(bad_shape, tmp_path / "bad_shape.pt")
    cases = {
        "missing.pt": ["does not exist"],
        "corrupt.pt": ["cannot read weights", "torch.save(model.state_dict()"],
        "pickled_module.pt": ["cannot read weights"],
        "list.pt": ["does not hold a state_dict"],
        "partial.pt": ["missing 8 keys", "bn.running_mean", "unexpected 1 key", "extra.bias"],
        "bad_shape.pt": ["do not fit", "fc.weight"],
    }
    for name, words in cases.items():
        with pytest.raises(UsageError) as err:
            load_model(spec, weights=tmp_path / name)
        for word in words:
            assert word in str(err.value), (name, str(err.value))


def test_weights_key_list_is_capped(tmp_path: Path) -> None:
    torch.save({f"k{i}": torch.zeros(1) for i in range(9)}, tmp_path / "w.pt")
    with pytest.raises(UsageError) as err:
        load_model(f"{_write(tmp_path, TINY)}:build", weights=tmp_path / "w.pt")
    assert "unexpected 9 keys" in str(err.value) and "4 more" in str(err.value)


# --- .pt2 ------------------------------------------------------------------------------------


def _tiny_module() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def test_pt2_round_trip(tmp_path: Path) -> None:
    model = _tiny_module().eval()
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(1, 3, 20, 24),)), path)
    loaded = load_model(str(path))
    assert loaded.input_shape == (1, 3, 20, 24)
    assert loaded.name == "tiny"
    assert not loaded.module.training and loaded.module.eval() is loaded.module
    x = torch.randn(1, 3, 20, 24)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), model(x))
    assert count_macs(loaded.module, loaded.input_shape) == count_macs(model, (1, 3, 20, 24))
    assert load_model(str(path), input_shape=(1, 3, 20, 24)).input_shape == (1, 3, 20, 24)
    with pytest.raises(UsageError, match="disagrees"):
        load_model(str(path), input_shape=(1, 3, 32, 32))


def test_pt2_errors(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.pt2").write_bytes(b"garbage")
    torch.save(_tiny_module().state_dict(), tmp_path / "checkpoint.pt2")
    train = tmp_path / "train.pt2"
    torch.export.save(
        torch.export.export(_tiny_module().train(), (torch.zeros(2, 3, 8, 8),)), train
    )
    with pytest.raises(UsageError, match="does not exist"):
        load_model(str(tmp_path / "absent.pt2"))
    with pytest.raises(UsageError) as err:
        load_model(str(tmp_path / "junk.pt2"))
    assert "not a readable torch.export program" in str(err.value)
    assert "torch.export.save" in str(err.value)
    assert "Traceback" not in capfd.readouterr().err  # torch.export.load's logged one is kept quiet
    with pytest.raises(UsageError, match="not an exported program.*--weights"):
        load_model(str(tmp_path / "checkpoint.pt2"))
    with pytest.raises(UsageError, match="training mode.*eval"):
        load_model(str(train))


def test_the_zoo_listing_file_matches_the_registry():
    """`ran-edge models` reads zoo.json (no torch); regenerate it when the zoo changes:
    python -m ran_edge.models.catalogue --write"""
    from ran_edge.models.catalogue import CATALOGUE, from_registry, render

    assert CATALOGUE.read_text() == render(from_registry())
