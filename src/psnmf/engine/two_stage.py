"""The two stages of PSNMF as array functions: binned spectra, then full-resolution maps.

1. :func:`fit_binned` - Poisson NMF of the binned counts (the low-resolution, high-signal
   data), then, with ``spectra='pure'``, the pure-pixel correction of its simplex
   (:func:`psnmf.engine.pure_pixels.vertex_correction`) and the binned maps re-solved for
   the corrected spectra.
   With ``vertex_scales='multi'``, :func:`refine_vertices` then looks for the pure
   cluster of every vertex the binned stage kept at the finer scales ``b / 2, ..., 1``
   (:func:`psnmf.engine.pure_pixels.finer_vertex_correction`), and moves a vertex still
   without one to the corner of its faces at full resolution
   (:func:`psnmf.engine.pure_pixels.face_vertex_correction`).
   With ``never_pure='lines'`` (or ``'auto'`` given the sample's elements),
   :func:`extrapolate_never_pure` then moves every vertex still without a pure cluster or
   a corner of its faces, and every vertex whose pure cluster is a mixture plateau
   (:func:`psnmf.engine.line_vertices.mixture_plateau`), outwards as far as its element
   line intensities stay non-negative, where the step is evidence of missing elements
   (:func:`psnmf.engine.line_vertices.extrapolate_vertices`).
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

from psnmf._validation import check_random_state
from psnmf.engine.binning import bin_counts, upsample_maps
from psnmf.engine.line_vertices import elements_of_lines, extrapolate_vertices, line_basis
from psnmf.engine.poisson_nmf import NMFResult, initialise, poisson_nmf, solve_abundances
from psnmf.engine.priors import SpectralPriors
from psnmf.engine.pure_pixels import (
    Face,
    PureCluster,
    cluster_passes,
    face_vertex_correction,
    finer_vertex_correction,
    vertex_correction,
)

__all__ = [
    "BINNED_PARAMS",
    "SPECTRA_MODES",
    "STAGE2_MODES",
    "START_MIX",
    "VERTEX_SCALES",
    "NEVER_PURE_MODES",
    "BinnedFit",
    "binned_kwargs",
    "extrapolate_never_pure",
    "fit_binned",
    "finer_scales",
    "fit_full",
    "refine_vertices",
    "scale_start",
    "stage2_start",
    "vertex_at_cluster",
]

#: Spectra of the binned stage: the pure-pixel corrected simplex, or NMF's own.
SPECTRA_MODES = ("pure", "nmf")
#: Spectra of the full-resolution stage: held fixed, or updated as in the paper's step 3.
STAGE2_MODES = ("fixed", "free")
#: Scales of the pure-pixel clusters: the binned stage's only, or also the finer ones.
VERTEX_SCALES = ("binned", "multi")
#: Vertices without a pure cluster: extrapolated by element lines where the sample's
#: elements and detector model are known ('auto'), kept (NMF's), or extrapolated with
#: the elements and model required ('lines').
NEVER_PURE_MODES = ("auto", "keep", "lines")
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
#: Least depth of a finer-scale cluster inside its vertex, in member-pixel noise sd
#: (:func:`refine_vertices`).
MIN_DEPTH = 1.0


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
    scales : ndarray (k,) of int or None
        After :func:`refine_vertices`: the bin factor of the scale at which each vertex
        moved (0 where it kept its NMF vertex); ``moved`` keeps the binned stage's moves.
    full_maps : ndarray (pixels, k) or None
        After :func:`refine_vertices` with scale 1 tried and a vertex moved at a finer
        scale: full-resolution maps for the spectra before the last full-resolution move
        (a start for :func:`fit_full`); ``None`` when nothing moved, so that stage 2 then
        runs exactly as without the refinement.
    scale_clusters : dict or None
        After :func:`refine_vertices`: for every finer scale tried, the PureCluster of each
        vertex tried there (``None`` for the others).
    faces : list or None
        After :func:`refine_vertices` with faces tried: per vertex without a pure cluster,
        its Face opposite each other vertex (``None`` for the others).
    face_moved : ndarray (k,) of bool or None
        Which vertices moved to the corner of their faces (their ``scales`` entry is 1).
    before_faces : BinnedFit or None
        When a vertex moved to its faces: the fit without that step.
    at_vertex : ndarray (k,) of bool or None
        After :func:`refine_vertices`: the vertices kept whose cluster at some finer scale
        passes the cluster tests but lies at the vertex (:func:`vertex_at_cluster`): the
        data show those phases pure, at the vertex they have.
    """

    nmf: NMFResult
    spectra: np.ndarray
    maps: np.ndarray
    transform: np.ndarray
    moved: np.ndarray
    clusters: list[PureCluster] | None
    scales: np.ndarray | None = None
    full_maps: np.ndarray | None = None
    scale_clusters: dict[int, list[PureCluster | None]] | None = None
    faces: list[list[Face] | None] | None = None
    face_moved: np.ndarray | None = None
    before_faces: BinnedFit | None = None
    at_vertex: np.ndarray | None = None


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
    start: tuple[np.ndarray, np.ndarray] | None = None,
    resume: NMFResult | None = None,
    priors: SpectralPriors | None = None,
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
    start : (A, S), optional
        Start of the NMF (abundances (binned pixels, k), spectra (k, channels)) instead of
        the ``init`` method, e.g. the factors of a fit to similar counts.
    resume : NMFResult, optional
        The NMF of an earlier fit of the same ``binned`` counts with the same ``init`` and
        ``random_state`` that stopped earlier (a lower ``max_iter``): continued to this
        call's ``max_iter`` and ``tol``, the same NMF as a fit from the start
        (:func:`psnmf.engine.poisson_nmf.poisson_nmf`'s ``resume``).
    priors : SpectralPriors, optional
        Fixed spectra, spectral supports and start spectra (:mod:`psnmf.engine.priors`):
        the NMF starts from the ``init`` method's spectra with the prior rows replaced
        (abundances solved for them) and keeps the fixed rows and the zeros outside the
        supports; the pure-pixel correction leaves fixed vertices where they are and
        projects the forbidden windows of a moved vertex onto their continuum curves
        (renormalised), so ``spectra`` obey
        the priors and ``spectra = transform @ nmf.S`` holds except in those channels.

    Returns
    -------
    BinnedFit
    """
    k = int(n_components)
    A0, S0 = start if start is not None else (None, None)
    fixed_rows = support = None
    if priors is not None and not priors.empty:
        fixed_rows, _, support = priors.rows(k, binned.shape[1])
        if resume is None:
            A0, S0 = _prior_start(binned, k, init, random_state, priors, A0, S0)
    nmf = poisson_nmf(binned, k, simplex=True, init=init, max_iter=max_iter, tol=tol,
                      random_state=random_state, check_input=False, A_init=A0, S_init=S0,
                      resume=resume, fixed_rows=fixed_rows, support=support)
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
    if fixed_rows is not None or support is not None:
        S, T, moved = _keep_priors(nmf.S, T, moved, priors, fixed_rows)
    maps = nmf.A
    if moved.any() and solve_maps:  # re-solve the binned maps for the corrected spectra
        maps = poisson_nmf(
            binned, k, A_init=np.full((binned.shape[0], k), 1.0 / k), S_init=S,
            update_S=False, max_iter=max_iter, tol=RESOLVE_TOL, check_input=False,
        ).A
    return BinnedFit(nmf=nmf, spectra=S, maps=maps, transform=T, moved=moved,
                     clusters=clusters)


def _prior_start(
    binned: sp.csr_matrix, k: int, init: str, random_state: Any, priors: SpectralPriors,
    A0: np.ndarray | None, S0: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The NMF start under ``priors``: the ``init`` method's spectra (or ``S0``) with the
    fixed and start rows replaced, and the abundances solved for them (a start paired
    with the replaced rows); ``(A0, S0)`` as given when the priors set no row."""
    if not (priors.fixed or priors.init):
        return A0, S0
    if A0 is not None and S0 is not None:  # a given start: only its prior rows change
        return A0, priors.start(S0)
    if S0 is None:
        _, S0 = initialise(binned, k, init, simplex=True,
                           random_state=check_random_state(random_state))
    S = priors.start(S0)
    A = solve_abundances(binned, S, max_iter=200, tol=1e-6, check_input=False).A
    return A, S


def _keep_priors(
    S_nmf: np.ndarray, T: np.ndarray, moved: np.ndarray, priors: SpectralPriors,
    fixed_rows: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vertex correction ``(T, moved)`` with the fixed vertices kept (identity rows,
    not moved) and the moved spectra constrained to their supports."""
    T, moved = T.copy(), moved.copy()
    if fixed_rows is not None:
        T[fixed_rows] = np.eye(T.shape[0])[fixed_rows]
        moved[fixed_rows] = False
    return priors.constrain(T @ S_nmf), T, moved


def finer_scales(bin_factor: int) -> list[int]:
    """The scales below ``bin_factor`` tried by :func:`refine_vertices`: ``b // 2``,
    ``b // 4``, ... down to 1 (full resolution), coarsest first.

    >>> finer_scales(4), finer_scales(6), finer_scales(1)
    ([2, 1], [3, 1], [])
    """
    b = int(bin_factor)
    out: list[int] = []
    s = b // 2
    while s >= 1:
        out.append(s)
        s //= 2
    return out if b > 1 else []


def scale_start(binned_maps: np.ndarray, image_shape: tuple[int, int], bin_factor: int,
                scale: int) -> np.ndarray:
    """Starting abundances at ``scale``: the binned maps at the top-left pixel of each
    ``scale x scale`` block (a start only: each pixel's problem is convex)."""
    k = binned_maps.shape[-1]
    full = stage2_start(upsample_maps(binned_maps.reshape(-1, k), image_shape, bin_factor))
    return full[::scale, ::scale].reshape(-1, k)


def refine_vertices(
    counts: sp.csr_matrix,
    image_shape: tuple[int, int],
    bin_factor: int,
    fit: BinnedFit,
    *,
    vertex_sd: float = 1.5,
    min_cluster: int = 20,
    max_dispersion: float = 1.5,
    max_tail: float = 1.0,
    min_depth: float = MIN_DEPTH,
    faces: bool = True,
    max_iter: int = 500,
    tol: float = 1e-7,
    solve_maps: bool = True,
    priors: SpectralPriors | None = None,
) -> BinnedFit:
    """Move the vertices the binned stage kept to pure clusters at finer scales.

    Small grains, nanoparticles and thin layers have almost no pure ``b x b`` binned
    pixels, so :func:`fit_binned` keeps their NMF vertex; at ``b / 2`` or full
    resolution many more of their pixels are pure, with fewer counts each. At each scale
    of :func:`finer_scales`, coarsest first (the most counts per pixel, the least
    clipping), the pixels' abundances are solved for the current spectra and every vertex
    not yet moved is tried (:func:`psnmf.engine.pure_pixels.finer_vertex_correction`:
    the cluster tests of the binned stage, and a cluster centre inside the vertex); a
    vertex moves to the fitted-model spectrum of its cluster's summed counts.

    With ``faces``, every vertex still without a pure cluster is then tried at full
    resolution for the corner where its faces meet
    (:func:`psnmf.engine.pure_pixels.face_vertex_correction`): a phase that is never pure
    but touches two phases with pure clusters - a thin layer between two others - is
    bounded by its mixing lines with them. Its ``scales`` entry is then 1 and
    ``face_moved`` says so.

    Parameters
    ----------
    counts : CSR (ny * nx, channels) full-resolution counts
    image_shape : (ny, nx)
    bin_factor : int, the binned stage's ``b``
    fit : BinnedFit of ``fit_binned(spectra='pure')`` (returned as is for 'nmf')
    vertex_sd, min_cluster, max_dispersion, max_tail : the cluster tests, as in
        :func:`fit_binned`
    min_depth : least depth of a cluster inside its vertex, in member-pixel noise sd
    faces : try the vertices without a pure cluster for the corner of their faces
    max_iter, tol : of the abundance solves at each scale
    solve_maps : re-solve the binned maps for the new spectra (as in :func:`fit_binned`)
    priors : SpectralPriors, optional
        Fixed vertices are never tried; a moved spectrum has its forbidden windows
        projected onto continuum curves (:meth:`psnmf.engine.priors.SpectralPriors.constrain`).

    Returns
    -------
    BinnedFit
        ``spectra``, ``transform`` (still ``spectra = transform @ nmf.S``) and ``maps``
        updated; ``scales`` says where each vertex moved and ``scale_clusters`` what was
        found at each scale, ``at_vertex`` which vertices kept have a pure cluster at the
        vertex (:func:`vertex_at_cluster`); ``moved`` and ``clusters`` are the binned
        stage's.
    """
    if fit.clusters is None:
        return fit
    k = fit.spectra.shape[0]
    scales = np.where(fit.moved, int(bin_factor), 0)
    S, T, full_maps = fit.spectra, fit.transform, None
    A: np.ndarray | None = None
    tried: dict[int, list[PureCluster | None]] = {}
    frozen = np.zeros(k, dtype=bool)
    if priors is not None and priors.fixed:
        frozen = priors.rows(k, S.shape[1])[0]
    for scale in finer_scales(bin_factor):
        todo = (scales == 0) & ~frozen
        if not todo.any():
            break
        Xs = counts if scale == 1 else bin_counts(counts, image_shape, scale)
        A = solve_abundances(Xs, S, max_iter=max_iter, tol=tol, check_input=False,
                             A_init=scale_start(fit.maps, image_shape, bin_factor, scale)).A
        if scale == 1:
            full_maps = A
        Ts, moved, tried[scale] = finer_vertex_correction(
            A, S, Xs, todo, n_sd=vertex_sd, min_pixels=min_cluster,
            max_dispersion=max_dispersion, max_tail=max_tail, min_depth=min_depth,
        )
        S, T = Ts @ S, Ts @ T
        if priors is not None and moved.any():
            S = priors.constrain(S)
        scales[moved] = scale
        if scale == 1 and moved.any():  # the full-resolution maps no longer fit S
            A = None
    plain = _refined(counts, image_shape, bin_factor, fit, S, T, scales, full_maps, tried,
                     max_iter, solve_maps)
    plain.at_vertex = vertex_at_cluster(tried, scales, min_cluster, max_dispersion,
                                        max_tail)
    todo = (scales == 0) & ~frozen
    if not (faces and todo.any() and np.any(scales > 0)):
        return plain
    if full_maps is None or A is None or int(bin_factor) == 1:
        A = solve_abundances(counts, S, max_iter=max_iter, tol=tol, check_input=False,
                             A_init=scale_start(fit.maps, image_shape, bin_factor, 1)).A
        full_maps = A
    Tf, face_moved, face_list = face_vertex_correction(
        A, S, counts, todo, scales > 0, n_sd=vertex_sd, min_pixels=min_cluster,
        max_tail=max_tail,
    )
    plain.faces, plain.face_moved = face_list, face_moved
    if not face_moved.any():
        return plain
    S, T = Tf @ S, Tf @ T
    if priors is not None:
        S = priors.constrain(S)
    scales = scales.copy()
    scales[face_moved] = 1
    out = _refined(counts, image_shape, bin_factor, fit, S, T, scales, full_maps, tried,
                   max_iter, solve_maps)
    out.faces, out.face_moved, out.before_faces = face_list, face_moved, plain
    out.at_vertex = plain.at_vertex & (scales == 0)
    return out


def vertex_at_cluster(
    tried: dict[int, list[PureCluster | None]], scales: np.ndarray, min_cluster: int,
    max_dispersion: float, max_tail: float,
) -> np.ndarray:
    """The vertices kept (``scales`` 0) whose cluster at some finer scale of ``tried``
    passes the cluster tests of :func:`psnmf.engine.pure_pixels.vertex_correction` (size,
    dispersion, tail) and fails only the depth test: a mode of many pixels at the vertex.

    Such a vertex is kept because its pure pixels sit at it, clipped at the simplex
    boundary, not because the phase is never pure (grains of radius 9 px among a matrix,
    at b = 2 and full resolution); the binned stage counts the same cluster as pure.
    """
    out = np.zeros(scales.shape[0], dtype=bool)
    for clusters in tried.values():
        for j, c in enumerate(clusters):
            if c is not None and scales[j] == 0:
                out[j] |= cluster_passes(c, j, min_cluster, max_dispersion, max_tail,
                                         -np.inf)
    return out


def _refined(
    counts: sp.csr_matrix, image_shape: tuple[int, int], bin_factor: int, fit: BinnedFit,
    S: np.ndarray, T: np.ndarray, scales: np.ndarray, full_maps: np.ndarray | None,
    tried: dict[int, list[PureCluster | None]], max_iter: int, solve_maps: bool,
) -> BinnedFit:
    """The BinnedFit of :func:`refine_vertices` for the spectra ``S = T @ fit.nmf.S``: the
    binned stage's fit as is when no vertex moved at a finer scale, else with the binned
    maps re-solved for ``S``."""
    k = S.shape[0]
    if not np.any(scales[~fit.moved] > 0):  # nothing moved: the binned stage's fit as is
        return BinnedFit(nmf=fit.nmf, spectra=fit.spectra, maps=fit.maps,
                         transform=fit.transform, moved=fit.moved, clusters=fit.clusters,
                         scales=scales, scale_clusters=tried)
    maps = fit.maps
    if solve_maps:
        binned = bin_counts(counts, image_shape, bin_factor)
        maps = poisson_nmf(binned, k, A_init=fit.maps, S_init=S, update_S=False,
                           max_iter=max_iter, tol=RESOLVE_TOL, check_input=False).A
    return BinnedFit(nmf=fit.nmf, spectra=S, maps=maps, transform=T, moved=fit.moved,
                     clusters=fit.clusters, scales=scales, full_maps=full_maps,
                     scale_clusters=tried)


def extrapolate_never_pure(
    binned: sp.csr_matrix,
    fit: BinnedFit,
    model: Any,
    elements: list[str] | tuple[str, ...],
    *,
    max_iter: int = 2000,
    solve_maps: bool = True,
    priors: SpectralPriors | None = None,
) -> tuple[BinnedFit, np.ndarray]:
    """Extrapolate the vertices without a pure cluster by their element lines.

    The vertices that no pure cluster moved (``fit.moved`` false and, after
    :func:`refine_vertices`, ``fit.scales`` zero) are moved away from the others as far as
    their line-family intensities stay non-negative, where that step is evidence of
    missing elements (:func:`psnmf.engine.line_vertices.extrapolate_vertices` and its
    tests, :func:`psnmf.engine.line_vertices.step_supported`), the counts behind each
    vertex being its binned abundances times the binned pixels' counts; the binned maps are
    then re-solved for the new spectra. A vertex moved to a pure cluster keeps it (its
    spectrum is the data's) unless that cluster is a mixture plateau: a tight cluster of
    pixels all at the same mixture of a never-pure phase with a neighbour at a pure
    cluster, which its line step takes out whole
    (:func:`psnmf.engine.line_vertices.mixture_plateau`; the Y2Ti2O7 nanoclusters, at
    most half of any pixel, whose plateau bins pass the cluster tests at b = 4: 49.8
    degrees from the truth at the cluster, 3.0 extrapolated; Pt particles on their carbon
    film at b = 2 on espm's spectra: 70.1 and 4.4). Such a vertex is extrapolated from its
    cluster. A vertex whose pure cluster at a finer scale lies at the vertex itself
    (``fit.at_vertex``, :func:`vertex_at_cluster`) is likewise tried only as a plateau:
    the data show that phase pure unless its cluster is a mixture, and the lines cannot
    tell how far out a phase that holds every element of its neighbour lies (on espm's
    spectra the M23C6 carbides' vertex, kept there by the depth test, lost its Fe along
    its lines: 2.1 -> 15.7 degrees; the Pt particles' b = 2 cluster at 'low' lies at
    their vertex and is a plateau on the film: 72.7 degrees kept, 9.6 extrapolated). Nor
    is a vertex moved to the corner of its faces (its ``scales`` entry is 1): its faces
    are mixing lines with phases the data show pure, which fix it from the data, while a
    line of an element the layer shares with its neighbours (Si in a SiO2 layer on Si)
    may not bound the extrapolation (the gate stack's SiO2 at medium counts: 1.7-2.0x the
    oracle angle at its faces, 25-29x extrapolated).

    Parameters
    ----------
    binned : CSR (binned pixels, channels) counts of the binned stage
    fit : BinnedFit of ``fit_binned(spectra='pure')`` (or of :func:`refine_vertices`)
    model : psnmf.physics.EDXModel on the data's energy axis
    elements : the elements of the sample
    max_iter : of the binned maps' re-solve
    solve_maps : re-solve the binned maps for the new spectra
    priors : SpectralPriors, optional
        Fixed vertices are never moved; a moved spectrum has its forbidden windows
        projected onto continuum curves (:meth:`psnmf.engine.priors.SpectralPriors.constrain`).

    Returns
    -------
    fit : BinnedFit
        ``spectra`` moved, ``transform`` the product of the extrapolation's (rows sum to
        one, negative entries for a moved vertex) and the fit's (``spectra`` is their
        product with ``nmf.S`` clipped at zero and renormalised), ``maps`` re-solved.
    steps : ndarray (k, k)
        The step of each moved vertex away from each other vertex (zero rows for the
        others).
    """
    k = fit.spectra.shape[0]
    kept, plateau = _line_candidates(fit)
    if priors is not None and priors.fixed:
        fixed = priors.rows(k, fit.spectra.shape[1])[0]
        kept, plateau = kept & ~fixed, plateau & ~fixed
    if model.axis.size != fit.spectra.shape[1]:
        raise ValueError(
            f"edx_model has {model.axis.size} channels but the data "
            f"{fit.spectra.shape[1]}: give the model of the data's energy axis "
            "(EDXModel.for_axis(offset, scale, size))."
        )
    if fit.clusters is None or not (kept | plateau).any():
        return fit, np.zeros((k, k))
    G, n_lines, names = line_basis(model, elements)
    pixel_counts = np.asarray(binned.sum(axis=1), dtype=np.float64).ravel()
    vertex_counts = fit.maps.T @ pixel_counts
    S, T, steps = extrapolate_vertices(fit.spectra, vertex_counts, kept, G, n_lines,
                                       line_elements=elements_of_lines(names),
                                       plateau=plateau)
    if not steps.any():
        return fit, steps
    if priors is not None:
        S = priors.constrain(S)
    maps = fit.maps
    if solve_maps:
        maps = poisson_nmf(binned, k, A_init=np.full((binned.shape[0], k), 1.0 / k),
                           S_init=S, update_S=False, max_iter=max_iter, tol=RESOLVE_TOL,
                           check_input=False).A
    return BinnedFit(nmf=fit.nmf, spectra=S, maps=maps, transform=T @ fit.transform,
                     moved=fit.moved, clusters=fit.clusters, scales=fit.scales,
                     full_maps=None, scale_clusters=fit.scale_clusters, faces=fit.faces,
                     face_moved=fit.face_moved, before_faces=fit.before_faces,
                     at_vertex=fit.at_vertex), steps


def _line_candidates(fit: BinnedFit) -> tuple[np.ndarray, np.ndarray]:
    """The vertices :func:`extrapolate_never_pure` tries: those without a pure cluster
    (``kept``: neither moved to one nor at one, :func:`vertex_at_cluster`), and those
    moved to a pure cluster at some scale or at one (``plateau``), tried only as mixture
    plateaus (:func:`psnmf.engine.line_vertices.mixture_plateau`), which are also the
    neighbours a plateau may hold. A vertex moved to the corner of its faces is neither:
    its faces fix it from the data."""
    moved = fit.moved if fit.scales is None else fit.scales > 0
    kept = ~moved
    plateau = moved.copy()
    if fit.at_vertex is not None:
        kept = kept & ~fit.at_vertex
        plateau |= fit.at_vertex
    if fit.face_moved is not None:
        plateau &= ~fit.face_moved
    return kept, plateau


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
    start: np.ndarray | None = None,
    priors: SpectralPriors | None = None,
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
    start : (ny * nx, k), optional
        Full-resolution starting maps (e.g. :attr:`BinnedFit.full_maps`) instead of the
        upsampled ``binned_maps``; mixed with the uniform map as :func:`stage2_start` does.
    priors : SpectralPriors, optional
        With ``stage2_spectra='free'``: the fixed rows stay and the zeros outside the
        supports are kept (the start ``spectra`` obey them already).

    Returns
    -------
    NMFResult
        ``A`` the full-resolution maps (pixels, k), ``S`` the spectra at the end of the
        stage (``spectra`` when fixed), ``scale`` the pixels' total counts.
    """
    if stage2_spectra not in STAGE2_MODES:
        raise ValueError(f"stage2_spectra={stage2_spectra!r} is not one of {STAGE2_MODES}.")
    k = spectra.shape[0]
    if start is None:
        start = upsample_maps(binned_maps, image_shape, bin_factor).reshape(-1, k)
    A0 = stage2_start(np.asarray(start).reshape(-1, k))
    fixed_rows = support = None
    if priors is not None and not priors.empty and stage2_spectra == "free":
        fixed_rows, _, support = priors.rows(k, spectra.shape[1])
    return poisson_nmf(
        counts, k, simplex=True, A_init=A0, S_init=spectra,
        update_S=stage2_spectra == "free", max_iter=max_iter, tol=tol, check_input=False,
        fixed_rows=fixed_rows, support=support,
    )

