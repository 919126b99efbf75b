"""Tests of psnmf.hyperspy: counts checked once at the door, result signals from a template.

The result signals built from a :class:`SignalTemplate` are compared with those built by the
reference functions below, which make them from the input signal itself (class, axes and
metadata copied from the signal; the construction psnmf used before it kept a template).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf import _validation
from psnmf import hyperspy as phs
from psnmf import io as pio
from psnmf.io import counts as pio_counts

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


# ---------------------------------------------------------------------------------------
# Reference: result signals made from the input signal itself
# ---------------------------------------------------------------------------------------
def _copy_axis(dst, src) -> None:
    for attr in ("name", "units", "scale", "offset"):
        value = getattr(src, attr, None)
        if value is not None:
            setattr(dst, attr, value)


def ref_spectra_signal(spectra, signal, title="PSNMF spectra"):
    out = signal.__class__(np.asarray(spectra))
    out.metadata.add_dictionary(signal.metadata.as_dictionary())
    out.metadata.General.title = title
    _copy_axis(out.axes_manager.signal_axes[0], signal.axes_manager.signal_axes[0])
    nav = out.axes_manager.navigation_axes[0]
    nav.name, nav.units = "Component", ""
    return out


def ref_maps_signal(maps, signal, title="PSNMF maps"):
    import hyperspy.api as hs

    out = hs.signals.Signal2D(np.moveaxis(np.asarray(maps), -1, 0))
    out.metadata.General.title = title
    for dst, src in zip(out.axes_manager.signal_axes, signal.axes_manager.navigation_axes,
                        strict=True):
        _copy_axis(dst, src)
    nav = out.axes_manager.navigation_axes[0]
    nav.name, nav.units = "Component", ""
    return out


def ref_cube_signal(cube, signal, title=None):
    out = signal._deepcopy_with_new_data(cube)
    if title is not None:
        out.metadata.General.title = title
    return out


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def _eds(data, *, nonuniform=False):
    from exspy.signals import EDSTEMSpectrum

    data = np.asarray(data)
    axes = [
        {"name": n, "size": s, "scale": 1.5, "offset": 2.0, "units": "nm", "navigate": True}
        for n, s in zip(("y", "x"), data.shape[:2], strict=True)
    ]
    axes.append({"name": "Energy", "size": data.shape[-1], "scale": 0.02, "offset": 0.3,
                 "units": "keV", "navigate": False})
    s = EDSTEMSpectrum(data, axes=axes, metadata={"General": {"title": "scan"}},
                       original_metadata={"Instrument": {"name": "X-1", "gain": 2.5}})
    s.set_elements(["Fe", "O"])
    s.set_microscope_parameters(beam_energy=200.0)
    if nonuniform:
        axis = s.axes_manager.signal_axes[0]
        axis.convert_to_non_uniform_axis()
        axis.axis = 0.3 + 0.02 * np.arange(data.shape[-1]) ** 1.1
    return s


def _axes(signal):
    am = signal.axes_manager
    return [a.get_axis_dictionary() for a in (*am.navigation_axes[::-1], *am.signal_axes[::-1])]


def _assert_same_dict(a, b, where=""):
    assert type(a) is type(b) or (np.isscalar(a) and np.isscalar(b)), where
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), f"{where}: {sorted(a)} != {sorted(b)}"
        for key in a:
            _assert_same_dict(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_signal(got, want):
    """Same class, data, axes (all attributes), metadata and original metadata."""
    assert type(got) is type(want)
    np.testing.assert_array_equal(np.asarray(got.data), np.asarray(want.data))
    for i, (a, b) in enumerate(zip(_axes(got), _axes(want), strict=True)):
        _assert_same_dict(a, b, f"axis {i}")
    _assert_same_dict(got.metadata.as_dictionary(), want.metadata.as_dictionary(), "metadata")
    _assert_same_dict(got.original_metadata.as_dictionary(),
                      want.original_metadata.as_dictionary(), "original_metadata")


@pytest.fixture(scope="module")
def signal():
    rng = np.random.default_rng(0)
    return _eds(rng.poisson(2.0, (6, 5, 40)).astype(np.uint16))


def _signals():
    """The synthetic signal and, where the shared data are present, the real files."""
    rng = np.random.default_rng(0)
    out = [_eds(rng.poisson(2.0, (6, 5, 40)).astype(np.uint16))]
    if REAL.is_dir():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(pio.load_spectrum_image(REAL / "test_TEM.bcf"))
            out.append(pio.load_spectrum_image(REAL / "bcf_v2_50x50px.bcf"))
    return out


@pytest.fixture(scope="module", params=range(3), ids=["synthetic", "tem_bcf", "sem_bcf"])
def any_signal(request):
    signals = _signals()
    if request.param >= len(signals):
        pytest.skip(f"real test data folder {REAL} is absent")
    return signals[request.param]


def _results(signal, k=3):
    rng = np.random.default_rng(1)
    ny, nx, ne = signal.data.shape
    return rng.random((k, ne)), rng.random((ny, nx, k)), rng.random((ny, nx, ne))


# ---------------------------------------------------------------------------------------
# The template
# ---------------------------------------------------------------------------------------
def test_outputs_from_the_template_equal_those_from_the_signal(any_signal):
    spectra, maps, cube = _results(any_signal)
    template = phs.signal_template(any_signal)
    assert_same_signal(phs.spectra_signal(spectra, template),
                       ref_spectra_signal(spectra, any_signal))
    assert_same_signal(phs.maps_signal(maps, template, title="maps"),
                       ref_maps_signal(maps, any_signal, title="maps"))
    assert_same_signal(phs.cube_signal(cube, template, title="PSNMF denoised"),
                       ref_cube_signal(cube, any_signal, title="PSNMF denoised"))
    assert_same_signal(phs.cube_signal(cube, template), ref_cube_signal(cube, any_signal))


def test_the_template_pickles_and_gives_the_same_outputs(any_signal):
    spectra, maps, cube = _results(any_signal)
    template = phs.signal_template(any_signal)
    blob = pickle.dumps(template)
    assert len(blob) < max(200_000, any_signal.data.nbytes // 10)  # no data in it
    back = pickle.loads(blob)
    assert back.signal_class is template.signal_class
    assert back.data_shape == any_signal.data.shape
    for make, result in ((phs.spectra_signal, spectra), (phs.maps_signal, maps),
                         (phs.cube_signal, cube)):
        assert_same_signal(make(result, back), make(result, template))


def test_a_dask_cube_gives_the_lazy_class(signal):
    import dask.array as da

    _, _, cube = _results(signal)
    template = phs.signal_template(signal)
    lazy_cube = da.from_array(cube, chunks=(3, -1, -1))
    out = phs.cube_signal(lazy_cube, template, title="PSNMF denoised")
    assert out._lazy and type(out).__name__ == "LazyEDSTEMSpectrum"
    assert hasattr(out.data, "dask")
    want = ref_cube_signal(lazy_cube, signal.as_lazy(), title="PSNMF denoised")
    assert type(out) is type(want)
    _assert_same_dict(out.metadata.as_dictionary(), want.metadata.as_dictionary(), "md")
    for a, b in zip(_axes(out), _axes(want), strict=True):
        _assert_same_dict(a, b)
    np.testing.assert_array_equal(out.data.compute(), cube)
    # the other way round: a lazy input's template and an in-memory cube
    eager = phs.cube_signal(cube, phs.signal_template(signal.as_lazy()))
    assert type(eager) is type(signal)


def test_template_works_where_a_signal_was_used(signal):
    """``template.as_lazy()`` works as on a signal, and a signal is taken as a template."""
    import dask.array as da

    template = phs.signal_template(signal)
    assert template.lazy is False
    lazy_t = template.as_lazy()
    assert lazy_t.lazy and lazy_t.signal_class is type(signal.as_lazy())
    _, _, cube = _results(signal)
    out = phs.cube_signal(da.from_array(cube), lazy_t)
    assert type(out) is type(signal.as_lazy())
    # a signal is still accepted where a template is expected
    assert_same_signal(phs.cube_signal(cube, signal), phs.cube_signal(cube, template))


def test_non_uniform_energy_axis_is_kept():
    s = _eds(np.ones((3, 4, 25), dtype=np.uint16), nonuniform=True)
    spectra, maps, cube = _results(s)
    template = pickle.loads(pickle.dumps(phs.signal_template(s)))
    energy = s.axes_manager.signal_axes[0].axis
    for out in (phs.spectra_signal(spectra, template), phs.cube_signal(cube, template)):
        axis = out.axes_manager.signal_axes[0]
        assert not axis.is_uniform
        np.testing.assert_array_equal(axis.axis, energy)
        assert axis.units == "keV"


def test_signals_in_the_metadata_are_not_kept(signal):
    s = signal.deepcopy()
    s.metadata.set_item("Signal.Noise_properties.variance", s.deepcopy())
    template = phs.signal_template(s)
    assert "_sig_variance" not in template.metadata["Signal"]["Noise_properties"]
    assert len(pickle.dumps(template)) < 20 * 1024


def test_wrong_shapes_and_types_are_refused(signal):
    template = phs.signal_template(signal)
    with pytest.raises(ValueError, match="shape"):
        phs.cube_signal(np.zeros((2, 2, 2)), template)
    with pytest.raises(ValueError, match="shape"):
        phs.maps_signal(np.zeros((2, 2, 3)), template)
    with pytest.raises(ValueError, match="shape"):
        phs.spectra_signal(np.zeros((3, 7)), template)
    with pytest.raises(TypeError, match="SignalTemplate"):
        phs.spectra_signal(np.zeros((3, 40)), {"axes": []})


def test_a_fitted_model_pickles_without_the_data(signal):
    from psnmf import PSNMF

    rng = np.random.default_rng(2)
    s = _eds(rng.poisson(3.0, (16, 12, 40)).astype(np.uint16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PSNMF(2, bin_factor=2, max_iter=20, max_iter_full=5, random_state=0).fit(s)
    blob = pickle.dumps(model)
    back = pickle.loads(blob)
    assert_same_signal(back.get_spectra(), model.get_spectra())
    assert_same_signal(back.get_maps(), model.get_maps())
    assert_same_signal(back.reconstruct(), model.reconstruct())
    assert_same_signal(back.reconstruct(), ref_cube_signal(model.reconstruct().data, s,
                                                           title="PSNMF denoised"))


# ---------------------------------------------------------------------------------------
# Counts in: checked once
# ---------------------------------------------------------------------------------------
@pytest.fixture
def value_checks(monkeypatch):
    """Count the passes of the value checks (in-memory rule and block rule)."""
    calls = {"values": 0, "blocks": 0}
    check_values, check_block = _validation._check_values, pio_counts.check_block

    def counted_values(*args, **kwargs):
        calls["values"] += 1
        return check_values(*args, **kwargs)

    def counted_block(*args, **kwargs):
        calls["blocks"] += 1
        return check_block(*args, **kwargs)

    monkeypatch.setattr(_validation, "_check_values", counted_values)
    monkeypatch.setattr(pio_counts, "check_block", counted_block)
    return calls


def _internal_form(counts, shape):
    assert isinstance(counts, sp.csr_matrix) and counts.shape == shape
    assert counts.dtype == np.float64 and counts.has_canonical_format
    assert counts.indices.dtype == np.int32 and counts.indptr.dtype == np.int64
    assert np.all(counts.data != 0)


@pytest.mark.parametrize("kind", ["signal", "cube", "matrix", "sparse", "lazy signal", "dask"])
def test_counts_are_checked_once_and_come_in_the_internal_form(signal, value_checks, kind):
    import dask.array as da

    cube = signal.data
    X = {
        "signal": signal,
        "cube": cube,
        "matrix": cube.reshape(30, 40),
        "sparse": sp.csr_array(cube.reshape(30, 40)),
        "lazy signal": signal.as_lazy(),
        "dask": da.from_array(cube, chunks=(2, -1, -1)),
    }[kind]
    counts, shape, template = phs.as_counts(X, (6, 5) if kind in ("matrix", "sparse") else None)
    _internal_form(counts, (30, 40))
    np.testing.assert_array_equal(counts.toarray(), cube.reshape(30, 40))
    assert shape == (6, 5)
    assert (template is not None) == ("signal" in kind)
    if kind in ("lazy signal", "dask"):  # checked band by band on conversion only
        bands = len((X.data if kind == "lazy signal" else X).chunks[0])
        assert value_checks == {"values": 0, "blocks": bands}
    else:
        assert value_checks == {"values": 1, "blocks": 0}


def test_the_template_of_as_counts_is_the_signals(signal):
    _, _, template = phs.as_counts(signal, None)
    spectra, _, _ = _results(signal)
    assert_same_signal(phs.spectra_signal(spectra, template),
                       ref_spectra_signal(spectra, signal))


def test_non_integer_counts_warn_once():
    import dask.array as da

    cube = np.full((2, 3, 4), 0.5)
    for X, category in ((cube, _validation.NonIntegerCountsWarning),
                        (da.from_array(cube), UserWarning)):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            phs.as_counts(X, None)
        found = [w for w in rec if issubclass(w.category, UserWarning)]
        assert len(found) == 1 and issubclass(found[0].category, category)


@pytest.mark.parametrize("kind", ["cube", "matrix", "signal"])
def test_masked_arrays_are_refused_with_the_fix(kind):
    from exspy.signals import EDSTEMSpectrum

    data = np.ma.masked_array(np.ones((2, 3, 4)), mask=np.zeros((2, 3, 4), bool))
    data.mask[0, 0, :2] = True
    X = {"cube": data, "matrix": data.reshape(6, 4), "signal": EDSTEMSpectrum(data)}[kind]
    with pytest.raises(ValueError, match="masked array with 2 masked value") as info:
        phs.as_counts(X, (2, 3) if kind == "matrix" else None)
    assert "filled(0)" in str(info.value)


def test_a_masked_array_without_masked_values_is_its_data():
    data = np.ma.masked_array(np.ones((2, 3, 4)), mask=False)
    counts, shape, _ = phs.as_counts(data, None)
    assert shape == (2, 3) and counts.sum() == 24


def test_to_counts_refuses_masked_values():
    import dask.array as da

    data = np.ma.masked_equal(np.arange(24).reshape(2, 3, 4), 5)
    with pytest.raises(pio.InvalidCountsError, match="1 masked value"):
        pio.to_counts(data)
    with pytest.raises(pio.InvalidCountsError, match="masked"):
        pio.to_counts(da.from_array(data, asarray=False))


def test_the_template_is_a_copy(signal):
    s = signal.deepcopy()
    template = phs.signal_template(s)
    s.axes_manager.signal_axes[0].scale = 9.0
    s.metadata.Sample.elements.append("Zn")
    s.original_metadata.Instrument.name = "changed"
    out = phs.cube_signal(np.zeros(s.data.shape), template)
    assert out.axes_manager.signal_axes[0].scale == 0.02
    assert list(out.metadata.Sample.elements) == ["Fe", "O"]
    assert out.original_metadata.Instrument.name == "X-1"
