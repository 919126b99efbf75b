"""User priors: fixed spectra, forbidden elements, ROI starts, masked pixels, their checks,
the CLI options and their record in summary.json."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from psnmf import PSNMF
from psnmf.engine.tv_maps import smooth_maps
from psnmf.metrics import compare_to_truth, spectral_angle
from psnmf.pipeline.priors import forbidden_channels
from psnmf.quantify import fit_lines, model_for_signal
from psnmf.simulate import mantle

SHAPE = (48, 48)
FAST = {"smoothing": None, "random_state": 0}


@pytest.fixture(scope="module")
def ds():
    return mantle("medium", seed=0, shape=SHAPE)


@pytest.fixture(scope="module")
def plain(ds):
    model = PSNMF(3, 4, **FAST).fit(ds.counts)
    return model, compare_to_truth(model.spectra_, model.maps_, ds.spectra, ds.maps)


def _truth(ds, p):
    return ds.spectra[p] / ds.spectra[p].sum()


# -- fixed spectra ---------------------------------------------------------------------------
def test_fixed_spectrum_is_kept_exactly_and_others_no_worse(ds, plain):
    _, r0 = plain
    p = 2  # CaPv, small grains: the phase the data pin down worst
    j = int(r0["order"][p])
    model = PSNMF(3, 4, fixed_spectra={j: 7.0 * ds.spectra[p]}, **FAST).fit(ds.counts)
    np.testing.assert_allclose(model.spectra_[j], _truth(ds, p), rtol=0, atol=1e-15)
    np.testing.assert_allclose(model.nmf_spectra_[j], _truth(ds, p), rtol=0, atol=1e-15)
    assert not model.vertex_moved_[j]
    r1 = compare_to_truth(model.spectra_, model.maps_, ds.spectra, ds.maps)
    assert r1["angle"][p] < 1e-6
    others = [q for q in range(3) if q != p]
    assert np.all(r1["angle"][others] <= r0["angle"][others] + 0.01), (r0, r1)


def test_fixed_spectrum_in_free_stage2_and_multiscale_moves(ds, plain):
    _, r0 = plain
    j = int(r0["order"][1])
    model = PSNMF(3, 4, fixed_spectra={j: ds.spectra[1]}, stage2_spectra="free",
                  vertex_scales="multi", max_iter_full=50, **FAST).fit(ds.counts)
    for S in (model.spectra_, model.full_spectra_):
        np.testing.assert_allclose(S[j], _truth(ds, 1), rtol=0, atol=1e-15)
    assert model.vertex_scale_[j] == 0


# -- forbidden elements ----------------------------------------------------------------------
LINE_ELEMENTS = ["Mg", "Si", "Al", "Ca", "Fe", "Nd", "Sm", "O", "Cu", "U"]
#: How much worse (degrees) a phase's spectral angle may get when an element truly absent
#: from it is forbidden (measured: -0.02 to +0.06).
ANGLE_TOLERANCE = 0.25


def _forbid(ds, j, elements, k=3):
    edx = model_for_signal(ds.to_signal())
    window = np.zeros(ds.counts.shape[-1], dtype=bool)
    for el in elements:
        window |= forbidden_channels(edx, el)
    support = np.ones((k, window.size), dtype=bool)
    support[j] = ~window
    return support, window


def _line(spectrum, element, total):
    """The element's fitted line intensity (counts) and its standard deviation in a
    component spectrum standing for ``total`` counts."""
    fit = fit_lines(spectrum * total, elements=LINE_ELEMENTS,
                    model=model_for_signal(DS_SIGNAL), total_counts=total)
    return fit.intensities[element], fit.sigma[element]


def _windows_are_convex(row, window):
    """Each run of forbidden channels of a spectrum row is a convex curve (no peak)."""
    edges = np.flatnonzero(np.diff(np.r_[0, window.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        bend = np.diff(row[a:b], 2)
        if bend.size and bend.min() < -1e-12 * row[a:b].max():
            return False
    return True


DS_SIGNAL = mantle("medium", seed=0, shape=SHAPE).to_signal()


@pytest.mark.parametrize(("phase", "element"), [(1, "Si"), (1, "Ca"), (2, "Mg")],
                         ids=["Si-in-Fp", "Ca-in-Fp", "Mg-in-CaPv"])
def test_forbidden_element_has_no_line_and_the_phase_stays_close(ds, plain, phase, element):
    """An element absent from a phase, forbidden there: the component has no line of it
    (fitted intensity within 2 sigma of zero) and its spectrum stays as close to the truth.
    Without the prior the CaPv component borrows a Mg line from its neighbours' mixtures
    (about 5 sigma): the prior removes it."""
    m0, r0 = plain
    j = int(r0["order"][phase])
    support, window = _forbid(ds, j, [element])
    model = PSNMF(3, 4, spectra_mask=support, **FAST).fit(ds.counts)
    r1 = compare_to_truth(model.spectra_, model.maps_, ds.spectra, ds.maps)
    assert r1["angle"][phase] <= r0["angle"][phase] + ANGLE_TOLERANCE, (r0["angle"],
                                                                        r1["angle"])
    total = float(model.maps_.reshape(-1, 3)[:, j] @ model.scale_.ravel())
    intensity, sigma = _line(model.spectra_[j], element, total)
    assert abs(intensity) < 2 * sigma, (intensity, sigma)
    if element == "Mg":
        before, sigma0 = _line(m0.spectra_[j], element, total)
        assert before > 4 * sigma0, (before, sigma0)
    for S in (model.spectra_, model.nmf_spectra_):
        assert _windows_are_convex(S[j], window)
    np.testing.assert_allclose(model.spectra_.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize(("phase", "elements"), [(1, ["Ca"]), (1, ["Si", "Ca", "Al"]),
                                                 (0, ["Cu"])],
                         ids=["Ca-in-Fp", "SiCaAl-in-Fp", "Cu-in-Brg"])
def test_forbidden_windows_keep_the_continuum(ds, plain, phase, elements):
    """The windows of a forbidden element hold the continuum under its lines (and the
    tails of the phase's other lines): within 10 % of the true spectrum's counts there
    (measured 0.99-1.01; zeroing them lost all, and moved Fp's angle from 2.06 to 4.45
    degrees with Ca forbidden). Brg's vertex moves to its pure cluster: the projection
    after the move keeps the continuum too."""
    m0, r0 = plain
    j = int(r0["order"][phase])
    support, window = _forbid(ds, j, elements)
    model = PSNMF(3, 4, spectra_mask=support, **FAST).fit(ds.counts)
    assert model.vertex_moved_[j] == m0.vertex_moved_[j]
    truth = _truth(ds, phase)
    kept = model.spectra_[j, window].sum() / truth[window].sum()
    assert 0.9 < kept < 1.1, kept
    r1 = compare_to_truth(model.spectra_, model.maps_, ds.spectra, ds.maps)
    assert r1["angle"][phase] <= r0["angle"][phase] + ANGLE_TOLERANCE, (r0["angle"],
                                                                        r1["angle"])


def test_forbidden_windows_keep_the_em_monotone(ds, plain):
    """The M-step with convex curves in the forbidden windows is an EM step of the
    constrained model: the loss never increases, iteration by iteration."""
    from psnmf.engine.binning import bin_counts
    from psnmf.engine.poisson_nmf import poisson_nmf

    j = int(plain[1]["order"][1])
    support, window = _forbid(ds, j, ["Si", "Ca"])
    X = bin_counts(ds.counts.reshape(-1, ds.counts.shape[-1]), SHAPE, 4)
    res = poisson_nmf(X, 3, support=support, max_iter=60, tol=0, loss_every=1,
                      random_state=0)
    steps = np.diff(res.loss)
    assert steps.max() <= 1e-9 * abs(res.loss[-1]), steps.max()
    assert res.loss[-1] < res.loss[0]
    assert _windows_are_convex(res.S[j], window)
    assert np.all(res.S[j, window] > 0)


# -- ROI starts ------------------------------------------------------------------------------
def test_roi_seeding_orders_the_components(ds):
    perm = [2, 0, 1]  # component j is the phase of ROI j
    rois = [ds.maps[..., p] > 0.95 for p in perm]
    assert all(r.sum() >= 5 for r in rois)
    model = PSNMF(3, 4, init_rois=rois, **FAST).fit(ds.counts)
    r = compare_to_truth(model.spectra_, model.maps_, ds.spectra, ds.maps)
    assert [int(r["order"][p]) for p in perm] == [0, 1, 2]
    assert np.all(r["angle"] < 6)


# -- masked pixels ---------------------------------------------------------------------------
def _mask():
    mask = np.zeros(SHAPE, dtype=bool)
    mask[5:17, 20:34] = True
    mask[40, ::3] = True
    return mask


def _contaminated(ds, mask):
    rng = np.random.default_rng(1)
    X = ds.counts.copy()
    spike = np.zeros(X.shape[-1])
    spike[700:720] = 1.0
    spike[100:400] = 0.2
    X[mask] = rng.poisson(300 * spike / spike.sum(), size=(int(mask.sum()), X.shape[-1]))
    return X


@pytest.mark.parametrize("options", [
    {"smoothing": "auto", "random_state": 0},
    {"smoothing": None, "random_state": 0, "bin_factor": "auto"},
], ids=["tv-auto", "b-auto"])
def test_masked_pixels_do_not_influence_the_fit(ds, options):
    mask = _mask()
    opts = {"n_components": 3, "bin_factor": 4, **options}
    a = PSNMF(**opts).fit(ds.counts, pixel_mask=mask)
    b = PSNMF(**opts).fit(_contaminated(ds, mask), pixel_mask=mask)
    np.testing.assert_allclose(a.spectra_, b.spectra_, rtol=0, atol=1e-14)
    assert np.all(np.isnan(a.maps_[mask])) and np.all(np.isnan(b.maps_[mask]))
    np.testing.assert_allclose(a.maps_[~mask], b.maps_[~mask], rtol=0, atol=1e-12)
    assert not np.isnan(a.maps_[~mask]).any()
    assert np.all(a.scale_[mask] == 0)
    assert np.all(np.isnan(a.reconstruct()[mask]))
    assert a.smoothing_ == b.smoothing_ and a.bin_factor_ == b.bin_factor_
    if options["smoothing"] == "auto":
        assert a.smoothing_["lam"] > 0  # the TV maps ran


def test_tv_maps_do_not_link_pixels_through_the_mask():
    rng = np.random.default_rng(0)
    S = rng.dirichlet(np.ones(20), size=2)
    truth = np.zeros((12, 12, 2))
    truth[:, :6, 0] = 1
    truth[:, 6:, 1] = 1
    import scipy.sparse as sp

    X = sp.csr_matrix(rng.poisson(10 * truth @ S).reshape(144, 20).astype(float))
    mask = np.zeros((12, 12), dtype=bool)
    mask[:, 5:7] = True
    X = sp.diags((~mask).ravel().astype(float)) @ X
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    start = np.full((144, 2), 0.5)
    other = start.copy()
    other[mask.ravel()] = [0.99, 0.01]
    r1 = smooth_maps(X, start, S, (12, 12), lam=5.0, pixel_mask=mask)
    r2 = smooth_maps(X, other, S, (12, 12), lam=5.0, pixel_mask=mask)
    keep = ~mask.ravel()
    np.testing.assert_allclose(r1.maps[keep], r2.maps[keep], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(r2.maps[~keep], other[~keep])  # not updated


# -- checks at the door ----------------------------------------------------------------------
@pytest.mark.parametrize(("options", "fit_kw", "match"), [
    ({"fixed_spectra": {0: np.ones(5)}}, {}, r"fixed_spectra\[0\] has shape"),
    ({"fixed_spectra": {0: -np.ones(1980)}}, {}, "negative"),
    ({"fixed_spectra": {0: np.zeros(1980)}}, {}, "zero in every channel"),
    ({"fixed_spectra": {5: np.ones(1980)}}, {}, "n_components >= 6"),
    ({"fixed_spectra": {-1: np.ones(1980)}}, {}, "not a component index"),
    ({"spectra_mask": np.ones((4, 1980), bool)}, {}, "n_components >= 4"),
    ({"spectra_mask": np.ones((1, 10), bool)}, {}, "spectra_mask has shape"),
    ({"spectra_mask": np.zeros((1, 1980), bool)}, {}, "forbids every channel"),
    ({"init_rois": {0: np.ones((3, 3), bool)}}, {}, r"init_rois\[0\] has shape"),
    ({"init_rois": {0: np.zeros(SHAPE, bool)}}, {}, "selects no pixel"),
    ({"init_rois": {0: np.ones(SHAPE, bool)}, "fixed_spectra": {0: np.ones(1980)}}, {},
     "both a fixed spectrum and a region"),
    ({"spectra_mask": np.r_[False, np.ones(1979, bool)][None], "fixed_spectra":
      {0: np.ones(1980)}}, {}, "has a fixed spectrum and channels forbidden"),
    ({}, {"pixel_mask": np.ones(SHAPE, bool)}, "masks out every pixel"),
    ({}, {"pixel_mask": np.zeros((4, 4), bool)}, "pixel_mask has shape"),
    ({"fixed_spectra": {6: np.ones(1980)}, "n_components": "auto"}, {},
     "more than any candidate"),
])
def test_bad_priors_are_refused_with_the_fix(ds, options, fit_kw, match):
    params = {"n_components": 3, "bin_factor": 4, **FAST, **options}
    with pytest.raises(ValueError, match=match):
        PSNMF(**params).fit(ds.counts, **fit_kw)


def test_roi_inside_the_mask_is_refused(ds):
    mask = _mask()
    with pytest.raises(ValueError, match="holds no counts"):
        PSNMF(3, 4, init_rois={0: mask}, **FAST).fit(ds.counts, pixel_mask=mask)


def test_priors_that_leave_a_channel_unexplained_are_refused(ds):
    refs = [_truth(ds, p).copy() for p in range(3)]
    for r in refs:
        r[500] = 0.0
    with pytest.raises(ValueError, match=r"channel\(s\) \[500\] have counts"):
        PSNMF(3, 4, fixed_spectra=refs, **FAST).fit(ds.counts)
    # a channel forbidden in every component still carries their continua: accepted
    support = np.ones((3, ds.counts.shape[-1]), dtype=bool)
    support[:, 495:505] = False
    model = PSNMF(3, 4, spectra_mask=support, **FAST).fit(ds.counts)
    assert np.all(model.spectra_[:, 495:505] > 0)


def test_unknown_forbidden_element_and_foreign_axis(ds, tmp_path):
    from psnmf.pipeline.priors import read_spectrum

    signal = ds.to_signal()
    with pytest.raises(ValueError, match="not a chemical symbol"):
        forbidden_channels(model_for_signal(signal), "Xx")
    e = signal.axes_manager.signal_axes[0].axis
    path = tmp_path / "short.csv"
    np.savetxt(path, np.c_[e[:100], np.ones(100)], delimiter=",", header="keV,counts")
    with pytest.raises(ValueError, match="covers .* but the fit uses"):
        read_spectrum(path, signal, "the fixed spectrum of component 0")
    fine = tmp_path / "fine.csv"  # a finer axis is interpolated onto the data's
    e2 = np.linspace(e[0] - 0.1, e[-1] + 0.1, 2 * e.size)
    np.savetxt(fine, np.c_[e2, np.interp(e2, e, ds.spectra[0])], delimiter=",")
    out = read_spectrum(fine, signal, "ref")
    assert spectral_angle(out, ds.spectra[0]) < 0.5


# -- pipeline, CLI and summary.json ----------------------------------------------------------
def test_cli_round_trip_of_every_prior(ds, tmp_path):
    from PIL import Image

    from psnmf.cli import main

    signal = ds.to_signal()
    data = tmp_path / "map.hspy"
    signal.save(str(data))
    ref = signal.isig[:].sum()  # a reference spectrum signal, then replaced by the truth
    ref.data = ds.spectra[1] * 1e5
    ref.save(str(tmp_path / "fp.msa"), encoding="utf8")
    mask = _mask()
    np.save(tmp_path / "mask.npy", mask)
    roi = (ds.maps[..., 0] > 0.95) & ~mask
    Image.fromarray((roi * 255).astype(np.uint8)).save(tmp_path / "brg.png")
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["unmix", str(data), "-k", "3", "-b", "4", "--smoothing", "none",
                   "--bootstrap", "0", "--quiet", "-o", str(out),
                   "--fix-spectrum", "1=" + str(tmp_path / "fp.msa"),
                   "--forbid", "2=Cu", "--forbid", "2=Fe",
                   "--roi", "0=" + str(tmp_path / "brg.png"),
                   "--mask-pixels", str(tmp_path / "mask.npy"),
                   "--exclude-elements", "Cu"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    pri = summary["priors"]
    assert pri["fixed_spectra"] == {"1": str(tmp_path / "fp.msa")}
    assert pri["forbid"]["2"]["elements"] == ["Cu", "Fe"] and pri["forbid"]["2"]["channels"] > 0
    assert pri["init_rois"]["0"]["pixels"] == int(roi.sum())
    assert pri["pixel_mask"]["masked_pixels"] == int(mask.sum())
    assert pri["exclude_elements"] == ["Cu"]
    import hyperspy.api as hs

    spectra = hs.load(str(out / "component_spectra.hspy")).data
    maps = hs.load(str(out / "component_maps.hspy")).data  # (k, ny, nx)
    np.testing.assert_allclose(spectra[1], _truth(ds, 1), rtol=0, atol=1e-7)
    edx = model_for_signal(signal)  # component 2 has no Cu or Fe line left, only continuum
    forbidden = forbidden_channels(edx, "Cu") | forbidden_channels(edx, "Fe")
    assert _windows_are_convex(spectra[2], forbidden) and np.all(spectra[2, forbidden] > 0)
    assert np.all(np.isnan(maps[:, mask])) and not np.isnan(maps[:, ~mask]).any()
    r = compare_to_truth(spectra, np.moveaxis(np.nan_to_num(maps), 0, -1), ds.spectra,
                         ds.maps)
    assert int(r["order"][0]) == 0  # the ROI's phase is component 0
    html = (out / "report.html").read_text()
    assert "<h2>Priors</h2>" in html and "pixels masked out" in html
    import tomllib  # the run's config.toml holds the priors, and reruns the same fit

    cfg = tomllib.loads((out / "config.toml").read_text())["priors"]
    assert cfg == {"fixed_spectra": {"1": str(tmp_path / "fp.msa")},
                   "forbid": {"2": ["Cu", "Fe"]}, "rois": {"0": str(tmp_path / "brg.png")},
                   "pixel_mask": str(tmp_path / "mask.npy")}
    again = tmp_path / "again"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["unmix", "--config", str(out / "config.toml"), "--quiet", "-o",
                     str(again)]) == 0
    np.testing.assert_array_equal(hs.load(str(again / "component_spectra.hspy")).data,
                                  spectra)
    np.testing.assert_array_equal(hs.load(str(again / "component_maps.hspy")).data, maps)


def test_priors_given_in_memory_are_named_in_config_toml(ds, tmp_path):
    from psnmf.pipeline import unmix

    mask = _mask()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unmix(ds.to_signal(), n_components=3, bin_factor=4, smoothing=None, n_boot=0,
              progress=False, report=False, output_dir=tmp_path / "o",
              priors={"pixel_mask": mask, "forbid": {2: ["Cu"]}})
    text = (tmp_path / "o" / "config.toml").read_text()
    assert "Priors given in memory are not in this file" in text and "priors.pixel_mask" in text
    import tomllib

    assert tomllib.loads(text)["priors"] == {"fixed_spectra": {}, "forbid": {"2": ["Cu"]},
                                             "rois": {}, "pixel_mask": "none"}


def test_cli_refuses_a_bad_prior(ds, tmp_path, capsys):
    from psnmf.cli import main

    data = tmp_path / "map.hspy"
    ds.to_signal().save(str(data))
    np.save(tmp_path / "small.npy", np.zeros((3, 3), bool))
    rc = main(["unmix", str(data), "-k", "3", "-b", "4", "--quiet", "-o",
               str(tmp_path / "o"), "--mask-pixels", str(tmp_path / "small.npy")])
    assert rc == 2
    assert "has shape (3, 3), but the maps are 48 x 48" in capsys.readouterr().err
    rc = main(["unmix", str(data), "-k", "3", "-b", "4", "--quiet", "-o",
               str(tmp_path / "o"), "--forbid", "1=Qq"])
    assert rc == 2
    assert "not a chemical symbol" in capsys.readouterr().err
