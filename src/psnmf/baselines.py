"""The two baselines PSNMF must beat, run as their users run them.

* :func:`standard_nmf` - the same Poisson NMF engine on the full-resolution data, no binning
  (with the same simplex constraint and initialisation as PSNMF's first stage, so the only
  difference is the binning).
* :func:`pca_denoise` - HyperSpy's own PCA denoising: ``decomposition`` with
  ``normalize_poissonian_noise=True`` (SVD), then ``get_decomposition_model(k)``, computed
  on the sparse counts by :func:`pca_factors` (the same result in memory that follows the
  counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf import hyperspy as _signals
from psnmf._validation import (
    check_has_counts,
    check_n_components,
    check_positive_int,
    check_random_state,
)
from psnmf.engine.poisson_nmf import poisson_nmf


@dataclass
class NMFBaseline:
    """Result of :func:`standard_nmf` in the same layout as the PSNMF estimator."""

    spectra: np.ndarray  #: (k, channels), rows sum to one
    maps: np.ndarray  #: (ny, nx, k), sum to one per pixel
    scale: np.ndarray  #: (ny, nx) per-pixel count scale
    loss: np.ndarray  #: loss history
    n_iter: int

    def reconstruct(self) -> np.ndarray:
        """Denoised cube ``scale * maps @ spectra``."""
        return self.scale[..., None] * (self.maps @ self.spectra)


def standard_nmf(
    X: Any,
    n_components: int,
    *,
    init: str = "nndsvda",
    max_iter: int = 2000,
    tol: float = 1e-7,
    random_state: int | None = None,
) -> NMFBaseline:
    """Standard Poisson NMF of the full-resolution spectrum image (no binning).

    Parameters
    ----------
    X : ndarray (ny, nx, channels) or HyperSpy spectrum image
        Line scans are fine too (no binning is involved): a signal with one navigation
        axis or a (pixels, channels) matrix gives maps of shape (pixels, k), and a single
        spectrum (``n_components=1`` only) maps of shape (k,).
    n_components : int
    init, max_iter, tol, random_state : as in :func:`psnmf.engine.poisson_nmf.poisson_nmf`
    """
    counts, shape, _ = _signals.as_counts(X, None, allow_line_scan=True)
    check_has_counts(counts)
    rng = check_random_state(random_state)
    res = poisson_nmf(
        counts,
        n_components,
        simplex=True,
        init=init,
        max_iter=max_iter,
        tol=tol,
        random_state=rng,
        check_input=False,  # validated by as_counts
    )
    k = res.S.shape[0]
    return NMFBaseline(
        spectra=res.S,
        maps=res.A.reshape(*shape, k),
        scale=res.scale.reshape(shape),
        loss=res.loss,
        n_iter=res.n_iter,
    )


#: Number of PCA components computed (randomized SVD) for denoising and the scree plot.
PCA_DIMENSION = 20
#: Rows of a PCA prediction evaluated at once (``rows x channels`` float64).
PREDICT_ROWS = 4096


@dataclass
class PCAFactors:
    """A Poisson-normalised PCA: ``denoised = loadings[:, :k] @ factors[:, :k].T``.

    The layout of HyperSpy's ``learning_results`` after ``decomposition(
    normalize_poissonian_noise=True)``: the noise normalisation is undone in the factors and
    loadings, so their product is the denoised counts.

    Attributes
    ----------
    factors : ndarray (channels, n_factors)
    loadings : ndarray (pixels, n_factors)
    explained_variance : ndarray (n_factors,)
        ``S**2 / N`` of the normalised matrix (HyperSpy's definition).
    n_components : int
        Components of the denoised model.
    image_shape : tuple
        Navigation shape of the pixels (``(ny, nx)``).
    """

    factors: np.ndarray
    loadings: np.ndarray
    explained_variance: np.ndarray
    n_components: int
    image_shape: tuple[int, ...]

    @property
    def explained_variance_ratio(self) -> np.ndarray:
        """Explained variance of each computed component over their sum (the scree)."""
        total = float(self.explained_variance.sum())
        return self.explained_variance / total if total > 0 else self.explained_variance

    def predict(self, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """The denoised counts of ``rows`` (pixels), (rows, channels) float64."""
        k = self.n_components
        return self.loadings[rows, :k] @ self.factors[:, :k].T

    def mean_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(L, F)`` with ``predict(rows) == L[rows] @ F``: loadings (pixels, k) and factor
        spectra (k, channels) of the ``k`` components used."""
        k = self.n_components
        return self.loadings[:, :k], self.factors[:, :k].T

    def cube(self, chunk: int = PREDICT_ROWS) -> np.ndarray:
        """The whole denoised cube (ny, nx, channels), evaluated ``chunk`` rows at a time."""
        n, m = self.loadings.shape[0], self.factors.shape[0]
        out = np.empty((n, m))
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            out[sl] = self.predict(sl)
        return out.reshape(*self.image_shape, m)


def pca_factors(
    X: Any,
    n_components: int,
    *,
    n_factors: int = PCA_DIMENSION,
    random_state: int | None = 0,
    image_shape: tuple[int, int] | None = None,
) -> PCAFactors:
    """HyperSpy's Poisson-normalised PCA computed on the sparse counts.

    The method: the randomized SVD of the Keenan-Kotula normalised counts
    ``Y_ij = X_ij / (sqrt(a_i) sqrt(b_j))`` (``a_i`` the pixel sums, ``b_j`` the channel
    sums, a zero sum counted as one), with the normalisation undone in the factors and
    loadings, step for step as HyperSpy's ``decomposition(normalize_poissonian_noise=True,
    algorithm="SVD", svd_solver="randomized")`` (``hyperspy/learn/_mva.py``,
    ``_keenan_kotula_scale``; ``hyperspy/learn/_svd_pca.py``, ``svd_pca``): the matrix is
    transposed when it has fewer pixels than channels, and
    :func:`sklearn.utils.extmath.randomized_svd` is called with the same arguments and
    seed. The normalisation is a diagonal scaling of rows and columns, so ``Y`` keeps the
    sparsity of the counts, and ``randomized_svd`` only needs products of ``Y`` with thin
    dense matrices. Memory follows the non-zero counts plus ``(pixels + channels) x
    (n_factors + 10)`` floats, instead of the dense float64 cube HyperSpy normalises
    (twice: the data and its normalised copy).

    Why this method rather than HyperSpy's lazy decomposition or a float32 cube: it gives
    HyperSpy's result itself (the same matrix, the same random projection; only the order
    of the sums in the sparse products differs, a relative difference of the denoised cube
    of order 1e-12 on ``test_TEM.bcf`` and the mantle map, see ``tests/test_metrics.py``),
    while a lazy decomposition uses another algorithm (incremental PCA) with another
    result, and float32 still holds the dense cube.

    Parameters
    ----------
    X : ndarray (ny, nx, channels), (pixels, channels) CSR/ndarray, or HyperSpy signal
    n_components : int
        Components of the denoised model.
    n_factors : int
        Components computed (the scree), at least ``n_components``.
    random_state : int or None
        Seed of the randomized SVD (passed to ``randomized_svd`` as HyperSpy does).
    image_shape : (ny, nx), optional
        For a (pixels, channels) matrix.

    Returns
    -------
    PCAFactors
    """
    from sklearn.utils.extmath import randomized_svd

    k = check_positive_int(n_components, "n_components")
    counts, shape, _ = _signals.as_counts(X, image_shape)
    check_n_components(k, counts.shape)
    counts = counts.tocsr()
    n_pix, n_chan = counts.shape
    dim = max(k, min(check_positive_int(n_factors, "n_factors"), n_pix - 1, n_chan - 1))
    a = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    b = np.asarray(counts.sum(axis=0), dtype=np.float64).ravel()
    if float(a.sum()) == 0.0:
        raise ValueError("X holds no counts: PCA needs at least one count.")
    root_a = np.sqrt(np.where(a == 0, 1.0, a))
    root_b = np.sqrt(np.where(b == 0, 1.0, b))
    rows = np.repeat(np.arange(n_pix), np.diff(counts.indptr))
    Y = sp.csr_matrix((counts.data / (root_a[rows] * root_b[counts.indices]),
                       counts.indices, counts.indptr), shape=counts.shape)
    del rows
    transposed = n_pix < n_chan
    U, S, V = randomized_svd(Y.T.tocsr() if transposed else Y, n_components=dim,
                             random_state=random_state)
    del Y
    if transposed:
        loadings, factors = V.T, U * S
    else:
        factors, loadings = V.T, U * S
    return PCAFactors(  # S**2 / pixels: HyperSpy's N is taken before its transpose
        factors=factors * root_b[:, None], loadings=loadings * root_a[:, None],
        explained_variance=S**2 / n_pix, n_components=k, image_shape=tuple(shape),
    )


def pca_denoise(
    X: Any,
    n_components: int,
    *,
    n_factors: int = PCA_DIMENSION,
    random_state: int | None = 0,
    return_scree: bool = False,
) -> Any:
    """PCA denoising as HyperSpy users run it, computed on the sparse counts.

    The result of ``s.decomposition(normalize_poissonian_noise=True, algorithm="SVD",
    svd_solver="randomized", navigation_mask=None)`` followed by
    ``s.get_decomposition_model(n_components)``, computed by :func:`pca_factors` (the same
    normalisation and randomized SVD on the sparse counts, in memory that follows the
    counts). Two settings are explicit:

    * ``navigation_mask=None``: exspy's EDS default masks every pixel whose largest channel
      holds <= 1 count as vacuum, which on sparse STEM-EDX data is nearly every pixel; the
      baseline must denoise all pixels, as PSNMF does.
    * a randomized SVD of the first ``n_factors`` components (HyperSpy's ``svd_solver=
      "randomized"``): the reconstruction needs only the leading components.

    The returned reconstruction is the dense float64 cube; :func:`pca_factors` gives the
    factors without it.

    Parameters
    ----------
    X : ndarray (ny, nx, channels) or HyperSpy spectrum image
    n_components : int
        Number of components kept in the reconstruction.
    n_factors : int, default=20
        Components computed (also the length of the scree curve).
    random_state : int or None
        Seed of the randomized SVD.
    return_scree : bool
        Also return the explained-variance ratios of the computed components.

    Returns
    -------
    The reconstruction: a signal of the input's class when given a signal, else an ndarray;
    with ``return_scree``, the tuple ``(reconstruction, ratios)``.
    """
    pca = pca_factors(X, n_components, n_factors=n_factors, random_state=random_state)
    cube = pca.cube()
    if _signals.is_signal(X):
        out = _signals.cube_signal(cube, X, title="PCA denoised")
    else:
        out = cube
    return (out, pca.explained_variance_ratio) if return_scree else out
