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


def pca_denoise(
    X: Any,
    n_components: int,
    *,
    n_factors: int = PCA_DIMENSION,
    random_state: int | None = 0,
    return_scree: bool = False,
) -> Any:
    """PCA denoising as HyperSpy users run it.

    ``s.decomposition(normalize_poissonian_noise=True, algorithm="SVD")`` followed by
    ``s.get_decomposition_model(n_components)``, with two settings made explicit:

    * ``navigation_mask=None``: exspy's EDS default masks every pixel whose largest channel
      holds <= 1 count as vacuum, which on sparse STEM-EDX data is nearly every pixel; the
      baseline must denoise all pixels, as PSNMF does.
    * a randomized SVD of the first ``n_factors`` components (HyperSpy's ``svd_solver=
      "randomized"``): the reconstruction needs only the leading components, and a full SVD
      of a 32,400 x 1,980 matrix takes tens of seconds.

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
    n_pix = int(np.prod(s.axes_manager.navigation_shape))
    n_chan = s.axes_manager.signal_axes[0].size
    dim = max(k, min(check_positive_int(n_factors, "n_factors"), n_pix - 1, n_chan - 1))
    kwargs: dict[str, Any] = {"navigation_mask": None} if hasattr(s, "get_lines_intensity") else {}
    s.decomposition(
        normalize_poissonian_noise=True, algorithm="SVD", output_dimension=dim,
        svd_solver="randomized", random_state=random_state, print_info=False, **kwargs,
    )
    model = s.get_decomposition_model(k)
    out = model if given_signal else np.asarray(model.data)
    if given_signal:
        model.metadata.General.title = "PCA denoised"
    if not return_scree:
        return out
    variance = np.asarray(s.learning_results.explained_variance, dtype=float)
    ratio = variance / variance.sum() if variance.sum() > 0 else variance
    return out, ratio
