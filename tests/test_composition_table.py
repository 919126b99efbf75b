"""The composition table of ``psnmf unmix``: the phase x element matrix in the terminal,
``composition.csv``, ``summary.json`` and the report, with every part of the error budget,
and the command-line options that set the quantification."""

from __future__ import annotations

import csv
import json

import pytest

from psnmf.cli import build_parser, main
from psnmf.cli.unmix import quantify_options
from psnmf.pipeline import format_summary, unmix
from psnmf.simulate import mantle

FAST = {"progress": False, "max_iter": 300, "max_iter_full": 60, "smoothing": None}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    ds = mantle("medium", seed=4, shape=(40, 40))
    out = tmp_path_factory.mktemp("comp") / "res"
    res = unmix(ds.to_signal(), n_components=3, bin_factor=4, seed=0, n_boot=4,
                output_dir=out, quantify_options={"thickness": 100.0, "thickness_sigma": 30.0,
                                                  "exclude_elements": ["Cu"],
                                                  # the thickness given, not refined
                                                  "thickness_from": "none"}, **FAST)
    return ds, res, out


def test_terminal_matrix_and_summary(run):
    ds, res, out = run
    comp = res.summary.composition
    assert comp.parts == ["counting", "nmf", "k_factors", "thickness"]
    assert comp.options["thickness_nm"] == 100.0 and comp.options["excluded"] == ["Cu"]
    text = format_summary(res)
    assert "composition, at.% ± sd and 95% interval" in text
    assert "excluded" in text and "±" in text and "<" in text  # Cu; values; a DL
    for r in comp.rows:
        if r["element"] == "Cu":
            assert r["status"] == "excluded"
        if r["status"] == "quantified":
            b = r["budget"]
            assert set(b) == {"bootstrap", "counting", "nmf", "k_factors", "thickness"}
            assert r["sd"] == pytest.approx((b["bootstrap"] ** 2 + b["k_factors"] ** 2
                                             + b["thickness"] ** 2) ** 0.5)
            assert r["low"] <= r["at_percent"] <= r["high"]
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["composition"]["rows"]
    assert len(rows) == len(comp.rows) and summary["files"]["composition"] == "composition.csv"
    assert any(r["status"] == "below_detection_limit" and r["detection_limit"] > 0
               for r in rows)
    # each component's film: the thickness given, with the density it was converted by
    film = summary["composition"]["thickness"]
    assert sorted(film) == comp.components
    for t in film.values():
        assert t["source"] == "given" and "estimate" not in t
        assert t["thickness_nm"] == 100.0
        assert t["mass_thickness_kg_m2"] == pytest.approx(t["density_g_cm3"] * 100.0 * 1e-6)
    assert "film (electroneutrality)" not in text


def test_csv_and_report(run):
    ds, res, out = run
    with open(out / "composition.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(res.summary.composition.rows)
    o = next(r for r in table if r["element"] == "O" and r["status"] == "quantified")
    assert float(o["k_factors"]) > 1.0 and float(o["thickness"]) >= 0 and float(o["sd"]) > 0
    page = (out / "report.html").read_text()
    assert "Error budget" in page and "k_factors" in page and "excluded" in page
    assert "film thickness" not in page  # the thickness given: no column


def test_command_line_options(tmp_path):
    args = build_parser().parse_args(
        ["unmix", "x.bcf", "--thickness", "80,20", "--exclude-elements", "Cu,Si",
         "--k-factors", "k.csv", "--method", "zeta", "--beam-current", "0.5",
         "--live-time", "60"])
    opts = quantify_options(args)
    assert opts["thickness"] == 80.0 and opts["thickness_sigma"] == 20.0
    assert opts["exclude_elements"] == ["Cu", "Si"] and opts["method"] == "zeta"
    assert str(opts["k_factors"]) == "k.csv" and opts["live_time"] == 60.0
    assert quantify_options(build_parser().parse_args(["unmix", "x.bcf"])) == {}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["unmix", "x.bcf", "--thickness", "thin"])
    missing = tmp_path / "none.csv"
    code = main(["unmix", str(tmp_path / "nofile.bcf"), "--k-factors", str(missing)])
    assert code != 0
