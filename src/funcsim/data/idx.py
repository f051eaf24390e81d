"""Strict reader for the IDX format of MNIST and Fashion-MNIST (gzip'd or raw).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the payload in C order, big-endian. Every deviation
(wrong magic, unknown dtype code, a truncated header or payload, trailing bytes, a broken
gzip stream) raises :class:`~funcsim.errors.DataError` naming the file; nothing is guessed.

>>> import numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
>>> _ = path.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 2, 1]))
>>> read_idx(path)
array([7, 2, 1], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from funcsim.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of a gzip stream; files are recognised by content, not by name."""

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX dtype code (third magic byte) -> big-endian numpy dtype."""

_HEADER_BYTES = 4
_DIM_BYTES = 4


def _describe(code: int) -> str:
    return f"0x{code:02x} ({IDX_DTYPES[code].name})" if code in IDX_DTYPES else f"0x{code:02x}"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from None


def read_idx(
    path: str | os.PathLike[str],
    *,
    ndim: int | None = None,
    dtype: np.dtype | type | str | None = None,
) -> np.ndarray:
    """Read one IDX file (gzip'd or raw, told apart by content) into a native-endian array.

    Parameters
    ----------
    path : the file.
    ndim, dtype : when given, the file must hold an array of exactly this rank and element
        type (MNIST images are 3-D uint8, ``0x00000803``; labels 1-D uint8, ``0x00000801``).

    Returns
    -------
    A writable array of shape ``(d_1, ..., d_ndim)`` as the header declares.

    Raises
    ------
    DataError : the file is missing, unreadable or not a well-formed IDX file; the message
        names the path and what was wrong.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < _HEADER_BYTES:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes, need 4)")
    zero0, zero1, code, rank = data[0], data[1], data[2], data[3]
    magic = int.from_bytes(data[:4], "big")
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{path}: wrong magic number 0x{magic:08x}, not an IDX file "
            "(an IDX file starts 0x0000 <dtype code> <ndim>, e.g. 0x00000803 for images)"
        )
    if code not in IDX_DTYPES:
        allowed = ", ".join(_describe(c) for c in IDX_DTYPES)
        raise DataError(
            f"{path}: unknown IDX dtype code 0x{code:02x} in magic 0x{magic:08x}; "
            f"allowed: {allowed}"
        )
    want_dtype = np.dtype(dtype) if dtype is not None else None
    if want_dtype is not None and IDX_DTYPES[code].newbyteorder("=") != want_dtype:
        raise DataError(
            f"{path}: IDX element type is {_describe(code)}, expected {want_dtype.name}"
        )
    if rank == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions (magic 0x{magic:08x})")
    if ndim is not None and rank != ndim:
        raise DataError(
            f"{path}: IDX file has {rank} dimension(s) (magic 0x{magic:08x}), expected {ndim}"
        )
    header = _HEADER_BYTES + _DIM_BYTES * rank
    if len(data) < header:
        raise DataError(
            f"{path}: truncated IDX header: {rank} dimensions need {header} bytes, "
            f"file has {len(data)}"
        )
    dims = tuple(
        int.from_bytes(data[start : start + _DIM_BYTES], "big")
        for start in range(_HEADER_BYTES, header, _DIM_BYTES)
    )
    item = IDX_DTYPES[code]
    expected = math.prod(dims) * item.itemsize
    found = len(data) - header
    shape = "x".join(map(str, dims))
    if found < expected:
        raise DataError(
            f"{path}: truncated IDX file: header declares {shape} {item.name} "
            f"({expected} payload bytes), found {found}"
        )
    if found > expected:
        raise DataError(
            f"{path}: {found - expected} unexpected trailing bytes after the {shape} "
            f"{item.name} payload declared by the IDX header"
        )
    array = np.frombuffer(data, dtype=item, count=math.prod(dims), offset=header)
    return array.reshape(dims).astype(item.newbyteorder("="), copy=True)
