"""A vertex that the data do not use, re-seeded from the pixels the fit explains worst
(psnmf.engine.two_stage.refine_vertices with reseed=True, off by default), and the
majority rule of the finer-scale pure clusters (psnmf.engine.pure_pixels.cluster_passes
with min_own) that goes with it."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from psnmf.engine.binning import bin_counts
from psnmf.engine.poisson_nmf import NMFResult, solve_abundances
from psnmf.engine.pure_pixels import MIN_OWN, PureCluster, cluster_passes, pure_cluster
from psnmf.engine.two_stage import (
    MAX_UNUSED,
    BinnedFit,
    binned_deviance,
    fit_binned,
    refine_vertices,
    unused_vertices,
)
from psnmf.metrics import spectral_angle

SHAPE = (32, 32)


def _stack(seed: int = 0):
    """Three phases of 40 channels on a 32 x 32 image: phase 0 on the left, phase 1 on the
    right, phase 2 a layer 4 pixels wide between them; 300 counts per pixel. The last 10
    channels get no counts."""
    rng = np.random.default_rng(seed)
    S_true = np.zeros((3, 40))
    S_true[:, :30] = rng.dirichlet(np.full(30, 0.3), size=3)
    maps = np.zeros((*SHAPE, 3))
    maps[:, :14, 0] = 1
    maps[:, 14:18, 2] = 1
    maps[:, 18:, 1] = 1
    X = sp.csr_matrix(rng.poisson(300 * maps.reshape(-1, 3) @ S_true).astype(np.float64))
    return X, S_true, maps


def _stuck_fit(X: sp.csr_matrix, S_true: np.ndarray):
    """A binned stage (b = 4) stopped with its third vertex on the channels without
    counts, a direction no pixel takes, and the layer explained by the other two
    vertices; its pure-pixel correction moved nothing, so every vertex is left to the
    finer scales."""
    binned = bin_counts(X, SHAPE, 4)
    S0 = S_true.copy()
    S0[2] = 0.0
    S0[2, 30:] = 0.1
    A0 = solve_abundances(binned, S0, max_iter=500, tol=1e-8).A
    n = np.asarray(binned.sum(axis=1), dtype=np.float64).ravel()
    nmf = NMFResult(A=A0, S=S0, scale=n, loss=np.zeros(1), n_iter=0, converged=True)
    clusters = [pure_cluster(A0, S0, n, j) for j in range(3)]
    fit = BinnedFit(nmf=nmf, spectra=S0, maps=A0, transform=np.eye(3),
                    moved=np.zeros(3, dtype=bool), clusters=clusters)
    return binned, fit


def test_whole_image_cluster_of_a_vertex_fails_the_majority_rule():
    """A cluster that passes every other test but holds 3 % of its vertex is a mixture: it
    fails with ``min_own`` (the re-seed's rule) and passes without it (the default)."""
    ab = np.array([0.4, 0.5, 0.07, 0.03])
    c = PureCluster(members=np.ones(100, dtype=bool), abundances=ab, size=16384,
                    dispersion=0.75, tail=0.0, noise_sd=0.08, n_iter=3)
    assert not cluster_passes(c, 3, 20, 1.5, 1.0, 1.0, MIN_OWN)
    assert not cluster_passes(c, 1, 20, 1.5, 1.0, 1.0, MIN_OWN)  # 0.5 is no majority
    assert cluster_passes(c, 3, 20, 1.5, 1.0, 1.0)
    own = np.array([0.025, 0.925, 0.025, 0.025])
    c_own = PureCluster(members=c.members, abundances=own, size=100, dispersion=1.0,
                        tail=0.2, noise_sd=0.01, n_iter=3)
    assert cluster_passes(c_own, 1, 20, 1.5, 1.0, 1.0, MIN_OWN)


def test_unused_vertex_is_reseeded_to_the_layer():
    """The stray vertex is unused (its clusters hold at most a quarter of it); re-seeded,
    the binned deviance falls and the vertex ends within 2 degrees of the layer's
    spectrum (the stray start is 90 degrees away); the other two stay within 1 degree."""
    X, S_true, _ = _stack()
    binned, fit = _stuck_fit(X, S_true)
    out = refine_vertices(X, SHAPE, 4, fit, reseed=True)
    assert out.reseeded is not None and out.reseeded.tolist() == [False, False, True]
    plain = out.before_reseed
    assert plain is not None
    assert unused_vertices(plain).tolist() == [False, False, True]
    assert spectral_angle(plain.spectra[2], S_true[2]) > 30
    assert (binned_deviance(binned, out.nmf.A, out.nmf.S).sum()
            < binned_deviance(binned, fit.nmf.A, fit.nmf.S).sum())
    angles = [spectral_angle(out.spectra[j], S_true[j]) for j in range(3)]
    assert angles[2] < 2.0, angles
    assert max(angles[:2]) < 1.0, angles
    assert not unused_vertices(out).any()


def test_no_reseed_where_every_vertex_is_used():
    """A fit whose vertices are all phases is returned as without the re-seed."""
    X, S_true, _ = _stack(1)
    binned = bin_counts(X, SHAPE, 4)
    fit = fit_binned(binned, 3, random_state=0)
    out = refine_vertices(X, SHAPE, 4, fit, reseed=True)
    assert out.reseeded is None
    assert MAX_UNUSED < MIN_OWN


def test_reseed_is_off_by_default():
    X, S_true, _ = _stack()
    _, fit = _stuck_fit(X, S_true)
    out = refine_vertices(X, SHAPE, 4, fit)
    assert out.reseeded is None
    np.testing.assert_array_equal(out.spectra, refine_vertices(X, SHAPE, 4, fit,
                                                               reseed=False).spectra)


def test_binned_deviance_matches_the_dense_formula():
    rng = np.random.default_rng(3)
    S = rng.dirichlet(np.ones(12), size=2)
    A = rng.dirichlet(np.ones(2), size=9)
    X = rng.poisson(50 * A @ S).astype(np.float64)
    n = X.sum(axis=1)
    mu = n[:, None] * (A @ S)
    with np.errstate(divide="ignore", invalid="ignore"):
        dense = 2 * np.where(X > 0, X * np.log(X / mu), 0.0).sum(axis=1) - 2 * (n - mu.sum(1))
    np.testing.assert_allclose(binned_deviance(sp.csr_matrix(X), A, S), dense, rtol=1e-10)
