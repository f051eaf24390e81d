"""Pairwise functional-similarity metrics over predicted probability arrays.

Every metric compares two models through their predictions on the same ``N`` test points:

* ``p``, ``q``: arrays of shape ``(N, C)``, one row of class probabilities (a softmax output)
  per test point; any float dtype (float16 and float32 are accepted and converted).
* ``labels``: integer array of shape ``(N,)`` with values in ``[0, C)``.

Accumulation is in float64. Rows are checked by :func:`check_probabilities` (2-D, finite,
non-negative, each row summing to 1 within :data:`ROW_SUM_ATOL`) and the divergences renormalise
each row to sum to exactly 1 before use, as :func:`scipy.stats.entropy` and
:func:`scipy.spatial.distance.jensenshannon` do.

Arguments are ordered *reference first*: ``p`` is the base (teacher) model, ``q`` the candidate
(compressed, student, independent) model. Only :func:`kl_divergence` depends on the order.

The distances that are means over points (:data:`POINTWISE_METRICS`) are also available point
by point through :func:`pointwise_distance`, which the bootstrap of :mod:`.proximity` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from funcsim.errors import DataError, UnknownNameError

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

ROW_SUM_ATOL = 1e-3
"""Largest allowed ``|sum_c p[i, c] - 1|`` (float16 softmax outputs of 1,000 classes pass)."""

KL_EPS = 1e-12
"""Default floor for ``q`` in :func:`kl_divergence` (see its epsilon policy)."""

__all__ = [
    "KL_EPS",
    "POINTWISE_METRICS",
    "ROW_SUM_ATOL",
    "DisagreementBounds",
    "accuracy",
    "check_labels",
    "check_probabilities",
    "compare_predictions",
    "disagreement",
    "disagreement_bounds",
    "flip_matrix",
    "independent_disagreement",
    "js_divergence",
    "kl_divergence",
    "l2_distance",
    "normalized_disagreement",
    "pointwise_distance",
    "relative_accuracy_deviation",
]


# --------------------------------------------------------------------------- validation


def check_probabilities(
    p: ArrayLike, name: str = "p", *, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Validate an array of per-point class probabilities and return it as an ndarray.

    Raises :class:`funcsim.errors.DataError` with a one-line message when ``p`` is not 2-D
    ``(N, C)`` with ``N, C >= 1``, does not have ``shape`` (when given: the shape of the array
    it is compared with), holds NaN or infinite values, holds negative values, or has a row
    whose sum differs from 1 by more than :data:`ROW_SUM_ATOL`. The array is returned without
    copying when it already is an ndarray.

    >>> check_probabilities([[0.25, 0.75], [1.0, 0.0]]).shape
    (2, 2)
    >>> check_probabilities([[0.5, 0.6]], "q")
    Traceback (most recent call last):
    ...
    funcsim.errors.DataError: q: row 0 sums to 1.1; each row must sum to 1 (within 0.001)
    """
    arr = np.asarray(p)
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array (points, classes), got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise DataError(
            f"{name}: shape {arr.shape} does not match {tuple(shape)}; "
            "both models must be evaluated on the same points and classes"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name}: empty array of shape {arr.shape}; need >= 1 point and class")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{name}: dtype {arr.dtype} is not a real number type")
    if not np.isfinite(arr).all():
        row = int(np.argmax(~np.isfinite(arr).all(axis=1)))
        raise DataError(f"{name}: row {row} holds NaN or infinite values; all must be finite")
    if (arr < 0).any():
        row = int(np.argmax((arr < 0).any(axis=1)))
        raise DataError(f"{name}: row {row} holds negative values; probabilities must be >= 0")
    sums = arr.sum(axis=1, dtype=np.float64)
    bad = np.abs(sums - 1.0) > ROW_SUM_ATOL
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{name}: row {row} sums to {sums[row]:.6g}; "
            f"each row must sum to 1 (within {ROW_SUM_ATOL:g})"
        )
    return arr


def check_labels(labels: ArrayLike, num_points: int, num_classes: int) -> np.ndarray:
    """Validate integer class labels of shape ``(num_points,)`` with values in ``[0, C)``.

    >>> check_labels([0, 2], 2, 3)
    array([0, 2])
    """
    arr = np.asarray(labels)
    if arr.shape != (num_points,):
        raise DataError(f"labels: expected shape ({num_points},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.isfinite(arr).all() and (arr == np.round(arr)).all():
            arr = arr.astype(np.int64)
        else:
            raise DataError(f"labels: expected integer class indices, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise DataError(
            f"labels: values must lie in [0, {num_classes}), "
            f"got min {arr.min()} and max {arr.max()}"
        )
    return arr


def _pair(p: ArrayLike, q: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pa = check_probabilities(p, "p")
    qa = check_probabilities(q, "q", shape=pa.shape)
    return pa, qa


def _normalised64(p: np.ndarray) -> FloatArray:
    """Rows in float64, renormalised to sum to exactly 1 (a tiny change after validation)."""
    p64 = np.asarray(p, dtype=np.float64)
    return p64 / p64.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- per point


def _disagreement_points(p: np.ndarray, q: np.ndarray) -> FloatArray:
    return (np.argmax(p, axis=1) != np.argmax(q, axis=1)).astype(np.float64)


def _kl_points(p: np.ndarray, q: np.ndarray, eps: float = KL_EPS) -> FloatArray:
    p64 = _normalised64(p)
    q64 = np.clip(np.asarray(q, dtype=np.float64), eps, None)
    q64 /= q64.sum(axis=1, keepdims=True)
    pos = p64 > 0
    # 0 * log(0 / q) = 0: only the terms with p > 0 contribute.
    log_ratio = np.log(p64, out=np.zeros_like(p64), where=pos) - np.log(q64)
    kl = np.sum(np.where(pos, p64 * log_ratio, 0.0), axis=1)
    return np.maximum(kl, 0.0)  # Gibbs: KL >= 0; clip rounding noise


def _js_points(p: np.ndarray, q: np.ndarray) -> FloatArray:
    p64, q64 = _normalised64(p), _normalised64(q)
    m = 0.5 * (p64 + q64)  # m > 0 wherever p > 0 or q > 0
    log_m = np.log2(m, out=np.zeros_like(m), where=m > 0)

    def half(x: FloatArray) -> FloatArray:
        pos = x > 0
        log_x = np.log2(x, out=np.zeros_like(x), where=pos)
        return np.sum(np.where(pos, x * (log_x - log_m), 0.0), axis=1)

    js = 0.5 * (half(p64) + half(q64))
    return np.clip(js, 0.0, 1.0)


def _l2_points(p: np.ndarray, q: np.ndarray) -> FloatArray:
    diff = np.asarray(p, dtype=np.float64) - np.asarray(q, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


_POINTWISE: dict[str, Callable[[np.ndarray, np.ndarray], FloatArray]] = {
    "disagreement": _disagreement_points,
    "kl_divergence": _kl_points,
    "js_divergence": _js_points,
    "l2_distance": _l2_points,
}

POINTWISE_METRICS: tuple[str, ...] = tuple(_POINTWISE)
"""Names accepted by :func:`pointwise_distance` (each metric is the mean of its per-point term)."""


def pointwise_distance(p: ArrayLike, q: ArrayLike, metric: str = "disagreement") -> FloatArray:
    """Per-point terms ``d_i(p_i, q_i)`` of shape ``(N,)`` whose mean is the named metric.

    ``metric`` is one of :data:`POINTWISE_METRICS`. For every name,
    ``pointwise_distance(p, q, name).mean()`` equals the metric function of that name.

    >>> p = [[0.9, 0.1], [0.2, 0.8]]
    >>> q = [[0.6, 0.4], [0.7, 0.3]]
    >>> pointwise_distance(p, q, "disagreement")
    array([0., 1.])
    """
    try:
        fn = _POINTWISE[metric]
    except KeyError:
        raise UnknownNameError(
            f"unknown metric {metric!r}; choose one of: {', '.join(POINTWISE_METRICS)}"
        ) from None
    pa, qa = _pair(p, q)
    return fn(pa, qa)


# --------------------------------------------------------------------------- metrics


def accuracy(p: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of points whose most probable class is the label.

    ``acc = (1/N) * sum_i [argmax_c p[i, c] == labels[i]]``; ``p`` has shape ``(N, C)``,
    ``labels`` shape ``(N,)``. Ties go to the lowest class index (``numpy.argmax``).

    >>> accuracy([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]], [0, 0, 1])
    0.6666666666666666
    """
    pa = check_probabilities(p, "p")
    la = check_labels(labels, pa.shape[0], pa.shape[1])
    return float(np.mean(np.argmax(pa, axis=1) == la))


def disagreement(p: ArrayLike, q: ArrayLike) -> float:
    """Fraction of points on which the two models predict different classes.

    ``dis = (1/N) * sum_i [argmax_c p[i, c] != argmax_c q[i, c]]`` for ``p, q`` of shape
    ``(N, C)``; symmetric, in ``[0, 1]``. One minus it is Stanton et al.'s top-1 agreement.

    >>> disagreement([[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.7, 0.3]])
    0.5
    """
    pa, qa = _pair(p, q)
    return float(np.mean(_disagreement_points(pa, qa)))


def kl_divergence(p: ArrayLike, q: ArrayLike, eps: float = KL_EPS) -> float:
    """Mean over points of ``KL(p_i || q_i)`` in nats.

    ``KL = (1/N) * sum_i sum_c p[i, c] * ln(p[i, c] / q[i, c])`` for ``p, q`` of shape
    ``(N, C)``. With ``p`` the teacher and ``q`` the student this is Stanton et al.'s
    predictive KL. Not symmetric; ``>= 0``.

    Epsilon policy: each row of ``p`` is renormalised to sum to 1 and terms with
    ``p[i, c] == 0`` contribute 0 (``0 * ln 0 = 0``); ``q`` is clipped from below at ``eps``
    and each row renormalised, so a class the candidate rules out costs at most
    ``p * ln(p / eps)`` instead of infinity. When every ``q >= eps`` this equals
    ``scipy.stats.entropy(p_i, q_i)`` averaged over points.

    >>> round(kl_divergence([[0.5, 0.5]], [[0.9, 0.1]]), 6)
    0.510826
    """
    if not (0.0 < eps < 1.0):
        raise DataError(f"eps: must lie in (0, 1), got {eps}")
    pa, qa = _pair(p, q)
    return float(np.mean(_kl_points(pa, qa, eps)))


def js_divergence(p: ArrayLike, q: ArrayLike) -> float:
    """Mean over points of the Jensen-Shannon divergence in bits, in ``[0, 1]``.

    ``JS_i = KL2(p_i || m_i) / 2 + KL2(q_i || m_i) / 2`` with ``m_i = (p_i + q_i) / 2`` and
    ``KL2`` the KL divergence in base 2 (``0 * log 0 = 0``; no epsilon is needed since
    ``m > 0`` wherever ``p > 0`` or ``q > 0``); the result is ``(1/N) sum_i JS_i``. Equals
    ``scipy.spatial.distance.jensenshannon(p_i, q_i, base=2) ** 2`` averaged over points.
    Symmetric; 0 iff the rows are equal; 1 iff their supports are disjoint.

    >>> js_divergence([[1.0, 0.0]], [[0.0, 1.0]])
    1.0
    """
    pa, qa = _pair(p, q)
    return float(np.mean(_js_points(pa, qa)))


def l2_distance(p: ArrayLike, q: ArrayLike) -> float:
    """Mean over points of the Euclidean distance between probability rows.

    ``l2 = (1/N) * sum_i sqrt(sum_c (p[i, c] - q[i, c])^2)``; symmetric, in ``[0, sqrt(2)]``.

    >>> l2_distance([[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]])
    0.7071067811865476
    """
    pa, qa = _pair(p, q)
    return float(np.mean(_l2_points(pa, qa)))


def relative_accuracy_deviation(acc: float, acc_base: float) -> float:
    """Relative accuracy change in percent, as in the paper's Tables 1-3.

    ``dev = 100 * (acc - acc_base) / acc_base``. A model that falls to chance reads about
    -85 on CIFAR-10 (base 0.67, chance 0.10) and -97 on CIFAR-100.

    >>> round(relative_accuracy_deviation(0.9, 0.95), 4)
    -5.2632
    """
    acc, acc_base = float(acc), float(acc_base)
    if not (np.isfinite(acc) and np.isfinite(acc_base)):
        raise DataError(f"accuracies must be finite, got acc={acc} and acc_base={acc_base}")
    if acc_base <= 0:
        raise DataError(f"acc_base: must be > 0 to divide by it, got {acc_base}")
    return 100.0 * (acc - acc_base) / acc_base


def normalized_disagreement(p: ArrayLike, q: ArrayLike, labels: ArrayLike) -> float:
    """Disagreement divided by the candidate's error rate (Fort et al. 2019).

    ``nd = disagreement(p, q) / (1 - accuracy(q, labels))`` with ``p`` the base and ``q`` the
    candidate, both ``(N, C)``, ``labels`` ``(N,)``. This is the y-axis of Fort et al.'s
    diversity-accuracy plane; the limits it can take are those of
    :func:`disagreement_bounds` divided by ``1 - a``. Returns ``nan`` when the candidate makes
    no error (the ratio is undefined).

    >>> p = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    >>> q = [[0.9, 0.1], [0.1, 0.9], [0.3, 0.7], [0.4, 0.6]]
    >>> normalized_disagreement(p, q, [0, 0, 1, 0])
    1.0
    """
    pa, qa = _pair(p, q)
    err = 1.0 - accuracy(qa, labels)
    if err == 0.0:
        return float("nan")
    return float(np.mean(_disagreement_points(pa, qa))) / err


class DisagreementBounds(NamedTuple):
    """Smallest and largest disagreement two models of given accuracies can have."""

    lower: float
    upper: float


def _check_accuracies(acc: float, acc_base: float, num_classes: int) -> None:
    for nm, v in (("acc", acc), ("acc_base", acc_base)):
        if not (0.0 <= v <= 1.0):
            raise DataError(f"{nm}: must be a fraction in [0, 1], got {v}")
    if int(num_classes) != num_classes or num_classes < 2:
        raise DataError(f"num_classes: must be an integer >= 2, got {num_classes}")


def disagreement_bounds(acc: float, acc_base: float, num_classes: int) -> DisagreementBounds:
    """Analytic limits of the disagreement of a model of accuracy ``a`` with a base of ``r``.

    Let ``A`` and ``R`` be the sets of points the candidate and the base classify correctly
    (fractions ``a`` and ``r``), ``o`` the fraction in ``A & R`` and ``C = num_classes``.

    * On ``A & R`` both predict the label, so they agree. On ``A ^ R`` exactly one is right, so
      they disagree: ``(a - o) + (r - o)`` of the points. On the ``1 - a - r + o`` points where
      both are wrong they may agree or not.
    * **Lower**: ``dis >= |A ^ R| = a + r - 2o >= a + r - 2 min(a, r) = |a - r|``. Attained by
      nesting the correct sets (``o = min(a, r)``) and, where both are wrong, predicting the
      same wrong class.
    * **Upper**: ``dis <= 1 - o`` and ``o >= max(0, a + r - 1)``, so
      ``dis <= min(1, (1 - a) + (1 - r))``, attained with the least possible overlap and, where
      both are wrong, two *different* wrong classes, which needs ``C >= 3``. With ``C = 2``
      both-wrong points always agree, so ``dis = a + r - 2o`` exactly and the upper limit is
      ``a + r - 2 max(0, a + r - 1) = min(a + r, 2 - a - r)``.

    Divide both by ``1 - a`` for the limits of :func:`normalized_disagreement`. The value
    expected of independent errors lies in between: :func:`independent_disagreement`.

    >>> disagreement_bounds(0.9, 0.95, 10)
    DisagreementBounds(lower=0.04999999999999993, upper=0.15000000000000002)
    >>> disagreement_bounds(0.7, 0.6, 2)
    DisagreementBounds(lower=0.09999999999999998, upper=0.7000000000000001)
    """
    a, r = float(acc), float(acc_base)
    _check_accuracies(a, r, num_classes)
    lower = abs(r - a)
    upper = min(1.0, (1.0 - a) + (1.0 - r)) if num_classes >= 3 else min(a + r, 2.0 - a - r)
    return DisagreementBounds(lower, upper)


def independent_disagreement(acc: float, acc_base: float, num_classes: int) -> float:
    """Disagreement expected if the candidate's errors were independent of the base's.

    Assume the two models are right or wrong independently (``P(both right) = a r``) and a
    wrong prediction picks each of the ``C - 1`` wrong classes with equal probability. They
    agree when both are right (``a r``) or both wrong on the same class
    (``(1 - a)(1 - r) / (C - 1)``), so
    ``dis = 1 - a r - (1-a)(1-r)/(C-1) = r(1-a) + a(1-r) + (1-r)(1-a)(C-2)/(C-1)``.

    >>> round(independent_disagreement(0.5, 0.5, 3), 6)
    0.625
    """
    a, r = float(acc), float(acc_base)
    _check_accuracies(a, r, num_classes)
    c = int(num_classes)
    return r * (1 - a) + a * (1 - r) + (1 - r) * (1 - a) * (c - 2) / (c - 1)


def flip_matrix(
    p_base: ArrayLike, p_other: ArrayLike, num_classes: int | None = None
) -> npt.NDArray[np.int64]:
    """Counts of points by (base predicted class, other predicted class).

    ``M[i, j] = #{n : argmax p_base[n] = i and argmax p_other[n] = j}``, shape ``(K, K)`` with
    ``K = num_classes`` (default ``C``, the number of columns; a larger value pads with zero
    rows and columns). The diagonal holds agreements; ``M.sum() == N`` and
    ``1 - trace(M) / N == disagreement(p_base, p_other)``.

    >>> flip_matrix([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], [[0.6, 0.4], [0.7, 0.3], [0.1, 0.9]])
    array([[1, 1],
           [1, 0]])
    """
    pa, qa = _pair(p_base, p_other)
    c = pa.shape[1]
    k = c if num_classes is None else int(num_classes)
    if k < c:
        raise DataError(f"num_classes: must be >= the {c} columns of the predictions, got {k}")
    codes = np.argmax(pa, axis=1).astype(np.int64) * k + np.argmax(qa, axis=1)
    return np.bincount(codes, minlength=k * k).reshape(k, k).astype(np.int64)


def compare_predictions(
    p: ArrayLike, q: ArrayLike, labels: ArrayLike | None = None
) -> dict[str, float]:
    """All pairwise metrics of a base ``p`` and a candidate ``q`` (both ``(N, C)``) at once.

    Keys, in order: ``disagreement``, ``kl_divergence`` (``KL(p || q)``), ``js_divergence``,
    ``l2_distance``; with ``labels`` also ``accuracy_base``, ``accuracy``,
    ``relative_accuracy_deviation`` (percent), ``normalized_disagreement``,
    ``disagreement_lower``, ``disagreement_upper`` and ``disagreement_independent`` (the
    limits of :func:`disagreement_bounds` and :func:`independent_disagreement`).

    >>> m = compare_predictions([[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.7, 0.3]], [0, 1])
    >>> m["disagreement"], m["accuracy_base"], m["accuracy"]
    (0.5, 1.0, 0.5)
    """
    pa, qa = _pair(p, q)
    out = {
        "disagreement": float(np.mean(_disagreement_points(pa, qa))),
        "kl_divergence": float(np.mean(_kl_points(pa, qa))),
        "js_divergence": float(np.mean(_js_points(pa, qa))),
        "l2_distance": float(np.mean(_l2_points(pa, qa))),
    }
    if labels is None:
        return out
    la = check_labels(labels, pa.shape[0], pa.shape[1])
    acc_base, acc = accuracy(pa, la), accuracy(qa, la)
    bounds = disagreement_bounds(acc, acc_base, max(2, pa.shape[1]))
    out.update(
        accuracy_base=acc_base,
        accuracy=acc,
        relative_accuracy_deviation=(
            relative_accuracy_deviation(acc, acc_base) if acc_base > 0 else float("nan")
        ),
        normalized_disagreement=(out["disagreement"] / (1.0 - acc) if acc < 1.0 else float("nan")),
        disagreement_lower=bounds.lower,
        disagreement_upper=bounds.upper,
        disagreement_independent=independent_disagreement(acc, acc_base, max(2, pa.shape[1])),
    )
    return out
