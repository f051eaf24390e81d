"""CIFAR-10 and CIFAR-100 from their python batches, through a restricted unpickler.

Layouts accepted under ``data_dir``: ``cifar-10-batches-py/{data_batch_1..5, test_batch}``
and ``cifar-100-python/{train, test}`` (what the official archives and torchvision's
``download=True`` unpack), or those files directly in ``data_dir``.

The batches are pickles (protocol 2, written by Python 2). Unpickling can run arbitrary
code, so :class:`RestrictedUnpickler` resolves only the few numpy names an array needs;
anything else (``os.system``, ``builtins.open`` ...) is refused before it can be called.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from funcsim.data._api import default_data_dir, register_dataset
from funcsim.data._convert import to_dataset
from funcsim.data._dataset import Dataset
from funcsim.data._download import download_cifar
from funcsim.data._files import find_files, missing_files_error
from funcsim.errors import DataError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    # ndarray.__reduce__ up to protocol 4: _reconstruct(ndarray, (0,), b"b") + __setstate__.
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # ndarray.__reduce_ex__(5) (a Python 3 re-pickle): np.frombuffer(...).reshape(...).
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # type: ignore[attr-defined]
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,  # type: ignore[attr-defined]
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under protocol <= 2.
    ("_codecs", "encode"): codecs.encode,
}
"""(module, name) -> object: everything a CIFAR batch may reference; nothing else resolves."""

CIFAR_ROW = 3 * 32 * 32
"""Each image is one row of 3072 uint8: the 1024 red, then green, then blue pixels."""

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR100_TRAIN = "train"
CIFAR100_TEST = "test"

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
"""The fine labels in index order (as in the archive's ``meta`` file)."""


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle referenced a global outside the CIFAR allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array reconstruction (see ``_ALLOWED_GLOBALS``).

    Dicts, lists, tuples, ints, floats, strings and bytes need no globals. Any other global
    (the way a pickle reaches a callable such as ``os.system``) raises
    :class:`RefusedGlobalError` before it is resolved, so nothing is ever called.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobalError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def _fail(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}")


def read_cifar_batch(path: Path) -> dict[bytes, Any]:
    """Unpickle one CIFAR batch file (``encoding="bytes"``) through :class:`RestrictedUnpickler`.

    Returns the batch dict with bytes keys (str keys of a re-pickled file are encoded).

    Raises
    ------
    DataError : unreadable, not a pickle, a refused global (possibly malicious), or not a dict.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot read file ({exc.strerror or exc})") from None
    try:
        obj = RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedGlobalError as exc:
        raise _fail(
            path,
            f"refused to unpickle {exc}: a CIFAR batch may only hold numpy arrays, lists, "
            "dicts and bytes (the file is corrupt or malicious; nothing was executed)",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupt file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(path, f"not a valid CIFAR batch pickle ({reason})") from None
    if not isinstance(obj, dict):
        raise _fail(path, f"a CIFAR batch must be a dict, found {type(obj).__name__}")
    return {k.encode("latin1") if isinstance(k, str) else k: v for k, v in obj.items()}


def _parse_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one batch dict; return images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    batch = read_cifar_batch(path)
    missing = [key for key in (b"data", label_key) if key not in batch]
    if missing:
        raise _fail(
            path,
            f"CIFAR batch lacks key(s) {', '.join(map(repr, missing))}; expected b'data' "
            f"((N, {CIFAR_ROW}) uint8) and {label_key!r} (N ints), found "
            f"{', '.join(map(repr, sorted(batch, key=repr))) or 'no keys'}",
        )
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        what = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise _fail(path, f"b'data' must be a (N, {CIFAR_ROW}) uint8 array, found {what}")
    if data.shape[1] != CIFAR_ROW or data.shape[0] == 0:
        raise _fail(path, f"b'data' has shape {data.shape}, expected (N > 0, {CIFAR_ROW})")
    try:
        labels = np.asarray(batch[label_key])
    except Exception:  # noqa: BLE001 - ragged or odd contents
        labels = np.asarray(None)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _fail(path, f"{label_key!r} must be a list of integers")
    if len(labels) != len(data):
        raise _fail(
            path, f"{len(data)} images in b'data' but {len(labels)} labels in {label_key!r}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise _fail(
            path,
            f"label {int(labels[bad[0]])} at index {int(bad[0])} of {label_key!r} is out of "
            f"range, allowed 0..{num_classes - 1}",
        )
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _load(
    name: str,
    folder: str,
    torchvision_class: str,
    train_files: tuple[str, ...],
    test_file: str,
    label_key: bytes,
    classes: tuple[str, ...],
    data_dir: Path | None,
    download: bool,
    train_limit: int | None,
    test_limit: int | None,
) -> Dataset:
    root = data_dir if data_dir is not None else default_data_dir()
    directories = [root / folder, root]
    names = (*train_files, test_file)
    files = find_files(directories, names)
    if files is None and download:
        download_cifar(name, torchvision_class, root)
        files = find_files(directories, names)
    if files is None:
        raise missing_files_error(name, directories, names)
    try:
        parts = [_parse_batch(files[f], label_key, len(classes)) for f in train_files]
        test = _parse_batch(files[test_file], label_key, len(classes))
    except DataError as exc:
        raise DataError(
            f"{exc}; {name} expects the python batches {', '.join(names)} in {folder}/: "
            "replace the bad file, or delete it and use --download"
        ) from None
    train = (
        np.concatenate([x for x, _ in parts]),
        np.concatenate([y for _, y in parts]),
    )
    return to_dataset(
        name, classes, train, test, scale=255.0, train_limit=train_limit, test_limit=test_limit
    )


@register_dataset("cifar10", needs_files=True)
def cifar10(
    *,
    data_dir: Path | None = None,
    download: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Dataset:
    """CIFAR-10: x (N, 3, 32, 32) in [0, 1], 50000 train (5 batches) / 10000 test, 10 classes."""
    return _load(
        "cifar10", "cifar-10-batches-py", "CIFAR10", CIFAR10_TRAIN, CIFAR10_TEST,
        b"labels", CIFAR10_CLASSES, data_dir, download, train_limit, test_limit,
    )  # fmt: skip


@register_dataset("cifar100", needs_files=True)
def cifar100(
    *,
    data_dir: Path | None = None,
    download: bool = False,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Dataset:
    """CIFAR-100 (fine labels): x (N, 3, 32, 32) in [0, 1], 50000 train / 10000 test."""
    return _load(
        "cifar100", "cifar-100-python", "CIFAR100", (CIFAR100_TRAIN,), CIFAR100_TEST,
        b"fine_labels", CIFAR100_CLASSES, data_dir, download, train_limit, test_limit,
    )  # fmt: skip
