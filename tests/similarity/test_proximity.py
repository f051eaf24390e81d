"""Proximity to the base relative to independent models: values, interval, verdict."""

from __future__ import annotations

import dataclasses
import doctest
import importlib

import numpy as np
import pytest

from funcsim.errors import DataError, UnknownNameError
from funcsim.similarity import (
    FUNCTION_PRESERVING,
    IN_BETWEEN,
    INDEPENDENT_LIKE,
    POINTWISE_METRICS,
    PRESERVING_MAX,
    ProximityResult,
    classify,
    disagreement,
    kl_divergence,
    proximity,
    verdict,
)


def softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def models() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    n, c = 400, 5
    base_logits = rng.normal(scale=3.0, size=(n, c))
    return {
        "base": softmax_rows(base_logits),
        "close": softmax_rows(base_logits + rng.normal(scale=0.3, size=(n, c))),
        "ind1": softmax_rows(rng.normal(scale=3.0, size=(n, c))),
        "ind2": softmax_rows(rng.normal(scale=3.0, size=(n, c))),
    }


def test_doctests_pass() -> None:
    # ``funcsim.similarity.proximity`` the attribute is the function; fetch the module itself.
    module = importlib.import_module("funcsim.similarity.proximity")
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize("metric", POINTWISE_METRICS)
def test_candidate_equal_to_base_is_zero(models, metric: str) -> None:
    r = proximity(models["base"], models["base"], [models["ind1"]], metric=metric, n_boot=200)
    assert r.value == pytest.approx(0.0, abs=1e-12)
    assert r.low == pytest.approx(0.0, abs=1e-12) and r.high == pytest.approx(0.0, abs=1e-12)
    assert r.verdict == FUNCTION_PRESERVING


@pytest.mark.parametrize("metric", POINTWISE_METRICS)
def test_candidate_equal_to_the_only_independent_is_one(models, metric: str) -> None:
    r = proximity(models["ind1"], models["base"], [models["ind1"]], metric=metric, n_boot=200)
    assert r.value == pytest.approx(1.0)
    assert r.low == pytest.approx(1.0) and r.high == pytest.approx(1.0)
    assert r.verdict == INDEPENDENT_LIKE


def test_value_is_ratio_of_metric_to_mean_independent_distance(models) -> None:
    b, c, i1, i2 = models["base"], models["close"], models["ind1"], models["ind2"]
    r = proximity(c, b, [i1, i2], metric="kl_divergence", n_boot=0)
    expected = kl_divergence(b, c) / np.mean([kl_divergence(b, i1), kl_divergence(b, i2)])
    assert r.value == pytest.approx(expected, rel=1e-12)
    assert r.distance == pytest.approx(kl_divergence(b, c))
    assert r.n_independents == 2 and r.n_boot == 0 and r.low == r.high == r.value


def test_interval_contains_value_and_is_ordered(models) -> None:
    b, c = models["base"], models["close"]
    for metric in POINTWISE_METRICS:
        r = proximity(c, b, [models["ind1"], models["ind2"]], metric=metric, n_boot=500)
        assert r.low <= r.value <= r.high
        assert 0.0 <= r.low < r.high
        assert r.value < 1.0  # the perturbed base is closer than an independent model


def test_independents_as_one_stacked_array(models) -> None:
    b, c = models["base"], models["close"]
    stacked = np.stack([models["ind1"], models["ind2"]])
    r1 = proximity(c, b, stacked, n_boot=100)
    r2 = proximity(c, b, [models["ind1"], models["ind2"]], n_boot=100)
    assert r1 == r2
    assert proximity(c, b, models["ind1"], n_boot=0).n_independents == 1


def test_seeded_determinism_and_seed_sensitivity(models) -> None:
    args = (models["close"], models["base"], [models["ind1"], models["ind2"]])
    r1 = proximity(*args, n_boot=300, random_state=7)
    r2 = proximity(*args, n_boot=300, random_state=7)
    r3 = proximity(*args, n_boot=300, random_state=8)
    assert r1 == r2
    assert (r1.low, r1.high) != (r3.low, r3.high)
    assert r1.value == r3.value


def test_wider_confidence_gives_wider_interval(models) -> None:
    args = (models["close"], models["base"], [models["ind1"]])
    r90 = proximity(*args, confidence=0.8, n_boot=400)
    r99 = proximity(*args, confidence=0.99, n_boot=400)
    assert r99.low <= r90.low and r90.high <= r99.high


def test_bootstrap_resamples_points_jointly() -> None:
    """Numerator and denominator use the same indices: perfectly paired terms give ratio 2."""
    rng = np.random.default_rng(1)
    n, c = 50, 3
    base = np.eye(c)[rng.integers(0, c, n)]
    ind = np.eye(c)[(base.argmax(1) + 1) % c]  # disagrees everywhere
    cand = base.copy()
    cand[: n // 2] = ind[: n // 2]  # disagrees on half of the points
    r = proximity(cand, base, [ind], n_boot=300)
    assert r.value == pytest.approx(0.5)
    assert r.low < 0.5 < r.high  # resampled numerator varies, denominator stays N
    assert disagreement(base, cand) == 0.5


def test_degenerate_yardstick_raises(models) -> None:
    with pytest.raises(DataError, match="no yardstick"):
        proximity(models["close"], models["base"], [models["base"]])


def test_bad_arguments_raise(models) -> None:
    b, c, i = models["base"], models["close"], [models["ind1"]]
    with pytest.raises(UnknownNameError, match="disagreement"):
        proximity(c, b, i, metric="cosine")
    with pytest.raises(DataError, match="confidence"):
        proximity(c, b, i, confidence=1.5)
    with pytest.raises(DataError, match="independent"):
        proximity(c, b, [])
    with pytest.raises(DataError, match="does not match"):
        proximity(c, b, [models["ind1"][:-1]])


def test_verdict_rule() -> None:
    assert classify(0.0, PRESERVING_MAX - 1e-9) == FUNCTION_PRESERVING
    assert classify(0.2, PRESERVING_MAX) == IN_BETWEEN
    assert classify(0.6, 0.95) == IN_BETWEEN
    assert classify(0.7, 1.05) == INDEPENDENT_LIKE  # contains 1
    assert classify(0.85, 0.95) == INDEPENDENT_LIKE  # above 0.8
    assert classify(1.2, 1.5) == INDEPENDENT_LIKE
    assert classify(0.3, np.inf) == INDEPENDENT_LIKE


def test_result_is_frozen_and_verdict_matches(models) -> None:
    r = proximity(models["close"], models["base"], [models["ind1"]], n_boot=100)
    assert isinstance(r, ProximityResult)
    assert verdict(r) == r.verdict
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 0.0  # type: ignore[misc]
