"""psnmf.pipeline.unmix on simulated data with known truth: the default pipeline
(pure-pixel spectra, TV maps with a chosen weight, bootstrap compositions) against the
paper's PSNMF on the same counts."""

from __future__ import annotations

import numpy as np
import pytest

from psnmf.metrics import compare_to_truth
from psnmf.pipeline import unmix
from psnmf.simulate import mantle

FAST = {"progress": False, "max_iter": 400, "max_iter_full": 200}


@pytest.fixture(scope="module")
def runs():
    ds = mantle("low", seed=3, shape=(90, 90))
    sig = ds.to_signal()
    default = unmix(sig, n_components=3, bin_factor=4, seed=0, n_boot=8, **FAST)
    paper = unmix(sig, n_components=3, bin_factor=4, seed=0, smoothing=None, vertex=False,
                  n_boot=0, **FAST)
    return ds, default, paper


def test_default_pipeline_beats_the_papers_psnmf(runs):
    ds, default, paper = runs
    maps_d = np.moveaxis(np.asarray(default.maps.data), 0, -1)
    maps_p = np.moveaxis(np.asarray(paper.maps.data), 0, -1)
    d = compare_to_truth(default.model.spectra_, maps_d, ds.spectra, ds.maps)
    p = compare_to_truth(paper.model.spectra_, maps_p, ds.spectra, ds.maps)
    assert d["mse"].mean() < 0.5 * p["mse"].mean(), (d["mse"], p["mse"])
    assert d["angle"].mean() <= p["angle"].mean() + 0.05, (d["angle"], p["angle"])
    # the smoothed maps predict held-out counts better than per-pixel maps
    assert default.deviance.psnmf < paper.deviance.psnmf
    sm = default.summary.smoothing
    assert sm.penalty == "tv" and sm.relative > 0 and len(sm.deviance) >= 2
    assert paper.summary.smoothing.lam == 0
    np.testing.assert_allclose(maps_d.sum(-1), 1.0, atol=1e-9)


def test_composition_table_has_intervals_around_the_truth(runs):
    ds, default, paper = runs
    comp = default.summary.composition
    assert paper.summary.composition is None
    rows = comp.rows
    assert {r["element"] for r in rows} == set(comp.elements)
    order = compare_to_truth(default.model.spectra_, np.moveaxis(default.maps.data, 0, -1),
                             ds.spectra, ds.maps)["order"]
    inside = total = 0
    for i, phase in enumerate(ds.phase_names):
        truth = ds.compositions[phase]
        for r in rows:
            if r["component"] != f"#{order[i]}":
                continue
            if r["status"] != "quantified":  # below the detection limit: no composition
                assert r["at_percent"] is None and truth.get(r["element"], 0.0) < 1.0
                continue
            assert r["low"] <= r["at_percent"] <= r["high"] and r["sd"] >= 0
            t = truth.get(r["element"], 0.0)
            if t >= 1.0:
                total += 1
                inside += int(r["low"] - 0.5 <= t <= r["high"] + 0.5)
    assert total >= 6
    assert inside / total >= 0.6, (inside, total)
