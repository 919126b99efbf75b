"""The finer-scale vertex moves replayed on resampled and split counts.

:func:`psnmf.engine.two_stage.refine_vertices` moves a vertex the binned stage kept to the
fitted-model spectrum of a pure cluster found at a finer scale (``b / 2``, ..., full
resolution). Error bars must follow such a vertex: a bootstrap replicate has to redraw the
counts of the finer-scale pixels and re-apply the same move rule, and the
selection-debiased spectra have to select the cluster on one half of those counts and
average the other. Redrawing the whole image at every finer scale for every replicate
would cost far more than the binned stage the bootstrap refits, so only the pixels that
can matter are kept:

* :func:`scale_reaches` - at each finer scale, the pixels whose fitted abundance of a
  vertex lies within reach of its cluster (the cluster, the band below it that the tail
  test counts, and a margin for the replicates' noise) (:class:`ScaleReach`), with their
  counts and the fitted model's means there;
* :func:`replay_finer_scales` - one replicate: Poisson counts of those pixels drawn from
  the fitted model, abundances solved for the replicate's spectra, and
  :func:`psnmf.engine.pure_pixels.finer_vertex_correction` run on each vertex's reach,
  coarsest scale first, exactly as the fit ran it on the whole image, then the vertices
  still kept tried for their faces (:func:`psnmf.engine.pure_pixels.face_vertex_correction`);
* :func:`fission_rows` - data fission at one scale: the counts of the reach split into two
  independent Poisson halves, the cluster selected on one and its summed counts taken
  from the other.

At full resolution the reach of every vertex is the whole image: a face takes every
pixel rich in its vertex (:func:`psnmf.engine.pure_pixels.face_cluster`), and a vertex
moved at full resolution may have moved by its faces; the replicate of such a fit costs
one abundance solve of the image there. Elsewhere, a pixel outside a vertex's reach lies
more than ``n_sd + TAIL_BAND + margin`` noise sd below the cluster in the fit, so it
cannot join the cluster nor the tail band of a replicate unless its noise exceeds
``margin`` sd; the cluster search starts from the share of the reach that the image-wide
rule's start (:data:`psnmf.engine.pure_pixels.START_FRAC` of all the pixels) would take.

The finer-scale counts of a replicate are drawn independently of its binned counts: the
clusters are small grains, a small part of the binned data, and a joint draw would need
the full-resolution image.

What the reach saves depends on the counts per pixel. On the ODS steel at 96 x 96,
'medium', the carbide's reach is 120 of 2304 pixels at b = 2 (it moves there, so its
replicates rarely need full resolution). At 'low' counts a pixel's noise sd is so wide
that the reach is the whole image: on the thin stack at 128 x 128, 'low' (vertices moved
at b = 2 and 1), every pixel at both scales, and 8 replicates took 12.8 CPU s against 6.1
for the binned stage alone.
A replicate then costs at most one Poisson draw (in bands,
:func:`psnmf.engine.poisson_nmf.poisson_draw`) and one abundance solve of the image at
each finer scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from psnmf.engine.binning import bin_counts
from psnmf.engine.poisson_nmf import poisson_draw, solve_abundances
from psnmf.engine.priors import SpectralPriors
from psnmf.engine.pure_pixels import (
    START_FRAC,
    TAIL_BAND,
    abundance_noise,
    cluster_passes,
    face_cluster,
    face_vertex_correction,
    finer_vertex_correction,
    pixel_noise,
    pure_cluster,
    summed_abundance,
)
from psnmf.engine.two_stage import MIN_DEPTH, finer_scales, scale_start

__all__ = [
    "REACH_MARGIN",
    "FinerReplay",
    "ScaleReach",
    "fission_rows",
    "replay_finer_scales",
    "scale_reaches",
]

#: Margin of a reach below the tail band, in noise sd of a pixel (see the module docstring).
REACH_MARGIN = 3.0


@dataclass
class ScaleReach:
    """The pixels at one finer scale that can enter the pure cluster of a vertex.

    Attributes
    ----------
    scale : int
        Bin factor of the scale (1: full resolution).
    pixels : ndarray (m,) of int
        The pixels (rows of the counts at that scale) in the reach of any vertex.
    counts : CSR (m, channels)
        The data's counts of those pixels.
    weights : ndarray (m, k)
        Each pixel's counts times its fitted abundances for the fitted spectra: the
        fitted model's means are ``weights @ spectra``. The members of the cluster of a
        vertex the fit moved at a finer scale are pure in that vertex (see
        :func:`scale_reaches`).
    start : ndarray (m, k)
        Those abundances (a start for the solves of replicate counts).
    rows : dict
        Vertex -> positions (in ``pixels``) of its reach.
    start_frac : ndarray (k,)
        Per vertex, the fraction of its reach that starts its cluster search.
    """

    scale: int
    pixels: np.ndarray
    counts: sp.csr_matrix
    weights: np.ndarray
    start: np.ndarray
    rows: dict[int, np.ndarray]
    start_frac: np.ndarray


@dataclass
class FinerReplay:
    """One replay of the finer-scale moves (:func:`replay_finer_scales`).

    Attributes
    ----------
    spectra : ndarray (k, channels)
        The spectra after the moves.
    scales : ndarray (k,) of int
        The scale at which each vertex moved in the replay (0: not moved there).
    steps : list of (ScaleReach, counts, basis, moved)
        Per scale where a vertex was tried: its reach, the counts drawn there (CSR, rows
        as ``reach.pixels``), the spectra the moves there started from, and which
        vertices moved (for :func:`fission_rows`).
    """

    spectra: np.ndarray
    scales: np.ndarray
    steps: list[tuple[ScaleReach, sp.csr_matrix, np.ndarray, np.ndarray]] = field(
        default_factory=list)


def _reach_of(A: np.ndarray, S: np.ndarray, n: np.ndarray, j: int, n_sd: float,
              margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose abundance of ``j`` lies within ``n_sd + TAIL_BAND + margin`` noise sd
    below the top of its cluster (:func:`psnmf.engine.pure_pixels.pure_cluster`), and the
    cluster's members."""
    c = pure_cluster(A, S, n, j, n_sd=n_sd)
    valid = n > 0
    if c.size == 0:
        none = np.zeros(0, dtype=np.int64)
        return none, none
    sd = float(np.sqrt(max(abundance_noise(c.abundances, S)[j, j], 0.0)))
    width = (n_sd + TAIL_BAND + margin) * sd / np.sqrt(np.where(valid, n, 1.0))
    return np.flatnonzero(valid & (A[:, j] >= c.abundances[j] - width)), np.flatnonzero(
        c.members)


def scale_reaches(
    counts: sp.csr_matrix,
    image_shape: tuple[int, int],
    bin_factor: int,
    spectra: np.ndarray,
    binned_maps: np.ndarray,
    vertices: np.ndarray,
    *,
    n_sd: float = 1.5,
    margin: float = REACH_MARGIN,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> list[ScaleReach]:
    """The reach of each vertex at every finer scale of a fit, coarsest first.

    At each scale of :func:`psnmf.engine.two_stage.finer_scales` the pixels' abundances are
    solved for the fitted ``spectra`` (started from the ``binned_maps``, as
    :func:`psnmf.engine.two_stage.refine_vertices` starts them) and every vertex in
    ``vertices`` gets the pixels within reach of its cluster (see the module docstring).
    The fitted model of the reach is each pixel's counts times its abundances, except
    that the members of each vertex's cluster (seen from the fitted spectra) are pure in
    that vertex. That is what the fit says of them: their abundances scatter like counting
    noise about one vector (the cluster tests), whose spectrum is the vertex. Their ML
    abundances themselves carry one draw of that noise, clipped at the simplex boundary,
    so their mean lies inside the vertex; replicates drawn from them move the vertex
    inwards. On the M23C6 of the ODS steel (96 x 96, 'medium', 8 replicates) the
    replicates' mean lies 1.50 degrees from the vertex with the fitted abundances, 1.05
    with pure members (their sd 3.3e-3 and 3.4e-3; the fit's error is 1.8 degrees).

    Parameters
    ----------
    counts : CSR (ny * nx, channels) full-resolution counts of the fit
    image_shape : (ny, nx)
    bin_factor : int, the binned stage's ``b``
    spectra : (k, channels) the fitted spectra
    binned_maps : (binned pixels, k) or (nby, nbx, k) the binned maps for ``spectra``
    vertices : (k,) bool, the vertices the fit moved at a finer scale
    n_sd : width of a cluster in noise sd
    margin : of the reach below the tail band, in noise sd
    max_iter, tol : of the abundance solves

    Returns
    -------
    list of ScaleReach
        One per finer scale (empty when no vertex is given or ``bin_factor`` is 1).
    """
    vertices = np.asarray(vertices, dtype=bool)
    out: list[ScaleReach] = []
    if not vertices.any():
        return out
    S = np.asarray(spectra, dtype=np.float64)
    k = S.shape[0]
    for scale in finer_scales(bin_factor):
        Xs = counts if scale == 1 else bin_counts(counts, image_shape, scale)
        A = solve_abundances(Xs, S, max_iter=max_iter, tol=tol, check_input=False,
                             A_init=scale_start(binned_maps, image_shape, bin_factor,
                                                scale)).A
        n = np.asarray(Xs.sum(axis=1), dtype=np.float64).ravel()
        found = {int(j): _reach_of(A, S, n, int(j), n_sd, margin)
                 for j in np.flatnonzero(vertices)}
        reach = {j: r for j, (r, _) in found.items()}
        if scale == 1:  # a vertex's faces take every pixel rich in it: the whole image
            every = np.flatnonzero(n > 0)
            reach = {j: every for j in reach}
        pixels = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *reach.values()]))
        rows = {j: np.searchsorted(pixels, r) for j, r in reach.items() if r.size}
        weights = n[pixels, None] * A[pixels]
        for j, (_, cluster) in found.items():  # the fit's pure pixels: pure in its model
            members = np.searchsorted(pixels, cluster)
            weights[members] = n[pixels[members], None] * (np.arange(k) == j)
        m0 = max(k + 1, round(START_FRAC * int(np.count_nonzero(n > 0))))
        frac = np.ones(k)
        for j, r in rows.items():
            frac[j] = min(1.0, m0 / r.size)
        out.append(ScaleReach(scale=scale, pixels=pixels, counts=Xs[pixels],
                              weights=weights, start=A[pixels],
                              rows=rows, start_frac=frac))
    return out


def _correct_in_reach(
    X: sp.csr_matrix, A: np.ndarray, S: np.ndarray, reach: ScaleReach, todo: np.ndarray,
    rule: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`psnmf.engine.pure_pixels.finer_vertex_correction` of each vertex in ``todo``
    on its own reach: ``(T, moved)`` as that function returns them."""
    k = S.shape[0]
    T = np.eye(k)
    moved = np.zeros(k, dtype=bool)
    for j in np.flatnonzero(todo):
        r = reach.rows[int(j)]
        Tj, mj, _ = finer_vertex_correction(A[r], S, X[r], np.arange(k) == j,
                                            start_frac=reach.start_frac, **rule)
        if mj[j]:
            T[j], moved[j] = Tj[j], True
    return T, moved


def replay_finer_scales(
    spectra: np.ndarray,
    moved: np.ndarray,
    reaches: list[ScaleReach],
    model_spectra: np.ndarray,
    rng: np.random.Generator,
    *,
    start_spectra: np.ndarray | None = None,
    n_sd: float = 1.5,
    min_pixels: int = 20,
    max_dispersion: float = 1.5,
    max_tail: float = 1.0,
    min_depth: float = MIN_DEPTH,
    faces: bool = True,
    max_iter: int = 500,
    tol: float = 1e-7,
    priors: SpectralPriors | None = None,
) -> FinerReplay:
    """The finer-scale moves of :func:`psnmf.engine.two_stage.refine_vertices` on new counts.

    For one bootstrap replicate: at each scale of ``reaches`` (coarsest first) where a
    vertex with a reach is not moved yet, the reach's counts are drawn from the fitted
    model (``Poisson(weights @ model_spectra)``), their abundances are solved for the
    current spectra, and every such vertex gets the cluster tests of the fit on its own
    reach (:func:`psnmf.engine.pure_pixels.finer_vertex_correction`); a vertex that passes
    moves to the fitted-model spectrum of its cluster's summed counts. With ``faces``, the
    vertices still not moved after full resolution are then tried for the corner of their
    faces on the whole image, as the fit tried them
    (:func:`psnmf.engine.pure_pixels.face_vertex_correction`, the vertices moved so far as
    anchors); such a move is one more entry of ``steps`` at scale 1.

    With ``start_spectra``, a vertex is tried from its row there rather than from the
    replicate's (see :func:`psnmf.uncertainty.bootstrap`, which passes the fit's NMF
    vertex plus the replicate's NMF error); a vertex that does not move keeps the
    replicate's row.

    Parameters
    ----------
    spectra : (k, channels) the replicate's binned-stage spectra (in the fit's order)
    moved : (k,) bool, the vertices its binned stage moved (never tried again)
    reaches : of the fit (:func:`scale_reaches`)
    model_spectra : (k, channels) the fitted spectra the reaches' weights belong to
    rng : the replicate's generator
    start_spectra : (k, channels), optional
        The rows the vertices tried start from (see above); default ``spectra``.
    n_sd, min_pixels, max_dispersion, max_tail, min_depth : the fit's cluster tests
    faces : try the vertices without a cluster for their faces at full resolution
    max_iter, tol : of the abundance solves
    priors : SpectralPriors, optional
        Moved spectra get their forbidden windows projected onto continuum curves, as in
        the fit.

    Returns
    -------
    FinerReplay
    """
    S = np.asarray(spectra, dtype=np.float64)
    k = S.shape[0]
    done = np.asarray(moved, dtype=bool).copy()
    scales = np.zeros(k, dtype=np.int64)
    out = FinerReplay(spectra=S, scales=scales)
    rule = {"n_sd": n_sd, "min_pixels": min_pixels, "max_dispersion": max_dispersion,
            "max_tail": max_tail, "min_depth": min_depth}
    for reach in reaches:
        todo = np.zeros(k, dtype=bool)
        todo[list(reach.rows)] = True
        todo &= ~done
        if not todo.any():
            continue
        W = reach.weights
        X = poisson_draw(rng, W.shape[0], model_spectra.shape[1],
                         lambda sl, W=W: W[sl] @ model_spectra)
        basis = S if start_spectra is None else np.where(todo[:, None], start_spectra, S)
        A = solve_abundances(X, basis, max_iter=max_iter, tol=tol, check_input=False,
                             A_init=reach.start).A
        T, now = _correct_in_reach(X, A, basis, reach, todo, rule)
        out.steps.append((reach, X, basis, now))
        if now.any():
            new = T @ basis
            if priors is not None:
                new = priors.constrain(new)
            S = np.where(now[:, None], new, S)
        scales[now] = reach.scale
        done |= now
        left = todo & ~now
        if faces and reach.scale == 1 and left.any() and done.any():
            basis = np.where(left[:, None], basis, S)
            if now.any():  # abundances for the spectra after the clusters' moves
                A = solve_abundances(X, basis, max_iter=max_iter, tol=tol,
                                     check_input=False, A_init=A).A
            rows = reach.rows[int(np.flatnonzero(left)[0])]  # every pixel (scale 1)
            Tf, moved_f, _ = face_vertex_correction(
                A[rows], basis, X[rows], left, done, n_sd=n_sd, min_pixels=min_pixels,
                max_tail=max_tail)
            if moved_f.any():
                out.steps.append((reach, X, basis, moved_f))
                new = Tf @ basis
                if priors is not None:
                    new = priors.constrain(new)
                S = np.where(moved_f[:, None], new, S)
                scales[moved_f] = 1
                done |= moved_f
    out.spectra = S
    return out


def _csr_like(X: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    """``X``'s pattern with other values, in the canonical form of validated counts (the
    zeros a split leaves are dropped)."""
    out = sp.csr_matrix((data.astype(np.float64), X.indices.copy(), X.indptr.copy()),
                        shape=X.shape)
    out.eliminate_zeros()
    return out


def fission_rows(
    X: sp.csr_matrix,
    basis: np.ndarray,
    reach: ScaleReach,
    vertices: np.ndarray,
    rng: np.random.Generator,
    n_splits: int,
    *,
    n_sd: float = 1.5,
    max_iter: int = 500,
    tol: float = 1e-7,
    rule: dict[str, float] | None = None,
) -> dict[int, np.ndarray]:
    """Selection-debiased spectra of the vertices moved at one finer scale.

    The counts ``X`` of the reach are split into two independent Poisson halves
    (``X1 ~ Binomial(X, 1/2)``, ``X2 = X - X1``) ``n_splits`` times; each half's abundances
    are solved for ``basis`` (the spectra the moves at this scale started from), the
    vertex's pure cluster is selected on one half (the rule of the fit, without its tests)
    and the fitted-model spectrum of the other half's summed counts over the selected
    pixels is taken, both ways. The noise of the summed counts is then independent of the
    selection. At full resolution, a vertex whose pure cluster on the data fails the
    cluster tests (``rule``: ``min_pixels``, ``max_dispersion``, ``max_tail``,
    ``min_depth``; the fit's defaults where not given) moved to the corner of its faces
    (:func:`psnmf.engine.pure_pixels.face_vertex_correction`): each of its faces is
    selected on one half and its ratio taken from the other half's summed counts.

    Parameters
    ----------
    X : CSR (m, channels) integer counts of ``reach.pixels``
    basis : (k, channels) spectra
    reach : ScaleReach of this scale
    vertices : (k,) bool, the vertices moved at this scale
    rng : generator of the splits
    n_splits : int
    n_sd : width of a cluster in noise sd
    max_iter, tol : of the abundance solves
    rule : the cluster tests that tell a vertex moved by its faces (see above)

    Returns
    -------
    dict
        Vertex -> spectrum (channels,), the mean over the ``2 n_splits`` selections.
    """
    S = np.asarray(basis, dtype=np.float64)
    js = [int(j) for j in np.flatnonzero(vertices) if int(j) in reach.rows]
    out = {j: np.zeros(S.shape[1]) for j in js}
    if not js:
        return out
    X = sp.csr_matrix(X)
    faces = _face_directions(X, S, reach, js, n_sd, rule or {}, max_iter, tol)
    data = np.rint(X.data).astype(np.int64)
    for _ in range(int(n_splits)):
        half = rng.binomial(data, 0.5)
        parts = [_csr_like(X, d) for d in (half, data - half)]
        A = [solve_abundances(P, S, max_iter=max_iter, tol=tol, check_input=False,
                              A_init=reach.start).A for P in parts]
        n = [np.asarray(P.sum(axis=1)).ravel() for P in parts]
        noise = [pixel_noise(a, S) if faces else None for a in A]
        for sel, avg in ((0, 1), (1, 0)):
            for j in js:
                r = reach.rows[j]
                if j in faces:
                    out[j] += _face_fission_row(A[sel][r], S, parts[sel][r], parts[avg][r],
                                                j, faces[j], n_sd, noise[sel][r])
                    continue
                members = pure_cluster(A[sel][r], S, n[sel][r], j, n_sd=n_sd,
                                       start_frac=float(reach.start_frac[j])).members
                summed = np.asarray(parts[avg][r[members]].sum(axis=0)).ravel()
                out[j] += (summed_abundance(summed, S) @ S if members.any() else S[j])
    return {j: row / (2 * int(n_splits)) for j, row in out.items()}


def _face_directions(
    X: sp.csr_matrix, S: np.ndarray, reach: ScaleReach, js: list[int], n_sd: float,
    rule: dict[str, float], max_iter: int, tol: float,
) -> dict[int, list[int]]:
    """At full resolution, the vertices of ``js`` whose pure cluster on the data fails the
    cluster tests (moved by their faces), each with the faces it moved along (ratio
    significant, :func:`psnmf.engine.pure_pixels.face_vertex_correction`)."""
    if reach.scale != 1:
        return {}
    A = solve_abundances(X, S, max_iter=max_iter, tol=tol, check_input=False,
                         A_init=reach.start).A
    n = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    out: dict[int, list[int]] = {}
    noise = None
    for j in js:
        r = reach.rows[j]
        c = pure_cluster(A[r], S, n[r], j, n_sd=n_sd, start_frac=float(reach.start_frac[j]))
        if cluster_passes(c, j, int(rule.get("min_pixels", 20)),
                   rule.get("max_dispersion", 1.5), rule.get("max_tail", 1.0),
                   rule.get("min_depth", MIN_DEPTH)):
            continue
        if noise is None:
            noise = pixel_noise(A, S)
        k = S.shape[0]
        found = [face_cluster(A[r], S, X[r], j, i, n_sd=n_sd, noise=noise[r])
                 for i in range(k) if i != j]
        out[j] = [f.i for f in found if f.size > 0 and f.ratio > 3.0 * f.se]
    return out


def _face_fission_row(
    A: np.ndarray, S: np.ndarray, X_sel: sp.csr_matrix, X_avg: sp.csr_matrix, j: int,
    directions: list[int], n_sd: float, noise: np.ndarray,
) -> np.ndarray:
    """Vertex ``j`` at the corner of its faces along ``directions``, each face's members
    selected on one half (``A``, ``X_sel``) and its ratio from the other half's summed
    counts over them."""
    row = np.zeros(S.shape[0])
    row[j] = 1.0
    for i in directions:
        f = face_cluster(A, S, X_sel, j, i, n_sd=n_sd, noise=noise)
        if f.size == 0:
            continue
        t = summed_abundance(np.asarray(X_avg[np.flatnonzero(f.members)].sum(axis=0)).ravel(),
                             S)
        if t[j] > 0:
            row[i] = t[i] / t[j]
    return (row / row.sum()) @ S
