"""The functional landscape: many models' test-set predictions embedded in 2-D.

Fort et al. (2019) and the paper flatten each checkpoint's softmax outputs, an ``(N, C)``
array, into one vector of ``N * C`` numbers and embed all vectors with scikit-learn's t-SNE.
:class:`FunctionalLandscape` computes the same embedding without ever holding the
``(K, N * C)`` matrix of ``K`` checkpoints:

1. **Gram pass.** Over chunks of test points, centre each chunk's columns across the ``K``
   checkpoints and accumulate ``G += X_chunk @ X_chunk.T`` in float64. Centring per column is
   exact, so ``G`` is the double-centred Gram matrix ``J X X^T J`` (``J = I - 11^T / K``) of the
   raw vectors; memory is ``O(K^2 + K * chunk)``.
2. **Distances.** ``d_ij^2 = G_ii + G_jj - 2 G_ij``: the Euclidean distances between the raw
   flattened vectors (centring does not move them), i.e. exactly what t-SNE on the raw vectors
   computes.
3. **Exact PCA.** ``G = U diag(lambda) U^T``; the PCA coordinates of the raw vectors are
   ``U sqrt(lambda)`` (there are at most ``K - 1`` nonzero ``lambda``). A second pass computes
   the loadings' largest-magnitude entries to fix each component's sign as scikit-learn's PCA
   does (``svd_flip`` on the loadings), so the coordinates equal ``PCA().fit_transform`` of the
   raw vectors, sign included, up to round-off.
4. **t-SNE** (``method="tsne"``) runs :class:`sklearn.manifold.TSNE` on the exact distance
   matrix (``metric="precomputed"``) with the initialisation scikit-learn's default
   ``init="pca"`` would give the raw vectors: the first PCA coordinates, scaled so the first
   has standard deviation ``1e-4``. ``method="pca"`` returns the first PCA coordinates.

So t-SNE receives the inputs ``TSNE(perplexity=..., random_state=...).fit_transform(raw)``
would compute, up to round-off: the distances to ~1e-15 relative, the initialisation exactly
when scikit-learn's PCA uses an exact solver (it picks a randomized one once ``K`` or
``N * C`` exceeds 500, which can mix components with close variances). The tests show
identical embeddings on a small float64 case. Beyond that, compare layouts, not coordinates:
Barnes-Hut t-SNE can amplify a 1e-7 relative change of its inputs (float32 instead of
float64 distances, a last-bit change of the init) into a visibly different, equally valid
layout, notably when checkpoints nearly coincide (the epoch-0 outputs of several runs).
Perplexity defaults to :func:`default_perplexity` of the number of checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from funcsim.errors import ConfigError, DataError

CHUNK_BYTES = 64 * 2**20
"""Target size of one float64 chunk ``(K, points, C)`` in the Gram pass (64 MiB)."""

TSNE_INIT_STD = 1e-4
"""Standard deviation of the first init coordinate, as scikit-learn's ``init="pca"`` scales it."""

TSNE_SERIAL_MAX = 5000
"""Up to this many checkpoints t-SNE runs on one OpenMP thread: its per-iteration work is tiny
and libgomp's spinning threads made a 30-point fit 50x slower on a busy 2-core machine."""

PERPLEXITY_RANGE = (5.0, 30.0)
"""Clamp of the default perplexity ``(K - 1) / 3`` (30 is scikit-learn's default)."""

__all__ = ["CHUNK_BYTES", "FunctionalLandscape", "default_perplexity"]


def default_perplexity(n_checkpoints: int) -> float:
    """Perplexity used when none is given: ``min(30, max(5, (K - 1) / 3), K - 1)``.

    ``(K - 1) / 3`` makes the ``3 * perplexity`` nearest neighbours of Barnes-Hut t-SNE all the
    other checkpoints of a small landscape; 5 and 30 are the usual bounds (30 is
    scikit-learn's default); ``K - 1`` keeps it below ``K`` as t-SNE requires.

    >>> [default_perplexity(k) for k in (4, 10, 61, 400)]
    [3.0, 5.0, 20.0, 30.0]
    """
    k = int(n_checkpoints)
    lo, hi = PERPLEXITY_RANGE
    return float(min(hi, max(lo, (k - 1) / 3.0), k - 1))


class _Checkpoints:
    """Uniform chunked access to K prediction sets of shape (N, C), without copying them."""

    def __init__(self, prediction_sets: Any) -> None:
        if isinstance(prediction_sets, np.ndarray) and prediction_sets.ndim == 3:
            self.stacked: np.ndarray | None = prediction_sets
            self.sets: list[np.ndarray] = []
            k, n, c = prediction_sets.shape
        elif isinstance(prediction_sets, Sequence) and not isinstance(prediction_sets, str):
            self.stacked = None
            self.sets = [np.asarray(s) for s in prediction_sets]
            if not self.sets:
                raise DataError("prediction_sets: empty; need at least 2 prediction sets")
            first = self.sets[0].shape
            for j, s in enumerate(self.sets):
                if s.ndim != 2:
                    raise DataError(
                        f"prediction_sets[{j}]: expected a 2-D (points, classes) array, "
                        f"got shape {s.shape}"
                    )
                if s.shape != first:
                    raise DataError(
                        f"prediction_sets[{j}]: shape {s.shape} differs from {first}; all "
                        "checkpoints must be evaluated on the same points and classes"
                    )
            k, (n, c) = len(self.sets), first
        else:
            shape = getattr(prediction_sets, "shape", None)
            raise DataError(
                "prediction_sets: expected a sequence of (N, C) arrays or one (K, N, C) array, "
                f"got {type(prediction_sets).__name__}" + (f" of shape {shape}" if shape else "")
            )
        if k < 2:
            raise DataError(f"prediction_sets: got {k} prediction set; need at least 2 to embed")
        if n < 1 or c < 1:
            raise DataError(f"prediction_sets: empty prediction arrays of shape ({n}, {c})")
        for arr in [self.stacked] if self.stacked is not None else self.sets:
            if arr is not None and not np.issubdtype(arr.dtype, np.floating):
                raise DataError(f"prediction_sets: expected floating-point arrays, got {arr.dtype}")
        self.k, self.n, self.c = k, n, c

    def chunks(self, points_per_chunk: int) -> Iterator[np.ndarray]:
        """Yield float64 arrays of shape (K, points * C), consecutive blocks of test points."""
        for a in range(0, self.n, points_per_chunk):
            b = min(self.n, a + points_per_chunk)
            if self.stacked is not None:
                block = np.asarray(self.stacked[:, a:b, :], dtype=np.float64)
            else:
                block = np.stack([np.asarray(s[a:b], dtype=np.float64) for s in self.sets])
            block = block.reshape(self.k, (b - a) * self.c)
            if not np.isfinite(block).all():
                bad = int(np.argmax(~np.isfinite(block).all(axis=1)))
                raise DataError(
                    f"prediction_sets[{bad}]: NaN or infinite values among points {a}..{b - 1}"
                )
            yield block


class FunctionalLandscape:
    """Embed K checkpoints' flattened ``(N, C)`` predictions in 2-D (t-SNE or exact PCA).

    Parameters
    ----------
    method : {"tsne", "pca"}
        ``"tsne"`` (the paper, Fort et al. 2019) or the first PCA coordinates.
    perplexity : float or None
        t-SNE perplexity, ``0 < perplexity < K``; None uses :func:`default_perplexity` (K).
    random_state : int
        Seeds t-SNE (the paper used 42); with it the embedding is deterministic.
    n_components : int
        Dimension of the embedding (2 for pictures; Barnes-Hut t-SNE allows at most 3).
    pca_components : int
        Number of exact PCA coordinates kept in ``pca_coordinates_`` (at most ``K - 1``).
        t-SNE always uses the exact full-dimensional distances, not these coordinates.
    chunk_points : int or None
        Test points per chunk of the Gram pass; None sizes chunks to :data:`CHUNK_BYTES`.

    Attributes
    ----------
    embedding_ : ndarray of shape (K, n_components)
    distances_ : ndarray of shape (K, K)
        Euclidean distances between the raw flattened prediction vectors.
    pca_coordinates_ : ndarray of shape (K, n_pca)
        Exact PCA scores of the raw vectors (scikit-learn's sign convention).
    explained_variance_, explained_variance_ratio_ : ndarray of shape (n_pca,)
    perplexity_ : float or None
        The perplexity used (None for ``method="pca"``).
    kl_divergence_ : float or None
        Final t-SNE objective (None for ``method="pca"``).
    n_checkpoints_, n_points_, n_classes_ : int

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> sets = rng.dirichlet(np.ones(3), size=(6, 20))     # 6 checkpoints, 20 points, 3 classes
    >>> FunctionalLandscape("pca").fit(sets).embedding_.shape
    (6, 2)
    """

    def __init__(
        self,
        method: Literal["tsne", "pca"] = "tsne",
        *,
        perplexity: float | None = None,
        random_state: int = 42,
        n_components: int = 2,
        pca_components: int = 50,
        chunk_points: int | None = None,
    ) -> None:
        self.method = method
        self.perplexity = perplexity
        self.random_state = random_state
        self.n_components = n_components
        self.pca_components = pca_components
        self.chunk_points = chunk_points

    # ------------------------------------------------------------------ scikit-learn API

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``BaseEstimator.get_params``."""
        return {
            "method": self.method,
            "perplexity": self.perplexity,
            "random_state": self.random_state,
            "n_components": self.n_components,
            "pca_components": self.pca_components,
            "chunk_points": self.chunk_points,
        }

    def set_params(self, **params: Any) -> FunctionalLandscape:
        """Set constructor parameters; unknown names raise :class:`ConfigError`."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ConfigError(
                    f"FunctionalLandscape: unknown parameter {name!r}; valid: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"FunctionalLandscape({args})"

    def fit_transform(self, prediction_sets: Any) -> np.ndarray:
        """Fit and return ``embedding_``."""
        return self.fit(prediction_sets).embedding_

    def fit(self, prediction_sets: Sequence[npt.ArrayLike] | np.ndarray) -> FunctionalLandscape:
        """Embed the prediction sets.

        Parameters
        ----------
        prediction_sets : sequence of K arrays of shape (N, C), or one array of shape (K, N, C)
            Softmax outputs of each checkpoint on the same N test points; any float dtype
            (float16/32/64), memory-mapped arrays welcome (read chunk by chunk, never copied
            whole).

        Returns
        -------
        self
        """
        self._validate_params()
        data = _Checkpoints(prediction_sets)
        k = data.k
        perplexity = None
        if self.method == "tsne":
            perplexity = self._resolve_perplexity(k)
        chunk = self._points_per_chunk(data)

        gram = _centred_gram(data, chunk)
        distances = _distances_from_gram(gram)
        eigval, eigvec = _top_eigenpairs(gram, min(int(self.pca_components), k - 1))
        signs = _sklearn_signs(data, chunk, eigvec)
        eigvec = eigvec * signs
        scores = eigvec * np.sqrt(eigval)
        total = float(np.trace(gram))

        self.n_checkpoints_, self.n_points_, self.n_classes_ = k, data.n, data.c
        self.distances_ = distances
        self.pca_coordinates_ = scores
        self.explained_variance_ = eigval / (k - 1)
        self.explained_variance_ratio_ = eigval / total if total > 0 else np.zeros_like(eigval)
        self.perplexity_ = perplexity
        self.kl_divergence_: float | None = None
        self.n_iter_: int | None = None

        first = _pad_columns(scores[:, : self.n_components], self.n_components)
        if self.method == "pca":
            self.embedding_ = first
        else:
            assert perplexity is not None
            self.embedding_ = self._tsne(distances, first, perplexity)
        return self

    # ------------------------------------------------------------------ internals

    def _validate_params(self) -> None:
        if self.method not in ("tsne", "pca"):
            raise ConfigError(f"method: must be 'tsne' or 'pca', got {self.method!r}")
        if int(self.n_components) != self.n_components or self.n_components < 1:
            raise ConfigError(f"n_components: must be an integer >= 1, got {self.n_components}")
        if self.method == "tsne" and self.n_components > 3:
            raise ConfigError(
                f"n_components: Barnes-Hut t-SNE allows at most 3, got {self.n_components}"
            )
        if int(self.pca_components) != self.pca_components or self.pca_components < 1:
            raise ConfigError(f"pca_components: must be an integer >= 1, got {self.pca_components}")
        if self.chunk_points is not None and (
            int(self.chunk_points) != self.chunk_points or self.chunk_points < 1
        ):
            raise ConfigError(
                f"chunk_points: must be None or an integer >= 1, got {self.chunk_points}"
            )

    def _resolve_perplexity(self, k: int) -> float:
        if self.perplexity is None:
            return default_perplexity(k)
        p = float(self.perplexity)
        if not (0.0 < p < k):
            raise ConfigError(
                f"perplexity: must lie in (0, {k}) for {k} checkpoints, got {self.perplexity}"
            )
        return p

    def _points_per_chunk(self, data: _Checkpoints) -> int:
        if self.chunk_points is not None:
            return int(self.chunk_points)
        return max(1, CHUNK_BYTES // (8 * data.k * data.c))

    def _tsne(self, distances: np.ndarray, first: np.ndarray, perplexity: float) -> np.ndarray:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        # sklearn's init="pca", operation for operation (float32, std of the first column);
        # all checkpoints identical: that would divide by zero, so start at random instead
        first32 = first.astype(np.float32)
        std = np.std(first32[:, 0])
        init: np.ndarray | str = first32 / std * TSNE_INIT_STD if std > 0 else "random"
        tsne = TSNE(
            n_components=int(self.n_components),
            perplexity=perplexity,
            init=init,
            metric="precomputed",
            random_state=self.random_state,
        )
        threads = 1 if distances.shape[0] <= TSNE_SERIAL_MAX else None
        with threadpool_limits(limits=threads, user_api="openmp"):
            # exact t-SNE squares a precomputed matrix in place: hand it a copy
            embedding = tsne.fit_transform(distances.copy())
        self.kl_divergence_ = float(tsne.kl_divergence_)
        self.n_iter_ = int(tsne.n_iter_)
        return np.asarray(embedding)


def _centred_gram(data: _Checkpoints, chunk: int) -> np.ndarray:
    """``J X X^T J`` accumulated over column blocks of X (each block centred across rows)."""
    gram = np.zeros((data.k, data.k), dtype=np.float64)
    for block in data.chunks(chunk):
        block -= block.mean(axis=0, keepdims=True)
        gram += block @ block.T
    return (gram + gram.T) / 2.0


def _distances_from_gram(gram: np.ndarray) -> np.ndarray:
    diag = np.diag(gram)
    sq = diag[:, None] + diag[None, :] - 2.0 * gram
    np.fill_diagonal(sq, 0.0)
    dist: np.ndarray = np.sqrt(np.maximum(sq, 0.0))
    return dist


def _top_eigenpairs(gram: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest eigenpairs of the PSD ``gram`` (descending), dropping numerically zero ones."""
    eigval, eigvec = np.linalg.eigh(gram)
    eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
    tol = max(float(eigval[0]), 0.0) * gram.shape[0] * np.finfo(np.float64).eps
    keep = min(n_max, int(np.sum(eigval > tol)))
    return np.maximum(eigval[:keep], 0.0), eigvec[:, :keep]


def _sklearn_signs(data: _Checkpoints, chunk: int, eigvec: np.ndarray) -> np.ndarray:
    """Signs making each loading's largest-magnitude entry positive (sklearn's ``svd_flip``).

    The loadings of component j are proportional to ``Xc^T u_j`` (``Xc``: X centred across
    checkpoints); only their largest |entry| is needed, found in one more pass over the chunks.
    """
    m = eigvec.shape[1]
    if m == 0:
        return np.ones(0)
    best_abs = np.full(m, -1.0)
    best_val = np.zeros(m)
    for block in data.chunks(chunk):
        block -= block.mean(axis=0, keepdims=True)
        load = eigvec.T @ block  # (m, chunk * C)
        idx = np.argmax(np.abs(load), axis=1)
        val = load[np.arange(m), idx]
        better = np.abs(val) > best_abs  # strict: the first maximum wins, as in np.argmax
        best_abs[better], best_val[better] = np.abs(val[better]), val[better]
    signs: np.ndarray = np.where(best_val < 0, -1.0, 1.0)
    return signs


def _pad_columns(x: np.ndarray, width: int) -> np.ndarray:
    if x.shape[1] >= width:
        return np.ascontiguousarray(x[:, :width])
    return np.hstack([x, np.zeros((x.shape[0], width - x.shape[1]))])
