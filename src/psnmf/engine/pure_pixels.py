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
  fitted-model spectrum of the cluster's summed counts (:func:`summed_abundance`);
* :func:`face_cluster` and :func:`face_vertex_correction` - a vertex without any pure
  cluster moved to the corner where its faces meet (the pixels rich in it that hold none
  of one other vertex): the smallest simplex the data allow, where those faces are mixing
  lines with phases the data show pure (a thin layer between two phases);
  :func:`pixel_noise` gives their per-pixel noise.

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
    "Face",
    "TAIL_BAND",
    "PureCluster",
    "abundance_noise",
    "cluster_passes",
    "face_cluster",
    "face_vertex_correction",
    "pixel_noise",
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


def pixel_noise(A: np.ndarray, S: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """:func:`abundance_noise` at every pixel's own abundances: ``(pixels, k, k)``.

    The covariance per count of the simplex abundances of each row of ``A``; divided by a
    pixel's counts it is the covariance of that pixel's abundances. Computed in chunks of
    ``chunk`` pixels (the model means of a chunk are ``chunk x channels``).
    """
    A = np.asarray(A, dtype=np.float64)
    S = np.asarray(S, dtype=np.float64)
    npx, k = A.shape
    V = np.linalg.svd(np.eye(k) - 1.0 / k)[0][:, : k - 1]
    Q = (S[:, None, :] * S[None, :, :]).reshape(k * k, -1).T  # (channels, k * k)
    out = np.empty((npx, k, k))
    for lo in range(0, npx, chunk):
        m = A[lo:lo + chunk] @ S
        w = np.zeros_like(m)
        np.divide(1.0, m, out=w, where=m > 1e-12 * m.max(axis=1, keepdims=True))
        F = (w @ Q).reshape(-1, k, k)
        G = np.linalg.pinv(V.T @ F @ V)
        out[lo:lo + chunk] = V @ G @ V.T
    return out


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


def cluster_passes(c: PureCluster, j: int, min_pixels: int, max_dispersion: float,
            max_tail: float, min_depth: float) -> bool:
    """The cluster tests of :func:`vertex_correction`, plus its depth inside vertex ``j``
    (:func:`finer_vertex_correction`)."""
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
        if cluster_passes(c, j, min_pixels, max_dispersion, max_tail, min_depth):
            summed = np.asarray(X[np.flatnonzero(c.members)].sum(axis=0)).ravel()
            T[j] = summed_abundance(summed, S)
            moved[j] = True
    return T, moved, clusters


@dataclass
class Face:
    """The face of vertex ``j`` opposite vertex ``i`` found by :func:`face_cluster`.

    Attributes
    ----------
    i : int
        The vertex the face lies opposite to (the face is free of it).
    ratio : float
        Where the face cuts the edge from ``j`` towards ``i``: the face holds the pixels
        with ``a_i = ratio * a_j`` (0: the face of the current simplex).
    se : float
        Counting-noise standard error of ``ratio``.
    members : ndarray (pixels,) of bool
        The pixels on the face (within ``n_sd`` noise sd of it, rich enough in ``j``).
    size : int
        Number of members.
    summed : ndarray (k,)
        The fitted-model abundances of the members' summed counts.
    summed_se : ndarray (k,)
        Their counting-noise standard errors.
    above : float
        Pixels in the band of 4 noise sd just above the face (a little richer in ``i``),
        per member: small for a face, large where the members are the lower end of a
        continuum of mixtures with ``i``.
    below : float
        Pixels more than ``n_sd + 4`` noise sd below the face, per member: none beyond
        the tails of the noise for a face (no pixel holds less ``i`` than none).
    depth : float
        Mean distance of the members from the current face (``a_i = 0``), ``r a_j``, in
        noise sd of ``a_i - r a_j`` of each member.
    """

    i: int
    ratio: float
    se: float
    members: np.ndarray
    size: int
    summed: np.ndarray
    summed_se: np.ndarray
    above: float
    below: float
    depth: float = float("nan")


def face_cluster(
    A: np.ndarray,
    S: np.ndarray,
    X: Any,
    j: int,
    i: int,
    *,
    n_sd: float = 1.5,
    z_min: float = 3.0,
    start_frac: float = START_FRAC,
    max_iter: int = 100,
    noise: np.ndarray | None = None,
) -> Face:
    """The face of the data cloud through vertex ``j`` that is free of vertex ``i``.

    A phase that is never pure but touches two or more other phases - a thin layer between
    two others, a grain at a triple junction - has no pure cluster, but its mixtures with
    each neighbour lie on the faces of the simplex through its vertex: the pixels where it
    meets ``l`` hold ``j`` and ``l`` and none of ``i``. In the too-wide fitted simplex such
    a face shows as the pixels whose abundances satisfy ``a_i = r a_j`` within counting
    noise, with ``r > 0`` (the true vertex lies at ``r`` along the edge from ``j`` to ``i``).

    Only the pixels rich enough in ``j`` to carry its ratio are used: ``a_j`` more than
    ``z_min`` noise sd above zero. The face is the fixed point of::

        r = t_i / t_j       (t: the fitted-model abundances of the members' summed counts,
                             summed_abundance: no per-pixel clipping at the boundary)
        members = pixels with |a_i - r a_j| <= n_sd * sd(a_i - r a_j)

    started from the ``start_frac`` of those pixels with the lowest ratio ``a_i / a_j``.
    The band is symmetric: pixels on a face scatter to both sides of it, and a band cut
    on one side only would pull ``r`` towards that side. Every noise sd is the pixel's own
    (:func:`pixel_noise` divided by its counts), so the face found on a subset of the
    pixels that holds every pixel rich in ``j`` is the face found on the image.

    Parameters
    ----------
    A : (pixels, k) simplex abundances for the spectra ``S``
    S : (k, channels) spectra, rows on the simplex
    X : (pixels, channels) counts (CSR or ndarray), rows as in ``A``
    j, i : the vertex, and the vertex the face is free of
    n_sd, z_min, start_frac, max_iter : see above
    noise : (pixels, k, k), optional
        ``pixel_noise(A, S)`` when already computed.

    Returns
    -------
    Face
    """
    A = np.asarray(A, dtype=np.float64)
    S = np.asarray(S, dtype=np.float64)
    npx, k = A.shape
    n = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    valid = n > 0
    nan = float("nan")
    empty = Face(i=i, ratio=0.0, se=nan, members=np.zeros(npx, dtype=bool), size=0,
                 summed=np.full(k, nan), summed_se=np.full(k, nan), above=nan, below=nan)
    if not valid.any():
        return empty
    C = pixel_noise(A, S) if noise is None else noise
    n_safe = np.where(valid, n, 1.0)
    sd_j = np.sqrt(np.maximum(C[:, j, j], 0.0) / n_safe)
    rich = valid & (A[:, j] > z_min * sd_j)
    if rich.sum() <= k:
        return empty
    ratio = np.where(rich, A[:, i] / np.where(rich, A[:, j], 1.0), np.inf)
    m0 = max(k + 1, int(round(start_frac * rich.sum())))
    sel = np.zeros(npx, dtype=bool)
    sel[np.argsort(ratio, kind="stable")[:m0]] = True
    var_d = np.zeros(npx)
    z = np.zeros(npx)
    t = np.full(k, 1.0 / k)
    r = 0.0
    for _ in range(max_iter):
        summed = np.asarray(X[np.flatnonzero(sel)].sum(axis=0)).ravel()
        t = summed_abundance(summed, S)
        if t[j] <= 0:
            return empty
        r = float(t[i] / t[j])
        # variance per count of d = a_i - r a_j at each pixel
        var_d = np.maximum(C[:, i, i] - 2.0 * r * C[:, i, j] + r * r * C[:, j, j], 0.0)
        sd = np.sqrt(var_d / n_safe)
        z = np.full(npx, np.inf)
        ok = valid & (sd > 0)
        z[ok] = (A[ok, i] - r * A[ok, j]) / sd[ok]
        new = rich & (np.abs(z) <= n_sd)
        if new.sum() <= k:
            return empty
        if np.array_equal(new, sel):
            break
        sel = new
    size = int(sel.sum())
    total = float(n[sel].sum())
    # r - r_true ~ sum_p n_p d_p / sum_p n_p a_pj, each d_p of variance var_d / n_p
    se = float(np.sqrt(n[sel] @ var_d[sel]) / (n[sel] @ A[sel, j]))
    above = np.count_nonzero(rich & (z > n_sd) & (z <= n_sd + TAIL_BAND)) / size
    below = np.count_nonzero(rich & (z < -n_sd - TAIL_BAND)) / size
    C_sum = abundance_noise(t, S)
    sd_sel = np.sqrt(var_d[sel] / n[sel])
    depth = float(np.mean(r * A[sel, j] / np.where(sd_sel > 0, sd_sel, np.inf)))
    return Face(i=i, ratio=r, se=se, members=sel, size=size, summed=t,
                summed_se=np.sqrt(np.maximum(np.diag(C_sum), 0.0) / total), above=above,
                below=below, depth=depth)


def face_vertex_correction(
    A: np.ndarray,
    S: np.ndarray,
    X: Any,
    candidates: np.ndarray,
    anchors: np.ndarray,
    *,
    n_sd: float = 1.5,
    min_pixels: int = 20,
    max_tail: float = 1.0,
    max_below: float = 0.01,
    z_face: float = 3.0,
    z_min: float = 3.0,
    min_depth: float = 1.0,
    min_share: float = 0.25,
) -> tuple[np.ndarray, np.ndarray, list[list[Face] | None]]:
    """Move never-pure vertices to the corner where their faces meet (minimum volume).

    A vertex ``j`` without a pure cluster is bounded by the data only through its faces:
    for every other vertex ``i``, the pixels richest in ``j`` that hold none of ``i``
    (:func:`face_cluster`). With the other vertices held, the smallest simplex that keeps
    every pixel's abundances non-negative puts ``j`` at ``t`` with ``t_i / t_j = r_i``, the
    ratio of its face opposite ``i`` - for a phase that touches two different neighbours
    (a layer between two others) the corner where its two mixing lines meet, which is the
    phase itself.

    The corner is the phase's spectrum only where every face through the vertex is a face
    of the data, a mixing line of ``j`` with a phase the data show pure: then the faces
    fix the vertex. Where one is not (particles always on a support film, Y2Ti2O7
    nanoclusters always in ferrite), the lowest ratio in that direction is a property of
    the microstructure, not of the spectra, the corner is not determined, and the vertex
    is kept. A face is a face of the data by these tests, on the same counting-noise model
    as the pure-cluster tests (:func:`vertex_correction`):

    * at least ``min_pixels`` members; ``above < max_tail``: the members are a mode, not
      the lower end of a continuum of mixtures with ``i`` (as the tail test of a pure
      cluster); ``below <= max_below``: no pixel lies beyond the face by more than the
      noise allows (a face bounds the data);
    * the members hold one of the ``anchors`` (vertices with a pure cluster) other than
      ``i`` at more than ``z_face`` standard errors and at least ``min_share`` of that
      anchor's and ``j``'s summed abundance: the face is a mixing line of ``j`` with a
      phase the data show pure, populated along the edge towards it, not the cluster of
      ``j``'s richest pixels with a few contacts (mixing lines of the gate stack and the
      catalyst: 0.32-0.66; the Y2Ti2O7 nanoclusters of the ODS steel, which touch a few
      carbides: 0.04; the threshold 0.25 was set on those).

    The vertex then moves along each face that lies inside the current one:

    * ``r_i > z_face`` standard errors: the face lies inside the current simplex;
    * ``depth > min_depth``: the members lie more than ``min_depth`` noise sd of one
      member inside the current face. A face closer than that is within the band where
      the ML abundances of single pixels are clipped at the simplex boundary (as for the
      depth test of :func:`finer_vertex_correction`), and within the mixing that the
      probe's blur leaves near every neighbour: on Pt and Au particles and CeO2 grains
      on a support (depth 0.15-1.2, ratios 0.01-0.06) such moves made the angle better on
      some seeds and worse on others.

    Parameters
    ----------
    A : (pixels, k) simplex abundances for ``S`` (full resolution)
    S : (k, channels) spectra, rows on the simplex
    X : (pixels, channels) counts, rows as in ``A``
    candidates : (k,) bool, the vertices to try (those without a pure cluster)
    anchors : (k,) bool, the vertices moved to a pure cluster
    n_sd : width of a face in noise sd (:func:`face_cluster`)
    min_pixels, max_tail : as in :func:`vertex_correction`
    max_below : largest share of pixels beyond the face
    z_face : significance of a face's ratio and of its anchor's share, in standard errors
    z_min : least abundance of ``j`` of a pixel used, in noise sd (:func:`face_cluster`)
    min_depth : least depth of a face inside the current one, in member noise sd
    min_share : least share of the anchor in the members' summed abundance of it and ``j``

    Returns
    -------
    T : (k, k) row-stochastic transform (``S_new = T @ S``; identity rows where kept)
    moved : (k,) bool, which candidates moved
    faces : list, per candidate the Face opposite each other vertex (``None`` for the
        others)
    """
    k = S.shape[0]
    T = np.eye(k)
    moved = np.zeros(k, dtype=bool)
    anchors = np.asarray(anchors, dtype=bool)
    out: list[list[Face] | None] = [None] * k
    todo = np.flatnonzero(np.asarray(candidates, dtype=bool))
    noise = pixel_noise(A, S) if todo.size else None
    for j in todo:
        faces = [face_cluster(A, S, X, j, i, n_sd=n_sd, z_min=z_min, noise=noise)
                 for i in range(k) if i != j]
        out[j] = faces
        if not all(_face_supported(f, j, anchors, min_pixels, max_tail, max_below, z_face,
                                   min_share) for f in faces):
            continue
        row = np.zeros(k)
        row[j] = 1.0
        for f in faces:
            if f.ratio > z_face * f.se and f.depth > min_depth:
                row[f.i] = f.ratio
        if row.sum() > 1.0:
            T[j] = row / row.sum()
            moved[j] = True
    return T, moved, out


def _face_supported(f: Face, j: int, anchors: np.ndarray, min_pixels: int,
                    max_tail: float, max_below: float, z_face: float,
                    min_share: float) -> bool:
    """Whether the face bounds the data as a mixing line of ``j`` with an anchor (the tests
    of :func:`face_vertex_correction` but the ratio's)."""
    if not (f.size >= min_pixels and f.above < max_tail and f.below <= max_below):
        return False
    others = anchors.copy()
    others[[f.i, j]] = False
    t_l, t_j = f.summed[others], f.summed[j]
    return bool(np.any((t_l > z_face * f.summed_se[others])
                       & (t_l >= min_share * (t_l + t_j))))
