"""psnmf's quantification methods give exspy's compositions on the same intensities.

The intensities are psnmf's own line fits of the absorbed CaPv spectrum of the
simulated mantle sample (100 nm; the phase with the strongest absorption); exspy is
given them as intensity signals and its ``EDSTEMSpectrum.quantification`` run with
the same factors, geometry and a tight convergence criterion. With absorption, psnmf
runs with ``database="exspy"`` and no density (exspy's attenuation table, line
energies, atomic weights and element-density mass thickness), and must then agree to
1e-6 at.%.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from psnmf.physics import EDXModel
from psnmf.quantify import KFactors, cliff_lorimer, fit_lines, quantify
from psnmf.simulate import mantle

TAKEOFF = 35.0
BEAM_CURRENT, LIVE_TIME, PROBE_AREA = 0.5, 20.0, 0.04  # nA, s, nm^2
SOLID_ANGLE = 0.7  # sr


def absolute_counts(model, composition, phase, beam_current, live_time, solid_angle):
    """Expected counts of a film: electrons x atoms per area x detected cross-sections."""
    from scipy.constants import Avogadro, e

    from psnmf.physics import atomic_weight, normalize_composition

    comp = normalize_composition(composition)
    mean_weight = sum(c / 100 * atomic_weight(el) for el, c in comp.items())
    atoms_per_cm2 = model.mass_thickness(comp, phase) * Avogadro / mean_weight
    electrons = beam_current * 1e-9 * live_time / e
    per_atom = model.phase_spectrum(comp, normalize=False, phase=phase)
    return electrons * atoms_per_cm2 * solid_angle / (4 * np.pi) * per_atom


@pytest.fixture(scope="module")
def capv():
    ds = mantle("medium", seed=0, shape=(8, 8))
    truth = ds.compositions["CaPv"]
    counts = absolute_counts(ds.model, truth, "CaPv", BEAM_CURRENT, LIVE_TIME, SOLID_ANGLE)
    return ds, truth, counts  # noise-free counts of 100 nm CaPv


def _exspy_weights(elements):
    from exspy.material import elements as db

    return {el: float(db[el]["General_properties"]["atomic_weight"]) for el in elements}


def _exspy_quantify(q, method, factors, **kwargs):
    """exspy's quantification of the intensities of a psnmf Quantification (atomic %)."""
    from exspy.signals import EDSTEMSpectrum

    s = EDSTEMSpectrum(np.ones((1, 20)))
    axis = s.axes_manager.signal_axes[0]
    axis.units, axis.offset, axis.scale = "keV", 0.2, 1.0
    s.set_microscope_parameters(
        beam_energy=200.0, tilt_stage=0.0, azimuth_angle=0.0, elevation_angle=TAKEOFF,
        beam_current=BEAM_CURRENT, live_time=LIVE_TIME,
    )
    s.metadata.set_item("Acquisition_instrument.TEM.probe_area", PROBE_AREA)
    lines = [q.lines[el] for el in q.composition]
    s.add_lines(lines)
    signals = s.get_lines_intensity()  # one signal per line, sorted by line name
    order = [sig.metadata.Sample.xray_lines[0] for sig in signals]
    by_line = {q.lines[el]: el for el in q.composition}
    for sig in signals:
        sig.data = np.array([q.intensities[by_line[sig.metadata.Sample.xray_lines[0]]]])
    facs = [factors[by_line[line]] for line in order]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = s.quantification(
            signals, method, facs, take_off_angle=TAKEOFF, navigation_mask=None,
            convergence_criterion=1e-10, max_iterations=200, show_progressbar=False,
            **kwargs,
        )
    comp, extra = (out, None) if method == "CL" and "thickness" not in kwargs else out
    return {by_line[line]: float(c.data[0]) for line, c in zip(order, comp, strict=True)}, extra


def test_cliff_lorimer_without_absorption_matches_exspy(capv):
    ds, truth, counts = capv
    els = list(truth)
    w = _exspy_weights(els)
    k_atomic = ds.model.k_factors(els)
    k_weight = {el: k * w[el] for el, k in k_atomic.items()}
    thin = EDXModel()
    q = quantify(counts, els, model=thin, k_factors=KFactors({e: k_weight[e] / w[e] for e in els}))
    assert q.absorption is None and q.absorption_iterations == 0
    ref, _ = _exspy_quantify(q, "CL", k_weight)
    for el in els:
        assert q.composition[el] == pytest.approx(ref[el], abs=1e-9), el
    # weight-basis k-factors (converted with xraylib's atomic weights): the tables differ
    # by < 4e-4 relative, the compositions by < 0.01 at.%
    qw = quantify(counts, els, model=thin, k_factors=KFactors(k_weight, basis="weight"))
    for el in els:
        assert qw.composition[el] == pytest.approx(ref[el], abs=0.01), el


def test_cliff_lorimer_with_absorption_matches_exspy(capv):
    ds, truth, counts = capv
    els = list(truth)
    w = _exspy_weights(els)
    k_weight = {el: k * w[el] for el, k in ds.model.k_factors(els).items()}
    film = EDXModel(thickness=100.0)  # no density: exspy's element-density rule
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the density-estimate warning
        q = quantify(
            counts, els, model=film, k_factors=KFactors({e: k_weight[e] / w[e] for e in els}),
            database="exspy", tol=1e-10, thickness_from="none",  # exspy's: the thickness given
        )
    assert q.absorption_iterations > 1 and min(q.absorption.values()) < 0.97
    ref, mass_thickness = _exspy_quantify(q, "CL", k_weight, absorption_correction=True,
                                          thickness=100.0)
    for el in els:
        assert q.composition[el] == pytest.approx(ref[el], abs=1e-6), el
    assert q.mass_thickness == pytest.approx(float(mass_thickness.data[0]), rel=1e-6)


def test_zeta_factor_method_matches_exspy(capv):
    ds, truth, counts = capv
    els = list(truth)
    zeta = ds.model.zeta_factors(els, solid_angle=SOLID_ANGLE)
    q0 = quantify(counts, els, model=ds.model, method="zeta", zeta_factors=zeta,
                  beam_current=BEAM_CURRENT, live_time=LIVE_TIME, database="exspy",
                  absorption_correction=False)
    ref0, mt0 = _exspy_quantify(q0, "zeta", zeta)
    q = quantify(counts, els, model=ds.model, method="zeta", zeta_factors=zeta,
                 beam_current=BEAM_CURRENT, live_time=LIVE_TIME, database="exspy", tol=1e-10)
    ref, mt = _exspy_quantify(q, "zeta", zeta, absorption_correction=True)
    for el in els:
        assert q0.composition[el] == pytest.approx(ref0[el], abs=1e-9), el
        assert q.composition[el] == pytest.approx(ref[el], abs=1e-6), el
    assert q0.mass_thickness == pytest.approx(float(mt0.data[0]), rel=1e-9)
    assert q.mass_thickness == pytest.approx(float(mt.data[0]), rel=1e-6)
    assert q.mass_thickness > q0.mass_thickness  # absorbed counts undercount the film


def test_cross_section_method_matches_exspy(capv):
    ds, truth, counts = capv
    els = list(truth)
    xs = ds.model.cross_sections(els, solid_angle=SOLID_ANGLE)
    common = dict(model=ds.model, method="cross_section", cross_sections=xs,
                  beam_current=BEAM_CURRENT, live_time=LIVE_TIME, probe_area=PROBE_AREA,
                  database="exspy")
    q0 = quantify(counts, els, absorption_correction=False, **common)
    ref0, atoms0 = _exspy_quantify(q0, "cross_section", xs, probe_area=PROBE_AREA)
    q = quantify(counts, els, tol=1e-10, **common)
    ref, atoms = _exspy_quantify(q, "cross_section", xs, absorption_correction=True,
                                 probe_area=PROBE_AREA)
    order = sorted(els, key=lambda e: q.lines[e])
    for el in els:
        assert q0.composition[el] == pytest.approx(ref0[el], abs=1e-9), el
        assert q.composition[el] == pytest.approx(ref[el], abs=1e-6), el
    for el, a0, a in zip(order, atoms0, atoms, strict=True):
        assert q0.atoms[el] == pytest.approx(float(a0.data[0]), rel=1e-9), el
        assert q.atoms[el] == pytest.approx(float(a.data[0]), rel=1e-6), el


def test_cliff_lorimer_function_is_exspys_formula():
    # exspy: C_a = ab / (1 + ab + ab/ac ...), weight basis; here directly in atomic basis
    comp, _ = cliff_lorimer({"A": 10.0, "B": 30.0}, {"A": 3.0, "B": 1.0},
                            absorption={"A": 0.5, "B": 1.0})
    assert comp == pytest.approx({"A": 100 * 60 / 90, "B": 100 * 30 / 90})


def test_psnmf_defaults_differ_from_exspy_by_the_tables_only(capv):
    """xraylib's attenuation averaged over the family (psnmf) vs FFAST at the main line
    (exspy): the same film and density give compositions within 0.2 at.%."""
    ds, truth, counts = capv
    els = list(truth)
    film = EDXModel(thickness=100.0, density=4.25)
    fit = fit_lines(counts, els, model=film)
    assert fit.intensities
    q_x = quantify(counts, els, model=film)
    q_e = quantify(counts, els, model=film, database="exspy")
    diff = max(abs(q_x.composition[el] - q_e.composition[el]) for el in els)
    assert 0 < diff < 0.2, diff
