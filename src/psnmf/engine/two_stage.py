"""The two stages of PSNMF as array functions: binned spectra, then full-resolution maps.

1. :func:`fit_binned` - Poisson NMF of the binned counts (the low-resolution, high-signal
   data), then, with ``spectra='pure'``, the pure-pixel correction of its simplex
   (:func:`psnmf.engine.pure_pixels.vertex_correction`) and the binned maps re-solved for
   the corrected spectra.
2. :func:`fit_full` - Poisson NMF of the full-resolution counts started from those spectra
   and the upsampled binned maps (:func:`stage2_start`), the spectra held fixed or free.

The estimator (:class:`psnmf.PSNMF`), the chunked Dask path (:mod:`psnmf.engine._dask`)
and the bootstrap (:mod:`psnmf.uncertainty`) all run these functions. Their inputs are the
counts in the canonical CSR form of validated counts
(:func:`psnmf.engine.poisson_nmf.is_counts_csr`: what the estimator's input conversion and
:func:`psnmf.engine.binning.bin_counts` return), validated once by the caller and not
again here.

Examples
--------
>>> import numpy as np
>>> import scipy.sparse as sp
>>> from psnmf.engine.binning import bin_counts
>>> rng = np.random.default_rng(0)
>>> spectra = rng.dirichlet(np.ones(32), size=2)
>>> maps = np.zeros((16, 16, 2)); maps[:, :8, 0] = 1; maps[:, 8:, 1] = 1
>>> X = sp.csr_matrix(rng.poisson(40 * maps @ spectra).reshape(256, 32).astype(float))
>>> binned = fit_binned(bin_counts(X, (16, 16), 4), 2, spectra="nmf", random_state=0)
>>> full = fit_full(X, binned.spectra, binned.maps, (16, 16), 4)
>>> full.A.shape, bool(np.allclose(full.A.sum(axis=1), 1))
((256, 2), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf.engine.binning import upsample_maps
from psnmf.engine.poisson_nmf import NMFResult, poisson_nmf
from psnmf.engine.pure_pixels import PureCluster, vertex_correction

__all__ = [
    "BINNED_PARAMS",
    "SPECTRA_MODES",
    "STAGE2_MODES",
    "START_MIX",
    "BinnedFit",
    "binned_kwargs",
    "fit_binned",
    "fit_full",
    "stage2_start",
]

#: Spectra of the binned stage: the pure-pixel corrected simplex, or NMF's own.
SPECTRA_MODES = ("pure", "nmf")
#: Spectra of the full-resolution stage: held fixed, or updated as in the paper's step 3.
STAGE2_MODES = ("fixed", "free")
#: Weight of the uniform map mixed into the upsampled stage-1 maps that start stage 2.
START_MIX = 0.01
#: Keyword arguments of :func:`fit_binned` that are estimator parameters of the same name
#: (``random_state`` aside), so that every caller runs the binned stage the same way.
BINNED_PARAMS = (
    "spectra", "init", "max_iter", "tol", "vertex_sd", "min_cluster", "max_dispersion",
    "max_tail",
)
#: Relative tolerance of the re-solve of the binned maps for corrected spectra.
RESOLVE_TOL = 1e-6


def binned_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`fit_binned` from an estimator's ``get_params()``.

    Every parameter named in :data:`BINNED_PARAMS`, so that the estimator, the bootstrap
    and the pipeline run the binned stage the same way.
    """
    return {name: params[name] for name in BINNED_PARAMS}


@dataclass
class BinnedFit:
    """Result of :func:`fit_binned`.

    Attributes
    ----------
    nmf : NMFResult
        The Poisson NMF of the binned counts.
    spectra : ndarray (k, channels)
        Spectra of the stage, rows on the simplex (``transform @ nmf.S``).
    maps : ndarray (binned pixels, k)
        Binned maps for ``spectra`` (``nmf.A`` when no vertex moved or ``solve_maps=False``).
    transform : ndarray (k, k)
        Row-stochastic transform of the pure-pixel correction (identity for 'nmf').
    moved : ndarray (k,) of bool
        Which vertices moved to a pure cluster.
    clusters : list of PureCluster or None
        The pure cluster of every component (``None`` for 'nmf').
    """

    nmf: NMFResult
    spectra: np.ndarray
    maps: np.ndarray
    transform: np.ndarray
    moved: np.ndarray
    clusters: list[PureCluster] | None


def fit_binned(
    binned: sp.csr_matrix,
    n_components: int,
    *,
    spectra: str = "pure",
    init: str = "nndsvda",
    max_iter: int = 2000,
    tol: float = 1e-7,
    random_state: int | np.random.Generator | None = None,
    vertex_sd: float = 1.5,
    min_cluster: int = 20,
    max_dispersion: float = 1.5,
    max_tail: float = 1.0,
    solve_maps: bool = True,
) -> BinnedFit:
    """Stage 1: Poisson NMF of the binned counts, with the pure-pixel correction.

    Parameters
    ----------
    binned : CSR (binned pixels, channels) counts
    n_components : int
    spectra : {'pure', 'nmf'}
        'pure' moves every vertex whose top binned pixels form a pure cluster to that
        cluster (:func:`psnmf.engine.pure_pixels.vertex_correction` with ``vertex_sd``,
        ``min_cluster``, ``max_dispersion``, ``max_tail``) and re-solves the binned maps for
        the corrected spectra; 'nmf' keeps the NMF factors.
    init, max_iter, tol, random_state : of the NMF (:func:`psnmf.engine.poisson_nmf.poisson_nmf`)
    solve_maps : bool, default True
        Re-solve the binned maps for moved spectra. ``False`` (callers that use only the
        spectra, e.g. the bootstrap) keeps the NMF's maps in ``maps`` and saves that solve.

    Returns
    -------
    BinnedFit
    """
    k = int(n_components)
    nmf = poisson_nmf(binned, k, simplex=True, init=init, max_iter=max_iter, tol=tol,
                      random_state=random_state, check_input=False)
    identity = np.eye(k)
    if spectra == "nmf":
        return BinnedFit(nmf=nmf, spectra=nmf.S, maps=nmf.A, transform=identity,
                         moved=np.zeros(k, dtype=bool), clusters=None)
    if spectra != "pure":
        raise ValueError(f"spectra={spectra!r} is not one of {SPECTRA_MODES}.")
    counts = np.asarray(binned.sum(axis=1), dtype=np.float64).ravel()
    S, T, moved, clusters = vertex_correction(
        nmf.A, nmf.S, counts, n_sd=vertex_sd, min_pixels=min_cluster,
        max_dispersion=max_dispersion, max_tail=max_tail,
    )
    maps = nmf.A
    if moved.any() and solve_maps:  # re-solve the binned maps for the corrected spectra
        maps = poisson_nmf(
            binned, k, A_init=np.full((binned.shape[0], k), 1.0 / k), S_init=S,
            update_S=False, max_iter=max_iter, tol=RESOLVE_TOL, check_input=False,
        ).A
    return BinnedFit(nmf=nmf, spectra=S, maps=maps, transform=T, moved=moved,
                     clusters=clusters)


def stage2_start(upsampled_maps: np.ndarray) -> np.ndarray:
    """Starting maps of the full-resolution stage from the upsampled stage-1 maps.

    Multiplicative updates cannot lift an abundance from zero, and stage 1 drives the
    abundances of absent phases to ~0 in whole bins, while a full-resolution pixel inside
    such a bin may still hold that phase. Every phase therefore starts at >= START_MIX / k.
    """
    k = upsampled_maps.shape[-1]
    return (1.0 - START_MIX) * upsampled_maps + START_MIX / k


def fit_full(
    counts: sp.csr_matrix,
    spectra: np.ndarray,
    binned_maps: np.ndarray,
    image_shape: tuple[int, int],
    bin_factor: int,
    *,
    stage2_spectra: str = "fixed",
    max_iter: int = 500,
    tol: float = 1e-7,
) -> NMFResult:
    """Stage 2: Poisson NMF of the full-resolution counts started from the binned stage.

    Parameters
    ----------
    counts : CSR (ny * nx, channels) counts, pixels in row-major image order
    spectra : (k, channels) spectra of the binned stage
    binned_maps : (binned pixels, k) or (nby, nbx, k) maps of the binned stage
    image_shape : (ny, nx)
    bin_factor : int
    stage2_spectra : {'fixed', 'free'}
        Solve the maps for the fixed spectra (one convex problem per pixel), or update
        both as in the paper's step 3.
    max_iter, tol : of :func:`psnmf.engine.poisson_nmf.poisson_nmf`

    Returns
    -------
    NMFResult
        ``A`` the full-resolution maps (pixels, k), ``S`` the spectra at the end of the
        stage (``spectra`` when fixed), ``scale`` the pixels' total counts.
    """
    if stage2_spectra not in STAGE2_MODES:
        raise ValueError(f"stage2_spectra={stage2_spectra!r} is not one of {STAGE2_MODES}.")
    k = spectra.shape[0]
    A0 = stage2_start(upsample_maps(binned_maps, image_shape, bin_factor).reshape(-1, k))
    return poisson_nmf(
        counts, k, simplex=True, A_init=A0, S_init=spectra,
        update_S=stage2_spectra == "free", max_iter=max_iter, tol=tol, check_input=False,
    )

