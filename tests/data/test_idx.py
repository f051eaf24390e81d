"""The IDX reader: round trips for every dtype code, gzip'd or raw; every corruption rejected."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from helpers.formats import IDX_CODES, idx_bytes, write_bytes, write_idx
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from funcsim.data import read_idx
from funcsim.errors import DataError

DTYPES = sorted(IDX_CODES, key=lambda d: IDX_CODES[d])


def _raises(path: Path, match: str, **kwargs: object) -> str:
    with pytest.raises(DataError, match=match) as info:
        read_idx(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_round_trip_every_dtype(tmp_path: Path, dtype: np.dtype, compress: bool) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    out = read_idx(path)
    assert out.dtype == dtype.newbyteorder("=") and out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    out[0] = 0  # writable


@settings(max_examples=25, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from(DTYPES),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    compress=st.booleans(),
)
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, array, compress) -> None:
    path = write_idx(tmp_path_factory.mktemp("idx") / "x", array, compress=compress)
    out = read_idx(path)
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_gzip_recognised_by_content_not_name(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(
        read_idx(write_idx(tmp_path / "no-suffix", array, compress=True)), array
    )
    np.testing.assert_array_equal(
        read_idx(write_idx(tmp_path / "raw.gz", array, compress=False)), array
    )


def test_expected_rank_and_dtype(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    assert read_idx(path, ndim=1, dtype=np.uint8).shape == (4,)
    _raises(path, "1 dimension.*expected 3", ndim=3)
    _raises(path, "uint8.*expected float32", dtype=np.float32)


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope-idx1-ubyte", "not found")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_empty_and_short_files(tmp_path: Path, compress: bool) -> None:
    _raises(write_bytes(tmp_path / "empty", b"", compress=compress), "too short")
    _raises(write_bytes(tmp_path / "short", b"\x00\x00", compress=compress), "too short")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_wrong_magic(tmp_path: Path, compress: bool) -> None:
    payload = idx_bytes(np.zeros((2, 2), np.uint8), magic=b"\x12\x34\x08\x02")
    message = _raises(write_bytes(tmp_path / "x", payload, compress=compress), "wrong magic")
    assert "0x12340802" in message


def test_png_is_not_idx(tmp_path: Path) -> None:
    _raises(write_bytes(tmp_path / "x", b"\x89PNG\r\n\x1a\n" + bytes(50)), "wrong magic")


def test_unknown_dtype_code(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros(4, np.uint8), magic=b"\x00\x00\x07\x01")
    message = _raises(write_bytes(tmp_path / "x", payload), "unknown IDX dtype code 0x07")
    assert "0x08 (uint8)" in message  # names what is allowed


def test_zero_dimensions(tmp_path: Path) -> None:
    _raises(write_bytes(tmp_path / "x", b"\x00\x00\x08\x00"), "0 dimensions")


def test_truncated_header(tmp_path: Path) -> None:
    _raises(
        write_bytes(tmp_path / "x", b"\x00\x00\x08\x03\x00\x00\x00\x02"), "truncated IDX header"
    )


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_truncated_payload(tmp_path: Path, compress: bool) -> None:
    payload = idx_bytes(np.zeros((5, 28, 28), np.uint8))[:-100]
    message = _raises(write_bytes(tmp_path / "x", payload, compress=compress), "truncated IDX file")
    assert "5x28x28" in message and "3920" in message and "3820" in message


def test_trailing_bytes(tmp_path: Path) -> None:
    payload = idx_bytes(np.zeros(3, np.uint8)) + b"\x00\x00"
    _raises(write_bytes(tmp_path / "x", payload), "2 unexpected trailing bytes")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    _raises(write_bytes(tmp_path / "x.gz", blob[: len(blob) // 2], compress=False), "gzip")


def test_corrupt_gzip_stream(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32))))
    blob[20:40] = bytes(20)
    _raises(write_bytes(tmp_path / "x.gz", bytes(blob), compress=False), "gzip")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    _raises(tmp_path / "dir", "cannot read")
