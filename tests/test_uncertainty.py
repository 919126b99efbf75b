"""Tests of psnmf.uncertainty: parametric bootstrap error bars and their calibration."""

from __future__ import annotations

import numpy as np
import pytest

from psnmf.improve import PSNMFPlus, score
from psnmf.simulate import mantle
from psnmf.uncertainty import bootstrap, composition_intervals, coverage


@pytest.fixture(scope="module")
def fitted():
    ds = mantle("medium", seed=100, shape=(48, 48))
    m = PSNMFPlus(3, 4, random_state=0).fit(ds.counts)
    res = bootstrap(m, ds.counts, n_boot=10, elements=list(ds.elements),
                    edx_model=ds.model, random_state=0)
    return ds, m, res


def test_bootstrap_shapes_and_spread(fitted):
    ds, m, res = fitted
    assert res.replicates.shape == (10, *m.spectra_.shape)
    assert np.all(res.spectra_std >= 0) and res.spectra_std.max() > 0
    iv = composition_intervals(res)
    for j in range(3):
        for el in ds.elements:
            lo, hi, sd = iv[j][el]
            assert lo <= hi and sd >= 0
    text = res.composition_table(names=["a", "b", "c"])
    assert "95% interval" in text and "Mg" in text


def test_bootstrap_is_deterministic(fitted):
    ds, m, res = fitted
    again = bootstrap(m, ds.counts, n_boot=10, random_state=0)
    np.testing.assert_allclose(again.replicates, res.replicates)


def test_coverage_in_a_sane_band(fitted):
    """Measured ~70 % at nominal 95 % (benchmarks/coverage.py): under-covered, because the
    bootstrap does not see the bias of the non-unique NMF. Guard against regressions."""
    ds, m, res = fitted
    order = score(m.spectra_, m.maps_, ds)["order"]
    truth = [ds.compositions[p] for p in ds.phase_names]
    inside, total = coverage(res, truth, order)
    assert total >= 15
    assert inside / total >= 0.5
