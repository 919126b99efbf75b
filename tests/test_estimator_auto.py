"""PSNMF(n_components='auto', bin_factor='auto'): the data choose k and b, with evidence."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from psnmf import PSNMF
from psnmf.selection import DEFAULT_BINS, DEFAULT_COMPONENTS, choose_model, count_split
from psnmf.simulate import mantle


@pytest.fixture(scope="module")
def data():
    return mantle("medium", seed=0, shape=(64, 64))


@pytest.fixture(scope="module")
def auto(data):
    return PSNMF("auto", "auto", random_state=0).fit(data.counts)


def test_auto_finds_the_three_phases_and_keeps_the_evidence(auto):
    assert auto.n_components_ == 3
    assert auto.spectra_.shape[0] == 3 and auto.maps_.shape == (64, 64, 3)
    sel = auto.selection_
    assert (sel.n_components, sel.bin_factor) == (3, auto.bin_factor_)
    # k from 2 up, stopped at the first rise of the deviance after k = 3
    assert sel.components == list(DEFAULT_COMPONENTS[:3])
    assert set(sel.bins) <= set(DEFAULT_BINS) and auto.bin_factor_ in sel.bins
    scored = [t for t in sel.k_search.trials if t.candidate.n_components == 3]
    assert scored[0].deviance == min(t.deviance for t in sel.k_search.trials)


def test_auto_is_the_fit_at_the_chosen_values(data, auto):
    given = PSNMF(auto.n_components_, auto.bin_factor_, random_state=0).fit(data.counts)
    np.testing.assert_array_equal(given.maps_, auto.maps_)
    np.testing.assert_array_equal(given.spectra_, auto.spectra_)
    assert given.selection_ is None


def test_auto_uses_the_one_selection_search(data, auto):
    """Same split, same candidate fits (the estimator's own method, pure-pixel spectra, no
    smoothing, the search's caps): the evidence of selection.choose_model itself."""
    counts = data.counts.reshape(-1, data.counts.shape[-1])
    X1, X2 = count_split(counts.astype(float), 0.5, random_state=0)

    def fit(X, b, k):
        return PSNMF(k, b, smoothing=None, random_state=0, max_iter=200,
                     max_iter_full=50, image_shape=(64, 64)).fit(X)

    ref = choose_model(X1, X2, (64, 64), fit, seed=0)
    assert [t.deviance for t in ref.trials] == [t.deviance for t in auto.selection_.trials]
    assert ref.k_search.deviances == auto.selection_.k_search.deviances


def test_auto_b_with_given_k_runs_no_k_search(data):
    model = PSNMF(3, "auto", spectra="nmf", smoothing=None, random_state=1).fit(data.counts)
    assert model.n_components_ == 3 and model.selection_.k_search is None
    assert {t.candidate.n_components for t in model.selection_.trials} == {3}


def test_auto_refused_on_lazy_data_and_misspelt(data):
    lazy = da.from_array(data.counts, chunks=(16, 64, -1))
    with pytest.raises(ValueError, match="needs it in memory"):
        PSNMF("auto", 4, smoothing=None).fit(lazy)
    with pytest.raises((TypeError, ValueError), match="n_components"):
        PSNMF("automatic", 4).fit(data.counts)
