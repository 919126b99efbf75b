"""Hot loops of the Poisson NMF engine: the only module that knows about sparse storage and JIT.

The Poisson (generalised Kullback-Leibler) NMF updates need the model ``(A S)_ij`` only
where the counts ``X_ij`` are non-zero: every other term of the likelihood and of the
multiplicative updates reduces to row and column sums of ``A`` and ``S``. An EDX pixel holds
tens to hundreds of counts over ~2000 channels, so the count matrix is >90 % zeros and one
iteration costs ``O(nnz * k)`` instead of ``O(pixels * channels * k)``.

Why Numba: the kernels are loops over the non-zeros of a CSR matrix with a short inner loop
over ``k`` components. SciPy sparse can express them only through temporaries of size
``nnz * k`` (several GB on a 512 x 512 map), in several passes, single-threaded; a Numba
kernel does one fused pass, in place, over all cores (``prange``), with no compiler needed at
install time (wheels on every platform) and an on-disk cache (``cache=True``) so the JIT cost
is paid once per machine.

The kernels:

* :func:`ratio_numerators` - one pass giving the numerators of the multiplicative updates
  of ``A`` and/or ``S`` (the binned stage, where the spectra move). ``sum X log(AS)`` is only
  computed when asked for: the logarithm costs more than the rest of the pass together, so
  the engine evaluates the loss every few iterations only.
* :func:`solve_fixed_spectra` - with the spectra fixed the problem splits into one small
  convex problem per pixel (the full-resolution stage of PSNMF). Each pixel is iterated to
  its own convergence while its ~100 non-zeros sit in the L1 cache, instead of streaming the
  whole matrix from memory once per iteration. A pixel's result depends on nothing but that
  pixel, so any split into chunks (threads, Dask blocks, machines) gives bit-identical maps.
* :func:`factor_deviance` and :func:`raw_deviance` - the held-out Poisson deviance of a
  factor model (its means evaluated on the fly) or of raw counts as the prediction (from
  the non-zeros), with no dense prediction in memory.
* :func:`ratio_numerators_dense` - a plain dense NumPy reference for tests.

Four lanes: with ``k`` known only at run time, the per-pixel abundances and sums of the
inner loops live in memory and every non-zero loops over ``k``. Up to :data:`LANES`
components (PSNMF's usual 2-4 phases) the factors are padded with zero columns to exactly
:data:`LANES` and four-lane tuples do the work (:func:`_ratio_pass_lanes`,
:func:`_em_update_lanes`, and the TV sweep's ``_em_weights_lanes``, through the inlined
:func:`lanes_model`, :func:`lanes_add` and :func:`lanes_of`): the compiler keeps them in
registers, the ratio pass on EDX counts runs 1.4-1.5x faster on one core
(``benchmarks/speed.py --lanes``), and since a padded lane adds exact zeros in the same
order, the results are bit-identical to the generic loops, which serve larger ``k``.

Determinism: in :func:`ratio_numerators` rows are split into a fixed number of chunks
(:data:`N_CHUNKS`, independent of the number of threads), each chunk accumulates into its
own buffer, and the buffers are summed in a fixed order, so results are bit-identical for any
thread count.

Independent fits side by side: :func:`map_threads` runs independent tasks (the folds of a
cross-validation, the replicates of a bootstrap) on several Python threads at once, each
with the serial compilation of every kernel. The kernels release the GIL (``nogil``), so
the threads run on separate cores; a fit of a few hundred thousand non-zeros gains little
from Numba's threads within one pass (each pass waits for its threads to be scheduled),
while two such fits side by side share no waits (the k search of a 180 x 180 map, 15 fits
of 300,000 non-zeros: 8.0 s with parallel passes, 5.7 s two at a time, 2 cores).
"""

from __future__ import annotations

import os
import threading
import time
import types
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from numba import njit, prange
from threadpoolctl import threadpool_limits

#: Number of row chunks the kernels split the work into (fixed for determinism).
N_CHUNKS = 16

#: Up to this many components the ratio pass, the fixed-spectra pixel update and the TV
#: sweep run on factors padded to this many columns (four-lane tuples in registers,
#: bit-identical to the generic loops; see the module docstring).
LANES = 4

#: Smallest model value used in a ratio ``X / model`` (avoids division by zero).
TINY = 1e-300

#: From this many non-zeros a single pass runs on all threads; below it on one. A parallel
#: pass waits for its threads to be scheduled: on a 2-core machine with one core busy with
#: other work that cost about 3 ms a pass (20x the time of a 20,000-non-zero pass), so a
#: one-off pass goes parallel only where that wait is small against its work (a serial
#: ratio pass over 500,000 non-zeros takes 4-6 ms; on an idle machine the parallel one
#: saves half of it).
PARALLEL_MIN_NNZ = 500_000

#: Below this many non-zeros a pass repeated in a loop (:class:`ThreadChoice`), or the
#: per-pixel fixed-spectra solve (tens of updates per non-zero), always runs on one thread.
SERIAL_MAX_NNZ = 20_000


def _ratio_pass(
    indptr, indices, data, A, St, num_A, num_St_parts, ll_parts, want_A, want_S, want_ll, floor
):
    """One pass over the non-zeros: accumulate multiplicative-update numerators.

    For every non-zero ``x = X_ij`` with model ``m = sum_q A_iq S_qj`` it adds
    ``x / m * S_qj`` to ``num_A[i, q]`` and ``x / m * A_iq`` to ``num_St[j, q]``, and (if
    ``want_ll``) returns ``sum x * log(m)`` over the non-zeros. ``num_A`` and the per-chunk
    buffers are overwritten (no zeroing needed by the caller).
    """
    n, k = A.shape
    n_chunks = ll_parts.shape[0]
    ne = num_St_parts.shape[1]
    for c in prange(n_chunks):
        start = (c * n) // n_chunks
        stop = ((c + 1) * n) // n_chunks
        if want_S:
            for j in range(ne):
                for q in range(k):
                    num_St_parts[c, j, q] = 0.0
        ll = 0.0
        acc = np.empty(k)
        for i in range(start, stop):
            for q in range(k):
                acc[q] = 0.0
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                x = data[p]
                m = 0.0
                for q in range(k):
                    m += A[i, q] * St[j, q]
                if m < floor:
                    m = floor
                r = x / m
                if want_ll:
                    ll += x * np.log(m)
                if want_A:
                    for q in range(k):
                        acc[q] += r * St[j, q]
                if want_S:
                    for q in range(k):
                        num_St_parts[c, j, q] += r * A[i, q]
            if want_A:
                for q in range(k):
                    num_A[i, q] = acc[q]
        ll_parts[c] = ll
    total = 0.0
    for c in range(n_chunks):
        total += ll_parts[c]
    return total


@njit(cache=True, inline="always")
def lanes_model(a, St, j):
    """``(a S)_j`` for four-lane abundances ``a`` (a tuple), summed from 0 in lane order as
    the generic loops sum over ``k``."""
    m = 0.0
    m += a[0] * St[j, 0]
    m += a[1] * St[j, 1]
    m += a[2] * St[j, 2]
    m += a[3] * St[j, 3]
    return m


@njit(cache=True, inline="always")
def lanes_add(s, r, St, j):
    """The four sums ``s`` (a tuple) plus ``r * S[:, j]``."""
    return (s[0] + r * St[j, 0], s[1] + r * St[j, 1], s[2] + r * St[j, 2],
            s[3] + r * St[j, 3])


@njit(cache=True, inline="always")
def lanes_of(a, k):
    """The ``k <= 4`` entries of ``a`` as a four-lane tuple, zeros beyond ``k``."""
    return (a[0], a[1] if k > 1 else 0.0, a[2] if k > 2 else 0.0, a[3] if k > 3 else 0.0)


ZERO_LANES = (0.0, 0.0, 0.0, 0.0)


def _ratio_pass_lanes(
    indptr, indices, data, A, St, num_A, num_St_parts, ll_parts, want_A, want_S, want_ll, floor
):
    """:func:`_ratio_pass` for at most :data:`LANES` components, on factors padded with
    zero columns to exactly :data:`LANES`.

    The pixel's abundances and accumulators are scalars, which the compiler keeps in
    registers; with ``k`` known only at run time the generic pass keeps them in memory and
    loops over ``k`` for every non-zero, 1.4-1.5x slower. The sums run in the same order as
    the generic pass and a padded lane adds exact zeros (``0 * s = 0``, ``m + 0 = m``), so
    the results are bit-identical to it.
    """
    n = A.shape[0]
    n_chunks = ll_parts.shape[0]
    for c in prange(n_chunks):
        start = (c * n) // n_chunks
        stop = ((c + 1) * n) // n_chunks
        P = num_St_parts[c]
        if want_S:
            P[:, :] = 0.0
        ll = 0.0
        for i in range(start, stop):
            a = (A[i, 0], A[i, 1], A[i, 2], A[i, 3])
            s = ZERO_LANES
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                x = data[p]
                m = lanes_model(a, St, j)
                if m < floor:
                    m = floor
                r = x / m
                if want_ll:
                    ll += x * np.log(m)
                if want_A:
                    s = lanes_add(s, r, St, j)
                if want_S:
                    for q in range(LANES):
                        P[j, q] += r * a[q]
            if want_A:
                for q in range(LANES):
                    num_A[i, q] = s[q]
        ll_parts[c] = ll
    total = 0.0
    for c in range(n_chunks):
        total += ll_parts[c]
    return total


def _sum_parts(parts, out):
    """Sum the per-chunk buffers in a fixed order (deterministic); ``out`` is (k, ne), the
    first ``k`` lanes of ``parts`` (chunks, ne, lanes >= k) are summed."""
    n_chunks, ne = parts.shape[0], parts.shape[1]
    k = out.shape[0]
    for j in range(ne):
        for q in range(k):
            out[q, j] = 0.0
    for c in range(n_chunks):  # chunk by chunk (contiguous reads), same order per entry
        for j in range(ne):
            for q in range(k):
                out[q, j] += parts[c, j, q]


def _xlogx_parts(data, parts):
    """``sum x log x`` of each of ``parts.shape[0]`` fixed chunks of ``data`` (x > 0)."""
    n = data.shape[0]
    n_chunks = parts.shape[0]
    for c in prange(n_chunks):
        s = 0.0
        for p in range((c * n) // n_chunks, ((c + 1) * n) // n_chunks):
            x = data[p]
            if x > 0:
                s += x * np.log(x)
        parts[c] = s


def _compile(func):
    """Parallel and serial compilations of a kernel (same arithmetic, same results).

    The serial one is compiled from a renamed copy so that the two have separate entries
    in Numba's on-disk cache (which is keyed by the function's qualified name).
    """
    serial = types.FunctionType(func.__code__, func.__globals__, func.__name__ + "_serial")
    serial.__qualname__ = func.__qualname__ + "_serial"
    return (njit(parallel=True, cache=True, nogil=True)(func),
            njit(parallel=False, cache=True, nogil=True)(serial))


_RATIO = _compile(_ratio_pass)
_RATIO_LANES = _compile(_ratio_pass_lanes)
_SUM_PARTS = njit(cache=True, nogil=True)(_sum_parts)
_SUM_SERIAL = (_SUM_PARTS, _SUM_PARTS)
_XLOGX = _compile(_xlogx_parts)


_LOCAL = threading.local()
T = TypeVar("T")
R = TypeVar("R")


def _serial_here() -> bool:
    """Whether this thread runs every kernel serially (inside :func:`serial_kernels`)."""
    return getattr(_LOCAL, "serial", False)


@contextmanager
def serial_kernels():
    """Within the block, every kernel called from this thread runs its serial compilation.

    Numba's default thread pool must not be entered from several Python threads at once, and
    a thread that already shares the cores with another gains nothing from it; the serial
    and parallel compilations give bit-identical results (fixed chunking), so this changes
    the time only.
    """
    before = _serial_here()
    _LOCAL.serial = True
    try:
        yield
    finally:
        _LOCAL.serial = before


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


def map_threads(func: Callable[[T], R], items: Iterable[T], workers: int | None = None
                ) -> list[R]:
    """``[func(item) for item in items]``, computed on up to ``workers`` threads at once.

    Each call runs inside :func:`serial_kernels`, so the kernels of concurrent calls run
    side by side on separate cores (they release the GIL). The results come back in the
    order of ``items`` and equal those of the plain loop, provided each call depends on its
    item only (no shared random generator, no shared buffers). ``workers`` defaults to the
    available cores; with one worker or one item the loop runs in this thread as it is
    (its kernels free to use every core). An exception of any call is raised once every
    started call ended.
    """
    items = list(items)
    n = min(len(items), available_cores() if workers is None else max(1, int(workers)))

    def call(item: T) -> R:
        with serial_kernels():
            return func(item)

    if n <= 1:
        return [func(item) for item in items]
    # BLAS on one thread while the calls share the cores: n threads each waking a BLAS
    # pool of its own oversubscribe them (a small LU then waited tens of ms for its threads)
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(
            max_workers=n, thread_name_prefix="psnmf") as pool:
        return list(pool.map(call, items))


def _pick(pair, nnz: int, parallel_from: int | None = None):
    if _serial_here():
        return pair[1]
    return pair[0] if nnz >= (PARALLEL_MIN_NNZ if parallel_from is None
                              else parallel_from) else pair[1]


class ThreadChoice:
    """Whether a pass repeated many times (an NMF loop) runs on all threads, chosen by timing.

    On an idle 2-core machine the parallel ratio pass takes 0.42x the serial time from
    10,000 to 800,000 non-zeros; with one core busy with other work, each parallel pass waits
    for its threads (about 3 ms), which makes it 20x slower at 20,000 non-zeros and as slow as
    the serial one at 800,000. No fixed threshold suits both, so between
    :data:`SERIAL_MAX_NNZ` and :data:`PARALLEL_MIN_NNZ` the two compilations are timed
    alternately for the first ``2 * PROBES`` passes (and again every ``REPROBE`` passes, as
    the load changes) and the faster is used. The two give bit-identical results (fixed
    chunking, :data:`N_CHUNKS`), so the choice changes the time only, never the numbers.

    Parameters
    ----------
    nnz : int
        Non-zeros of the matrix the pass runs over.
    """

    PROBES = 3
    REPROBE = 200

    def __init__(self, nnz: int) -> None:
        self.fixed: int | None = (1 if nnz < SERIAL_MAX_NNZ else
                                  0 if nnz >= PARALLEL_MIN_NNZ else None)
        self.calls = 0
        self.choice = 0
        self._times: tuple[list[float], list[float]] = ([], [])

    def run(self, pairs: tuple[tuple[Any, Any], ...], *calls: tuple[Any, ...]) -> Any:
        """Run ``pairs[i][variant](*calls[i])`` for every ``i`` with one variant (0 parallel,
        1 serial); returns the first call's result."""
        if _serial_here():
            return _run_all(pairs, calls, 1)
        if self.fixed is not None:
            return _run_all(pairs, calls, self.fixed)
        phase = self.calls % self.REPROBE
        self.calls += 1
        if phase >= 2 * self.PROBES:
            return _run_all(pairs, calls, self.choice)
        which = phase % 2
        t0 = time.perf_counter()
        out = _run_all(pairs, calls, which)
        if phase == 0:
            self._times = ([], [])
        self._times[which].append(time.perf_counter() - t0)
        if phase == 2 * self.PROBES - 1:
            self.choice = 0 if min(self._times[0]) <= min(self._times[1]) else 1
        return out


def _run_all(pairs: tuple[tuple[Any, Any], ...], calls: tuple[tuple[Any, ...], ...],
             which: int) -> Any:
    out = None
    for i, (pair, args) in enumerate(zip(pairs, calls, strict=True)):
        result = pair[which](*args)
        out = result if i == 0 else out
    return out


def xlogx_sum(data: np.ndarray) -> float:
    """Return ``sum x log x`` over the stored counts (the constant part of the KL loss)."""
    parts = np.empty(N_CHUNKS)
    _pick(_XLOGX, data.shape[0])(np.ascontiguousarray(data, dtype=np.float64), parts)
    return float(parts.sum())


class RatioWorkspace:
    """Reusable buffers of :func:`ratio_numerators` (no allocation inside an NMF loop).

    Parameters
    ----------
    n, ne, k : int
        Pixels, channels and components.
    want_A, want_S : bool
        Which numerators the buffers are for.
    """

    def __init__(self, n: int, ne: int, k: int, want_A: bool = True, want_S: bool = True) -> None:
        self.k = k
        #: columns of the factors as the pass sees them: :data:`LANES` (zero-padded) or ``k``
        self.lanes = max(k, LANES)
        width = self.lanes
        self.num_A = np.empty((n if want_A else 0, width))
        self.parts = np.empty((N_CHUNKS, ne if want_S else 0, width))
        self.num_S = np.empty((k, ne if want_S else 0))
        self.ll_parts = np.empty(N_CHUNKS)
        self.St = np.zeros((ne, width))
        self.A = np.zeros((n, width)) if width > k else np.empty((0, width))
        self.no_A = np.empty((0, width))
        self.no_parts = np.empty((N_CHUNKS, 0, width))
        self.threads: ThreadChoice | None = None

    def factors(self, A: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A`` (pixels, lanes) and ``S.T`` (channels, lanes) as the pass reads them:
        copied into the zero-padded buffers when ``k < lanes``."""
        self.St[:, : self.k] = S.T
        if self.lanes == self.k:
            return np.ascontiguousarray(A, dtype=np.float64), self.St
        self.A[:, : self.k] = A
        return self.A, self.St


def lane_columns(S: np.ndarray) -> np.ndarray:
    """``S.T`` (channels, k) as a C-contiguous float64 array, with zero columns up to
    :data:`LANES` when ``k`` is smaller: the layout the four-lane kernels read."""
    k, ne = S.shape
    St = np.zeros((ne, max(k, LANES)))
    St[:, :k] = S.T
    return St


def ratio_numerators(
    X,
    A: np.ndarray,
    S: np.ndarray,
    *,
    want_A: bool = True,
    want_S: bool = True,
    want_ll: bool = True,
    floor: float = TINY,
    workspace: RatioWorkspace | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Numerators of the multiplicative Poisson-NMF updates, from the non-zeros only.

    Parameters
    ----------
    X : scipy.sparse CSR matrix, shape (n_pixels, n_channels)
        Counts with float64 ``data`` (indices need not be sorted within a row).
    A : ndarray, shape (n_pixels, k)
        Abundances (C-contiguous float64).
    S : ndarray, shape (k, n_channels)
        Spectra.
    want_A, want_S : bool
        Which numerators to compute (the other is returned as ``None``).
    want_ll : bool, default=True
        Whether to compute ``sum X log(AS)`` (returned as NaN otherwise).
    floor : float
        Smallest model value used in ``X / (AS)``.
    workspace : RatioWorkspace, optional
        Buffers to reuse; the returned arrays are then views into it, overwritten by the
        next call. A workspace serves one matrix: it also holds the timed choice of one or
        all threads for it (:class:`ThreadChoice`). Without one, the pass is parallel from
        :data:`PARALLEL_MIN_NNZ` non-zeros.

    Returns
    -------
    num_A : ndarray (n_pixels, k) or None
        ``(X / (A S)) S^T``.
    num_S : ndarray (k, n_channels) or None
        ``A^T (X / (A S))``.
    xlogm : float
        ``sum_ij X_ij log (A S)_ij`` over the non-zeros (NaN unless ``want_ll``).
    """
    n, k = A.shape
    ne = S.shape[1]
    ws = workspace if workspace is not None else RatioWorkspace(n, ne, k, want_A, want_S)
    A_pass, St = ws.factors(A, S)
    num_A = ws.num_A if want_A else ws.no_A
    parts = ws.parts if want_S else ws.no_parts
    ratio = (X.indptr, X.indices, X.data, A_pass, St, num_A, parts, ws.ll_parts,
             want_A, want_S, want_ll, float(floor))
    kernel = _RATIO_LANES if ws.lanes == LANES else _RATIO
    # the per-chunk sum is a few hundred thousand additions: always serial (a parallel
    # launch costs as much as the work, and far more when the other core is busy)
    pairs, calls = ((kernel, _SUM_SERIAL), (ratio, (parts, ws.num_S))) if want_S else (
        (kernel,), (ratio,))
    if workspace is None:
        xlogm = _run_all(pairs, calls, 1 if _serial_here() or X.nnz < PARALLEL_MIN_NNZ else 0)
    else:
        if ws.threads is None:
            ws.threads = ThreadChoice(X.nnz)
        xlogm = ws.threads.run(pairs, *calls)
    num_S = ws.num_S if want_S else None
    return (num_A[:, :k] if want_A else None), num_S, (float(xlogm) if want_ll
                                                       else float("nan"))


@njit(cache=True)
def _em_update_lanes(Sg, xs, k, a, out, d, floor, want_ll):
    """:func:`_em_update` for ``Sg`` of exactly :data:`LANES` columns (zero-padded when
    ``k`` is smaller), with the abundances and sums as scalars in registers; bit-identical
    to the generic loop (a padded lane adds exact zeros)."""
    al = lanes_of(a, k)
    e = ZERO_LANES
    ll = 0.0
    for p in range(xs.shape[0]):
        m = lanes_model(al, Sg, p)
        if m < floor:
            m = floor
        if want_ll:
            ll += xs[p] * np.log(m)
        e = lanes_add(e, xs[p] / m, Sg, p)
    for q in range(k):
        out[q] = al[q] * e[q] / d[q]
    return ll


@njit(cache=True)
def _em_update(Sg, xs, k, a, out, d, floor, want_ll):
    """``out = a * ((x / (a S)) S^T) / d``, one EM update of a pixel (``d`` its total counts
    on the simplex, the spectra's sums for the plain loss); returns ``sum x log(a S)`` if
    ``want_ll`` (the logarithm costs as much as the rest of the update), else 0.
    ``Sg`` (non-zeros, columns >= k) holds the spectra at the pixel's channels."""
    if Sg.shape[1] == LANES:
        return _em_update_lanes(Sg, xs, k, a, out, d, floor, want_ll)
    for q in range(k):
        out[q] = 0.0
    ll = 0.0
    for p in range(xs.shape[0]):
        m = 0.0
        for q in range(k):
            m += a[q] * Sg[p, q]
        if m < floor:
            m = floor
        if want_ll:
            ll += xs[p] * np.log(m)
        r = xs[p] / m
        for q in range(k):
            out[q] += r * Sg[p, q]
    for q in range(k):
        out[q] = a[q] * out[q] / d[q]
    return ll


@njit(cache=True)
def _change(a, b, k):
    """Largest ``|a - b|`` and the sum of ``b``."""
    delta = 0.0
    total = 0.0
    for q in range(k):
        delta = max(delta, abs(a[q] - b[q]))
        total += b[q]
    return delta, total


@njit(cache=True)
def _extrapolate(a0, a1, a2, out, k, simplex):
    """SQUAREM point ``a0 - 2 alpha r + alpha^2 v`` (``r = a1 - a0``, ``v = a2 - 2 a1 + a0``,
    ``alpha = -|r| / |v|``, at most -1), each abundance kept at >= 1/10 of ``a2``'s (a
    multiplicative update never leaves 0); returns False when ``v = 0`` (converged)."""
    rr = 0.0
    vv = 0.0
    for q in range(k):
        r = a1[q] - a0[q]
        v = a2[q] - 2.0 * a1[q] + a0[q]
        rr += r * r
        vv += v * v
    if vv == 0.0:
        return False
    alpha = min(-np.sqrt(rr / vv), -1.0)
    total = 0.0
    for q in range(k):
        r = a1[q] - a0[q]
        v = a2[q] - 2.0 * a1[q] + a0[q]
        out[q] = max(a0[q] - 2.0 * alpha * r + alpha * alpha * v, 0.1 * a2[q])
        total += out[q]
    if simplex:
        for q in range(k):
            out[q] /= total
    return True


@njit(cache=True)
def _objective(ll, a, d, k, simplex):
    """The pixel's Poisson log-likelihood up to a constant: ``sum x log(a S)``, minus
    ``sum_q a_q d_q`` for the plain loss (on the simplex that sum is constant)."""
    if simplex:
        return ll
    for q in range(k):
        ll -= a[q] * d[q]
    return ll


@njit(cache=True)
def _solve_pixel(Sg, xs, a, d, simplex, max_iter, tol, floor):
    """One pixel's abundances ``a`` (updated in place) by SQUAREM-accelerated EM.

    Cycles of two EM updates ``a -> a1 -> a2``, an extrapolation ``a'`` from them
    (:func:`_extrapolate`; Varadhan & Roland, Scand. J. Stat. 35 (2008) 335) and one EM
    update ``a' -> a3``. The cycle ends at ``a3`` when ``a'`` is at least as likely as
    ``a1``, else at ``a2``, so the likelihood at the start of every cycle increases. Stops
    when an EM update changes no abundance by more than ``tol`` times their sum (the rule
    of plain EM, which SQUAREM meets in about a fifth of the updates near the simplex
    boundary, where EM converges sublinearly), or after ``max_iter`` updates.

    Returns ``(updates, sum x log(a S) at the start)``.
    """
    k = a.shape[0]
    a1 = np.empty(k)
    a2 = np.empty(k)
    ap = np.empty(k)
    a3 = np.empty(k)
    it = 0
    ll_start = 0.0
    while it < max_iter:
        ll0 = _em_update(Sg, xs, k, a, a1, d, floor, it == 0)
        if it == 0:
            ll_start = ll0
        it += 1
        delta, total = _change(a, a1, k)
        if delta <= tol * total or it >= max_iter:
            a[:] = a1
            break
        ll1 = _objective(_em_update(Sg, xs, k, a1, a2, d, floor, True), a1, d, k, simplex)
        it += 1
        delta, total = _change(a1, a2, k)
        if delta <= tol * total or it >= max_iter or not _extrapolate(a, a1, a2, ap, k,
                                                                       simplex):
            a[:] = a2
            break
        llp = _objective(_em_update(Sg, xs, k, ap, a3, d, floor, True), ap, d, k, simplex)
        it += 1
        if llp >= ll1:
            a[:] = a3
        else:
            a[:] = a2
    return it, ll_start


@njit(cache=True)
def _loglik(Sg, xs, a, k, floor):
    """``sum x log(a S)`` over the pixel's non-zeros."""
    ll = 0.0
    for p in range(xs.shape[0]):
        m = 0.0
        for q in range(k):
            m += a[q] * Sg[p, q]
        ll += xs[p] * np.log(max(m, floor))
    return ll


def _fixed_spectra(
    indptr, indices, data, St, A, denom, simplex, max_iter, tol, floor, ll0, ll1, n_iter
):
    n, k = A.shape
    lanes = St.shape[1]
    for i in prange(n):
        p0 = indptr[i]
        p1 = indptr[i + 1]
        nnz = p1 - p0
        if nnz == 0:
            ll0[i] = 0.0
            ll1[i] = 0.0
            n_iter[i] = 0
            if not simplex:
                for q in range(k):
                    A[i, q] = 0.0
            continue
        # gather the pixel's spectra rows into a contiguous buffer (stays in cache)
        Sg = np.empty((nnz, lanes))
        xs = np.empty(nnz)
        total = 0.0
        for p in range(nnz):
            j = indices[p0 + p]
            xs[p] = data[p0 + p]
            total += xs[p]
            for q in range(lanes):
                Sg[p, q] = St[j, q]
        a = np.empty(k)
        d = np.empty(k)
        for q in range(k):
            a[q] = A[i, q]
            d[q] = total if simplex else denom[q]
        it, start = _solve_pixel(Sg, xs, a, d, simplex, max_iter, tol, floor)
        ll1[i] = _loglik(Sg, xs, a, k, floor)
        ll0[i] = start if it > 0 else ll1[i]
        n_iter[i] = it
        for q in range(k):
            A[i, q] = a[q]


_FIXED = _compile(_fixed_spectra)


def solve_fixed_spectra(
    X,
    A: np.ndarray,
    S: np.ndarray,
    *,
    simplex: bool,
    max_iter: int,
    tol: float,
    floor: float = TINY,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Multiplicative (EM) updates of ``A`` for fixed ``S``, each pixel to its own convergence.

    Pixel ``i`` is updated ``a <- a * ((x / (a S)) S^T) / d`` with ``d = n_i`` (its total
    counts; simplex EM) or ``d = S 1`` (plain KL-MU), accelerated by SQUAREM extrapolation
    between pairs of updates (:func:`_solve_pixel`), until an update changes no abundance
    by more than ``tol`` times the sum of its abundances, or ``max_iter`` updates. The
    first two updates are plain EM. Every EM update is a monotone EM/MM step of that
    pixel's convex problem, and every SQUAREM cycle starts from a likelier point than the
    one before.

    Parameters
    ----------
    X : scipy.sparse CSR matrix (n_pixels, n_channels), float64 data
    A : ndarray (n_pixels, k)
        Initial abundances; updated **in place** and returned.
    S : ndarray (k, n_channels)
        Fixed spectra (rows summing to one when ``simplex``).
    simplex : bool
    max_iter : int
    tol : float
    floor : float
        Smallest model value used in ``x / (a S)``.

    Returns
    -------
    A : ndarray (n_pixels, k)
        The solved abundances (the input array).
    xlogm : ndarray (2, n_pixels)
        ``sum_j x_ij log (a_i S)_j`` per pixel before and after.
    n_iter : ndarray (n_pixels,) of int
        Updates done per pixel.
    """
    n, k = A.shape
    St = lane_columns(S)
    denom = np.maximum(S.sum(axis=1), 1e-300)
    ll = np.empty((2, n))
    n_iter = np.empty(n, dtype=np.int64)
    _pick(_FIXED, X.nnz, SERIAL_MAX_NNZ)(
        X.indptr, X.indices, X.data, St, A, denom, bool(simplex), int(max_iter), float(tol),
        float(floor), ll[0], ll[1], n_iter,
    )
    return A, ll, n_iter


def _factor_deviance_parts(indptr, indices, data, L, St, floor, parts):
    """Per row chunk: ``sum x log max(m, floor)`` over the non-zeros and ``sum max(m, floor)``
    over every entry, ``m = (L S)_ij``, without storing ``m``."""
    n, k = L.shape
    ne = St.shape[0]
    n_chunks = parts.shape[0]
    for c in prange(n_chunks):
        start = (c * n) // n_chunks
        stop = ((c + 1) * n) // n_chunks
        xlogm = 0.0
        msum = 0.0
        for i in range(start, stop):
            for j in range(ne):
                m = 0.0
                for q in range(k):
                    m += L[i, q] * St[j, q]
                msum += max(m, floor)
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                m = 0.0
                for q in range(k):
                    m += L[i, q] * St[j, q]
                xlogm += data[p] * np.log(max(m, floor))
        parts[c, 0] = xlogm
        parts[c, 1] = msum


def _raw_deviance_parts(indptr2, indices2, data2, indptr1, indices1, data1, ne, floor, parts):
    """Per row chunk, with the counts ``X1`` as the prediction of ``X2`` (sorted indices):
    ``sum x2 log max(x1, floor)`` over the non-zeros of ``X2`` and ``sum max(x1, floor)``
    over every entry."""
    n = indptr2.shape[0] - 1
    n_chunks = parts.shape[0]
    for c in prange(n_chunks):
        start = (c * n) // n_chunks
        stop = ((c + 1) * n) // n_chunks
        xlogm = 0.0
        msum = 0.0
        for i in range(start, stop):
            p1 = indptr1[i]
            e1 = indptr1[i + 1]
            for p in range(p1, e1):
                msum += max(data1[p], floor)
            msum += floor * (ne - (e1 - p1))
            for p in range(indptr2[i], indptr2[i + 1]):
                j = indices2[p]
                while p1 < e1 and indices1[p1] < j:
                    p1 += 1
                m = data1[p1] if p1 < e1 and indices1[p1] == j else 0.0
                xlogm += data2[p] * np.log(max(m, floor))
        parts[c, 0] = xlogm
        parts[c, 1] = msum


_FACTOR_DEVIANCE = _compile(_factor_deviance_parts)
_RAW_DEVIANCE = _compile(_raw_deviance_parts)


def _deviance(X, xlogm: float, msum: float) -> float:
    """``2 sum [x log(x / m) - x + m]`` from its parts (the Poisson deviance)."""
    return 2.0 * (xlogx_sum(X.data) - xlogm - float(X.data.sum()) + msum)


def factor_deviance(X, L: np.ndarray, S: np.ndarray, floor: float) -> float:
    """Poisson deviance of counts ``X`` under the means ``max(L S, floor)``, in one pass.

    The same number as :func:`psnmf.selection.poisson_deviance` of ``X`` and ``L @ S`` (up
    to the order of the floating-point sums), without the dense ``L @ S``: the model is
    evaluated entry by entry, each once for the sum of the means and again at the
    non-zeros of ``X`` for the logarithms.

    Parameters
    ----------
    X : scipy.sparse CSR matrix (n_pixels, n_channels), float64 data
    L : ndarray (n_pixels, k)
        Loadings (for PSNMF the maps times the count scale).
    S : ndarray (k, n_channels)
    floor : float
        Smallest mean.
    """
    L = np.ascontiguousarray(L, dtype=np.float64)
    St = np.ascontiguousarray(S.T, dtype=np.float64)
    parts = np.zeros((N_CHUNKS, 2))
    _pick(_FACTOR_DEVIANCE, L.shape[0] * St.shape[0])(
        X.indptr, X.indices, X.data, L, St, float(floor), parts)
    return _deviance(X, float(parts[:, 0].sum()), float(parts[:, 1].sum()))


def raw_deviance(X2, X1, floor: float) -> float:
    """Poisson deviance of counts ``X2`` under the means ``max(X1, floor)``, from the
    non-zeros only (both CSR of the same shape)."""
    X1 = X1 if X1.has_sorted_indices else X1.sorted_indices()
    X2 = X2 if X2.has_sorted_indices else X2.sorted_indices()
    parts = np.zeros((N_CHUNKS, 2))
    _pick(_RAW_DEVIANCE, X1.nnz + X2.nnz)(
        X2.indptr, X2.indices, X2.data, X1.indptr, X1.indices,
        np.ascontiguousarray(X1.data, dtype=np.float64), X1.shape[1], float(floor), parts)
    return _deviance(X2, float(parts[:, 0].sum()), float(parts[:, 1].sum()))


def ratio_numerators_dense(
    X: np.ndarray, A: np.ndarray, S: np.ndarray, floor: float = TINY
) -> tuple[np.ndarray, np.ndarray, float]:
    """Plain dense NumPy reference of :func:`ratio_numerators` (for tests and small data)."""
    M = np.maximum(A @ S, floor)
    R = np.where(X > 0, X / M, 0.0)
    xlogm = float(np.sum(np.where(X > 0, X * np.log(M), 0.0)))
    return R @ S.T, A.T @ R, xlogm
