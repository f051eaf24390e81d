"""BLAS ``syrk`` that several threads can run at once.

SciPy's ``scipy.linalg.blas`` wrappers (f2py), called from two threads at once, ran one after
the other here: two threads of ten single-threaded 400 x 10,400 ``ssyrk`` calls took 1.05 s,
against 0.50 s for one thread's ten. ``scipy.linalg.cython_blas`` exports the same routines
(from whichever BLAS SciPy was built with) as C function pointers; called through
:mod:`ctypes`, which releases the GIL for the call, the two threads ran side by side (0.53 s).
The Gram pass of :mod:`funcsim.landscape.estimator` uses it to multiply one chunk per core,
each on one BLAS thread: on 2 cores that pass took 2.5-2.8 s, against 3.3-3.5 s for one
2-thread ``syrk`` at a time.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from scipy.linalg import cython_blas  # loads SciPy's BLAS now, where threadpoolctl can see it

__all__ = ["syrk_upper"]

_Int = ctypes.POINTER(ctypes.c_int)
_ROUTINES: dict[np.dtype, tuple[str, Any]] = {
    np.dtype(np.float32): ("ssyrk", ctypes.c_float),
    np.dtype(np.float64): ("dsyrk", ctypes.c_double),
}


@cache
def _routine(name: str, scalar: Any) -> Callable[..., None]:
    """The C function ``name`` of ``scipy.linalg.cython_blas`` with BLAS's Fortran ``syrk``
    signature ``(uplo, trans, n, k, alpha, a, lda, beta, c, ldc)``, every argument by pointer."""
    capsule = cython_blas.__pyx_capi__[name]  # type: ignore[attr-defined]
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    pointer = api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))
    scalar_p = ctypes.POINTER(scalar)
    prototype = ctypes.CFUNCTYPE(  # CFUNCTYPE (not PYFUNCTYPE): the call releases the GIL
        None,
        ctypes.c_char_p,
        ctypes.c_char_p,
        _Int,
        _Int,
        scalar_p,
        ctypes.c_void_p,
        _Int,
        scalar_p,
        ctypes.c_void_p,
        _Int,
    )
    function: Callable[..., None] = prototype(pointer)
    return function


def syrk_upper(block: np.ndarray) -> np.ndarray:
    """Upper triangle of ``block @ block.T`` (K, K), block (K, L) float32 or float64, in the
    block's dtype; the strictly lower triangle is zero. The GIL is released during the product.

    ``block`` needs unit stride along its rows (any row stride: a column slice of a wider
    C-ordered array is passed as it is). In BLAS's column-major terms it is the ``L x K``
    matrix ``A`` with leading dimension ``block.strides[0] / itemsize``, and ``block @ block.T``
    is ``A^T A``: ``syrk`` with ``trans='T'``. Its "lower" triangle, column-major, is the upper
    one of the C-ordered result.
    """
    if block.dtype not in _ROUTINES:
        raise TypeError(f"syrk_upper: expected float32 or float64, got {block.dtype}")
    name, scalar = _ROUTINES[block.dtype]
    k, length = block.shape
    itemsize = block.dtype.itemsize
    row_stride, column_stride = block.strides
    if (length > 1 and column_stride != itemsize) or (
        k > 1 and (row_stride % itemsize or row_stride < length * itemsize)
    ):
        block = np.ascontiguousarray(block)  # BLAS needs unit column and a whole-row stride
        row_stride = length * itemsize
    lead = max(1, length, row_stride // itemsize)
    out = np.zeros((k, k), dtype=block.dtype)
    if k == 0 or length == 0:
        return out
    n_c, k_c = ctypes.c_int(k), ctypes.c_int(length)
    lda_c, ldc_c = ctypes.c_int(lead), ctypes.c_int(k)
    alpha, beta = scalar(1.0), scalar(0.0)
    _routine(name, scalar)(
        b"L",
        b"T",
        ctypes.byref(n_c),
        ctypes.byref(k_c),
        ctypes.byref(alpha),
        block.ctypes.data,
        ctypes.byref(lda_c),
        ctypes.byref(beta),
        out.ctypes.data,
        ctypes.byref(ldc_c),
    )
    return out
