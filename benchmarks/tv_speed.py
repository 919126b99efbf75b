"""TV maps: the red-black block-MM solver against the accelerated EM-surrogate solver.

The maps of :func:`psnmf.engine.tv_maps.smooth_maps` solve a Poisson likelihood with fixed
spectra plus a total-variation penalty. This benchmark runs, in the same process on the same
data, two schemes for it:

* ``rb``: red-black block majorise-minimise in which every pixel update reads the pixel's
  counts for each of its ``inner=2`` EM steps (the kernels are copied below, they are not
  part of the package), objective every 10 iterations, stopped at a relative decrease of
  1e-6 over 10 iterations;
* ``new``: :func:`psnmf.engine.tv_maps.smooth_maps` with its defaults (one pass over the
  counts per outer iteration, one red-black sweep of the EM surrogate that reads no counts,
  adaptive over-relaxation with a monotone safeguard), the same stopping rule;

and a reference optimum: ``smooth_maps`` run ten times as many iterations as ``new`` took
(``tol=0``). Data: ``psnmf.simulate.mantle`` (seed 0), spectra and start maps from
``PSNMF(3, 4, random_state=0, smoothing=None)``, weights 0.03, 0.1, 0.3, 1 x counts/pixel;
then :func:`psnmf.selection.choose_smoothing` end to end with each solver.

    .venv/bin/python benchmarks/tv_speed.py                 # medium and low, 180 x 180
    .venv/bin/python benchmarks/tv_speed.py --size 256 --snr medium

Columns: wall time (s), outer iterations, passes over the counts, objective minus the
reference optimum (absolute, and relative to the objective), max |map - reference map|,
and the time ratio rb / new.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

import psnmf.selection as selection
from psnmf import PSNMF
from psnmf.engine.tv_maps import check_penalty, smooth_maps, smoothing_objective
from psnmf.simulate import mantle

WEIGHTS = (0.03, 0.1, 0.3, 1.0)


# -----------------------------------------------------------------------------------------
# The red-black block-MM scheme (every pixel step reads its counts), for comparison only
# -----------------------------------------------------------------------------------------
@njit(cache=True)
def _old_solve_pixel(e, alpha, beta, out):
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
def _old_rb_sweep(indptr, indices, data, St, A, lam, tv, eps, parity, inner, tol):
    """Update every pixel with ``(y + x) % 2 == parity``, its neighbours held fixed.

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
            i = y * nx + x
            m = 0
            if x > 0:
                nb[m] = A[y, x - 1]
                m += 1
            if x + 1 < nx:
                nb[m] = A[y, x + 1]
                m += 1
            if y > 0:
                nb[m] = A[y - 1, x]
                m += 1
            if y + 1 < ny:
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
                _old_solve_pixel(e, 0.5 * lam * wsum, beta, a)
                for q in range(k):
                    change = max(change, abs(a[q] - old0[q]))
                if change <= tol:
                    break
            for q in range(k):
                A[y, x, q] = a[q]


def rb_smooth_maps(X, A, S, image_shape, lam, *, penalty="tv", eps=0.05, max_iter=1000,
                   tol=1e-6, check_every=10, inner=2):
    """The red-black block-MM solver: returns (maps, n_iter, converged)."""
    tv = check_penalty(penalty)
    ny, nx = image_shape
    X = sp.csr_matrix(X, dtype=np.float64)
    k = S.shape[0]
    St = np.ascontiguousarray(S.T, dtype=np.float64)
    cur = np.ascontiguousarray(A, dtype=np.float64).reshape(ny, nx, k).copy()
    last = None
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        if (it - 1) % check_every == 0:
            obj = smoothing_objective(X, cur, S, image_shape, lam, penalty=penalty, eps=eps)
            if last is not None and last - obj <= tol * abs(obj):
                converged = True
                break
            last = obj
        for parity in (0, 1):
            _old_rb_sweep(X.indptr, X.indices, X.data, St, cur, float(lam), tv, float(eps),
                          parity, int(inner), 1e-9)
    return cur.reshape(ny * nx, k), it, converged


class _RBResult:
    def __init__(self, maps, n_iter, converged):
        self.maps, self.n_iter, self.converged, self.n_passes = maps, n_iter, converged, None


def rb_smooth(*args, **kwargs):
    return _RBResult(*rb_smooth_maps(*args, **kwargs))


# -----------------------------------------------------------------------------------------
# Benchmark
# -----------------------------------------------------------------------------------------
def case(snr: str, size: int):
    data = mantle(snr, seed=0, shape=(size, size))
    c = data.counts
    X = sp.csr_matrix(c.reshape(-1, c.shape[-1]).astype(np.float64))
    model = PSNMF(3, 4, random_state=0, smoothing=None).fit(c)
    return X, model.spectra_, model.maps_.reshape(-1, 3)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def run(snr: str, size: int, weights, ref_factor: int) -> None:
    X, S, A0 = case(snr, size)
    shape = (size, size)
    cpp = X.sum() / X.shape[0]
    # compile both solvers outside the clock
    smooth_maps(X[:64], A0[:64], S, (8, 8), 1.0, max_iter=3)
    rb_smooth(X[:64], A0[:64], S, (8, 8), 1.0, max_iter=3)
    print(f"\nmantle {snr} {size} x {size}, {cpp:.0f} counts/px, {X.nnz} non-zeros, "
          f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'weight':>6} {'solver':>6} {'time':>7} {'iter':>5} {'passes':>6} "
          f"{'obj - ref':>10} {'rel':>8} {'max|dA|':>8} {'ratio':>6}")
    for w in weights:
        lam = w * cpp
        old, t_old = timed(rb_smooth, X, A0, S, shape, lam)
        new, t_new = timed(smooth_maps, X, A0, S, shape, lam)
        ref, t_ref = timed(smooth_maps, X, new.maps, S, shape, lam,
                           max_iter=ref_factor * new.n_iter, tol=0.0)
        f_ref = smoothing_objective(X, ref.maps, S, shape, lam)
        for name, r, t in (("rb", old, t_old), ("new", new, t_new)):
            f = smoothing_objective(X, r.maps, S, shape, lam)
            ratio = f"{t_old / t_new:6.2f}" if name == "new" else ""
            passes = "" if r.n_passes is None else r.n_passes
            print(f"{w:6.2f} {name:>6} {t:7.2f} {r.n_iter:5d} {passes!s:>6} "
                  f"{f - f_ref:10.2f} {(f - f_ref) / abs(f_ref):8.1e} "
                  f"{np.abs(r.maps - ref.maps).max():8.1e} {ratio}", flush=True)
        print(f"{'':6} {'ref':>6} {t_ref:7.2f} {ref.n_iter + new.n_iter:5d}   (warm from new)"
              f"   max|A_rb - A_new| {np.abs(old.maps - new.maps).max():.1e}", flush=True)
    # the weight search end to end, with each solver
    times = {}
    choices = {}
    for name, solver in (("rb", rb_smooth), ("new", smooth_maps)):
        selection.smooth_maps = solver
        try:
            choices[name], times[name] = timed(selection.choose_smoothing, X, S, shape,
                                               random_state=0)
        finally:
            selection.smooth_maps = smooth_maps
    pairs = zip(choices["rb"].deviance, choices["new"].deviance, strict=False)
    ddev = max((abs(a - b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)),
               default=float("nan"))
    print(f"choose_smoothing: rb {times['rb']:.1f} s (weight {choices['rb'].relative:g}), "
          f"new {times['new']:.1f} s (weight {choices['new'].relative:g}), "
          f"ratio {times['rb'] / times['new']:.2f}; max |deviance difference| "
          f"{ddev:.2e}",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--snr", nargs="+", default=["medium", "low"])
    ap.add_argument("--size", type=int, default=180)
    ap.add_argument("--weights", type=float, nargs="+", default=list(WEIGHTS))
    ap.add_argument("--ref-factor", type=int, default=10,
                    help="the reference runs this many times the iterations of 'new'")
    args = ap.parse_args()
    for snr in args.snr:
        run(snr, args.size, args.weights, args.ref_factor)


if __name__ == "__main__":
    main()
