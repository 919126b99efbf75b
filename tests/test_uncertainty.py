"""Tests of psnmf.uncertainty: parametric bootstrap error bars and their calibration."""

from __future__ import annotations

import numpy as np
import pytest

from psnmf import PSNMF
from psnmf.improve import PSNMFPlus, score
from psnmf.simulate import mantle, sample_dataset
from psnmf.uncertainty import (
    _quantify,
    bootstrap,
    composition_intervals,
    coverage,
    debiased_spectra,
)


@pytest.fixture(scope="module")
def fitted():
    ds = mantle("low", seed=100, shape=(48, 48))
    m = PSNMFPlus(3, 4, random_state=0).fit(ds.counts)
    res = bootstrap(m, ds.counts, n_boot=10, elements=list(ds.elements),
                    edx_model=ds.model, random_state=0)
    return ds, m, res


def test_bootstrap_shapes_and_spread(fitted):
    ds, m, res = fitted
    assert res.refit == "cold"
    assert res.replicates.shape == (10, *m.spectra_.shape)
    assert res.debiased.shape == m.spectra_.shape
    assert res.debiased_replicates.shape == res.replicates.shape
    kept = ~m.vertex_moved_  # vertices the correction did not move: nothing to debias
    np.testing.assert_allclose(res.debiased[kept], m.spectra_[kept])
    np.testing.assert_allclose(res.replicates.sum(axis=-1), 1.0)
    assert np.all(res.spectra_std >= 0) and res.spectra_std.max() > 0
    for meth in ("bias", "basic", "percentile"):
        iv = composition_intervals(res, method=meth)
        for j in range(3):
            for el in ds.elements:
                lo, hi, sd = iv[j][el]
                assert 0.0 <= lo <= hi <= 100.0 and sd >= 0
    text = res.composition_table(names=["a", "b", "c"])
    assert "95% interval (bias)" in text and "Mg" in text


def test_composition_rows(fitted):
    ds, m, res = fitted
    rows = res.composition_rows(names=["Brg", "Fp", "CaPv"])
    assert len(rows) == 3 * len(ds.elements)
    assert {"component", "element", "at_percent", "sd", "low", "high"} <= set(rows[0])
    assert [r["component"] for r in rows[:: len(ds.elements)]] == ["Brg", "Fp", "CaPv"]
    iv = composition_intervals(res)
    for r in rows:
        j = ["Brg", "Fp", "CaPv"].index(r["component"])
        assert r["at_percent"] == pytest.approx(res.compositions[j][r["element"]])
        assert (r["low"], r["high"], r["sd"]) == iv[j][r["element"]]
        # the bias-aware interval always contains the estimate (and the debiased one)
        assert r["low"] <= r["at_percent"] <= r["high"]
        assert r["low"] <= r["debiased"] <= r["high"]
    wider = res.composition_rows(level=0.99)
    assert all(w["high"] - w["low"] >= r["high"] - r["low"] - 1e-12
               for w, r in zip(wider, rows, strict=True))
    with pytest.raises(ValueError, match="names"):
        res.composition_rows(names=["only one"])


def test_basic_and_percentile_intervals(fitted):
    ds, m, res = fitted
    j, el = 0, "Mg"
    v = np.array([rep[j][el] for rep in res.composition_replicates])
    q = np.quantile(v, [0.025, 0.975])
    t = res.compositions[j][el]
    lo, hi, sd = composition_intervals(res, method="percentile")[j][el]
    assert (lo, hi) == pytest.approx(tuple(q))
    lo, hi, _ = composition_intervals(res, method="basic")[j][el]
    assert (lo, hi) == pytest.approx((2 * t - q[1], 2 * t - q[0]))
    assert sd == pytest.approx(v.std(ddof=1))


def test_bootstrap_is_deterministic(fitted):
    ds, m, res = fitted
    again = bootstrap(m, ds.counts, n_boot=3, random_state=0)  # the same stream, shorter
    np.testing.assert_allclose(again.replicates, res.replicates[:3])
    np.testing.assert_allclose(again.debiased_replicates, res.debiased_replicates[:3])


def test_warm_refit_is_the_former_scheme(fitted):
    ds, m, _ = fitted
    res = bootstrap(m, ds.counts, n_boot=4, refit="warm", random_state=0)
    assert res.refit == "warm" and res.debiased is None
    assert res.replicates.shape == (4, *m.spectra_.shape)


def test_plain_psnmf_has_no_debiased_spectra(fitted):
    ds, _, _ = fitted
    m = PSNMF(3, 4, random_state=0).fit(ds.counts)
    res = bootstrap(m, ds.counts, n_boot=3, elements=["Mg", "Fe"], edx_model=ds.model)
    assert res.debiased is None and res.debiased_compositions is None
    rows = res.composition_rows()
    assert all(r["debiased"] is None and r["low"] <= r["at_percent"] <= r["high"]
               for r in rows)
    with pytest.raises(ValueError, match="PSNMFPlus"):
        debiased_spectra(m, ds.counts)


def test_validation(fitted):
    ds, m, res = fitted
    with pytest.raises(ValueError, match="method"):
        composition_intervals(res, method="studentized")
    with pytest.raises(ValueError, match="level"):
        composition_intervals(res, level=95)
    with pytest.raises(ValueError, match="refit"):
        bootstrap(m, ds.counts, n_boot=2, refit="hot")
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap(m, ds.counts, n_boot=1)
    with pytest.raises(ValueError, match="n_splits"):
        debiased_spectra(m, ds.counts, n_splits=0)
    bare = bootstrap(m, ds.counts, n_boot=2, refit="warm")
    with pytest.raises(ValueError, match="elements"):
        composition_intervals(bare)
    with pytest.raises(ValueError, match="elements"):
        bare.composition_rows()


def _errors(spectra, order, ds):
    q = _quantify(spectra, list(ds.elements), ds.model)
    return [abs(q[order[i]][el] - v) for i, p in enumerate(ds.phase_names)
            for el, v in ds.compositions[p].items() if v >= 0.5]


def test_debiased_spectra_remove_the_selection_bias():
    """With the fixed-fraction vertex correction the Al2Cu / alpha-Al vertices overshoot by a
    winner's curse (1-2 at.% at 'medium'); selecting on one thinned half and averaging on
    the other removes most of it (seeds 100-105: mean |error| 0.63 -> 0.25 at.%). (The
    adaptive pure-cluster selection, the default, averages many more pixels and has little
    such bias left: there the debiased spectra are one more estimate, not a better one.)"""
    est, deb = [], []
    for seed in (100, 101, 102):
        ds = sample_dataset("eutectic", snr="medium", seed=seed, shape=(60, 60))
        m = PSNMFPlus(3, 4, random_state=0, vertex_select="fixed").fit(ds.counts)
        order = score(m.spectra_, m.maps_, ds)["order"]
        d = debiased_spectra(m, ds.counts)
        np.testing.assert_allclose(d.sum(axis=1), 1.0)
        e, f = np.mean(_errors(m.spectra_, order, ds)), np.mean(_errors(d, order, ds))
        assert f < e
        est.append(e)
        deb.append(f)
    assert np.mean(deb) < 0.6 * np.mean(est)


def _coverage(ds, m, res, got):
    order = score(m.spectra_, m.maps_, ds)["order"]
    truth = [ds.compositions[p] for p in ds.phase_names]
    for meth in got:
        i, n = coverage(res, truth, order, method=meth)
        got[meth][0] += i
        got[meth][1] += n


@pytest.mark.parametrize(("sample", "seeds", "minimum"), [("mantle", (101, 102), 0.7),
                                                          ("eutectic", (100, 101), 0.85)])
def test_coverage_is_calibrated(fitted, sample, seeds, minimum):
    """Nominal 95 %: the bias-aware interval covers the true compositions far more often
    than the basic one. benchmarks/coverage.py (60 x 60, 8 seeds, mantle + eutectic, both
    SNR) measures 88-100 % per sample and SNR; here, 48 x 48 'low' and 10 replicates:
    mantle seeds 100-102 42/54 vs 35/54 (basic), eutectic seeds 100-101 14/14 vs 9/14."""
    got = {"bias": [0, 0], "basic": [0, 0]}
    if sample == "mantle":  # seed 100 is the module fixture
        _coverage(*fitted, got)
    for seed in seeds:
        ds = sample_dataset(sample, snr="low", seed=seed, shape=(48, 48))
        m = PSNMFPlus(3, 4, random_state=0).fit(ds.counts)
        res = bootstrap(m, ds.counts, n_boot=10, elements=list(ds.elements),
                        edx_model=ds.model, random_state=0)
        _coverage(ds, m, res, got)
    bias, basic = (got[k][0] / got[k][1] for k in ("bias", "basic"))
    assert got["bias"][1] >= 14
    assert bias >= minimum
    assert bias > basic
