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
the objective, so the objective still never increases.

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
#: :func:`psnmf.selection.choose_smoothing` (0 = no smoothing is always a candidate).
SMOOTHING_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)

#: Check windows of plain sweeps still needed (predicted from the convergence rate) above
#: which :func:`smooth_maps` switches to SQUAREM: extrapolated states cost about twice a
#: plain sweep's time, so a few windows of fast plain sweeps are cheaper.
SLOW_WINDOWS = 10.0

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


@njit(parallel=True, cache=True)
def _rb_sweep(indptr, indices, data, St, A, lam, tv, eps, parity, inner, tol, active):
    """Update every pixel with ``(y + x) % 2 == parity``, its neighbours held fixed.

    Only pixels with ``active[y, x]`` are updated, and only active neighbours enter the
    penalty: an inactive (masked-out) pixel is no part of the problem.

    Pixels of one colour of the checkerboard share no neighbour pair, so updating them
    together is exact block-coordinate descent. Each pixel runs up to ``inner`` MM steps
    of its own convex problem (EM surrogate of its likelihood, quadratic majoriser of the
    penalty at its current differences) while its counts sit in cache.
    """
    ny, nx, k = A.shape
    for y in prange(ny):
        a = np.empty(k)
        e = np.empty(k)
        beta = np.empty(k)
        nb = np.empty((4, k))
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
            for _ in range(inner):
                # EM surrogate of the pixel's likelihood
                for q in range(k):
                    e[q] = 0.0
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
                for q in range(k):
                    e[q] *= a[q]
                # quadratic majoriser of the penalty
                wsum = 0.0
                for q in range(k):
                    beta[q] = 0.0
                for t in range(m):
                    w = 1.0
                    if tv:
                        d = 0.0
                        for q in range(k):
                            diff = a[q] - nb[t, q]
                            d += diff * diff
                        w = 1.0 / math.sqrt(d + eps * eps)
                    wsum += w
                    for q in range(k):
                        beta[q] += w * nb[t, q]
                for q in range(k):
                    beta[q] *= lam
                change = 0.0
                old0 = a.copy()
                _solve_pixel(e, 0.5 * lam * wsum, beta, a)
                for q in range(k):
                    change = max(change, abs(a[q] - old0[q]))
                if change <= tol:
                    break
            for q in range(k):
                A[y, x, q] = a[q]


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
    St = np.ascontiguousarray(S.T, dtype=np.float64)
    cur = np.ascontiguousarray(A, dtype=np.float64).reshape(ny, nx, k).copy()
    active = _active((ny, nx), pixel_mask)
    lam = float(lam)

    def sweep(maps: np.ndarray, steps: int = int(inner)) -> np.ndarray:
        """One red and one black sweep of ``steps`` MM steps per pixel, in place."""
        for parity in (0, 1):
            _rb_sweep(X.indptr, X.indices, X.data, St, maps, lam, tv, float(eps), parity,
                      steps, 1e-9, active)
        return maps

    def objective(maps: np.ndarray) -> float:
        return smoothing_objective(X, maps, S, image_shape, lam, penalty=penalty, eps=eps,
                                   pixel_mask=pixel_mask)

    history: list[float] = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - it is the iteration count after the loop
        if (it - 1) % check_every == 0:
            obj = objective(cur)
            if history and history[-1] - obj <= tol * abs(obj):
                history.append(obj)
                converged = True
                break
            history.append(obj)
            if accelerate and _slow(history, tol, SLOW_WINDOWS):
                cur, more, n, converged = _squarem(
                    cur, obj, lambda maps: sweep(maps, 1), objective, active.astype(bool),
                    max_iter=max_iter - it + 1, tol=tol, window=check_every)
                history.extend(more[1:])
                it += n - 1
                break
        sweep(cur)
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
    cur: np.ndarray, f: float, sweep: Any, objective: Any, active: np.ndarray, *,
    max_iter: int, tol: float, window: int,
) -> tuple[np.ndarray, list[float], int, bool]:
    """Minimise with SQUAREM-accelerated sweeps (Varadhan & Roland, Scand. J. Stat. 2008).

    A cycle takes two sweeps ``A1 = F(A0)``, ``A2 = F(A1)``, extrapolates along
    ``r = A1 - A0``, ``v = A2 - 2 A1 + A0`` to ``A0 - 2 a r + a^2 v`` with the step
    ``a = -|r| / |v|`` (at most -1), puts each active pixel back on the simplex (floored at
    1e-12, renormalised) and sweeps once more. The result is kept only when its objective
    is below that of ``A0``; otherwise the cycle ends at ``F(A2)``, so the objective never
    increases. ``sweep`` takes one MM step per pixel: from an extrapolated state every
    pixel moves, and a second step would double a sweep's cost for less than the
    extrapolation gains. ``f`` is the objective at ``cur``. Masked (inactive) pixels are
    never changed. Returns the maps, the objectives (``f`` first), the sweeps run and
    whether it converged: the run stops when the objective fell by at most ``tol`` times
    its magnitude over the last ``window`` sweeps (the plain solver's rule), or after
    ``max_iter`` sweeps (the last ones plain when fewer than a cycle's three are left).
    """
    history = [f]
    done = [0]  # sweeps at each entry of history
    n = 0
    while n < max_iter:
        if max_iter - n < 3:  # no room for a cycle: plain sweeps up to max_iter
            sweep(cur)
            n += 1
            f = objective(cur)
            history.append(f)
            done.append(n)
            continue
        a1 = sweep(cur.copy())
        a2 = sweep(a1.copy())
        n += 2
        r = (a1 - cur)[active]
        v = (a2 - a1)[active] - r
        nv = float(np.linalg.norm(v))
        step = min(-float(np.linalg.norm(r)) / nv, -1.0) if nv > 0 else -1.0
        trial = cur.copy()
        trial[active] = cur[active] - 2.0 * step * r + step * step * v
        np.maximum(trial, 1e-12, out=trial, where=active[..., None])
        trial[active] /= trial[active].sum(axis=-1, keepdims=True)
        sweep(trial)
        n += 1
        f_trial = objective(trial)
        if not (math.isfinite(f_trial) and f_trial <= f):
            trial = sweep(a2)
            f_trial = objective(trial)
        cur, f = trial, f_trial
        history.append(f)
        done.append(n)
        # the objective ``window`` sweeps ago (the last entry at least that far back)
        back = next((h for h, d in zip(history[::-1], done[::-1], strict=True)
                     if n - d >= window), None)
        if back is not None and back - f <= tol * abs(f):
            return cur, history, n, True
    return cur, history, n, False
