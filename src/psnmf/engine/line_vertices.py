"""Vertices of never-pure phases extrapolated with element line templates.

A phase that is never pure (nanoparticles on a support, nanoclusters in a matrix) has no
pure cluster, so the binned-stage NMF keeps a vertex inside the true simplex: the phase's
spectrum plus some of its neighbours'. The data cannot say how far outside the data hull
the true vertex lies (the likelihood is flat along the family of enclosing simplices);
the physics can. Every phase spectrum is a non-negative combination of element
line-family templates plus a smooth continuum, so a vertex is moved away from the other
vertices, ``s_j' = s_j + sum_i t_i (s_j - s_i)`` with ``t_i >= 0``, as far as its
line-family intensities stay non-negative: the step stops where the first line of an
element the phase does not contain (the support's, the matrix's) reaches zero.

* :func:`line_basis` - the line-family templates of the given elements and a smooth
  continuum basis (the Kramers continuum times low-order Legendre polynomials, which take
  up the detector efficiency and absorption), from :class:`psnmf.physics.EDXModel`;
* :func:`line_coefficients` - the template intensities of spectra (weighted least squares,
  linear in the spectrum, so linear along the extrapolation) and their counting-noise sd;
* :func:`extrapolate_vertices` - one linear programme per vertex: the largest total step
  ``sum_i t_i`` with every line intensity at least zero within counting noise and the
  templates' mismatch (a vertex with a line significantly below zero, which NMF moved
  too far out, is moved back in).

A line shared by the phase and its neighbour (Si in SiO2 next to Si) never reaches zero
along that direction before the phase's own lines do, so it bounds nothing wrong, but it
does not bound the step either; ``max_step`` caps every ``t_i``.

The step is evidence of a missing element only where the data measured that element. A
line is measured in a vertex (*held*) above ``MEASURED`` times its allowance: outside its
zero band ``[-allow, allow]`` by the band's own width. With ``check`` (the default):

* a line below its zero band is an overshoot to pull back from only if another vertex
  holds it and every line family of its element is below its band too; otherwise (no
  vertex could lift it, or Ti L below while Ti K is within) it is the templates' mismatch
  to the data and bounds nothing (a CeO2 vertex pulled 0.23 of the way towards a vertex
  with Pt lines at the noise level, 1.1x -> 8.8x the oracle angle; gold particles pulled
  towards TiO2 by their Ti L line alone), and the pull-back leaves every family of an
  overshot element within its band, none above it (:func:`_overshot_lines`): the
  element is absent, so lifting one family (an absorbed Ti L) must not make another
  (Ti K) present; a vertex no pull-back can bring within all of them is kept;
* an outward step is kept only if it is resolved (some line falls by more than
  ``MEASURED`` times its allowance; else the whole move lies within the templates'
  tolerance: spinel grains among olivine, whose vertex has no Si left to take out), every
  line that stops it is held by a vertex it moves away from (the phase loses an element
  of that neighbour, not a line at zero in both that stops the step by noise: the
  ceramic's spinel, stopped by Zr, 7x -> 34x), and the highest-energy line family (K,
  else L, else M) of each stopping element ends within its zero band. An element the
  phase lacks has every family at zero; the highest is the least absorbed and overlapped,
  so the one the templates fit best: M23C6 carbides in ferrite hold Fe, and their vertex
  reaches zero in Fe L with Fe K still well above it (extrapolated, 1.1x -> 2.6x), while
  on espm's spectra the Y2Ti2O7 nanoclusters keep a Cr L intensity beside O K that they
  do not have, with Cr K at zero (required at zero too, their step was refused: 6.5 and
  8.6 degrees against 2.1 and 2.2 extrapolated). On spectra of another physics code both
  Fe families of the carbide may reach zero; such a phase is kept before this test, where
  the finer scales find its pure cluster at the vertex
  (:func:`psnmf.engine.two_stage.vertex_at_cluster`);
* a pull-back is kept only if each vertex it moves towards holds a line it lifts.

A vertex whose step fails these tests (:func:`step_supported`) keeps its spectrum.

A vertex at a pure cluster is moved only where that cluster is a mixture plateau
(:func:`mixture_plateau`): a never-pure phase all of whose richest pixels hold the same
share of a neighbour (nanoclusters at most half of any pixel) forms a tight cluster that
passes the pure-cluster tests; its step, supported as above, then takes that neighbour
out whole, at least two of its elements together.

Examples
--------
A phase B mixed with at most 60 % of a matrix A: the NMF-like vertex ``0.6 B + 0.4 A``
is moved back to B, because B has no Mg.

>>> import numpy as np
>>> from psnmf.physics import EDXModel
>>> model = EDXModel()
>>> A = model.phase_spectrum({"Mg": 50, "O": 50})
>>> B = model.phase_spectrum({"Fe": 40, "O": 60})
>>> G, n_lines, names = line_basis(model, ["Fe", "Mg", "O"])
>>> S = np.array([A, 0.6 * B + 0.4 * A])
>>> S2, T, steps = extrapolate_vertices(S, np.array([1e9, 1e9]), np.array([False, True]),
...                                     G, n_lines)
>>> round(float(steps[1, 0]), 2)   # 2/3, and the templates' mismatch allowance
0.68
>>> bool(np.abs(S2[1] - B).max() < 0.02 * B.max())
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linprog

__all__ = [
    "CONTINUUM_DEGREE",
    "MAX_INWARD",
    "MAX_STEP",
    "MEASURED",
    "MISMATCH",
    "N_SD",
    "STEP_TOL",
    "STOP_TOL",
    "extrapolate_vertices",
    "line_basis",
    "line_coefficients",
    "elements_of_lines",
    "mixture_plateau",
    "step_supported",
    "step_transform",
]

#: Legendre degree of the continuum basis (degree + 1 terms times the Kramers shape).
CONTINUUM_DEGREE = 3
#: Largest step ``t_i`` away from any one other vertex (the vertex at most this many times
#: its distance from that vertex further out).
MAX_STEP = 4.0
#: Largest step towards any one other vertex (for a vertex with a line significantly
#: below zero: NMF moved it too far out).
MAX_INWARD = 0.5
#: Noise sd below zero a line intensity may reach.
N_SD = 2.0
#: And this fraction of the vertex's total line intensity: the templates' mismatch to the
#: data (absorption in the specimen, the continuum basis), about 0.3 % on simulated phases.
MISMATCH = 0.005
#: Least step ``t_i`` counted as a move away from vertex ``i`` (the linear programme's
#: zeros come back as round-off).
STEP_TOL = 1e-6
#: A line ends at the lower edge of its zero band within this fraction of the band.
STOP_TOL = 0.01
#: A line is measured (held by a vertex, or moved by a step) beyond this many times the
#: half-width of its zero band: outside the band by the band's own width.
MEASURED = 2.0


def line_basis(
    model: Any, elements: list[str] | tuple[str, ...], continuum_degree: int = CONTINUUM_DEGREE
) -> tuple[np.ndarray, int, list[str]]:
    """Line-family templates of ``elements`` and a smooth continuum basis.

    Parameters
    ----------
    model : psnmf.physics.EDXModel
        The forward model on the data's energy axis (its ``axis.size`` channels).
    elements : sequence of str
        Element symbols; every X-ray family of each with at least 1 % of its detected
        intensity on the axis is a row.
    continuum_degree : int
        The continuum rows are the Kramers continuum (:meth:`EDXModel.continuum_shape`)
        times the Legendre polynomials of degree ``0 .. continuum_degree`` in energy,
        which take up the detector efficiency and the specimen's absorption.

    Returns
    -------
    G : ndarray (n_lines + continuum_degree + 1, channels)
        Line rows first (each summing to one), then the continuum rows.
    n_lines : int
        The number of line rows.
    names : list of str
        ``'<element>_<family>'`` of each line row.
    """
    rows, names = [], []
    for element in elements:
        for family in model.families(element):
            t = model.family_template(element, family)
            if t.sum() > 0 and t.sum() >= 0.01 * model.line_intensity(element, family):
                rows.append(t / t.sum())
                names.append(f"{element}_{family}")
    if not rows:
        raise ValueError(
            f"line_basis: none of the elements {list(elements)} has an X-ray line on the "
            "model's energy axis; give the elements present in the sample."
        )
    n_lines = len(rows)
    c = model.continuum_shape()
    c = c / c.sum()
    x = np.linspace(-1.0, 1.0, c.size)
    for d in range(int(continuum_degree) + 1):
        rows.append(c * np.polynomial.legendre.Legendre.basis(d)(x))
    return np.array(rows), n_lines, names


def elements_of_lines(names: list[str]) -> list[str]:
    """The element of each line row of :func:`line_basis` from its ``names``.

    >>> elements_of_lines(["Fe_Ka", "Fe_La", "O_Ka"])
    ['Fe', 'Fe', 'O']
    """
    return [n.split("_")[0] for n in names]


def step_transform(steps: np.ndarray) -> np.ndarray:
    """The transform ``T`` of vertex steps (``steps[j, i]`` = ``t_i`` of vertex ``j``):
    the moved vertex is ``(1 + sum_i t_i) s_j - sum_i t_i s_i``, so its row sums to one;
    the rows of unmoved vertices are the identity's.

    >>> step_transform(np.array([[0.0, 0.0], [0.5, 0.0]]))
    array([[ 1. ,  0. ],
           [-0.5,  1.5]])
    """
    T = np.eye(steps.shape[0])
    for j in np.flatnonzero(steps.any(axis=1)):
        T[j] = -steps[j]
        T[j, j] = 1.0 + steps[j].sum()
    return T


def line_coefficients(
    S: np.ndarray, G: np.ndarray, n_lines: int, counts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Template intensities of spectra and, given their counts, their noise sd.

    Weighted least squares with weights ``1 / mean spectrum`` (the Poisson variance of a
    channel is proportional to its mean): ``c = P s`` is linear in the spectrum, so the
    intensities of an extrapolated vertex are the same combination of the vertices'.

    Parameters
    ----------
    S : ndarray (k, channels), rows on the simplex
    G : ndarray (rows, channels), from :func:`line_basis`
    n_lines : int
    counts : ndarray (k,), optional
        Counts behind each spectrum (the sum over pixels of abundance times pixel counts);
        the sd of ``c`` is that of ``P s`` with the channel variances ``s / counts``
        (``s`` clipped at zero).

    Returns
    -------
    C : ndarray (k, n_lines)
    sd : ndarray (k, n_lines) or None
    """
    S = np.asarray(S, dtype=np.float64)
    w = 1.0 / (np.clip(S, 0.0, None).mean(axis=0) + 1e-3 / S.shape[1])
    GW = G * w
    P = np.linalg.solve(GW @ G.T, GW)[:n_lines]
    C = S @ P.T
    if counts is None:
        return C, None
    n = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    var = (np.clip(S, 0.0, None) / n[:, None]) @ (P**2).T
    return C, np.sqrt(var)


def _steps(D: np.ndarray, slack: np.ndarray, max_step: float,
           max_inward: float) -> np.ndarray | None:
    """Steps ``t = p - n`` with ``slack + D t >= 0``: the least inward total ``sum n``,
    then the largest outward total ``sum p``; None where no steps satisfy the lines.

    Two linear programmes in ``(p, n)``, so that an outward step is never bought with an
    inward one. A direction whose outward step reaches ``max_step`` is bounded by no line
    (the data do not say how far) and gets no outward step.
    """
    m = D.shape[1]
    A_ub = np.hstack([-D, D])  # -(D p - D n) <= slack
    bounds = [(0.0, max_step)] * m + [(0.0, max_inward)] * m
    if np.all(slack >= 0):
        n_min = 0.0
    else:  # a line below zero: the least pull-back that lifts it
        res = linprog(np.r_[np.zeros(m), np.ones(m)], A_ub=A_ub, b_ub=slack,
                      bounds=bounds, method="highs")
        if res.status != 0:
            return None
        n_min = float(res.x[m:].sum())
    for _ in range(m + 1):
        res = linprog(np.r_[-np.ones(m), np.zeros(m)],
                      A_ub=np.vstack([A_ub, np.r_[np.zeros(m), np.ones(m)]]),
                      b_ub=np.r_[slack, n_min * (1 + 1e-9) + 1e-12], bounds=bounds,
                      method="highs")
        if res.status != 0:
            return None
        p, n = res.x[:m], res.x[m:]
        unbounded = [i for i in range(m) if p[i] >= max_step * (1 - 1e-9)]
        if not unbounded:
            return np.clip(p, 0.0, max_step) - np.clip(n, 0.0, max_inward)
        for i in unbounded:
            bounds[i] = (0.0, 0.0)
    return None


def _step_directions(C: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """The other vertices and the change of vertex ``j``'s line intensities per unit step
    away from each, ``D`` (n_lines, k - 1): after the steps ``t`` they are ``C[j] + D @ t``."""
    others = np.array([i for i in range(C.shape[0]) if i != j], dtype=int)
    return others, (C[j][None, :] - C[others]).T


def _bounding_lines(C: np.ndarray, allow: np.ndarray, j: int,
                    line_elements: list[str] | None = None) -> np.ndarray:
    """The lines that bound the steps of vertex ``j``: all but those below their zero band
    in ``j`` that are no overshoot. An overshoot beyond a vertex that holds the line (above
    ``MEASURED`` times its band) lowers every line family of the element; a line below
    its band that no other vertex holds, or whose element has another family within or
    above its band (Ti L below, Ti K within), is the templates' mismatch to the data and
    would pull the vertex back for nothing."""
    others = [i for i in range(C.shape[0]) if i != j]
    below = C[j] < -allow[j]
    held = np.any(C[others] > MEASURED * allow[others], axis=0)
    overshoot = below & held
    if line_elements is not None:
        element = np.asarray(line_elements)
        for el in np.unique(element[overshoot]):
            overshoot[element == el] &= bool(below[element == el].all())
    return ~below | overshoot


def _overshot_lines(lifted: np.ndarray, line_elements: list[str] | None) -> np.ndarray:
    """Every line family of the elements a vertex overshoots (``lifted``: its lines below
    their band that :func:`_bounding_lines` keeps as bounds): a pull-back must leave them
    at or below the upper edge of their zero band.

    The overshot element is absent from the phase, so all its families are zero; a
    pull-back that lifts one family to its band's lower edge while it takes another above
    the upper edge moves the vertex by the templates' mismatch between the families, not
    by the overshoot. On the other model's spectra the gold particles' vertex had Ti K at
    -1.1 and Ti L at -1.5 allowances (the true spectrum's Ti L at -1.1: the window's
    absorption); lifting Ti L pulled the vertex 0.02 towards TiO2 until Ti K stood at
    +2.0, 4.75 -> 5.46 degrees (oracle 3.38).

    >>> _overshot_lines(np.array([False, True, False]), ["Ti", "Ti", "Au"])  # Ti K, L; Au L
    array([ True,  True, False])
    """
    if line_elements is None:
        return np.zeros(lifted.size, dtype=bool)
    element = np.asarray(line_elements)
    return np.isin(element, element[lifted])


def step_supported(
    C: np.ndarray,
    allow: np.ndarray,
    j: int,
    t: np.ndarray,
    line_elements: list[str] | None = None,
) -> bool:
    """Whether the step ``t`` of vertex ``j`` is evidence of missing (or overshot) lines.

    The tests of the module docstring, on the template intensities ``C`` and the zero band
    of every vertex (a line of a vertex is zero within ``[-allow, allow]``; it is *held*
    above ``MEASURED`` times ``allow``, outside the band by the band's width). An outward
    step (``t_i > 0``) must be resolved (some line of ``j`` falls by more than
    ``MEASURED * allow``), every line that stops it (the step takes it from within or above
    its band to the band's lower edge; a line below its band before the step is the
    templates' mismatch and bounds nothing, :func:`_bounding_lines`) must be held by a
    vertex the step moves away from, and, given ``line_elements`` (whose lines
    of one element come K, L, M in that order, as :func:`line_basis` gives them), the
    first line of each stopping element must end within its zero band. A pull-back
    (``t_i < 0``) lifts the lines of ``j`` below their band; each vertex it moves towards
    must hold one of them, else the pull-back trades the whole spectrum for a line at the
    noise level of both vertices.

    Parameters
    ----------
    C : ndarray (k, n_lines), template intensities of the vertices
    allow : ndarray (k, n_lines), half-width of each zero band
    j : int, the vertex moved
    t : ndarray (k - 1,), its steps away from the other vertices (in index order)
    line_elements : list of str, optional, the element of each line

    Returns
    -------
    bool
    """
    others, D = _step_directions(C, j)
    held = C > MEASURED * allow
    toward = others[t < -STEP_TOL]
    below = C[j] < -allow[j]
    if toward.size and not np.all(np.any(held[toward][:, below], axis=1)):
        return False
    away = others[t > STEP_TOL]
    if away.size == 0:
        return True
    new = C[j] + D @ t
    if np.max((C[j] - new) / allow[j]) <= MEASURED:
        return False
    stops = np.flatnonzero((new <= -allow[j] * (1.0 - STOP_TOL)) & (C[j] >= -allow[j]))
    if not np.all(np.any(held[away][:, stops], axis=0)):
        return False
    if line_elements is None:
        return True
    element = np.asarray(line_elements)
    top = _top_lines(element, element[stops])
    return bool(np.all(new[top] <= allow[j][top]))


def _top_lines(element: np.ndarray, of: np.ndarray) -> np.ndarray:
    """The row of the highest line family (K, else L, else M: the first row of each
    element, as :func:`line_basis` orders them) of each element in ``of``, given the
    element of every row; the family the templates fit best (see the module docstring)."""
    first = np.unique(element, return_index=True)[1]
    return first[np.isin(element[first], of)]


def mixture_plateau(
    C: np.ndarray,
    allow: np.ndarray,
    j: int,
    t: np.ndarray,
    line_elements: list[str],
    partners: np.ndarray | None = None,
) -> bool:
    """Whether vertex ``j`` is a mixture of the extrapolated phase with a neighbour.

    A phase that is never pure can still form a tight cluster of pixels all at the same
    mixture with a neighbour (nanoclusters that are at most half of any pixel, particles
    always on their support film): the cluster tests see a pure phase, and the vertex is
    that mixture. Its line step ``t`` then takes the neighbour ``i`` out whole: the
    cluster holds (above ``MEASURED`` times its zero band) the lines of at least two
    elements that ``i`` holds, and every element that ``i`` holds ends within the zero
    band of ``j`` in its highest line family (as :func:`step_supported` asks of the
    stopping elements: on espm's spectra the Y2Ti2O7 plateau keeps a Cr L beside O K with
    Cr K at zero). One line stops the step; a second element of ``i`` reaching zero with it is the
    evidence that the cluster holds ``i`` in its own proportions. With one element
    nothing but the stopping line is tested, and a phase that shares that element with
    ``i`` would lose it (a SiO2 layer stepped away from Si keeps only its O). A pure phase
    that shares an element with a neighbour it steps away from keeps that line above the
    band (ferrite's Fe, stepped away from the Fe-bearing carbide; Opx beside olivine) and
    is no plateau. The lines cannot tell a pure phase from its mixture with a neighbour
    whose elements are all among its own (``MgSiO3`` is half ``Mg2SiO4``, half ``SiO2``):
    such a vertex is kept.

    Parameters
    ----------
    C : ndarray (k, n_lines), template intensities of the vertices
    allow : ndarray (k, n_lines), half-width of each zero band
    j : int, the vertex
    t : ndarray (k - 1,), its steps away from the other vertices (in index order), which
        :func:`step_supported` accepts
    line_elements : list of str, the element of each line
    partners : ndarray (k,) of bool, optional
        The vertices that may be the neighbour (those the data show pure); default all.

    Returns
    -------
    bool
    """
    k = C.shape[0]
    others, D = _step_directions(C, j)
    new = C[j] + D @ t
    element = np.asarray(line_elements)
    ok = np.ones(k, dtype=bool) if partners is None else np.asarray(partners, dtype=bool)
    for i in others[(t > STEP_TOL) & ok[others]]:
        held = C[i] > MEASURED * allow[i]
        shared = held & (C[j] > MEASURED * allow[j])
        top = _top_lines(element, element[held])
        if np.unique(element[shared]).size >= 2 and np.all(new[top] <= allow[j][top]):
            return True
    return False


def extrapolate_vertices(
    S: np.ndarray,
    counts: np.ndarray,
    which: np.ndarray,
    G: np.ndarray,
    n_lines: int,
    *,
    n_sd: float = N_SD,
    mismatch: float = MISMATCH,
    max_step: float = MAX_STEP,
    max_inward: float = MAX_INWARD,
    line_elements: list[str] | None = None,
    check: bool = True,
    plateau: np.ndarray | None = None,
    partners: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move the vertices ``which`` as far out as their line intensities stay non-negative.

    For each vertex ``j`` in ``which``: steps ``t_i`` (``i != j``, between
    ``-max_inward`` and ``max_step``) such that every line intensity of
    ``s_j + sum_i t_i (s_j - s_i)`` is at least ``-(n_sd sd_j + mismatch |c_j|_1)``: zero
    within counting noise and the templates' mismatch to the data (absorption, the
    continuum basis). A vertex with a line below that (NMF moved it too far out) is first
    moved back in by the least total inward step that lifts it; then as far out as the
    lines allow (the largest total outward step, never traded for an inward one). A
    direction no line bounds gets no outward step; a vertex the constraints cannot all
    hold for is kept. With ``check``, the lines below their band that are no overshoot
    bound nothing, and a vertex whose step fails :func:`step_supported` is kept too (the
    module docstring). The other vertices are those of ``S`` before any move. The moved
    spectrum is clipped at zero (channels where the subtracted neighbour is above the
    vertex by noise) and renormalised.

    Parameters
    ----------
    S : ndarray (k, channels), rows on the simplex
    counts : ndarray (k,), counts behind each spectrum (see :func:`line_coefficients`)
    which : ndarray (k,) of bool, the vertices to move (those without a pure cluster)
    G, n_lines : from :func:`line_basis`
    n_sd : float, counting-noise sd below zero a line may reach
    mismatch : float, and this fraction of the vertex's total line intensity
    max_step, max_inward : bounds of every ``t_i``
    line_elements : list of str, optional
        The element of each line row (``names`` of :func:`line_basis` up to the ``_``),
        for the family test of :func:`step_supported`.
    check : bool
        Leave the lines below their band that are no overshoot out of the bounds, and
        keep a vertex whose step is not supported (:func:`step_supported`).
    plateau : ndarray (k,) of bool, optional
        Vertices at a pure cluster (not in ``which``), moved (with ``check`` and
        ``line_elements``) only where the cluster is a mixture plateau: the step is
        supported and takes out whole a neighbour that is itself at a pure cluster
        (:func:`mixture_plateau`).
    partners : ndarray (k,) of bool, optional
        The vertices at a pure cluster that a plateau may hold (default ``plateau``): a
        bootstrap replicate tries as plateaus only the vertices the fit extrapolated, while
        every vertex at a cluster in the replicate is a possible partner.

    Returns
    -------
    spectra : ndarray (k, channels), rows on the simplex (the rows not moved are those of
        ``S``)
    transform : ndarray (k, k)
        ``spectra`` is ``transform @ S`` clipped at zero and renormalised; rows sum to one,
        with entries ``-t_i`` for a moved vertex.
    steps : ndarray (k, k)
        ``steps[j, i] = t_i`` of vertex ``j`` (zero diagonal, zero rows for the others).
    """
    S = np.asarray(S, dtype=np.float64)
    k = S.shape[0]
    C, sd = line_coefficients(S, G, n_lines, counts)
    assert sd is not None
    steps = np.zeros((k, k))
    allow = n_sd * sd + mismatch * np.abs(C).sum(axis=1, keepdims=True)
    tried = np.zeros(k, dtype=bool) if plateau is None else np.asarray(plateau, dtype=bool)
    partners = tried if partners is None else np.asarray(partners, dtype=bool)
    for j in np.flatnonzero(np.asarray(which, dtype=bool) | tried):
        others, D = _step_directions(C, j)
        if others.size == 0:
            continue
        rows: np.ndarray | slice = slice(None)
        ceiling = np.zeros(n_lines, dtype=bool)
        if check:
            rows = _bounding_lines(C, allow, j, line_elements)
            ceiling = _overshot_lines(rows & (C[j] < -allow[j]), line_elements)
        t = _steps(np.vstack([D[rows], -D[ceiling]]),
                   np.r_[(C[j] + allow[j])[rows], (allow[j] - C[j])[ceiling]],
                   max_step, max_inward)
        if t is None or (check and not step_supported(C, allow, j, t, line_elements)):
            continue
        if tried[j] and not (check and line_elements is not None
                             and mixture_plateau(C, allow, j, t, line_elements, partners)):
            continue
        steps[j, others] = t
    T = step_transform(steps)
    out = S.copy()
    moved = steps.any(axis=1)
    if moved.any():
        new = np.clip(T[moved] @ S, 0.0, None)
        out[moved] = new / new.sum(axis=1, keepdims=True)
    return out, T, steps
