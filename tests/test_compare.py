"""funcsim.compare(model_a, model_b, data): any two nn.Modules on a tensor, loader or Dataset."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import funcsim
from funcsim.data._dataset import Dataset
from funcsim.errors import DataError
from funcsim.similarity import compare_predictions
from funcsim.train.evaluate import predict

N, CLASSES = 120, 4


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 16), nn.ReLU(), nn.Linear(16, CLASSES))


@pytest.fixture(scope="module")
def data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2 * N, 2, 3, 3, generator=g)
    y = torch.randint(0, CLASSES, (2 * N,), generator=g)
    return Dataset("toy", x[:N], y[:N], x[N:], y[N:], tuple("abcd"))


def test_compare_is_a_lazy_top_level_function() -> None:
    assert callable(funcsim.compare)
    assert funcsim.compare is funcsim.compare  # not shadowed by a submodule
    code = "import sys, funcsim; assert 'torch' not in sys.modules; print('light')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "light", result.stderr


def test_equals_compare_predictions_of_the_softmax_outputs(data: Dataset) -> None:
    a, b = _net(0), _net(1)
    got = funcsim.compare(a, b, data)
    p, q = predict(a, data.x_test), predict(b, data.x_test)
    assert got == pytest.approx(compare_predictions(p, q, data.y_test.numpy()))
    assert set(got) >= {"disagreement", "kl_divergence", "js_divergence", "accuracy"}
    assert 0.0 < got["disagreement"] <= 1.0


def test_tensor_loader_and_dataset_give_equal_results(data: Dataset) -> None:
    a, b = _net(0), _net(1)
    x, y = data.x_test, data.y_test
    from_dataset = funcsim.compare(a, b, data)
    from_tensor = funcsim.compare(a, b, x, labels=y, batch_size=7)
    from_array = funcsim.compare(a, b, x.numpy(), labels=y.numpy())
    pairs = DataLoader(TensorDataset(x, y), batch_size=32)
    from_pairs = funcsim.compare(a, b, pairs)
    inputs_only = DataLoader(x, batch_size=50)
    from_inputs = funcsim.compare(a, b, inputs_only, labels=y)
    for other in (from_tensor, from_array, from_pairs, from_inputs):
        assert other == pytest.approx(from_dataset, rel=1e-5, abs=1e-7)


def test_identical_models_agree_everywhere(data: Dataset) -> None:
    a = _net(3)
    twin = _net(3)
    got = funcsim.compare(a, twin, data)
    assert got["disagreement"] == 0.0
    assert got["kl_divergence"] == pytest.approx(0.0, abs=1e-9)
    assert got["js_divergence"] == pytest.approx(0.0, abs=1e-9)
    assert got["accuracy"] == got["accuracy_base"]


def test_without_labels_only_the_distances(data: Dataset) -> None:
    got = funcsim.compare(_net(0), _net(1), data.x_test)
    assert set(got) == {"disagreement", "kl_divergence", "js_divergence", "l2_distance"}


def test_models_are_put_in_eval_mode(data: Dataset) -> None:
    a = nn.Sequential(_net(0), nn.Dropout(0.5))
    a.train()
    assert funcsim.compare(a, a, data.x_test)["disagreement"] == 0.0


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("not data", "expected a funcsim Dataset"),
        (torch.empty(0, 2, 3, 3), "no inputs"),
        ([], "no batches"),
        ([{"x": torch.zeros(2, 2, 3, 3)}], "mapping"),
    ],
)
def test_bad_data_is_a_one_line_error(bad: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        funcsim.compare(_net(0), _net(1), bad)


def test_models_with_different_class_counts_are_refused(data: Dataset) -> None:
    torch.manual_seed(0)
    other = nn.Sequential(nn.Flatten(), nn.Linear(18, CLASSES + 1))
    with pytest.raises(DataError, match="does not match"):
        funcsim.compare(_net(0), other, data)


def test_labels_must_fit(data: Dataset) -> None:
    with pytest.raises(DataError, match="labels"):
        funcsim.compare(_net(0), _net(1), data.x_test, labels=np.zeros(3, dtype=int))
