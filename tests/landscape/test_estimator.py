"""FunctionalLandscape: the Gram route against PCA / cdist / t-SNE on the raw vectors."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import procrustes
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from threadpoolctl import threadpool_limits

from funcsim._system import available_cores
from funcsim.errors import ConfigError, DataError
from funcsim.landscape import FunctionalLandscape, default_perplexity, estimator
from funcsim.landscape._tsne import exact_tsne

K, N, C = 12, 25, 4


def make_sets(k: int = K, n: int = N, c: int = C, seed: int = 0) -> np.ndarray:
    """Softmax outputs of k 'checkpoints': two clusters of perturbations of two base models."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(2, n, c))
    z = centres[np.arange(k) % 2] + rng.normal(scale=0.8, size=(k, n, c))
    e = np.exp(z - z.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


@pytest.fixture(scope="module")
def sets() -> np.ndarray:
    return make_sets()


@pytest.fixture(scope="module")
def fitted_pca(sets: np.ndarray) -> FunctionalLandscape:
    return FunctionalLandscape("pca", chunk_points=4).fit(sets)


def test_doctests_pass() -> None:
    module = importlib.import_module("funcsim.landscape.estimator")
    assert doctest.testmod(module).failed == 0


def test_pca_coordinates_match_sklearn_pca_on_raw_vectors(sets, fitted_pca) -> None:
    raw = sets.reshape(K, -1)
    ours = fitted_pca.pca_coordinates_
    assert ours.shape == (K, K - 1)
    pca = PCA(n_components=K - 1, svd_solver="full").fit(raw)
    ref = pca.transform(raw)
    signs = np.sign(np.sum(ours * ref, axis=0))  # up to sign per component ...
    np.testing.assert_allclose(ours * signs, ref, atol=1e-6)
    np.testing.assert_allclose(ours[:, :2], ref[:, :2], atol=1e-6)  # ... and signs agree too
    np.testing.assert_allclose(fitted_pca.explained_variance_, pca.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(
        fitted_pca.explained_variance_ratio_, pca.explained_variance_ratio_, rtol=1e-8
    )


def test_distances_equal_cdist_on_raw_vectors(sets, fitted_pca) -> None:
    raw = sets.reshape(K, -1)
    np.testing.assert_allclose(fitted_pca.distances_, cdist(raw, raw), atol=1e-10)
    assert np.all(np.diag(fitted_pca.distances_) == 0.0)


def test_pca_embedding_is_first_coordinates(fitted_pca) -> None:
    assert fitted_pca.embedding_.shape == (K, 2)
    np.testing.assert_array_equal(fitted_pca.embedding_, fitted_pca.pca_coordinates_[:, :2])
    assert fitted_pca.perplexity_ is None and fitted_pca.kl_divergence_ is None
    assert (fitted_pca.n_checkpoints_, fitted_pca.n_points_, fitted_pca.n_classes_) == (K, N, C)


def test_pca_components_caps_stored_coordinates(sets) -> None:
    fl = FunctionalLandscape("pca", pca_components=3).fit(sets)
    assert fl.pca_coordinates_.shape == (K, 3)


@pytest.mark.parametrize("chunk_points", [1, 7, None])
def test_chunking_does_not_change_results(sets, fitted_pca, chunk_points) -> None:
    fl = FunctionalLandscape("pca", chunk_points=chunk_points).fit(sets)
    np.testing.assert_allclose(fl.pca_coordinates_, fitted_pca.pca_coordinates_, atol=1e-10)
    np.testing.assert_allclose(fl.distances_, fitted_pca.distances_, atol=1e-12)


def test_barnes_hut_tsne_equals_sklearn_tsne_on_raw_vectors(sets) -> None:
    fl = FunctionalLandscape("tsne", random_state=42, tsne_method="barnes_hut").fit(sets)
    assert fl.embedding_.shape == (K, 2)
    assert fl.perplexity_ == default_perplexity(K) and fl.tsne_method_ == "barnes_hut"
    with threadpool_limits(limits=1, user_api="openmp"):
        ref = TSNE(perplexity=fl.perplexity_, random_state=42).fit_transform(sets.reshape(K, -1))
    np.testing.assert_allclose(fl.embedding_, ref, atol=1e-4)
    assert fl.kl_divergence_ is not None and fl.n_iter_ is not None


def test_exact_tsne_tracks_sklearn_exact_tsne_on_raw_vectors() -> None:
    # 60 checkpoints: with 12, a learning rate of 50 throws the points 1e6-fold apart in ten
    # steps and float32 round-off alone picks one of several optima (tests/landscape/test_tsne)
    sets = make_sets(k=60)
    fl = FunctionalLandscape("tsne", random_state=42).fit(sets)
    assert fl.tsne_method_ == "exact" and fl.embedding_.dtype == np.float32
    first = fl.pca_coordinates_[:, :2].astype(np.float32)
    init = first / np.std(first[:, 0]) * np.float32(1e-4)  # scikit-learn's init="pca"
    ref = TSNE(perplexity=fl.perplexity_, method="exact", init=init, random_state=42)
    expected = ref.fit_transform(sets.reshape(60, -1))
    assert procrustes(fl.embedding_, expected)[2] < 0.03
    assert fl.kl_divergence_ is not None
    assert fl.kl_divergence_ < ref.kl_divergence_ * 1.05  # as good an optimum, within 5 %
    assert fl.n_iter_ == ref.n_iter_
    assert trustworthiness(fl.distances_, fl.embedding_, n_neighbors=5, metric="precomputed") > (
        trustworthiness(fl.distances_, expected, n_neighbors=5, metric="precomputed") - 0.01
    )


def test_exact_tsne_overlapped_with_the_sign_pass_equals_it_run_after(sets) -> None:
    fl = FunctionalLandscape("tsne", perplexity=4, tsne_method="exact").fit(sets)
    first = fl.pca_coordinates_[:, :2].astype(np.float32)
    init = first / np.std(first[:, 0]) * np.float32(1e-4)
    embedding, kl, n_iter = exact_tsne(fl.distances_, init, 4.0)
    np.testing.assert_array_equal(fl.embedding_, embedding)
    assert (fl.kl_divergence_, fl.n_iter_) == (kl, n_iter)


def test_auto_tsne_is_exact_up_to_the_threshold_then_barnes_hut(sets, monkeypatch) -> None:
    assert FunctionalLandscape(perplexity=4).fit(sets).tsne_method_ == "exact"
    monkeypatch.setattr(estimator, "EXACT_TSNE_MAX", K - 1)
    fl = FunctionalLandscape(perplexity=4).fit(sets)
    assert fl.tsne_method_ == "barnes_hut"
    bh = FunctionalLandscape(perplexity=4, tsne_method="barnes_hut").fit(sets)
    np.testing.assert_array_equal(fl.embedding_, bh.embedding_)
    assert FunctionalLandscape("pca").fit(sets).tsne_method_ is None


def test_exact_tsne_embeds_in_more_than_three_dimensions(sets) -> None:
    fl = FunctionalLandscape(perplexity=4, tsne_method="exact", n_components=4).fit(sets)
    assert fl.embedding_.shape == (K, 4) and np.isfinite(fl.embedding_).all()


def test_tsne_is_deterministic_given_random_state(sets) -> None:
    a = FunctionalLandscape(random_state=3, perplexity=4).fit_transform(sets)
    b = FunctionalLandscape(random_state=3, perplexity=4).fit_transform(sets)
    np.testing.assert_array_equal(a, b)


def test_input_forms_list_stack_memmap_and_low_precision(sets, fitted_pca, tmp_path: Path) -> None:
    as_list = FunctionalLandscape("pca").fit(list(sets))
    np.testing.assert_allclose(as_list.distances_, fitted_pca.distances_, atol=1e-12)

    # float32/float16 inputs are multiplied in float32: distances to 1e-6 relative
    path = tmp_path / "sets.npy"
    np.save(path, sets.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    fl32 = FunctionalLandscape("pca", chunk_points=5).fit(mm)
    raw32 = np.asarray(mm, dtype=np.float64).reshape(K, -1)
    np.testing.assert_allclose(fl32.distances_, cdist(raw32, raw32), rtol=1e-6)

    half = sets.astype(np.float16)
    fl16 = FunctionalLandscape("pca").fit([h for h in half])
    raw16 = half.astype(np.float64).reshape(K, -1)
    np.testing.assert_allclose(fl16.distances_, cdist(raw16, raw16), rtol=1e-6)


def near_duplicates(k: int = 40, n: int = 300, c: int = 10) -> np.ndarray:
    """float32 sets with checkpoints that nearly coincide with the first one (relative
    perturbations 1e-1 .. 1e-6, like a model and its quantized copies) and, last, an exact copy."""
    sets = make_sets(k, n, c, seed=3).astype(np.float32)
    rng = np.random.default_rng(4)
    for j, eps in enumerate((1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 0.0)):
        sets[k - 7 + j] = sets[0] * (1 + eps * rng.normal(size=(n, c))).astype(np.float32)
    return sets


def test_float32_distances_within_5e6_relative_near_duplicates_included() -> None:
    sets = near_duplicates()
    raw = sets.astype(np.float64).reshape(len(sets), -1)
    exact = cdist(raw, raw)
    fl = FunctionalLandscape("pca", chunk_points=37).fit(sets)  # many float32 chunks
    off = ~np.eye(len(sets), dtype=bool) & (exact > 0)
    rel = np.abs(fl.distances_ - exact)[off] / exact[off]
    assert rel.max() < 5e-6, rel.max()  # measured 1.2e-6; bench data 2.7e-6
    # the exact copy: float32 products alone put it ~1e-4 of the largest distance away
    assert fl.distances_[0, -1] < 1e-8 * exact.max()
    # without the float64 refinement of close pairs the near-duplicates would be far off
    gram = estimator._centred_gram(estimator._Checkpoints(sets), 37)
    crude = estimator._distances_from_gram(gram)
    assert (np.abs(crude - exact)[off] / exact[off]).max() > 1e-3


def test_pca_signs_follow_sklearn_loadings_then_scores() -> None:
    sets = make_sets(20, 60, 5, seed=2).astype(np.float32)
    raw = sets.astype(np.float64).reshape(len(sets), -1)
    pca = PCA(n_components=5, svd_solver="full").fit(raw)
    ref = pca.transform(raw)
    for n_components in (1, 2, 3):
        fl = FunctionalLandscape("pca", pca_components=5, n_components=n_components).fit(sets)
        ours = fl.pca_coordinates_
        # the first n_components: scikit-learn's signs (largest loading positive) ...
        np.testing.assert_allclose(ours[:, :n_components], ref[:, :n_components], atol=5e-5)
        # ... the rest: equal up to sign, the largest score of each positive
        later = ours[:, n_components:]
        np.testing.assert_allclose(np.abs(later), np.abs(ref[:, n_components:]), atol=1e-4)
        largest = later[np.argmax(np.abs(later), axis=0), np.arange(later.shape[1])]
        assert np.all(largest > 0)
    # the data's loadings decide, not the scores: on this data the largest score of each of
    # the first two components is negative, so the scores' rule would flip both
    scores_rule = np.sign(ref[np.argmax(np.abs(ref), axis=0), np.arange(5)])
    assert np.all(scores_rule[:2] < 0), "test data no longer tells the two conventions apart"
    assert FunctionalLandscape("pca").fit(sets).pca_coordinates_.shape[1] == 19


def test_pca_signs_ignore_a_common_offset_of_the_data() -> None:
    # the sign pass multiplies raw columns and removes the mean's share: adding a constant to
    # every checkpoint (which moves no distance and no centred loading) changes no sign
    sets = make_sets(16, 40, 5, seed=11)
    shifted = sets + 10.0
    a = FunctionalLandscape("pca", n_components=3, pca_components=3).fit(sets)
    b = FunctionalLandscape("pca", n_components=3, pca_components=3).fit(shifted)
    np.testing.assert_allclose(b.pca_coordinates_, a.pca_coordinates_, atol=1e-8)


def test_float32_overflowing_squares_fall_back_to_float64() -> None:
    sets = make_sets(6, 10, 3).astype(np.float32) * np.float32(1e30)
    raw = sets.astype(np.float64).reshape(6, -1)
    fl = FunctionalLandscape("pca").fit(sets)
    np.testing.assert_allclose(fl.distances_, cdist(raw, raw), rtol=1e-6)


def test_two_checkpoints_pad_pca_embedding() -> None:
    sets = make_sets(k=2)
    fl = FunctionalLandscape("pca").fit(sets)
    assert fl.embedding_.shape == (2, 2)
    assert np.all(fl.embedding_[:, 1] == 0.0)
    assert abs(fl.embedding_[0, 0] - fl.embedding_[1, 0]) == pytest.approx(fl.distances_[0, 1])


def test_identical_checkpoints_embed_without_error() -> None:
    same = np.repeat(make_sets(k=1), 4, axis=0)
    fl = FunctionalLandscape("pca").fit(same)
    assert np.all(fl.distances_ == 0.0) and fl.pca_coordinates_.shape == (4, 0)
    for method in ("exact", "barnes_hut"):
        fl = FunctionalLandscape(perplexity=2, tsne_method=method).fit(same)
        assert fl.embedding_.shape == (4, 2) and np.isfinite(fl.embedding_).all()


def test_default_perplexity_adapts_and_stays_below_k() -> None:
    for k in (2, 3, 5, 10, 31, 100, 400, 5000):
        p = default_perplexity(k)
        assert 0 < p < k and p <= 30
    assert default_perplexity(400) == 30.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "umap"}, "method"),
        ({"perplexity": K}, "perplexity"),
        ({"n_components": 4}, "n_components"),
        ({"tsne_method": "fast"}, "tsne_method"),
        ({"pca_components": 0}, "pca_components"),
        ({"chunk_points": 0}, "chunk_points"),
    ],
)
def test_bad_parameters_raise_config_error(sets, kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        FunctionalLandscape(**kwargs).fit(sets)


def test_bad_data_raises_data_error(sets) -> None:
    with pytest.raises(DataError, match="at least 2"):
        FunctionalLandscape().fit(sets[:1])
    with pytest.raises(DataError, match="differs"):
        FunctionalLandscape().fit([sets[0], sets[1][:-1]])
    bad = sets.copy()
    bad[3, 5, 1] = np.nan
    with pytest.raises(DataError, match=r"prediction_sets\[3\]"):
        FunctionalLandscape("pca").fit(bad)
    with pytest.raises(DataError, match="sequence"):
        FunctionalLandscape().fit(sets[0])


def test_sklearn_style_parameters(sets) -> None:
    est = FunctionalLandscape("pca", random_state=1)
    assert not hasattr(est, "embedding_")  # __init__ only stores parameters
    assert est.get_params()["random_state"] == 1
    copy = clone(est).set_params(pca_components=2)
    assert copy.get_params()["pca_components"] == 2 and est.pca_components == 50
    assert copy.fit(sets) is copy
    with pytest.raises(ConfigError, match="unknown parameter"):
        est.set_params(alpha=1)
    assert "FunctionalLandscape(method='pca'" in repr(est)


@pytest.mark.parametrize("seed", range(5))
def test_connected_groups_equal_scipy_connected_components(seed: int) -> None:
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    k = 60
    adjacent = rng.random((k, k)) < 0.02 * (seed + 1)
    adjacent = adjacent | adjacent.T
    np.fill_diagonal(adjacent, False)
    _, labels = connected_components(adjacent, directed=False)
    expected = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    expected = sorted((g for g in expected if len(g) > 1), key=lambda g: g[0])
    ours = estimator._connected_groups(adjacent)
    assert [g.tolist() for g in ours] == [g.tolist() for g in expected]


def test_gram_pass_is_the_same_bit_for_bit_on_any_number_of_threads() -> None:
    # each chunk is multiplied by a one-thread syrk and the products are added in chunk order,
    # so how many chunks run at once must not change a bit (t-SNE would amplify any change)
    sets = make_sets(30, 203, 7, seed=5).astype(np.float32)  # 203 = 5 x 37 + 18: a short last chunk
    stacked = estimator._Checkpoints(sets)
    grams = [estimator._centred_gram(stacked, 37, threads=t) for t in (1, 2, 3, 8)]
    listed = estimator._centred_gram(estimator._Checkpoints(list(sets)), 37, threads=2)
    for gram in [*grams[1:], listed]:
        assert np.array_equal(gram, grams[0])
    raw = sets.astype(np.float64).reshape(len(sets), -1)
    centred = raw - raw.mean(axis=0)
    np.testing.assert_allclose(grams[0], centred @ centred.T, rtol=1e-5, atol=1e-5)


def test_gram_pass_on_threads_reports_bad_data_and_falls_back_on_overflow() -> None:
    sets = make_sets(8, 60, 3, seed=6).astype(np.float32)
    bad = sets.copy()
    bad[5, 47, 2] = np.inf  # in the sixth chunk of 8 points
    with pytest.raises(DataError, match=r"prediction_sets\[5\].*points 40\.\.47"):
        estimator._centred_gram(estimator._Checkpoints(bad), 8, threads=3)
    huge = sets * np.float32(1e30)
    raw = huge.astype(np.float64).reshape(8, -1)
    centred = raw - raw.mean(axis=0)
    for threads in (1, 3):
        gram = estimator._centred_gram(estimator._Checkpoints(huge), 8, threads=threads)
        np.testing.assert_allclose(gram, centred @ centred.T, rtol=1e-6)


def test_gram_pass_threads_are_capped_by_cores_chunks_and_memory() -> None:
    f32 = np.dtype(np.float32)
    assert estimator._gram_threads(400, f32, 97, None) == min(
        available_cores(), estimator.GRAM_THREADS_MAX
    )
    assert estimator._gram_threads(400, f32, 97, 3) == 3
    assert estimator._gram_threads(400, f32, 2, 8) == 2  # no more threads than chunks
    assert estimator._gram_threads(400, f32, 97, 64) == estimator.GRAM_THREADS_MAX
    # 5,000 checkpoints: 100 MB per float32 product, so 4 threads keep 5 under 512 MiB
    assert estimator._gram_threads(5000, f32, 97, 16) == 4
    assert estimator._gram_threads(5000, np.dtype(np.float64), 97, 16) == 1
    assert estimator._gram_threads(20_000, f32, 97, 16) == 1  # never fewer than one
