"""Composition maps: per-pixel compositions of the denoised data from the component line
intensities and the maps, with sigma maps (psnmf.quantify.composition_maps), and their
outputs from ``psnmf unmix``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from psnmf import PSNMF, physics
from psnmf import simulate as sim
from psnmf.metrics import match_components
from psnmf.quantify import composition_maps, quantify
from psnmf.uncertainty import bootstrap

THIN = physics.EDXModel()
PHASES = ({"Mg": 40.0, "Fe": 10.0, "O": 50.0}, {"Si": 33.3, "O": 66.7})
ELEMENTS = ["Mg", "Fe", "Si", "O"]


def thin_quantifications(model=THIN, total=1e6):
    """Unit spectra of two phases and their quantifications (every element reported)."""
    S = np.stack([model.phase_spectrum(c) for c in PHASES])
    S /= S.sum(axis=1, keepdims=True)
    qs = [quantify(s, ELEMENTS, model=model, total_counts=total, detection_sigma=None)
          for s in S]
    return S, qs


@pytest.fixture(scope="module")
def mantle_fit():
    """The mantle (100 nm film, absorption corrected at the thickness given, not refined
    by the charge balance), 48 x 48, fitted with 6 replicates."""
    data = sim.mantle("medium", seed=0, shape=(48, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PSNMF(3, 4, random_state=0).fit(data.counts)
        res = bootstrap(model, data.counts, n_boot=6, elements=list(data.elements),
                        edx_model=data.model, random_state=0, width_tol=None,
                        quantify_options={"thickness_from": None})
    cm = composition_maps(res.quantifications, model.maps_, model.scale_,
                          spectra=model.spectra_, replicate_spectra=res.replicates)
    return data, model, res, cm


def test_a_pixel_of_one_component_has_its_composition_exactly(mantle_fit):
    """A one-hot pixel of any scale gets the component quantification's composition (the
    absorption fixed point stops where the scalar loop stops)."""
    _, _, res, cm0 = mantle_fit
    assert cm0.absorption_corrected
    k = len(res.quantifications)
    A = np.eye(k)[None]                                    # (1, k, k): pixel j is pure j
    cm = composition_maps(res.quantifications, A, np.array([[10.0, 1e3, 1e5][:k]]))
    for j, q in enumerate(res.quantifications):
        for el, value in q.composition.items():
            assert cm.of(el)[0][0, j] == pytest.approx(value, abs=1e-9)
        for el in set(cm.elements) - set(q.composition):   # below its detection limit
            assert cm.of(el)[0][0, j] == 0.0


def test_pure_regions_match_the_true_phases(mantle_fit):
    """Pure pixels of each true phase: mean absolute error below 1 at.% for every element
    (measured at most 0.8, CaPv's O over its 14 pure pixels), and the statistical sigma
    (counting and bootstrap parts) covers the truth within 2 sd in at least 90 % of them
    (conservative: TV maps are better than per-pixel estimates)."""
    data, model, _, cm = mantle_fit
    order = match_components(model.spectra_, data.spectra)
    assert list(order) == [0, 1, 2]
    stat = np.sqrt(sum(cm.parts[p].astype(float) ** 2 for p in ("counting", "bootstrap")))
    for j, name in enumerate(data.phase_names):
        pure = data.maps[..., j] > 0.999
        assert pure.sum() >= 10
        for e, el in enumerate(cm.elements):
            truth = data.compositions[name].get(el, 0.0)
            err = cm.composition[e][pure] - truth
            assert np.abs(err).mean() < 1.0, (name, el)
            assert np.mean(np.abs(err) <= 2 * stat[e][pure]) >= 0.9, (name, el)
    assert np.all(cm.sigma[np.isfinite(cm.composition)] >= stat[np.isfinite(cm.composition)])


def test_a_mixed_pixel_is_the_atom_weighted_mixture():
    """Thin film: the pixel's composition is the mixture of the components' compositions
    weighted by the atoms each contributes, n A_q sum_e k_e I_qe; and it equals the
    quantification of the mixed spectrum itself (line fits are linear)."""
    S, qs = thin_quantifications()
    t = np.array([0.3, 0.7])
    cm = composition_maps(qs, t[None, None, :], np.array([[5e5]]), spectra=S)
    atoms = np.array([t[j] * sum(q.k_factors[el] * q.fit.intensities[el] / q.fit.scale
                                 for el in q.composition) for j, q in enumerate(qs)])
    weight = atoms / atoms.sum()
    direct = quantify(t @ S, ELEMENTS, model=THIN, total_counts=5e5, detection_sigma=None)
    for el in ELEMENTS:
        mix = sum(w * q.composition[el] for w, q in zip(weight, qs, strict=True))
        assert cm.of(el)[0][0, 0] == pytest.approx(mix, abs=1e-9)
        assert cm.of(el)[0][0, 0] == pytest.approx(direct.composition[el], abs=0.05)
    assert not cm.absorption_corrected


def test_sigma_grows_as_the_counts_fall():
    """Same abundances, 10 against 1000 counts: the counting sd is 10x larger (Fisher
    information proportional to the counts, to the one-count shrinkage), and the total
    sigma larger; a 10-count pixel cannot claim a 0.1 at.% sigma for a major element."""
    S, qs = thin_quantifications()
    A = np.array([[[0.5, 0.5], [0.5, 0.5]]])
    cm = composition_maps(qs, A, np.array([[10.0, 1000.0]]), spectra=S)
    low, high = cm.parts["counting"][:, 0, 0], cm.parts["counting"][:, 0, 1]
    for e, el in enumerate(cm.elements):
        assert low[e] == pytest.approx(10 * high[e], rel=0.05), el
        assert cm.sigma[e, 0, 0] > cm.sigma[e, 0, 1]
    assert cm.of("O")[1][0, 0] > 1.0 and cm.of("Mg")[1][0, 0] > 1.0
    assert cm.composition[:, 0, 0] == pytest.approx(cm.composition[:, 0, 1])


def test_counting_sd_matches_the_scatter_of_per_pixel_estimates():
    """The counting part is the sd of the per-pixel maximum-likelihood compositions:
    400 pixels of 2000 Poisson counts of a 40/60 mixture, abundances solved per pixel
    with the spectra known: the scatter of their compositions matches within 15 %."""
    import scipy.sparse as sp

    from psnmf.engine.poisson_nmf import solve_abundances

    S, qs = thin_quantifications()
    rng = np.random.default_rng(1)
    t = np.array([0.4, 0.6])
    counts = rng.poisson(2000 * (t @ S), size=(400, S.shape[1])).astype(float)
    A = solve_abundances(sp.csr_matrix(counts), S, max_iter=2000).A
    n = counts.sum(axis=1)
    cm = composition_maps(qs, A[None], n[None], spectra=S)
    ref = composition_maps(qs, t[None, None], np.array([[2000.0]]), spectra=S)
    for e, el in enumerate(cm.elements):
        scatter = np.std(cm.composition[e, 0])
        assert ref.parts["counting"][e, 0, 0] == pytest.approx(scatter, rel=0.15), el


def test_bins_sum_the_intensities_of_their_pixels():
    """2 x 2 bins of a uniform map: the bin's composition is the pixels', its counting sd
    half (four times the counts); a partial edge bin is kept."""
    S, qs = thin_quantifications()
    A = np.broadcast_to(np.array([0.25, 0.75]), (5, 4, 2)).copy()
    n = np.full((5, 4), 300.0)
    px = composition_maps(qs, A, n, spectra=S)
    bins = composition_maps(qs, A, n, spectra=S, bin_factor=2)
    assert bins.composition.shape == (len(px.elements), 3, 2)
    assert bins.counts[0, 0] == 1200 and bins.counts[2, 0] == 600
    assert bins.composition[:, 0, 0] == pytest.approx(px.composition[:, 0, 0])
    assert bins.parts["counting"][:, 0, 0] == pytest.approx(
        px.parts["counting"][:, 0, 0] / 2, rel=0.02)


def test_masked_and_empty_pixels_are_nan():
    S, qs = thin_quantifications()
    A = np.full((2, 2, 2), 0.5)
    A[0, 1] = np.nan
    n = np.array([[100.0, 100.0], [0.0, 100.0]])
    cm = composition_maps(qs, A, n, spectra=S)
    for arr in (cm.composition, cm.sigma, *cm.parts.values()):
        assert np.isnan(arr[:, 0, 1]).all() and np.isnan(arr[:, 1, 0]).all()
        assert np.isfinite(arr[:, 0, 0]).all() and np.isfinite(arr[:, 1, 1]).all()
    assert np.nansum(cm.composition[:, 1, 1]) == pytest.approx(100.0)


def test_bad_input_is_refused_clearly():
    S, qs = thin_quantifications()
    A = np.full((2, 2, 2), 0.5)
    n = np.full((2, 2), 10.0)
    with pytest.raises(ValueError, match=r"maps must be \(ny, nx, k\) with k = 2"):
        composition_maps(qs, A[..., :1], n)
    with pytest.raises(ValueError, match="scale must be"):
        composition_maps(qs, A, n[:1])
    with pytest.raises(ValueError, match="spectra must be"):
        composition_maps(qs, A, n, spectra=S[:1])
    with pytest.raises(ValueError, match="replicate_spectra"):
        composition_maps(qs, A, n, replicate_spectra=S)
    with pytest.raises(ValueError, match="bin_factor"):
        composition_maps(qs, A, n, bin_factor=0)
    with pytest.raises(ValueError, match="'U' is not mapped"):
        composition_maps(qs, A, n).of("U")
    zeta = quantify(S[0], ELEMENTS, model=THIN, total_counts=1e6, method="zeta",
                    beam_current=1.0, live_time=10.0, solid_angle=0.5, detection_sigma=None)
    with pytest.raises(ValueError, match="method='CL'"):
        composition_maps([zeta, qs[1]], A, n)


def test_thickness_part_and_density(mantle_fit):
    """With a thickness sd the thickness part appears and grows with the sd."""
    _, model, res, _ = mantle_fit
    parts = [composition_maps(res.quantifications, model.maps_[:8, :8], model.scale_[:8, :8],
                              thickness_sigma=s).parts["thickness"] for s in (10.0, 30.0)]
    assert np.nanmedian(parts[1]) > 2 * np.nanmedian(parts[0]) > 0


def test_the_density_spread_is_in_the_thickness_part_as_in_the_table(mantle_fit):
    """Without a thickness sd the unnamed components' density spread (the mantle's phase
    densities, 4.09-4.25 g/cm^3) is the thickness part; a one-component pixel gets the
    component table's part."""
    _, _, res, cm0 = mantle_fit
    assert "thickness" in cm0.parts
    k = len(res.quantifications)
    cm = composition_maps(res.quantifications, np.eye(k)[None], np.full((1, k), 1e4))
    for j, q in enumerate(res.quantifications):
        for el, part in q.uncertainty_budget["thickness"].items():
            assert cm.parts["thickness"][cm.elements.index(el), 0, j] == pytest.approx(
                part, rel=1e-4, abs=1e-6), (j, el)


def test_unmix_writes_composition_maps(tmp_path):
    """``psnmf unmix`` writes the maps and sigma maps as HyperSpy signals (element | y, x)
    with the input's axes, the figure and the summary; and the maps are those of the
    denoised data: a pixel's composition is the quantification of its denoised spectrum."""
    import hyperspy.api as hs

    from psnmf.pipeline import unmix

    data = sim.mantle("medium", seed=0, shape=(32, 32))
    sig = data.to_signal()
    for ax in sig.axes_manager.navigation_axes:
        ax.scale, ax.units = 2.5, "nm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = unmix(sig, n_components=3, bin_factor=4, n_boot=4, progress=False,
                    output_dir=tmp_path / "out", smoothing=None)
    out = tmp_path / "out"
    cm = res.composition_maps
    for name, arr in (("composition_maps.hspy", cm.composition),
                      ("composition_sigma_maps.hspy", cm.sigma)):
        s = hs.load(out / name)
        assert s.data.shape == (len(cm.elements), 32, 32)
        assert list(s.metadata.Sample.elements) == cm.elements
        assert s.axes_manager.navigation_axes[0].name == "Element"
        assert [(a.scale, a.units) for a in s.axes_manager.signal_axes] == [(2.5, "nm")] * 2
        if name == "composition_sigma_maps.hspy":  # float16: 3 significant digits
            assert s.data.dtype == np.float16
            np.testing.assert_allclose(s.data.astype(np.float64), arr, rtol=2.0**-11,
                                       atol=2.0**-25)
        else:
            np.testing.assert_allclose(s.data, arr.astype(np.float32))
    assert (out / "composition_maps.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"]["composition_maps"] == "composition_maps.hspy"
    assert summary["files"]["composition_sigma"] == "composition_sigma_maps.hspy"
    assert set(summary["composition_maps"]) == set(cm.elements)
    assert summary["composition_maps"]["O"]["mean"] == pytest.approx(
        float(np.nanmean(cm.of("O")[0])))
    assert 'alt="composition_maps.png"' in (out / "report.html").read_text()
    model = res.model
    i = int(np.argmax(model.scale_.ravel()))
    y, x = divmod(i, 32)
    spectrum = model.scale_[y, x] * (model.maps_[y, x] @ model.spectra_)
    opts = {"model": data.model, "total_counts": float(model.scale_[y, x]),
            "detection_sigma": None}
    direct = quantify(spectrum, list(data.elements), **opts)
    for el in ("Mg", "Si", "O", "Fe"):
        assert cm.of(el)[0][y, x] == pytest.approx(direct.composition[el], abs=0.3), el


def test_each_component_keeps_its_estimated_film():
    """Components quantified with thickness_from="electroneutrality" each have their own
    mass thickness (here a 100 nm film of two phases of densities 3.6 and 2.2 g/cm^3: 3.6
    and 2.2e-4 kg/m^2): a pixel of one component gets exactly that component's
    composition and thickness part (one film for all, component 0's, would move the
    silica's O by 0.85 at.%), and a mixed pixel is corrected for the abundance-weighted
    mass thickness, its composition the counts' mixture corrected for it."""
    film = physics.EDXModel(thickness=100.0, phase_densities=(("Fp", 3.6), ("Qz", 2.2)))
    S = np.stack([film.phase_spectrum(c, density=d) for c, d in zip(PHASES, (3.6, 2.2),
                                                                    strict=True)])
    S /= S.sum(axis=1, keepdims=True)
    qs = [quantify(s, ELEMENTS, model=film, total_counts=1e6, detection_sigma=None,
                   density=d, thickness_from="electroneutrality", valences={"Fe": 2})
          for s, d in zip(S, (3.6, 2.2), strict=True)]
    mt = np.array([q.mass_thickness for q in qs])
    assert all(q.thickness_estimate is not None for q in qs)
    assert mt == pytest.approx([3.6e-4, 2.2e-4], rel=0.05)
    A = np.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    cm = composition_maps(qs, A, np.full((1, 3), 1e4))
    assert cm.absorption_corrected
    np.testing.assert_allclose(cm.mass_thickness[0], A[0] @ mt)
    for j, q in enumerate(qs):
        for el, value in q.composition.items():
            assert cm.of(el)[0][0, j] == pytest.approx(value, abs=1e-9), (j, el)
            e = cm.elements.index(el)
            assert cm.parts["thickness"][e, 0, j] == pytest.approx(
                q.uncertainty_budget["thickness"][el], rel=1e-4, abs=1e-6), (j, el)
    # silica corrected for component 0's film would be off: the film matters here
    one_film = quantify(S[1], ELEMENTS, model=film, total_counts=1e6, detection_sigma=None,
                        density=2.2, thickness=mt[0] / 2.2e-6)
    assert abs(one_film.composition["O"] - qs[1].composition["O"]) > 0.5
    # the mixed pixel: Cliff-Lorimer of the mixed intensities at the mean mass thickness
    from psnmf.quantify.absorption import absorption_tables, iterate_one

    mixed = {el: 0.5 * (qs[0].fit.intensities[el] / qs[0].fit.scale
                        + qs[1].fit.intensities[el] / qs[1].fit.scale) for el in ELEMENTS}
    fams = {el: qs[0].fit.families[el] for el in ELEMENTS}
    tables = absorption_tables(film, fams, ELEMENTS, film.takeoff_angle)
    k = qs[0].k_factors

    def step(a):
        y = {el: mixed[el] * k[el] / (a or {}).get(el, 1.0) for el in ELEMENTS}
        return {el: 100 * v / sum(y.values()) for el, v in y.items()}, float(mt.mean())

    want = iterate_one(step, tables, 1e-6, 100)[0]
    for el in ELEMENTS:
        assert cm.of(el)[0][0, 2] == pytest.approx(want[el], abs=1e-4), el
    assert cm.parts["thickness"][:, 0, 2].max() > 0
