"""Spatially regularised maps (psnmf.engine.tv_maps) and PSNMF(smoothing=...)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_toy

from psnmf import PSNMF
from psnmf.engine.poisson_nmf import solve_abundances
from psnmf.engine.tv_maps import _extrapolate, smooth_maps, smoothing_objective
from psnmf.metrics import map_mse
from psnmf.selection import choose_smoothing


@pytest.fixture(scope="module")
def low():
    """The three-phase toy at 12 counts per pixel: per-pixel maps are very noisy."""
    t = make_toy(ny=48, nx=48, ne=200, counts=12.0, seed=3)
    X = sp.csr_matrix(t.counts.reshape(-1, t.counts.shape[-1]).astype(np.float64))
    per_pixel = solve_abundances(X, t.spectra, max_iter=2000, tol=1e-9).A
    return t, X, per_pixel


def _mse(maps, truth):
    return np.mean([map_mse(maps[..., i], truth[..., i]) for i in range(truth.shape[-1])])


def test_zero_weight_is_the_per_pixel_em(low):
    """lam = 0: one sweep is exactly one EM update of every pixel, and the fixed point is
    the per-pixel maximum-likelihood estimate."""
    t, X, per_pixel = low
    rng = np.random.default_rng(0)
    A0 = rng.dirichlet(np.ones(3), size=X.shape[0])
    one = smooth_maps(X, A0, t.spectra, (48, 48), 0.0, max_iter=1, inner=1).maps
    model = np.maximum(A0 @ t.spectra, 1e-300)
    ratio = X.multiply(1.0 / model).tocsr()
    em = A0 * (ratio @ t.spectra.T) / np.asarray(X.sum(axis=1))
    np.testing.assert_allclose(one, em, rtol=1e-10, atol=1e-14)
    r = smooth_maps(X, A0, t.spectra, (48, 48), 0.0, tol=1e-10, max_iter=3000)
    obj = smoothing_objective(X, r.maps, t.spectra, (48, 48), 0.0)
    best = smoothing_objective(X, per_pixel, t.spectra, (48, 48), 0.0)
    assert abs(obj - best) <= 1e-6 * abs(best)
    assert np.abs(r.maps - per_pixel).max() < 0.02


@pytest.mark.parametrize("penalty", ["tv", "laplacian"])
def test_objective_decreases_and_maps_stay_on_the_simplex(low, penalty):
    t, X, per_pixel = low
    lam = 0.3 * 12
    r = smooth_maps(X, per_pixel, t.spectra, (48, 48), lam, penalty=penalty, check_every=1,
                    max_iter=60, tol=0)
    obj = r.objective
    assert obj.size > 10
    assert np.all(np.diff(obj) <= 1e-9 * np.abs(obj[1:]))
    assert obj[-1] < smoothing_objective(X, per_pixel, t.spectra, (48, 48), lam,
                                         penalty=penalty)
    assert r.maps.min() >= 0
    np.testing.assert_allclose(r.maps.sum(axis=1), 1.0, atol=1e-10)


@pytest.mark.parametrize("relative", [0.3, 3.0])
def test_accelerated_sweeps_reach_the_same_minimum(low, relative):
    """SQUAREM takes over unless the plain sweeps are about to stop, and then needs fewer
    sweeps for an objective at least as low (this toy: 121 -> 103 sweeps at 0.3 x counts
    per pixel, 521 -> 193 at 3); the objective never rises, the maps stay on the simplex,
    and masked pixels keep their start maps."""
    t, X, per_pixel = low
    lam = relative * 12
    mask = np.zeros((48, 48), dtype=bool)
    mask[:5, :5] = True
    runs = {acc: smooth_maps(X, per_pixel, t.spectra, (48, 48), lam, accelerate=acc,
                             pixel_mask=mask) for acc in (False, True)}
    plain, fast = runs[False], runs[True]
    f = {acc: smoothing_objective(X, r.maps, t.spectra, (48, 48), lam, pixel_mask=mask)
         for acc, r in runs.items()}
    assert fast.converged and plain.converged
    assert f[True] <= f[False] + 1e-9 * abs(f[False])
    assert np.all(np.diff(fast.objective) <= 1e-9 * np.abs(fast.objective[1:]))
    assert fast.n_iter < (0.9 if relative < 1 else 0.7) * plain.n_iter, (fast.n_iter,
                                                                         plain.n_iter)
    assert np.abs(fast.maps - plain.maps).mean() < 0.01
    assert fast.maps.min() >= 0
    np.testing.assert_allclose(fast.maps.sum(axis=1), 1.0, atol=1e-10)
    np.testing.assert_array_equal(fast.maps[mask.ravel()], per_pixel[mask.ravel()])


@pytest.mark.parametrize("max_iter", [23, 24, 25, 37, 38])
def test_accelerated_sweeps_cut_short_stay_monotone(low, max_iter):
    """Cut off by ``max_iter`` at any point of a SQUAREM cycle (tol = 0, a large weight, so
    some extrapolations fail and wait on probation), the returned maps are at or below
    every recorded objective, which never rises, and at most two sweeps run past
    ``max_iter`` (a probation being decided)."""
    t, X, per_pixel = low
    lam = 3.0 * 12
    r = smooth_maps(X, per_pixel, t.spectra, (48, 48), lam, tol=0, max_iter=max_iter)
    f = smoothing_objective(X, r.maps, t.spectra, (48, 48), lam)
    assert np.all(np.diff(r.objective) <= 1e-12 * np.abs(r.objective[1:]))
    assert f <= r.objective[-1] * (1 - 1e-15)
    assert max_iter <= r.n_iter <= max_iter + 2 and not r.converged


@pytest.mark.parametrize("penalty", ["tv", "laplacian"])
def test_objective_from_the_sweeps_is_the_objective(low, penalty):
    """The objectives the solver records come from its sweeps' own model values (no pass of
    their own): the first is the start's objective as :func:`smoothing_objective` computes
    it, masked pixels with counts included, and the returned maps are at or below the
    last."""
    t, X, per_pixel = low
    mask = np.zeros((48, 48), dtype=bool)
    mask[10:14, 20:30] = True  # these pixels have counts: a constant of the objective
    lam = 0.3 * 12
    r = smooth_maps(X, per_pixel, t.spectra, (48, 48), lam, penalty=penalty,
                    pixel_mask=mask)
    f0 = smoothing_objective(X, per_pixel, t.spectra, (48, 48), lam, penalty=penalty,
                             pixel_mask=mask)
    np.testing.assert_allclose(r.objective[0], f0, rtol=1e-12)
    f = smoothing_objective(X, r.maps, t.spectra, (48, 48), lam, penalty=penalty,
                            pixel_mask=mask)
    assert f <= r.objective[-1] + 1e-12 * abs(f)


def test_extrapolation_matches_its_formula_and_respects_the_cap():
    """A slowly converging path (each step 0.8 of the last): the free step is about -5."""
    rng = np.random.default_rng(5)
    A0, B = (rng.dirichlet(np.ones(3), size=(6, 7)) for _ in range(2))
    A1 = A0 + 0.05 * (B - A0)
    A2 = A1 + 0.04 * (B - A0)
    active = np.ones((6, 7), dtype=bool)
    active[0, :3] = False
    for cap in (np.inf, 2.0):
        out = np.empty_like(A0)
        step = _extrapolate(A0, A1, A2, active, out, cap)
        r, v = (A1 - A0)[active], (A2 - 2 * A1 + A0)[active]
        free = min(-np.linalg.norm(r) / np.linalg.norm(v), -1.0)
        assert step == pytest.approx(max(free, -cap), rel=1e-12)
        want = np.maximum(A0 - 2 * step * (A1 - A0) + step**2 * (A2 - 2 * A1 + A0), 1e-12)
        want /= want.sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(out[active], want[active], rtol=1e-12)
        np.testing.assert_array_equal(out[~active], A0[~active])
    assert free < -2.0  # the cap did hold this step back


def test_smoothing_beats_the_per_pixel_oracle(low):
    """With the true spectra, the per-pixel maps are the per-pixel oracle; the TV maps at
    the weight chosen from the counts alone are several times closer to the true maps."""
    t, X, per_pixel = low
    choice = choose_smoothing(X, t.spectra, (48, 48), random_state=0)
    assert choice.lam > 0
    assert np.argmin(choice.deviance) == choice.grid.index(choice.lam)
    r = smooth_maps(X, per_pixel, t.spectra, (48, 48), choice.lam)
    before = _mse(per_pixel.reshape(t.maps.shape), t.maps)
    after = _mse(r.maps.reshape(t.maps.shape), t.maps)
    assert after < 0.4 * before, (before, after)


def test_no_spatial_structure_means_no_smoothing():
    """Abundances drawn independently per pixel: held-out deviance must not ask for a
    spatial prior (the smallest weights win)."""
    rng = np.random.default_rng(1)
    t = make_toy(ny=40, nx=40, ne=200, counts=60.0, seed=1)
    maps = rng.dirichlet(np.full(3, 0.5), size=40 * 40)
    X = sp.csr_matrix(rng.poisson(60.0 * maps @ t.spectra).astype(np.float64))
    choice = choose_smoothing(X, t.spectra, (40, 40), random_state=0)
    assert choice.relative <= 0.01, choice


def test_choice_uses_a_central_window_of_large_images(low):
    t, X, _ = low
    small = choose_smoothing(X, t.spectra, (48, 48), random_state=0, max_pixels=24 * 24)
    assert small.lam > 0 and len(small.deviance) >= 2


def test_psnmf_smoothing_auto_improves_maps_and_keeps_invariants(low):
    t, X, _ = low
    plain = PSNMF(3, 4, random_state=0, spectra="nmf", smoothing=None).fit(t.counts)
    smooth = PSNMF(3, 4, random_state=0, spectra="nmf", smoothing="auto").fit(t.counts)
    np.testing.assert_array_equal(smooth.spectra_, plain.spectra_)
    np.testing.assert_array_equal(smooth.unsmoothed_maps_, plain.maps_)
    assert smooth.smoothing_["relative"] > 0 and len(smooth.smoothing_["deviance"]) >= 2
    np.testing.assert_allclose(smooth.maps_.sum(-1), 1.0, atol=1e-10)
    cube = smooth.reconstruct()
    np.testing.assert_allclose(cube.sum(-1), t.counts.sum(-1), rtol=1e-9)
    from psnmf.metrics import compare_to_truth

    assert compare_to_truth(smooth.spectra_, smooth.maps_, t.spectra, t.maps)["mse"].mean() < (
        0.5 * compare_to_truth(plain.spectra_, plain.maps_, t.spectra, t.maps)["mse"].mean())
    fixed = PSNMF(3, 4, random_state=0, spectra="nmf",
                  smoothing=smooth.smoothing_["relative"]).fit(t.counts)
    np.testing.assert_allclose(fixed.maps_, smooth.maps_, atol=1e-12)
    assert plain.smoothing_["lam"] == 0 and plain.unsmoothed_maps_ is None


@pytest.mark.parametrize("value", [-0.1, "often", float("nan"), [0.1]])
def test_bad_smoothing_is_refused(low, value):
    t, _, _ = low
    with pytest.raises(ValueError, match="smoothing"):
        PSNMF(3, 4, spectra="nmf", smoothing=value).fit(t.counts)


def test_bad_penalty_and_weight_are_refused(low):
    t, X, per_pixel = low
    with pytest.raises(ValueError, match="smoothing_penalty"):
        PSNMF(3, 4, spectra="nmf", smoothing=0.1, smoothing_penalty="l1").fit(t.counts)
    with pytest.raises(ValueError, match="penalty"):
        smooth_maps(X, per_pixel, t.spectra, (48, 48), 1.0, penalty="huber")
    with pytest.raises(ValueError, match="lam"):
        smooth_maps(X, per_pixel, t.spectra, (48, 48), -1.0)
    with pytest.raises(ValueError, match="48 x 48"):
        smooth_maps(X, per_pixel[:10], t.spectra, (48, 48), 1.0)


def test_lazy_input_gets_per_pixel_maps_or_a_clear_refusal(low):
    """TV maps need the whole image: 'auto' (the default) warns, a weight is refused."""
    da = pytest.importorskip("dask.array")
    t, _, _ = low
    lazy = da.from_array(t.counts, chunks=(16, 48, 200))
    with pytest.raises(ValueError, match="smoothing=None"):
        PSNMF(3, 4, smoothing=0.1).fit(lazy)
    with pytest.warns(UserWarning, match="per-pixel maps"):  # the default is 'auto'
        model = PSNMF(3, 4, random_state=0).fit(lazy)
    assert model.smoothing_["lam"] == 0.0 and model.unsmoothed_maps_ is None
