"""Label-free recovery: distillation lowers the held-out KL to the original, runs are
seeded, labels switch to cross-entropy, bad inputs are usage errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ran_edge.errors import UsageError
from ran_edge.shrink import (
    TrainConfig,
    accuracy,
    agreement,
    apply_plan,
    distill_loss,
    plan_shrink,
    train_student,
)
from ran_edge.shrink.distill import pick_device

# Minutes of real conversions and Vela runs: the full suite only (`make test-fast` skips).
pytestmark = pytest.mark.slow

SHAPE = (1, 1, 32, 32)
REMOVED = ("blocks.1", "blocks.2", "blocks.4")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


@pytest.fixture(scope="module")
def data(trained_tiny_mbnet):
    d = trained_tiny_mbnet  # shared: the tests below copy the teacher, never train it
    return d.model, d.train_x, d.train_y, d.test_x, d.test_y


def student(teacher: nn.Module) -> nn.Module:
    return apply_plan(teacher, plan_shrink(teacher, REMOVED, SHAPE))


def test_distillation_lowers_held_out_kl(data):
    teacher, train_x, _train_y, test_x, test_y = data
    assert accuracy(teacher, test_x, test_y) > 0.9
    shrunk = student(teacher)
    before = agreement(shrunk, teacher, test_x)
    result = train_student(
        shrunk,
        train_x,  # no labels: the teacher's outputs are the only signal
        teacher=teacher,
        feature_paths=REMOVED,
        config=TrainConfig(epochs=2, progress=False),
    )
    after = agreement(shrunk, teacher, test_x)
    assert after.kl < before.kl / 5, (before, after)
    assert after.top1_agreement > max(0.85, before.top1_agreement)
    assert result.epoch_losses[1] < result.epoch_losses[0]
    assert result.device == pick_device().type
    assert not shrunk.training and not teacher.training


def test_same_seed_same_weights(data):
    teacher, train_x, *_ = data
    config = TrainConfig(epochs=1, batch_size=32, progress=False)

    def run(seed: int) -> dict[str, torch.Tensor]:
        model = student(teacher)
        train_student(
            model,
            train_x[:192],
            teacher=teacher,
            feature_paths=REMOVED[:1],
            config=TrainConfig(**{**config.__dict__, "seed": seed}),
        )
        return model.state_dict()

    first, again, other = run(0), run(0), run(1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_labels_mean_cross_entropy(data):
    teacher, train_x, train_y, test_x, test_y = data
    model = student(teacher)
    before = accuracy(model, test_x, test_y)
    result = train_student(
        model, train_x, labels=train_y, config=TrainConfig(epochs=1, progress=False)
    )
    assert accuracy(model, test_x, test_y) > before
    assert result.steps == (len(train_x) + 63) // 64


def test_distill_loss_is_kl_times_t_squared():
    logits = torch.randn(5, 10)
    assert float(distill_loss(logits, logits, 4.0)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(5, 10)
    t1, t4 = distill_loss(other, logits, 1.0), distill_loss(other, logits, 4.0)
    assert float(t1) > 0 and float(t4) > 0
    p = torch.softmax(logits, 1)
    manual = (p * (torch.log_softmax(logits, 1) - torch.log_softmax(other, 1))).sum(1).mean()
    assert float(t1) == pytest.approx(float(manual), rel=1e-5)


def test_bad_training_inputs_are_usage_errors(data):
    teacher, train_x, train_y, *_ = data
    model = student(teacher)
    quiet = TrainConfig(epochs=1, progress=False)
    with pytest.raises(UsageError, match="labels or a teacher"):
        train_student(model, train_x[:8], config=quiet)
    with pytest.raises(UsageError, match="integer class indices"):
        train_student(model, train_x[:8], labels=train_y[:5], config=quiet)
    with pytest.raises(UsageError, match="no module 'blocks.9'"):
        train_student(model, train_x[:8], teacher=teacher, feature_paths=["blocks.9"], config=quiet)
    with pytest.raises(UsageError, match="N x C x H x W"):
        train_student(model, train_x[:8, 0], teacher=teacher, config=quiet)
