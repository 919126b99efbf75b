"""The Poisson NMF engine: recovery, invariants, options, robustness."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf import compare_to_truth, poisson_nmf
from psnmf.engine.poisson_nmf import solve_abundances
from psnmf.metrics import spectral_angle


def _flat(toy):
    ny, nx, ne = toy.counts.shape
    return toy.counts.reshape(-1, ne), toy.maps.reshape(-1, toy.maps.shape[-1])


def test_simplex_invariants_and_monotone_loss(toy):
    X, _ = _flat(toy)
    res = poisson_nmf(X, 3, max_iter=300, tol=0, random_state=0)
    assert np.all(res.A >= 0) and np.all(res.S >= 0)
    np.testing.assert_allclose(res.A.sum(axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(res.S.sum(axis=1), 1, atol=1e-12)
    np.testing.assert_array_equal(res.scale, X.sum(axis=1))
    # EM never increases the loss
    assert np.all(np.diff(res.loss) <= 1e-9 * abs(res.loss[0]))
    assert res.n_iter == 300 and not res.converged


def test_optimiser_reaches_the_likelihood_of_the_truth(toy):
    """On clean data the engine fits at least as well as the truth, close to it.

    NMF is not unique: with noise a slightly wider simplex fits better than the truth
    (the matrix phase lands a few degrees away). The optimiser must still reach a loss at
    or below the truth's, and started at the truth it must stay there.
    """
    rng = np.random.default_rng(3)
    A_true = toy.maps.reshape(-1, 3)
    X = rng.poisson(5000 * A_true @ toy.spectra)
    at_truth = poisson_nmf(X, 3, A_init=A_true, S_init=toy.spectra, max_iter=1, tol=0)
    res = poisson_nmf(X, 3, max_iter=3000, tol=1e-9, random_state=0)
    assert res.loss[-1] <= at_truth.loss[0]
    r = compare_to_truth(res.S, res.A.reshape(toy.maps.shape), toy.spectra, toy.maps)
    assert np.all(r["angle"] < 5.0), r["angle"]
    assert np.all(r["mse"] < 0.03), r["mse"]
    local = poisson_nmf(X, 3, A_init=A_true, S_init=toy.spectra, max_iter=3000, tol=1e-12)
    r = compare_to_truth(local.S, local.A.reshape(toy.maps.shape), toy.spectra, toy.maps)
    assert np.all(r["angle"] < 0.5), r["angle"]
    assert np.all(r["mse"] < 1e-4), r["mse"]


def test_same_dense_and_sparse_input(toy):
    X, _ = _flat(toy)
    a = poisson_nmf(X, 3, max_iter=50, tol=0, random_state=1)
    b = poisson_nmf(sp.csr_matrix(X), 3, max_iter=50, tol=0, random_state=1)
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_array_equal(a.S, b.S)


def test_determinism_with_seed(toy):
    X, _ = _flat(toy)
    for init in ("nndsvda", "spa", "random"):
        a = poisson_nmf(X, 3, init=init, max_iter=40, random_state=7)
        b = poisson_nmf(X, 3, init=init, max_iter=40, random_state=7)
        np.testing.assert_array_equal(a.A, b.A)
        np.testing.assert_array_equal(a.S, b.S)


def test_fixed_spectra_solves_abundances_only(toy):
    X, A_true = _flat(toy)
    res = poisson_nmf(X, 3, S_init=toy.spectra, A_init=np.full_like(A_true, 1 / 3),
                      update_S=False, max_iter=500, tol=1e-10)
    np.testing.assert_array_equal(res.S, toy.spectra / toy.spectra.sum(1, keepdims=True))
    np.testing.assert_allclose(res.A.sum(1), 1, atol=1e-12)
    # maps from the true spectra are close to the true maps (noise-limited)
    assert np.mean((res.A - A_true) ** 2) < 0.02


def test_fixed_abundances_solves_spectra_only(toy):
    X, A_true = _flat(toy)
    res = poisson_nmf(X, 3, A_init=A_true, S_init=np.ones((3, X.shape[1])),
                      update_A=False, max_iter=2000, tol=1e-12)
    np.testing.assert_allclose(res.A, A_true, rtol=0, atol=1e-12)
    assert np.all(spectral_angle(res.S, toy.spectra) < 5)


def test_stops_on_relative_loss_change(toy):
    X, _ = _flat(toy)
    loose = poisson_nmf(X, 3, tol=1e-3, max_iter=5000, random_state=0)
    tight = poisson_nmf(X, 3, tol=1e-8, max_iter=5000, random_state=0)
    assert loose.converged and loose.n_iter < tight.n_iter
    rel = abs(loose.loss[-3] - loose.loss[-2]) / abs(loose.loss[-2])
    assert rel <= 1e-3


def test_zero_pixels_and_channels_no_nan(toy):
    X, _ = _flat(toy)
    X = X.copy()
    X[::7] = 0  # empty pixels
    X[:, 50:60] = 0  # dead channels
    for simplex in (True, False):
        res = poisson_nmf(X, 3, simplex=simplex, max_iter=100, random_state=0)
        assert np.all(np.isfinite(res.A)) and np.all(np.isfinite(res.S))
        assert np.all(np.isfinite(res.loss))
        assert np.all(res.S[:, 50:60] < 1e-6)
        if simplex:
            np.testing.assert_allclose(res.A.sum(1), 1, atol=1e-12)


def test_plain_kl_mode_decreases_loss_and_fits_totals(toy):
    X, _ = _flat(toy)
    res = poisson_nmf(X, 3, simplex=False, max_iter=200, tol=0, random_state=0)
    assert np.all(np.diff(res.loss) <= 1e-9 * abs(res.loss[0]))
    # the KL fixed point preserves the total counts
    np.testing.assert_allclose((res.A @ res.S).sum(), X.sum(), rtol=1e-6)


def test_loadings_of_new_data_for_fixed_spectra(toy):
    X, _ = _flat(toy)
    res = poisson_nmf(X, 3, max_iter=200, random_state=0)
    load = res.scale[:, None] * res.A
    assert load.shape == (X.shape[0], 3) and res.S.shape == (3, X.shape[1])
    np.testing.assert_allclose(load.sum(1), X.sum(1))
    new = solve_abundances(X, res.S, max_iter=200)
    again = new.scale[:, None] * new.A
    assert np.mean(np.abs(again - load)) / X.sum(1).mean() < 0.05


def test_check_input_false_needs_validated_counts(toy):
    X, _ = _flat(toy)
    Xc = sp.csr_matrix(X.astype(np.float64))
    a = poisson_nmf(Xc, 3, max_iter=30, random_state=0)
    b = poisson_nmf(Xc, 3, max_iter=30, random_state=0, check_input=False)
    np.testing.assert_array_equal(a.A, b.A)
    np.testing.assert_array_equal(a.loss, b.loss)
    with pytest.raises(ValueError, match="check_input=True"):
        poisson_nmf(X, 3, check_input=False)  # dense: not the validated form


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_components": 0}, ValueError, "n_components"),
        ({"n_components": 2.5}, TypeError, "n_components"),
        ({"n_components": 10**6}, ValueError, "more than the data can support"),
        ({"n_components": 3, "init": "pca"}, ValueError, "init"),
        ({"n_components": 3, "tol": -1.0}, ValueError, "tol"),
        ({"n_components": 3, "A_init": np.ones((2, 3))}, ValueError, "A_init"),
    ],
)
def test_bad_arguments(toy, kwargs, exc, match):
    X, _ = _flat(toy)
    with pytest.raises(exc, match=match):
        poisson_nmf(X, **kwargs)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((4, 5), -1.0), "negative"),
        (np.full((4, 5), np.nan), "NaN"),
        (np.ones((4, 5, 2)), "2-D"),
    ],
)
def test_bad_counts(bad, match):
    with pytest.raises(ValueError, match=match):
        poisson_nmf(bad, 1)


def test_non_integer_counts_warn():
    with pytest.warns(UserWarning, match="Poisson model assumes raw X-ray counts"):
        poisson_nmf(np.full((6, 5), 1.5), 1, max_iter=5)


@pytest.mark.parametrize("simplex", [True, False])
def test_transform_handles_counts_in_channels_empty_in_fit(toy, simplex):
    """New counts where the fitted spectra are all zero: finite loadings, simplex kept."""
    X, _ = _flat(toy)
    train = X.copy()
    train[:, 10] = 0
    fit = poisson_nmf(train, 3, simplex=simplex, max_iter=100, random_state=0)
    new = X.copy()
    new[:, 10] = 5
    res = solve_abundances(new, fit.S, simplex=simplex, max_iter=100)
    load = res.scale[:, None] * res.A
    assert np.all(np.isfinite(load)) and np.all(load >= 0)
    if simplex:
        np.testing.assert_allclose(load.sum(1), new.sum(1), rtol=1e-9)
    with pytest.raises(ValueError, match="channels but the model was fitted on"):
        solve_abundances(new[:, :-1], fit.S, simplex=simplex)


@pytest.mark.parametrize(("first", "first_tol"), [(35, 1e-7), (5000, 1e-3)])
def test_resume_continues_a_run_to_the_same_result(toy, first, first_tol):
    """A run stopped by its cap (35 iterations) or by a looser tol, continued with
    ``resume``, is the run that went on from the start: same factors, losses, iterations."""
    X, _ = _flat(toy)
    whole = poisson_nmf(X, 3, max_iter=400, tol=1e-6, random_state=0)
    part = poisson_nmf(X, 3, max_iter=first, tol=first_tol, random_state=0)
    assert part.n_iter < whole.n_iter
    again = poisson_nmf(X, 3, max_iter=400, tol=1e-6, random_state=0, resume=part)
    np.testing.assert_array_equal(again.A, whole.A)
    np.testing.assert_array_equal(again.S, whole.S)
    np.testing.assert_array_equal(again.loss, whole.loss)
    np.testing.assert_array_equal(again.info["loss_iter"], whole.info["loss_iter"])
    assert (again.n_iter, again.converged) == (whole.n_iter, whole.converged)
    assert not np.shares_memory(again.A, part.A)  # the earlier result is left as it was


def test_resume_refuses_what_it_cannot_continue(toy):
    X, _ = _flat(toy)
    part = poisson_nmf(X, 3, max_iter=20, random_state=0)
    with pytest.raises(ValueError, match="other counts"):
        poisson_nmf(X + 1, 3, resume=part)
    with pytest.raises(ValueError, match="shapes"):
        poisson_nmf(X[:-1], 3, resume=part)
    with pytest.raises(ValueError, match="A_init"):
        poisson_nmf(X, 3, resume=part, S_init=part.S)
    with pytest.raises(ValueError, match="both"):
        poisson_nmf(X, 3, resume=part, update_S=False)
    with pytest.raises(TypeError, match="NMFResult"):
        poisson_nmf(X, 3, resume=(part.A, part.S))
    with pytest.raises(ValueError, match="max_iter"):
        poisson_nmf(X, 3, resume=part, max_iter=10)
