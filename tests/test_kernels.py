"""The count-sparse kernels agree with plain dense NumPy references."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from psnmf.engine import _kernels as kernels


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    n, ne, k = 57, 40, 3
    S = rng.dirichlet(np.ones(ne), size=k)
    A = rng.dirichlet(np.ones(k), size=n)
    X = rng.poisson(30 * A @ S).astype(np.float64)
    X[5] = 0  # an empty pixel
    return sp.csr_matrix(X), X, A, S


def test_ratio_numerators_match_dense(small):
    Xs, X, A, S = small
    ref_A, ref_S, ref_ll = kernels.ratio_numerators_dense(X, A, S)
    num_A, num_S, ll = kernels.ratio_numerators(Xs, A, S)
    np.testing.assert_allclose(num_A, ref_A, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(num_S, ref_S, rtol=1e-12, atol=1e-12)
    assert ll == pytest.approx(ref_ll, rel=1e-12)


def test_ratio_numerators_flags_and_workspace(small):
    Xs, X, A, S = small
    ref_A, ref_S, _ = kernels.ratio_numerators_dense(X, A, S)
    ws = kernels.RatioWorkspace(*Xs.shape, 3)
    for _ in range(2):  # reused buffers are overwritten, not accumulated
        num_A, num_S, ll = kernels.ratio_numerators(Xs, A, S, want_ll=False, workspace=ws)
        np.testing.assert_allclose(num_A, ref_A, rtol=1e-12)
        np.testing.assert_allclose(num_S, ref_S, rtol=1e-12, atol=1e-15)
        assert np.isnan(ll)
    only_A, none_S, _ = kernels.ratio_numerators(Xs, A, S, want_S=False)
    assert none_S is None
    np.testing.assert_allclose(only_A, ref_A, rtol=1e-12)


def _dense_fixed_spectra(X, A, S, simplex, n_iter):
    """Plain NumPy multiplicative updates of A for fixed S, all pixels together."""
    A = A.copy()
    d = X.sum(axis=1, keepdims=True) if simplex else S.sum(axis=1)[None, :]
    for _ in range(n_iter):
        num_A, _, _ = kernels.ratio_numerators_dense(X, A, S)
        new = A * num_A / np.where(d > 0, d, 1.0)
        if simplex:
            new[X.sum(axis=1) == 0] = A[X.sum(axis=1) == 0]
        A = new
    return A


@pytest.mark.parametrize("simplex", [True, False])
def test_fixed_spectra_starts_with_two_plain_updates(small, simplex):
    Xs, X, A, S = small
    A0 = np.full_like(A, 1 / 3) * (1 if simplex else X.sum(axis=1, keepdims=True) + 1)
    # tol=0, max_iter=2: every pixel does the two EM updates that precede an extrapolation
    out, ll, n_iter = kernels.solve_fixed_spectra(
        Xs, A0.copy(), S, simplex=simplex, max_iter=2, tol=0.0
    )
    ref = _dense_fixed_spectra(X, A0, S, simplex, 2)
    np.testing.assert_allclose(out, ref, rtol=1e-11, atol=1e-13)
    assert np.all(n_iter[X.sum(axis=1) > 0] == 2)
    _, _, ll_end = kernels.ratio_numerators_dense(X, out, S)
    assert ll[1].sum() == pytest.approx(ll_end, rel=1e-12)
    assert np.all(ll[1] >= ll[0] - 1e-9) if simplex else True  # EM: likelihood up


def _objective(X, A, S, simplex):
    """Per-pixel Poisson log-likelihood up to a constant (the plain loss keeps -sum(AS))."""
    M = np.maximum(A @ S, kernels.TINY)
    ll = np.where(X > 0, X * np.log(M), 0.0).sum(axis=1)
    return ll if simplex else ll - M.sum(axis=1)


@pytest.mark.parametrize("simplex", [True, False])
def test_accelerated_solve_reaches_the_em_fixed_point_in_fewer_updates(small, simplex):
    Xs, X, A, S = small
    A0 = np.full_like(A, 1 / 3) * (1 if simplex else X.sum(axis=1, keepdims=True) + 1)
    out, _, n_iter = kernels.solve_fixed_spectra(Xs, A0.copy(), S, simplex=simplex,
                                                 max_iter=5000, tol=1e-10)
    ref = _dense_fixed_spectra(X, A0, S, simplex, 20000)  # plain EM, far past convergence
    scale = 1.0 if simplex else X.sum(axis=1, keepdims=True) + 1
    np.testing.assert_allclose(out / scale, ref / scale, atol=1e-5)
    # the accelerated solution is at least as likely as 20000 plain EM updates
    assert np.all(_objective(X, out, S, simplex) >= _objective(X, ref, S, simplex) - 1e-7)
    assert np.all(n_iter < 5000)
    plain, _, _ = kernels.solve_fixed_spectra(Xs, A0.copy(), S, simplex=simplex,
                                                       max_iter=2, tol=0.0)
    assert np.all(_objective(X, out, S, simplex) >= _objective(X, plain, S, simplex) - 1e-9)


def test_results_do_not_depend_on_thread_count(small, monkeypatch):
    Xs, _, A, S = small
    serial = kernels.ratio_numerators(Xs, A, S)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_NNZ", 0)  # force the parallel kernels
    monkeypatch.setattr(kernels, "SERIAL_MAX_NNZ", 0)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernels.ratio_numerators(Xs, A, S)
        one_f = kernels.solve_fixed_spectra(Xs, A.copy(), S, simplex=True, max_iter=50,
                                            tol=1e-9)[0]
        numba.set_num_threads(before)
        many = kernels.ratio_numerators(Xs, A, S)
        many_f = kernels.solve_fixed_spectra(Xs, A.copy(), S, simplex=True, max_iter=50,
                                             tol=1e-9)[0]
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(serial[0], many[0])
    np.testing.assert_array_equal(serial[1], many[1])
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])
    assert one[2] == many[2]
    np.testing.assert_array_equal(one_f, many_f)


def test_a_timed_thread_choice_gives_the_same_numbers_as_one_thread(small, monkeypatch):
    """A workspace times the parallel and serial passes and keeps the faster: every call,
    while probing and after, gives the serial pass's numbers exactly."""
    Xs, _, A, S = small
    ref = kernels.ratio_numerators(Xs, A, S)  # below PARALLEL_MIN_NNZ: one thread
    monkeypatch.setattr(kernels, "SERIAL_MAX_NNZ", 0)
    ws = kernels.RatioWorkspace(*Xs.shape, A.shape[1])
    for _ in range(2 * kernels.ThreadChoice.PROBES + 2):
        got = kernels.ratio_numerators(Xs, A, S, workspace=ws)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
        assert got[2] == ref[2]
    assert ws.threads is not None and ws.threads.fixed is None
    assert [len(t) for t in ws.threads._times] == [kernels.ThreadChoice.PROBES] * 2
    assert ws.threads.choice in (0, 1)


def test_fits_side_by_side_equal_the_loop_in_order():
    """map_threads: the same NMF fits as a plain loop (bit for bit), in the items' order,
    each call with the serial kernels; an error of a call surfaces."""
    from psnmf.engine.poisson_nmf import poisson_nmf

    rng = np.random.default_rng(3)
    mats = [sp.csr_matrix(rng.poisson(rng.random((60, 40)) * 3.0).astype(float))
            for _ in range(5)]

    def fit(X):
        res = poisson_nmf(X, 3, max_iter=40, random_state=0)
        return res.A, res.S, kernels._serial_here()

    loop = [fit(X) for X in mats]
    side = kernels.map_threads(fit, mats, workers=2)
    assert [s[2] for s in side] == [True] * 5 and not kernels._serial_here()
    for (A1, S1, _), (A2, S2, _) in zip(loop, side, strict=True):
        assert np.array_equal(A1, A2) and np.array_equal(S1, S2)

    def fail(i):
        if i == 3:
            raise ValueError("fold 3 cannot be fitted")
        return i

    with pytest.raises(ValueError, match="fold 3"):
        kernels.map_threads(fail, range(5), workers=2)
    assert kernels.map_threads(fail, [0, 1, 2], workers=1) == [0, 1, 2]


def _counts(k: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    n, ne = 120, 90
    S = rng.dirichlet(np.ones(ne), size=k)
    A = rng.dirichlet(np.ones(k), size=n)
    X = rng.poisson(40 * A @ S).astype(np.float64)
    X[7] = 0  # an empty pixel
    return sp.csr_matrix(X), A, S


def _generic_columns(S: np.ndarray) -> np.ndarray:
    """``S.T`` padded to ``LANES + 1`` columns: a layout only the generic loops read."""
    k, ne = S.shape
    St = np.zeros((ne, kernels.LANES + 1))
    St[:, :k] = S.T
    return St


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_four_lane_ratio_pass_is_bit_identical_to_the_generic_one(k):
    Xs, A, S = _counts(k)
    n, ne = Xs.shape
    num_A, parts, ll_parts = np.empty((n, k)), np.empty((kernels.N_CHUNKS, ne, k)), np.empty(16)
    num_S = np.empty((k, ne))
    for want in [(True, True, True), (True, False, False), (False, True, False)]:
        ll = kernels._RATIO[1](Xs.indptr, Xs.indices, Xs.data, A, np.ascontiguousarray(S.T),
                               num_A, parts, ll_parts, *want, kernels.TINY)
        kernels._SUM_PARTS(parts, num_S)
        got_A, got_S, got_ll = kernels.ratio_numerators(Xs, A, S, want_A=want[0],
                                                        want_S=want[1], want_ll=want[2])
        assert got_A is None or np.array_equal(got_A, num_A)
        assert got_S is None or np.array_equal(got_S, num_S)
        assert not want[2] or got_ll == ll


@pytest.mark.parametrize("simplex", [True, False])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_four_lane_pixel_solve_is_bit_identical_to_the_generic_one(k, simplex):
    Xs, A, S = _counts(k)
    n = Xs.shape[0]
    ref = A.copy()
    ll = np.empty((2, n))
    n_iter = np.empty(n, dtype=np.int64)
    denom = S.sum(axis=1)
    kernels._FIXED[1](Xs.indptr, Xs.indices, Xs.data, _generic_columns(S), ref, denom, simplex,
                      50, 1e-9, kernels.TINY, ll[0], ll[1], n_iter)
    got, got_ll, got_iter = kernels.solve_fixed_spectra(Xs, A.copy(), S, simplex=simplex,
                                                        max_iter=50, tol=1e-9)
    assert np.array_equal(got, ref) and np.array_equal(got_ll, ll)
    assert np.array_equal(got_iter, n_iter)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_four_lane_tv_sweep_is_bit_identical_to_the_generic_one(k):
    from psnmf.engine import tv_maps

    Xs, A, S = _counts(k)
    maps = A.reshape(10, 12, k)
    active = np.ones((10, 12), dtype=np.bool_)
    out = []
    for St in (_generic_columns(S), kernels.lane_columns(S)):
        cur = maps.copy()
        ll = tv_maps._rb_sweep(Xs.indptr, Xs.indices, Xs.data, St, cur, 3.0, True, 1e-3, 0, 2,
                               1e-9, active, True)
        out.append((cur, ll))
    assert np.array_equal(out[0][0], out[1][0]) and out[0][1] == out[1][1]
