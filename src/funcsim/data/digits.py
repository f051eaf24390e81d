"""scikit-learn's 8x8 handwritten digits: small, bundled, offline (funcsim's default)."""

from __future__ import annotations

import importlib.util
import math
from importlib import resources
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
SPLIT_FILE = "digits_split.npy"
"""The split's indices, train (1347) then test (450), in the order ``train_test_split(...,
test_size=0.25, stratify=target, random_state=0)`` returns them; shipped so that loading the
digits does not import scikit-learn (about 1 s), and checked against it by the tests."""
N_DIGITS = 1797
N_TEST = math.ceil(TEST_FRACTION * N_DIGITS)
"""450: ``train_test_split`` rounds the test size up."""


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
    images, labels = _read_digits()
    x_train, y_train, x_test, y_test = _split(images, labels)
    return to_dataset(
        "digits",
        [str(c) for c in range(10)],
        (x_train, y_train),
        (x_test, y_test),
        scale=MAX_PIXEL,
        train_limit=train_limit,
        test_limit=test_limit,
    )


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """``load_digits().images`` (N, 1, 8, 8) float32 and ``.target`` (N,) int64.

    Read from the CSV file scikit-learn ships (found without importing scikit-learn, which
    costs about 1 s of CPU in every process that trains on the digits); through
    ``load_digits`` where that file is not where scikit-learn keeps it today.
    """
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.float64)  # 64 pixels, then label
            if table.shape == (N_DIGITS, 65):
                images = table[:, :-1].reshape(-1, 1, 8, 8).astype(np.float32)
                return images, table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32)[:, None], bunch.target.astype(np.int64)


def _split(
    images: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, y_train, x_test, y_test: the fixed stratified split (:data:`SPLIT_FILE`)."""
    if len(labels) == N_DIGITS:
        with resources.as_file(resources.files("funcsim.data") / SPLIT_FILE) as path:
            order = np.load(path, allow_pickle=False).astype(np.int64)
        train, test = order[: N_DIGITS - N_TEST], order[N_DIGITS - N_TEST :]
        return images[train], labels[train], images[test], labels[test]
    from sklearn.model_selection import train_test_split  # not the data the split was made for

    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return x_train, y_train, x_test, y_test
