"""The fast engine against references: scikit-learn's KL-MU and a dense NumPy EM."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.decomposition import NMF

from psnmf import poisson_nmf
from psnmf.engine import _kernels as kernels


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    n, ne, k = 120, 60, 3
    S = rng.dirichlet(np.full(ne, 0.5), size=k)
    A = rng.dirichlet(np.ones(k), size=n)
    X = rng.poisson(80 * A @ S).astype(np.float64)
    W0 = rng.uniform(0.5, 2.0, size=(n, k)) * 20
    H0 = rng.uniform(0.5, 2.0, size=(k, ne))
    return X, W0, H0


def test_plain_mode_equals_sklearn_kl_mu_at_equal_iterations(data):
    X, W0, H0 = data
    n_iter = 60
    est = NMF(3, beta_loss="kullback-leibler", solver="mu", init="custom", tol=0,
              max_iter=n_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 never converges
        W = est.fit_transform(X, W=W0.copy(), H=H0.copy())
    res = poisson_nmf(X, 3, simplex=False, A_init=W0, S_init=H0, max_iter=n_iter, tol=0)
    assert res.n_iter == n_iter
    np.testing.assert_allclose(res.A, W, rtol=1e-9, atol=1e-12 * W.max())
    np.testing.assert_allclose(res.S, est.components_, rtol=1e-9,
                               atol=1e-12 * est.components_.max())


def _dense_simplex_em(X, A, S, n_iter):
    """Reference EM of the simplex model on the dense matrix (textbook pLSA updates)."""
    n = X.sum(axis=1, keepdims=True)
    for _ in range(n_iter):
        R = X / (A @ S)
        A, S = A * (R @ S.T) / n, S * (A.T @ R)
        S /= S.sum(axis=1, keepdims=True)
    return A, S


def test_simplex_em_equals_dense_reference(data):
    X, W0, H0 = data
    A0 = W0 / W0.sum(axis=1, keepdims=True)
    S0 = H0 / H0.sum(axis=1, keepdims=True)
    res = poisson_nmf(X, 3, A_init=A0, S_init=S0, max_iter=40, tol=0)
    A_ref, S_ref = _dense_simplex_em(X, A0, S0 + 1e-9 * 0, 40)
    np.testing.assert_allclose(res.A, A_ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.S, S_ref, rtol=1e-6, atol=1e-9)
    # the loss history is monotone and its last value is the dense loss of the result
    assert np.all(np.diff(res.loss) <= 1e-9 * abs(res.loss[0]))
    M = X.sum(axis=1, keepdims=True) * (res.A @ res.S)
    pos = X > 0
    dense_loss = np.sum(X[pos] * np.log(X[pos] / M[pos])) - X.sum() + M.sum()
    assert res.loss[-1] == pytest.approx(dense_loss, rel=1e-10)


def test_loss_every_does_not_change_the_iterates(data):
    X, W0, H0 = data
    a = poisson_nmf(X, 3, A_init=W0, S_init=H0, max_iter=35, tol=0, loss_every=1)
    b = poisson_nmf(X, 3, A_init=W0, S_init=H0, max_iter=35, tol=0, loss_every=10)
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_array_equal(a.S, b.S)
    assert len(a.loss) == 36 and list(b.info["loss_iter"]) == [0, 9, 10, 19, 20, 29, 30, 35]
    np.testing.assert_allclose(a.loss[b.info["loss_iter"]], b.loss, rtol=1e-12)


def test_fixed_spectra_reaches_the_dense_fixed_point(data):
    X, W0, H0 = data
    S = H0 / H0.sum(axis=1, keepdims=True)
    A0 = np.full((X.shape[0], 3), 1 / 3)
    res = poisson_nmf(X, 3, A_init=A0, S_init=S, update_S=False, max_iter=20000, tol=1e-13)
    # KKT of the per-pixel convex problem: the EM multiplier is 1 where a > 0, <= 1 at 0
    num_A, _, _ = kernels.ratio_numerators_dense(X, res.A, S)
    g = num_A / X.sum(axis=1, keepdims=True)
    active = res.A > 1e-3  # (abundances heading to 0 shrink slowly under EM)
    np.testing.assert_allclose(g[active], 1.0, atol=1e-4)
    assert np.all(g[~active] <= 1 + 1e-4)
    assert res.loss[1] <= res.loss[0]
