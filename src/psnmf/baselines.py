"""The two baselines PSNMF must beat, run as their users run them.

* :func:`standard_nmf` - the same Poisson NMF engine on the full-resolution data, no binning
  (with the same simplex constraint and initialisation as PSNMF's first stage, so the only
  difference is the binning).
* :func:`pca_denoise` - HyperSpy's own PCA denoising: ``decomposition`` with
  ``normalize_poissonian_noise=True`` (SVD), then ``get_decomposition_model(k)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from psnmf import _signals
from psnmf._validation import (
    check_has_counts,
    check_n_components,
    check_positive_int,
    check_random_state,
)
from psnmf.nmf import poisson_nmf


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
    init, max_iter, tol, random_state : as in :func:`psnmf.nmf.poisson_nmf`
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
    )
    k = res.S.shape[0]
    return NMFBaseline(
        spectra=res.S,
        maps=res.A.reshape(*shape, k),
        scale=res.scale.reshape(shape),
        loss=res.loss,
        n_iter=res.n_iter,
    )


def pca_denoise(X: Any, n_components: int) -> Any:
    """PCA denoising exactly as HyperSpy users run it.

    ``s.decomposition(normalize_poissonian_noise=True, algorithm="SVD")`` followed by
    ``s.get_decomposition_model(n_components)``.

    Parameters
    ----------
    X : ndarray (ny, nx, channels) or HyperSpy spectrum image
    n_components : int
        Number of components kept in the reconstruction.

    Returns
    -------
    The reconstruction: a signal of the input's class when given a signal, else an ndarray.
    """
    import hyperspy.api as hs

    k = check_positive_int(n_components, "n_components")
    counts, _, _ = _signals.as_counts(X, None)  # validates the counts (and the shape)
    check_n_components(k, counts.shape)
    if _signals.is_signal(X):
        s = X.deepcopy()
        given_signal = True
    else:
        s = hs.signals.Signal1D(np.asarray(X))
        given_signal = False
    s.change_dtype("float64")
    s.decomposition(
        normalize_poissonian_noise=True, algorithm="SVD", output_dimension=None, print_info=False
    )
    model = s.get_decomposition_model(k)
    if given_signal:
        model.metadata.General.title = "PCA denoised"
        return model
    return np.asarray(model.data)
