"""Held-out scores by count splitting: how psnmf chooses k, b and the TV weight.

Counts are Poisson, so binomial thinning splits them into independent parts with the same
means up to a factor (:func:`count_split`, :func:`count_folds`). A model fitted on one part
is scored by the Poisson deviance of the other (:func:`poisson_deviance`,
:func:`heldout_deviance`, :func:`heldout_deviance_maps`): a score of the prediction of new
counts that needs no ground truth. Predicted means below :data:`DEVIANCE_FLOOR` count as
the floor, so that zeros of a raw prediction and negative PCA values give a finite score.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf._validation import check_counts_values, check_finite_array
from psnmf.engine import _kernels as kernels
from psnmf.engine.tv_maps import SMOOTHING_GRID, check_penalty, smooth_maps

logger = logging.getLogger(__name__)

#: Smallest predicted mean (counts) in every held-out deviance.
DEVIANCE_FLOOR = 1e-6


@dataclass
class SmoothingChoice:
    """Evidence for the smoothing weight chosen by :func:`choose_smoothing`.

    Attributes
    ----------
    lam : float
        Chosen weight (counts units), for the full data.
    relative : float
        Chosen weight divided by the mean counts per pixel of the full data.
    grid : list of float
        Candidate weights (counts units).
    deviance : list of float
        Held-out Poisson deviance per count of each candidate (lower is better).
    penalty : str
    """

    lam: float
    relative: float
    grid: list[float] = field(default_factory=list)
    deviance: list[float] = field(default_factory=list)
    penalty: str = "tv"

    def to_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "relative": self.relative, "grid": list(self.grid),
                "deviance": list(self.deviance), "penalty": self.penalty}


def heldout_deviance_maps(
    X2: sp.csr_matrix, A: np.ndarray, S: np.ndarray, *, floor: float = DEVIANCE_FLOOR
) -> float:
    """Deviance per count of held-out counts ``X2`` over the channels, given each pixel's total.

    ``2 sum_ij X2_ij log(X2_ij / M_ij)`` with ``M_ij = t_i (a_i S)_j``, ``t_i`` the pixel's
    held-out total: the Poisson deviance with every pixel's count scale at its
    maximum-likelihood value, so it scores only what the maps and spectra predict (how a
    pixel's counts spread over the channels). Predicted means below ``floor`` count as
    ``floor``, as in :func:`heldout_deviance`: fitted spectra can be exactly
    zero in a channel, and one held-out count there would otherwise weigh more than all the
    rest. Computed from the non-zeros only.
    """
    t = np.asarray(X2.sum(axis=1)).ravel()
    total = float(t.sum())
    if total <= 0:
        return float("nan")
    M = np.ascontiguousarray(t[:, None] * A, dtype=np.float64)  # rows scaled to the totals
    _, _, xlogm = kernels.ratio_numerators(X2, M, S, want_A=False, want_S=False,
                                           floor=floor)
    return 2.0 * (kernels.xlogx_sum(X2.data) - xlogm) / total


def central_window(
    X: sp.csr_matrix, image_shape: tuple[int, int], max_pixels: int
) -> tuple[sp.csr_matrix, tuple[int, int]]:
    """The rows of ``X`` in the central window of at most ``max_pixels`` pixels."""
    ny, nx = image_shape
    if ny * nx <= max_pixels:
        return X, image_shape
    side = max(int(math.isqrt(int(max_pixels))), 2)
    wy, wx = min(ny, side), min(nx, side)
    if wy < side:  # thin image: use the spare budget along x
        wx = min(nx, max_pixels // wy)
    elif wx < side:
        wy = min(ny, max_pixels // wx)
    y0, x0 = (ny - wy) // 2, (nx - wx) // 2
    rows = ((np.arange(y0, y0 + wy)[:, None] * nx) + np.arange(x0, x0 + wx)).ravel()
    return X[rows], (wy, wx)


def choose_smoothing(
    X: Any,
    S: np.ndarray,
    image_shape: tuple[int, int],
    *,
    penalty: str = "tv",
    grid: tuple[float, ...] = SMOOTHING_GRID,
    fraction: float = 0.5,
    random_state: int | None = 0,
    max_iter: int = 1000,
    tol: float = 1e-5,
    patience: int = 1,
    max_pixels: int = 128 * 128,
) -> SmoothingChoice:
    """Choose the smoothing weight by held-out Poisson deviance (count splitting).

    The counts are thinned into ``X1`` (``fraction``) and ``X2``; for each candidate
    weight (``grid`` times the mean counts per pixel of the full data, in increasing order,
    starting from the per-pixel maps of ``X1`` and each warm-started from the previous;
    nothing of ``X2`` enters a fit) the maps are fitted to ``X1`` with the spectra
    ``S`` fixed and scored by the deviance of ``X2`` (:func:`heldout_deviance_maps`). The
    weight with the lowest deviance is returned.

    Parameters
    ----------
    X : CSR (pixels, channels) counts
    S : ndarray (k, channels) fixed spectra
    image_shape : (ny, nx)
    penalty, max_iter, tol : as in :func:`smooth_maps`
    grid : tuple of float
        Candidate weights relative to the mean counts per pixel.
    fraction : float
        Share of the counts used for fitting.
    random_state : int or None
        Seed of the count split.
    max_pixels : int
        The choice is made on the central window of at most this many pixels (the weight
        depends on the counts per pixel and the size of the features, which a window of
        ~128 x 128 pixels shows as well as the whole map, at a fraction of the time).
    patience : int
        Stop trying larger weights once the deviance has risen above its minimum this many
        times in a row (the held-out deviance is unimodal in the weight in practice; larger
        weights are also the slowest to solve).

    Returns
    -------
    SmoothingChoice
    """
    check_penalty(penalty)
    if not grid or min(grid) < 0:
        raise ValueError(f"grid must be non-negative weights, got {grid!r}.")
    X = sp.csr_matrix(X, dtype=np.float64)
    k = S.shape[0]
    cpp = float(X.sum()) / X.shape[0]
    X, image_shape = central_window(X, image_shape, max_pixels)
    n = X.shape[0]
    X1, X2 = count_split(X, fraction, random_state=random_state)
    # per-pixel maps of the fitted half (each pixel to convergence): the start of the path
    A = np.full((n, k), 1.0 / k)
    kernels.solve_fixed_spectra(X1, A, np.ascontiguousarray(S, dtype=np.float64),
                                simplex=True, max_iter=1000, tol=1e-7)
    lams = sorted(float(g) * cpp for g in grid)
    devs = []
    for lam in lams:
        if lam > 0:
            A = smooth_maps(X1, A, S, image_shape, lam, penalty=penalty, max_iter=max_iter,
                            tol=tol).maps
        devs.append(heldout_deviance_maps(X2, A, S))
        logger.debug("smoothing %.4g: held-out deviance %.6f", lam, devs[-1])
        best = int(np.nanargmin(devs))
        if len(devs) - 1 - best >= patience:  # the deviance has risen `patience` times
            break
    best = int(np.nanargmin(devs))
    lams = lams[: len(devs)]
    return SmoothingChoice(lam=lams[best], relative=lams[best] / cpp if cpp > 0 else 0.0,
                           grid=lams, deviance=devs, penalty=penalty)


def count_split(
    X, fraction: float = 0.5, random_state: int | np.random.Generator | None = None
):
    """Binomial thinning: split counts into two independent Poisson parts.

    If ``X ~ Poisson(M)``, then ``X1 ~ Binomial(X, fraction)`` and ``X2 = X - X1`` are
    independent with ``X1 ~ Poisson(fraction * M)`` and ``X2 ~ Poisson((1 - fraction) * M)``.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of non-negative integer counts
    fraction : float in (0, 1)
    random_state : seed or Generator

    Returns
    -------
    X1, X2 : same type as ``X``
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), e.g. 0.5, got {fraction}.")
    check_counts_values(X, "X")
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state)
    )
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        n = np.rint(X.data).astype(np.int64)
        d1 = rng.binomial(n, fraction)
        idx, ptr = X.indices.copy(), X.indptr.copy()
        X1 = sp.csr_matrix((d1.astype(np.float64), idx, ptr), shape=X.shape)
        X2 = sp.csr_matrix(((n - d1).astype(np.float64), idx.copy(), ptr.copy()), shape=X.shape)
        X1.eliminate_zeros()
        X2.eliminate_zeros()
        return X1, X2
    arr = np.asarray(X)
    n = np.rint(arr).astype(np.int64)
    X1 = rng.binomial(n, fraction)
    return X1, n - X1


def poisson_deviance(X, M, *, floor: float = DEVIANCE_FLOOR, per_count: bool = True) -> float:
    """Poisson deviance ``2 sum [X log(X / M) - (X - M)]`` of counts ``X`` under means ``M``.

    Parameters
    ----------
    X : counts, ndarray or sparse (any shape matching ``M``)
    M : predicted means (ndarray); values below ``floor`` (e.g. zeros of a raw, undenoised
        prediction, or negative values of PCA) are raised to ``floor`` so the deviance stays
        finite. The floor is part of the score: report it with the numbers.
    floor : float
    per_count : bool
        Divide by the total counts of ``X`` (comparable across datasets).
    """
    M = np.maximum(check_finite_array(M, "M"), floor)
    check_counts_values(X, "X")
    if int(np.prod(X.shape if sp.issparse(X) else np.shape(X))) != M.size:
        raise ValueError(
            f"X (shape {X.shape if sp.issparse(X) else np.shape(X)}) and M (shape {M.shape}) "
            "must hold the same number of values: M predicts the mean of every count of X."
        )
    if sp.issparse(X):
        Xc = sp.coo_matrix(X)
        Mf = M.reshape(Xc.shape)
        x = Xc.data.astype(float)
        m_nz = Mf[Xc.row, Xc.col]
        dev = 2.0 * (np.sum(x * np.log(x / m_nz)) - x.sum() + Mf.sum())
        total = x.sum()
    else:
        x = np.asarray(X, dtype=float).reshape(M.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(x > 0, x * np.log(x / M), 0.0)
        dev = 2.0 * (t.sum() - x.sum() + M.sum())
        total = x.sum()
    return float(dev / total) if per_count and total > 0 else float(dev)


def heldout_deviance(
    X2: sp.csr_matrix, predict: Any, *, floor: float = DEVIANCE_FLOOR, chunk: int = 2048
) -> float:
    """Poisson deviance per count of held-out counts under a prediction, by row blocks.

    The same number as ``poisson_deviance(X2, M, floor=floor)`` with ``M`` the full
    prediction, without holding ``M`` in memory at once.

    Parameters
    ----------
    X2 : CSR (pixels, channels) held-out counts
    predict : callable ``slice -> ndarray (rows, channels)`` or an array (pixels, channels)
    floor : float
        Predicted means below it count as ``floor`` (so zeros of a raw prediction and
        negative PCA values give a finite score).
    """
    X2 = sp.csr_matrix(X2)
    n = X2.shape[0]
    total = float(X2.sum())
    if total <= 0:
        return float("nan")
    dev = 0.0
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        block = predict(sl) if callable(predict) else np.asarray(predict[sl])
        dev += poisson_deviance(X2[sl], block, floor=floor, per_count=False)
    return dev / total


def count_folds(X: sp.csr_matrix, n_folds: int, seed: int | None) -> list[sp.csr_matrix]:
    """Split counts into ``n_folds`` independent Poisson parts of equal mean (seeded).

    Repeated binomial thinning (:func:`count_split`): fold ``j`` takes a
    fraction ``1 / (n_folds - j)`` of what the earlier folds left.
    """
    rng = np.random.default_rng(seed)
    folds, rest = [], sp.csr_matrix(X)
    for j in range(n_folds - 1):
        part, rest = count_split(rest, 1.0 / (n_folds - j), random_state=rng)
        folds.append(part)
    folds.append(rest)
    return folds
