"""A seeded, learnable toy dataset for tests: one random pattern per class, plus noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funcsim.data._api import register_dataset
from funcsim.data._convert import to_dataset
from funcsim.data._dataset import Dataset


def _split(
    rng: np.random.Generator, prototypes: np.ndarray, n: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    num_classes = len(prototypes)
    labels = rng.permutation(np.arange(n) % num_classes)  # balanced classes, shuffled
    images = prototypes[labels] + noise * rng.standard_normal((n, *prototypes.shape[1:]))
    return np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.int64)


@register_dataset("synthetic")
def synthetic(
    *,
    data_dir: Path | None = None,
    download: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
    n_train: int = 256,
    n_test: int = 64,
    num_classes: int = 4,
    channels: int = 1,
    image_size: int | tuple[int, int] = 8,
    noise: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Images x (N, channels, H, W) in [0, 1] = clip(pattern[label] + noise * N(0, 1)).

    Each class has one pattern drawn uniformly from [0, 1]; labels are balanced. The same
    arguments always give identical tensors (``numpy.random.default_rng(seed)``), and the
    classes are easily separable at the default noise. ``data_dir``/``download`` are ignored.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    for field, value in (("n_train", n_train), ("n_test", n_test), ("channels", channels)):
        if value < 1:
            raise ValueError(f"{field} must be >= 1, got {value}")
    if num_classes < 2 or h < 1 or w < 1 or noise < 0:
        raise ValueError("synthetic needs num_classes >= 2, a positive image_size, noise >= 0")
    rng = np.random.default_rng(seed)
    prototypes = rng.random((num_classes, channels, h, w))
    return to_dataset(
        "synthetic",
        [f"class_{c}" for c in range(num_classes)],
        _split(rng, prototypes, n_train, noise),
        _split(rng, prototypes, n_test, noise),
        scale=1.0,
        train_limit=train_limit,
        test_limit=test_limit,
    )
