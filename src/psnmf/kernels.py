"""Hot loops of the Poisson NMF engine: the only module that knows about sparse storage and JIT.

The Poisson (generalised Kullback-Leibler) NMF updates need the model ``(A S)_ij`` only
where the counts ``X_ij`` are non-zero: every other term of the likelihood and of the
multiplicative updates reduces to row and column sums of ``A`` and ``S``. An EDX pixel holds
tens to hundreds of counts over ~2000 channels, so the count matrix is >90 % zeros and one
iteration costs ``O(nnz * k)`` instead of ``O(pixels * channels * k)``.

Why Numba: the kernel is a loop over the non-zeros of a CSR matrix with a short inner loop
over ``k`` components. SciPy sparse can express it only through temporaries of size
``nnz * k`` (several GB on a 512 x 512 map) and runs single-threaded; a Numba kernel does it
in one pass, in place, over both cores, with no compiler needed at install time.

Determinism: rows are split into a fixed number of chunks (:data:`N_CHUNKS`, independent of
the number of threads), each chunk accumulates into its own buffer, and the buffers are
summed in a fixed order, so results are bit-identical for any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Number of row chunks the kernels split the work into (fixed for determinism).
N_CHUNKS = 16

#: Smallest model value used in a ratio ``X / model`` (avoids division by zero).
TINY = 1e-300


@njit(parallel=True, cache=True, fastmath=False)
def _ratio_pass(indptr, indices, data, A, St, num_A, num_St_parts, want_A, want_S):
    """One pass over the non-zeros: accumulate multiplicative-update numerators.

    For every non-zero ``x = X_ij`` with model ``m = sum_q A_iq S_qj`` it adds
    ``x / m * S_qj`` to ``num_A[i, q]`` and ``x / m * A_iq`` to ``num_St[j, q]``, and returns
    ``sum x * log(m)`` over the non-zeros.
    """
    n, k = A.shape
    n_chunks = num_St_parts.shape[0]
    ll_parts = np.zeros(n_chunks)
    for c in prange(n_chunks):
        start = (c * n) // n_chunks
        stop = ((c + 1) * n) // n_chunks
        ll = 0.0
        for i in range(start, stop):
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                x = data[p]
                m = 0.0
                for q in range(k):
                    m += A[i, q] * St[j, q]
                if m < TINY:
                    m = TINY
                r = x / m
                ll += x * np.log(m)
                if want_A:
                    for q in range(k):
                        num_A[i, q] += r * St[j, q]
                if want_S:
                    for q in range(k):
                        num_St_parts[c, j, q] += r * A[i, q]
        ll_parts[c] = ll
    total = 0.0
    for c in range(n_chunks):
        total += ll_parts[c]
    return total


@njit(parallel=True, cache=True)
def _sum_parts(parts, out):
    """Sum the per-chunk buffers in a fixed order (deterministic)."""
    n_chunks, ne, k = parts.shape
    for j in prange(ne):
        for q in range(k):
            s = 0.0
            for c in range(n_chunks):
                s += parts[c, j, q]
            out[j, q] = s


@njit(parallel=True, cache=True)
def _xlogx_sum(data):
    s = 0.0
    for p in prange(data.shape[0]):
        x = data[p]
        if x > 0:
            s += x * np.log(x)
    return s


def xlogx_sum(data: np.ndarray) -> float:
    """Return ``sum x log x`` over the stored counts (the constant part of the KL loss)."""
    return float(_xlogx_sum(np.ascontiguousarray(data, dtype=np.float64)))


def ratio_numerators(
    X,
    A: np.ndarray,
    S: np.ndarray,
    *,
    want_A: bool = True,
    want_S: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Numerators of the multiplicative Poisson-NMF updates, from the non-zeros only.

    Parameters
    ----------
    X : scipy.sparse CSR matrix, shape (n_pixels, n_channels)
        Counts; its ``data`` must be float64 and its indices sorted per row is not required.
    A : ndarray, shape (n_pixels, k)
        Abundances (C-contiguous float64).
    S : ndarray, shape (k, n_channels)
        Spectra.
    want_A, want_S : bool
        Which numerators to compute (the other is returned as ``None``).

    Returns
    -------
    num_A : ndarray (n_pixels, k) or None
        ``(X / (A S)) S^T``.
    num_S : ndarray (k, n_channels) or None
        ``A^T (X / (A S))``.
    xlogm : float
        ``sum_ij X_ij log (A S)_ij`` over the non-zeros.
    """
    n, k = A.shape
    ne = S.shape[1]
    St = np.ascontiguousarray(S.T)
    A = np.ascontiguousarray(A)
    num_A = np.zeros((n, k)) if want_A else np.zeros((0, k))
    parts = np.zeros((N_CHUNKS, ne, k)) if want_S else np.zeros((N_CHUNKS, 0, k))
    xlogm = _ratio_pass(X.indptr, X.indices, X.data, A, St, num_A, parts, want_A, want_S)
    num_S = None
    if want_S:
        num_St = np.empty((ne, k))
        _sum_parts(parts, num_St)
        num_S = np.ascontiguousarray(num_St.T)
    return (num_A if want_A else None), num_S, float(xlogm)


def ratio_numerators_dense(
    X: np.ndarray, A: np.ndarray, S: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Plain dense NumPy reference of :func:`ratio_numerators` (for tests and small data)."""
    M = np.maximum(A @ S, TINY)
    R = np.where(X > 0, X / M, 0.0)
    xlogm = float(np.sum(np.where(X > 0, X * np.log(M), 0.0)))
    return R @ S.T, A.T @ R, xlogm
