"""Compare any two models functionally: ``funcsim.compare(model_a, model_b, data)``.

Both models are run on the same inputs; their softmax outputs are compared with
:func:`funcsim.similarity.compare_predictions`, ``model_a`` being the reference (the base,
the teacher) and ``model_b`` the candidate (compressed, student)::

    import funcsim
    metrics = funcsim.compare(teacher, student, test_loader)
    print(f"they disagree on {metrics['disagreement']:.2%} of the test points")
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from funcsim.errors import DataError

__all__ = ["compare"]


def _device_of(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a stateless model)."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return None


def _as_inputs(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{what}: expected a tensor of inputs, got {type(x).__name__}")
    if x.dim() == 0 or len(x) == 0:
        raise DataError(f"{what}: no inputs (shape {tuple(x.shape)})")
    return x


def _split_batch(batch: Any, index: int) -> tuple[torch.Tensor, Any]:
    """``(x, y)`` from a DataLoader batch that is ``x``, ``(x,)`` or ``(x, y, ...)``."""
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise DataError(f"data: batch {index} is empty")
        return _as_inputs(batch[0], f"data: batch {index}"), batch[1] if len(batch) > 1 else None
    if isinstance(batch, dict):
        raise DataError(
            f"data: batch {index} is a mapping; expected x or (x, y) batches "
            "(wrap the loader to yield tensors)"
        )
    return _as_inputs(batch, f"data: batch {index}"), None


def _predict_pair(
    model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    from funcsim.train.evaluate import predict

    p = predict(model_a, x, batch_size=batch_size, device=_device_of(model_a))
    q = predict(model_b, x, batch_size=batch_size, device=_device_of(model_b))
    return p, q


def _predict_loader(
    model_a: nn.Module, model_b: nn.Module, loader: Iterable[Any], batch_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    ps: list[np.ndarray] = []
    qs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for i, batch in enumerate(loader):
        x, y = _split_batch(batch, i)
        p, q = _predict_pair(model_a, model_b, x, batch_size)
        ps.append(p)
        qs.append(q)
        if y is not None:
            ys.append(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).reshape(-1))
    if not ps:
        raise DataError("data: the loader yielded no batches")
    if ys and len(ys) != len(ps):
        raise DataError("data: some batches carry labels and others do not")
    labels = np.concatenate(ys) if ys else None
    return np.concatenate(ps), np.concatenate(qs), labels


def compare(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    *,
    labels: Any = None,
    batch_size: int = 1000,
) -> dict[str, float]:
    """Functional similarity of two models on the same inputs.

    Parameters
    ----------
    model_a, model_b
        Any two classifiers (``nn.Module`` returning logits of shape ``(batch, C)``);
        ``model_a`` is the reference (the base / teacher), ``model_b`` the candidate. Each is
        run on its own device and put in eval mode.
    data
        A funcsim ``Dataset`` (its test split and labels are used), a ``DataLoader`` or any
        iterable of batches ``x`` or ``(x, y, ...)`` (labels taken from ``y``), or a tensor /
        array of inputs of shape ``(N, ...)``.
    labels
        Integer class labels of shape ``(N,)``; overrides those that come with ``data``.
        With labels the result also holds the accuracies and their deviation.
    batch_size
        Inputs per forward pass (tensors and Datasets; a DataLoader keeps its own batches).

    Returns
    -------
    dict
        :func:`funcsim.similarity.compare_predictions` of the two softmax arrays:
        ``disagreement``, ``kl_divergence`` (KL(a || b)), ``js_divergence``, ``l2_distance``
        and, with labels, ``accuracy_base`` (a), ``accuracy`` (b),
        ``relative_accuracy_deviation`` (percent), ``normalized_disagreement`` and the
        disagreement limits.

    >>> import torch; from torch import nn
    >>> torch.manual_seed(0) and None
    >>> net = nn.Linear(4, 3)
    >>> compare(net, net, torch.randn(8, 4))["disagreement"]
    0.0
    """
    from funcsim.data._dataset import Dataset
    from funcsim.similarity import compare_predictions

    if batch_size < 1:
        raise DataError(f"batch_size: must be >= 1, got {batch_size}")
    given: Any = None
    if isinstance(data, Dataset):
        p, q = _predict_pair(model_a, model_b, data.x_test, batch_size)
        given = data.y_test.numpy()
    elif isinstance(data, (torch.Tensor, np.ndarray)):
        p, q = _predict_pair(model_a, model_b, _as_inputs(data, "data"), batch_size)
    elif isinstance(data, Iterable):
        p, q, given = _predict_loader(model_a, model_b, data, batch_size)
    else:
        raise DataError(
            f"data: expected a funcsim Dataset, a DataLoader or a tensor, got {type(data).__name__}"
        )
    if labels is not None:
        given = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return compare_predictions(p, q, given)
