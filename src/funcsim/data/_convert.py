"""Turn loaded numpy arrays into a :class:`Dataset` (limits applied before conversion)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from funcsim.data._dataset import Dataset


def _images(x: np.ndarray, limit: int | None, scale: float) -> torch.Tensor:
    x = x[:limit]
    if not (x.flags.writeable and x.flags.c_contiguous):
        x = np.array(x, order="C")
    # Copy (the array may be shared) then divide: x / 255 like the paper's Keras code.
    return torch.from_numpy(x).to(torch.float32, copy=True).div_(scale)


def _labels(y: np.ndarray, limit: int | None) -> torch.Tensor:
    return torch.from_numpy(np.array(y[:limit], dtype=np.int64))


def to_dataset(
    name: str,
    classes: Sequence[str],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    scale: float,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Dataset:
    """Build a Dataset from (images (N, C, H, W), labels (N,)) pairs; pixels divided by ``scale``.

    Only the first ``train_limit`` / ``test_limit`` examples are converted to float32.
    """
    return Dataset(
        name=name,
        x_train=_images(train[0], train_limit, scale),
        y_train=_labels(train[1], train_limit),
        x_test=_images(test[0], test_limit, scale),
        y_test=_labels(test[1], test_limit),
        classes=tuple(classes),
    )
