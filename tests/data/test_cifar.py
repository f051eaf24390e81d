"""CIFAR batches: the original pickle format, validation, and hostile pickles left inert."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.formats import (
    cifar_arrays,
    malicious_pickle,
    py2_pickle_dumps,
    write_bytes,
    write_cifar10,
    write_cifar100,
    write_cifar_batch,
)

from funcsim.data import RestrictedUnpickler, load_dataset, read_cifar_batch
from funcsim.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from funcsim.errors import DataError


def _images(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rows.reshape(-1, 3, 32, 32)).float() / 255


def _fails(name: str, root: Path, path: Path, match: str) -> str:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(name, data_dir=root)
    message = str(info.value)
    assert str(path) in message and "--download" in message and "\n" not in message
    return message


# ----------------------------------------------------------------------------- loading


@pytest.mark.parametrize("flat", [False, True], ids=["archive-layout", "flat"])
def test_cifar10(tmp_path: Path, flat: bool) -> None:
    written = write_cifar10(tmp_path, n_per_batch=3, n_test=7, flat=flat)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (7, 3, 32, 32)
    assert torch.equal(ds.x_train, _images(written.x_train))  # batches 1..5 in order
    assert torch.equal(ds.x_test, _images(written.x_test))
    assert ds.y_train.tolist() == list(written.y_train) and ds.y_train.dtype == torch.int64
    assert ds.classes == CIFAR10_CLASSES and ds.classes[0] == "airplane"


def test_cifar10_channel_order(tmp_path: Path) -> None:
    """A row is R (1024), G, B: a pure red image has only channel 0 set."""
    root = tmp_path / "cifar-10-batches-py"
    red = np.zeros((1, 3072), np.uint8)
    red[0, :1024] = 255
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(root / name, red, [3])
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert float(ds.x_test[0, 0].min()) == 1.0 and float(ds.x_test[0, 1:].max()) == 0.0


@pytest.mark.parametrize("flat", [False, True], ids=["archive-layout", "flat"])
def test_cifar100_fine_labels(tmp_path: Path, flat: bool) -> None:
    written = write_cifar100(tmp_path, n_train=20, n_test=8, flat=flat)
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.num_classes == 100
    assert torch.equal(ds.x_train, _images(written.x_train))
    assert ds.y_train.tolist() == list(written.y_train)  # fine, not coarse, labels
    assert ds.classes == CIFAR100_CLASSES and len(set(ds.classes)) == 100


def test_cifar100_class_names_sorted_like_meta() -> None:
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert CIFAR100_CLASSES[:3] == ("apple", "aquarium_fish", "baby")


def test_limits_convert_only_what_is_kept(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n_per_batch=4)
    ds = load_dataset("cifar10", data_dir=tmp_path, train_limit=6, test_limit=2)
    assert ds.x_train.shape == (6, 3, 32, 32) and ds.y_test.shape == (2,)
    assert ds.x_train.untyped_storage().nbytes() == 6 * 3072 * 4


def test_original_format_is_python2_pickle(tmp_path: Path) -> None:
    """The writer mimics the originals: protocol 2, BINSTRING keys, numpy.core names."""
    blob = write_cifar10(tmp_path).paths["data_batch_1"].read_bytes()
    assert blob[:2] == b"\x80\x02" and b"U\x04data" in blob
    assert b"numpy.core.multiarray\n_reconstruct" in blob and b"_codecs" not in blob


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_python3_repickled_batches_load(tmp_path: Path, protocol: int) -> None:
    data, labels = cifar_arrays(5, 10)
    path = write_cifar_batch(tmp_path / "b", data, labels, protocol=protocol)
    batch = read_cifar_batch(path)
    np.testing.assert_array_equal(batch[b"data"], data)
    assert batch[b"labels"] == labels


def test_str_keys_are_accepted(tmp_path: Path) -> None:
    data, labels = cifar_arrays(4, 10)
    path = write_bytes(tmp_path / "b", pickle.dumps({"data": data, "labels": labels}))
    assert set(read_cifar_batch(path)) == {b"data", b"labels"}


def test_numpy_label_array_accepted(tmp_path: Path) -> None:
    data, labels = cifar_arrays(4, 10)
    path = write_cifar_batch(tmp_path / "b", data, np.array(labels, dtype=np.int64))
    assert list(read_cifar_batch(path)[b"labels"]) == labels


# -------------------------------------------------------------------------- corruption


def _batch_with(tmp_path: Path, role: str = "data_batch_2", **kwargs) -> Path:
    written = write_cifar10(tmp_path)
    path = written.paths[role]
    data, labels = cifar_arrays(4, 10)
    args = {"data": data, "labels": labels} | kwargs
    write_cifar_batch(path, args.pop("data"), args.pop("labels"), **args)
    return path


def test_missing_labels_key(tmp_path: Path) -> None:
    path = _batch_with(tmp_path, drop=(b"labels",))
    message = _fails("cifar10", tmp_path, path, r"lacks key\(s\) b'labels'")
    assert "found b'batch_label', b'data', b'filenames'" in message


def test_missing_data_key(tmp_path: Path) -> None:
    path = _batch_with(tmp_path, role="test_batch", drop=(b"data",))
    _fails("cifar10", tmp_path, path, r"lacks key\(s\) b'data'")


def test_cifar100_needs_fine_labels(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path)
    data, labels = cifar_arrays(3, 100)
    write_cifar_batch(written.paths["train"], data, labels)  # b"labels", CIFAR-10 style
    _fails("cifar100", tmp_path, written.paths["train"], "lacks key.*b'fine_labels'")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((4, 3072), np.float32), r"uint8 array, found float32 array"),
        (np.zeros((4, 1024), np.uint8), r"shape \(4, 1024\), expected \(N > 0, 3072\)"),
        (np.zeros((4, 3, 32, 32), np.uint8), r"found uint8 array of shape \(4, 3, 32, 32\)"),
        ([[0] * 3072] * 4, "found list"),
    ],
    ids=["float", "short-rows", "4d", "list"],
)
def test_bad_data(tmp_path: Path, data: object, match: str) -> None:
    _fails("cifar10", tmp_path, _batch_with(tmp_path, data=data), match)


def test_empty_batch(tmp_path: Path) -> None:
    path = _batch_with(tmp_path, data=np.zeros((0, 3072), np.uint8), labels=[])
    _fails("cifar10", tmp_path, path, r"expected \(N > 0, 3072\)")


def test_label_count_mismatch(tmp_path: Path) -> None:
    path = _batch_with(tmp_path, labels=[1, 2, 3])
    _fails("cifar10", tmp_path, path, "4 images in b'data' but 3 labels")


@pytest.mark.parametrize("bad", [10, -1, 255])
def test_label_out_of_range(tmp_path: Path, bad: int) -> None:
    path = _batch_with(tmp_path, labels=[0, 1, bad, 2])
    _fails("cifar10", tmp_path, path, rf"label {bad} at index 2 .*allowed 0\.\.9")


@pytest.mark.parametrize("labels", [[0.5, 1, 2, 3], ["a", "b", "c", "d"], [[1], [2], 3, 4]])
def test_non_integer_labels(tmp_path: Path, labels: list) -> None:
    _fails("cifar10", tmp_path, _batch_with(tmp_path, labels=labels), "list of integers")


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "not a valid CIFAR batch pickle"),
        (b"this is not a pickle", "not a valid CIFAR batch pickle"),
        (py2_pickle_dumps({b"data": b"x" * 100})[:-30], "not a valid CIFAR batch pickle"),
        (py2_pickle_dumps([1, 2, 3]), "must be a dict, found list"),
    ],
    ids=["empty", "text", "truncated", "list"],
)
def test_not_a_batch(tmp_path: Path, payload: bytes, match: str) -> None:
    path = write_cifar10(tmp_path).paths["data_batch_5"]
    write_bytes(path, payload)
    _fails("cifar10", tmp_path, path, match)


def test_missing_file_named(tmp_path: Path) -> None:
    write_cifar10(tmp_path).paths["data_batch_3"].unlink()
    with pytest.raises(DataError, match="has only some of them, missing data_batch_3") as info:
        load_dataset("cifar10", data_dir=tmp_path)
    assert "--download" in str(info.value)


def test_nothing_there(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("cifar100", data_dir=tmp_path)
    message = str(info.value)
    assert f"not found in {tmp_path / 'cifar-100-python'} or {tmp_path}" in message
    assert "expected train, test" in message and "--download" in message


# ------------------------------------------------------------------------ hostile files


VIAS = ["os.system", "open"]


@pytest.mark.parametrize("via", VIAS)
def test_payload_is_live_without_restriction(tmp_path: Path, via: str) -> None:
    """Control: plain pickle.loads really would create the file, so the tests below mean it."""
    target = tmp_path / "pwned"
    obj = pickle.loads(malicious_pickle(target, via=via))
    if hasattr(obj[b"data"], "close"):
        obj[b"data"].close()
    assert target.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("in_batch", [True, False], ids=["inside-batch", "top-level"])
@pytest.mark.parametrize("via", VIAS)
def test_malicious_batch_rejected_and_inert(
    tmp_path: Path, via: str, in_batch: bool, protocol: int
) -> None:
    target = tmp_path / "pwned"
    path = write_cifar10(tmp_path / "data").paths["test_batch"]
    write_bytes(path, malicious_pickle(target, via=via, protocol=protocol, in_batch=in_batch))
    message = _fails("cifar10", tmp_path / "data", path, "refused to unpickle")
    assert ("system" in message) if via == "os.system" else ("open" in message)
    assert "nothing was executed" in message
    assert not target.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("numpy", "load"),
        ("numpy.testing._private.utils", "runstring"),
        ("numpy.core.multiarray", "scalar"),
        ("subprocess", "Popen"),
        ("pickle", "loads"),
    ],
)
def test_allow_list_is_exact(module: str, name: str) -> None:
    import io

    with pytest.raises(pickle.UnpicklingError, match=f"{module}.{name}"):
        RestrictedUnpickler(io.BytesIO(b"")).find_class(module, name)


def test_persistent_ids_refused(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "b", b"\x80\x02X\x03\x00\x00\x00abcQ.")  # BINPERSID
    with pytest.raises(DataError, match="persistent"):
        read_cifar_batch(path)
