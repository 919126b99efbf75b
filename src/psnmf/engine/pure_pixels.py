"""Pure-pixel correction of the binned-stage simplex: arrays in, arrays out.

NMF is not unique: with noise, the Poisson likelihood of the binned data is nearly flat
along a family of enclosing simplices, and the multiplicative updates stop on a wider one
than the truth (for lamellae of a compound, the "compound" vertex may even slide to a
pure-element spectrum at the same loss). The functions here move each vertex of the
binned-stage simplex to the fitted-model spectrum of its pure cluster:

* :func:`abundance_noise` - the counting-noise covariance of a pixel's simplex abundances;
* :func:`pure_cluster` - the binned pixels whose abundance of a component lies within a
  few noise sd of the top of the cluster (:class:`PureCluster`);
* :func:`vertex_correction` - each vertex moved to its pure cluster where the top pixels
  form one, kept where they do not (a phase that is never pure);
* :func:`replay_vertex_correction` - the same moves on another binned fit (bootstrap
  replicates, data fission);
* :func:`finer_vertex_correction` - the vertices the binned stage kept, moved to a pure
  cluster found at a finer scale (fewer counts per pixel, more pure pixels), each to the
  fitted-model spectrum of the cluster's summed counts (:func:`summed_abundance`).

Examples
--------
Three phases, each with pure pixels, fitted in a too-wide simplex: the correction moves
every vertex back onto its pure cluster.

>>> import numpy as np
>>> import scipy.sparse as sp
>>> from psnmf.engine.poisson_nmf import solve_abundances
>>> rng = np.random.default_rng(0)
>>> S_wide = rng.dirichlet(np.full(40, 0.5), size=3)
>>> S_true = np.array([[0.85, 0.1, 0.05], [0.05, 0.9, 0.05], [0.1, 0.05, 0.85]]) @ S_wide
>>> A_true = np.repeat(np.eye(3), 150, axis=0)
>>> X = rng.poisson(2000 * A_true @ S_true).astype(float)
>>> A = solve_abundances(sp.csr_matrix(X), S_wide, max_iter=2000, tol=1e-8).A
>>> S, T, moved, clusters = vertex_correction(A, S_wide, X.sum(axis=1))
>>> moved.tolist(), [c.size >= 120 for c in clusters]
([True, True, True], [True, True, True])
>>> bool(np.abs(S - S_true).max() < 0.1 * np.abs(S_wide - S_true).max())
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

__all__ = [
    "START_FRAC",
    "TAIL_BAND",
    "PureCluster",
    "abundance_noise",
    "finer_vertex_correction",
    "pure_cluster",
    "replay_vertex_correction",
    "summed_abundance",
    "vertex_correction",
]

#: Width (noise sd) of the band below a pure cluster, see :attr:`PureCluster.tail`.
TAIL_BAND = 4.0
#: Fraction of the pixels, richest in a component, that starts its cluster search
#: (:func:`pure_cluster`).
START_FRAC = 0.2


def abundance_noise(t: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Covariance, per count, of the ML simplex abundances of a pixel of abundance ``t``.

    For a pixel of ``n`` counts drawn from the spectrum ``t @ S`` (multinomial), the Fisher
    information of the abundances restricted to the simplex (``k - 1`` free coordinates) is
    ``n V^T F V`` with ``F = S diag(1 / (t S)) S^T`` and ``V`` an orthonormal basis of the
    directions that keep the sum. The covariance of the abundances is then ``C / n`` with
    the returned ``C = V (V^T F V)^+ V^T`` (k, k). On the simulated samples its diagonal
    matches the scatter of the abundances of pure pixels to 5-15 % (less scatter where
    the estimates are clipped at the simplex boundary, which the information ignores).
    """
    t = np.asarray(t, dtype=np.float64)
    S = np.asarray(S, dtype=np.float64)
    k = S.shape[0]
    m = t @ S
    # channels the model gives (next to) no counts carry no information; dividing by their
    # near-zero means would overflow the information matrix
    keep = m > 1e-12 * m.max()
    F = (S[:, keep] / m[keep]) @ S[:, keep].T
    V = np.linalg.svd(np.eye(k) - 1.0 / k)[0][:, : k - 1]
    return V @ np.linalg.pinv(V.T @ F @ V) @ V.T


def _truncation(n_sd: float) -> tuple[float, float]:
    """Shift ``lam`` (in sd) and variance of a normal cluster cut at ``n_sd`` below its mean.

    At the fixed point of :func:`pure_cluster` the set mean ``t`` lies ``lam`` sd above the
    cluster centre and the set keeps ``a >= t - n_sd sd``, i.e. the normal truncated below at
    ``z0 = lam - n_sd``: ``lam = phi(z0) / (1 - Phi(z0))`` and the variance of what remains is
    ``1 + z0 lam - lam^2``.
    """
    lam = 0.0
    for _ in range(200):  # a contraction: converges in a few tens of steps
        z0 = lam - n_sd
        new = float(norm.pdf(z0) / norm.sf(z0))
        if abs(new - lam) < 1e-12:
            break
        lam = new
    z0 = lam - n_sd
    return lam, 1.0 + z0 * lam - lam**2


@dataclass
class PureCluster:
    """The pure cluster of one component found by :func:`pure_cluster`.

    Attributes
    ----------
    members : ndarray (pixels,) of bool
        The binned pixels of the cluster.
    abundances : ndarray (k,)
        Their count-weighted mean abundance vector (the vertex estimate, on the simplex).
    size : int
        Number of members.
    dispersion : float
        Variance of the members' abundance of the component, in units of the counting-noise
        variance of a single pure cluster (truncated at ``n_sd``): about 1 for a pure
        cluster, larger for a continuous tail (a phase that is never pure).
    tail : float
        Pixels whose abundance of the component lies in the band of 4 noise sd just below
        the cluster (as wide as the cluster itself), per member: about 0.1 below a pure
        cluster plus its mixed boundary pixels (0.15-0.9 on the built-in samples at
        180 x 180), 1.3 or more where the cluster is only the upper end of a continuous
        tail.
    noise_sd : float
        Counting-noise sd of the abundance of one member pixel of mean counts.
    n_iter : int
        Fixed-point iterations.
    """

    members: np.ndarray
    abundances: np.ndarray
    size: int
    dispersion: float
    tail: float
    noise_sd: float
    n_iter: int


def _fixed_point(
    A: np.ndarray, S: np.ndarray, n: np.ndarray, inv_sqrt_n: np.ndarray, j: int,
    n_sd: float, sel: np.ndarray, max_iter: int,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Iterate mean -> members of :func:`pure_cluster` from the members ``sel``."""
    valid = n > 0
    k = A.shape[1]
    t = np.full(k, 1.0 / k)
    sd = 0.0
    it = 0
    while it < max_iter and sel.any():
        it += 1
        w = n[sel]
        t = w @ A[sel] / w.sum()
        sd = float(np.sqrt(max(abundance_noise(t, S)[j, j], 0.0)))
        new = valid & (A[:, j] >= t[j] - n_sd * sd * inv_sqrt_n)
        if np.array_equal(new, sel):
            break
        sel = new
    return sel, t, sd, it


def pure_cluster(
    A: np.ndarray,
    S: np.ndarray,
    counts: np.ndarray,
    j: int,
    *,
    n_sd: float = 1.5,
    start_frac: float = START_FRAC,
    max_iter: int = 100,
) -> PureCluster:
    """The binned pixels that are pure in component ``j``, chosen from their counting noise.

    A pure pixel of a phase has the same abundance vector ``t`` (in the coordinates of the
    fitted simplex) as every other pure pixel of that phase, up to counting noise of sd
    ``sqrt(C_jj(t) / n_i)`` in its abundance of ``j`` (:func:`abundance_noise`, ``n_i`` the
    pixel's counts); mixed pixels lie below. The cluster is the fixed point of

        t = count-weighted mean abundance of the members,
        members = pixels with ``A[i, j] >= t_j - n_sd * sqrt(C_jj(t) / n_i)``,

    started from the ``start_frac`` of pixels richest in ``j`` (a start that wide stays off
    the simplex boundary, where the Fisher information is singular). Every pure pixel
    within ``n_sd`` noise sd below the top of the cluster is averaged, so the estimate
    uses as many pixels as are pure - hundreds for a matrix, tens for small grains - rather
    than a fixed fraction. ``n_sd = 1.5`` (chosen on seeds 0-1 of the built-in samples)
    balances the truncation, which lifts the mean by 0.19 sd, against the mixed pixels
    that come in at larger ``n_sd``.

    Parameters
    ----------
    A : (pixels, k) simplex abundances of the binned pixels (the NMF fit)
    S : (k, channels) spectra, rows on the simplex
    counts : (pixels,) total counts of each binned pixel; pixels without counts never join
    j : component
    n_sd, start_frac, max_iter : see above

    Returns
    -------
    PureCluster
    """
    A = np.asarray(A, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64).ravel()
    npx, k = A.shape
    if n.shape[0] != npx:
        raise ValueError(f"counts has {n.shape[0]} pixels but A has {npx}.")
    valid = n > 0
    inv_sqrt_n = np.zeros(npx)
    inv_sqrt_n[valid] = 1.0 / np.sqrt(n[valid])
    aj = np.where(valid, A[:, j], -np.inf)
    m0 = min(int(valid.sum()), max(k + 1, int(round(start_frac * valid.sum()))))
    start = np.zeros(npx, dtype=bool)
    start[np.argsort(aj, kind="stable")[npx - m0:]] = True
    sel, t, sd, it = _fixed_point(A, S, n, inv_sqrt_n, j, n_sd, start & valid, max_iter)
    size = int(sel.sum())
    if size == 0 or sd <= 0:
        nan = float("nan")
        return PureCluster(members=sel, abundances=t / t.sum(), size=size, dispersion=nan,
                           tail=nan, noise_sd=nan, n_iter=it)
    z = np.full(npx, -np.inf)
    z[valid] = (A[valid, j] - t[j]) / (sd * inv_sqrt_n[valid])
    dispersion = float(np.var(z[sel]) / _truncation(n_sd)[1]) if size > 1 else float("nan")
    below = int(np.count_nonzero((z < -n_sd) & (z >= -n_sd - TAIL_BAND)))
    return PureCluster(
        members=sel, abundances=t / t.sum(), size=size, dispersion=dispersion,
        tail=below / size, noise_sd=sd / np.sqrt(float(n[sel].mean())), n_iter=it,
    )


def vertex_correction(
    A: np.ndarray,
    S: np.ndarray,
    counts: np.ndarray,
    *,
    n_sd: float = 1.5,
    min_pixels: int = 20,
    max_dispersion: float = 1.5,
    max_tail: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[PureCluster]]:
    """Shrink a too-wide NMF simplex onto the pure clusters of its binned pixels.

    The likelihood of the binned data is nearly flat along a family of enclosing simplices
    and NMF stops on a wide one. Each vertex ``j`` is replaced by the fitted-model spectrum
    ``t_j @ S`` of its pure cluster (:func:`pure_cluster`): all binned pixels whose
    abundance of ``j`` is within ``n_sd`` counting-noise sd of the top of the cluster.

    A vertex is moved only when the top pixels form a cluster, by three tests on the same
    noise model (the thresholds were set on seeds 0-1 of the built-in samples):

    * at least ``min_pixels`` members: with fewer, a tail cannot be told from noise (the
      sd of their variance ratio exceeds 0.3);
    * ``dispersion <= max_dispersion``: the members scatter like counting noise (pure
      clusters with their mixed boundary pixels: 0.55-1.27);
    * ``tail < max_tail``: the cluster is a mode of the abundance distribution - the band
      of 4 noise sd just below it, as wide as the cluster, holds fewer pixels than the
      cluster (pure clusters with their mixed boundary pixels: 0.15-0.9).

    (Ranges at 180 x 180. On smaller images grains have more boundary per area: at
    96 x 96, 'low', the spinel cluster of the ceramic - pure spinel lies at 7-30 % of its
    NMF vertex, so its boundary mixtures crowd the band below - can fail the tests and
    keep its NMF vertex.)

    A phase that is never pure - particles on a support film - shows a handful of top
    pixels or the upper end of a continuous tail instead (at 'low': dispersion 1.5-2.5,
    tail 1.3-4.4), and its NMF vertex, bounded by the non-negativity of the spectra, is
    kept.

    Parameters
    ----------
    A : (pixels, k) simplex abundances of the binned pixels
    S : (k, channels) spectra of the fit, rows on the simplex
    counts : (pixels,) total counts of each binned pixel
    n_sd : width of the cluster in noise sd (:func:`pure_cluster`)
    min_pixels, max_dispersion, max_tail : the cluster tests

    Returns
    -------
    S_new : (k, channels) corrected spectra
    T : (k, k) row-stochastic transform used (``S_new = T @ S``)
    moved : (k,) bool, which vertices were moved
    clusters : list of PureCluster, one per component
    """
    k = S.shape[0]
    clusters = [pure_cluster(A, S, counts, j, n_sd=n_sd) for j in range(k)]
    moved = np.array([c.size >= min_pixels and c.dispersion <= max_dispersion
                      and c.tail < max_tail for c in clusters])
    T = np.eye(k)
    for j in np.flatnonzero(moved):
        T[j] = clusters[j].abundances
    return T @ S, T, moved, clusters


def replay_vertex_correction(
    A: np.ndarray,
    S: np.ndarray,
    moved: np.ndarray,
    counts: np.ndarray,
    *,
    n_sd: float = 1.5,
    average_on: np.ndarray | None = None,
) -> np.ndarray:
    """Move the vertices ``moved`` of another binned fit ``(A, S)`` to their pure clusters.

    For bootstrap replicates and data fission: the vertices that a fitted correction moved
    are moved again, each to the pure cluster of ``A`` (:func:`pure_cluster`, width
    ``n_sd``), without the cluster tests; the others are kept. With ``average_on``, the
    pixels are selected on ``A`` and their abundances averaged on ``average_on`` instead
    (data fission: select on one Poisson-thinned half, average on the other, so that the
    average carries no selection bias).

    Parameters
    ----------
    A : (binned pixels, k) simplex abundances of the fit
    S : (k, channels) its spectra
    moved : (k,) bool, the vertices to move
    counts : (binned pixels,) total counts of the binned pixels ``A`` was fitted to
    n_sd : width of a cluster in noise sd
    average_on : (binned pixels, k), optional
        Abundances to average over the selected pixels; default ``A``.

    Returns
    -------
    ndarray (k, channels) : the corrected spectra ``T @ S``
    """
    A = np.asarray(A, dtype=np.float64)
    S = np.asarray(S, dtype=np.float64)
    moved = np.asarray(moved, dtype=bool)
    if not moved.any():
        return S.copy()
    k = S.shape[0]
    B = A if average_on is None else np.asarray(average_on, dtype=np.float64)
    if B.shape != A.shape:
        raise ValueError(f"average_on has shape {B.shape}, A has {A.shape}.")
    n = np.asarray(counts, dtype=np.float64)
    T = np.eye(k)
    for j in np.flatnonzero(moved):
        sel = pure_cluster(A, S, n, j, n_sd=n_sd).members
        if sel.any():
            T[j] = n[sel] @ B[sel] / n[sel].sum()
    T /= T.sum(axis=1, keepdims=True)
    return T @ S


def summed_abundance(
    x: np.ndarray, S: np.ndarray, *, max_iter: int = 20000, tol: float = 1e-11
) -> np.ndarray:
    """Maximum-likelihood simplex abundances of one spectrum of counts for the spectra ``S``.

    The EM update of the simplex mixture, ``t <- t * S (x / tS) / n``, on the channels
    with counts (it never increases the Poisson deviance and keeps ``t`` on the simplex).
    For the summed counts of a cluster of pixels, ``t @ S`` is the cluster's fitted-model
    spectrum: no per-pixel abundance is clipped at the simplex boundary, as the mean of
    per-pixel estimates of few counts would be.

    Parameters
    ----------
    x : (channels,) counts
    S : (k, channels) spectra, rows on the simplex
    max_iter, tol : iteration cap; stop when no abundance changes by more than ``tol``

    Returns
    -------
    ndarray (k,) on the simplex (uniform when ``x`` has no counts)
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    S = np.asarray(S, dtype=np.float64)
    k = S.shape[0]
    t = np.full(k, 1.0 / k)
    keep = x > 0
    total = x[keep].sum()
    if total <= 0:
        return t
    Sk, xk = S[:, keep], x[keep]
    for _ in range(max_iter):
        model = np.maximum(t @ Sk, 1e-300)
        new = t * (Sk @ (xk / model)) / total
        new /= new.sum()
        done = np.abs(new - t).max() < tol
        t = new
        if done:
            break
    return t


def _passes(c: PureCluster, j: int, min_pixels: int, max_dispersion: float,
            max_tail: float, min_depth: float) -> bool:
    """The cluster tests of :func:`vertex_correction`, plus its depth inside vertex ``j``."""
    if not (c.size >= min_pixels and c.dispersion <= max_dispersion and c.tail < max_tail):
        return False
    return bool(1.0 - c.abundances[j] > min_depth * c.noise_sd)


def finer_vertex_correction(
    A: np.ndarray,
    S: np.ndarray,
    X: Any,
    candidates: np.ndarray,
    *,
    n_sd: float = 1.5,
    min_pixels: int = 20,
    max_dispersion: float = 1.5,
    max_tail: float = 1.0,
    min_depth: float = 1.0,
    start_frac: float | np.ndarray = START_FRAC,
) -> tuple[np.ndarray, np.ndarray, list[PureCluster | None]]:
    """Move vertices to pure clusters found at a finer scale than the binned stage's.

    A phase of small grains or thin layers has almost no pure ``b x b`` binned pixels,
    while at ``b / 2`` or full resolution many of its pixels are pure, each with fewer
    counts. At such a scale, ``A`` are the pixels' abundances for the spectra ``S`` (of the
    binned stage) and each candidate vertex ``j`` gets its pure cluster
    (:func:`pure_cluster`) and the tests of :func:`vertex_correction`, plus one: the
    cluster centre lies more than ``min_depth`` noise sd of one member pixel inside the
    vertex (``1 - t_j > min_depth * noise_sd``). A cluster closer to the vertex than that
    is cut off at the simplex boundary, where the ML abundances of single pixels are
    clipped: the data show no pure cluster inside the vertex, and the vertex - bounded by
    the non-negativity of the spectra - is already at the phase's spectrum as closely as
    the pure pixels can say (on small Cr-spinel grains, moving it to its cluster made its
    angle 5-20 % worse). A vertex that passes moves to ``summed_abundance(sum of the
    members' counts) @ S``, the fitted-model spectrum of the cluster.

    Parameters
    ----------
    A : (pixels, k) simplex abundances at this scale
    S : (k, channels) spectra, rows on the simplex
    X : (pixels, channels) counts at this scale (CSR or ndarray), rows as in ``A``
    candidates : (k,) bool, the vertices to try (those not moved yet)
    n_sd, min_pixels, max_dispersion, max_tail : as in :func:`vertex_correction`
    min_depth : float
        Least depth of the cluster centre inside the vertex, in member-pixel noise sd.
    start_frac : float or (k,) array
        Start of each cluster search (:func:`pure_cluster`), per component when an array:
        on a subset of the pixels (:mod:`psnmf.engine.scale_replay`) the fraction that
        gives the start the image's own rule would take.

    Returns
    -------
    T : (k, k) row-stochastic transform (``S_new = T @ S``; identity rows where kept)
    moved : (k,) bool, which candidates moved
    clusters : list, the PureCluster of each candidate (``None`` for the others)
    """
    k = S.shape[0]
    counts = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    T = np.eye(k)
    moved = np.zeros(k, dtype=bool)
    clusters: list[PureCluster | None] = [None] * k
    frac = np.broadcast_to(np.asarray(start_frac, dtype=np.float64), (k,))
    for j in np.flatnonzero(np.asarray(candidates, dtype=bool)):
        c = pure_cluster(A, S, counts, j, n_sd=n_sd, start_frac=float(frac[j]))
        clusters[j] = c
        if _passes(c, j, min_pixels, max_dispersion, max_tail, min_depth):
            summed = np.asarray(X[np.flatnonzero(c.members)].sum(axis=0)).ravel()
            T[j] = summed_abundance(summed, S)
            moved[j] = True
    return T, moved, clusters
