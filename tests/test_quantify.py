"""Tests of quantification: line fitting, Cliff-Lorimer, k-factor files, uncertainties."""

from __future__ import annotations

import json

import numpy as np
import pytest

from psnmf import physics
from psnmf import simulate as sim
from psnmf.quantify import (
    KFactors,
    cliff_lorimer,
    fit_lines,
    quantify,
    quantify_spectra,
    read_k_factors,
)

MODEL = physics.EDXModel()
TRUTH = {name: physics.normalize_composition(c) for name, c in sim.MANTLE_PHASES.items()}


@pytest.mark.parametrize("phase", ["Brg", "Fp", "CaPv"])
def test_noise_free_phase_returns_its_composition(phase):
    truth = TRUTH[phase]
    q = quantify(MODEL.phase_spectrum(truth), list(truth), model=MODEL)
    for el, c in truth.items():
        assert q.composition[el] == pytest.approx(c, abs=0.05), el
    # a normalised spectrum carries no counting statistics: only the k-factor part
    assert set(q.uncertainty_budget) == {"k_factors"}
    assert q.uncertainty == q.uncertainty_budget["k_factors"]
    assert sum(q.composition.values()) == pytest.approx(100.0)
    assert q.lines["Nd" if "Nd" in truth else "Fe"] in ("Nd_La", "Fe_Ka")


def test_overlapping_lines_are_separated():
    # Nd La (5.23) / Sm La (5.64) / Nd Lb (5.72), and Y L / Zr L: a fit, not windows
    comp = {"Nd": 20.0, "Sm": 5.0, "Y": 5.0, "Zr": 20.0, "O": 50.0}
    q = quantify(MODEL.phase_spectrum(comp), list(comp), model=MODEL)
    for el, c in comp.items():
        assert q.composition[el] == pytest.approx(c, abs=0.05)


@pytest.mark.parametrize("phase", ["Brg", "Fp", "CaPv"])
def test_noisy_12x12_region_within_reported_uncertainty(phase):
    # 12 x 12 pure pixels at 147 counts/pixel, summed: about 21 000 counts
    truth = TRUTH[phase]
    maps = np.ones((12, 12, 1))
    ds = sim.simulate({phase: truth}, maps, 147, seed=11)
    summed = ds.counts.sum(axis=(0, 1))
    q = quantify(summed, list(truth), model=MODEL, detection_sigma=None)
    counting = q.uncertainty_budget["counting"]
    for el, c in truth.items():
        err = q.composition[el] - c
        assert abs(err) < 4.5 * counting[el] + 1e-9, (el, err, counting[el])
    # the counting part scales as counting statistics: relative error of O ~ 1 %
    assert 0.2 < counting["O"] < 1.0


def test_uncertainties_are_calibrated():
    truth = TRUTH["Fp"]
    spec = MODEL.phase_spectrum(truth)
    rng = np.random.default_rng(0)
    z = []
    for _ in range(40):
        q = quantify(rng.poisson(spec * 20000), list(truth), model=MODEL, k_factor_sd=0)
        z.append([(q.composition[e] - truth[e]) / q.uncertainty[e] for e in truth])
    z = np.array(z)
    assert np.all(np.abs(z.mean(axis=0)) < 0.6)
    assert np.all((z.std(axis=0) > 0.6) & (z.std(axis=0) < 1.5))


def test_total_counts_rescales_normalised_spectra():
    truth = TRUTH["Brg"]
    spec = MODEL.phase_spectrum(truth)
    q1 = quantify(spec, list(truth), model=MODEL, total_counts=1e4, k_factor_sd=0,
                  detection_sigma=None)
    q2 = quantify(spec, list(truth), model=MODEL, total_counts=4e4, k_factor_sd=0,
                  detection_sigma=None)
    assert q1.uncertainty["Mg"] == pytest.approx(2 * q2.uncertainty["Mg"], rel=0.02)
    assert q1.composition["Mg"] == pytest.approx(truth["Mg"], abs=0.05)


def test_fit_lines_reports_intensities_and_continuum():
    truth = TRUTH["Fp"]
    n = 50000.0
    fit = fit_lines(MODEL.phase_spectrum(truth) * n, list(truth), model=MODEL)
    assert fit.families == {"Mg": "K", "Fe": "K", "O": "K", "Cu": "K"}
    expected_fe = n * truth["Fe"] / 100 * MODEL.line_intensity("Fe", "K")
    expected_fe /= MODEL.phase_spectrum(truth, normalize=False).sum()
    assert fit.intensities["Fe"] == pytest.approx(expected_fe, rel=1e-6)
    np.testing.assert_allclose(
        fit.continuum.sum(),
        n * MODEL.continuum(truth).sum() / MODEL.phase_spectrum(truth, normalize=False).sum(),
        rtol=1e-6,
    )
    assert "Fe_L" in fit.labels  # the Fe L family is fitted on its own


def test_signal_input_uses_its_metadata():
    ds = sim.mantle("medium", seed=0, shape=(12, 12))
    s = ds.to_signal()
    region = s.sum(s.axes_manager.navigation_axes)
    q = quantify(region)  # elements, beam energy and axis from the metadata
    # every element is quantified or reported below its detection limit
    assert set(q.composition) | set(q.below_detection) == set(ds.elements)
    assert set(q.below_detection) <= {"Nd", "Sm", "U", "Cu"}   # the 0.1-1 at.% ones
    assert abs(sum(q.composition.values()) - 100) < 1e-9
    with pytest.raises(ValueError, match="sum a region first"):
        quantify(s)


def test_k_factor_files(tmp_path):
    import xraylib

    truth = TRUTH["Fp"]
    elements = list(truth)
    spec = MODEL.phase_spectrum(truth)
    reference = quantify(spec, elements, model=MODEL)  # the model's own k-factors
    kf = MODEL.k_factors(elements)
    csv_path = tmp_path / "k.csv"
    csv_path.write_text("element,k\n# from the model\n" + "".join(f"{e},{kf[e]}\n" for e in kf))
    table = read_k_factors(csv_path)
    assert table.values == pytest.approx(kf) and table.basis == "atomic"
    q = quantify(spec, elements, model=MODEL, k_factors=csv_path)
    # weight-basis JSON keyed by line labels gives the same answer
    weights = {f"{e}_Ka": k * xraylib.AtomicWeight(physics.atomic_number(e)) for e, k in kf.items()}
    json_path = tmp_path / "k.json"
    json_path.write_text(json.dumps({"basis": "weight", "k_factors": weights}))
    q2 = quantify(spec, elements, model=MODEL, k_factors=json_path)
    for el in truth:
        assert q.composition[el] == pytest.approx(reference.composition[el], abs=1e-9)
        assert q2.composition[el] == pytest.approx(reference.composition[el], abs=1e-9)
    assert q2.lines["Fe"] == "Fe_Ka"
    # a k-factor file can choose the line family (Fe L instead of Fe K)
    kl = MODEL.k_factors(elements, families={"Fe": "L"})
    lfile = tmp_path / "kl.json"
    lfile.write_text(json.dumps({f"{e}_La" if e == "Fe" else e: k for e, k in kl.items()}))
    q3 = quantify(spec, elements, model=MODEL, k_factors=lfile)
    assert q3.lines["Fe"] == "Fe_La"
    assert q3.composition["Fe"] == pytest.approx(truth["Fe"], abs=0.05)


def test_k_factor_file_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Fe,1.0\nXx,2.0\n")
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        read_k_factors(bad)
    neg = tmp_path / "neg.csv"
    neg.write_text("Fe,-1\n")
    with pytest.raises(ValueError, match="positive"):
        read_k_factors(neg)
    with pytest.raises(FileNotFoundError):
        read_k_factors(tmp_path / "missing.csv")
    spec = MODEL.phase_spectrum(TRUTH["Fp"])
    with pytest.raises(ValueError, match=r"no k-factor for \['Cu'\]"):
        quantify(spec, list(TRUTH["Fp"]), model=MODEL, k_factors={"Mg": 1, "Fe": 1, "O": 1})


def test_bad_input_is_rejected_clearly():
    spec = MODEL.phase_spectrum(TRUTH["Fp"])
    with pytest.raises(ValueError, match="give the elements"):
        quantify(spec)
    with pytest.raises(ValueError, match="channels"):
        quantify(spec[:100], ["Mg", "O"])
    with pytest.raises(ValueError, match="non-negative"):
        quantify(-spec, ["Mg", "O"])
    with pytest.raises(ValueError, match="unknown element"):
        quantify(spec, ["Mg", "Qq"])
    with pytest.raises(ValueError, match="no M lines"):
        quantify(spec, ["Mg", "O"], families={"Mg": "M"})


def test_cliff_lorimer_and_quantify_spectra():
    comp, unc = cliff_lorimer({"A": 10.0, "B": 30.0}, {"A": 3.0, "B": 1.0})
    assert comp == pytest.approx({"A": 50.0, "B": 50.0}) and unc is None
    comp, unc = cliff_lorimer({"A": 10.0, "B": 30.0}, {"A": 3.0, "B": 1.0}, np.diag([10.0, 30.0]))
    assert unc["A"] == pytest.approx(unc["B"])  # two elements: equal and opposite errors
    out = quantify_spectra(sim.mantle("low", shape=(8, 8)).spectra, ["Mg", "Si", "Fe", "O"])
    assert len(out) == 3 and all(abs(sum(q.composition.values()) - 100) < 1e-9 for q in out)
    assert isinstance(KFactors({"Fe_Ka": 1.0}).lines["Fe"], str)
