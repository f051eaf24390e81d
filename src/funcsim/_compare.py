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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from funcsim.errors import DataError, StoreError

__all__ = ["StoredPredictions", "compare", "compare_stored", "load_labels", "load_predictions"]


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
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        p, q, given = _predict_loader(model_a, model_b, data, batch_size)
    else:
        raise DataError(
            f"data: expected a funcsim Dataset, a DataLoader or a tensor, got {type(data).__name__}"
        )
    if labels is not None:
        given = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return compare_predictions(p, q, given)


# --------------------------------------------------------------------------- stored predictions


@dataclass(frozen=True)
class StoredPredictions:
    """Final-checkpoint predictions read from a ``.npy`` file or a run folder."""

    source: str
    predictions: np.ndarray
    """(N, C) probabilities (the last checkpoint of a (T, N, C) trajectory)."""
    labels: np.ndarray | None
    checkpoints: int


def load_predictions(path: Path | str) -> StoredPredictions:
    """Read predictions to compare: a ``.npy`` file of shape (N, C) or (T, N, C) (the last
    checkpoint is used) or a run folder (its ``predictions.npy`` and ``labels.npy``).

    The array is validated as probabilities (finite, non-negative, rows summing to 1); any
    problem raises a :class:`~funcsim.errors.FuncsimError` naming the path.
    """
    from funcsim import store
    from funcsim.similarity import check_probabilities

    path = Path(path)
    labels = None
    if path.is_dir():
        run = store.load_run(path)
        trajectory = run.predictions(mmap=True)
        labels = run.labels()
    elif path.is_file():
        trajectory = store.read_npy(path, mmap=True)
    else:
        raise StoreError(f"{path}: no such file or run folder")
    if trajectory.ndim == 3:
        if trajectory.shape[0] == 0:
            raise DataError(f"{path}: a trajectory with no checkpoints, shape {trajectory.shape}")
        final, checkpoints = np.asarray(trajectory[-1]), int(trajectory.shape[0])
    elif trajectory.ndim == 2:
        final, checkpoints = np.asarray(trajectory), 1
    else:
        raise DataError(
            f"{path}: expected predictions of shape (N, C) or (T, N, C), got {trajectory.shape}"
        )
    check_probabilities(final, str(path))
    return StoredPredictions(str(path), final, labels, checkpoints)


def load_labels(path: Path | str) -> np.ndarray:
    """Integer class labels of shape (N,) from a ``.npy`` file."""
    from funcsim import store

    labels = store.read_npy(Path(path))
    if labels.ndim != 1:
        raise DataError(f"{path}: expected labels of shape (N,), got {labels.shape}")
    return labels


def compare_stored(
    a: StoredPredictions, b: StoredPredictions, labels: np.ndarray | None = None
) -> dict[str, float]:
    """:func:`~funcsim.similarity.compare_predictions` of two stored prediction sets.

    ``a`` is the reference. Labels: ``labels`` if given, else those of the run folders (which
    must agree when both have them).
    """
    from funcsim.similarity import check_labels, check_probabilities, compare_predictions

    if a.predictions.shape != b.predictions.shape:
        check_probabilities(b.predictions, b.source, shape=a.predictions.shape)
    if labels is None:
        if a.labels is not None and b.labels is not None and not np.array_equal(a.labels, b.labels):
            raise DataError(
                f"{a.source} and {b.source} hold different test labels; they were not "
                "evaluated on the same test set (pass --labels to override)"
            )
        labels = a.labels if a.labels is not None else b.labels
    if labels is not None:
        labels = check_labels(labels, *a.predictions.shape)
    return compare_predictions(a.predictions, b.predictions, labels)
