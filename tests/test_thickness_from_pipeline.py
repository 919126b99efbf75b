"""``psnmf unmix`` with the film's mass thickness measured from the component spectra
(``--thickness-from electroneutrality``, ``--valence``, ``--detector-window-known``): the
options reach the quantification, and summary.json, the terminal summary and the report
say which film each component was corrected for."""

from __future__ import annotations

import json
import math
import tomllib
import warnings

import pytest

import psnmf.uncertainty
from psnmf.cli import build_parser, main
from psnmf.cli.unmix import quantify_options
from psnmf.quantify import theoretical_k_sd
from psnmf.simulate import mantle

FAST = ["-k", "3", "-b", "4", "--smoothing", "none", "--bootstrap", "4", "--max-iter", "300",
        "--max-iter-full", "60", "--quiet"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The mantle (a 100 nm film, phase densities 4.09-4.25 g/cm^3), 32 x 32, unmixed from
    the command line with the thickness given 50 % off (50 +- 50 nm), estimated from the
    spectra with the mantle's own valences (Fe2+, U4+), the grid's Cu excluded, the
    detector window known; the options the bootstrap got and its quantifications are
    recorded."""
    root = tmp_path_factory.mktemp("film")
    data = mantle("medium", seed=0, shape=(32, 32))
    src = root / "mantle.hspy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data.to_signal().save(src)
    seen: dict = {}
    original = psnmf.uncertainty.bootstrap

    def recording(*args, **kwargs):
        seen["options"] = dict(kwargs.get("quantify_options") or {})
        res = original(*args, **kwargs)
        seen["result"] = res
        return res

    mp = pytest.MonkeyPatch()
    mp.setattr(psnmf.uncertainty, "bootstrap", recording)
    try:
        code = main(["unmix", str(src), "-o", str(root / "out"), *FAST,
                     "--thickness", "50,50", "--thickness-from", "electroneutrality",
                     "--valence", "Fe=2", "--valence", "U=4", "--detector-window-known",
                     "--exclude-elements", "Cu"])
    finally:
        mp.undo()
    assert code == 0
    return data, root / "out", seen


def test_the_options_reach_the_quantification(run):
    data, _, seen = run
    opts = seen["options"]
    assert opts["thickness_from"] == "electroneutrality"
    assert opts["valences"] == {"Fe": 2.0, "U": 4.0}
    assert opts["detector_window_known"] is True
    assert (opts["thickness"], opts["thickness_sigma"]) == (50.0, 50.0)
    qs = seen["result"].quantifications
    assert all(q.thickness_estimate is not None for q in qs)
    for q in qs:  # the valences stated are balanced, with no valence sd
        v = dict(zip(q.composition, q.thickness_estimate.valence, strict=True))
        assert v["Fe"] == 2.0 and v["O"] == -2.0
        # the window known: O K's theoretical sd without the window part (0.45 -> 0.15)
        model = q.fit.model
        assert q.k_factor_sd["O"] == pytest.approx(theoretical_k_sd("O", "K", model, True))
        assert q.k_factor_sd["O"] < 0.5 * theoretical_k_sd("O", "K", model, False)


def test_summary_json_carries_each_components_film(run):
    """Each component's film: the thickness used, the estimate's parts and its weight
    against the thickness given (50 +- 50 nm, half the true 100 nm). Bridgmanite and
    CaPv, whose O K is well measured, get films of 92 and 107 nm (weights 0.93, 0.94);
    ferropericlase's estimate is poor at these counts (counting sd about its value,
    weight 0.57), as its sd says."""
    _, out, seen = run
    summary = json.loads((out / "summary.json").read_text())
    comp = summary["composition"]
    assert comp["options"]["thickness_from"] == "electroneutrality"
    assert comp["options"]["valences"] == {"Fe": 2.0, "U": 4.0}
    assert comp["options"]["detector_window_known"] is True
    qs = seen["result"].quantifications
    assert sorted(comp["thickness"]) == [f"#{j}" for j in range(len(qs))]
    well = 0
    for j, q in enumerate(qs):
        t = comp["thickness"][f"#{j}"]
        e = q.thickness_estimate
        assert t["source"] == "electroneutrality"
        assert t["thickness_nm"] == pytest.approx(q.thickness)
        assert t["mass_thickness_kg_m2"] == pytest.approx(q.mass_thickness)
        assert t["mass_thickness_sd_kg_m2"] == pytest.approx(q.mass_thickness_sigma)
        assert t["thickness_sd_nm"] == pytest.approx(q.mass_thickness_sigma / q.density * 1e6)
        assert t["estimate"]["value"] == pytest.approx(e.estimate.value)
        parts = [t["estimate"][p] for p in ("sd_counting", "sd_valence", "sd_stoichiometry")]
        assert t["estimate"]["sd"] == pytest.approx(sum(p * p for p in parts) ** 0.5)
        assert t["estimate"]["sd_valence"] == 0.0  # every valence stated
        assert 0.0 < t["weight"] < 1.0 and t["weight"] == pytest.approx(e.weight)
        assert t["prior_kg_m2"] == pytest.approx(e.prior)
        assert t["valences"]["Fe"] == 2.0 and t["valences"]["O"] == -2.0
        # the value used is the inverse-variance mean of the estimate and the log-normal
        # prior in log mass thickness
        w = t["weight"]
        assert t["mass_thickness_kg_m2"] == pytest.approx(math.exp(
            w * math.log(t["estimate"]["value"]) + (1 - w) * math.log(t["prior_kg_m2"])))
        if t["weight"] > 0.9:  # well measured: near the true 100 nm, not the given 50
            assert 80.0 < t["thickness_nm"] < 120.0
            well += 1
    assert well == 2
    cfg = tomllib.loads((out / "config.toml").read_text())["quantify"]
    assert cfg["thickness_from"] == "electroneutrality" and cfg["detector_window_known"]
    assert cfg["valences"] == {"Fe": 2.0, "U": 4.0}


def test_report_and_terminal_show_the_film(run):
    from psnmf.pipeline.summary import Composition

    _, out, _ = run
    page = (out / "report.html").read_text()
    assert "<th>film thickness</th>" in page and "electroneutrality" in page
    assert page.count("(estimated, weight") == 3
    comp = json.loads((out / "summary.json").read_text())["composition"]
    table = Composition(**comp)
    text = table.to_text()
    assert "film (electroneutrality): #0 " in text and " nm (estimated, weight" in text
    t0 = comp["thickness"]["#0"]
    assert table.thickness_cell("#0").startswith(
        f"{t0['thickness_nm']:.0f} ± {t0['thickness_sd_nm']:.0f} nm")


def test_film_options_reach_the_quantification_options():
    """--thickness-from, --valence (repeated), --charge-balance-sd and
    --detector-window-known set the quantify options; left out, nothing is set."""
    args = build_parser().parse_args(
        ["unmix", "x.bcf", "--thickness", "80,40", "--thickness-from", "electroneutrality",
         "--valence", "Fe=3", "--valence", "C=-4", "--charge-balance-sd", "0.02",
         "--detector-window-known"])
    assert quantify_options(args) == {
        "thickness": 80.0, "thickness_sigma": 40.0, "thickness_from": "electroneutrality",
        "valences": {"Fe": 3.0, "C": -4.0}, "charge_balance_sd": 0.02,
        "detector_window_known": True}
    none = quantify_options(build_parser().parse_args(
        ["unmix", "x.bcf", "--thickness-from", "none", "--no-detector-window-known"]))
    assert none == {"thickness_from": None}  # quantify's default is "auto"
    assert quantify_options(build_parser().parse_args(["unmix", "x.bcf"])) == {}


@pytest.mark.parametrize("argv, message", [
    (["--valence", "fe=3"], "'fe' is not a chemical symbol"),
    (["--valence", "Fe"], "give ELEMENT=VALENCE"),
    (["--valence", "Fe=three"], "give ELEMENT=VALENCE"),
    (["--thickness-from", "charge"], "invalid choice"),
])
def test_bad_film_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["unmix", "x.bcf", *argv])
    assert message in capsys.readouterr().err


def test_a_valence_given_twice_is_refused(tmp_path, capsys):
    code = main(["unmix", str(tmp_path / "x.hspy"), "--valence", "Fe=2", "--valence", "Fe=3"])
    assert code == 2
    assert "--valence gives Fe twice" in capsys.readouterr().err


def test_the_replicates_are_corrected_for_the_film_of_the_estimate(run):
    """With the thickness estimated, the replicates weigh the given thickness against their
    own estimate as the estimate does (``thickness_sigma`` kept): their mean O lies within
    1 at.% of the estimate's (measured: Brg 0.02, Fp 0.88, CaPv 0.16). Quantified as if
    the given 50 nm were exact, they were 0.83, 0.70 and 2.64 at.% away, where they spread
    by 0.15-0.65 at.%. Fp's film is weakly determined at these counts (weight 0.57), so
    its replicates' own estimates scatter and their mean carries the estimator's
    nonlinearity, which the bias-aware interval uses (``2 t - mean``)."""
    _, _, seen = run
    res = seen["result"]
    gaps = []
    for j, comp in enumerate(res.compositions):
        reps = [rep[j]["O"] for rep in res.composition_replicates]
        gaps.append(abs(sum(reps) / len(reps) - comp["O"]))
    assert max(gaps) < 1.0 and sorted(gaps)[1] < 0.3, gaps
