"""Line fitting in an absorbing film: templates with the film's absorption.

Ground truth: the simulator's own noise-free phase spectra (the compositions of the
built-in samples, each phase absorbed in a film of the sample's thickness and the phase's
density) and the detected line intensities it used (thin-film family intensity times the
family's absorption factor).
"""

from __future__ import annotations

import numpy as np
import pytest

from psnmf import simulate as sim
from psnmf.quantify import Film, calibrate_k_factors, fit_lines, quantify

#: Built-in samples whose layered map needs more than 8 x 8 pixels.
_SHAPE = {"thin_layer": (40, 40)}


def _phases():
    for name in sim.builtin_samples():
        ds = sim.sample_dataset(name, shape=_SHAPE.get(name, (8, 8)), seed=0)
        for k, phase in enumerate(ds.phase_names):
            if len(ds.compositions[phase]) > 1:
                yield name, ds, k, phase


@pytest.fixture(scope="module")
def thin_layer():
    return sim.sample_dataset("thin_layer", shape=(40, 40), seed=0)


def test_every_builtin_phase_is_recovered_at_the_true_thickness():
    """Noise-free, the model's k-factors, the true thickness and density: every element
    above 1 at.% within 0.5 at.% (measured: all within 0.001; with thin-film templates
    TiN was 1.38 off and M23C6's C 0.88)."""
    worst = {}
    for name, ds, k, phase in _phases():
        truth = ds.compositions[phase]
        q = quantify(ds.spectra[k], list(truth), model=ds.model,
                     density=ds.densities[phase])
        assert q.fit.film is not None and q.fit.film.mass_thickness > 0
        errs = [abs(q.composition[el] - c) for el, c in truth.items() if c >= 1.0]
        worst[(name, phase)] = max(errs)
    bad = {key: err for key, err in worst.items() if err >= 0.5}
    assert not bad, bad


def test_thin_templates_misplace_n_k_under_ti_l_and_the_film_ones_do_not(thin_layer):
    """TiN, 50 nm: Ti Ll (0.395 keV) lies below the N K edge (0.410), Ti La (0.452) above
    it, so the film absorbs the Ti L family unevenly and its continuum drops at the edges;
    thin-film templates give N K 5.7 % high, the film's give the simulator's intensities."""
    ds = thin_layer
    comp = ds.compositions["TiN"]
    m = ds.model
    spec = ds.spectra[ds.phase_names.index("TiN")] * 1e7
    rt = m.mass_thickness(comp, "TiN")                        # g/cm^2
    raw = m.phase_spectrum(comp, phase="TiN", normalize=False)
    true = {el: 1e7 / raw.sum() * comp[el] / 100 * m.line_intensity(el)
            * m.family_absorption(el, m.quant_family(el), comp, rt) for el in comp}
    thin = fit_lines(spec, list(comp), model=m).intensities
    film = fit_lines(spec, list(comp), model=m, film=Film(comp, rt * 10.0)).intensities
    assert thin["N"] / true["N"] > 1.04
    for el in comp:
        assert film[el] == pytest.approx(true[el], rel=1e-6), el
    # a thin film is the thin templates exactly
    zero = fit_lines(spec, list(comp), model=m, film=Film(comp, 0.0)).intensities
    assert zero == pytest.approx(thin, rel=1e-12)


def test_the_film_found_is_the_film_the_fit_assumed(thin_layer):
    """The thickness given: the film's composition is the result's, its mass thickness
    the given one's. Estimated from the charge balance, the mass thickness the fit
    assumed is the one it estimates, and that of the truth (TiN 5.22 g/cm^3 x 50 nm):
    the templates' film moves the estimate, so both are found together."""
    ds = thin_layer
    k = ds.phase_names.index("TiN")
    opts = dict(model=ds.model, density=ds.densities["TiN"], total_counts=1e6)
    for tf, rel in (("none", 1e-9), ("electroneutrality", 1e-6)):
        q = quantify(ds.spectra[k], ["Ti", "N"], thickness_from=tf, **opts)
        assert q.fit.film.mass_thickness == pytest.approx(q.mass_thickness, rel=rel)
        assert q.mass_thickness == pytest.approx(5.22e3 * 50e-9, rel=1e-3)
        for el, c in q.composition.items():
            assert q.fit.film.composition[el] == pytest.approx(c, abs=1e-5)
    assert q.thickness_estimate is not None
    # a thin film (no correction) keeps the thin templates
    thin = quantify(ds.spectra[k], ["Ti", "N"], model=ds.model, thickness=0.0)
    assert thin.fit.film is None and thin.absorption is None


def test_thickness_part_is_at_the_fitted_intensities(thin_layer):
    """The thickness part is the change from t - sigma to t + sigma at the intensities
    fitted in the film found (as the composition maps compute it). Refitted in each
    film, TiN's change is about a third of it: the templates' change offsets the
    correction's there, so the part is conservative for TiN."""
    ds = thin_layer
    k = ds.phase_names.index("TiN")
    opts = dict(model=ds.model, density=ds.densities["TiN"], total_counts=1e6,
                detection_sigma=None, k_factor_sd=0, thickness_from="none")
    t, s = ds.model.thickness, 10.0
    q = quantify(ds.spectra[k], ["Ti", "N"], thickness_sigma=s, **opts)
    fixed = dict(opts, film=q.fit.film)
    lo_f = quantify(ds.spectra[k], ["Ti", "N"], thickness=t - s, **fixed).composition
    hi_f = quantify(ds.spectra[k], ["Ti", "N"], thickness=t + s, **fixed).composition
    lo = quantify(ds.spectra[k], ["Ti", "N"], thickness=t - s, **opts).composition
    hi = quantify(ds.spectra[k], ["Ti", "N"], thickness=t + s, **opts).composition
    for el in ("Ti", "N"):
        part = q.uncertainty_budget["thickness"][el]
        assert part == pytest.approx(abs(hi_f[el] - lo_f[el]) / 2, rel=1e-6)
        assert abs(hi[el] - lo[el]) / 2 < 0.5 * part


def test_calibration_on_a_film_standard_fits_in_its_film(thin_layer):
    """k-factors calibrated on the noise-free TiN of a 50 nm film equal the model's."""
    ds = thin_layer
    spec = np.round(ds.spectra[ds.phase_names.index("TiN")] * 1e8)
    kf = calibrate_k_factors(spec, ds.compositions["TiN"], model=ds.model,
                             density=ds.densities["TiN"], reference="Ti")
    theo = ds.model.k_factors(["Ti", "N"], reference="Ti")
    assert kf.values["N"] == pytest.approx(theo["N"], rel=2e-3)
