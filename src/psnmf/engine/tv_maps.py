"""Spatially regularised abundance maps: total variation or Laplacian smoothing.

PSNMF's full-resolution stage estimates each pixel's abundances from that pixel's own
counts - tens to a few hundred - so the maps carry the full Poisson noise of a pixel even
where the microstructure is flat over many pixels. Phase maps of real samples are piecewise
smooth (grains, lamellae, particles), so a spatial prior lowers the error well below what
any per-pixel estimate can reach (the per-pixel oracle, which knows the true spectra).

The maps solve, with the spectra ``S`` fixed (rows on the simplex) and every pixel's
abundances ``a_i`` on the simplex::

    min_A  - sum_ij X_ij log (a_i S)_j  +  lam * sum_{i~j} phi(||a_i - a_j||_2)

over the 4-neighbour pairs ``i~j`` of the image grid, with ``phi(r) = sqrt(r^2 + eps^2)``
(``penalty='tv'``: a smoothed isotropic total variation, which keeps phase boundaries
sharp) or ``phi(r) = r^2 / 2`` (``penalty='laplacian'``: the quadratic smoothness of
espm's smooth NMF). The count scale of a pixel stays its total counts, so the fused cube
keeps every pixel's counts.

Algorithm: block-coordinate majorise-minimise, each step decreasing the objective. The
pixels are split like a checkerboard; pixels of one colour share no neighbour pair, so all
of them are updated at once with their neighbours (the other colour) held fixed. For one
pixel, with its neighbours ``a_j`` fixed:

* the likelihood is majorised by the EM surrogate ``-sum_k e_k log a_k`` (``e_k`` the
  expected counts of phase ``k`` in the pixel under its current abundances);
* ``phi`` by its quadratic majoriser at the current differences, weights
  ``w_j = phi'(r_j) / r_j`` (iteratively reweighted least squares for TV, ``w = 1`` for
  the Laplacian).

The surrogate ``sum_k [-e_k log a_k + alpha a_k^2 - beta_k a_k]`` (``alpha = lam/2 sum_j
w_j``, ``beta_k = lam sum_j w_j a_jk``) is minimised exactly on the simplex: each ``a_k``
is the positive root of a quadratic in the simplex multiplier ``mu``, and ``mu`` is found
by a safeguarded Newton search (``sum_k a_k(mu) = 1``). A pixel takes a few such steps while
its counts are in cache. With ``lam = 0`` this is exactly the EM update of the
unregularised stage.

Block-coordinate sweeps pass information one pixel per sweep, so they converge slowly
where the weight is large (flat regions must agree over many pixels). The sweeps are
therefore extrapolated with SQUAREM (squared iterative methods, Varadhan & Roland 2008), a
fixed-point accelerator for EM-like maps: two sweeps give the direction and curvature of
the path, a step along it is projected back on the simplex and kept only when it lowers
the objective, so the objective still never increases. The step length is capped, the cap
growing while steps succeed and shrinking after a failed one (Du & Varadhan 2020): where
the plain sweeps crawl, the uncapped step grows to hundreds and fails cycle after cycle.
The objective needs no pass of its own: a sweep's first MM step evaluates every pixel's
model, which gives the objective of the maps it starts from (:func:`_rb_sweep`).

Examples
--------
>>> import numpy as np
>>> import scipy.sparse as sp
>>> rng = np.random.default_rng(0)
>>> S = rng.dirichlet(np.ones(20), size=2)
>>> truth = np.zeros((16, 16, 2)); truth[:, :8, 0] = 1; truth[:, 8:, 1] = 1
>>> X = sp.csr_matrix(rng.poisson(10 * truth @ S).reshape(256, 20).astype(float))
>>> start = np.full((256, 2), 0.5)
>>> res = smooth_maps(X, start, S, (16, 16), lam=3.0)
>>> bool(np.abs(res.maps - truth.reshape(256, 2)).mean() < 0.05), res.converged
(True, True)

Why hand-written: no library solves a Poisson likelihood with a simplex constraint and a
TV penalty (scikit-image's TV denoisers are for Gaussian noise on a single image, espm's
smooth NMF has no simplex and no sparse kernels), and the per-pixel root search is a short
loop Numba compiles well.

The weight ``lam`` is chosen from the data (:func:`psnmf.selection.choose_smoothing`):
the counts are split into two independent Poisson halves (binomial thinning), the maps
are fitted on one half for each candidate weight and scored by the Poisson deviance of
the other half. The prior
strength of a penalised likelihood (a MAP estimate) does not depend on the number of
counts, so the weight chosen on the half is used as is on the whole.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from psnmf.engine import _kernels as kernels
from psnmf.engine._kernels import LANES

logger = logging.getLogger(__name__)

__all__ = [
    "PENALTIES",
    "SMOOTHING_GRID",
    "check_penalty",
    "smooth_maps",
    "smoothing_objective",
]

#: Penalties of :func:`smooth_maps`.
PENALTIES = ("tv", "laplacian")

#: Candidate weights, in units of the mean counts per pixel of the full data, tried by
#: :func:`psnmf.selection.choose_smoothing` (0 = no smoothing is always a candidate), in
#: steps of sqrt(2) from 0.01 to 5.12. The maps' error against the truth changes by 10-30 %
#: over a factor 3 of the weight near its best (thirteen simulated datasets, eight samples,
#: both count presets), so a grid in steps of 3 left up to twice the best error; steps of
#: sqrt(2) cost a few more warm-started solves, each a small move from the previous.
SMOOTHING_GRID = (0.0,) + tuple(0.01 * 2.0 ** (i / 2) for i in range(19))

#: Check windows of plain sweeps still needed (predicted from the convergence rate) above
#: which :func:`smooth_maps` switches to SQUAREM. An extrapolated cycle's sweeps take one
#: MM step per pixel (a plain sweep two) and its objectives come with the sweeps, so a
#: SQUAREM sweep costs about 0.6 of a plain one: switching is cheaper unless the plain
#: sweeps are about to stop. Measured on simulated mantle maps from per-pixel maps (one
#: thread, tol 1e-6), 10 windows -> 1 window: 180 x 180 at 0.1 / 0.3 / 3 x counts per pixel
#: 91 / 111 / 196 sweeps -> 79 / 95 / 195, 512 x 512 at 0.1 91 -> 79 (31 -> 21 CPU s with
#: the cap and the objectives from the sweeps), each at least as close to a tight-tol
#: minimum (512 x 512: objective gap 2.8e-6 -> 1.0e-6, maps RMS 0.0024 -> 0.0013); 0 windows
#: also switched the fast 0.03 case, 88 -> 67 sweeps but further from the minimum.
SLOW_WINDOWS = 1.0

#: Factor by which :func:`_squarem` lets its longest step grow after a successful step
#: that the cap held back (Du & Varadhan's ``mstep``, J. Stat. Softw. 2020).
STEP_GROWTH = 4.0

#: Smoothing of the TV penalty near zero difference, in abundance units.
TV_EPS = 0.05


# -----------------------------------------------------------------------------------------
# Kernels
# -----------------------------------------------------------------------------------------
@njit(cache=True)
def _solve_pixel(e, alpha, beta, out):
    """``argmin_a sum_k [-e_k log a_k + alpha a_k^2 - beta_k a_k]`` on the simplex.

    ``a_k(mu)`` is the non-negative root of ``2 alpha a^2 + (mu - beta_k) a - e_k = 0``,
    decreasing in ``mu``; ``mu`` is found by Newton steps kept inside a bisection bracket.
    """
    k = e.shape[0]
    if alpha <= 0.0:  # plain EM update
        s = 0.0
        for q in range(k):
            s += e[q]
        if s > 0.0:
            for q in range(k):
                out[q] = e[q] / s
        else:
            for q in range(k):
                out[q] = 1.0 / k
        return
    bmin = beta[0]
    bmax = beta[0]
    esum = 0.0
    for q in range(k):
        bmin = min(bmin, beta[q])
        bmax = max(bmax, beta[q])
        esum += e[q]
    lo = bmin - 2.0 * alpha  # sum a(lo) >= 1
    hi = bmax + esum + 2.0 * alpha  # sum a(hi) <= 1
    mu = 0.5 * (lo + hi)
    for _ in range(100):
        f = -1.0
        df = 0.0
        for q in range(k):
            c = mu - beta[q]
            disc = math.sqrt(c * c + 8.0 * alpha * e[q])
            if c < 0.0:
                a = (disc - c) / (4.0 * alpha)
            else:  # the same root, written without cancellation
                a = 2.0 * e[q] / (disc + c) if disc + c > 0.0 else 0.0
            out[q] = a
            f += a
            if disc > 0.0:
                df -= a / disc
        if f > 0.0:
            lo = mu
        else:
            hi = mu
        if abs(f) <= 1e-13 or hi - lo <= 1e-15 * (abs(hi) + abs(lo) + 1.0):
            break
        step = mu - f / df if df < 0.0 else 0.5 * (lo + hi)
        mu = step if lo < step < hi else 0.5 * (lo + hi)
    s = 0.0
    for q in range(k):
        s += out[q]
    for q in range(k):
        out[q] /= s


@njit(cache=True, inline="always")
def _em_weights_lanes(p0, p1, indices, data, St, a, e, want):
    """:func:`_em_weights` for ``St`` of exactly :data:`LANES` columns (zero-padded when
    ``k`` is smaller): the abundances and sums are scalars the compiler keeps in
    registers, and a padded lane adds exact zeros, so the results are bit-identical
    (:func:`psnmf.engine._kernels._ratio_pass_lanes`)."""
    k = a.shape[0]
    al = kernels.lanes_of(a, k)
    s = kernels.ZERO_LANES
    ll = 0.0
    for p in range(p0, p1):
        j = indices[p]
        mod = kernels.lanes_model(al, St, j)
        if mod < 1e-300:
            mod = 1e-300
        if want:
            ll += data[p] * math.log(mod)
        s = kernels.lanes_add(s, data[p] / mod, St, j)
    for q in range(k):
        e[q] = s[q]
    return ll


@njit(cache=True, inline="always")
def _em_weights(p0, p1, indices, data, St, a, e, want):
    """``e_q = sum_j X_j S_qj / (a S)_j`` over the counts ``p0:p1`` of one pixel; returns
    ``sum_j X_j log (a S)_j`` with ``want`` (0 otherwise: the logarithms are the costly
    part). The two loops are written out so that the common one carries no branch."""
    if St.shape[1] == LANES:
        return _em_weights_lanes(p0, p1, indices, data, St, a, e, want)
    k = a.shape[0]
    for q in range(k):
        e[q] = 0.0
    ll = 0.0
    if want:
        for p in range(p0, p1):
            j = indices[p]
            mod = 0.0
            for q in range(k):
                mod += a[q] * St[j, q]
            if mod < 1e-300:
                mod = 1e-300
            r = data[p] / mod
            ll += data[p] * math.log(mod)
            for q in range(k):
                e[q] += r * St[j, q]
    else:
        for p in range(p0, p1):
            j = indices[p]
            mod = 0.0
            for q in range(k):
                mod += a[q] * St[j, q]
            if mod < 1e-300:
                mod = 1e-300
            r = data[p] / mod
            for q in range(k):
                e[q] += r * St[j, q]
    return ll


@njit(parallel=True, cache=True)
def _rb_sweep(indptr, indices, data, St, A, lam, tv, eps, parity, inner, tol, active, want):
    """Update every pixel with ``(y + x) % 2 == parity``, its neighbours held fixed.

    Only pixels with ``active[y, x]`` are updated, and only active neighbours enter the
    penalty: an inactive (masked-out) pixel is no part of the problem.

    Pixels of one colour of the checkerboard share no neighbour pair, so updating them
    together is exact block-coordinate descent. Each pixel runs up to ``inner`` MM steps
    of its own convex problem (EM surrogate of its likelihood, quadratic majoriser of the
    penalty at its current differences) while its counts sit in cache.

    With ``want``, returns ``(loglik, pen)`` at the maps as they were on entry, from the
    first MM step's model values (one logarithm per count more; 0 without ``want``):
    ``loglik = sum X log(a S)`` over the updated pixels and ``pen`` the penalty (``phi``
    unweighted) of every active pair with one updated pixel.
    A pixel's likelihood depends on its own maps only, and every neighbour pair has one
    pixel of each colour, so the red sweep's ``loglik + lam * pen`` plus the black
    sweep's ``loglik`` is the objective of the maps before the red sweep, up to the
    likelihood of the inactive pixels, without a separate pass over the counts.
    """
    ny, nx, k = A.shape
    loglik = np.zeros(ny)  # per row: a fixed summation order whatever the threads
    pen = np.zeros(ny)
    for y in prange(ny):
        a = np.empty(k)
        old = np.empty(k)
        e = np.empty(k)
        beta = np.empty(k)
        nb = np.empty((4, k))
        row_ll = 0.0
        row_pen = 0.0
        for x in range((y + parity) % 2, nx, 2):
            if not active[y, x]:
                continue
            i = y * nx + x
            m = 0
            if x > 0 and active[y, x - 1]:
                nb[m] = A[y, x - 1]
                m += 1
            if x + 1 < nx and active[y, x + 1]:
                nb[m] = A[y, x + 1]
                m += 1
            if y > 0 and active[y - 1, x]:
                nb[m] = A[y - 1, x]
                m += 1
            if y + 1 < ny and active[y + 1, x]:
                nb[m] = A[y + 1, x]
                m += 1
            for q in range(k):
                a[q] = A[y, x, q]
            p0 = indptr[i]
            p1 = indptr[i + 1]
            for step in range(inner):
                # EM surrogate of the pixel's likelihood
                ll = _em_weights(p0, p1, indices, data, St, a, e, want and step == 0)
                for q in range(k):
                    e[q] *= a[q]
                # quadratic majoriser of the penalty
                wsum = 0.0
                for q in range(k):
                    beta[q] = 0.0
                for t in range(m):
                    d = 0.0
                    for q in range(k):
                        diff = a[q] - nb[t, q]
                        d += diff * diff
                    w = 1.0
                    if tv:
                        phi = math.sqrt(d + eps * eps)
                        w = 1.0 / phi
                    else:
                        phi = 0.5 * d
                    if step == 0:
                        row_pen += phi
                    wsum += w
                    for q in range(k):
                        beta[q] += w * nb[t, q]
                if step == 0:
                    row_ll += ll
                for q in range(k):
                    beta[q] *= lam
                    old[q] = a[q]
                _solve_pixel(e, 0.5 * lam * wsum, beta, a)
                change = 0.0
                for q in range(k):
                    change = max(change, abs(a[q] - old[q]))
                if change <= tol:
                    break
            for q in range(k):
                A[y, x, q] = a[q]
        loglik[y] = row_ll
        pen[y] = row_pen
    return loglik.sum(), pen.sum()


@njit(parallel=True, cache=True)
def _penalty(A, tv, eps, active):
    ny, nx, k = A.shape
    total = 0.0
    for y in prange(ny):
        row = 0.0
        for x in range(nx):
            for dy, dx in ((0, 1), (1, 0)):
                yy = y + dy
                xx = x + dx
                if yy < ny and xx < nx and active[y, x] and active[yy, xx]:
                    d = 0.0
                    for q in range(k):
                        t = A[y, x, q] - A[yy, xx, q]
                        d += t * t
                    row += math.sqrt(d + eps * eps) if tv else 0.5 * d
        total += row
    return total


@njit(parallel=True, cache=True)
def _extrapolate(A0, A1, A2, active, out, cap):
    """SQUAREM's step from ``A0`` along ``A1 = F(A0)``, ``A2 = F(A1)``, written to ``out``.

    ``r = A1 - A0`` and ``v = A2 - 2 A1 + A0`` over the active pixels give the step
    ``s = min(-|r| / |v|, -1)``, at least ``-cap`` (-1 where ``v = 0``); each active pixel of
    ``A0 - 2 s r + s^2 v`` is floored at 1e-12 and put back on the simplex, each inactive
    pixel keeps ``A0``. Two parallel passes, no temporaries.
    """
    ny, nx, k = A0.shape
    rr = np.zeros(ny)
    vv = np.zeros(ny)
    for y in prange(ny):
        for x in range(nx):
            if active[y, x]:
                for q in range(k):
                    r = A1[y, x, q] - A0[y, x, q]
                    v = A2[y, x, q] - A1[y, x, q] - r
                    rr[y] += r * r
                    vv[y] += v * v
    nr = math.sqrt(rr.sum())
    nv = math.sqrt(vv.sum())
    step = max(min(-nr / nv, -1.0), -cap) if nv > 0.0 else -1.0
    for y in prange(ny):
        for x in range(nx):
            if not active[y, x]:
                for q in range(k):
                    out[y, x, q] = A0[y, x, q]
                continue
            s = 0.0
            for q in range(k):
                r = A1[y, x, q] - A0[y, x, q]
                v = A2[y, x, q] - A1[y, x, q] - r
                t = max(A0[y, x, q] - 2.0 * step * r + step * step * v, 1e-12)
                out[y, x, q] = t
                s += t
            for q in range(k):
                out[y, x, q] /= s
    return step


# -----------------------------------------------------------------------------------------
# Solver
# -----------------------------------------------------------------------------------------
def check_penalty(penalty: str) -> bool:
    if penalty not in PENALTIES:
        raise ValueError(f"penalty={penalty!r} is not one of {PENALTIES}.")
    return penalty == "tv"


def _active(image_shape: tuple[int, int], pixel_mask: np.ndarray | None) -> np.ndarray:
    """``uint8`` (ny, nx): 1 for the pixels in the problem, 0 for those masked out."""
    if pixel_mask is None:
        return np.ones(image_shape, dtype=np.uint8)
    mask = np.asarray(pixel_mask, dtype=bool)
    if mask.size != image_shape[0] * image_shape[1]:
        raise ValueError(f"pixel_mask has {mask.size} values, expected "
                         f"{image_shape[0]} x {image_shape[1]}.")
    return np.ascontiguousarray(~mask.reshape(image_shape), dtype=np.uint8)


def smoothing_objective(
    X: sp.csr_matrix, A: np.ndarray, S: np.ndarray, image_shape: tuple[int, int], lam: float,
    *, penalty: str = "tv", eps: float = TV_EPS, pixel_mask: np.ndarray | None = None,
) -> float:
    """``-sum X log(A S) + lam * penalty(A)``: the objective :func:`smooth_maps` decreases.

    ``pixel_mask`` (True = masked out): pairs with a masked pixel are not penalised.
    """
    tv = check_penalty(penalty)
    A2 = np.ascontiguousarray(A.reshape(-1, S.shape[0]), dtype=np.float64)
    _, _, xlogm = kernels.ratio_numerators(X, A2, S, want_A=False, want_S=False)
    pen = (_penalty(A2.reshape(*image_shape, -1), tv, float(eps),
                    _active(image_shape, pixel_mask)) if lam > 0 else 0.0)
    return -xlogm + lam * pen


@dataclass
class SmoothResult:
    """Result of :func:`smooth_maps`.

    Attributes
    ----------
    maps : ndarray (pixels, k), rows on the simplex
    objective : ndarray
        Objective every ``check_every`` iterations (non-increasing).
    n_iter : int
    converged : bool
    """

    maps: np.ndarray
    objective: np.ndarray
    n_iter: int
    converged: bool


def smooth_maps(
    X: Any,
    A: np.ndarray,
    S: np.ndarray,
    image_shape: tuple[int, int],
    lam: float,
    *,
    penalty: str = "tv",
    eps: float = TV_EPS,
    max_iter: int = 1000,
    tol: float = 1e-6,
    check_every: int = 10,
    inner: int = 2,
    pixel_mask: np.ndarray | None = None,
    accelerate: bool = True,
) -> SmoothResult:
    """Spatially regularised abundance maps for fixed spectra (see the module docstring).

    Parameters
    ----------
    X : scipy.sparse CSR (pixels, channels) counts, pixels in row-major image order
    A : ndarray (pixels, k)
        Start maps, rows on the simplex (e.g. the unregularised maps). Not modified.
    S : ndarray (k, channels)
        Fixed spectra, rows summing to one and covering every channel with counts.
    image_shape : (ny, nx)
    lam : float
        Weight of the penalty, in units of counts (``>= 0``; 0 gives plain per-pixel EM).
    penalty : {'tv', 'laplacian'}
    eps : float
        Smoothing of the TV penalty (abundance units).
    max_iter : int
    tol : float
        Stop when the objective decreases by at most ``tol`` times its magnitude over
        ``check_every`` iterations.
    check_every : int
    inner : int
        MM steps per pixel and sweep (its neighbours fixed).
    pixel_mask : ndarray (ny, nx) of bool, optional
        Pixels masked out (True): not updated (they keep their start maps) and no
        neighbour pair with one of them is penalised, so they neither smooth nor link the
        other pixels' maps.
    accelerate : bool
        Switch to SQUAREM-extrapolated sweeps (:func:`_squarem`) when the plain sweeps'
        convergence rate predicts more than :data:`SLOW_WINDOWS` further windows of
        ``check_every`` sweeps (large weights); False: plain sweeps only
        (``benchmarks/tv_solver.py`` times both). ``n_iter`` counts sweeps either way.

    Returns
    -------
    SmoothResult
    """
    tv = check_penalty(penalty)
    if not (isinstance(lam, int | float | np.floating | np.integer) and math.isfinite(lam)
            and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}.")
    ny, nx = image_shape
    X = sp.csr_matrix(X, dtype=np.float64)
    k = S.shape[0]
    if A.shape != (ny * nx, k) or X.shape[0] != ny * nx:
        raise ValueError(
            f"A has shape {A.shape} and X {X.shape}, expected ({ny * nx}, {k}) and "
            f"({ny * nx}, channels) for an image of {ny} x {nx} pixels and {k} spectra."
        )
    St = kernels.lane_columns(S)
    cur = np.ascontiguousarray(A, dtype=np.float64).reshape(ny, nx, k).copy()
    active = _active((ny, nx), pixel_mask)
    lam = float(lam)
    # the likelihood of the inactive pixels: a constant of the objective the sweeps skip
    fixed = ~active.ravel().astype(bool)
    ll_fixed = (kernels.ratio_numerators(X[fixed], cur.reshape(-1, k)[fixed], S,
                                         want_A=False, want_S=False)[2]
                if fixed.any() else 0.0)

    def sweep(maps: np.ndarray, steps: int = int(inner), want: bool = True) -> float:
        """One red and one black sweep of ``steps`` MM steps per pixel, in place; returns
        the objective of ``maps`` as they were on entry (:func:`_rb_sweep`), NaN without
        ``want``."""
        ll, pen = _rb_sweep(X.indptr, X.indices, X.data, St, maps, lam, tv, float(eps), 0,
                            steps, 1e-9, active, want)
        ll += _rb_sweep(X.indptr, X.indices, X.data, St, maps, lam, tv, float(eps), 1,
                        steps, 1e-9, active, want)[0]
        return -(ll + ll_fixed) + lam * pen if want else math.nan

    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - it is the iteration count after the loop
        check = (it - 1) % check_every == 0
        obj = sweep(cur, want=check)  # the objective before this sweep
        if check:
            if history and history[-1] - obj <= tol * abs(obj):
                history.append(obj)
                converged = True
                break
            history.append(obj)
            if accelerate and _slow(history, tol, SLOW_WINDOWS):
                cur, more, n, converged = _squarem(
                    cur, lambda maps, want=True: sweep(maps, 1, want), active.astype(bool),
                    max_iter=max_iter - it, tol=tol, window=check_every, done=it)
                history.extend(more)
                it += n
                break
    return SmoothResult(maps=cur.reshape(ny * nx, k), objective=np.asarray(history),
                        n_iter=it, converged=converged)


def _slow(history: list[float], tol: float, windows: float) -> bool:
    """Whether the plain sweeps would need more than ``windows`` further check windows.

    From the last three objectives (one window apart) the decrease per window ``d`` and
    its ratio ``rho`` (linear convergence: ``d`` shrinks by ``rho`` per window) give the
    windows left until ``d <= tol |f|``: ``log(tol |f| / d) / log(rho)``.
    """
    if len(history) < 3:
        return False
    d0, d1 = history[-3] - history[-2], history[-2] - history[-1]
    if not (d0 > 0 and d1 > 0):
        return False
    rho = d1 / d0
    if rho >= 1:  # not (yet) converging linearly: no rate to predict from
        return False
    target = tol * abs(history[-1])
    if target <= 0:  # tol = 0: the plain sweeps would run to max_iter
        return True
    return d1 > target and math.log(target / d1) / math.log(rho) > windows


def _squarem(
    cur: np.ndarray, sweep: Any, active: np.ndarray, *, max_iter: int, tol: float,
    window: int, done: int = 0,
) -> tuple[np.ndarray, list[float], int, bool]:
    """Minimise with SQUAREM-accelerated sweeps (Varadhan & Roland, Scand. J. Stat. 2008).

    A cycle takes two sweeps ``A1 = F(A0)``, ``A2 = F(A1)`` and extrapolates along
    ``r = A1 - A0``, ``v = A2 - 2 A1 + A0`` to ``A0 - 2 a r + a^2 v`` with the step
    ``a = -|r| / |v|`` (at most -1, at least ``-cap``), each active pixel put back on the
    simplex (:func:`_extrapolate`); that state is swept once more. ``sweep(maps, want)``
    runs one MM step per pixel in place and returns the objective of its input (NaN
    without ``want``, which skips the logarithms), so ``f(A0)`` comes with ``A1`` and
    ``f(extrapolated)`` with the sweep after it. The cycle's result ``F(extrapolated)`` is
    kept when ``f(extrapolated) <= f(A0)``. Otherwise the cap drops to a quarter of the
    failed step and ``F(extrapolated)`` is kept on probation: the next cycle's first sweep
    gives its objective, and if that is above ``f(A0)`` the run goes back to ``F(A2)`` (one
    sweep lost; a sweep lowers the objective, so the probation often passes). Either way
    the objective never increases: a sweep never raises it (block-coordinate MM), so
    ``f(F(B)) <= f(B) <= f(A0)``, and a state on probation is neither recorded nor
    returned before it passed. A kept step the cap held back multiplies the cap by
    :data:`STEP_GROWTH` (from 1, so the first cycles take short steps). Without the cap
    the step ``|r| / |v|`` grows to hundreds where the sweeps crawl (large weights) and
    fails cycle after cycle. From an extrapolated state every pixel moves,
    and a second MM step per pixel would double a sweep's cost for less than the
    extrapolation gains. Masked (inactive) pixels are never changed.

    Returns the maps, the objective at the start of every cycle (exact, each known one
    sweep later), the sweeps run and whether it converged: the run stops when the
    objective fell by at most ``tol`` times its magnitude over the last ``window`` sweeps
    (the plain solver's rule; ``done`` sweeps ran before ``cur``), or after ``max_iter``
    sweeps (the last ones plain when fewer than a cycle's are left; a probation still
    open at ``max_iter`` takes one or two sweeps more).
    """
    history: list[float] = []
    at: list[int] = []  # sweeps run before each entry of history
    n = 0
    a1, a2, trial, held = (np.empty_like(cur) for _ in range(4))
    cap = 1.0  # longest step allowed (magnitude): grows while steps succeed
    f_held = math.nan  # f(A0) of a cycle whose result awaits its check; nan: none
    while n < max_iter or not math.isnan(f_held):
        if math.isnan(f_held) and max_iter - n < 4:  # no room for a cycle: plain sweeps
            f = sweep(cur)
            history.append(f)
            at.append(done + n)
            n += 1
            continue
        a1[...] = cur
        f = sweep(a1)
        n += 1
        if not math.isnan(f_held):
            kept = math.isfinite(f) and f <= f_held
            f_held = math.nan
            if not kept:  # the extrapolated cycle's result is worse than its start
                cur, held = held, cur
                sweep(cur, want=False)  # F(A2) of that cycle
                n += 1
                continue
        history.append(f)
        at.append(done + n - 1)
        # the objective ``window`` sweeps ago (the last entry at least that far back)
        back = next((h for h, d in zip(history[::-1], at[::-1], strict=True)
                     if at[-1] - d >= window), None)
        if back is not None and back - f <= tol * abs(f):
            return a1, history, n, True
        if max_iter - n < 3:
            cur, a1 = a1, cur
            continue
        a2[...] = a1
        sweep(a2, want=False)
        step = _extrapolate(cur, a1, a2, active, trial, cap)
        f_trial = sweep(trial)
        n += 2
        logger.debug("SQUAREM step %.3g (cap %.3g): f %.12g -> %.12g", step, cap, f, f_trial)
        if math.isfinite(f_trial) and f_trial <= f:
            if -step >= cap:  # the cap held the step back: allow longer steps
                cap *= STEP_GROWTH
        else:
            cap = max(1.0, -step / 4.0)
            # F(extrapolated) may still be below f(A0): the next sweep tells
            f_held = f
            held, a2 = a2, held
        cur, trial = trial, cur
    return cur, history, n, False

