"""Functional similarity of two models from their predictions on the same test points.

Pure NumPy functions over probability arrays of shape ``(N, C)`` (:mod:`.metrics`) and the
proximity of a candidate to the base relative to independently trained models, with a
bootstrap confidence interval and a verdict (:mod:`.proximity`).
"""

from funcsim.similarity.metrics import (
    KL_EPS,
    POINTWISE_METRICS,
    ROW_SUM_ATOL,
    DisagreementBounds,
    accuracy,
    check_labels,
    check_probabilities,
    compare_predictions,
    disagreement,
    disagreement_bounds,
    flip_matrix,
    independent_disagreement,
    js_divergence,
    kl_divergence,
    l2_distance,
    normalized_disagreement,
    pointwise_distance,
    relative_accuracy_deviation,
)
from funcsim.similarity.proximity import (
    FUNCTION_PRESERVING,
    IN_BETWEEN,
    INDEPENDENT_LIKE,
    INDEPENDENT_MIN,
    PRESERVING_MAX,
    VERDICTS,
    ProximityResult,
    classify,
    proximity,
    verdict,
)

__all__ = [
    "FUNCTION_PRESERVING",
    "INDEPENDENT_LIKE",
    "INDEPENDENT_MIN",
    "IN_BETWEEN",
    "KL_EPS",
    "POINTWISE_METRICS",
    "PRESERVING_MAX",
    "ROW_SUM_ATOL",
    "VERDICTS",
    "DisagreementBounds",
    "ProximityResult",
    "accuracy",
    "check_labels",
    "check_probabilities",
    "classify",
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
    "proximity",
    "relative_accuracy_deviation",
    "verdict",
]
