"""syrk_upper: BLAS syrk through scipy.linalg.cython_blas (the Gram pass calls it from several
threads; tests/landscape/test_estimator.py checks that pass is the same for any number)."""

from __future__ import annotations

import numpy as np
import pytest

from funcsim.landscape._blas import syrk_upper


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_syrk_upper_is_the_upper_triangle_of_the_product(dtype) -> None:
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(23, 301)).astype(dtype)
    views = {
        "contiguous": wide,
        "column slice (row stride > length)": wide[:, 7:150],
        "every other row": wide[::2],
        "every other column (copied)": wide[:, ::2],
        "rows reversed (copied)": wide[::-1],
        "one row": wide[:1],
    }
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for name, block in views.items():
        upper = syrk_upper(block)
        exact = block.astype(np.float64) @ block.T.astype(np.float64)
        assert upper.dtype == dtype and upper.shape == (len(block), len(block)), name
        np.testing.assert_allclose(upper, np.triu(exact), rtol=rtol, atol=rtol, err_msg=name)
        assert not np.tril(upper, -1).any(), name  # below the diagonal: zeros


def test_syrk_upper_of_empty_blocks_and_bad_dtypes() -> None:
    assert not syrk_upper(np.ones((3, 0), dtype=np.float32)).any()
    assert syrk_upper(np.ones((0, 4))).shape == (0, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        syrk_upper(np.ones((2, 2), dtype=np.float16))
