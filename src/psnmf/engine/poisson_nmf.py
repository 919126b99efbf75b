"""The Poisson NMF engine.

Factorises a counts matrix ``X`` (pixels x channels) as ``X ~ Poisson(M)`` with

* ``simplex=True`` (default, the PSNMF model): ``M_ij = n_i * sum_k A_ik S_kj`` where every
  row of ``A`` (the abundances of a pixel) lies on the probability simplex, every spectrum
  ``S_k`` sums to one over the channels, and ``n_i`` is the per-pixel count scale. The maximum
  likelihood scale is exactly the pixel's total counts, ``n_i = sum_j X_ij``, so it is computed
  in closed form. The updates are the EM algorithm of this mixture (probabilistic latent
  semantic analysis): they keep ``A`` on the simplex exactly at every iteration - no
  renormalisation after the fact - and never increase the loss.
* ``simplex=False``: plain ``M = A S`` with the Lee & Seung (2001) multiplicative updates for
  the generalised Kullback-Leibler divergence, as scikit-learn's
  ``NMF(beta_loss='kullback-leibler', solver='mu')``.

The loss is the generalised KL divergence ``D(X || M) = sum X log(X / M) - X + M`` (half the
Poisson deviance). All sums over the data run over the non-zero counts only
(:mod:`psnmf.engine._kernels`), so an iteration costs ``O(nnz * k)``.

Why hand-written: scikit-learn's KL solver works on dense matrices (or a sparse path that
builds ``nnz x k`` temporaries), has no simplex constraint and no per-pixel scale, and
cannot keep the spectra fixed; espm's solvers are dense too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd

from psnmf._validation import (
    check_counts_matrix,
    check_n_components,
    check_positive_int,
    check_random_state,
)
from psnmf.engine import _kernels as kernels
from psnmf.engine.priors import ContinuumWindows

INIT_METHODS = ("nndsvda", "spa", "random")
#: Fraction of a forbidden window's mass added to the amplitudes of its continuum's terms
#: at the start, so that the multiplicative M-step can grow each of them.
START_FLOOR = 1e-3

#: Floor of the model at non-zero counts in plain KL-MU (scikit-learn's ``EPSILON``).
SKLEARN_EPSILON = float(np.finfo(np.float32).eps)


@dataclass
class NMFResult:
    """Result of :func:`poisson_nmf`.

    Attributes
    ----------
    A : ndarray, shape (n_pixels, k)
        Abundances; rows sum to one when ``simplex=True``.
    S : ndarray, shape (k, n_channels)
        Spectra; rows sum to one when ``simplex=True``.
    scale : ndarray, shape (n_pixels,)
        Per-pixel count scale ``n_i`` (total counts) when ``simplex=True``, else ones.
    loss : ndarray
        Generalised KL divergence at every iteration (before the update of that iteration).
    n_iter : int
        Number of iterations run.
    converged : bool
        Whether the relative change of the loss fell below ``tol`` before ``max_iter``.
    """

    A: np.ndarray
    S: np.ndarray
    scale: np.ndarray
    loss: np.ndarray
    n_iter: int
    converged: bool
    info: dict[str, Any] = field(default_factory=dict)

    def model(self) -> np.ndarray:
        """Dense expected counts ``diag(scale) A S`` (for small data only)."""
        return self.scale[:, None] * (self.A @ self.S)


def nndsvd_init(
    X: sp.csr_matrix, k: int, random_state: np.random.Generator | int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative double SVD initialisation (Boutsidis & Gallopoulos 2008), 'nndsvda' flavour.

    Uses a randomised truncated SVD, which works directly on the sparse counts. Zeros are
    filled with the data mean (the 'a' variant) so multiplicative updates can move them.

    Returns
    -------
    W : ndarray (n_pixels, k), H : ndarray (k, n_channels)
    """
    seed = _seed_int(random_state)
    U, s, Vt = randomized_svd(X, k, random_state=seed, n_iter=7)
    W = np.zeros((X.shape[0], k))
    H = np.zeros((k, X.shape[1]))
    W[:, 0] = np.sqrt(s[0]) * np.abs(U[:, 0])
    H[0, :] = np.sqrt(s[0]) * np.abs(Vt[0, :])
    for j in range(1, k):
        x, y = U[:, j], Vt[j, :]
        xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
        yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
        xpn, xnn = np.linalg.norm(xp), np.linalg.norm(xn)
        ypn, ynn = np.linalg.norm(yp), np.linalg.norm(yn)
        if xpn * ypn >= xnn * ynn:
            u, v, sigma = xp / max(xpn, 1e-300), yp / max(ypn, 1e-300), xpn * ypn
        else:
            u, v, sigma = xn / max(xnn, 1e-300), yn / max(ynn, 1e-300), xnn * ynn
        lbd = np.sqrt(s[j] * sigma)
        W[:, j] = lbd * u
        H[j, :] = lbd * v
    avg = X.sum() / (X.shape[0] * X.shape[1])
    W[W < 1e-12] = avg
    H[H < 1e-12] = avg
    return W, H


def spa_init(X: sp.csr_matrix, k: int) -> np.ndarray:
    """Successive projection algorithm (Gillis & Vavasis 2014): the k purest pixels' spectra.

    Rows of ``X`` are normalised to sum one (spectral shape), then the row of largest norm
    is picked and all rows projected onto its orthogonal complement, k times. Works on the
    binned data of PSNMF, where pixels are few and spectra clean. Returns ``S`` (k, channels)
    with rows summing to one, mixed with a little of the mean spectrum so no entry is zero.
    """
    n = np.asarray(X.sum(axis=1)).ravel()
    keep = n > 0
    if keep.sum() < k:
        raise ValueError(
            f"spa init needs at least n_components={k} pixels with counts; "
            f"the data have {int(keep.sum())}. Use init='random' or fewer components."
        )
    Xn = sp.diags(1.0 / n[keep]) @ X[keep]
    R = Xn.toarray() if Xn.shape[0] * Xn.shape[1] <= 5e7 else None
    if R is None:  # pragma: no cover - very large inputs: SPA on a random subset of rows
        rng = np.random.default_rng(0)
        rows = rng.choice(Xn.shape[0], size=int(5e7 // Xn.shape[1]), replace=False)
        R = Xn[rows].toarray()
    picked = []
    Rw = R.copy()
    for _ in range(k):
        norms = np.einsum("ij,ij->i", Rw, Rw)
        idx = int(np.argmax(norms))
        picked.append(idx)
        u = Rw[idx] / max(np.sqrt(norms[idx]), 1e-300)
        Rw -= np.outer(Rw @ u, u)
    S = R[picked].copy()
    mean = R.mean(axis=0)
    S = 0.95 * S + 0.05 * mean
    return S / S.sum(axis=1, keepdims=True)


def _seed_int(random_state: np.random.Generator | int | None) -> int | None:
    if random_state is None or isinstance(random_state, int | np.integer):
        return None if random_state is None else int(random_state)
    return int(random_state.integers(2**31 - 1))


def _normalise_rows(M: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    s = M.sum(axis=1, keepdims=True)
    out = np.divide(M, s, out=np.zeros_like(M), where=s > 0)
    if fallback is not None:
        bad = (s[:, 0] <= 0)
        if bad.any():
            out[bad] = fallback[bad] if fallback.shape == M.shape else fallback
    return out


def initialise(
    X: sp.csr_matrix,
    k: int,
    init: str,
    *,
    simplex: bool,
    random_state: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Initial ``(A, S)`` for :func:`poisson_nmf` by the named method."""
    n, ne = X.shape
    if init not in INIT_METHODS:
        raise ValueError(f"init={init!r} is not one of {INIT_METHODS}.")
    mean = np.asarray(X.sum(axis=0)).ravel() + 1e-3
    mean = mean / mean.sum()
    if init == "nndsvda":
        W, H = nndsvd_init(X, k, random_state)
    elif init == "spa":
        H = spa_init(X, k)
        W = np.full((n, k), 1.0 / k)
    else:
        H = mean[None, :] * random_state.gamma(2.0, 0.5, size=(k, ne))
        W = random_state.dirichlet(np.ones(k), size=n)
    if simplex:
        scale = H.sum(axis=1)
        S = _normalise_rows(H + 1e-12 * mean, mean)
        A = _normalise_rows(W * scale[None, :] + 1e-12, np.full(k, 1.0 / k))
    else:
        totals = np.asarray(X.sum(axis=1)).ravel()
        S = _normalise_rows(H + 1e-12 * mean, mean)
        A = _normalise_rows(W + 1e-12, np.full(k, 1.0 / k)) * totals[:, None]
        A = np.maximum(A, 1e-12 * max(totals.mean(), 1.0))
    return A, S


def poisson_nmf(
    X,
    n_components: int,
    *,
    simplex: bool = True,
    init: str = "nndsvda",
    A_init: np.ndarray | None = None,
    S_init: np.ndarray | None = None,
    update_A: bool = True,
    update_S: bool = True,
    max_iter: int = 500,
    tol: float = 1e-6,
    random_state: int | np.random.Generator | None = None,
    loss_every: int = 10,
    check_input: bool = True,
    resume: NMFResult | None = None,
    fixed_rows: np.ndarray | None = None,
    support: np.ndarray | None = None,
) -> NMFResult:
    """Poisson NMF of a counts matrix by multiplicative (EM) updates on its non-zeros.

    Parameters
    ----------
    X : array-like or scipy.sparse matrix, shape (n_pixels, n_channels)
        Non-negative counts. Integer counts are expected (Poisson model).
    n_components : int
        Number of components ``k``.
    simplex : bool, default=True
        Per-pixel simplex constraint on the abundances with a free per-pixel count scale
        (see the module docstring). ``False`` gives plain KL-NMF.
    init : {'nndsvda', 'spa', 'random'}
        Initialisation of whatever is not given in ``A_init``/``S_init``.
    A_init, S_init : ndarray, optional
        Custom initial abundances (n_pixels, k) and spectra (k, n_channels). With
        ``simplex=True`` they are normalised to rows summing to one.
    update_A, update_S : bool
        Set ``update_S=False`` to keep the spectra fixed and solve the abundances only (a
        convex problem, solved pixel by pixel: see Notes), or ``update_A=False`` to solve
        the spectra for fixed abundances.
    max_iter : int, default=500
        Maximum number of iterations (per pixel when the spectra are fixed).
    tol : float, default=1e-6
        Stop when the relative decrease of the loss over one iteration is below ``tol``,
        checked every ``loss_every`` iterations. With fixed spectra: a pixel
        stops when no abundance changes by more than ``tol`` times its abundance sum.
        ``tol=0`` runs exactly ``max_iter`` iterations.
    random_state : int, numpy Generator or None
        Seed for the initialisation.
    loss_every : int, default=10
        Evaluate the loss (at two consecutive iterations) every ``loss_every`` iterations:
        the logarithm costs more than the update itself, and scikit-learn's ``mu`` solver
        checks every 10 iterations too. ``1`` records the loss at every iteration.
    check_input : bool, default=True
        Validate and convert ``X`` (:func:`psnmf._validation.check_counts_matrix`: finite,
        non-negative, a warning for non-integer counts). ``False`` skips that pass over the
        data for callers that validated it once already; ``X`` must then be the canonical
        form that check returns (:func:`is_counts_csr`), as the psnmf engine passes it on.
    resume : NMFResult, optional
        A result of this function on the same ``X`` (same ``n_components``, ``init``,
        ``random_state``, ``simplex=True``, both factors updated, the same ``loss_every``)
        that stopped at a lower ``max_iter`` or a larger ``tol``: the iterations go on from
        where it stopped, with its loss history, so the result equals that of one run with
        this call's ``max_iter`` and ``tol`` (``max_iter`` counts the iterations already
        run). A model search that fits candidates with a low iteration cap passes the
        chosen one to its final fit of the same counts this way. Its last loss is checked
        against ``X`` (a ``ValueError`` when it was fitted to other counts).
    fixed_rows : ndarray (k,) of bool, optional
        ``simplex=True`` with ``update_S``: spectra kept at their ``S_init`` rows
        (normalised, no floor) while the others are updated. The M-step of the spectra
        separates by component, so skipping some rows is still an EM step that never
        increases the loss.
    support : ndarray (k, channels) of bool, optional
        ``simplex=True`` with ``update_S``: where each spectrum may have lines. Each run of
        False channels of a row (the windows of a forbidden element's lines) carries a
        straight-line continuum and no line (:class:`psnmf.engine.priors.ContinuumWindows`):
        the start is projected onto it, and the M-step refits each window's two end
        amplitudes, an EM step of that constrained model, so the loss never increases.

    Notes
    -----
    ``NMFResult.loss`` holds the loss at the iterations ``NMFResult.info['loss_iter']``
    (before that iteration's update, then at the end).
    With fixed spectra (``update_S=False``) each pixel is iterated to its own convergence
    while its counts stay in cache (:func:`psnmf.engine._kernels.solve_fixed_spectra`); the loss
    history is then ``[initial, final]``, ``n_iter`` the largest per-pixel count and
    ``info['pixel_iter']`` the per-pixel counts.

    Returns
    -------
    NMFResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> S = rng.dirichlet(np.ones(50), size=2)
    >>> A = rng.dirichlet(np.ones(2), size=400)
    >>> X = rng.poisson(200 * A @ S)
    >>> res = poisson_nmf(X, 2, random_state=0)
    >>> bool(np.allclose(res.A.sum(axis=1), 1))
    True
    """
    Xc = check_counts_matrix(X, "X") if check_input else _trusted(X)
    n, ne = Xc.shape
    k = check_n_components(n_components, Xc.shape)
    max_iter = check_positive_int(max_iter, "max_iter", minimum=0)
    loss_every = check_positive_int(loss_every, "loss_every")
    if not (isinstance(tol, float | int) and tol >= 0 and np.isfinite(tol)):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}.")
    rng = check_random_state(random_state)
    totals = np.asarray(Xc.sum(axis=1)).ravel()
    if resume is not None:  # the factors as the earlier run left them, floors and all
        _check_resume(resume, (n, k, ne), simplex, update_A, update_S, A_init, S_init)
        if resume.n_iter > max_iter:
            raise ValueError(f"resume ran {resume.n_iter} iterations, more than max_iter="
                             f"{max_iter}: fit from the start (resume=None) or raise "
                             "max_iter.")
        A, S = resume.A.copy(), resume.S.copy()
    else:
        A, S = _initial_factors(Xc, k, init, rng, A_init, S_init, simplex=simplex,
                                update_S=update_S, totals=totals)
        if update_S and simplex and (fixed_rows is not None or support is not None):
            S = _constrained_start(S, S_init, fixed_rows, support, k, ne)
    windows, amplitudes = None, np.zeros(0)
    if update_S and simplex and support is not None:
        windows = ContinuumWindows.from_support(np.asarray(support, dtype=bool))
        if windows.empty:
            windows = None
        else:  # the start lies on the curves already; its amplitudes get a floor
            S, amplitudes = windows.fit(S, floor=START_FLOOR if resume is None else 0.0)
    S_fixed = None
    if update_S and simplex and fixed_rows is not None and np.any(fixed_rows):
        fixed_rows = np.asarray(fixed_rows, dtype=bool)
        S_fixed = S[fixed_rows].copy()

    const = kernels.xlogx_sum(Xc.data)
    total = float(totals.sum())
    has_counts = totals > 0
    nlogn = float(np.sum(totals[has_counts] * np.log(totals[has_counts])))
    floor = kernels.TINY if simplex else SKLEARN_EPSILON

    def loss_of(xlogm: float, A_: np.ndarray, S_: np.ndarray) -> float:
        if simplex:
            return const - nlogn - xlogm
        return const - xlogm - total + float(A_.sum(axis=0) @ S_.sum(axis=1))

    if update_A and not update_S:
        return _fit_fixed_spectra(
            Xc, A, S, simplex=simplex, max_iter=max_iter, tol=tol, floor=floor,
            totals=totals, loss_of=loss_of,
        )

    losses: list[float] = []
    loss_iter: list[int] = []
    converged = False
    it = 0
    if resume is not None:  # its history without the final loss, which the loop recomputes
        _, _, xlogm = kernels.ratio_numerators(Xc, A, S, want_A=False, want_S=False,
                                               floor=floor)
        last = float(resume.loss[-1])
        if abs(loss_of(xlogm, A, S) - last) > 1e-9 * max(abs(last), 1.0):
            raise ValueError("resume was fitted to other counts than X (its last loss "
                             "differs); fit X from the start (resume=None).")
        losses = [float(v) for v in resume.loss[:-1]]
        loss_iter = [int(v) for v in resume.info["loss_iter"][:-1]]
        it = int(resume.n_iter)
    ws = kernels.RatioWorkspace(n, ne, k, want_A=update_A, want_S=update_S)
    inv_totals = np.divide(1.0, totals, out=np.zeros(n), where=has_counts)[:, None]
    empty_rows = np.flatnonzero(~has_counts)
    A_empty = A[empty_rows].copy()
    while it < max_iter:
        # the loss at two consecutive iterations every `loss_every`: the stopping rule is on
        # the decrease over one iteration, as if it were evaluated at every iteration
        evaluate = it % loss_every == 0 or (it + 1) % loss_every == 0
        if simplex:
            num_A, num_S, xlogm = kernels.ratio_numerators(
                Xc, A, S, want_A=update_A, want_S=update_S, want_ll=evaluate, workspace=ws
            )
            if evaluate:
                losses.append(loss_of(xlogm, A, S))
                loss_iter.append(it)
            if update_A:  # EM: a_i <- a_i * (x_i / (a_i S)) S^T / n_i, stays on the simplex
                A *= num_A
                A *= inv_totals
                if empty_rows.size:
                    A[empty_rows] = A_empty
            if update_S:
                if windows is None:
                    S = _normalise_rows(S * num_S, S)
                else:
                    S, amplitudes = windows.m_step(S, num_S, amplitudes)
                if S_fixed is not None:
                    S[fixed_rows] = S_fixed
        else:  # Lee-Seung KL-MU in scikit-learn's order: A (W) first, then S (H)
            if update_A:
                num_A, _, xlogm = kernels.ratio_numerators(
                    Xc, A, S, want_S=False, want_ll=evaluate, floor=floor, workspace=ws
                )
                if evaluate:
                    losses.append(loss_of(xlogm, A, S))
                    loss_iter.append(it)
                S_sum = S.sum(axis=1)
                S_sum[S_sum == 0] = SKLEARN_EPSILON
                A *= num_A
                A /= S_sum[None, :]
            if update_S:
                want_ll = evaluate and not update_A
                _, num_S, xlogm = kernels.ratio_numerators(
                    Xc, A, S, want_A=False, want_ll=want_ll, floor=floor, workspace=ws
                )
                if want_ll:
                    losses.append(loss_of(xlogm, A, S))
                    loss_iter.append(it)
                A_sum = A.sum(axis=0)
                A_sum[A_sum == 0] = 1.0
                S = S * num_S / A_sum[:, None]
        it += 1
        if evaluate and len(losses) >= 2 and loss_iter[-1] - loss_iter[-2] == 1:
            prev, cur = losses[-2], losses[-1]
            if abs(prev - cur) <= tol * max(abs(cur), 1e-12 * max(total, 1.0)):
                converged = True
                break

    # final loss of the returned factors
    _, _, xlogm = kernels.ratio_numerators(
        Xc, A, S, want_A=False, want_S=False, floor=floor
    )
    losses.append(loss_of(xlogm, A, S))
    loss_iter.append(it)
    scale = totals.astype(np.float64) if simplex else np.ones(n)
    return NMFResult(
        A=A, S=S, scale=scale, loss=np.asarray(losses), n_iter=it, converged=converged,
        info={"loss_iter": np.asarray(loss_iter)},
    )


def _fit_fixed_spectra(
    Xc: sp.csr_matrix,
    A: np.ndarray,
    S: np.ndarray,
    *,
    simplex: bool,
    max_iter: int,
    tol: float,
    floor: float,
    totals: np.ndarray,
    loss_of,
) -> NMFResult:
    """Abundances for fixed spectra: one convex problem per pixel, each to its own tolerance.

    The per-pixel stopping rule (largest abundance change per update at most ``tol`` times
    the pixel's abundance sum) makes a pixel's result independent of every other pixel, so
    chunked and distributed runs (:mod:`psnmf.engine._dask`) give the same maps bit for bit.
    """
    A_start = A if simplex else A.copy()  # the plain loss needs the initial A's sums
    A, ll, n_iter_px = kernels.solve_fixed_spectra(
        Xc, A, S, simplex=simplex, max_iter=max_iter, tol=tol, floor=floor
    )
    losses = np.array(
        [loss_of(float(ll[0].sum()), A_start, S), loss_of(float(ll[1].sum()), A, S)]
    )
    n_iter = int(n_iter_px.max()) if n_iter_px.size else 0
    scale = totals.astype(np.float64) if simplex else np.ones(A.shape[0])
    return NMFResult(
        A=A, S=S, scale=scale, loss=losses, n_iter=n_iter,
        converged=bool(np.all(n_iter_px < max_iter)) if max_iter > 0 else False,
        info={"loss_iter": np.array([0, n_iter]), "pixel_iter": n_iter_px, "pixel_xlogm": ll},
    )


def solve_abundances(
    X,
    spectra: np.ndarray,
    *,
    simplex: bool = True,
    max_iter: int = 500,
    tol: float = 1e-6,
    check_input: bool = True,
    A_init: np.ndarray | None = None,
) -> NMFResult:
    """Abundances of (new) counts for fitted spectra held fixed: what ``transform`` does.

    Starts from uniform abundances, or from ``A_init``: each pixel's problem is convex, so
    a start near the solution (the abundances of similar counts) gives the same answer to
    ``tol`` in fewer iterations. A channel where every fitted spectrum is exactly zero
    (it had no counts in the fit) cannot explain counts of new data, so the spectra get a
    negligible floor there (1e-12 / channels) and the solve stays finite and on the simplex.

    Parameters
    ----------
    X : array-like or sparse (n_pixels, n_channels)
    spectra : ndarray (k, n_channels)
        Fitted spectra.
    simplex, max_iter, tol, check_input : as in :func:`poisson_nmf`
    A_init : ndarray (n_pixels, k), optional
        Starting abundances (copied; rows with a zero sum start uniform).
    """
    Xc = check_counts_matrix(X, "X") if check_input else _trusted(X)
    k, ne = np.shape(spectra)
    if Xc.shape[1] != ne:
        raise ValueError(
            f"X has {Xc.shape[1]} channels but the model was fitted on {ne}; transform data "
            "with the same energy axis (and energy_range) as in fit."
        )
    floored = np.asarray(spectra, dtype=np.float64) + 1e-12 / ne
    if simplex:
        floored /= floored.sum(axis=1, keepdims=True)
    return poisson_nmf(
        Xc, k, simplex=simplex, A_init=_start(A_init, Xc.shape[0], k), S_init=floored,
        update_S=False, max_iter=max_iter, tol=tol, check_input=False,
    )


def _start(A_init: np.ndarray | None, n: int, k: int) -> np.ndarray:
    """Uniform abundances, or ``A_init`` checked, floored away from 0 (a multiplicative
    update never leaves 0) and renormalised."""
    if A_init is None:
        return np.full((n, k), 1.0 / k)
    A = np.array(A_init, dtype=np.float64)
    if A.shape != (n, k) or not np.all(np.isfinite(A)) or np.any(A < 0):
        raise ValueError(f"A_init must be finite, non-negative, of shape {(n, k)}; got "
                         f"shape {A.shape}.")
    A = np.maximum(A, 1e-6)
    return A / A.sum(axis=1, keepdims=True)


def is_counts_csr(X: Any) -> bool:
    """Whether ``X`` is in the form of validated counts that the engine passes on.

    CSR with float64 data, column indices sorted within each row and no explicit zeros:
    what :func:`psnmf._validation.check_counts_matrix` returns and
    :func:`psnmf.engine.binning.bin_counts` produces. A cheap test: no pass over the data
    beyond the zero check.
    """
    return (
        sp.issparse(X) and X.format == "csr" and X.dtype == np.float64
        and bool(X.has_sorted_indices) and not np.any(X.data == 0)
    )


def _trusted(X: Any) -> sp.csr_matrix:
    """``X`` after the cheap test that it is already validated counts, int32/int64 indices."""
    if not is_counts_csr(X):
        raise ValueError(
            "check_input=False needs counts in the validated CSR form (float64 data, sorted "
            "indices, no explicit zeros); pass check_input=True to validate and convert them."
        )
    if X.indices.dtype == np.int32 and X.indptr.dtype == np.int64:
        return X
    out = sp.csr_matrix((X.data, X.indices, X.indptr), shape=X.shape, copy=False)
    out.indices = X.indices.astype(np.int32, copy=False)
    out.indptr = X.indptr.astype(np.int64, copy=False)
    return out


def _check_fixed_spectra_cover_counts(X: sp.csr_matrix, S: np.ndarray) -> None:
    """Refuse fixed spectra that are all zero in a channel where the data have counts.

    There the model is zero whatever the abundances, the Poisson likelihood is -inf and the
    simplex EM would lose those counts; no abundance estimate is meaningful.
    """
    dead = ~np.any(S > 0, axis=0)
    if not dead.any():
        return
    hit = np.unique(X.indices[dead[X.indices]])
    if hit.size:
        raise ValueError(
            f"S_init is zero in every spectrum at channel(s) {hit[:10].tolist()}"
            f"{' ...' if hit.size > 10 else ''} where X has counts, and the spectra are "
            "fixed (update_S=False): no abundances can explain those counts. Add a small "
            "floor to the spectra (e.g. S_init + 1e-12, then renormalise), drop those "
            "channels, or let the spectra be updated."
        )


def _initial_factors(
    Xc: sp.csr_matrix, k: int, init: str, rng: np.random.Generator,
    A_init: np.ndarray | None, S_init: np.ndarray | None, *, simplex: bool, update_S: bool,
    totals: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The start ``(A, S)`` of :func:`poisson_nmf`: the given factors, the rest by ``init``,
    normalised as the model needs."""
    n, ne = Xc.shape
    if A_init is None or S_init is None:
        A0, S0 = initialise(Xc, k, init, simplex=simplex, random_state=rng)
    A = _check_init(A_init, (n, k), "A_init") if A_init is not None else A0
    S = _check_init(S_init, (k, ne), "S_init") if S_init is not None else S0
    if simplex:
        S = _normalise_rows(S, np.full(ne, 1.0 / ne))
        A = _normalise_rows(A, np.full(k, 1.0 / k))
        if update_S:  # a zero in S could never come back; keep a floor of the mean spectrum
            mean = np.asarray(Xc.sum(axis=0)).ravel()
            S = _normalise_rows(S + 1e-9 * (mean / max(mean.sum(), 1.0))[None, :])
        else:
            _check_fixed_spectra_cover_counts(Xc, S)
    elif A_init is None and S_init is not None:
        A = A * (totals[:, None] / np.maximum(A.sum(axis=1, keepdims=True), 1e-300)) + 1e-12
    return A, S


def _constrained_start(
    S: np.ndarray, S_init: np.ndarray | None, fixed_rows: np.ndarray | None,
    support: np.ndarray | None, k: int, ne: int,
) -> np.ndarray:
    """The start spectra with a straight-line continuum in the windows outside ``support``
    and the ``fixed_rows`` of ``S_init`` exactly (normalised, without the floor of the
    free rows)."""
    out = S
    if support is not None:
        mask = np.asarray(support, dtype=bool)
        if mask.shape != (k, ne):
            raise ValueError(f"support must have shape {(k, ne)}, got {mask.shape}.")
        out = ContinuumWindows.from_support(mask).project(out)
    if fixed_rows is not None and np.any(fixed_rows):
        if S_init is None:
            raise ValueError("fixed_rows keeps rows of S_init: pass S_init.")
        rows = np.asarray(fixed_rows, dtype=bool)
        given = _check_init(S_init, (k, ne), "S_init")
        out[rows] = _normalise_rows(given[rows])
    return out


def _check_resume(resume: Any, shape: tuple[int, int, int], simplex: bool, update_A: bool,
                  update_S: bool, A_init: Any, S_init: Any) -> None:
    """Refuse a ``resume`` that :func:`poisson_nmf` cannot continue exactly."""
    n, k, ne = shape
    if not isinstance(resume, NMFResult) or "loss_iter" not in resume.info:
        raise TypeError(f"resume must be an NMFResult of poisson_nmf, got {type(resume)!r}.")
    if not (simplex and update_A and update_S):
        raise ValueError("resume continues a run with simplex=True that updates both "
                         "factors; drop resume for this call.")
    if A_init is not None or S_init is not None:
        raise ValueError("resume gives the start itself: pass either resume or A_init/S_init.")
    if resume.A.shape != (n, k) or resume.S.shape != (k, ne):
        raise ValueError(f"resume has factors of shapes {resume.A.shape} and "
                         f"{resume.S.shape}, expected ({n}, {k}) and ({k}, {ne}) for X and "
                         "n_components; fit X from the start (resume=None).")


def _check_init(M: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {M.shape}.")
    if not np.all(np.isfinite(M)) or np.any(M < 0):
        raise ValueError(f"{name} must be finite and non-negative.")
    return np.array(M, order="C", copy=True)


#: Rows drawn at once by :func:`poisson_draw` (a dense band of means is this many rows).
DRAW_ROWS = 256


def poisson_draw(
    rng: np.random.Generator, n_rows: int, n_channels: int,
    band_means: Callable[[slice], np.ndarray], rows: int = DRAW_ROWS,
) -> sp.csr_matrix:
    """Poisson counts of a model's means as CSR ``(n_rows, n_channels)``, drawn in bands.

    ``band_means(sl)`` gives the dense means of the rows ``sl`` (e.g. ``mean[sl]``, or
    ``weights[sl] @ spectra`` from factors), so at most one band of ``rows`` rows is dense at
    once: the bootstrap and the finer-scale replays draw whole images this way. The values
    are those of one draw of the whole array (the generator is consumed in row order).
    """
    bands = [sp.csr_matrix(rng.poisson(band_means(slice(i, min(i + rows, n_rows))))
                           .astype(np.float64)) for i in range(0, n_rows, rows)]
    if not bands:
        return sp.csr_matrix((0, n_channels))
    return sp.vstack(bands, format="csr")
