"""Errors of a decomposition against the ground truth, and the oracle limits of the counts.

* :func:`spectral_angle` - eq. (1) of the paper, in degrees.
* :func:`map_mse` - eq. (2) of the paper.
* :func:`match_components` - optimal one-to-one matching of found to reference components
  (Hungarian algorithm on the spectral angles).
* :func:`compare_to_truth` - angles and map MSEs per true phase after matching.
* :func:`relative_error` - the denoising error against a noise-free cube.
* :func:`oracle_spectra`, :func:`oracle_maps` and :func:`oracle_limits` - what is possible
  from these counts: the maximum-likelihood spectra given the true maps, and the
  maximum-likelihood maps (pixel by pixel) given the true spectra. Both are convex problems,
  so their errors are a floor set by the counting noise alone, against which a method's
  errors are read as ratios.

The ground-truth-free score for real data (count splitting, held-out deviance) is in
:mod:`psnmf.selection`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from psnmf._validation import check_finite_array
from psnmf.engine.poisson_nmf import NMFResult, poisson_nmf

#: Stopping rule of :func:`oracle_limits` (the quality and coverage benchmarks).
ORACLE_MAX_ITER = 2000
ORACLE_TOL = 1e-8


def spectral_angle(v1: np.ndarray, v2: np.ndarray) -> float | np.ndarray:
    """Spectral angle ``arccos(dot(v1, v2) / (|v1| |v2|))`` in degrees (eq. 1 of the paper).

    Works on the last axis, so stacks of spectra broadcast.

    Examples
    --------
    >>> round(spectral_angle(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 9)
    45.0
    """
    v1 = check_finite_array(v1, "v1")
    v2 = check_finite_array(v2, "v2")
    if v1.ndim == 0 or v2.ndim == 0 or v1.shape[-1] != v2.shape[-1]:
        raise ValueError(
            f"v1 and v2 must be spectra with the same number of channels (last axis), got "
            f"shapes {v1.shape} and {v2.shape}."
        )
    try:
        np.broadcast_shapes(v1.shape, v2.shape)
    except ValueError:
        raise ValueError(
            f"v1 and v2 stacks of spectra do not broadcast: shapes {v1.shape} and {v2.shape}."
        ) from None
    num = np.sum(v1 * v2, axis=-1)
    den = np.linalg.norm(v1, axis=-1) * np.linalg.norm(v2, axis=-1)
    cos = np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return float(ang) if np.ndim(ang) == 0 else ang


def map_mse(m1: np.ndarray, m2: np.ndarray) -> float:
    """Mean squared error between two maps of the same shape (eq. 2 of the paper).

    Examples
    --------
    >>> map_mse(np.zeros((2, 2)), np.full((2, 2), 0.5))
    0.25
    """
    m1 = check_finite_array(m1, "m1")
    m2 = check_finite_array(m2, "m2")
    if m1.shape != m2.shape:
        raise ValueError(
            f"maps m1 and m2 must have the same shape, got {m1.shape} and {m2.shape}."
        )
    return float(np.mean((m1 - m2) ** 2))


def match_components(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Optimal matching of found spectra to reference spectra.

    Parameters
    ----------
    found : ndarray (k_found, channels)
    reference : ndarray (k_ref, channels)

    Returns
    -------
    order : ndarray (k_ref,) of int
        ``found[order[i]]`` is the component matched to ``reference[i]`` (Hungarian
        algorithm minimising the total spectral angle). Requires ``k_found >= k_ref``.

    Examples
    --------
    >>> ref = np.eye(3)
    >>> match_components(ref[[2, 0, 1]], ref).tolist()
    [1, 2, 0]
    """
    found = check_finite_array(found, "found")
    reference = check_finite_array(reference, "reference")
    if found.ndim != 2 or reference.ndim != 2 or found.shape[1] != reference.shape[1]:
        raise ValueError(
            "found and reference must be (components, channels) arrays with the same "
            f"number of channels, got shapes {found.shape} and {reference.shape}."
        )
    if found.shape[0] < reference.shape[0]:
        raise ValueError(
            f"cannot match {found.shape[0]} found components to {reference.shape[0]} "
            "references: need at least as many found as references."
        )
    cost = spectral_angle(reference[:, None, :], found[None, :, :])
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(reference.shape[0], dtype=int)
    order[rows] = cols
    return order


def compare_to_truth(
    spectra: np.ndarray,
    maps: np.ndarray,
    true_spectra: np.ndarray,
    true_maps: np.ndarray,
) -> dict[str, np.ndarray]:
    """Match components to the truth and return per-phase angles and map MSEs.

    Returns
    -------
    dict with ``order`` (found index per true phase), ``angle`` (degrees) and ``mse``.

    Examples
    --------
    >>> S = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> A = np.array([[[1.0, 0.0], [0.5, 0.5]]])            # (1, 2, 2) maps
    >>> res = compare_to_truth(S[::-1], A[..., ::-1], S, A)  # found in the other order
    >>> res["order"].tolist(), res["angle"].tolist(), res["mse"].tolist()
    ([1, 0], [0.0, 0.0], [0.0, 0.0])
    """
    order = match_components(spectra, true_spectra)
    angles = np.array(
        [spectral_angle(spectra[o], t) for o, t in zip(order, true_spectra, strict=True)]
    )
    mses = np.array(
        [map_mse(maps[..., o], true_maps[..., i]) for i, o in enumerate(order)]
    )
    return {"order": order, "angle": angles, "mse": mses}


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Relative squared error ``|estimate - truth|^2 / |truth|^2`` (denoising error).

    Examples
    --------
    >>> relative_error(np.array([1.0, 1.0]), np.array([1.0, 2.0]))
    0.2
    """
    estimate = check_finite_array(estimate, "estimate")
    truth = check_finite_array(truth, "truth")
    if estimate.shape != truth.shape:
        raise ValueError(
            f"estimate and truth must have the same shape, got {estimate.shape} vs "
            f"{truth.shape}."
        )
    den = float(np.sum(truth**2))
    if not den > 0:
        raise ValueError(
            "truth is all zeros, so the relative error is undefined; compare with "
            "map_mse or poisson_deviance instead."
        )
    return float(np.sum((estimate - truth) ** 2) / den)


# -----------------------------------------------------------------------------------------
# Oracles
# -----------------------------------------------------------------------------------------
def _counts_matrix(counts: Any) -> sp.csr_matrix:
    """Counts cube ``(..., channels)`` as a float64 CSR matrix ``(pixels, channels)``."""
    arr = counts if sp.issparse(counts) else np.asarray(counts)
    if not sp.issparse(arr):
        arr = arr.reshape(-1, arr.shape[-1])
    return sp.csr_matrix(arr, dtype=np.float64)


def oracle_spectra(
    counts: Any,
    true_maps: np.ndarray,
    *,
    max_iter: int = ORACLE_MAX_ITER,
    tol: float = ORACLE_TOL,
) -> NMFResult:
    """Maximum-likelihood spectra given the true maps.

    Poisson NMF with the abundances fixed at ``true_maps`` (``update_A=False``), started
    from flat spectra.

    Parameters
    ----------
    counts : array-like (..., channels) or sparse (pixels, channels)
        The counts.
    true_maps : ndarray (..., k)
        The true abundance maps, one row per pixel of ``counts``.
    max_iter, tol : passed to :func:`psnmf.engine.poisson_nmf.poisson_nmf`.

    Returns
    -------
    NMFResult
        ``.S`` holds the oracle spectra (k, channels).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> S = rng.dirichlet(np.ones(40), size=2)
    >>> A = rng.dirichlet(np.ones(2), size=300)
    >>> X = rng.poisson(500 * A @ S)
    >>> res = oracle_spectra(X, A)
    >>> bool(np.all(spectral_angle(res.S, S) < 3))
    True
    """
    X = _counts_matrix(counts)
    k = true_maps.shape[-1]
    ne = X.shape[1]
    return poisson_nmf(X, k, A_init=np.asarray(true_maps).reshape(-1, k),
                       S_init=np.full((k, ne), 1.0 / ne), update_A=False,
                       max_iter=max_iter, tol=tol)


def oracle_maps(
    counts: Any,
    true_spectra: np.ndarray,
    *,
    max_iter: int = ORACLE_MAX_ITER,
    tol: float = ORACLE_TOL,
) -> NMFResult:
    """Maximum-likelihood maps given the true spectra, pixel by pixel.

    Poisson NMF with the spectra fixed at ``true_spectra`` (``update_S=False``), started
    from equal abundances.

    Parameters
    ----------
    counts : array-like (..., channels) or sparse (pixels, channels)
        The counts.
    true_spectra : ndarray (k, channels)
        The true spectra.
    max_iter, tol : passed to :func:`psnmf.engine.poisson_nmf.poisson_nmf`.

    Returns
    -------
    NMFResult
        ``.A`` holds the oracle abundances (pixels, k); reshape to the image.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> S = rng.dirichlet(np.ones(40), size=2)
    >>> A = rng.dirichlet(np.ones(2), size=300)
    >>> X = rng.poisson(500 * A @ S)
    >>> res = oracle_maps(X, S)
    >>> bool(map_mse(res.A, A) < 0.01)
    True
    """
    X = _counts_matrix(counts)
    k = true_spectra.shape[0]
    return poisson_nmf(X, k, A_init=np.full((X.shape[0], k), 1.0 / k), S_init=true_spectra,
                       update_S=False, max_iter=max_iter, tol=tol)


@dataclass
class OracleLimits:
    """Oracle errors per true phase.

    Attributes
    ----------
    angle : ndarray (k,)
        Spectral angle (degrees) of the ML spectra given the true maps.
    mse : ndarray (k,)
        Map MSE of the per-pixel ML maps given the true spectra.
    spectra : ndarray (k, channels)
        The oracle spectra.
    maps : ndarray (ny, nx, k)
        The oracle maps.
    """

    angle: np.ndarray
    mse: np.ndarray
    spectra: np.ndarray
    maps: np.ndarray


def oracle_limits(
    dataset: Any, max_iter: int = ORACLE_MAX_ITER, tol: float = ORACLE_TOL
) -> OracleLimits:
    """Oracle spectra and oracle maps of a simulated dataset, with their errors.

    Parameters
    ----------
    dataset : SimulatedDataset
        With ``counts`` (ny, nx, channels), ``maps`` (ny, nx, k), ``spectra`` (k, channels).
    max_iter, tol : passed to :func:`oracle_spectra` and :func:`oracle_maps`.

    Returns
    -------
    OracleLimits

    Examples
    --------
    >>> from psnmf.simulate import mantle
    >>> ds = mantle("medium", seed=0, shape=(24, 24))
    >>> orc = oracle_limits(ds)
    >>> orc.angle.shape, orc.maps.shape
    ((3,), (24, 24, 3))
    """
    maps, spectra = dataset.maps, dataset.spectra
    k = maps.shape[-1]
    rs = oracle_spectra(dataset.counts, maps, max_iter=max_iter, tol=tol)
    rm = oracle_maps(dataset.counts, spectra, max_iter=max_iter, tol=tol)
    m = rm.A.reshape(maps.shape)
    angle = np.array([spectral_angle(rs.S[i], spectra[i]) for i in range(k)])
    mse = np.array([map_mse(m[..., i], maps[..., i]) for i in range(k)])
    return OracleLimits(angle=angle, mse=mse, spectra=rs.S, maps=m)
