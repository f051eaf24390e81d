"""Training records a functional trajectory, deterministically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from funcsim.config import TrainConfig
from funcsim.data import load_dataset
from funcsim.errors import TrainingDivergedError
from funcsim.train import build_model, fit, load_state, predict, train_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits").subset(train=400, test=120)


def test_trajectory_shape_and_probabilities(digits):
    cfg = TrainConfig(epochs=2, batch_size=32)
    _, result = train_model(digits, "lenet", cfg, progress=False)
    assert result.predictions.shape == (3, 120, 10)
    assert result.predictions.dtype == np.float32
    np.testing.assert_allclose(result.predictions.sum(axis=2), 1.0, atol=1e-5)
    assert len(result.test_accuracy) == 3 and len(result.test_loss) == 3
    assert len(result.train_loss) == 2
    # the accuracy recorded per epoch is that of the stored predictions
    labels = digits.y_test.numpy()
    for epoch, acc in enumerate(result.test_accuracy):
        assert acc == pytest.approx(np.mean(result.predictions[epoch].argmax(1) == labels))


def test_same_seed_gives_bit_identical_predictions(digits):
    cfg = TrainConfig(epochs=2, batch_size=32, seed=3)
    _, a = train_model(digits, "lenet", cfg, progress=False)
    _, b = train_model(digits, "lenet", cfg, progress=False)
    assert np.array_equal(a.predictions, b.predictions)
    for key in a.final_state:
        assert torch.equal(a.final_state[key], b.final_state[key])


def test_other_seed_gives_other_function(digits):
    _, a = train_model(digits, "lenet", TrainConfig(epochs=1, seed=0), progress=False)
    _, b = train_model(digits, "lenet", TrainConfig(epochs=1, seed=1), progress=False)
    assert not np.array_equal(a.predictions, b.predictions)


def test_epoch_zero_is_the_initial_weights_function(digits):
    cfg = TrainConfig(epochs=1, batch_size=32)
    _, result = train_model(digits, "lenet", cfg, progress=False)
    fresh = load_state(build_model("lenet", digits, seed=99), result.init_state, "init")
    np.testing.assert_allclose(predict(fresh, digits.x_test), result.predictions[0], atol=1e-6)
    final = load_state(build_model("lenet", digits, seed=99), result.final_state, "final")
    np.testing.assert_allclose(predict(final, digits.x_test), result.predictions[-1], atol=1e-6)


def test_divergence_names_the_epoch(digits):
    model = build_model("lenet", digits, seed=0)
    cfg = TrainConfig(epochs=3, lr=1e10, optimizer="sgd")
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        fit(model, digits, cfg, progress=False)


def test_bf16_precision_trains(digits):
    cfg = TrainConfig(epochs=1, precision="bf16")
    _, result = train_model(digits, "lenet", cfg, progress=False)
    assert np.isfinite(result.predictions).all()
