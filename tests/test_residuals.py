"""Residual maps (psnmf.residuals): calibrated under a right model, a planted phase found."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf import PSNMF
from psnmf import residuals as R
from psnmf.simulate import mantle, sample_dataset, simulate


def _fit(ds, k=3, smoothing="auto"):
    ny, nx, ne = ds.counts.shape
    X = sp.csr_matrix(ds.counts.reshape(-1, ne).astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PSNMF(n_components=k, bin_factor=4, smoothing=smoothing, random_state=0,
                      image_shape=(ny, nx), max_iter=1000, max_iter_full=200).fit(X)
    energy = ds.energy_axis.offset + ds.energy_axis.scale * np.arange(ne)
    return R.residuals(X, model.maps_.reshape(-1, k), model.spectra_, (ny, nx), energy)


def _with_inclusion(base, composition, centre=(20, 40), radius=4, seed=0):
    """``base`` with a disk of a fourth phase of ``composition`` planted in it."""
    phases = {**base.compositions, "inclusion": composition}
    maps = np.concatenate([base.maps, np.zeros(base.maps.shape[:2] + (1,))], axis=2)
    yy, xx = np.mgrid[: maps.shape[0], : maps.shape[1]]
    disk = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2
    maps[disk] = 0.0
    maps[disk, 3] = 1.0
    with warnings.catch_warnings():  # the inclusion's density is estimated: no matter here
        warnings.simplefilter("ignore", UserWarning)
        ds = simulate(phases, maps, base.counts_per_pixel, seed=seed, model=base.model,
                      thickness=base.thickness)
    return ds, disk


@pytest.mark.parametrize("m", [0.003, 0.2, 2.0, 30.0])
def test_deviance_moments_match_simulation(m):
    log_m, mean, var = R.deviance_moments()
    e = np.interp(np.log(m), log_m, mean)
    v = np.interp(np.log(m), log_m, var)
    y = np.random.default_rng(0).poisson(m, 400_000).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = 2 * (np.where(y > 0, y * np.log(y / m), 0.0) - y + m)
    assert e == pytest.approx(d.mean(), rel=0.03)
    assert v == pytest.approx(d.var(), rel=0.05)


def test_window_matrix_sums_every_channel_once():
    W = R.window_matrix(2000)
    assert W.shape == (2000, 250)
    np.testing.assert_array_equal(np.asarray(W.sum(axis=1)).ravel(), 1.0)
    assert R.window_matrix(100).shape == (100, 100)  # fewer channels than windows


def test_planted_phase_is_found_and_named():
    base = mantle("medium", seed=0, shape=(64, 64))
    ds, disk = _with_inclusion(base, {"Cu": 50.0, "S": 50.0})
    res = _fit(ds)
    assert res.structured
    y0, y1, x0, x1 = res.region
    assert disk[y0:y1, x0:x1].any()  # the worst region is on the inclusion
    assert np.nanmedian(res.z[disk]) > 3.0
    assert abs(np.nanmedian(res.z[~disk])) < 0.5
    excess = {line.split("_")[0] for p in res.peaks if p.sigma > 0 for line in p.lines[:2]}
    assert {"Cu", "S"} <= excess
    assert "structure" in res.message and "keV" in res.message


def test_trace_element_in_a_grain_is_found():
    base = mantle("medium", seed=1, shape=(64, 64))
    matrix = base.compositions[base.phase_names[0]]
    ds, disk = _with_inclusion(base, {"Cu": 5.0, **{e: 0.95 * v for e, v in matrix.items()}},
                               seed=1)
    res = _fit(ds)
    assert res.structured
    y0, y1, x0, x1 = res.region
    assert disk[y0:y1, x0:x1].any()
    assert any("Cu_Ka" in p.lines for p in res.peaks if p.sigma > 0)


@pytest.mark.parametrize("sample,preset", [("mantle", "medium"), ("mantle", "low"),
                                           ("eutectic", "medium"), ("small_grains", "low")])
def test_right_model_shows_no_structure(sample, preset):
    ds = sample_dataset(sample, preset, seed=3, shape=(64, 64))
    res = _fit(ds, k=len(ds.phase_names))
    assert not res.structured, res.message
    assert res.region_score < res.threshold
    assert abs(np.nanmedian(res.z)) < 0.5


def test_pixels_without_prediction_are_nan_and_ignored():
    rng = np.random.default_rng(0)
    S = np.repeat(np.array([[0.6, 0.4, 0.0, 0.0], [0.0, 0.1, 0.5, 0.4]]), 32, axis=1) / 32
    A = rng.dirichlet([1, 1], size=24 * 24)
    X = sp.csr_matrix(rng.poisson(150 * A @ S).astype(float))
    A[:10] = np.nan
    res = R.residuals(X, A, S, (24, 24), np.linspace(0.2, 10, 128))
    assert np.isnan(res.z.ravel()[:10]).all() and np.isfinite(res.z.ravel()[10:]).all()
    assert not res.structured
