"""The PSNMF estimator: recovery vs ground truth, invariants, HyperSpy integration."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_toy

from psnmf import PSNMF, compare_to_truth, standard_nmf

PAPER = {"spectra": "nmf", "smoothing": None}  # the paper's method


@pytest.fixture(scope="module")
def low_snr():
    """96 x 96 pixels, 300 channels, 15 counts per pixel: standard NMF fails here."""
    return make_toy(96, 96, 300, counts=15.0, seed=1)


@pytest.fixture(scope="module")
def fitted(low_snr):
    return PSNMF(n_components=3, bin_factor=8, random_state=0, **PAPER).fit(low_snr.counts)


def test_psnmf_recovers_truth_and_beats_standard_nmf(low_snr, fitted):
    r = compare_to_truth(fitted.spectra_, fitted.maps_, low_snr.spectra, low_snr.maps)
    # stated tolerance: every phase within 5 degrees, maps within MSE 0.1
    assert np.all(r["angle"] < 5.0), r["angle"]
    assert np.all(r["mse"] < 0.1), r["mse"]
    nmf = standard_nmf(low_snr.counts, 3, random_state=0)
    rn = compare_to_truth(nmf.spectra, nmf.maps, low_snr.spectra, low_snr.maps)
    assert np.all(r["angle"] < rn["angle"]), (r["angle"], rn["angle"])
    assert r["mse"].mean() < rn["mse"].mean()


def test_denoised_cube_is_closer_to_truth_than_raw(low_snr, fitted):
    from psnmf.metrics import relative_error

    rec = fitted.reconstruct()
    assert rec.shape == low_snr.counts.shape
    assert relative_error(rec, low_snr.noise_free) < 0.1 * relative_error(
        low_snr.counts, low_snr.noise_free
    )
    # the fused cube keeps each pixel's counts
    np.testing.assert_allclose(rec.sum(-1), low_snr.counts.sum(-1), rtol=1e-9)
    lazy = fitted.reconstruct(lazy=True)
    assert lazy.dtype == np.float32 and lazy.shape == rec.shape
    np.testing.assert_allclose(lazy.compute(), rec, rtol=1e-5, atol=1e-6)


def test_invariants(low_snr, fitted):
    k = 3
    assert fitted.spectra_.shape == (k, 300) and fitted.maps_.shape == (96, 96, k)
    assert np.all(fitted.spectra_ >= 0) and np.all(fitted.maps_ >= 0)
    np.testing.assert_allclose(fitted.spectra_.sum(1), 1, atol=1e-12)
    np.testing.assert_allclose(fitted.maps_.sum(-1), 1, atol=1e-12)
    np.testing.assert_array_equal(fitted.scale_, low_snr.counts.sum(-1))
    assert fitted.binned_maps_.shape == (12, 12, k)
    assert set(fitted.loss_) == {"binned", "full"}
    for loss in fitted.loss_.values():
        assert np.all(np.isfinite(loss)) and loss[-1] <= loss[0]
    assert fitted.components_ is fitted.spectra_


def test_deterministic_with_seed(low_snr, fitted):
    again = PSNMF(n_components=3, bin_factor=8, random_state=0, **PAPER).fit(low_snr.counts)
    np.testing.assert_array_equal(again.spectra_, fitted.spectra_)
    np.testing.assert_array_equal(again.maps_, fitted.maps_)


def test_bin_factor_not_dividing_image_keeps_every_pixel():
    toy = make_toy(50, 46, 120, counts=40.0, seed=2)
    m = PSNMF(3, bin_factor=8, random_state=0, **PAPER).fit(toy.counts)
    assert m.binned_maps_.shape[:2] == (7, 6)
    assert m.maps_.shape == (50, 46, 3)
    np.testing.assert_allclose(m.maps_.sum(-1), 1, atol=1e-12)
    r = compare_to_truth(m.spectra_, m.maps_, toy.spectra, toy.maps)
    assert np.all(r["mse"] < 0.1)


def test_free_second_stage_keeps_stage1_spectra_for_fusion(low_snr):
    m = PSNMF(3, bin_factor=8, stage2_spectra="free", random_state=0, max_iter_full=50,
              **PAPER)
    m.fit(low_snr.counts)
    assert not np.array_equal(m.full_spectra_, m.spectra_)
    np.testing.assert_allclose(m.reconstruct(), m.scale_[..., None] * (m.maps_ @ m.spectra_))


def test_matrix_input_needs_image_shape(low_snr):
    flat = low_snr.counts.reshape(-1, 300)
    with pytest.raises(ValueError, match="image_shape"):
        PSNMF(3, 8, **PAPER).fit(flat)
    m = PSNMF(3, 8, random_state=0, image_shape=(96, 96), **PAPER).fit(flat)
    assert m.maps_.shape == (96, 96, 3)


@pytest.mark.parametrize(
    ("params", "cube", "exc", "match"),
    [
        ({"bin_factor": 0}, None, ValueError, "bin_factor"),
        ({"bin_factor": 200}, None, ValueError, "larger than the image"),
        ({"n_components": 0}, None, ValueError, "n_components"),
        ({"n_components": 40, "bin_factor": 16}, None, ValueError, "n_components"),
        ({"stage2_spectra": "both"}, None, ValueError, "stage2_spectra"),
        ({}, np.ones((10, 10)), ValueError, "image_shape"),
        ({}, np.ones((2, 3, 4, 5)), ValueError, "spectrum image"),
        ({}, -np.ones((12, 12, 5)), ValueError, "negative"),
        ({}, np.full((12, 12, 5), np.nan), ValueError, "NaN"),
    ],
)
def test_bad_arguments_raise_clear_errors(params, cube, exc, match):
    data = np.ones((24, 24, 20)) if cube is None else cube
    with pytest.raises(exc, match=match):
        PSNMF(**{"n_components": 3, "bin_factor": 4, **PAPER, **params}).fit(data)


# -- HyperSpy ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def eds_signal(low_snr):
    import exspy  # noqa: F401  (registers the EDS signal types)
    import hyperspy.api as hs

    s = hs.signals.Signal1D(low_snr.counts.astype(np.uint16))
    s.set_signal_type("EDS_TEM")
    s.axes_manager[0].name, s.axes_manager[0].scale, s.axes_manager[0].units = "x", 2.5, "nm"
    s.axes_manager[1].name, s.axes_manager[1].scale, s.axes_manager[1].units = "y", 2.5, "nm"
    e = s.axes_manager.signal_axes[0]
    e.name, e.units, e.scale, e.offset = "Energy", "keV", 0.01, 0.2
    s.set_microscope_parameters(beam_energy=200)
    s.add_elements(["Fe", "Mg", "O"])
    s.metadata.General.title = "toy"
    return s


def test_signal_in_signals_out(eds_signal, fitted):
    m = PSNMF(n_components=3, bin_factor=8, random_state=0, **PAPER).fit(eds_signal)
    np.testing.assert_array_equal(m.spectra_, fitted.spectra_)
    rec = m.reconstruct()
    assert type(rec) is type(eds_signal)
    assert rec.data.shape == eds_signal.data.shape
    assert rec.axes_manager[0].scale == 2.5 and rec.axes_manager[0].units == "nm"
    assert rec.axes_manager.signal_axes[0].offset == pytest.approx(0.2)
    assert rec.metadata.Sample.elements == ["Fe", "Mg", "O"]
    assert rec.metadata.Acquisition_instrument.TEM.beam_energy == 200
    spectra = m.get_spectra()
    assert type(spectra) is type(eds_signal)
    assert spectra.axes_manager.navigation_shape == (3,)
    assert spectra.axes_manager.signal_axes[0].scale == pytest.approx(0.01)
    assert spectra.metadata.Sample.elements == ["Fe", "Mg", "O"]
    lazy = m.reconstruct(lazy=True)
    assert lazy._lazy and type(lazy).__name__ == "Lazy" + type(eds_signal).__name__
    np.testing.assert_allclose(lazy.data.compute(), rec.data, rtol=1e-5)
    assert lazy.axes_manager[0].scale == 2.5
    maps = m.get_maps()
    assert maps.axes_manager.navigation_shape == (3,)
    assert maps.axes_manager.signal_shape == (96, 96)
    assert maps.axes_manager.signal_axes[0].units == "nm"
    np.testing.assert_allclose(maps.data.sum(0), 1, atol=1e-12)


def test_works_as_hyperspy_decomposition_algorithm(eds_signal, fitted):
    s = eds_signal.deepcopy()
    s.change_dtype("float64")
    est = PSNMF(n_components=3, bin_factor=8, random_state=0,
                image_shape=s.axes_manager.navigation_shape[::-1], **PAPER)
    # PSNMF needs the raw counts of every pixel: switch off exspy's EDS defaults
    # (low-count pixel mask, Poisson normalisation)
    s.decomposition(algorithm=est, output_dimension=3, navigation_mask=None,
                    normalize_poissonian_noise=False, print_info=False)
    factors = s.get_decomposition_factors()
    loadings = s.get_decomposition_loadings()
    assert factors.axes_manager.navigation_shape == (3,)
    np.testing.assert_allclose(factors.data, fitted.spectra_)
    np.testing.assert_allclose(loadings.data.sum(0), eds_signal.data.sum(-1), rtol=1e-9)
    model = s.get_decomposition_model()
    np.testing.assert_allclose(model.data, fitted.reconstruct(), rtol=1e-9, atol=1e-12)


# -- options ----------------------------------------------------------------------------
def test_defaults_are_pure_pixel_spectra_and_tv_maps():
    params = PSNMF().get_params()
    assert params["spectra"] == "pure" and params["smoothing"] == "auto"
    assert params["smoothing_penalty"] == "tv"


def test_paper_method_has_identity_pure_pixel_attributes(fitted):
    k = 3
    assert fitted.nmf_spectra_ is fitted.spectra_
    np.testing.assert_array_equal(fitted.vertex_moved_, np.zeros(k, dtype=bool))
    np.testing.assert_array_equal(fitted.vertex_transform_, np.eye(k))
    assert fitted.vertex_clusters_ is None and fitted.template_ is None
    assert fitted.smoothing_ == {"lam": 0.0, "relative": 0.0, "penalty": None}
    assert fitted.unsmoothed_maps_ is None


def test_pure_spectra_share_the_binned_nmf_of_the_paper_method(low_snr, fitted):
    m = PSNMF(3, bin_factor=8, random_state=0, spectra="pure", smoothing=None).fit(
        low_snr.counts)
    np.testing.assert_array_equal(m.nmf_spectra_, fitted.spectra_)
    np.testing.assert_allclose(m.spectra_, m.vertex_transform_ @ m.nmf_spectra_, atol=1e-15)
    assert len(m.vertex_clusters_) == 3
    np.testing.assert_array_equal(
        m.vertex_moved_, [not np.array_equal(t, e) for t, e in zip(m.vertex_transform_,
                                                                   np.eye(3), strict=True)])


def test_matrix_without_image_shape_is_a_column_when_the_layout_is_unused(low_snr):
    flat = low_snr.counts.reshape(-1, 300)[:400]
    m = PSNMF(3, 1, random_state=0, max_iter=50, max_iter_full=20, **PAPER).fit(flat)
    assert m.maps_.shape == (400, 1, 3) and m.image_shape_ == (400, 1)
    with pytest.raises(ValueError, match="image_shape"):  # TV maps need the layout
        PSNMF(3, 1, spectra="nmf", smoothing=0.1).fit(flat)


@pytest.mark.parametrize(
    ("params", "exc", "match"),
    [
        ({"spectra": "vertex"}, ValueError, "spectra='vertex' is not one of .*'nmf'"),
        ({"vertex_sd": 0}, ValueError, "vertex_sd must be > 0"),
        ({"vertex_sd": "wide"}, TypeError, "vertex_sd must be a finite number"),
        ({"min_cluster": 0}, ValueError, "min_cluster must be an integer >= 1"),
        ({"max_tail": float("inf")}, TypeError, "max_tail must be a finite number"),
        ({"tol": -1e-3}, ValueError, "tol must be >= 0"),
        ({"n_components": True}, TypeError, "n_components must be an integer"),
        ({"smoothing_penalty": "l1"}, ValueError, "smoothing_penalty='l1'.*total variation"),
        ({"image_shape": (4, 4, 4)}, ValueError, "image_shape must be a pair"),
    ],
)
def test_bad_options_name_the_fix(params, exc, match):
    with pytest.raises(exc, match=match):
        PSNMF(**{"n_components": 3, "bin_factor": 4, **params}).fit(np.ones((24, 24, 20)))


def test_resume_binned_gives_the_fit_from_the_start(low_snr):
    """A model search's candidate (a lower iteration cap, the paper's spectra) continued by
    ``fit(resume_binned=...)`` gives the final configuration's fit exactly."""
    cand = PSNMF(3, 4, spectra="nmf", smoothing=None, max_iter=60, max_iter_full=20,
                 random_state=0).fit(low_snr.counts)
    final = {"random_state": 0, "smoothing": 0.1}
    fresh = PSNMF(3, 4, **final).fit(low_snr.counts)
    resumed = PSNMF(3, 4, **final).fit(low_snr.counts, resume_binned=cand.binned_nmf_)
    assert cand.n_iter_["binned"] == 60 < fresh.n_iter_["binned"]
    for name in ("spectra_", "nmf_spectra_", "maps_", "scale_"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(fresh, name))
    assert resumed.n_iter_ == fresh.n_iter_
    with pytest.raises(ValueError, match="resume_binned"):
        PSNMF("auto", 4).fit(low_snr.counts, resume_binned=cand.binned_nmf_)
