"""Dataset registry and loaders: IDX datasets, digits, synthetic, limits, download."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from helpers.formats import (
    MNIST_STEMS,
    Written,
    idx_bytes,
    write_bytes,
    write_cifar10,
    write_cifar100,
    write_idx,
    write_mnist,
)

from funcsim.data import (
    DATA_DIR_ENV,
    Dataset,
    default_data_dir,
    list_datasets,
    load_dataset,
    needs_files,
    register_dataset,
)
from funcsim.data.mnist import SYSTEM_FASHION_MNIST_DIR
from funcsim.errors import ConfigError, DataError, UnknownNameError

# How to put each file-based dataset on disk (the real format) under a root folder.
FILE_WRITERS: dict[str, Callable[[Path], Written]] = {
    "mnist": lambda root: write_mnist(root / "MNIST" / "raw"),
    "fashion_mnist": lambda root: write_mnist(root / "FashionMNIST" / "raw", compress=False),
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
}
IDX_DATASETS = ["mnist", "fashion_mnist"]
has_system_fashion = pytest.mark.skipif(
    not (SYSTEM_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed",
)


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Path:
    """No test reads or writes the user's ~/.cache/funcsim/data."""
    empty = tmp_path_factory.mktemp("default-data-dir")
    monkeypatch.setenv(DATA_DIR_ENV, str(empty))
    return empty


def _check(ds: Dataset, name: str) -> None:
    assert ds.name == name
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.ndim == 4 and x.shape[1:] == ds.x_train.shape[1:]
        assert len(x) == len(y) > 0
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert int(y.min()) >= 0 and int(y.max()) < ds.num_classes
        assert x.is_contiguous()
    assert len(ds.classes) == len(set(ds.classes)) == ds.num_classes


def _assert_same(ds: Dataset, written: Written) -> None:
    """The loaded tensors are exactly the written uint8 / 255, in file order."""
    shape = ds.x_train.shape[1:]
    expected_train = torch.from_numpy(written.x_train.reshape(-1, *shape)).float() / 255
    expected_test = torch.from_numpy(written.x_test.reshape(-1, *shape)).float() / 255
    assert torch.equal(ds.x_train, expected_train)
    assert torch.equal(ds.x_test, expected_test)
    assert torch.equal(ds.y_train, torch.from_numpy(np.asarray(written.y_train, np.int64)))
    assert torch.equal(ds.y_test, torch.from_numpy(np.asarray(written.y_test, np.int64)))


# ------------------------------------------------------------------------------- registry


def test_registered_names() -> None:
    assert set(list_datasets()) >= {
        "mnist", "fashion_mnist", "cifar10", "cifar100", "digits", "synthetic",
    }  # fmt: skip
    assert list_datasets() == sorted(list_datasets())
    assert not needs_files("digits") and not needs_files("synthetic")
    assert needs_files("mnist") and needs_files("cifar100")


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match="unknown dataset 'imagenet'.*digits.*mnist"):
        load_dataset("imagenet")


def test_duplicate_registration_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits")(lambda **_: None)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize("name", list_datasets())
def test_every_registered_dataset_loads(name: str, tmp_path: Path) -> None:
    if needs_files(name):
        assert name in FILE_WRITERS, f"add a writer of {name}'s file format to FILE_WRITERS"
        written = FILE_WRITERS[name](tmp_path)
        ds = load_dataset(name, data_dir=tmp_path)
        _assert_same(ds, written)
    else:
        ds = load_dataset(name)
    _check(ds, name)
    small = load_dataset(name, data_dir=tmp_path, train_limit=3, test_limit=2)
    assert (len(small.y_train), len(small.y_test)) == (3, 2)
    assert torch.equal(small.x_train, ds.x_train[:3]) and torch.equal(small.y_test, ds.y_test[:2])


@pytest.mark.parametrize("name", [n for n in list_datasets() if n in FILE_WRITERS])
def test_every_file_dataset_reports_missing_files(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "--download" in message and "\n" not in message
    assert "expected" in message


@pytest.mark.parametrize("limit", [0, -1, 2.5, True, "3"])
def test_bad_limits_rejected(limit: object) -> None:
    with pytest.raises(ConfigError, match="train_limit must be a positive integer"):
        load_dataset("digits", train_limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="test_limit"):
        load_dataset("digits", test_limit=limit)  # type: ignore[arg-type]


def test_limit_larger_than_split_keeps_all() -> None:
    ds = load_dataset("synthetic", train_limit=10_000, test_limit=10_000)
    assert (len(ds.y_train), len(ds.y_test)) == (256, 64)


def test_unknown_option_rejected() -> None:
    with pytest.raises(ConfigError, match="dataset 'synthetic' has no option 'colour'.*n_train"):
        load_dataset("synthetic", colour=True)
    with pytest.raises(ConfigError, match="dataset 'digits' has no option 'n_train'; .*none"):
        load_dataset("digits", n_train=3)


def test_default_data_dir(monkeypatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, "/some/where")
    assert default_data_dir() == Path("/some/where")
    monkeypatch.delenv(DATA_DIR_ENV)
    assert default_data_dir() == Path.home() / ".cache" / "funcsim" / "data"


# -------------------------------------------------------------------------- MNIST (IDX)


@pytest.mark.parametrize("compress", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("layout", ["torchvision", "folder", "flat"])
@pytest.mark.parametrize("name", IDX_DATASETS)
def test_idx_layouts(tmp_path: Path, name: str, layout: str, compress: bool) -> None:
    folder = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name]
    where = {
        "torchvision": tmp_path / folder / "raw",
        "folder": tmp_path / folder,
        "flat": tmp_path,
    }[layout]
    written = write_mnist(where, n_train=12, n_test=7, compress=compress)
    ds = load_dataset(name, data_dir=tmp_path)
    _check(ds, name)
    assert ds.x_train.shape == (12, 1, 28, 28) and ds.x_test.shape == (7, 1, 28, 28)
    _assert_same(ds, written)


def test_data_dir_accepts_str_and_user_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_mnist(tmp_path / "mnist-data", n_train=4, n_test=4)
    assert len(load_dataset("mnist", data_dir="~/mnist-data").y_train) == 4


def test_mnist_uses_default_data_dir(_isolated_data_dir: Path) -> None:
    write_mnist(_isolated_data_dir / "MNIST" / "raw", n_train=5, n_test=3)
    assert len(load_dataset("mnist").y_train) == 5


def test_class_names(tmp_path: Path) -> None:
    write_mnist(tmp_path, n_train=3, n_test=3)
    assert load_dataset("mnist", data_dir=tmp_path).classes == tuple("0123456789")
    fashion = load_dataset("fashion_mnist", data_dir=tmp_path).classes
    assert fashion[0] == "T-shirt/top" and fashion[9] == "Ankle boot"


def test_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert f"not found in {tmp_path / 'MNIST' / 'raw'}" in message
    for stem in MNIST_STEMS.values():
        assert f"{stem}[.gz]" in message
    assert "--download" in message


def test_partial_files_name_the_missing_one(tmp_path: Path) -> None:
    written = write_mnist(tmp_path)
    written.paths["test_labels"].unlink()
    with pytest.raises(DataError, match=rf"{tmp_path} has only some.*missing t10k-labels"):
        load_dataset("mnist", data_dir=tmp_path)


def _corrupt(tmp_path: Path, role: str, payload: bytes) -> Path:
    written = write_mnist(tmp_path, n_train=10, n_test=5)
    return write_bytes(written.paths[role], payload)


def _load_fails(path: Path, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        load_dataset("mnist", data_dir=path.parent)
    message = str(info.value)
    assert str(path) in message and "--download" in message and "\n" not in message


def test_truncated_images(tmp_path: Path) -> None:
    path = _corrupt(tmp_path, "train_images", idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-1])
    _load_fails(path, "truncated IDX file")


def test_wrong_magic_in_labels(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros(5, np.uint8), magic=b"\x00\x01\x08\x01")
    _load_fails(_corrupt(tmp_path, "test_labels", payload), "wrong magic number 0x00010801")


def test_images_where_labels_belong(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    _load_fails(_corrupt(tmp_path, "test_labels", payload), "3 dimension.*expected 1")


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    path = _corrupt(tmp_path, "train_labels", idx_bytes(np.zeros(9, np.uint8)))
    _load_fails(path, "holds 10 images but .*train-labels-idx1-ubyte.gz holds 9 labels")


def test_label_out_of_range(tmp_path: Path) -> None:
    labels = np.zeros(5, np.uint8)
    labels[3] = 10
    path = _corrupt(tmp_path, "test_labels", idx_bytes(labels))
    _load_fails(path, r"label 10 at index 3 is out of range, allowed 0\.\.9")


def test_wrong_image_size(tmp_path: Path) -> None:
    path = _corrupt(tmp_path, "test_images", idx_bytes(np.zeros((5, 32, 32), np.uint8)))
    _load_fails(path, "images are 32x32, expected 28x28")


def test_float_images_rejected(tmp_path: Path) -> None:
    path = _corrupt(tmp_path, "test_images", idx_bytes(np.zeros((5, 28, 28), np.float32)))
    _load_fails(path, r"\(float32\), expected uint8")


def test_empty_split_rejected(tmp_path: Path) -> None:
    written = write_mnist(tmp_path)
    write_idx(written.paths["test_images"], np.zeros((0, 28, 28), np.uint8))
    write_idx(written.paths["test_labels"], np.zeros(0, np.uint8))
    _load_fails(written.paths["test_images"], "holds no images")


# --------------------------------------------------------------- Debian Fashion-MNIST


@has_system_fashion
def test_fashion_mnist_found_by_itself() -> None:
    ds = load_dataset("fashion_mnist")  # data_dir=None: the default dir is empty
    _check(ds, "fashion_mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.y_train[:6].tolist() == [9, 0, 0, 3, 0, 2]  # the published first labels
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10
    assert float(ds.x_train.max()) == 1.0 and float(ds.x_train.min()) == 0.0


@has_system_fashion
def test_fashion_mnist_system_files_with_limits() -> None:
    ds = load_dataset("fashion_mnist", train_limit=100, test_limit=50)
    assert ds.x_train.shape == (100, 1, 28, 28) and ds.y_test.shape == (50,)
    assert ds.x_train.untyped_storage().nbytes() == 100 * 28 * 28 * 4  # no full copy kept


def test_explicit_data_dir_does_not_fall_back_to_system(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset("fashion_mnist", data_dir=tmp_path)


# ------------------------------------------------------------------ digits and synthetic


def test_digits_split() -> None:
    ds = load_dataset("digits")
    _check(ds, "digits")
    assert ds.x_train.shape == (1347, 1, 8, 8) and ds.x_test.shape == (450, 1, 8, 8)
    assert float(ds.x_train.max()) == 1.0
    assert torch.all(torch.round(ds.x_train * 16) == ds.x_train * 16)  # pixel / 16
    train_share = torch.bincount(ds.y_train) / len(ds.y_train)
    test_share = torch.bincount(ds.y_test) / len(ds.y_test)
    assert torch.allclose(train_share, test_share, atol=0.01)  # stratified


def test_digits_deterministic() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    for t in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, t), getattr(b, t))


def test_digits_equal_scikit_learns_load_digits_and_split() -> None:
    """funcsim reads the digits file and the shipped split itself: same data as sklearn's."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.images, bunch.target, test_size=0.25, stratify=bunch.target, random_state=0
    )
    ds = load_dataset("digits")
    assert np.array_equal(ds.x_train.numpy()[:, 0] * 16, x_train.astype(np.float32))
    assert np.array_equal(ds.x_test.numpy()[:, 0] * 16, x_test.astype(np.float32))
    assert np.array_equal(ds.y_train.numpy(), y_train)
    assert np.array_equal(ds.y_test.numpy(), y_test)
    assert ds.classes == tuple(str(c) for c in bunch.target_names)


def test_loading_digits_does_not_import_scikit_learn() -> None:
    code = (
        "import sys; from funcsim.data import load_dataset; load_dataset('digits'); "
        "print('sklearn' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_digits_split_falls_back_to_scikit_learn_for_other_data() -> None:
    from funcsim.data.digits import _split

    images = np.arange(40, dtype=np.float32).reshape(40, 1, 1, 1)
    labels = np.arange(40) % 2
    x_train, y_train, x_test, y_test = _split(images, labels)
    assert len(y_train) == 30 and len(y_test) == 10 and np.bincount(y_test).tolist() == [5, 5]
    assert sorted(np.concatenate([x_train, x_test]).ravel().tolist()) == list(range(40))


def test_synthetic_deterministic_and_seeded() -> None:
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    c = load_dataset("synthetic", seed=1)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_synthetic_configurable() -> None:
    ds = load_dataset(
        "synthetic", n_train=30, n_test=12, num_classes=3, channels=3, image_size=(5, 7)
    )
    _check(ds, "synthetic")
    assert ds.x_train.shape == (30, 3, 5, 7) and ds.x_test.shape == (12, 3, 5, 7)
    assert torch.bincount(ds.y_train).tolist() == [10, 10, 10]  # balanced


def test_synthetic_is_learnable() -> None:
    ds = load_dataset("synthetic")
    flat_train, flat_test = ds.x_train.flatten(1), ds.x_test.flatten(1)
    centroids = torch.stack([flat_train[ds.y_train == c].mean(0) for c in range(ds.num_classes)])
    predicted = torch.cdist(flat_test, centroids).argmin(1)
    assert (predicted == ds.y_test).float().mean() > 0.95


def test_synthetic_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_train"):
        load_dataset("synthetic", n_train=0)


# ---------------------------------------------------------------------------- download


def _fake_downloader(calls: list[str]):
    """Stands in for torchvision's download_and_extract_archive: writes the real formats."""

    def fake(url: str, download_root, extract_root=None, filename=None, md5=None, **_) -> None:
        calls.append(url)
        root = Path(download_root)
        if "cifar-10-" in url:
            write_cifar10(root)
        elif "cifar-100-" in url:
            write_cifar100(root)
        else:  # one MNIST file per call, gzip'd, extracted next to it as torchvision does
            role = {v: k for k, v in MNIST_STEMS.items()}[filename.removesuffix(".gz")]
            written = write_mnist(root / "tmp", n_train=8, n_test=4)
            data = written.paths[role].read_bytes()
            (root / filename).write_bytes(data)

    return fake


@pytest.fixture
def no_torchvision_loaders(monkeypatch):
    """Fail if a torchvision dataset class is instantiated (it would use its own loader)."""
    import torchvision.datasets as tvd

    def refuse(self, *args, **kwargs):
        raise AssertionError("torchvision's dataset loader must not be used")

    for cls in ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100"):
        monkeypatch.setattr(getattr(tvd, cls), "__init__", refuse)


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("mnist", "ossci-datasets"),
        ("fashion_mnist", "fashion-mnist"),
        ("cifar10", "cifar-10-python.tar.gz"),
        ("cifar100", "cifar-100-python.tar.gz"),
    ],
)
def test_download_through_torchvision(
    name: str, host: str, tmp_path: Path, monkeypatch, no_torchvision_loaders
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        "torchvision.datasets.utils.download_and_extract_archive", _fake_downloader(calls)
    )
    ds = load_dataset(name, data_dir=tmp_path, download=True)
    _check(ds, name)
    assert calls and all(host in url for url in calls)
    n = len(calls)
    load_dataset(name, data_dir=tmp_path, download=True)  # present now: no new download
    assert len(calls) == n


def test_download_to_default_dir(_isolated_data_dir: Path, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(
        "torchvision.datasets.utils.download_and_extract_archive", _fake_downloader(calls)
    )
    load_dataset("mnist", download=True)
    assert (_isolated_data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_download_failure_is_one_clear_line(name: str, tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(DataError, match=f"could not download {name} into {tmp_path}") as info:
        load_dataset(name, data_dir=tmp_path, download=True)
    assert "name resolution" in str(info.value) and "\n" not in str(info.value)
