"""scikit-learn conventions: clone, pickling and scikit-learn's own estimator checks."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from conftest import make_toy
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from psnmf import PSNMF

#: scikit-learn checks that cannot apply to PSNMF, each with the reason.
EXPECTED_FAILED_CHECKS = {
    "check_positive_only_tag_during_fit": "negative counts are refused with psnmf's own "
    "message, which names the fix (undo background subtraction), not sklearn's wording",
    "check_complex_data": "complex input is refused as a TypeError (not counts), not the "
    "ValueError sklearn expects",
    "check_dtype_object": "object arrays are refused: counts must have a numeric dtype",
    "check_estimators_empty_data_messages": "empty input is refused with psnmf's own "
    "message (it needs pixels and channels), not sklearn's wording",
    "check_transformer_n_iter": "n_iter_ is a dict with one count per stage "
    "({'binned': ..., 'full': ...}), not a single int",
    "check_fit2d_predict1d": "transform takes a 1-D array as one spectrum (one pixel) on "
    "purpose, so it does not raise",
}


def _check_instance() -> PSNMF:
    """A PSNMF the generic checks can fit: their (samples, features) matrices have no
    image layout, which ``bin_factor=1`` without smoothing does not use."""
    return PSNMF(n_components=1, bin_factor=1, smoothing=None, max_iter=50, max_iter_full=20,
                 random_state=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the checks pass non-integer "counts"
@parametrize_with_checks([_check_instance()],
                         expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def toy():
    return make_toy(32, 32, 60, counts=40.0, seed=0)


def _model(**params) -> PSNMF:
    return PSNMF(3, 4, random_state=0, max_iter=200, max_iter_full=100, **params)


def test_clone_keeps_every_parameter_and_no_fitted_state(toy):
    model = _model(spectra="nmf", smoothing=0.1, vertex_sd=2.0).fit(toy.counts)
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert not hasattr(twin, "spectra_")
    np.testing.assert_array_equal(twin.fit(toy.counts).maps_, model.maps_)


def _same_fit(a, b):
    for name in ("spectra_", "maps_", "scale_", "binned_maps_", "nmf_spectra_",
                 "vertex_transform_", "vertex_moved_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.smoothing_ == b.smoothing_ and a.n_iter_ == b.n_iter_


def test_pickle_round_trip_of_a_fitted_model(toy):
    model = _model().fit(toy.counts)
    again = pickle.loads(pickle.dumps(model))
    _same_fit(again, model)
    np.testing.assert_array_equal(again.reconstruct(), model.reconstruct())
    np.testing.assert_array_equal(again.transform(toy.counts), model.transform(toy.counts))


def test_pickle_round_trip_of_a_model_fitted_on_a_signal(toy):
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal1D(toy.counts.astype(np.uint16))
    s.axes_manager[0].scale, s.axes_manager[0].units = 2.5, "nm"
    s.axes_manager.signal_axes[0].offset = 0.2
    model = _model(smoothing=None).fit(s)
    blob = pickle.dumps(model)
    assert len(blob) < s.data.nbytes  # the model keeps a template, not the data
    again = pickle.loads(blob)
    _same_fit(again, model)
    rec = again.reconstruct()
    assert rec.axes_manager[0].scale == 2.5 and rec.axes_manager[0].units == "nm"
    assert rec.axes_manager.signal_axes[0].offset == pytest.approx(0.2)
    np.testing.assert_array_equal(rec.data, model.reconstruct().data)
    assert again.get_maps().axes_manager.signal_shape == (32, 32)


def test_joblib_round_trip_of_a_model_fitted_on_a_signal(toy, tmp_path):
    hs = pytest.importorskip("hyperspy.api")
    joblib = pytest.importorskip("joblib")
    model = _model(smoothing=None).fit(hs.signals.Signal1D(toy.counts.astype(np.uint16)))
    joblib.dump(model, tmp_path / "model.joblib")
    again = joblib.load(tmp_path / "model.joblib")
    _same_fit(again, model)
    np.testing.assert_array_equal(again.reconstruct().data, model.reconstruct().data)


@pytest.mark.parametrize("value", [True, False, "yes", -0.1, float("nan")])
def test_smoothing_that_is_not_a_weight_is_refused(toy, value):
    with pytest.raises(ValueError, match=r"smoothing must be .*'auto', got"):
        _model(smoothing=value).fit(toy.counts)


def test_a_random_state_instance_is_accepted_as_in_scikit_learn(toy):
    fits = [PSNMF(3, 4, random_state=np.random.RandomState(7), smoothing=None, max_iter=200,
                  max_iter_full=100).fit(toy.counts) for _ in range(2)]
    np.testing.assert_array_equal(fits[0].spectra_, fits[1].spectra_)  # same seed, same fit
    assert fits[0].spectra_.shape == (3, toy.counts.shape[-1])
