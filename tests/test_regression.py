"""The paper's configuration and the defaults reproduce recorded results.

The numbers below are fits of the conftest toy (48 x 48 x 200, three phases, seed 0) by the
paper's configuration and by the defaults; the CHANGELOG says when and why they were last
re-recorded. A change of code that is not meant to change a result must reproduce them:
iteration counts exactly, the rest to rounding (``rtol=1e-10``, room for a different order
of floating-point sums across machines, far below any change of method).
"""

from __future__ import annotations

import numpy as np
import pytest

from psnmf import PSNMF

RECORDED = {
    "paper": {
        "params": {"spectra": "nmf", "smoothing": None},
        "n_iter": {"binned": 1411, "full": 295},
        "loss_end": {"binned": 13987.736649852595, "full": 93957.27514505375},
        "map_means": [0.26305752498202484, 0.10916132413111818, 0.6277811508868564],
        "map_sq": 1614.3517135498448,
        "spectra_sq": [0.048416176095318515, 0.029290694424281213, 0.03691678430842426],
        "smoothing_lam": 0.0,
        "moved": [False, False, False],
    },
    "defaults": {
        "params": {},
        "n_iter": {"binned": 1411, "full": 500},
        "loss_end": {"binned": 13987.736649862956, "full": 94873.3871358916},
        "map_means": [0.16994097691532037, 0.07495426638582497, 0.755104756698855],
        "map_sq": 1982.2996225398738,
        "spectra_sq": [0.048416176095318515, 0.029290694424281213, 0.03310682920392631],
        "smoothing_lam": 6.782037915055475,
        "moved": [False, False, True],
    },
}

@pytest.mark.parametrize("name", sorted(RECORDED))
def test_configuration_reproduces_the_recorded_fit(toy, name):
    rec = RECORDED[name]
    m = PSNMF(3, 4, random_state=0, **rec["params"]).fit(toy.counts)
    assert m.n_iter_ == rec["n_iter"]
    assert m.vertex_moved_.tolist() == rec["moved"]
    close = {"rtol": 1e-10, "atol": 0}
    np.testing.assert_allclose([m.loss_[s][-1] for s in ("binned", "full")],
                               [rec["loss_end"][s] for s in ("binned", "full")], **close)
    np.testing.assert_allclose(m.maps_.mean(axis=(0, 1)), rec["map_means"], **close)
    np.testing.assert_allclose((m.maps_ ** 2).sum(), rec["map_sq"], **close)
    np.testing.assert_allclose((m.spectra_ ** 2).sum(axis=1), rec["spectra_sq"], **close)
    np.testing.assert_allclose(m.smoothing_["lam"], rec["smoothing_lam"], **close)
