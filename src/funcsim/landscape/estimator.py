"""The functional landscape: many models' test-set predictions embedded in 2-D.

Fort et al. (2019) and the paper flatten each checkpoint's softmax outputs, an ``(N, C)``
array, into one vector of ``N * C`` numbers and embed all vectors with scikit-learn's t-SNE.
:class:`FunctionalLandscape` computes the same embedding without ever holding the
``(K, N * C)`` matrix of ``K`` checkpoints:

1. **Gram pass** (one pass over the data). Over chunks of test points, shift each chunk's
   columns by their mean across (a sample of 64 of) the ``K`` checkpoints and accumulate
   ``G += X_chunk @ X_chunk.T`` (BLAS ``syrk``: one triangle, half a matrix product) into
   a float64 ``G``; a final double centring ``J G J`` (``J = I - 11^T / K``, float64,
   ``K x K``) makes ``G`` the centred Gram matrix ``J X X^T J`` of the raw vectors exactly,
   whatever the rounding of the means (they only keep the products' entries small). Float64
   inputs are multiplied in float64; float32/float16 inputs (stored predictions are float32)
   in float32, twice as fast, each chunk's product added to the float64 sum
   (:data:`CHUNK_BYTES` keeps chunks short, so the float32 sums are short too). The chunks
   are multiplied one per core at a time, each by a one-thread ``syrk``, and their products
   added in chunk order, so ``G`` does not depend on the number of cores. Memory is
   ``O(threads * (K^2 + K * chunk))``. The same pass checks the data are finite.
2. **Distances.** ``d_ij^2 = G_ii + G_jj - 2 G_ij``: the Euclidean distances between the raw
   flattened vectors (centring does not move them), i.e. exactly what t-SNE on the raw vectors
   computes. With float32 products the error of ``G`` is a few 1e-8 of its largest entry, so a
   distance is good to about ``2e-8 * (G_ii + G_jj) / d_ij^2`` relative: a few 1e-6 at worst
   (tests/landscape), unless the two checkpoints nearly coincide (``d_ij^2 < REFINE_RATIO *
   (G_ii + G_jj)``, e.g. a model and its float16 copy). Those pairs are recomputed in float64:
   each group of such checkpoints (connected components of the "nearly coincide" graph) gets
   its own float64 Gram matrix, centred on the group, from a second read of only its rows.
3. **Exact PCA.** ``G = U diag(lambda) U^T``; the PCA coordinates of the raw vectors are
   ``U sqrt(lambda)`` (there are at most ``K - 1`` nonzero ``lambda``). scikit-learn's PCA
   (1.5 and later) fixes each component's sign so that its loading of largest magnitude is
   positive (``svd_flip``); the loadings are ``Xc^T u_j``, one per column of the data, so a
   second pass over the data, one small matrix product per chunk, settles the signs of the
   first ``n_components`` components (the t-SNE initialisation). So those coordinates equal
   ``PCA().fit_transform`` of the raw vectors, sign included, up to round-off. Later
   components make their largest score positive (scikit-learn's convention for this shape
   before 1.5), which needs no pass.
4. **t-SNE** (``method="tsne"``) runs on the exact distance matrix with the initialisation
   scikit-learn's default ``init="pca"`` would give the raw vectors: the first PCA
   coordinates, scaled so the first has standard deviation ``1e-4``. Up to
   :data:`EXACT_TSNE_MAX` checkpoints (``tsne_method="auto"``, the default) it is the exact
   t-SNE of :mod:`funcsim.landscape._tsne`: scikit-learn's ``TSNE(method="exact")`` step for
   step (same ``P``, optimiser, schedule and stopping rules), its gradient vectorised,
   2.5x faster than scikit-learn's Barnes-Hut at K = 400 and without its approximation. Beyond
   that, or with ``tsne_method="barnes_hut"``, it is :class:`sklearn.manifold.TSNE` itself
   (``metric="precomputed"``, Barnes-Hut: the paper's and scikit-learn's default).
   ``method="pca"`` returns the first PCA coordinates.

So t-SNE receives the inputs ``TSNE(perplexity=..., random_state=...).fit_transform(raw)``
would compute, up to round-off: the distances to ~1e-15 relative for float64 inputs and ~1e-6
for float32 ones (scikit-learn itself computes float32 distances by float64 upcasting), the
initialisation exactly
when scikit-learn's PCA uses an exact solver (it picks a randomized one once ``K`` or
``N * C`` exceeds 500, which can mix components with close variances). The tests show
identical embeddings on a small float64 case. Beyond that, compare layouts, not coordinates:
Barnes-Hut t-SNE can amplify a 1e-7 relative change of its inputs (float32 instead of
float64 distances, a last-bit change of the init) into a visibly different, equally valid
layout, notably when checkpoints nearly coincide (the epoch-0 outputs of several runs).
Perplexity defaults to :func:`default_perplexity` of the number of checkpoints.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from funcsim._system import available_cores
from funcsim.errors import ConfigError, DataError
from funcsim.landscape._blas import syrk_upper

CHUNK_BYTES = 16 * 2**20
"""Target size of one chunk ``(K, points * C)`` in the Gram pass, in its compute dtype (16 MiB:
the float32 products then sum over at most ``16 MiB / 4 / K`` columns, 10,485 at K = 400)."""

GRAM_THREADS_MAX = 16
"""The Gram pass multiplies at most this many chunks at once (each holds a :data:`CHUNK_BYTES`
buffer while it does)."""

GRAM_PRODUCTS_BYTES = 512 * 2**20
"""... and no more than keep its ``K x K`` products in memory (at most one per thread and one
more) under this: 0.6 MiB each at K = 400, so no limit there; 100 MiB each at K = 5,000, so
4 threads."""

SHIFT_ROWS = 64
"""The Gram pass shifts each chunk's columns by their mean over at most this many rows."""

REFINE_RATIO = 0.01
"""With float32 products, pairs with ``d^2 < REFINE_RATIO * (G_ii + G_jj)`` are recomputed in
float64: their float32 error could exceed about 2e-6 relative (tests/landscape measure it)."""

TSNE_INIT_STD = 1e-4
"""Standard deviation of the first init coordinate, as scikit-learn's ``init="pca"`` scales it."""

EXACT_TSNE_MAX = 1000
"""``tsne_method="auto"`` runs exact t-SNE up to this many checkpoints, Barnes-Hut beyond: at
K = 1,000 exact took 5.4 s against Barnes-Hut's 7.8 s (one core); at 2,000 an earlier version
took 1.8x as long as Barnes-Hut (exact's cost grows as K^2, Barnes-Hut's as K log K)."""

TSNE_SERIAL_MAX = 5000
"""Up to this many checkpoints t-SNE runs on one OpenMP thread: its per-iteration work is tiny
and libgomp's spinning threads made a 30-point fit 50x slower on a busy 2-core machine."""

PERPLEXITY_RANGE = (5.0, 30.0)
"""Clamp of the default perplexity ``(K - 1) / 3`` (30 is scikit-learn's default)."""

__all__ = ["CHUNK_BYTES", "EXACT_TSNE_MAX", "FunctionalLandscape", "default_perplexity"]


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
        # compute dtype of the Gram pass: float64 for float64 inputs, else float32
        arrays = [self.stacked] if self.stacked is not None else self.sets
        wide = any(np.dtype(a.dtype).itemsize > 4 for a in arrays)
        self.dtype = np.dtype(np.float64 if wide else np.float32)

    def blocks(self, points_per_chunk: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first column, block)``: (K, points * C) blocks of consecutive test points,
        in the stored dtype (views of a stacked array, no copy)."""
        for a in range(0, self.n, points_per_chunk):
            yield a * self.c, self.block(a, min(self.n, a + points_per_chunk))

    def block(self, a: int, b: int) -> np.ndarray:
        """Test points ``a:b`` of every checkpoint as one (K, (b - a) * C) array (a view of a
        stacked array, else a copy)."""
        if self.stacked is not None:
            block = np.asarray(self.stacked[:, a:b, :])
        else:
            block = np.stack([np.asarray(s[a:b]) for s in self.sets])
        return block.reshape(self.k, (b - a) * self.c)

    def check_finite(self, block: np.ndarray, column: int) -> None:
        """Raise DataError naming the first checkpoint with NaN/inf in ``block``."""
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            bad = int(np.argmin(finite))
            a = column // self.c
            b = a + block.shape[1] // self.c - 1
            raise DataError(f"prediction_sets[{bad}]: NaN or infinite values among points {a}..{b}")


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
    tsne_method : {"auto", "exact", "barnes_hut"}
        ``"exact"``: exact t-SNE (scikit-learn's ``method="exact"``, vectorised); ``"barnes_hut"``:
        scikit-learn's default Barnes-Hut t-SNE, the paper's; ``"auto"``: exact up to
        :data:`EXACT_TSNE_MAX` checkpoints, Barnes-Hut beyond.
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
    tsne_method_ : {"exact", "barnes_hut"} or None
        The t-SNE that ran (None for ``method="pca"``).
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
        tsne_method: Literal["auto", "exact", "barnes_hut"] = "auto",
        n_components: int = 2,
        pca_components: int = 50,
        chunk_points: int | None = None,
    ) -> None:
        self.method = method
        self.perplexity = perplexity
        self.random_state = random_state
        self.tsne_method = tsne_method
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
            "tsne_method": self.tsne_method,
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
        if data.dtype != np.float64:
            distances = _refine_close_pairs(data, chunk, gram, distances)
        eigval, eigvec = _top_eigenpairs(gram, min(int(self.pca_components), k - 1))
        n_components = int(self.n_components)
        self.kl_divergence_: float | None = None
        self.n_iter_: int | None = None
        self.tsne_method_: str | None = None
        embedding: np.ndarray | None = None
        if self.method == "tsne" and self._uses_exact(k):
            # Exact t-SNE is equivariant under flipping a coordinate of its init (every step is
            # sign-symmetric, so the result flips bit for bit): it starts from the unsigned PCA
            # coordinates while the sign pass reads the data again on the other core.
            assert perplexity is not None
            unsigned = _pad_columns((eigvec * np.sqrt(eigval))[:, :n_components], n_components)
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(1) as pool:
                sign_pass = pool.submit(_sklearn_signs, data, chunk, eigvec, n_components)
                unsigned_embedding = self._exact(distances, unsigned, perplexity)
                signs = sign_pass.result()
            flips = _pad_columns(signs[None, :n_components], n_components, fill=1.0)
            embedding = unsigned_embedding * flips.astype(unsigned_embedding.dtype)
        else:
            signs = _sklearn_signs(data, chunk, eigvec, n_components)
        eigvec = eigvec * signs
        scores = eigvec * np.sqrt(eigval)
        total = float(np.trace(gram))

        self.n_checkpoints_, self.n_points_, self.n_classes_ = k, data.n, data.c
        self.distances_ = distances
        self.pca_coordinates_ = scores
        self.explained_variance_ = eigval / (k - 1)
        self.explained_variance_ratio_ = eigval / total if total > 0 else np.zeros_like(eigval)
        self.perplexity_ = perplexity

        first = _pad_columns(scores[:, :n_components], n_components)
        if self.method == "pca":
            self.embedding_ = first
        elif embedding is not None:
            self.embedding_ = embedding
        else:
            assert perplexity is not None
            self.embedding_ = self._barnes_hut(distances, first, perplexity)
        return self

    # ------------------------------------------------------------------ internals

    def _validate_params(self) -> None:
        if self.method not in ("tsne", "pca"):
            raise ConfigError(f"method: must be 'tsne' or 'pca', got {self.method!r}")
        if int(self.n_components) != self.n_components or self.n_components < 1:
            raise ConfigError(f"n_components: must be an integer >= 1, got {self.n_components}")
        if self.tsne_method not in ("auto", "exact", "barnes_hut"):
            raise ConfigError(
                f"tsne_method: must be 'auto', 'exact' or 'barnes_hut', got {self.tsne_method!r}"
            )
        if self.method == "tsne" and self.tsne_method != "exact" and self.n_components > 3:
            raise ConfigError(
                f"n_components: Barnes-Hut t-SNE allows at most 3, got {self.n_components} "
                "(tsne_method='exact' allows more)"
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
        return max(1, CHUNK_BYTES // (data.dtype.itemsize * data.k * data.c))

    def _uses_exact(self, k: int) -> bool:
        """Whether t-SNE of ``k`` checkpoints runs exact (else Barnes-Hut)."""
        return self.tsne_method == "exact" or (self.tsne_method == "auto" and k <= EXACT_TSNE_MAX)

    def _exact(self, distances: np.ndarray, first: np.ndarray, perplexity: float) -> np.ndarray:
        """Exact t-SNE (:mod:`funcsim.landscape._tsne`) from the first PCA coordinates."""
        from funcsim.landscape._tsne import exact_tsne

        init = _tsne_init(first)
        if init is None:  # scikit-learn's init="random", drawn as it draws it
            rng = np.random.RandomState(self.random_state)
            normal = rng.standard_normal(size=first.shape).astype(np.float32)
            init = TSNE_INIT_STD * normal
        embedding, kl, n_iter = exact_tsne(distances, init, perplexity)
        self.tsne_method_, self.kl_divergence_, self.n_iter_ = "exact", kl, n_iter
        return embedding

    def _barnes_hut(
        self, distances: np.ndarray, first: np.ndarray, perplexity: float
    ) -> np.ndarray:
        """scikit-learn's Barnes-Hut t-SNE from the first PCA coordinates."""
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        init = _tsne_init(first)
        tsne = TSNE(
            n_components=int(self.n_components),
            perplexity=perplexity,
            init="random" if init is None else init,
            metric="precomputed",
            random_state=self.random_state,
        )
        threads = 1 if distances.shape[0] <= TSNE_SERIAL_MAX else None
        with threadpool_limits(limits=threads, user_api="openmp"):
            embedding = tsne.fit_transform(distances.copy())  # scikit-learn may write to it
        self.tsne_method_ = "barnes_hut"
        self.kl_divergence_ = float(tsne.kl_divergence_)
        self.n_iter_ = int(tsne.n_iter_)
        return np.asarray(embedding)


def _tsne_init(first: np.ndarray) -> np.ndarray | None:
    """scikit-learn's ``init="pca"``, operation for operation: the first PCA coordinates in
    float32, scaled so the first has standard deviation :data:`TSNE_INIT_STD`. None when all
    checkpoints coincide (that would divide by zero): start at random instead."""
    first32 = first.astype(np.float32)
    std = np.std(first32[:, 0])
    return first32 / std * TSNE_INIT_STD if std > 0 else None


def _centred_gram(data: _Checkpoints, chunk: int, threads: int | None = None) -> np.ndarray:
    """``J X X^T J`` accumulated in float64 over column blocks of X.

    Each block is shifted by its columns' mean across (sampled) rows (summed in ``data.dtype``:
    only a shift, so it need not be exact) into a reused buffer, and multiplied in
    ``data.dtype``; the shift keeps the entries, and so the products' rounding, small. Any
    per-column shift leaves distances unchanged, and the final double centring ``J G J`` (float64,
    ``K x K``) removes what an inexact mean left of it, so the result is the centred Gram
    matrix.

    Up to :func:`_gram_threads` blocks are shifted and multiplied at once, each by a one-thread
    BLAS ``syrk`` that releases the GIL (:mod:`funcsim.landscape._blas`); the calling thread
    adds the products in block order. Each product is computed the same way whatever the number
    of threads, so the result does not depend on it (bit for bit: tests/landscape check it).
    """
    from threadpoolctl import threadpool_limits

    ranges = [(a, min(data.n, a + chunk)) for a in range(0, data.n, chunk)]
    n_threads = _gram_threads(data.k, data.dtype, len(ranges), threads)
    # one buffer per thread, reused: a fresh 16 MiB block per chunk page-faults
    buffers: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()
    for _ in range(n_threads):
        buffers.put(np.empty((data.k, min(chunk, data.n) * data.c), dtype=data.dtype))

    def product(a: int, b: int) -> np.ndarray:
        raw = data.block(a, b)
        buffer = buffers.get()
        try:
            with np.errstate(invalid="ignore", over="ignore"):  # NaN/inf are reported below
                block = _centre(raw, data.dtype, out=buffer[:, : raw.shape[1]])
            upper = syrk_upper(block)
            if not np.isfinite(np.diagonal(upper)).all():
                data.check_finite(raw, a * data.c)  # NaN/inf in the data: raises
                # finite data, so float32 overflowed: multiply in float64 instead
                upper = syrk_upper(np.subtract(raw, raw.mean(axis=0, dtype=np.float64)))
            return upper
        finally:
            buffers.put(buffer)

    gram = np.zeros((data.k, data.k), dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):
        if n_threads == 1:
            for a, b in ranges:
                gram += product(a, b)
        else:
            with ThreadPoolExecutor(n_threads) as pool:
                pending: deque[Future[np.ndarray]] = deque()
                for a, b in ranges:
                    pending.append(pool.submit(product, a, b))
                    if len(pending) > n_threads:  # keep at most one product waiting
                        gram += pending.popleft().result()
                while pending:
                    gram += pending.popleft().result()
    return _double_centre(gram + np.triu(gram, 1).T)


def _gram_threads(k: int, dtype: np.dtype, n_chunks: int, threads: int | None) -> int:
    """Threads of the Gram pass: ``threads`` (default: the usable cores), at most
    :data:`GRAM_THREADS_MAX`, one per chunk, and as many as :data:`GRAM_PRODUCTS_BYTES` allows
    ``K x K`` products in ``dtype`` (one per thread and one waiting); at least 1."""
    by_memory = GRAM_PRODUCTS_BYTES // (k * k * dtype.itemsize) - 1
    return max(1, min(threads or available_cores(), GRAM_THREADS_MAX, n_chunks, by_memory))


def _centre(raw: np.ndarray, dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """``raw`` (K, L) minus its column means, in ``dtype``."""
    return np.subtract(raw, _column_means(raw, dtype), out=out, dtype=dtype)


def _column_means(raw: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Means of the columns of ``raw`` (K, L) over at most :data:`SHIFT_ROWS` evenly spaced
    rows, summed in ``dtype``. Only a shift (see :func:`_centred_gram`), which need not be
    exact: a sample of 64 rows leaves the shifted entries about ``sqrt(1 + 1/64)`` times as
    large as exact centring would, and reads a sixth of a 400-row block instead of all of it.

    A NumPy reduction, not a BLAS ``gemv``: ``raw`` is usually a strided view of a memory
    map, which SciPy's BLAS wrappers would copy, and NumPy's own BLAS keeps its idle threads
    spinning for a while after each call, which slowed the next ``syrk`` (SciPy's BLAS) 2x on
    2 cores (measured).
    """
    step = -(-raw.shape[0] // SHIFT_ROWS)  # ceil: at most SHIFT_ROWS rows, a view (no copy)
    mean: np.ndarray = raw[::step].mean(axis=0, dtype=dtype)
    return mean


def _double_centre(gram: np.ndarray) -> np.ndarray:
    """``J G J`` with ``J = I - 11^T / K``: row and column means of ``G`` removed."""
    rows = gram.mean(axis=1)
    centred: np.ndarray = gram - rows[:, None] - rows[None, :] + rows.mean()
    return centred


def _refine_close_pairs(
    data: _Checkpoints, chunk: int, gram: np.ndarray, distances: np.ndarray
) -> np.ndarray:
    """Recompute in float64 the distances among checkpoints that nearly coincide.

    ``d^2 = G_ii + G_jj - 2 G_ij`` loses about ``(G_ii + G_jj) / d^2`` of the float32 products'
    relative precision; pairs with ``d^2 < REFINE_RATIO * (G_ii + G_jj)`` are grouped into
    connected components, and each group's distances come from its own float64 Gram matrix,
    centred on the group (its points are close, so nothing cancels), in one more pass that
    reads only the groups' rows.
    """
    diag = np.diag(gram)
    close = distances**2 < REFINE_RATIO * (diag[:, None] + diag[None, :])
    np.fill_diagonal(close, False)
    if not close.any():
        return distances
    groups = _connected_groups(close)
    grams = [np.zeros((len(g), len(g))) for g in groups]
    members = np.concatenate(groups)
    starts = np.cumsum([0] + [len(g) for g in groups])
    for _, raw in data.blocks(chunk):
        rows = raw[members].astype(np.float64)  # every group's rows of this chunk, one copy
        for a, b, acc in zip(starts[:-1], starts[1:], grams, strict=True):
            block = rows[a:b]
            block -= block.mean(axis=0, keepdims=True)
            acc += syrk_upper(block)
    out = distances.copy()
    for group, acc in zip(groups, grams, strict=True):
        upper = np.triu(acc)
        out[np.ix_(group, group)] = _distances_from_gram(upper + np.triu(upper, 1).T)
    return out


def _connected_groups(adjacent: np.ndarray) -> list[np.ndarray]:
    """Connected components of more than one node of the symmetric boolean ``adjacent`` (K, K),
    each as sorted indices, ordered by their smallest index (a breadth-first search; SciPy's
    ``connected_components`` would cost 0.2-0.4 s of imports for K in the hundreds).
    """
    seen = np.zeros(len(adjacent), dtype=bool)
    groups = []
    for start in np.flatnonzero(adjacent.any(axis=1)):
        if seen[start]:
            continue
        seen[start] = True
        frontier = np.array([start])
        members = [frontier]
        while frontier.size:
            reached = adjacent[frontier].any(axis=0) & ~seen
            frontier = np.flatnonzero(reached)
            seen[frontier] = True
            members.append(frontier)
        groups.append(np.sort(np.concatenate(members)))
    return groups


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


def _sklearn_signs(data: _Checkpoints, chunk: int, eigvec: np.ndarray, n_exact: int) -> np.ndarray:
    """Signs of the PCA components, scikit-learn's convention for the first ``n_exact``.

    scikit-learn (1.5 and later) makes each component's loading of largest magnitude
    positive (``svd_flip(..., u_based_decision=False)``); the loadings of component j are
    proportional to ``Xc^T u_j``, one value per column of the data, so the first ``n_exact``
    components (the t-SNE initialisation) are settled by one pass over the data. Later
    components make their score of largest magnitude positive (``u_based_decision=True``,
    scikit-learn's convention for this shape before 1.5): no pass needed.
    """
    m = eigvec.shape[1]
    if m == 0:
        return np.ones(0)
    best_val = eigvec[np.argmax(np.abs(eigvec), axis=0), np.arange(m)]
    n_exact = min(n_exact, m)
    if n_exact:
        best_val[:n_exact] = _largest_loadings(data, chunk, eigvec[:, :n_exact])
    signs: np.ndarray = np.where(best_val < 0, -1.0, 1.0)
    return signs


def _largest_loadings(data: _Checkpoints, chunk: int, eigvec: np.ndarray) -> np.ndarray:
    """For each column u of ``eigvec``, the entry of largest magnitude of ``Xc^T u`` (the
    first one on ties), from one pass over the data in ``data.dtype`` (float32 data: float32,
    as scikit-learn's PCA computes on them).

    ``Xc^T u = X^T u - (1^T u) mean``: the raw columns are multiplied (no centred copy) and
    the mean's share removed; it is of round-off size, since ``u`` is orthogonal to ``1`` up to
    round-off, so the sampled mean of :func:`_column_means` serves.
    """
    m = eigvec.shape[1]
    best_abs = np.full(m, -1.0)
    best_val = np.zeros(m)
    vectors = eigvec.T.astype(data.dtype)  # (m, K)
    offsets = vectors.sum(axis=1)  # 1^T u, one per component
    for _, raw in data.blocks(chunk):
        block = np.asarray(raw, dtype=data.dtype)
        load = vectors @ block  # (m, chunk * C); a strided view is passed to BLAS as it is
        load -= offsets[:, None] * _column_means(block, data.dtype)[None, :]
        idx = np.argmax(np.abs(load), axis=1)
        val = load[np.arange(m), idx].astype(np.float64)
        better = np.abs(val) > best_abs  # strict: the first maximum wins, as in np.argmax
        best_abs[better], best_val[better] = np.abs(val[better]), val[better]
    return best_val


def _pad_columns(x: np.ndarray, width: int, fill: float = 0.0) -> np.ndarray:
    if x.shape[1] >= width:
        return np.ascontiguousarray(x[:, :width])
    return np.hstack([x, np.full((x.shape[0], width - x.shape[1]), fill)])
