"""Exact t-SNE for a landscape's few hundred points: scikit-learn's ``method="exact"``,
vectorised.

scikit-learn's exact t-SNE computes each iteration's KL gradient with a Python loop over the
points (6.8 s for 1,000 iterations at K = 400 here); its Barnes-Hut t-SNE, the default,
approximates the gradient with a space-partitioning tree (2.5 ms per iteration at K = 400 on
one core). A landscape has few points, so the exact gradient, written as a few whole-array
passes over K x K and a few matrix-vector products, is both exact and cheaper: about 0.55 ms
per iteration at K = 400 on one BLAS thread (0.7 ms with NumPy's broadcasting for the
coordinate differences and one (K, K) x (K, 3) product). Its cost grows as K^2: at K = 1,000
it took 5.4 s against Barnes-Hut's 7.8 s, and at 2,000 it would be slower
(:data:`funcsim.landscape.estimator.EXACT_TSNE_MAX`). Everything else follows scikit-learn's
exact t-SNE step for step:

* ``P``: per-row bisection of the Gaussian precision that gives the perplexity (at most 100
  steps, entropy tolerance 1e-5, on float32 squared distances, as
  ``sklearn.manifold._utils._binary_search_perplexity``), then symmetrised and normalised,
  ``p_ij = max((p_j|i + p_i|j) / sum, eps)`` over all pairs (no nearest-neighbour cut);
* ``w_ij = (1 + |y_i - y_j|^2 / dof)^(-(dof + 1) / 2)``, ``dof = max(n_components - 1, 1)``,
  ``q_ij = w_ij / sum_{k != l} w_kl``; gradient ``dC/dy_i = c sum_j (p_ij - q_ij) w_ij
  (y_i - y_j)``, ``c = 2 (dof + 1) / dof`` (the textbook ``4 sum_j (p_ij - q_ij)(1 +
  d_ij^2)^-1 (y_i - y_j)`` for 2-D);
* gradient descent with momentum and per-parameter gains (+0.2 where the step changes
  direction, x0.8 elsewhere, at least 0.01): 250 iterations with ``P`` exaggerated 12x and
  momentum 0.5, then momentum 0.8 up to ``max_iter``; every 50 iterations the KL divergence
  is computed, and the run stops after 250 (first phase) or 300 iterations without a new
  best, or once the gradient norm is below 1e-7; learning rate ``"auto"``,
  ``max(K / 12 / 4, 50)``; the embedding is kept in float32, as scikit-learn keeps it.

``P`` equals scikit-learn's to 1e-12 and the first iterations track its optimiser to round-off
(tests/landscape/test_tsne.py). The kernel, ``Q`` and the forces are computed in float32 by
default, as scikit-learn's Barnes-Hut computes them (its exact method uses float64; pass
``dtype=np.float64`` for that, 1.5x slower): squared distances from coordinate differences,
so only relative round-off. Over 1,000 iterations t-SNE amplifies any round-off into a
different, equally good layout (Procrustes disparity 0.01-0.14 against scikit-learn's exact
t-SNE in the tests and the benchmark, trustworthiness equal).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

MACHINE_EPSILON = float(np.finfo(np.float64).eps)
PERPLEXITY_TOLERANCE = float(np.float32(1e-5))
"""Entropy tolerance of the binary search (a C float in scikit-learn)."""
PERPLEXITY_STEPS = 100
EMPTY_ROW_SUM = float(np.float32(1e-8))
"""Substitute for a row sum that underflowed to 0 (scikit-learn's ``EPSILON_DBL``, a C float)."""

EARLY_EXAGGERATION = 12.0
EXPLORATION_ITER = 250
ITER_CHECK = 50
N_ITER_WITHOUT_PROGRESS = 300
MIN_GRAD_NORM = 1e-7
MIN_GAIN = 0.01

__all__ = ["exact_tsne", "joint_probabilities", "kl_gradient"]


def joint_probabilities(distances: np.ndarray, perplexity: float) -> np.ndarray:
    """Symmetric joint probabilities ``P`` (K, K), float64, zero diagonal, from Euclidean
    ``distances`` (K, K), as scikit-learn's exact t-SNE computes them.

    Each row's precision ``beta_i`` is bisected (doubling or halving until bracketed) until
    the entropy of ``p_j|i ∝ exp(-beta_i d_ij^2)`` is ``log(perplexity)`` within 1e-5, all rows
    at once; then ``P = max((P_cond + P_cond^T) / sum, eps)`` off the diagonal.
    """
    sq = np.square(np.asarray(distances, dtype=np.float64)).astype(np.float32)
    sq64 = sq.astype(np.float64)
    k = sq.shape[0]
    desired_entropy = math.log(float(np.float32(perplexity)))
    beta = np.ones(k)
    beta_min = np.full(k, -np.inf)
    beta_max = np.full(k, np.inf)
    cond = np.zeros((k, k))
    active = np.arange(k)
    for step in range(PERPLEXITY_STEPS):
        rows = sq64 if active.size == k else sq64[active]
        p = np.exp(-rows * beta[active, None])
        p[np.arange(active.size), active] = 0.0  # no p_i|i
        total = p.sum(axis=1)
        total[total == 0.0] = EMPTY_ROW_SUM
        p /= total[:, None]
        entropy = np.log(total) + beta[active] * np.einsum("ij,ij->i", rows, p)
        diff = entropy - desired_entropy
        converged = np.abs(diff) <= PERPLEXITY_TOLERANCE
        final = converged if step < PERPLEXITY_STEPS - 1 else np.ones_like(converged)
        cond[active[final]] = p[final]  # a row keeps its last try when the search gives up
        up = ~converged & (diff > 0.0)  # entropy too high: sharpen (beta up)
        down = ~converged & ~(diff > 0.0)
        b = beta[active]
        lo, hi = beta_min[active], beta_max[active]
        lo = np.where(up, b, lo)
        hi = np.where(down, b, hi)
        b = np.where(up, np.where(np.isinf(hi), b * 2.0, (b + hi) / 2.0), b)
        b = np.where(down, np.where(np.isinf(lo), b / 2.0, (b + lo) / 2.0), b)
        beta[active], beta_min[active], beta_max[active] = b, lo, hi
        active = active[~converged]
        if active.size == 0:
            break
    joint = cond + cond.T
    joint /= max(float(joint.sum()), MACHINE_EPSILON)
    np.maximum(joint, MACHINE_EPSILON, out=joint)
    np.fill_diagonal(joint, 0.0)
    return joint


class _Workspace:
    """Buffers reused across iterations (a fresh K x K array per step would page-fault)."""

    def __init__(self, k: int, n_components: int, dtype: npt.DTypeLike = np.float32) -> None:
        self.dtype = np.dtype(dtype)
        self.kernel = np.empty((k, k), dtype=self.dtype)
        self.force = np.empty((k, k), dtype=self.dtype)
        self.coords = np.empty((k, n_components + 1), dtype=self.dtype)  # [y, 1]
        self.coords[:, -1] = 1.0
        self.diagonal = self.kernel.reshape(-1)[:: k + 1]  # a view: zeroing it is one call
        # y_i - y_j for all pairs as the product [y_i, 1] . [1, -y_j]: both products are
        # exact, so the one rounding of their sum is that of the subtraction, bit for bit
        self.left = np.ones((k, 2), dtype=self.dtype)
        self.right = np.ones((2, k), dtype=self.dtype)
        self.ones = np.ones(k, dtype=self.dtype)
        self.sums = np.empty((n_components + 1, k), dtype=self.dtype)


def kl_gradient(
    y: np.ndarray,
    p: np.ndarray,
    dof: float,
    *,
    compute_error: bool = True,
    work: _Workspace | None = None,
) -> tuple[float, np.ndarray]:
    """KL divergence ``sum_{i != j} p_ij log(p_ij / q_ij)`` and its gradient (K, d) at ``y``.

    ``p`` is the symmetric (K, K) joint probability matrix with zero diagonal, in the
    workspace's dtype (``p``'s own without a workspace), in which the kernel ``W``, ``Q`` and
    the forces ``F = (P - Q) * W`` are computed; the gradient is
    ``c * (diag(F 1) y - F y)``, ``c = 2 (dof + 1) / dof``. The KL divergence is NaN when
    ``compute_error`` is false (it costs three more passes).
    """
    k, d = y.shape
    w = work or _Workspace(k, d, p.dtype)
    scalar: Callable[[float], Any] = w.dtype.type
    yw = w.coords[:, :d]
    yw[...] = y
    # |y_i - y_j|^2 from coordinate differences, as scikit-learn's pdist: relative round-off
    # only (the expansion |y_i|^2 + |y_j|^2 - 2 y_i.y_j saves two passes over K x K but loses
    # eps |y|^2 to cancellation, 3e-4 of the kernel in float32 once |y| reaches 50)
    kernel, scratch = w.kernel, w.force
    for c in range(d):
        target = kernel if c == 0 else scratch
        w.left[:, 0] = yw[:, c]
        np.negative(yw[:, c], out=w.right[1])
        np.matmul(w.left, w.right, out=target)  # y_ic - y_jc: 85 us against broadcasting's 110
        np.multiply(target, target, out=target)
        if c:
            np.add(kernel, scratch, out=kernel)
    if dof == 1.0:
        np.add(kernel, scalar(1.0), out=kernel)
        np.reciprocal(kernel, out=kernel)  # w_ij = (1 + d_ij^2)^-1
    else:
        np.divide(kernel, scalar(dof), out=kernel)
        np.add(kernel, scalar(1.0), out=kernel)
        np.power(kernel, scalar((dof + 1.0) / -2.0), out=kernel)
    w.diagonal[...] = 0.0
    total = float(np.matmul(w.ones, kernel).sum())  # column sums (BLAS), then their sum
    force = w.force
    np.multiply(kernel, scalar(1.0 / total), out=force)  # q_ij (< eps only beyond |y| ~ 1e5)
    error = math.nan
    if compute_error:
        q = np.maximum(force, MACHINE_EPSILON, dtype=np.float64)
        ratio = np.maximum(p, MACHINE_EPSILON, dtype=np.float64) / q
        np.fill_diagonal(ratio, 1.0)
        error = float(np.einsum("ij,ij->", p, np.log(ratio), dtype=np.float64))
    np.subtract(p, force, out=force)
    force *= kernel
    for c in range(d + 1):  # F y and the row sums F 1: one matrix-vector product each
        np.matmul(force, w.coords[:, c], out=w.sums[c])
    sums = w.sums.T
    grad: np.ndarray = sums[:, -1:] * yw - sums[:, :d]
    grad *= scalar(2.0 * (dof + 1.0) / dof)
    return error, grad


def _descend(
    params: np.ndarray,
    p: np.ndarray,
    dof: float,
    work: _Workspace,
    *,
    start: int,
    max_iter: int,
    momentum: float,
    learning_rate: float,
    n_iter_without_progress: int,
) -> tuple[float, int]:
    """scikit-learn's ``_gradient_descent`` on ``params`` (float32, updated in place):
    returns (last computed KL divergence, last iteration)."""
    update = np.zeros(params.shape, dtype=np.float64)
    gains = np.ones(params.shape, dtype=params.dtype)
    error = best_error = float(np.finfo(float).max)
    best_iter = i = start
    for i in range(start, max_iter):
        check = (i + 1) % ITER_CHECK == 0
        error, grad_w = kl_gradient(
            params, p, dof, compute_error=check or i == max_iter - 1, work=work
        )
        grad = grad_w.astype(params.dtype)  # float32, as scikit-learn keeps the embedding
        inc = update * grad < 0.0
        gains[inc] += 0.2
        gains[~inc] *= 0.8
        np.maximum(gains, MIN_GAIN, out=gains)  # clip to [0.01, inf)
        grad *= gains
        update = momentum * update - learning_rate * grad
        params += update
        if check:
            grad_norm = float(np.linalg.norm(grad))
            if error < best_error:
                best_error, best_iter = error, i
            elif i - best_iter > n_iter_without_progress:
                break
            if grad_norm <= MIN_GRAD_NORM:
                break
    return error, i


def exact_tsne(
    distances: np.ndarray,
    init: np.ndarray,
    perplexity: float,
    *,
    max_iter: int = 1000,
    dtype: npt.DTypeLike = np.float32,
) -> tuple[np.ndarray, float, int]:
    """Exact t-SNE of ``distances`` (K, K) from ``init`` (K, d): returns the embedding
    (K, d) float32, the final KL divergence and the last iteration's index (scikit-learn's
    ``n_iter_``).

    ``dtype`` is the precision of the K x K work: float32 as scikit-learn's Barnes-Hut
    gradient, float64 as its exact one (1.5x slower here).
    """
    k, d = init.shape
    dof = float(max(d - 1, 1))
    p = joint_probabilities(distances, perplexity).astype(dtype)
    params = np.array(init, dtype=np.float32, copy=True)
    learning_rate = float(max(k / EARLY_EXAGGERATION / 4.0, 50.0))
    work = _Workspace(k, d, dtype)
    p *= EARLY_EXAGGERATION
    error, it = _descend(
        params,
        p,
        dof,
        work,
        start=0,
        max_iter=EXPLORATION_ITER,
        momentum=0.5,
        learning_rate=learning_rate,
        n_iter_without_progress=EXPLORATION_ITER,
    )
    p /= EARLY_EXAGGERATION
    if it < EXPLORATION_ITER or max_iter > EXPLORATION_ITER:
        error, it = _descend(
            params,
            p,
            dof,
            work,
            start=it + 1,
            max_iter=max_iter,
            momentum=0.8,
            learning_rate=learning_rate,
            n_iter_without_progress=N_ITER_WITHOUT_PROGRESS,
        )
    return params, error, it
