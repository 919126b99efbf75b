"""Pure-pixel spectra: psnmf.engine.pure_pixels and PSNMF(spectra='pure'); automatic k."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf import PSNMF
from psnmf.engine.binning import bin_counts
from psnmf.engine.poisson_nmf import solve_abundances
from psnmf.engine.pure_pixels import (
    abundance_noise,
    finer_vertex_correction,
    replay_vertex_correction,
    summed_abundance,
    vertex_correction,
)
from psnmf.engine.two_stage import binned_kwargs, finer_scales, fit_binned, refine_vertices
from psnmf.metrics import compare_to_truth, oracle_limits, spectral_angle
from psnmf.simulate import mantle, sample_dataset

PURE = {"spectra": "pure", "smoothing": None}  # pure-pixel spectra, per-pixel maps


def score(spectra, maps, ds):
    return compare_to_truth(spectra, maps, ds.spectra, ds.maps)


def fixed_fraction_vertices(A, S, frac=0.01, frac_small=0.005, frac_large=0.02,
                            max_drift=0.05):
    """A fixed fraction of the richest pixels per vertex, with a drift test: the simple
    alternative the pure clusters are measured against (``(S_new, moved)``)."""
    n, k = A.shape

    def mean_top(f):
        m = max(k + 1, int(round(f * n)))
        T = np.array([A[np.argsort(A[:, j])[-m:]].mean(axis=0) for j in range(k)])
        return T / T.sum(axis=1, keepdims=True)

    moved = (np.diag(mean_top(frac_small)) - np.diag(mean_top(frac_large))) <= max_drift
    T = np.where(moved[:, None], mean_top(frac), np.eye(k))
    return T @ S, moved


def _noisy_wide_simplex(tail: bool = False, seed: int = 0):
    """Counts of 1000 pixels (2000 counts each) and their ML abundances in a too-wide simplex.

    400 pure pixels of phase 0, 200 of phase 1, then either 100 pure pixels of phase 2 and
    300 random mixtures, or (``tail``) phase 2 never pure: 400 mixtures with phase 0 whose
    share of phase 2 runs continuously from 0 to 60 %.
    """
    rng = np.random.default_rng(seed)
    S_w = rng.dirichlet(np.full(60, 0.5), size=3)
    T = np.array([[0.85, 0.1, 0.05], [0.05, 0.9, 0.05], [0.1, 0.05, 0.85]])
    S_true = T @ S_w
    A_true = rng.dirichlet(np.ones(3), size=1000)
    A_true[:400] = [1, 0, 0]
    A_true[400:600] = [0, 1, 0]
    if tail:
        w = rng.uniform(0, 0.6, 400)
        A_true[600:] = np.c_[1 - w, np.zeros(400), w]
    else:
        A_true[600:700] = [0, 0, 1]
    X = rng.poisson(2000 * A_true @ S_true).astype(np.float64)
    A = solve_abundances(sp.csr_matrix(X), S_w, max_iter=2000, tol=1e-8).A
    return X, A, S_w, S_true, A_true


def _angles(S, S_true):
    return np.array([spectral_angle(s, t) for s, t in zip(S, S_true, strict=True)])


def test_abundance_noise_matches_the_scatter_of_pure_pixels():
    X, A, S_w, _, A_true = _noisy_wide_simplex()
    n = X.sum(axis=1)
    for j, rows in enumerate((slice(0, 400), slice(400, 600), slice(600, 700))):
        t = A[rows].mean(axis=0)
        model_sd = np.sqrt(abundance_noise(t, S_w)[j, j] / n[rows].mean())
        assert A[rows, j].std() == pytest.approx(model_sd, rel=0.15)
        np.testing.assert_allclose(abundance_noise(t, S_w).sum(axis=0), 0, atol=1e-9)


def test_vertex_correction_finds_the_pure_clusters():
    X, A, S_w, S_true, A_true = _noisy_wide_simplex()
    S, T, moved, clusters = vertex_correction(A, S_w, X.sum(axis=1))
    assert moved.all()
    np.testing.assert_allclose(T.sum(axis=1), 1)
    np.testing.assert_allclose(S, T @ S_w)
    for j, (c, n_pure) in enumerate(zip(clusters, (400, 200, 100), strict=True)):
        assert 0.8 * n_pure <= c.size <= n_pure  # most pure pixels, as good as no mixed one
        assert A_true[c.members, j].mean() > 0.998
        assert 0.7 < c.dispersion < 1.3 and c.tail < 0.5
    ang = _angles(S, S_true)
    assert ang.max() < 0.3  # the wide simplex is off by 4-8 degrees
    # a fixed 1 % of the pixels: noisier, and biased by the selection on the same counts
    old = _angles(fixed_fraction_vertices(A, S_w)[0], S_true)
    assert np.all(ang < old / 3)


def test_vertex_correction_keeps_a_never_pure_vertex():
    X, A, S_w, S_true, _ = _noisy_wide_simplex(tail=True)
    S, T, moved, clusters = vertex_correction(A, S_w, X.sum(axis=1))
    np.testing.assert_array_equal(moved, [True, True, False])
    np.testing.assert_array_equal(T[2], [0, 0, 1])
    assert clusters[2].dispersion > 1.5 and clusters[2].tail > 1  # a tail, not a cluster
    assert _angles(S, S_true)[:2].max() < 0.3
    # a fixed-fraction drift test lets this vertex slide into the tail
    _, moved_old = fixed_fraction_vertices(A, S_w)
    assert moved_old[2]


def test_vertex_correction_ignores_pixels_without_counts():
    X, A, S_w, _, _ = _noisy_wide_simplex()
    n = X.sum(axis=1)
    n[::7] = 0  # e.g. holes in the specimen: their abundances are meaningless
    _, _, moved, clusters = vertex_correction(A, S_w, n)
    assert moved.all()
    assert not any(c.members[::7].any() for c in clusters)


def test_summed_abundance_is_the_ml_mixture():
    rng = np.random.default_rng(3)
    S = rng.dirichlet(np.full(50, 0.5), size=3)
    t_true = np.array([0.6, 0.3, 0.1])
    t = summed_abundance(rng.poisson(2e6 * t_true @ S).astype(float), S)
    assert t.sum() == pytest.approx(1.0) and t.min() >= 0
    np.testing.assert_allclose(t, t_true, atol=3e-3)
    np.testing.assert_allclose(summed_abundance(np.zeros(50), S), 1 / 3)


def test_finer_vertex_correction_moves_a_cluster_inside_its_vertex():
    """Phase 2's pure pixels lie 15 % inside its vertex of the wide simplex: its cluster
    passes the tests and the depth test, and the vertex moves to the cluster's summed
    counts; the candidates not asked for stay where they are."""
    X, A, S_w, S_true, _ = _noisy_wide_simplex()
    T, moved, clusters = finer_vertex_correction(A, S_w, X, np.array([False, False, True]))
    np.testing.assert_array_equal(moved, [False, False, True])
    assert clusters[0] is None and clusters[2].size >= 80
    np.testing.assert_array_equal(T[:2], np.eye(3)[:2])
    assert _angles(T @ S_w, S_true)[2] < 0.3  # the wide vertex is off by 4-8 degrees


def test_finer_vertex_correction_keeps_a_vertex_at_its_cluster_and_a_tail():
    """A vertex already at its pure pixels (the cluster's centre within one member-pixel
    noise sd of it, cut off at the simplex boundary) is kept, as is a continuous tail."""
    X, A, S_w, S_true, _ = _noisy_wide_simplex()
    S_at = S_w.copy()
    S_at[2] = S_true[2]  # phase 2's vertex exact: its pure pixels sit at the vertex
    A_at = solve_abundances(sp.csr_matrix(X), S_at, max_iter=2000, tol=1e-8).A
    T, moved, clusters = finer_vertex_correction(A_at, S_at, X, np.array([False, False, True]))
    assert not moved.any() and clusters[2].size >= 80
    assert 1 - clusters[2].abundances[2] < clusters[2].noise_sd
    np.testing.assert_array_equal(T, np.eye(3))
    Xt, At, S_wt, _, _ = _noisy_wide_simplex(tail=True)
    _, moved_t, _ = finer_vertex_correction(At, S_wt, Xt, np.array([False, False, True]))
    assert not moved_t.any()


def test_finer_scales():
    assert finer_scales(4) == [2, 1] and finer_scales(8) == [4, 2, 1]
    assert finer_scales(3) == [1] and finer_scales(1) == []


@pytest.fixture(scope="module")
def eutectic_fit():
    ds = sample_dataset("eutectic", snr="medium", seed=0, shape=(96, 96))
    return ds, PSNMF(3, 4, random_state=0, **PURE).fit(ds.counts)


def test_pure_spectra_reach_the_oracle_on_lamellae(eutectic_fit):
    ds, m = eutectic_fit
    plus = score(m.spectra_, m.maps_, ds)
    plain = score(m.nmf_spectra_, m.maps_, ds)["angle"]  # PSNMF's stage 1 is the same
    oracle = oracle_limits(ds).angle
    assert plain.max() > 20  # theta-Al2Cu slides to a Cu-only vertex
    assert m.vertex_moved_.all()
    assert np.all(plus["angle"] <= 1.5 * oracle)  # measured 0.99, 1.04, 1.01
    assert m.maps_.shape == (96, 96, 3)
    np.testing.assert_allclose(m.maps_.sum(-1), 1, atol=1e-6)
    np.testing.assert_allclose(m.spectra_.sum(1), 1)
    np.testing.assert_allclose(m.spectra_, m.vertex_transform_ @ m.nmf_spectra_)


def test_replay_redoes_the_fitted_correction(eutectic_fit):
    ds, m = eutectic_fit
    X = bin_counts(ds.counts.reshape(-1, ds.counts.shape[-1]), ds.counts.shape[:2], 4)
    params = {**binned_kwargs(m.get_params()), "spectra": "nmf"}
    nmf = fit_binned(X, 3, random_state=0, **params)  # the same binned NMF
    S, A = nmf.spectra, nmf.maps
    np.testing.assert_array_equal(S, m.nmf_spectra_)
    n = np.asarray(X.sum(axis=1)).ravel()
    np.testing.assert_allclose(m.scale_.reshape(24, 4, 24, 4).sum(axis=(1, 3)).ravel(), n)
    replay = replay_vertex_correction(A, S, m.vertex_moved_, n, n_sd=m.vertex_sd)
    np.testing.assert_allclose(replay, m.spectra_, atol=1e-12)
    # averaging on other abundances than those that select (data fission)
    flat = replay_vertex_correction(A, S, m.vertex_moved_, n, average_on=np.full_like(A, 1 / 3))
    np.testing.assert_allclose(flat, np.tile(S.mean(axis=0), (3, 1)))
    np.testing.assert_array_equal(
        replay_vertex_correction(A, S, np.zeros(3, dtype=bool), n), S)


def test_pure_spectra_keep_the_vertices_of_particles_that_are_never_pure():
    """Catalyst: CeO2 and Pt particles always sit on the carbon film. Only the film has pure
    pixels; the particle vertices keep PSNMF's spectra at every scale (a fixed-fraction
    drift test moves CeO2)."""
    ds = sample_dataset("catalyst", snr="low", seed=0, shape=(96, 96))
    m = PSNMF(3, 4, random_state=0, vertex_scales="multi", **PURE).fit(ds.counts)
    plus = score(m.spectra_, m.maps_, ds)
    plain = score(m.nmf_spectra_, m.maps_, ds)["angle"]
    support = ds.phase_names.index("support")
    moved = m.vertex_moved_[plus["order"]]
    np.testing.assert_array_equal(moved, np.arange(3) == support)
    assert plus["angle"][support] < plain[support]
    np.testing.assert_allclose(plus["angle"][~moved], plain[~moved])
    np.testing.assert_array_equal(m.vertex_scale_[plus["order"]][~moved], 0)


def test_pure_spectra_start_from_the_paper_methods_binned_nmf():
    ds = mantle("medium", seed=0, shape=(48, 48))
    a = PSNMF(3, 4, random_state=0, spectra="nmf", smoothing=None).fit(ds.counts)
    c = PSNMF(3, 4, random_state=0, **PURE).fit(ds.counts)
    np.testing.assert_array_equal(c.nmf_spectra_, a.spectra_)
    np.testing.assert_allclose(c.spectra_, c.vertex_transform_ @ a.spectra_, atol=1e-15)
    assert len(c.vertex_clusters_) == 3 and c.vertex_moved_.any()
    np.testing.assert_array_equal(c.loss_["binned"], a.loss_["binned"])
    with pytest.raises(ValueError, match="spectra='purest'"):
        PSNMF(3, 4, spectra="purest").fit(ds.counts)


def test_oracle_limits_small():
    ds = mantle("medium", seed=0, shape=(48, 48))
    o = oracle_limits(ds)
    assert o.angle.shape == (3,) and o.mse.shape == (3,)
    assert np.all(o.angle < 6) and np.all(o.mse < 0.05)


@pytest.mark.parametrize("sample", ["mantle", "eutectic"])
def test_automatic_k_and_b_on_simulated_data(sample):
    """Held-out deviance (psnmf.pipeline.sweep, default candidates) finds the 3 phases at
    medium SNR and b = 4 or 8 (the b with the best spectra at this size and count level,
    benchmarks/choose_b.py)."""
    from psnmf.pipeline import sweep

    ds = sample_dataset(sample, snr="medium", seed=0, shape=(72, 72))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sweep(ds.to_signal(), progress=False)
    best = res.selection.best.candidate
    assert best.n_components == 3
    assert best.bin_factor in (4, 8)


def test_multiscale_moves_a_carbide_vertex_with_pure_pixels_only_below_b():
    """ODS steel (mixed_phase, medium, 96 x 96, seed 0): the M23C6 carbides have too few
    pure 4 x 4 binned pixels for the binned stage, which keeps their NMF vertex (1.58x the
    oracle angle); at b = 2 their pure cluster moves it to 1.04x. The Y2Ti2O7 clusters,
    never more than half of a pixel, are not moved at any scale, and the ferrite keeps
    its binned-stage spectrum."""
    ds = sample_dataset("mixed_phase", snr="medium", seed=0, shape=(96, 96))
    base = PSNMF(3, 4, random_state=0, vertex_scales="binned", **PURE).fit(ds.counts)
    multi = PSNMF(3, 4, random_state=0, **PURE).fit(ds.counts)  # 'multi', the default
    oracle = oracle_limits(ds).angle
    before, after = score(base.spectra_, base.maps_, ds), score(multi.spectra_, multi.maps_, ds)
    names = list(ds.phase_names)
    carbide, oxide, ferrite = (names.index(n) for n in ("M23C6", "Y2Ti2O7", "ferrite"))
    scale = multi.vertex_scale_[after["order"]]
    assert scale[carbide] == 2 and scale[oxide] == 0 and scale[ferrite] == 4
    np.testing.assert_array_equal(multi.vertex_moved_, base.vertex_moved_)
    assert before["angle"][carbide] > 1.4 * oracle[carbide]
    assert after["angle"][carbide] < 1.15 * oracle[carbide]
    for j in (oxide, ferrite):
        assert after["angle"][j] == pytest.approx(before["angle"][j], rel=1e-9)
    np.testing.assert_allclose(multi.spectra_, multi.vertex_transform_ @ multi.nmf_spectra_,
                               atol=1e-12)
    np.testing.assert_allclose(multi.maps_.sum(-1), 1, atol=1e-6)
    assert after["mse"][carbide] < before["mse"][carbide]


def test_multiscale_keeps_a_fit_whose_vertices_all_moved_in_the_binned_stage(eutectic_fit):
    ds, multi = eutectic_fit  # 'multi', the default
    m = PSNMF(3, 4, random_state=0, vertex_scales="binned", **PURE).fit(ds.counts)
    assert m.vertex_moved_.all()
    np.testing.assert_array_equal(multi.spectra_, m.spectra_)
    np.testing.assert_array_equal(multi.maps_, m.maps_)
    np.testing.assert_array_equal(multi.vertex_scale_, [4, 4, 4])


def test_refine_vertices_leaves_nmf_fits_and_keeps_binned_moves():
    ds = mantle("medium", seed=0, shape=(48, 48))
    X = sp.csr_matrix(ds.counts.reshape(-1, ds.counts.shape[-1]).astype(float))
    nmf = fit_binned(bin_counts(X, (48, 48), 4), 3, spectra="nmf", random_state=0)
    assert refine_vertices(X, (48, 48), 4, nmf) is nmf
    with pytest.raises(ValueError, match="vertex_scales='all'"):
        PSNMF(3, 4, vertex_scales="all").fit(ds.counts)


def test_abundance_noise_ignores_channels_without_expected_counts():
    """A channel where the model is next to zero (a phase absent, the others ~1e-300 there)
    adds no information and must not overflow the information matrix."""
    from psnmf.engine.pure_pixels import abundance_noise

    S = np.array([[0.5, 0.5 - 1e-300, 1e-300], [0.2, 0.8, 1e-300], [1e-300, 0.5, 0.5]])
    t = np.array([0.5, 0.5, 0.0])
    C = abundance_noise(t, S)
    assert np.all(np.isfinite(C))
    np.testing.assert_allclose(C, abundance_noise(t, S[:, :2]), rtol=1e-9, atol=1e-12)


def test_a_vertexs_reach_holds_its_image_wide_cluster():
    """The bootstrap replays a finer-scale move on the pixels within reach of the cluster
    (psnmf.engine.scale_replay): on the ODS steel's carbide at b = 2, the rule run on its
    reach alone finds the same cluster and the same moved vertex as on the whole image."""
    from psnmf.engine.scale_replay import scale_reaches

    ds = sample_dataset("mixed_phase", snr="medium", seed=0, shape=(96, 96))
    m = PSNMF(3, 4, random_state=0, vertex_scales="multi", **PURE).fit(ds.counts)
    j = int(np.flatnonzero(m.vertex_scale_ == 2)[0])
    X = sp.csr_matrix(ds.counts.reshape(-1, ds.counts.shape[-1]).astype(float))
    reach = scale_reaches(X, (96, 96), 4, m.spectra_, m.binned_maps_,
                          m.vertex_scale_ == 2)[0]
    assert reach.scale == 2 and j in reach.rows
    assert reach.rows[j].size < 0.1 * (48 * 48)  # a small part of the image
    X2 = bin_counts(X, (96, 96), 2)
    basis = np.where((m.vertex_scale_ > 2)[:, None], m.spectra_, m.nmf_spectra_)
    A = solve_abundances(X2, basis, max_iter=500, tol=1e-7).A
    todo = np.arange(3) == j
    T, moved, clusters = finer_vertex_correction(A, basis, X2, todo)
    rows = reach.pixels[reach.rows[j]]
    Tr, moved_r, clusters_r = finer_vertex_correction(
        A[rows], basis, X2[rows], todo, start_frac=reach.start_frac)
    assert moved[j] and moved_r[j]
    np.testing.assert_array_equal(rows[clusters_r[j].members],
                                  np.flatnonzero(clusters[j].members))
    np.testing.assert_allclose(Tr[j], T[j], atol=1e-12)
    np.testing.assert_allclose(T[j] @ basis, m.spectra_[j], atol=1e-6)
    # the fitted model there: the cluster's members are pure carbide
    members = np.searchsorted(reach.pixels, np.flatnonzero(clusters[j].members))
    w = reach.weights[members]
    np.testing.assert_allclose(w[:, j], w.sum(axis=1))
