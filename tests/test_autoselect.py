"""Automatic choice of k and b (pipeline.sweep / unmix) on simulated samples of known k.

Every built-in sample has three phases. Scored by the full-resolution held-out deviance at
about 50 counts per binned pixel, k = 2 wins for all four samples at the 'low' preset (18
counts/pixel; these images, and 180 x 180, seeds 0-2) and for the catalyst at 'medium' on
180 x 180; k is therefore chosen on the binned stage (selection.choose_components). Each
test names the true and the chosen k when they differ.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf.pipeline import sweep
from psnmf.selection import (
    COMPONENT_FOLDS,
    MIN_BINNED_PIXELS,
    TARGET_BINNED_COUNTS,
    choose_components,
    components_bin_factor,
    count_folds,
)
from psnmf.simulate import load_sample, sample_dataset

SAMPLES = ["mantle", "eutectic", "ceramic", "catalyst"]
#: Image side per case: 96 pixels, except the catalyst at 'low', whose Pt particles hold
#: about 5000 counts on a 96 x 96 image, too few for any held-out score to favour a third
#: component (measured: the binned stage prefers k = 2 there by about one fold-to-fold
#: standard deviation); on 128 x 128 they hold about 6200 and k = 3 wins in every fold.
SIZE = {("catalyst", "low"): 128}


def _signal(sample: str, snr: str, seed: int = 0):
    ds = sample_dataset(sample, snr=snr, seed=seed, shape=(SIZE.get((sample, snr), 96),) * 2)
    return ds, ds.to_signal()


@pytest.mark.parametrize("snr", ["medium", "low"])
@pytest.mark.parametrize("sample", SAMPLES)
def test_sweep_finds_the_number_of_phases(sample, snr):
    ds, signal = _signal(sample, snr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = sweep(signal, bins=(4, 8, 16), progress=False).selection
    true_k, chosen_k = ds.n_phases, sel.n_components
    k_scores = {t.candidate.n_components: round(t.deviance, 5) for t in sel.k_search.trials}
    assert chosen_k == true_k, (
        f"{sample} ({snr}): true k = {true_k}, chosen k = {chosen_k}; binned-stage held-out "
        f"deviance per k at b = {sel.k_bin}: {k_scores}"
    )
    # k in increasing order, stopped at the first rise of the deviance after its minimum
    assert sel.components == list(range(2, true_k + 2))
    assert min(k_scores, key=k_scores.get) == chosen_k
    # b: the best held-out deviance (8 x 8 sums) among the bins at that k, every one tried,
    # from the largest down
    b_trials = sel.b_search.trials
    tried = [t.candidate.bin_factor for t in b_trials]
    assert tried == [16, 8, 4] and {t.candidate.n_components for t in b_trials} == {true_k}
    assert sel.best.deviance == min(t.deviance for t in b_trials)
    assert "binned stage" in sel.to_text() and sel.to_dict()["k_stage"]["bin_factor"] == sel.k_bin


def _mantle_variant(n_phases: int) -> dict:
    """The mantle sample with its CaPv grains removed (2 phases) or a spinel added (4)."""
    sample = load_sample("mantle")
    micro = sample["microstructure"]
    if n_phases == 2:
        sample["phases"].pop("CaPv")
        micro["grains"] = micro["grains"][:1]
    else:
        sample["phases"]["Sp"] = {"Mg": 14.3, "Al": 28.6, "O": 57.1}
        micro["grains"].append(
            {"phase": "Sp", "radius": 7.0, "radius_spread": 0.3, "area_fraction": 0.12}
        )
    sample["name"] = f"mantle{n_phases}"
    return sample


@pytest.mark.parametrize("n_phases", [2, 4])
def test_sweep_is_not_tied_to_three_phases(n_phases):
    ds = sample_dataset(_mantle_variant(n_phases), snr="low", seed=0, shape=(96, 96))
    assert ds.n_phases == n_phases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = sweep(ds.to_signal(), bins=(8, 16), progress=False).selection
    k_scores = {t.candidate.n_components: round(t.deviance, 5) for t in sel.k_search.trials}
    assert sel.n_components == n_phases, (
        f"true k = {n_phases}, chosen k = {sel.n_components}; {k_scores}"
    )


def test_given_components_keep_the_grid_but_choose_k_on_the_binned_stage():
    ds, signal = _signal("mantle", "low")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = sweep(signal, bins=(8, 16), components=(2, 3), progress=False).selection
    assert {(t.candidate.bin_factor, t.candidate.n_components)
            for t in sel.b_search.trials} == {(8, 2), (16, 2), (8, 3), (16, 3)}
    binned = {t.candidate.n_components: t.deviance for t in sel.k_search.trials}
    assert set(binned) == {2, 3} and binned[3] < binned[2]
    assert sel.n_components == ds.n_phases == 3
    at_k = [t for t in sel.b_search.trials if t.candidate.n_components == 3]
    assert sel.best is min(at_k, key=lambda t: t.deviance)
    marked = [line for line in sel.to_text().splitlines() if line.startswith("*")]
    assert len(marked) == 2  # the chosen k and the chosen (b, k)


def test_one_given_k_scores_only_b():
    _, signal = _signal("eutectic", "medium")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = sweep(signal, bins=(4, 8), components=3, progress=False).selection
    assert sel.k_search is None and sel.k_bin is None
    assert sel.components == [3] and sel.bins == [4, 8]
    assert sel.to_dict()["k_stage"] is None


def test_first_bin_rule():
    bins = [2, 4, 8, 16]
    # enough counts per binned pixel at the smallest such b ...
    assert components_bin_factor(bins, 147.0, (180, 180)) == 8  # 147 * 64 >= 3000 > 147 * 16
    assert components_bin_factor(bins, 1000.0, (180, 180)) == 2
    # ... unless that leaves fewer than MIN_BINNED_PIXELS binned pixels
    assert components_bin_factor(bins, 18.0, (180, 180)) == 16  # 12 x 12 binned pixels
    assert components_bin_factor(bins, 18.0, (96, 96)) == 8  # 16 would leave 6 x 6
    assert components_bin_factor(bins, 0.5, (64, 64)) == 4  # too few counts anywhere: most counts
    assert components_bin_factor(bins, 18.0, (12, 12)) == 2  # no b leaves enough pixels: smallest
    assert TARGET_BINNED_COUNTS > 1000 and MIN_BINNED_PIXELS >= 100


def test_count_folds_partition_the_counts():
    rng = np.random.default_rng(0)
    X = sp.csr_matrix(rng.poisson(3.0, size=(200, 50)).astype(float))
    folds = count_folds(X, COMPONENT_FOLDS, seed=1)
    assert len(folds) == COMPONENT_FOLDS
    np.testing.assert_array_equal(sum(f.toarray() for f in folds), X.toarray())
    sums = np.array([f.sum() for f in folds])
    assert np.all(np.abs(sums / X.sum() - 1 / COMPONENT_FOLDS) < 0.02)
    again = count_folds(X, COMPONENT_FOLDS, seed=1)
    assert all((a != b).nnz == 0 for a, b in zip(folds, again, strict=True))


def test_k_search_on_a_random_subset_of_binned_pixels_finds_the_same_k():
    """Capping the binned pixels of the k search (a seeded random subset) keeps the choice:
    the mantle at 'medium', 128 x 128 binned 4 x 4 (1024 binned pixels) scored on all of them
    and on 256; with ``patience=None`` every k is scored."""
    ds = sample_dataset("mantle", snr="medium", seed=0, shape=(128, 128))
    X = sp.csr_matrix(ds.counts.reshape(-1, ds.counts.shape[-1]).astype(float))
    full = choose_components(X, (128, 128), 4, (2, 3, 4, 5), seed=0, patience=None)
    part = choose_components(X, (128, 128), 4, (2, 3, 4, 5), seed=0, max_pixels=256)
    assert [t.candidate.n_components for t in full.trials] == [2, 3, 4, 5]
    assert [t.candidate.n_components for t in part.trials] == [2, 3, 4]
    assert full.best.candidate.n_components == part.best.candidate.n_components == 3
    again = choose_components(X, (128, 128), 4, (2, 3), seed=0, max_pixels=256)
    assert [t.deviance for t in again.trials] == [t.deviance for t in part.trials[:2]]


def test_choose_components_is_reproducible_and_reports_failures():
    ds = sample_dataset("eutectic", snr="medium", seed=0, shape=(24, 24))
    X = sp.csr_matrix(ds.counts.reshape(-1, ds.counts.shape[-1]).astype(float))
    kw = {"seed": 0, "max_iter": 30}
    rows = choose_components(X, (24, 24), 8, (2, 3, 10), patience=None, **kw).trials
    again = choose_components(X, (24, 24), 8, (2, 3), **kw).trials
    assert [r.deviance for r in rows[:2]] == [r.deviance for r in again]
    assert all(r.stage == "k" and r.candidate.bin_factor == 8 for r in rows)
    assert rows[2].deviance is None  # 10 components on 3 x 3 binned pixels
