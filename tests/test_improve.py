"""Tests of psnmf.improve: vertex correction, PSNMFPlus, oracle limits, automatic k."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from psnmf import PSNMF
from psnmf.improve import PSNMFPlus, oracle_limits, score, vertex_correction
from psnmf.simulate import mantle, sample_dataset


def _wide_simplex(tail: bool = False):
    rng = np.random.default_rng(0)
    S_w = rng.dirichlet(np.ones(40), size=3)
    T = np.array([[0.85, 0.1, 0.05], [0.05, 0.9, 0.05], [0.1, 0.05, 0.85]])
    S_true = T @ S_w
    A_true = rng.dirichlet(np.ones(3), size=600)
    A_true[:100] = [1, 0, 0]
    A_true[100:200] = [0, 1, 0]
    if tail:  # component 2 never pure: a continuous tail up to 60 %
        A_true[:, 0] += 0.7 * A_true[:, 2]
        A_true[:, 2] *= 0.3
        A_true[200:220] = np.c_[1 - np.linspace(0, 0.6, 20), np.zeros(20),
                                np.linspace(0, 0.6, 20)]
    else:
        A_true[200:300] = [0, 0, 1]
    return A_true @ T, S_w, S_true, T


def test_vertex_correction_recovers_pure_pixel_simplex():
    A_w, S_w, S_true, _ = _wide_simplex()
    S, T, moved = vertex_correction(A_w, S_w)
    assert moved.all()
    np.testing.assert_allclose(S, S_true, atol=1e-12)
    np.testing.assert_allclose(T.sum(1), 1)


def test_vertex_correction_keeps_a_never_pure_vertex():
    A_w, S_w, _, _ = _wide_simplex(tail=True)
    _, T, moved = vertex_correction(A_w, S_w)
    assert moved[:2].all() and not moved[2]
    np.testing.assert_array_equal(T[2], [0, 0, 1])


def test_psnmfplus_fixes_the_wide_simplex_on_lamellae():
    ds = sample_dataset("eutectic", snr="medium", seed=0, shape=(96, 96))
    plain = score(*_fit(PSNMF, ds), ds)["angle"]
    plus_model = PSNMFPlus(3, 4, random_state=0).fit(ds.counts)
    plus = score(plus_model.spectra_, plus_model.maps_, ds)
    assert plain.max() > 20  # theta-Al2Cu slides to a Cu-only vertex
    assert plus["angle"].max() < 5
    assert plus_model.maps_.shape == (96, 96, 3)
    np.testing.assert_allclose(plus_model.maps_.sum(-1), 1, atol=1e-6)
    np.testing.assert_allclose(plus_model.spectra_.sum(1), 1)


def _fit(est, ds):
    m = est(3, 4, random_state=0).fit(ds.counts)
    return m.spectra_, m.maps_


def test_psnmfplus_without_vertex_is_psnmf():
    ds = mantle("medium", seed=0, shape=(48, 48))
    a = PSNMF(3, 4, random_state=0).fit(ds.counts)
    b = PSNMFPlus(3, 4, random_state=0, vertex=False).fit(ds.counts)
    np.testing.assert_allclose(a.spectra_, b.spectra_)
    np.testing.assert_allclose(a.maps_, b.maps_, atol=1e-10)


def test_oracle_limits_small():
    ds = mantle("medium", seed=0, shape=(48, 48))
    o = oracle_limits(ds)
    assert o.angle.shape == (3,) and o.mse.shape == (3,)
    assert np.all(o.angle < 6) and np.all(o.mse < 0.05)


@pytest.mark.parametrize("sample", ["mantle", "eutectic"])
def test_automatic_k_and_b_on_simulated_data(sample):
    """Held-out deviance (workflow.sweep) finds the 3 phases at medium SNR."""
    from psnmf.workflow import sweep

    ds = sample_dataset(sample, snr="medium", seed=0, shape=(72, 72))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sweep(ds.to_signal(), bins=(2, 4, 8), progress=False)
    assert res.best["n_components"] == 3
    assert res.best["bin_factor"] in (4, 8)
