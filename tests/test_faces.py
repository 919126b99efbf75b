"""Never-pure vertices at the corner of their faces: psnmf.engine.pure_pixels.face_* and
the full-resolution face step of refine_vertices (vertex_scales='multi')."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf import PSNMF
from psnmf.engine.binning import bin_counts
from psnmf.engine.poisson_nmf import solve_abundances
from psnmf.engine.pure_pixels import (
    abundance_noise,
    face_cluster,
    face_vertex_correction,
    pixel_noise,
)
from psnmf.engine.two_stage import binned_kwargs, fit_binned, refine_vertices
from psnmf.metrics import compare_to_truth, oracle_limits, spectral_angle
from psnmf.simulate import sample_dataset
from psnmf.uncertainty import bootstrap


def _layer_between_two(neighbours: int, seed: int = 0):
    """Phase 2 never pure (at most 0.8 of a pixel), fitted in a simplex whose vertices 0
    and 1 are the pure phases and whose vertex 2 lies beyond phase 2, on the edge from
    phase 0 (``S_true[2] = 0.4 S_true[0] + 0.6 S_fit[2]``). 300 pure pixels of phases 0 and 1
    each, and 400 mixtures of phase 2 (share 0-0.8): half with phase 0 and half with phase
    1 (``neighbours=2``, a layer between two phases), or all with phase 0 (``neighbours=1``,
    a phase always mixed with the same partner). 400 counts per pixel."""
    rng = np.random.default_rng(seed)
    S_fit = rng.dirichlet(np.full(60, 0.5), size=3)
    S_true = S_fit.copy()
    S_true[2] = 0.4 * S_fit[0] + 0.6 * S_fit[2]
    A_true = np.zeros((1000, 3))
    A_true[:300, 0] = 1
    A_true[300:600, 1] = 1
    w = rng.uniform(0, 0.8, 400)
    partner = np.where(np.arange(400) < 200, 0, 1) if neighbours == 2 else np.zeros(400, int)
    A_true[600 + np.arange(400), partner] = 1 - w
    A_true[600:, 2] = w
    X = sp.csr_matrix(rng.poisson(400 * A_true @ S_true).astype(np.float64))
    A = solve_abundances(X, S_fit, max_iter=2000, tol=1e-8).A
    return X, A, S_fit, S_true


def test_pixel_noise_is_abundance_noise_at_each_pixel():
    rng = np.random.default_rng(1)
    S = rng.dirichlet(np.ones(50), size=3)
    A = rng.dirichlet(np.ones(3), size=7)
    C = pixel_noise(A, S, chunk=3)
    for p in range(7):
        np.testing.assert_allclose(C[p], abundance_noise(A[p], S), atol=1e-10)


def test_face_of_a_layer_between_two_phases_is_its_edge_ratio():
    """The face free of phase 0 holds the mixtures of phase 2 with phase 1: its ratio is the
    share of phase 0 in phase 2's spectrum over that of the fitted vertex (0.4 / 0.6),
    within 4 standard errors."""
    X, A, S_fit, _ = _layer_between_two(2)
    f = face_cluster(A, S_fit, X, 2, 0)
    assert f.size >= 50
    assert abs(f.ratio - 0.4 / 0.6) < 4 * f.se
    assert f.below == 0


def test_face_correction_moves_a_layer_between_two_phases_to_its_corner():
    """The vertex moves to within a tenth of its NMF error of phase 2's spectrum."""
    X, A, S_fit, S_true = _layer_between_two(2)
    T, moved, faces = face_vertex_correction(A, S_fit, X, np.array([False, False, True]),
                                             np.array([True, True, False]))
    assert moved.tolist() == [False, False, True]
    np.testing.assert_array_equal(T[:2], np.eye(3)[:2])
    before = spectral_angle(S_fit[2], S_true[2])
    after = spectral_angle((T @ S_fit)[2], S_true[2])
    assert after < 0.1 * before


def test_face_correction_keeps_a_phase_always_mixed_with_one_partner():
    """Mixed with phase 0 only, the lowest share of phase 0 (0.2 at 0.8 of phase 2) is a
    property of the microstructure: no mixture with another pure phase lies on that face,
    and the vertex is kept."""
    X, A, S_fit, _ = _layer_between_two(1)
    T, moved, _ = face_vertex_correction(A, S_fit, X, np.array([False, False, True]),
                                         np.array([True, True, False]))
    assert not moved.any()
    np.testing.assert_array_equal(T, np.eye(3))


@pytest.fixture(scope="module")
def gate_stack():
    """Gate stack, 'medium', 96 x 96, seed 0: the 3 px SiO2 layer (at most 0.88 of a pixel)
    has no pure cluster at any scale."""
    ds = sample_dataset("thin_layer", snr="medium", seed=0, shape=(96, 96))
    m = PSNMF(4, 4, smoothing=None, random_state=0).fit(ds.counts)
    return ds, m, compare_to_truth(m.spectra_, m.maps_, ds.spectra, ds.maps)


def test_thin_layer_reaches_its_faces(gate_stack):
    """The SiO2 vertex moves to the corner of its faces at full resolution: within 3x of
    the oracle angle (measured 2.25x; 25.9x when kept at NMF's vertex, 43.6 degrees); the
    pure phases stay within 1.1x."""
    ds, m, sc = gate_stack
    oracle = oracle_limits(ds).angle
    si = list(ds.phase_names).index("SiO2")
    j = int(sc["order"][si])
    assert m.vertex_scale_[j] == 1
    assert sc["angle"][si] < 3.0 * oracle[si]
    others = np.arange(4) != si
    assert np.all(sc["angle"][others] < 1.1 * oracle[others])


def test_bootstrap_replays_the_face_move(gate_stack):
    """The replicates move the SiO2 vertex to its faces as the fit did: their mean lies
    far closer to the fitted vertex than to NMF's, and so does the debiased spectrum."""
    ds, m, sc = gate_stack
    j = int(sc["order"][list(ds.phase_names).index("SiO2")])
    res = bootstrap(m, ds.counts, n_boot=3, random_state=0)
    centre = res.replicates[:, j].mean(axis=0)
    assert spectral_angle(centre, m.spectra_[j]) < spectral_angle(
        centre, m.nmf_spectra_[j]) / 5
    assert spectral_angle(res.debiased[j], m.spectra_[j]) < spectral_angle(
        res.debiased[j], m.nmf_spectra_[j]) / 5


def test_lines_keep_the_face_step(gate_stack):
    """With the elements given (never_pure='lines'; 'auto' alike) the SiO2 vertex keeps the
    corner of its faces, which the data fix (the layer's lines would bound it only by its
    O, as it shares Si with the substrate: 25-29x the oracle angle extrapolated): the fit
    is the default one."""
    ds, m, sc = gate_stack
    j = int(sc["order"][list(ds.phase_names).index("SiO2")])
    lines = PSNMF(4, 4, smoothing=None, random_state=0, never_pure="lines",
                  elements=list(ds.elements), edx_model=ds.model).fit(ds.counts)
    assert lines.vertex_scale_[j] == 1 and not lines.vertex_steps_.any()
    np.testing.assert_array_equal(lines.spectra_, m.spectra_)


def _with_and_without_faces(name: str, seed: int = 0):
    ds = sample_dataset(name, snr="medium", seed=seed, shape=(96, 96))
    X = sp.csr_matrix(ds.counts.reshape(-1, ds.counts.shape[-1]).astype(np.float64))
    k = ds.maps.shape[-1]
    params = PSNMF(k, 4, smoothing=None, random_state=0).get_params()
    fit = fit_binned(bin_counts(X, (96, 96), 4), k, random_state=0, **binned_kwargs(params))
    return ds, refine_vertices(X, (96, 96), 4, fit), refine_vertices(X, (96, 96), 4, fit,
                                                                     faces=False)


@pytest.mark.parametrize("name", ["mixed_phase", "catalyst", "nanoparticles"])
def test_faces_keep_vertices_the_faces_do_not_fix(name):
    """'medium', 96 x 96, seed 0: Y2Ti2O7 nanoclusters always in ferrite (ODS steel), Pt
    and CeO2 particles always on the support film (catalyst), Au particles whose faces lie
    within the noise of the current ones (nanoparticles). No vertex moves, and the fit is
    the one without the face step."""
    _, with_faces, without = _with_and_without_faces(name)
    assert with_faces.faces is not None and not with_faces.face_moved.any()
    np.testing.assert_array_equal(with_faces.spectra, without.spectra)
    np.testing.assert_array_equal(with_faces.scales, without.scales)
    assert with_faces.before_faces is None
