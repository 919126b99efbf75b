"""The film's mass thickness from electroneutrality (Van Cappellen 1990), checked against
the ground truth of simulated films (the simulator absorbs the phases' spectra in a film of
known thickness and density; the compositions are the truth)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from psnmf import simulate as sim
from psnmf.physics import EDXModel
from psnmf.quantify import quantify
from psnmf.quantify.electroneutrality import (
    MAX_DISAGREEMENT,
    VALENCES,
    combine_log,
    log_normal_prior,
    main_anion,
    neutral_rows,
    valences_of,
)


def _film(sample: str, thickness: float) -> sim.SimulatedDataset:
    spec = sim.load_sample(sample)
    return sim.sample_dataset(sample, shape=(40, 40), seed=0,
                              model=EDXModel.from_dict(dict(spec["model"], thickness=thickness)))


def _charge(comp: dict[str, float], valences: dict[str, float] | None = None) -> float:
    v = {el: VALENCES[el][0] for el in comp} | dict(valences or {})
    return sum(v[el] * c for el, c in comp.items())


@pytest.mark.parametrize("thickness", [50.0, 200.0])
@pytest.mark.parametrize("sample, phase", [
    ("mantle", "Brg"), ("mantle", "CaPv"), ("ceramic", "8YSZ"), ("ceramic", "spinel"),
    ("thin_layer", "HfO2"), ("nanoparticles", "SiO2"), ("mixed_phase", "Y2Ti2O7"),
])
def test_the_estimate_alone_recovers_the_composition(sample, phase, thickness):
    """Noise-free phase spectra, exact k-factors, no thickness given: the neutral film
    gives every element above 1 at.% within 0.5 at.% (measured worst 0.43, CaPv O, whose
    Table 1 composition is itself 1.6 % off neutral), and a neutral phase's thickness
    within 7 % of the truth (the density given converts the mass thickness)."""
    ds = _film(sample, thickness)
    k = ds.phase_names.index(phase)
    truth = ds.compositions[phase]
    q = quantify(ds.spectra[k], list(truth), model=ds.model, density=ds.densities[phase],
                 thickness_from="electroneutrality", total_counts=1e6, k_factor_sd=0,
                 detection_sigma=None)
    assert q.thickness_estimate is not None and q.thickness_estimate.weight == 1.0
    assert abs(_charge(q.composition)) < 1e-6
    for el, c in truth.items():
        if c >= 1.0:
            assert abs(q.composition[el] - c) < 0.5, (el, q.composition[el], c)
    if abs(_charge(truth)) < 0.2:
        assert q.thickness == pytest.approx(thickness, rel=0.07)
    assert q.mass_thickness == pytest.approx(q.thickness * ds.densities[phase] * 1e-6)


@pytest.fixture(scope="module")
def mantle_counts():
    """The mantle's phase spectra at 100 nm as 3e5-count spectra (Poisson, seed 0): a
    phase of a medium-count map."""
    ds = _film("mantle", 100.0)
    rng = np.random.default_rng(0)
    return ds, [rng.poisson(s / s.sum() * 3e5).astype(float) for s in ds.spectra]


@pytest.mark.parametrize("given", [50.0, 150.0])
def test_thickness_fifty_percent_off_is_corrected_by_the_estimate(mantle_counts, given):
    """The thickness given 50 % off (sd 50 nm): alone, CaPv's O is off by 2.5-2.9 at.%;
    combined with the electroneutral estimate every element above 1 at.% is within
    2 at.% (measured within 0.55) and inside its 95 % interval."""
    ds, spectra = mantle_counts
    worst_given = worst = 0.0
    for k, phase in enumerate(ds.phase_names):
        truth = ds.compositions[phase]
        opts = dict(model=ds.model, density=ds.densities[phase], thickness=given,
                    thickness_sigma=50.0, k_factor_sd=0, detection_sigma=None)
        alone = quantify(spectra[k], list(truth), thickness_from="none", **opts)
        q = quantify(spectra[k], list(truth), thickness_from="electroneutrality", **opts)
        assert set(q.uncertainty_budget) == {"counting", "thickness"}
        for el, c in truth.items():
            if c >= 1.0:
                worst_given = max(worst_given, abs(alone.composition[el] - c))
                err = q.composition[el] - c
                worst = max(worst, abs(err))
                assert abs(err) <= 2 * q.uncertainty[el], (phase, el, err, q.uncertainty[el])
    assert worst_given > 2.0
    assert worst < 2.0


def test_the_counting_sd_of_the_estimate_is_its_spread():
    """40 Poisson draws of a 1e5-count Brg spectrum (valences stated, stoichiometric):
    the sd of the estimated mass thickness matches the counting sd reported (within
    30 %, the precision of an sd from 40 draws being 11 %)."""
    ds = _film("mantle", 100.0)
    k = ds.phase_names.index("Brg")
    s = ds.spectra[k] / ds.spectra[k].sum() * 1e5
    rng = np.random.default_rng(1)
    values, sds = [], []
    for _ in range(40):
        q = quantify(rng.poisson(s).astype(float), list(ds.compositions["Brg"]),
                     model=ds.model, density=4.1, thickness_from="electroneutrality",
                     valences={"Fe": 3}, charge_balance_sd=0, k_factor_sd=0,
                     detection_sigma=None)
        est = q.thickness_estimate.estimate
        assert est.sd == pytest.approx(est.sd_counting)
        values.append(est.value)
        sds.append(est.sd_counting)
    assert np.std(values, ddof=1) == pytest.approx(np.mean(sds), rel=0.3)


def test_the_k_factor_part_re_estimates_the_thickness():
    """With theoretical k-factor sds (O K's is 45 %), the k-factor part with the thickness
    re-estimated per draw equals a brute-force re-quantification with drawn k-factors
    (150 draws, within 25 %), and O's part is smaller than with the thickness held (the
    neutral film takes up an O k-factor drawn low; one drawn high leaves O in excess even
    without absorption, which no film corrects: the thickness given is used then)."""
    ds = _film("ceramic", 100.0)
    k = ds.phase_names.index("spinel")
    els = ["Mg", "Al", "O"]
    opts = dict(model=ds.model, density=3.58, total_counts=1e6, detection_sigma=None)
    q = quantify(ds.spectra[k], els, thickness_from="electroneutrality", **opts)
    held = quantify(ds.spectra[k], els, thickness=100.0, thickness_from="none", **opts)
    assert q.uncertainty_budget["k_factors"]["O"] < held.uncertainty_budget["k_factors"]["O"]
    kf = ds.model.k_factors(els, {el: q.fit.families[el] for el in els})
    rng = np.random.default_rng(2)
    out = []
    for _ in range(150):
        drawn = {}
        for el in els:
            sl = math.sqrt(math.log1p(q.k_factor_sd[el] ** 2))
            drawn[el] = kf[el] * math.exp(rng.standard_normal() * sl - sl**2 / 2)
        r = quantify(ds.spectra[k], els, k_factors=drawn, thickness_from="electroneutrality",
                     k_factor_sd=0, **opts)
        out.append([r.composition[el] for el in els])
    brute = np.std(out, axis=0, ddof=1)
    for j, el in enumerate(els):
        assert q.uncertainty_budget["k_factors"][el] == pytest.approx(brute[j], rel=0.25), el


def test_rows_are_solved_as_each_alone():
    """neutral_rows on several k-factor rows equals each row solved alone; a row whose
    O is in excess even without absorption stops at 0 (status -1)."""
    from psnmf.quantify.absorption import absorption_tables

    model = EDXModel(thickness=100.0)
    els = ["Mg", "Si", "O"]
    fams = {el: model.quant_family(el) for el in els}
    tables = absorption_tables(model, fams, els)
    spec = model.phase_spectrum({"Mg": 20, "Si": 20, "O": 60}, density=4.1)
    q = quantify(spec, els, model=model, density=4.1, total_counts=1e6, detection_sigma=None)
    i = np.array([q.intensities[el] for el in els])
    k = np.array([q.k_factors[el] for el in els]) * np.array(
        [[1.0, 1, 1], [1.1, 0.9, 1.0], [1.0, 1.0, 0.9], [1.0, 1.0, 1.3]])
    v, _, _ = valences_of(els)
    comp, mt, status = neutral_rows(k, i, v, tables)
    assert list(status) == [0, 0, 0, -1]                 # O k-factor 30 % high: O in excess
    assert np.allclose(comp[:3] @ v, 0.0, atol=1e-6) and comp[3] @ v < 0 and mt[3] == 0.0
    assert mt[0] == pytest.approx(4.1 * 100e-6, rel=0.02)
    for r in range(4):
        c1, m1, _ = neutral_rows(k[r], i, v, tables)
        assert np.allclose(c1[0], comp[r]) and m1[0] == pytest.approx(mt[r])


def test_valences_stated_or_assumed_and_phases_without_one():
    """TiN: a nitride, so Ti takes its nitride state +3 (not the +4 of TiO2, which
    would balance Ti 43 / N 57): the neutral 50/50, as with Ti +3 stated; Ti +4 stated
    moves it. In an oxide Ti is +4 (of 4/3, with its sd). A metal (Si substrate) and a
    phase with an element without a valence (carbon of a support film) keep the
    thickness given, with a note; bad valences are refused naming the input."""
    ds = _film("thin_layer", 50.0)
    opts = dict(model=ds.model, total_counts=1e6, detection_sigma=None, k_factor_sd=0,
                thickness_from="electroneutrality")
    tin = ds.spectra[ds.phase_names.index("TiN")]
    q = quantify(tin, ["Ti", "N"], density=5.22, **opts)
    assert q.composition == pytest.approx({"Ti": 50.0, "N": 50.0}, abs=0.02)
    assert q.thickness_estimate.estimate.sd_valence == 0.0
    assert not any("valences assumed" in n for n in q.notes)
    q3 = quantify(tin, ["Ti", "N"], density=5.22, valences={"Ti": 3}, **opts)
    assert q3.composition == pytest.approx({"Ti": 50.0, "N": 50.0})
    assert q3.composition == pytest.approx(q.composition)
    q4 = quantify(tin, ["Ti", "N"], density=5.22, valences={"Ti": 4}, **opts)
    assert q4.composition["N"] > 55.0                     # the oxide's Ti +4 is wrong here
    assert main_anion(["Ti", "O", "N"], [50, 10, 40]) == "N"
    assert main_anion(["Ti", "O", "N"], [34, 50, 16]) == "O"
    v, sd, assumed = valences_of(["Ti", "O"], anion="O")
    assert list(v) == [4, -2] and list(sd) == [0.5, 0] and assumed == ["Ti"]
    v, sd, assumed = valences_of(["Ti", "Zr", "N"], anion="N")
    assert list(v) == [3, 3, -3] and list(sd) == [0, 0.5, 0] and assumed == ["Zr"]
    si = quantify(ds.spectra[ds.phase_names.index("Si")], ["Si"], **opts)
    assert si.thickness_estimate is None and si.thickness == 50.0
    assert any("an anion and a cation" in n for n in si.notes)
    cat = sim.sample_dataset("catalyst", shape=(40, 40), seed=0)
    sup = quantify(cat.spectra[cat.phase_names.index("support")], ["C", "O", "Si"],
                   model=cat.model, total_counts=1e6, detection_sigma=None, k_factor_sd=0,
                   thickness_from="electroneutrality")
    assert sup.thickness_estimate is None and any("no valence for ['C']" in n
                                                  for n in sup.notes)
    with pytest.raises(ValueError, match="valences"):
        quantify(tin, ["Ti", "N"], valences={"Fe": 2}, **opts)
    with pytest.raises(ValueError, match="valences: Ti must be a number"):
        quantify(tin, ["Ti", "N"], valences={"Ti": "three"}, **opts)
    with pytest.raises(ValueError, match="thickness_from"):
        quantify(tin, ["Ti", "N"], **dict(opts, thickness_from="guess"))
    with pytest.raises(ValueError, match="absorption_correction=False"):
        quantify(tin, ["Ti", "N"], absorption_correction=False, **opts)


def test_auto_refines_a_thickness_given_with_its_sd_and_nothing_else():
    """``thickness_from="auto"`` (the default): a thickness given with an sd, 50 % off,
    is refined by the charge balance (8YSZ at 100 nm given as 50 +- 50 nm: within 0.1
    at.%, where the thickness alone leaves 5.7). It changes nothing where the estimate has
    no footing: a thickness without an sd (compared in a note; Cu2O, whose Cu the table
    takes as +2, would get a 430 nm film and 17 at.% of O too many from the estimate
    alone), a thin film, a metal, and an estimate that disagrees with the prior beyond 3
    sd (a component mixing Pd metal, counted as Pd2+, with TiO2: O 3.8 at.% too high
    combined with 50 +- 10 nm, 12 from the estimate alone)."""
    ds = _film("ceramic", 100.0)
    k = ds.phase_names.index("8YSZ")
    truth = ds.compositions["8YSZ"]
    opts = dict(model=ds.model, density=5.95, total_counts=1e6, k_factor_sd=0,
                detection_sigma=None)
    off = dict(opts, thickness=50.0, thickness_sigma=50.0)
    auto = quantify(ds.spectra[k], list(truth), **off)
    alone = quantify(ds.spectra[k], list(truth), thickness_from="none", **off)
    assert auto.thickness_estimate is not None and 0 < auto.thickness_estimate.weight < 1
    assert max(abs(auto.composition[el] - c) for el, c in truth.items()) < 0.1
    assert max(abs(alone.composition[el] - c) for el, c in truth.items()) > 5.0

    def same_as_given(q, given, note):
        assert q.thickness_estimate is None and q.composition == given.composition
        assert q.thickness == given.thickness
        assert any(note in n for n in q.notes), q.notes

    thin = dict(opts, thickness=0.0)
    q = quantify(ds.spectra[k], list(truth), **thin)
    assert q.thickness_estimate is None and q.absorption is None and q.notes == []
    film = EDXModel(thickness=50.0, density=6.0)
    cu2o = {"Cu": 66.67, "O": 33.33}
    spec = film.phase_spectrum(cu2o)
    given = dict(model=film, total_counts=1e6, k_factor_sd=0)
    q = quantify(spec, ["Cu", "O"], **given)
    same_as_given(q, quantify(spec, ["Cu", "O"], thickness_from="none", **given),
                  "has no sd to weigh it against")
    assert q.composition == pytest.approx(cu2o, abs=0.2)
    forced = quantify(spec, ["Cu", "O"], thickness_from="electroneutrality", **given)
    assert forced.composition["O"] - cu2o["O"] > 10.0   # the table's Cu +2, believed
    mix = {"Pd": 30.0, "Ti": 23.33, "O": 46.67}
    spec = film.phase_spectrum(mix)
    given = dict(given, thickness_sigma=10.0)
    q = quantify(spec, list(mix), **given)
    same_as_given(q, quantify(spec, list(mix), thickness_from="none", **given),
                  "disagrees with the thickness given")
    assert q.composition == pytest.approx(mix, abs=0.1)
    forced = quantify(spec, list(mix), thickness_from="electroneutrality", **given)
    assert forced.composition["O"] - mix["O"] > 3.0     # combined with 50 +- 10 nm
    metal = EDXModel(thickness=50.0, density=8.9)
    spec = metal.phase_spectrum({"Ni": 80, "Cr": 20})
    same_as_given(quantify(spec, ["Ni", "Cr"], model=metal, thickness_sigma=10.0),
                  quantify(spec, ["Ni", "Cr"], model=metal, thickness_sigma=10.0,
                           thickness_from="none"),
                  "an anion and a cation")


def test_the_prior_is_log_normal_in_the_mass_thickness():
    """A thickness given with its sd is a log-normal prior (median the thickness times
    the density, log sd the relative sd), combined with the estimate and tested in log
    mass thickness: a factor 2 above or below the prior is the same number of sd (a
    Gaussian in ``rho t`` puts the half 1 sd off and the double 1 sd off only when its sd
    is the prior's value)."""
    mu, s = log_normal_prior(2.0e-4, 50.0, 25.0)
    assert math.exp(mu) == pytest.approx(2.0e-4) and s == 0.5
    up = combine_log(4.0e-4, 4.0e-5, mu, s)
    down = combine_log(1.0e-4, 1.0e-5, mu, s)
    assert up[3] == pytest.approx(-down[3]) and up[3] > 0
    s_e = 0.1
    w = s**2 / (s**2 + s_e**2)
    assert up[2] == pytest.approx(w)
    assert up[0] == pytest.approx(math.exp(w * math.log(4.0e-4) + (1 - w) * mu))
    assert up[1] == pytest.approx((1 / s_e**2 + 1 / s**2) ** -0.5)
    assert up[3] == pytest.approx(math.log(2.0) / math.hypot(s_e, s))


def test_auto_takes_an_estimate_a_factor_off_the_prior_and_sets_a_mixed_one_aside():
    """The thin layer's phases at 60 nm (noise-free), each quantified as an unnamed
    component (the mean of the sample's phase densities, 4.86 +- 3.03 g/cm^3).

    * HfO2 with its thickness given at 25 +- 25 nm: its estimate, 5.8e-4 kg/m^2, is 4.8 x
      the prior's median (25 nm x 4.86), 1.3 sd in log mass thickness, so 'auto' uses it
      and recovers the composition (the Gaussian prior put it 3.1 sd off and set it
      aside: Hf 5 at.% too high).
    * SiO2 mixed with 10 % of the Si substrate's spectrum (an unmixing error: cations in
      excess) has an estimate 5.6 x its film (7.4e-4 kg/m^2 for 1.3e-4); with the density
      given (2.2) and 50 +- 25 nm it is 3.8 sd off and set aside. With 25 +- 25 nm and an
      unnamed component's density spread (log sd 1.18) it is 1.5 sd off and used: no test
      on the prior can tell it from HfO2's, 4.8 x the median; its composition is then
      SiO2's, the charge balance of a binary oxide being its stoichiometry."""
    spec = sim.load_sample("thin_layer")
    ds = sim.sample_dataset("thin_layer", shape=(40, 40), seed=0, model=EDXModel.from_dict(
        dict(spec["model"], thickness=60.0)))
    opts = dict(model=ds.model, total_counts=1e6, k_factor_sd=0, detection_sigma=None)
    hfo2 = ds.spectra[ds.phase_names.index("HfO2")]
    off = dict(opts, thickness=25.0, thickness_sigma=25.0)
    q = quantify(hfo2, ["Hf", "O"], **off)
    alone = quantify(hfo2, ["Hf", "O"], thickness_from="none", **off)
    n = q.thickness_estimate
    assert n is not None and 1.0 < n.disagreement < MAX_DISAGREEMENT
    assert n.value == pytest.approx(9.68 * 60e-6, rel=0.03)     # the film, refined
    assert n.prior == pytest.approx(4.86 * 25e-6, rel=0.01)
    assert n.prior_log_sd == pytest.approx(math.hypot(1.0, 3.03 / 4.86), rel=0.01)
    assert q.composition == pytest.approx({"Hf": 33.33, "O": 66.67}, abs=0.05)
    assert alone.composition["Hf"] - 33.33 > 4.5
    lo, hi = n.bounds()
    assert lo * hi == pytest.approx(n.value**2) and hi / n.value == pytest.approx(
        math.exp(n.log_sd))
    # the Gaussian in rho t that the log-normal replaced: more than 3 sd apart
    e = n.estimate
    assert (e.value - n.prior) / math.hypot(e.sd, n.prior_log_sd * n.prior) > 3.0
    si, sio2 = (ds.spectra[ds.phase_names.index(p)] for p in ("Si", "SiO2"))
    mixed = 0.9 * sio2 / sio2.sum() + 0.1 * si / si.sum()
    given = dict(opts, thickness=50.0, thickness_sigma=25.0, density=2.2)
    q = quantify(mixed, ["Si", "O"], **given)
    assert q.thickness_estimate is None
    assert any("disagrees with the thickness given" in note for note in q.notes)
    assert q.composition == quantify(mixed, ["Si", "O"], thickness_from="none",
                                     **given).composition
    forced = quantify(mixed, ["Si", "O"], thickness_from="electroneutrality", **given)
    assert forced.thickness_estimate.estimate.value > 5.0 * 2.2 * 60e-6
    loose = quantify(mixed, ["Si", "O"], **off)
    assert loose.thickness_estimate is not None
    assert loose.thickness_estimate.disagreement < MAX_DISAGREEMENT
    assert loose.composition == pytest.approx({"Si": 33.33, "O": 66.67}, abs=0.1)
