"""Every zoo family at 224 converts to a fully int8 model that Vela maps 100% to the NPU,
on every shipped Ethos-U target (one small model per family keeps the suite quick)."""

from __future__ import annotations

import pytest

from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import load_calibration
from ran_edge.models import load_model
from ran_edge.targets.loading import list_targets

# Minutes of real conversions and Vela runs: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow

FAMILY_REPRESENTATIVES = ("mobilenet_v2_035", "efficientnet_lite0")
TARGETS = [t.name for t in list_targets() if t.is_npu]


@pytest.fixture(scope="module", params=FAMILY_REPRESENTATIVES)
def converted(request):
    loaded = load_model(request.param)
    calib = load_calibration(None, loaded.input_shape, num_samples=8, holdout=0)
    return convert_model(loaded, calib)


def test_zoo_model_is_int8_end_to_end(converted):
    assert converted.facts.input_shape == (1, 3, 224, 224)
    assert converted.info.int8_io
    assert converted.info.float_op_types == ()
    assert not {"TRANSPOSE", "QUANTIZE", "DEQUANTIZE"} & set(converted.info.op_types)


def test_zoo_model_maps_fully_to_every_npu(converted, tmp_path):
    for target in (t for t in list_targets() if t.is_npu):
        build = build_target(converted, target, tmp_path)  # raises if any op left the NPU
        assert build.report.value("cpu_ops") == 0, target.name
        assert build.report.value("npu_op_share") == 100.0, target.name
        assert build.report.value("inferences_per_second") > 0, target.name
