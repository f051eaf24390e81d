"""Distillation: the Hinton loss as in the original, teacher-output cache, self-distillation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from funcsim.compress.distill import (
    CachedDistillationLoss,
    OnlineDistillationLoss,
    compute_logits,
    distill,
    distillation_loss,
)
from funcsim.config import TrainConfig
from funcsim.data import Dataset, load_dataset
from funcsim.errors import ConfigError
from funcsim.train import build_model, load_state, train_model


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference_loss(s: np.ndarray, t: np.ndarray, y: np.ndarray, alpha: float, T: float) -> float:
    """alpha * CE(s, y) + (1 - alpha) * T^2 * mean_i sum_c p_t log(p_t / p_s), in float64."""
    ce = -np.mean(np.log(_softmax(s)[np.arange(len(y)), y]))
    p_t, p_s = _softmax(t / T), _softmax(s / T)
    kl = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))
    return alpha * ce + (1 - alpha) * T**2 * kl


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 3.0, 7.5])
def test_loss_matches_hand_computed_reference(alpha, temperature):
    rng = np.random.default_rng(int(alpha * 10 + temperature * 100))
    s, t = rng.normal(size=(16, 10)) * 3, rng.normal(size=(16, 10)) * 3
    y = rng.integers(0, 10, size=16)
    got = distillation_loss(
        torch.tensor(s), torch.tensor(t), torch.tensor(y), alpha=alpha, temperature=temperature
    )
    assert float(got) == pytest.approx(_reference_loss(s, t, y, alpha, temperature), rel=1e-10)


@pytest.mark.parametrize(
    ("alpha", "temperature"), [(-0.1, 3.0), (1.5, 3.0), (0.5, 0.0), (0.5, -1.0)]
)
def test_invalid_options_are_refused(alpha, temperature):
    with pytest.raises(ConfigError):
        CachedDistillationLoss(torch.zeros(2, 3), alpha=alpha, temperature=temperature)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(train=300, test=100)


@pytest.fixture(scope="module")
def teacher(digits):
    model, result = train_model(digits, "lenet", TrainConfig(epochs=2), progress=False)
    return model, result


def test_cached_teacher_gives_the_same_loss_as_running_it(digits, teacher):
    model, _ = teacher
    cached = CachedDistillationLoss(compute_logits(model, digits.x_train), alpha=0.3, temperature=3)
    online = OnlineDistillationLoss(model, digits.x_train, alpha=0.3, temperature=3)
    student = build_model("lenet", digits, seed=5)
    index = torch.randperm(len(digits.y_train), generator=torch.Generator().manual_seed(0))[:64]
    logits = student(digits.x_train[index])
    a = cached(logits, digits.y_train[index], index)
    b = online(logits, digits.y_train[index], index)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_self_distilled_student_starts_from_the_teachers_initial_weights(digits, teacher):
    model, result = teacher
    student = load_state(build_model("lenet", digits, seed=123), result.init_state, "init")
    cfg = TrainConfig(epochs=1, optimizer="adamax")
    trajectory = distill(model, student, digits, cfg, alpha=0.5, temperature=3, progress=False)
    for key, value in result.init_state.items():
        assert torch.equal(trajectory.init_state[key], value)
    np.testing.assert_array_equal(trajectory.predictions[0], result.predictions[0])
    assert trajectory.predictions.shape == (2, 100, 10)


def test_class_count_mismatch_is_refused(digits, teacher):
    model, _ = teacher
    five = Dataset(
        name="digits-5",
        x_train=digits.x_train,
        y_train=digits.y_train % 5,
        x_test=digits.x_test,
        y_test=digits.y_test % 5,
        classes=tuple(str(c) for c in range(5)),
    )
    student = build_model("lenet", five, seed=0)
    with pytest.raises(ConfigError, match="classes"):
        distill(model, student, five, TrainConfig(epochs=1), progress=False)
