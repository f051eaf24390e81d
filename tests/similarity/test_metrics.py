"""Similarity metrics against SciPy/NumPy references, property tests and analytic limits."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

import funcsim.similarity.metrics as metrics_module
from funcsim.errors import DataError, UnknownNameError
from funcsim.similarity import (
    POINTWISE_METRICS,
    accuracy,
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

PROPERTY = settings(max_examples=50, deadline=None)


def softmax_rows(rng: np.random.Generator, n: int, c: int, scale: float = 2.0) -> np.ndarray:
    z = rng.normal(scale=scale, size=(n, c))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def pq() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p, q = softmax_rows(rng, 64, 7), softmax_rows(rng, 64, 7)
    labels = rng.integers(0, 7, size=64)
    return p, q, labels


@st.composite
def prob_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 12))
    c = draw(st.integers(2, 6))
    elems = st.floats(0.0, 1.0, allow_nan=False, width=64)
    raw_p = draw(hnp.arrays(np.float64, (n, c), elements=elems))
    raw_q = draw(hnp.arrays(np.float64, (n, c), elements=elems))
    return _rownorm(raw_p), _rownorm(raw_q)


def _rownorm(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[x.sum(axis=1) == 0, 0] = 1.0  # an all-zero row becomes one-hot
    return x / x.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------- references


def test_doctests_pass() -> None:
    assert doctest.testmod(metrics_module).failed == 0


def test_accuracy_and_disagreement_match_numpy_argmax(pq) -> None:
    p, q, labels = pq
    assert accuracy(p, labels) == pytest.approx(np.mean(p.argmax(1) == labels))
    assert disagreement(p, q) == pytest.approx(np.mean(p.argmax(1) != q.argmax(1)))


def test_kl_matches_scipy_entropy(pq) -> None:
    p, q, _ = pq
    ref = np.mean([entropy(p[i], q[i]) for i in range(len(p))])
    assert kl_divergence(p, q) == pytest.approx(ref, rel=1e-12)


def test_kl_zero_in_p_contributes_nothing_and_zero_in_q_is_floored() -> None:
    p = np.array([[0.5, 0.5, 0.0]])
    q = np.array([[0.25, 0.25, 0.5]])
    assert kl_divergence(p, q) == pytest.approx(entropy(p[0], q[0]))
    # q rules out a class p uses: finite, about p * ln(p / eps), not inf
    value = kl_divergence([[0.5, 0.5]], [[1.0, 0.0]], eps=1e-12)
    assert np.isfinite(value)
    assert value == pytest.approx(0.5 * np.log(0.5 / 1e-12) + 0.5 * np.log(0.5), rel=1e-6)


def test_js_matches_scipy_jensenshannon_squared_base2(pq) -> None:
    p, q, _ = pq
    ref = np.mean([jensenshannon(p[i], q[i], base=2) ** 2 for i in range(len(p))])
    assert js_divergence(p, q) == pytest.approx(ref, rel=1e-10)


def test_js_with_zeros_matches_scipy() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    q = np.array([[0.0, 1.0, 0.0], [0.0, 0.5, 0.5]])
    ref = np.mean([jensenshannon(p[i], q[i], base=2) ** 2 for i in range(2)])
    assert js_divergence(p, q) == pytest.approx(ref)
    assert js_divergence(p[:1], q[:1]) == pytest.approx(1.0)


def test_l2_matches_numpy_norm(pq) -> None:
    p, q, _ = pq
    assert l2_distance(p, q) == pytest.approx(np.linalg.norm(p - q, axis=1).mean())


def test_float16_and_float32_inputs_accepted(pq) -> None:
    p, q, _ = pq
    for dtype in (np.float32, np.float16):
        assert js_divergence(p.astype(dtype), q.astype(dtype)) == pytest.approx(
            js_divergence(p, q), rel=1e-2
        )


@pytest.mark.parametrize("metric", POINTWISE_METRICS)
def test_pointwise_mean_equals_metric(pq, metric: str) -> None:
    p, q, _ = pq
    fn = {
        "disagreement": disagreement,
        "kl_divergence": kl_divergence,
        "js_divergence": js_divergence,
        "l2_distance": l2_distance,
    }[metric]
    per_point = pointwise_distance(p, q, metric)
    assert per_point.shape == (len(p),)
    assert per_point.mean() == pytest.approx(fn(p, q), rel=1e-12)


def test_pointwise_unknown_metric_lists_names(pq) -> None:
    p, q, _ = pq
    with pytest.raises(UnknownNameError, match="js_divergence"):
        pointwise_distance(p, q, "cosine")


def test_relative_accuracy_deviation() -> None:
    assert relative_accuracy_deviation(0.5, 0.5) == 0.0
    assert relative_accuracy_deviation(0.1, 0.67) == pytest.approx(-85.07, abs=0.01)
    with pytest.raises(DataError, match="acc_base"):
        relative_accuracy_deviation(0.5, 0.0)


def test_flip_matrix_matches_counts(pq) -> None:
    p, q, _ = pq
    m = flip_matrix(p, q)
    assert m.shape == (7, 7) and m.dtype == np.int64
    assert m.sum() == len(p)
    assert 1 - np.trace(m) / len(p) == pytest.approx(disagreement(p, q))
    for i, j in [(0, 0), (1, 3), (6, 2)]:
        assert m[i, j] == np.sum((p.argmax(1) == i) & (q.argmax(1) == j))
    assert flip_matrix(p, q, num_classes=9)[:7, :7].tolist() == m.tolist()
    with pytest.raises(DataError, match="num_classes"):
        flip_matrix(p, q, num_classes=3)


def test_compare_predictions_keys_and_values(pq) -> None:
    p, q, labels = pq
    out = compare_predictions(p, q)
    assert list(out) == ["disagreement", "kl_divergence", "js_divergence", "l2_distance"]
    full = compare_predictions(p, q, labels)
    assert full["disagreement"] == disagreement(p, q)
    assert full["kl_divergence"] == pytest.approx(kl_divergence(p, q))
    assert full["accuracy"] == accuracy(q, labels)
    assert full["accuracy_base"] == accuracy(p, labels)
    assert full["normalized_disagreement"] == pytest.approx(normalized_disagreement(p, q, labels))
    assert full["disagreement_lower"] <= full["disagreement"] <= full["disagreement_upper"]
    assert all(isinstance(v, float) for v in full.values())


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.ones(3) / 3, "2-D"),
        (np.array([[0.5, np.nan]]), "NaN"),
        (np.array([[1.5, -0.5]]), "negative"),
        (np.array([[0.5, 0.6]]), "sum to 1"),
        (np.zeros((0, 3)), "empty"),
    ],
)
def test_check_probabilities_rejects(bad: np.ndarray, match: str) -> None:
    with pytest.raises(DataError, match=match):
        check_probabilities(bad, "p")


def test_shape_mismatch_and_bad_labels_rejected(pq) -> None:
    p, q, labels = pq
    with pytest.raises(DataError, match="does not match"):
        disagreement(p, q[:-1])
    with pytest.raises(DataError, match="labels"):
        accuracy(p, labels[:-1])
    with pytest.raises(DataError, match=r"\[0, 7\)"):
        accuracy(p, labels + 7)


def test_error_messages_are_one_line(pq) -> None:
    p, _, _ = pq
    with pytest.raises(DataError) as info:
        js_divergence(p, p[:, :3])
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------- properties


@PROPERTY
@given(prob_pairs())
def test_identity_gives_zero(pair: tuple[np.ndarray, np.ndarray]) -> None:
    p, _ = pair
    assert disagreement(p, p) == 0.0
    assert js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(p, p) == pytest.approx(0.0, abs=1e-9)
    assert l2_distance(p, p) == 0.0


@PROPERTY
@given(prob_pairs())
def test_symmetry_and_bounds(pair: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = pair
    assert disagreement(p, q) == disagreement(q, p)
    assert js_divergence(p, q) == pytest.approx(js_divergence(q, p), abs=1e-12)
    assert l2_distance(p, q) == pytest.approx(l2_distance(q, p))
    assert 0.0 <= disagreement(p, q) <= 1.0
    assert 0.0 <= js_divergence(p, q) <= 1.0
    assert 0.0 <= l2_distance(p, q) <= np.sqrt(2) + 1e-12
    assert kl_divergence(p, q) >= 0.0


@PROPERTY
@given(prob_pairs(), st.randoms(use_true_random=False))
def test_invariant_to_point_order(pair: tuple[np.ndarray, np.ndarray], rnd) -> None:
    p, q = pair
    perm = np.array(rnd.sample(range(len(p)), len(p)))
    for fn in (disagreement, js_divergence, kl_divergence, l2_distance):
        assert fn(p[perm], q[perm]) == pytest.approx(fn(p, q), rel=1e-12, abs=1e-15)


@PROPERTY
@given(prob_pairs())
def test_disagreement_within_its_bounds(pair: tuple[np.ndarray, np.ndarray]) -> None:
    p, q = pair
    c = p.shape[1]
    labels = np.arange(len(p)) % c
    low, high = disagreement_bounds(accuracy(q, labels), accuracy(p, labels), c)
    assert low - 1e-12 <= disagreement(p, q) <= high + 1e-12


# ----------------------------------------------------------------------- analytic limits


def one_hot(classes: list[int] | np.ndarray, c: int) -> np.ndarray:
    return np.eye(c)[np.asarray(classes)]


def build(correct: np.ndarray, wrong: np.ndarray, labels: np.ndarray, c: int) -> np.ndarray:
    """Predictions: the label where ``correct``, else ``(label + wrong) % c``."""
    return one_hot(np.where(correct, labels, (labels + wrong) % c), c)


@pytest.mark.parametrize(("c", "a", "r"), [(10, 0.7, 0.9), (3, 0.5, 0.3), (2, 0.6, 0.8)])
def test_lower_limit_is_attained(c: int, a: float, r: float) -> None:
    n = 100
    labels = np.arange(n) % c
    idx = np.arange(n)
    base = build(idx < round(r * n), np.ones(n, int), labels, c)  # nested correct sets,
    cand = build(idx < round(a * n), np.ones(n, int), labels, c)  # the same wrong class
    assert accuracy(cand, labels) == pytest.approx(a) and accuracy(base, labels) == pytest.approx(r)
    assert disagreement(base, cand) == pytest.approx(disagreement_bounds(a, r, c).lower)
    assert disagreement_bounds(a, r, c).lower == pytest.approx(abs(a - r))


@pytest.mark.parametrize(
    ("c", "a", "r", "expected"),
    [(10, 0.7, 0.9, 0.4), (3, 0.3, 0.4, 1.0), (2, 0.6, 0.8, 0.6), (2, 0.3, 0.4, 0.7)],
)
def test_upper_limit_is_attained(c: int, a: float, r: float, expected: float) -> None:
    n = 100
    labels = np.arange(n) % c
    idx = np.arange(n)
    base_ok = idx < round(r * n)  # base right on the first r*n points,
    cand_ok = idx >= n - round(a * n)  # candidate on the last a*n: least overlap
    base = build(base_ok, np.ones(n, int), labels, c)
    cand = build(cand_ok, np.full(n, 2 if c >= 3 else 1), labels, c)  # different wrong classes
    upper = disagreement_bounds(a, r, c).upper
    assert upper == pytest.approx(expected)
    assert disagreement(base, cand) == pytest.approx(upper)


def test_independent_errors_value_is_attained_exactly() -> None:
    c = 4
    # Base right on 1/2 of its outcomes, candidate on 1/4; wrong classes uniform. The
    # Cartesian product of the two outcome lists makes them exactly independent.
    base_out = np.array([0, 0, 0, 1, 2, 3])
    cand_out = np.array([0, 1, 2, 3])
    b, k = np.meshgrid(base_out, cand_out, indexing="ij")
    labels = np.zeros(b.size, dtype=int)
    base, cand = one_hot(b.ravel(), c), one_hot(k.ravel(), c)
    a, r = accuracy(cand, labels), accuracy(base, labels)
    assert (a, r) == (0.25, 0.5)
    expected = independent_disagreement(a, r, c)
    assert disagreement(base, cand) == pytest.approx(expected)
    assert expected == pytest.approx(r * (1 - a) + a * (1 - r) + (1 - r) * (1 - a) * 2 / 3)
    low, high = disagreement_bounds(a, r, c)
    assert low <= expected <= high


def test_normalized_disagreement_and_perfect_candidate() -> None:
    labels = np.array([0, 1, 0, 1])
    base = one_hot([0, 1, 0, 0], 2)
    cand = one_hot([0, 0, 0, 0], 2)  # accuracy 0.5, disagrees on 1 of 4 points
    assert normalized_disagreement(base, cand, labels) == pytest.approx(0.25 / 0.5)
    assert np.isnan(normalized_disagreement(base, one_hot(labels, 2), labels))


def test_bounds_validate_inputs() -> None:
    with pytest.raises(DataError, match="acc"):
        disagreement_bounds(1.2, 0.5, 10)
    with pytest.raises(DataError, match="num_classes"):
        disagreement_bounds(0.5, 0.5, 1)
