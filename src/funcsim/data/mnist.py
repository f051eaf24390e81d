"""MNIST and Fashion-MNIST from their IDX files (gzip'd or raw).

Layouts accepted under ``data_dir``: torchvision's ``<data_dir>/MNIST/raw/`` (resp.
``FashionMNIST/raw/``), ``<data_dir>/MNIST/``, or the four files directly in ``data_dir``.
With ``data_dir=None``, :func:`~funcsim.data.default_data_dir` is searched, and
``fashion_mnist`` also finds the Debian package's ``/usr/share/datasets/fashion-mnist/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funcsim.data._api import default_data_dir, register_dataset
from funcsim.data._convert import to_dataset
from funcsim.data._dataset import Dataset
from funcsim.data._download import download_idx
from funcsim.data._files import find_files, missing_files_error
from funcsim.data.idx import read_idx
from funcsim.errors import DataError

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
SUFFIXES = ("", ".gz")
"""Raw files are preferred (torchvision keeps both after extracting)."""

IMAGE_SIZE = (28, 28)
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the files."""

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class _Spec:
    name: str
    folder: str  # torchvision's class (and folder) name
    classes: tuple[str, ...]
    system_dirs: tuple[Path, ...] = ()


def _directories(root: Path, folder: str) -> list[Path]:
    return [root / folder / "raw", root / folder, root]


def _read_split(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, ndim=3, dtype=np.uint8)
    labels = read_idx(labels_path, ndim=1, dtype=np.uint8)
    if images.shape[1:] != IMAGE_SIZE:
        h, w = images.shape[1:]
        raise DataError(f"{images_path}: images are {h}x{w}, expected 28x28")
    if len(images) == 0:
        raise DataError(f"{images_path}: holds no images")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; the counts must match"
        )
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(
            f"{labels_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of "
            f"range, allowed 0..{num_classes - 1}"
        )
    return images[:, None], labels


def _load(
    spec: _Spec,
    data_dir: Path | None,
    download: bool,
    train_limit: int | None,
    test_limit: int | None,
) -> Dataset:
    roots = [data_dir] if data_dir is not None else [default_data_dir(), *spec.system_dirs]
    directories = [d for root in roots for d in _directories(root, spec.folder)]
    files = find_files(directories, IDX_FILES, SUFFIXES)
    if files is None and download:
        target = roots[0] / spec.folder / "raw"
        download_idx(spec.name, spec.folder, target)
        files = find_files([target], IDX_FILES, SUFFIXES)
    if files is None:
        raise missing_files_error(spec.name, directories, IDX_FILES, SUFFIXES)
    try:
        train = _read_split(files[TRAIN_IMAGES], files[TRAIN_LABELS], len(spec.classes))
        test = _read_split(files[TEST_IMAGES], files[TEST_LABELS], len(spec.classes))
    except DataError as exc:
        raise DataError(
            f"{exc}; {spec.name} expects the IDX files {', '.join(IDX_FILES)} (gzip'd or "
            "not): replace the bad file, or delete it and use --download"
        ) from None
    return to_dataset(
        spec.name,
        spec.classes,
        train,
        test,
        scale=255.0,
        train_limit=train_limit,
        test_limit=test_limit,
    )


_MNIST = _Spec("mnist", "MNIST", MNIST_CLASSES)
_FASHION = _Spec(
    "fashion_mnist", "FashionMNIST", FASHION_MNIST_CLASSES, (SYSTEM_FASHION_MNIST_DIR,)
)


@register_dataset("mnist", needs_files=True)
def mnist(
    *,
    data_dir: Path | None = None,
    download: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Dataset:
    """MNIST handwritten digits: x (N, 1, 28, 28) in [0, 1], 60000 train / 10000 test."""
    return _load(_MNIST, data_dir, download, train_limit, test_limit)


@register_dataset("fashion_mnist", needs_files=True)
def fashion_mnist(
    *,
    data_dir: Path | None = None,
    download: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Dataset:
    """Fashion-MNIST (Zalando): x (N, 1, 28, 28) in [0, 1], 60000 train / 10000 test.

    With ``data_dir=None`` it also finds ``/usr/share/datasets/fashion-mnist/`` (Debian's
    ``dataset-fashion-mnist`` package), so it works offline there.
    """
    return _load(_FASHION, data_dir, download, train_limit, test_limit)
