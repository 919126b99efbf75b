"""The error budget of compositions: k-factor uncertainty, detection limits, exclusions,
overlapping families and k-factors calibrated on an internal standard."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from psnmf import physics
from psnmf import simulate as sim
from psnmf.quantify import (
    DETECTOR_WINDOWS,
    THEORETICAL_K_SD,
    calibrate_k_factors,
    k_factor_spread,
    quantify,
    read_k_factors,
    theoretical_k_sd,
    window_sd,
)

MODEL = physics.EDXModel()
TRUTH = {name: physics.normalize_composition(c) for name, c in sim.MANTLE_PHASES.items()}
#: A 100 nm mantle film, and the same film seen through another physics: Bethe constant
#: 2 instead of 1 and a 0.15 um detector window instead of 0.1 um (k-factors +24 % for
#: O, +2 % Mg, -6 % Fe relative to Si): data whose k-factors are not the model's.
FILM = physics.EDXModel(thickness=100.0, phase_densities={"Brg": 4.1, "Fp": 4.09, "CaPv": 4.25})
OTHER = replace(FILM, bethe_c=2.0, window=(("Si3N4", 0.15, 3.44),))


def counts(model, phase, n=2e6, seed=0):
    """Poisson counts of a mantle phase's spectrum (``n`` counts in all)."""
    spec = model.phase_spectrum(TRUTH[phase], phase=phase)
    return np.random.default_rng(seed).poisson(n * spec)


def test_theoretical_k_sd_is_the_emission_and_the_window_part():
    """The emission part by family and energy, and the window part: the spread over the
    detector windows of the efficiency at the line relative to Si K (computed here from
    the model's efficiencies)."""
    si = MODEL.main_line("Si", "K").energy

    def window_part(element, family):
        e = MODEL.main_line(element, family).energy
        logs = []
        for w in DETECTOR_WINDOWS:
            eff = replace(MODEL, window=w).efficiency(np.array([e, si]))
            logs.append(math.log(eff[0] / eff[1]))
        return float(np.std(logs, ddof=1))

    assert window_sd(MODEL.main_line("O", "K").energy) == pytest.approx(window_part("O", "K"))
    assert 0.35 < window_part("O", "K") < 0.5     # O K: 0.92 to 0.31 of Si K's efficiency
    for el, fam, emission in [("O", "K", 0.15), ("Mg", "K", 0.10), ("Fe", "K", 0.05),
                              ("Fe", "L", 0.25), ("Nd", "L", 0.15), ("U", "M", 0.25)]:
        assert theoretical_k_sd(el, fam) == pytest.approx(math.hypot(emission,
                                                                     window_part(el, fam)))
    assert window_part("Fe", "K") < 0.02 and window_part("Mg", "K") < 0.05
    assert 0.4 < theoretical_k_sd("O", "K") < 0.5 < theoretical_k_sd("C", "K")
    assert {fam for fam, _, _ in THEORETICAL_K_SD} == set(physics.FAMILIES)
    with pytest.raises(ValueError, match="family"):
        theoretical_k_sd("Fe", "N")


def test_k_factors_for_another_window_are_within_the_stated_sd():
    """The model's k-factors (100 nm Si3N4) against those of the extreme windows, none and
    300 nm: every ratio to Si within 2 sd of the stated k-factor sd (O K: 0.8 and 1.6)."""
    els = ["O", "Na", "Mg", "Al", "Si", "Ca", "Fe"]
    ours = MODEL.k_factors(els)
    for window in [(), (("Si3N4", 0.3, 3.44),)]:
        theirs = replace(MODEL, window=window).k_factors(els)
        for el in els:
            fam = MODEL.quant_family(el)
            err = math.log((theirs[el] / theirs["Si"]) / (ours[el] / ours["Si"]))
            assert abs(err) <= 2 * theoretical_k_sd(el, fam), (window, el, err)


def test_k_factor_spread_agrees_with_the_delta_method_for_small_errors():
    intens = {"Mg": 3.0, "Si": 2.0, "O": 5.0}
    k = {"Mg": 1.1, "Si": 1.0, "O": 2.0}
    sd = {"Mg": 0.01, "Si": 0.02, "O": 0.01}
    mc = k_factor_spread(intens, k, sd, n_draws=20000)
    x = {el: k[el] * intens[el] for el in intens}
    c = {el: v / sum(x.values()) for el, v in x.items()}
    for a in intens:  # dC_A / dln k_B = C_A (delta_AB - C_B)
        lin = 100 * math.sqrt(sum((c[a] * ((a == b) - c[b]) * sd[b]) ** 2 for b in intens))
        assert mc[a] == pytest.approx(lin, rel=0.05)
    assert k_factor_spread(intens, k, {}) == {el: 0.0 for el in intens}


def test_theoretical_k_factors_on_other_physics_are_covered():
    """Quantified with the model's k-factors at the thickness given, the other physics'
    films are several at.% off (O by 5-6 at.%); counting noise alone (2 million counts)
    claims a few tenths, the budget with the k-factor part covers every element above
    1 at.% within 2 sd. The default ``thickness_from="auto"`` keeps the thickness given
    without its sd (noted). Given 100 +- 50 nm (log-normal, log sd 0.5), the charge
    balance takes up the O k-factor's error: it puts Brg's film at 3.4 x and CaPv's at
    2.1 x the thickness given (2.5 and 1.5 sd in log mass thickness), which refines both
    (Brg's O 4.8 at.% off with the thickness given, 0.3 with the estimate), and Fp's at
    6 x (3.3 sd: set aside, the thickness given is used): every element still within
    2 sd."""
    missed_by_counting = 0
    for phase in TRUTH:
        truth = TRUTH[phase]
        opts = dict(model=FILM, density=dict(FILM.phase_densities)[phase])
        auto = quantify(counts(OTHER, phase), list(truth), **opts)
        given = quantify(counts(OTHER, phase), list(truth), thickness_from="none", **opts)
        assert auto.thickness_estimate is None and auto.composition == given.composition
        with_sd = quantify(counts(OTHER, phase), list(truth), thickness_sigma=50.0, **opts)
        assert (with_sd.thickness_estimate is None) == (phase == "Fp")
        for el, c in truth.items():
            if c >= 1.0 and el in with_sd.composition:
                err = with_sd.composition[el] - c
                assert abs(err) <= 2 * with_sd.uncertainty[el], (phase, el, err)
        q = quantify(counts(OTHER, phase), list(truth), thickness_from="none", **opts)
        assert set(q.uncertainty_budget) == {"counting", "k_factors"}
        for el, c in truth.items():
            if c < 1.0 or el not in q.composition:
                continue
            err = q.composition[el] - c
            missed_by_counting += abs(err) > 2 * q.uncertainty_budget["counting"][el]
            assert abs(err) <= 2 * q.uncertainty[el], (phase, el, err, q.uncertainty[el])
        assert abs(q.composition["O"] - truth["O"]) > 3.0
    assert missed_by_counting >= 8


def test_a_known_window_leaves_the_emission_part():
    """With the detector window stated (the model's is the detector's), the theoretical
    sd is the emission part alone (O K 0.15 instead of 0.45); data of another emission
    physics (Bethe constant 2) behind the model's own window are still covered within
    2 sd by the narrower budget, which is at most half as wide for O."""
    for el, fam, emission in [("O", "K", 0.15), ("Mg", "K", 0.10), ("Fe", "K", 0.05),
                              ("Nd", "L", 0.15)]:
        assert theoretical_k_sd(el, fam, window_known=True) == emission
    same_window = replace(FILM, bethe_c=2.0)
    for phase in TRUTH:
        truth = TRUTH[phase]
        opts = dict(model=FILM, density=dict(FILM.phase_densities)[phase])
        known = quantify(counts(same_window, phase), list(truth), detector_window_known=True,
                         **opts)
        unknown = quantify(counts(same_window, phase), list(truth), **opts)
        assert known.k_factor_sd["O"] == pytest.approx(0.15)
        assert known.uncertainty["O"] < 0.5 * unknown.uncertainty["O"]
        for el, c in truth.items():
            if c >= 1.0 and el in known.composition:
                err = known.composition[el] - c
                assert abs(err) <= 2 * known.uncertainty[el], (phase, el, err)


def test_k_factor_file_uncertainty(tmp_path):
    truth = TRUTH["Fp"]
    els = list(truth)
    kf = MODEL.k_factors(els)
    path = tmp_path / "k.csv"
    path.write_text("element,k,sigma\n" + "".join(
        f"{e},{kf[e]},{0.1 * kf[e] if e != 'Cu' else ''}\n" for e in els))
    table = read_k_factors(path)
    assert table.relative_sd == pytest.approx({e: 0.1 for e in els if e != "Cu"})
    q = quantify(MODEL.phase_spectrum(truth), els, model=MODEL, k_factors=table)
    assert q.k_factor_sd == {**{e: pytest.approx(0.1) for e in els if e != "Cu"}, "Cu": 0.0}
    assert any("Cu" in note for note in q.notes)  # the missing uncertainty is said
    assert q.uncertainty_budget["k_factors"]["Fe"] > 0.5
    with pytest.raises(ValueError, match="sigma"):
        (tmp_path / "bad.csv").write_text("Fe,1.0,x\n")
        read_k_factors(tmp_path / "bad.csv")


def test_absent_element_is_below_the_detection_limit():
    truth = TRUTH["Fp"]  # Mg, Fe, O and 1 at.% Cu
    els = [*truth, "Ca", "Ti"]
    limits = {}
    for n in (2e5, 2e6):
        q = quantify(counts(MODEL, "Fp", n), els, model=MODEL)
        assert set(q.below_detection) == {"Ca", "Ti"}
        assert set(q.composition) == set(truth)
        assert sum(q.composition.values()) == pytest.approx(100.0)
        assert q.significance["Cu"] > 3 and q.significance["Ca"] < 3
        limits[n] = q.below_detection["Ca"]
        assert 0 < limits[n] < 0.5
    # the limit falls as the square root of the counts
    assert limits[2e5] / limits[2e6] == pytest.approx(math.sqrt(10), rel=0.35)
    assert "below the detection limit" in q.table()
    everything = quantify(counts(MODEL, "Fp", 2e5), els, model=MODEL, detection_sigma=None)
    assert set(everything.composition) == set(els)


def test_excluded_elements_leave_the_totals():
    truth = TRUTH["Fp"]
    q = quantify(MODEL.phase_spectrum(truth), list(truth), model=MODEL, exclude_elements=["Cu"])
    assert q.excluded == ["Cu"] and "Cu" not in q.composition
    rest = physics.normalize_composition({e: c for e, c in truth.items() if e != "Cu"})
    for el, c in rest.items():
        assert q.composition[el] == pytest.approx(c, abs=0.05)
    with pytest.raises(ValueError, match="exclude_elements"):
        quantify(MODEL.phase_spectrum(truth), list(truth), model=MODEL, exclude_elements=["W"])


def test_overlapping_families_are_tied_or_flagged():
    rng = np.random.default_rng(0)
    # Ti K (4.51 keV) under Ba L (4.47 keV): no Ba K below 20 keV, flagged
    bt = {"Ba": 20.0, "Ti": 20.0, "O": 60.0}
    q = quantify(rng.poisson(2e6 * MODEL.phase_spectrum(bt)), list(bt), model=MODEL)
    assert [(a, b) for a, b, _ in q.unresolved] == [("Ba", "Ti")]
    assert q.unresolved[0][2] < -0.5
    # S K (2.31) / Mo L (2.29) / Pb M (2.35): the Mo L family is tied to Mo K (17.5 keV)
    smp = {"S": 10.0, "Mo": 10.0, "Pb": 10.0, "O": 70.0}
    q = quantify(rng.poisson(2e6 * MODEL.phase_spectrum(smp)), list(smp), model=MODEL)
    assert "Mo_L" in q.fit.tied
    assert ("S", "Mo") in [(a, b) for a, b, _ in q.unresolved]
    for el, c in smp.items():
        assert q.composition[el] == pytest.approx(c, abs=4 * q.uncertainty_budget["counting"][el])
    # Mg K / Al K / O K are resolved: nothing flagged
    mao = {"Mg": 20.0, "Al": 20.0, "O": 60.0}
    q = quantify(rng.poisson(2e6 * MODEL.phase_spectrum(mao)), list(mao), model=MODEL)
    assert q.unresolved == [] and q.fit.tied == []


def test_calibration_on_one_phase_recovers_another():
    """Other physics: calibrated on the Brg film (known composition), the Fp film comes
    out within 0.5 at.% (theoretical k-factors: O 5 at.% off), inside its interval."""
    std = TRUTH["Brg"]
    kf = calibrate_k_factors(counts(OTHER, "Brg"), std, ["Mg", "Fe", "O", "Cu"], model=FILM,
                             density=4.1)
    for el, c in std.items():  # the counting error of the standard only
        assert kf.relative_sd[el] < (0.02 if c >= 1.0 else 0.3), (el, kf.relative_sd[el])
    assert kf.relative_sd["Cu"] > theoretical_k_sd("Cu", "K")  # not in the standard
    truth = TRUTH["Fp"]
    spec = counts(OTHER, "Fp", seed=1)
    theo = quantify(spec, list(truth), model=FILM, density=4.09, thickness_from="none")
    cal = quantify(spec, list(truth), model=FILM, density=4.09, k_factors=kf,
                   thickness_from="none")  # the standard's film: the thickness given
    assert abs(theo.composition["O"] - truth["O"]) > 3.0
    for el in ("Mg", "Fe", "O"):
        err = cal.composition[el] - truth[el]
        assert abs(err) < 0.5, (el, err)
        # the line fit itself leaves up to ~0.15 at.% here (measured noise-free, 0.05-0.09
        # at.% on the model's own films too: absorbed families are fitted with thin-film
        # line ratios), which no part of the budget holds
        assert abs(err) <= 2 * cal.uncertainty[el] + 0.15, (el, err, cal.uncertainty[el])
        assert cal.uncertainty[el] < theo.uncertainty[el] / 3
    with pytest.raises(ValueError, match="counts"):
        calibrate_k_factors(MODEL.phase_spectrum(std), std, model=MODEL)
    with pytest.raises(ValueError, match="not significant"):
        calibrate_k_factors(counts(MODEL, "Fp", 2e5), {**TRUTH["Fp"], "Ca": 1.0}, model=MODEL)
