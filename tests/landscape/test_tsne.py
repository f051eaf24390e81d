"""Exact t-SNE (funcsim.landscape._tsne) against textbook formulas and scikit-learn's exact
t-SNE, piece by piece (scikit-learn's private helpers are the reference for P and for the
optimiser: they are what ``TSNE(method="exact")`` runs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist, squareform
from sklearn.manifold import _t_sne

from funcsim.landscape import _tsne


def clustered(k: int = 40, seed: int = 0) -> np.ndarray:
    """Distances between k points in 3 Gaussian clusters in 5-D."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(k, 5)) + 4.0 * rng.integers(0, 3, size=(k, 1))
    return cdist(x, x)


def textbook_kl_gradient(y: np.ndarray, p: np.ndarray, dof: float) -> tuple[float, np.ndarray]:
    """KL(P || Q) and dKL/dy with the Student-t kernel, one pair at a time in float64."""
    k = len(y)
    w = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            if i != j:
                w[i, j] = (1.0 + np.sum((y[i] - y[j]) ** 2) / dof) ** (-(dof + 1.0) / 2.0)
    q = w / w.sum()
    off = ~np.eye(k, dtype=bool)
    kl = float(np.sum(p[off] * np.log(p[off] / q[off])))
    grad = np.zeros_like(y)
    for i in range(k):
        for j in range(k):
            if i != j:
                grad[i] += (p[i, j] - q[i, j]) * w[i, j] * (y[i] - y[j])
    return kl, grad * 2.0 * (dof + 1.0) / dof


@pytest.mark.parametrize("perplexity", [3.0, 10.0, 25.0])
def test_joint_probabilities_equal_sklearn_exact(perplexity: float) -> None:
    d = clustered()
    ours = _tsne.joint_probabilities(d, perplexity)
    ref = squareform(_t_sne._joint_probabilities(d**2, perplexity, 0))
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-300)
    assert np.all(np.diag(ours) == 0.0) and np.allclose(ours, ours.T)
    assert ours.sum() == pytest.approx(1.0)


def test_joint_probabilities_of_coincident_points_are_uniform() -> None:
    p = _tsne.joint_probabilities(np.zeros((5, 5)), 2.0)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(p[off], 1.0 / 20)


@pytest.mark.parametrize(
    ("n_components", "dtype", "rtol"),
    [(2, np.float64, 1e-10), (3, np.float64, 1e-10), (2, np.float32, 1e-4)],
)
def test_kl_gradient_equals_the_textbook_formula(
    n_components: int, dtype: type, rtol: float
) -> None:
    d = clustered(k=30)
    p = _tsne.joint_probabilities(d, 8.0)
    y = np.random.default_rng(1).normal(scale=5.0, size=(30, n_components)).astype(np.float32)
    dof = float(max(n_components - 1, 1))
    kl, grad = _tsne.kl_gradient(y, p.astype(dtype), dof)
    ref_kl, ref_grad = textbook_kl_gradient(y.astype(np.float64), p, dof)
    assert kl == pytest.approx(ref_kl, rel=rtol)
    scale = np.abs(ref_grad).max()
    np.testing.assert_allclose(grad, ref_grad, atol=rtol * scale)
    _, again = _tsne.kl_gradient(y, p.astype(dtype), dof, compute_error=False)
    np.testing.assert_array_equal(again, grad)  # the error's extra passes change nothing


def test_descent_tracks_sklearn_gradient_descent_step_for_step() -> None:
    # the first iterations, before the optimisation's chaos amplifies round-off: same gains,
    # momentum, learning rate and exaggeration as scikit-learn's exact t-SNE
    k = 40
    d = clustered(k)
    p = _tsne.joint_probabilities(d, 10.0)
    init = (np.random.default_rng(2).normal(size=(k, 2)) * 1e-4).astype(np.float32)
    rate = float(max(k / 12.0 / 4.0, 50.0))
    ref, ref_error, _ = _t_sne._gradient_descent(
        _t_sne._kl_divergence,
        init.ravel().copy(),
        0,
        10,
        n_iter_check=50,
        n_iter_without_progress=250,
        momentum=0.5,
        learning_rate=np.float64(rate),
        args=[squareform(p * 12.0, checks=False), 1, k, 2],
        kwargs={"skip_num_points": 0},
    )
    ours = init.copy()
    work = _tsne._Workspace(k, 2, np.float64)
    error, last = _tsne._descend(
        ours,
        p * 12.0,
        1.0,
        work,
        start=0,
        max_iter=10,
        momentum=0.5,
        learning_rate=rate,
        n_iter_without_progress=250,
    )
    assert last == 9 and error == pytest.approx(ref_error, rel=1e-5)
    np.testing.assert_allclose(ours, ref.reshape(k, 2), atol=1e-5 * np.abs(ours).max())


def test_exact_tsne_flips_with_its_init_bit_for_bit() -> None:
    d = clustered()
    init = (np.random.default_rng(3).normal(size=(40, 2)) * 1e-4).astype(np.float32)
    flip = np.array([-1.0, 1.0], dtype=np.float32)
    a, kl_a, it_a = _tsne.exact_tsne(d, init, 10.0)
    b, kl_b, it_b = _tsne.exact_tsne(d, init * flip, 10.0)
    np.testing.assert_array_equal(b, a * flip)
    assert (kl_a, it_a) == (kl_b, it_b)


def test_exact_tsne_separates_clusters_and_is_deterministic() -> None:
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(3), 20)
    x = rng.normal(size=(60, 5)) + 10.0 * labels[:, None]
    d = cdist(x, x)
    init = (rng.normal(size=(60, 2)) * 1e-4).astype(np.float32)
    y, kl, n_iter = _tsne.exact_tsne(d, init, 10.0)
    again, _, _ = _tsne.exact_tsne(d, init, 10.0)
    np.testing.assert_array_equal(y, again)
    assert y.dtype == np.float32 and n_iter <= 999 and 0.0 < kl < 1.0
    centres = np.stack([y[labels == c].mean(axis=0) for c in range(3)])
    spread = max(np.linalg.norm(y[labels == c] - centres[c], axis=1).max() for c in range(3))
    assert np.min(cdist(centres, centres) + 1e9 * np.eye(3)) > 2.0 * spread
