"""Proximity to the base, measured against the independent-model yardstick, with a bootstrap CI.

For a candidate ``c`` (a compressed or distilled model), the base ``b`` and independently
trained models ``i_1 .. i_k`` of the same architecture, all evaluated on the same ``N`` test
points, and a distance ``d`` that is a mean over points (:data:`~.metrics.POINTWISE_METRICS`)::

    proximity = d(b, c) / mean_j d(b, i_j)

The base is always the first argument of ``d`` (it matters only for the KL divergence, which
becomes ``KL(base || candidate)``, Stanton et al.'s teacher-student predictive KL). Because
every ``d`` is a mean of per-point terms, the ratio equals ``sum_n d_n(b, c) / sum_n e_n`` with
``e_n = mean_j d_n(b, i_j)``. ``0`` means the candidate computes the base's function on these
points, ``1`` that it is as far from the base as an independently trained model is.

Confidence interval: a nonparametric percentile bootstrap over test points. Each replicate
draws ``N`` point indices with replacement and uses the *same* indices in numerator and
denominator (the two are correlated through the points), so the per-point terms are computed
once and only re-summed. A replicate whose denominator is 0 counts as ``+inf`` (conservative:
it can only widen the interval upwards).

Verdict rule (``low``, ``high`` = the interval):

* ``"function-preserving"`` if ``high < PRESERVING_MAX`` (0.5): with the stated confidence the
  candidate is less than half as far from the base as an independent model is.
* ``"independent-like"`` if ``low <= 1 <= high`` (it cannot be told apart from an independent
  model) or ``low > INDEPENDENT_MIN`` (0.8: at least 80 % as far as an independent model).
* ``"in between"`` otherwise: clearly closer than an independent model, not clearly close.

The candidate should not be one of the independents, and at least one independent must differ
from the base under the chosen metric (otherwise the yardstick is 0 and a
:class:`funcsim.errors.DataError` is raised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from funcsim.errors import DataError, UnknownNameError
from funcsim.similarity.metrics import POINTWISE_METRICS, check_probabilities, pointwise_distance

PRESERVING_MAX = 0.5
"""Upper CI bound below which a candidate is ``"function-preserving"``."""

INDEPENDENT_MIN = 0.8
"""Lower CI bound above which a candidate is ``"independent-like"`` (as is a CI containing 1)."""

FUNCTION_PRESERVING = "function-preserving"
INDEPENDENT_LIKE = "independent-like"
IN_BETWEEN = "in between"
VERDICTS: tuple[str, ...] = (FUNCTION_PRESERVING, IN_BETWEEN, INDEPENDENT_LIKE)

_BOOT_CHUNK_ELEMENTS = 2_000_000
"""Bootstrap indices drawn per block (``replicates * N``), bounding memory to ~16 MB."""

__all__ = [
    "FUNCTION_PRESERVING",
    "INDEPENDENT_LIKE",
    "INDEPENDENT_MIN",
    "IN_BETWEEN",
    "PRESERVING_MAX",
    "VERDICTS",
    "ProximityResult",
    "classify",
    "proximity",
    "verdict",
]


@dataclass(frozen=True)
class ProximityResult:
    """Proximity of a candidate to the base relative to independent models.

    ``value`` is the point estimate, ``[low, high]`` the bootstrap percentile interval at
    ``confidence``, ``verdict`` the rule of the module docstring applied to the interval,
    ``distance`` = ``d(base, candidate)`` and ``yardstick`` = ``mean_j d(base, independent_j)``
    (so ``value == distance / yardstick``).
    """

    value: float
    low: float
    high: float
    metric: str
    verdict: str
    distance: float = float("nan")
    yardstick: float = float("nan")
    confidence: float = 0.95
    n_boot: int = 0
    n_independents: int = 0


def classify(low: float, high: float) -> str:
    """The verdict for a proximity interval ``[low, high]`` (rule in the module docstring).

    >>> classify(0.01, 0.05), classify(0.9, 1.1), classify(0.4, 0.7)
    ('function-preserving', 'independent-like', 'in between')
    """
    if high < PRESERVING_MAX:
        return FUNCTION_PRESERVING
    if low <= 1.0 <= high or low > INDEPENDENT_MIN:
        return INDEPENDENT_LIKE
    return IN_BETWEEN


def verdict(result: ProximityResult) -> str:
    """The verdict for ``result``'s interval: see :func:`classify`."""
    return classify(result.low, result.high)


def _as_independents(independents: object, shape: tuple[int, ...]) -> list[np.ndarray]:
    if isinstance(independents, np.ndarray):
        arrays = [independents] if independents.ndim == 2 else list(independents)
    elif isinstance(independents, Sequence):
        arrays = list(independents)
    else:
        raise DataError(
            "independents: expected a sequence of (N, C) arrays or one array of shape (k, N, C)"
        )
    if not arrays:
        raise DataError("independents: need at least one independent model as the yardstick")
    return [check_probabilities(a, f"independents[{j}]", shape=shape) for j, a in enumerate(arrays)]


def _bootstrap_ratios(
    num: npt.NDArray[np.float64],
    den: npt.NDArray[np.float64],
    n_boot: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    n = num.shape[0]
    out = np.empty(n_boot, dtype=np.float64)
    block = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        s_num = num[idx].sum(axis=1)
        s_den = den[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[start:stop] = np.where(s_den > 0, s_num / np.where(s_den > 0, s_den, 1.0), np.inf)
    return out


def proximity(
    candidate: npt.ArrayLike,
    base: npt.ArrayLike,
    independents: Sequence[npt.ArrayLike] | np.ndarray,
    *,
    metric: str = "disagreement",
    n_boot: int = 1000,
    confidence: float = 0.95,
    random_state: int | np.random.Generator | None = 0,
) -> ProximityResult:
    """Distance of ``candidate`` to ``base`` in units of the base-to-independent distance.

    Parameters
    ----------
    candidate, base : array of shape (N, C)
        Predicted probabilities of the two models on the same test points.
    independents : sequence of arrays of shape (N, C), or one array of shape (k, N, C)
        Independently trained models (the yardstick); a single (N, C) array is one model.
    metric : {"disagreement", "kl_divergence", "js_divergence", "l2_distance"}
        The per-point distance; KL is taken as ``KL(base || other)``.
    n_boot : int
        Bootstrap replicates over test points (0 skips the interval: ``low = high = value``).
    confidence : float in (0, 1)
        Coverage of the percentile interval.
    random_state : int, Generator or None
        Seeds the bootstrap; equal seeds give equal intervals.

    Returns
    -------
    ProximityResult
        ``value = d(b, c) / mean_j d(b, i_j)``, its interval and verdict.

    >>> b = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]]
    >>> c = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 2]]       # 1 of 8 points differs
    >>> i = np.eye(3)[[1, 1, 0, 0, 2, 2, 0, 0]]       # 4 of 8 points differ
    >>> proximity(c, b, [i], n_boot=0).value
    0.25
    """
    if metric not in POINTWISE_METRICS:
        raise UnknownNameError(
            f"unknown metric {metric!r}; choose one of: {', '.join(POINTWISE_METRICS)}"
        )
    if not (0.0 < confidence < 1.0):
        raise DataError(f"confidence: must lie in (0, 1), got {confidence}")
    if int(n_boot) != n_boot or n_boot < 0:
        raise DataError(f"n_boot: must be an integer >= 0, got {n_boot}")
    b = check_probabilities(base, "base")
    c = check_probabilities(candidate, "candidate", shape=b.shape)
    inds = _as_independents(independents, b.shape)

    num = pointwise_distance(b, c, metric)
    den = np.mean([pointwise_distance(b, i, metric) for i in inds], axis=0)
    if not den.sum() > 0:
        raise DataError(
            f"independents: all are at {metric} 0 from the base, so there is no yardstick; "
            "use independently trained models that differ from the base or another metric"
        )
    value = float(num.sum() / den.sum())

    if n_boot == 0:
        low = high = value
    else:
        rng = np.random.default_rng(random_state)
        ratios = _bootstrap_ratios(num, den, int(n_boot), rng)
        alpha = 1.0 - confidence
        bounds = np.quantile(ratios, [alpha / 2, 1.0 - alpha / 2])
        bounds = np.where(np.isnan(bounds), np.inf, bounds)  # inf - inf between two inf replicates
        low, high = float(bounds[0]), float(bounds[1])
    return ProximityResult(
        value=value,
        low=low,
        high=high,
        metric=metric,
        verdict=classify(low, high),
        distance=float(num.mean()),
        yardstick=float(den.mean()),
        confidence=float(confidence),
        n_boot=int(n_boot),
        n_independents=len(inds),
    )
