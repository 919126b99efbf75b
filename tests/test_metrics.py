"""Metrics and baselines."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_toy

from psnmf import pca_denoise
from psnmf.metrics import (
    compare_to_truth,
    map_mse,
    match_components,
    oracle_limits,
    oracle_maps,
    oracle_spectra,
    relative_error,
    spectral_angle,
)
from psnmf.selection import count_split, poisson_deviance


def test_spectral_angle_values():
    assert spectral_angle([1, 0], [0, 1]) == pytest.approx(90)
    assert spectral_angle([1, 2, 3], [2, 4, 6]) == pytest.approx(0, abs=1e-6)
    assert spectral_angle([1, 0], [1, 1]) == pytest.approx(45)
    stack = spectral_angle(np.eye(3), np.ones(3))
    np.testing.assert_allclose(stack, np.degrees(np.arccos(1 / np.sqrt(3))))


def test_map_mse():
    assert map_mse(np.zeros((4, 4)), np.ones((4, 4))) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        map_mse(np.zeros(3), np.zeros(4))


def test_match_components_finds_permutation():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(30), size=4)
    perm = np.array([2, 0, 3, 1])
    found = ref[perm] + 1e-4 * rng.random((4, 30))
    order = match_components(found, ref)
    np.testing.assert_array_equal(found[order], found[np.argsort(perm)])
    with pytest.raises(ValueError, match="at least as many"):
        match_components(found[:2], ref)


@pytest.mark.parametrize("sparse", [False, True])
def test_count_split_is_binomial_thinning(sparse):
    rng = np.random.default_rng(1)
    X = rng.poisson(3.0, size=(400, 50))
    Xin = sp.csr_matrix(X) if sparse else X
    X1, X2 = count_split(Xin, 0.5, random_state=0)
    a1 = X1.toarray() if sparse else X1
    a2 = X2.toarray() if sparse else X2
    np.testing.assert_array_equal(a1 + a2, X)
    assert np.all(a1 >= 0) and np.all(a2 >= 0)
    assert abs(a1.mean() - 1.5) < 0.05 and abs(a2.mean() - 1.5) < 0.05
    # the halves are uncorrelated given the mean (independent Poisson)
    assert abs(np.corrcoef(a1.ravel(), a2.ravel())[0, 1]) < 0.02
    again = count_split(Xin, 0.5, random_state=0)[0]
    np.testing.assert_array_equal(again.toarray() if sparse else again, a1)


def test_poisson_deviance():
    M = np.full((10, 10), 2.0)
    assert poisson_deviance(M, M) == pytest.approx(0)
    X = np.random.default_rng(0).poisson(M)
    d_true = poisson_deviance(X, M)
    assert d_true < poisson_deviance(X, 2 * M)
    assert poisson_deviance(sp.csr_matrix(X), M) == pytest.approx(d_true)


def test_heldout_deviance_prefers_the_denoised_model():
    """The ground-truth-free score ranks truth < denoised < raw on held-out counts."""
    toy = make_toy(48, 48, 200, counts=30.0, seed=4)
    X1, X2 = count_split(toy.counts, 0.5, random_state=0)
    truth = 0.5 * toy.noise_free
    raw = X1.astype(float)
    from psnmf import PSNMF

    rec = PSNMF(3, 4, random_state=0).fit(X1).reconstruct()
    d_truth, d_psnmf, d_raw = (poisson_deviance(X2, m) for m in (truth, rec, raw))
    assert d_truth < d_psnmf < d_raw


def test_pca_denoise_uses_hyperspy_and_reduces_error():
    toy = make_toy(32, 32, 120, counts=40.0, seed=5)
    den = pca_denoise(toy.counts, 3)
    assert den.shape == toy.counts.shape
    assert relative_error(den, toy.noise_free) < 0.3 * relative_error(toy.counts, toy.noise_free)


def _hyperspy_pca(cube, k, dim):
    """HyperSpy's own route: decomposition(normalize_poissonian_noise=True) + model(k)."""
    import hyperspy.api as hs

    s = hs.signals.Signal1D(np.asarray(cube, dtype=np.float64))
    s.decomposition(normalize_poissonian_noise=True, algorithm="SVD", output_dimension=dim,
                    svd_solver="randomized", random_state=0, print_info=False)
    return np.asarray(s.get_decomposition_model(k).data), s.learning_results


@pytest.mark.parametrize("shape", [(32, 32, 120), (8, 8, 150)])  # more / fewer pixels
def test_sparse_pca_equals_hyperspy_pca(shape):
    """pca_factors (sparse randomized SVD) gives HyperSpy's denoised cube and scree."""
    from psnmf.baselines import pca_factors

    toy = make_toy(*shape, counts=40.0, seed=5)
    ref, lr = _hyperspy_pca(toy.counts, 3, 20)
    f = pca_factors(toy.counts, 3, n_factors=20, random_state=0)
    cube = f.cube(chunk=100)  # the chunked prediction
    assert np.linalg.norm(cube - ref) / np.linalg.norm(ref) < 1e-10
    np.testing.assert_allclose(f.explained_variance, lr.explained_variance, rtol=1e-10)
    np.testing.assert_allclose(f.predict(slice(5, 9)), ref.reshape(-1, shape[-1])[5:9],
                               rtol=1e-8, atol=1e-10)
    # the same from the CSR counts, and through the public pca_denoise
    csr = sp.csr_matrix(toy.counts.reshape(-1, shape[-1]))
    f2 = pca_factors(csr, 3, n_factors=20, random_state=0, image_shape=shape[:2])
    np.testing.assert_allclose(f2.cube(), cube, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pca_denoise(toy.counts, 3), cube, rtol=1e-12, atol=1e-12)


def test_compare_to_truth_matches_then_scores():
    rng = np.random.default_rng(2)
    S = rng.dirichlet(np.ones(30), size=3)
    A = rng.dirichlet(np.ones(3), size=(8, 8))
    perm = np.array([1, 2, 0])
    res = compare_to_truth(S[perm], A[..., perm], S, A)
    np.testing.assert_array_equal(res["order"], np.argsort(perm))
    np.testing.assert_allclose(res["angle"], 0, atol=1e-6)
    np.testing.assert_allclose(res["mse"], 0)


def test_oracles_dense_and_sparse_agree():
    rng = np.random.default_rng(3)
    S = rng.dirichlet(np.ones(40), size=2)
    A = rng.dirichlet(np.ones(2), size=(15, 20))
    X = rng.poisson(300 * A @ S)
    dense = oracle_spectra(X, A)
    sparse = oracle_spectra(sp.csr_matrix(X.reshape(-1, 40)), A.reshape(-1, 2))
    np.testing.assert_array_equal(dense.S, sparse.S)
    np.testing.assert_array_equal(oracle_maps(X, S).A, oracle_maps(sp.csr_matrix(
        X.reshape(-1, 40)), S).A)
    assert np.all(spectral_angle(dense.S, S) < 3)


def test_oracle_limits_small():
    from psnmf.simulate import mantle

    ds = mantle("medium", seed=0, shape=(48, 48))
    o = oracle_limits(ds)
    assert o.angle.shape == (3,) and o.mse.shape == (3,) and o.maps.shape == ds.maps.shape
    assert np.all(o.angle < 6) and np.all(o.mse < 0.05)
    np.testing.assert_array_equal(o.spectra, oracle_spectra(ds.counts, ds.maps).S)
    # a stricter stopping rule changes the iterations, not the implementation
    strict = oracle_limits(ds, max_iter=3000, tol=1e-10)
    np.testing.assert_allclose(strict.angle, o.angle, rtol=0.05)
