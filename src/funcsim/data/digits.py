"""scikit-learn's 8x8 handwritten digits: small, bundled, offline (funcsim's default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from funcsim.data._api import register_dataset
from funcsim.data._convert import to_dataset
from funcsim.data._dataset import Dataset

TEST_FRACTION = 0.25
SPLIT_SEED = 0
"""The split is fixed (stratified, 75/25, ``random_state=0``): every run sees the same data."""
MAX_PIXEL = 16.0
"""Pixels of ``load_digits`` are counts 0..16 (of a 4x4 block of the 32x32 original)."""


@register_dataset("digits")
def digits(
    *,
    data_dir: Path | None = None,
    download: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Dataset:
    """1797 8x8 digits, x (N, 1, 8, 8) = pixel / 16 in [0, 1]; 1347 train / 450 test.

    ``data_dir`` and ``download`` are ignored: the data ship with scikit-learn.
    """
    # imported here: scikit-learn costs about 1.5 s of CPU to import, which every process
    # that only registers datasets (each worker of a Fashion-MNIST study) would pay
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return to_dataset(
        "digits",
        [str(c) for c in bunch.target_names],
        (x_train, y_train),
        (x_test, y_test),
        scale=MAX_PIXEL,
        train_limit=train_limit,
        test_limit=test_limit,
    )
