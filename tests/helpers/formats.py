"""Writers for the real on-disk dataset formats, for tests (and their corrupt variants).

- IDX (MNIST / Fashion-MNIST): :func:`idx_bytes`, :func:`write_idx`, :func:`write_mnist`.
- CIFAR python batches: :func:`py2_pickle_dumps` pickles exactly as the original Python 2
  files were (protocol 2, ``str`` as BINSTRING, ``numpy.core.multiarray._reconstruct``),
  :func:`write_cifar_batch`, :func:`write_cifar10`, :func:`write_cifar100`.
- Hostile input: :func:`malicious_pickle` returns a pickle that creates a file when loaded
  by an unrestricted unpickler.

Typical use::

    from helpers.formats import write_mnist
    files = write_mnist(tmp_path, n_train=20, n_test=10)
    ds = load_dataset("mnist", data_dir=tmp_path)
"""

from __future__ import annotations

import builtins
import gzip
import io
import os
import pickle
import shlex
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IDX_CODES = {
    np.dtype("uint8"): 0x08,
    np.dtype("int8"): 0x09,
    np.dtype("int16"): 0x0B,
    np.dtype("int32"): 0x0C,
    np.dtype("float32"): 0x0D,
    np.dtype("float64"): 0x0E,
}

MNIST_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass
class Written:
    """What a writer put on disk: where, and the arrays it wrote (source layout, uint8).

    ``x_*``: (N, 28, 28) for IDX, (N, 3072) for CIFAR; ``y_*``: (N,) labels.
    ``paths``: file role (e.g. ``"train_images"``, ``"data_batch_1"``) -> path.
    """

    directory: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    paths: dict[str, Path] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- IDX


def idx_bytes(array: np.ndarray, *, magic: bytes | None = None) -> bytes:
    """The IDX encoding of ``array``: magic, big-endian uint32 dims, big-endian payload.

    ``magic`` (4 bytes) replaces the computed magic number, to build corrupt files.
    """
    array = np.asarray(array)
    code = IDX_CODES[array.dtype]
    header = magic if magic is not None else bytes([0, 0, code, array.ndim])
    dims = b"".join(struct.pack(">I", d) for d in array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_bytes(path: Path, payload: bytes, *, compress: bool | None = None) -> Path:
    """Write ``payload`` to ``path``, gzip'd when ``compress`` (default: path ends in .gz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
    return path


def write_idx(path: Path, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file (gzip'd when ``compress``, default: by the .gz suffix)."""
    return write_bytes(path, idx_bytes(array), compress=compress)


def mnist_arrays(
    n: int, *, seed: int = 0, num_classes: int = 10, size: int = 28
) -> tuple[np.ndarray, np.ndarray]:
    """Random images (n, size, size) uint8 covering 0..255 and labels (n,) uint8."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    images.flat[0], images.flat[-1] = 0, 255  # the full range is present
    labels = (np.arange(n) % num_classes).astype(np.uint8)
    return images, rng.permutation(labels)


def write_mnist(
    directory: Path,
    *,
    n_train: int = 30,
    n_test: int = 20,
    compress: bool = True,
    seed: int = 0,
) -> Written:
    """The four MNIST-layout IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``directory``.

    Put them in ``root/MNIST/raw`` or ``root/FashionMNIST/raw`` for torchvision's layout.
    """
    directory = Path(directory)
    x_train, y_train = mnist_arrays(n_train, seed=seed)
    x_test, y_test = mnist_arrays(n_test, seed=seed + 1)
    suffix = ".gz" if compress else ""
    arrays = {
        "train_images": x_train,
        "train_labels": y_train,
        "test_images": x_test,
        "test_labels": y_test,
    }
    paths = {
        role: write_idx(directory / f"{MNIST_STEMS[role]}{suffix}", arr)
        for role, arr in arrays.items()
    }
    return Written(directory, x_train, y_train, x_test, y_test, paths)


# ------------------------------------------------------------------------------------- CIFAR


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles like Python 2 did for CIFAR: protocol 2, bytes and str as BINSTRING opcodes,
    numpy's ``_reconstruct`` under its Python 2 era name ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_str8(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_str8
    dispatch[str] = _save_str8

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if getattr(obj, "__name__", None) == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def py2_pickle_dumps(obj: Any) -> bytes:
    """``obj`` pickled the way the original (Python 2) CIFAR batch files are."""
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def cifar_arrays(n: int, num_classes: int, *, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Random rows (n, 3072) uint8 and a list of n int labels (every class when n allows)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    data.flat[0], data.flat[-1] = 0, 255
    labels = rng.permutation(np.arange(n) % num_classes)
    return data, [int(label) for label in labels]


def write_cifar_batch(
    path: Path,
    data: Any,
    labels: Any,
    *,
    label_key: bytes = b"labels",
    extra: dict[Any, Any] | None = None,
    protocol: int | None = None,
    drop: tuple[bytes, ...] = (),
) -> Path:
    """One batch file: ``{b"data": data, label_key: labels, **extra}`` minus ``drop`` keys.

    ``protocol=None`` writes like the originals (:func:`py2_pickle_dumps`); an int uses
    Python 3's ``pickle.dumps(protocol=...)``.
    """
    batch: dict[Any, Any] = {b"batch_label": b"testing batch 1 of 1", b"data": data}
    batch[label_key] = labels
    batch[b"filenames"] = [f"img_{i}.png".encode() for i in range(len(labels))]
    batch.update(extra or {})
    for key in drop:
        batch.pop(key, None)
    payload = py2_pickle_dumps(batch) if protocol is None else pickle.dumps(batch, protocol)
    return write_bytes(path, payload, compress=False)


CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"


def write_cifar10(
    root: Path, *, n_per_batch: int = 4, n_test: int = 10, seed: int = 0, flat: bool = False
) -> Written:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (or flat)."""
    directory = Path(root) if flat else Path(root) / CIFAR10_FOLDER
    paths, xs, ys = {}, [], []
    for i in range(1, 6):
        data, labels = cifar_arrays(n_per_batch, 10, seed=seed + i)
        name = f"data_batch_{i}"
        paths[name] = write_cifar_batch(directory / name, data, labels)
        xs.append(data)
        ys.extend(labels)
    x_test, y_test = cifar_arrays(n_test, 10, seed=seed)
    paths["test_batch"] = write_cifar_batch(directory / "test_batch", x_test, y_test)
    meta = {b"label_names": [b"airplane", b"automobile"], b"num_vis": 3072}
    write_bytes(directory / "batches.meta", py2_pickle_dumps(meta), compress=False)
    return Written(directory, np.concatenate(xs), np.array(ys), x_test, np.array(y_test), paths)


def write_cifar100(
    root: Path, *, n_train: int = 30, n_test: int = 12, seed: int = 0, flat: bool = False
) -> Written:
    """``root/cifar-100-python/{train, test, meta}`` with fine and coarse labels (or flat)."""
    directory = Path(root) if flat else Path(root) / CIFAR100_FOLDER
    paths = {}
    out = []
    for name, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        data, fine = cifar_arrays(n, 100, seed=s)
        coarse = [label // 5 for label in fine]
        paths[name] = write_cifar_batch(
            directory / name, data, fine, label_key=b"fine_labels",
            extra={b"coarse_labels": coarse},
        )  # fmt: skip
        out.append((data, np.array(fine)))
    meta = {b"fine_label_names": [b"apple"], b"coarse_label_names": [b"aquatic_mammals"]}
    write_bytes(directory / "meta", py2_pickle_dumps(meta), compress=False)
    (x_train, y_train), (x_test, y_test) = out
    return Written(directory, x_train, y_train, x_test, y_test, paths)


# --------------------------------------------------------------------------------- hostile


class _OpenFile:
    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (self.target, "w"))


class _SystemTouch:
    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(self.target)}",))


def malicious_pickle(
    target: Path, *, via: str = "os.system", protocol: int = 2, in_batch: bool = True
) -> bytes:
    """A pickle that creates ``target`` when an unrestricted unpickler loads it.

    ``via``: ``"os.system"`` (runs ``touch``) or ``"open"`` (``builtins.open(target, "w")``).
    ``in_batch``: hide the payload as ``b"data"`` of an otherwise valid CIFAR-10 batch dict.
    """
    payload: Any = {"os.system": _SystemTouch, "open": _OpenFile}[via](target)
    if in_batch:
        payload = {b"batch_label": b"x", b"labels": [0], b"data": payload}
    return pickle.dumps(payload, protocol=protocol)
