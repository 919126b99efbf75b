"""psnmf.pipeline.unmix / sweep on the three real files in ../shared/data/real/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf import PSNMF, io
from psnmf.pipeline import SweepResult, UnmixResult, format_summary, sweep, unmix
from psnmf.selection import ModelChoice

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FILES = ["test_TEM.bcf", "bcf_v2_50x50px.bcf", "example_velox_EELS_EDS.emd"]
FAST = {"max_iter": 100, "max_iter_full": 30, "progress": False}

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not found at {REAL}")


@pytest.fixture(scope="module", params=FILES)
def run(request, tmp_path_factory) -> tuple[str, UnmixResult, Path]:
    name = request.param
    out = tmp_path_factory.mktemp(name.split(".")[0]) / "out"
    with pytest.warns() if name.endswith(".emd") else _nullcontext():
        res = unmix(REAL / name, n_components=3, bin_factor=8, output_dir=out, seed=0, **FAST)
    return name, res, out


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_outputs_exist_and_open(run):
    import hyperspy.api as hs

    from psnmf.hyperspy import denoised_from_factors

    name, res, out = run
    for fname in ("component_spectra.hspy", "component_maps.hspy", "count_scale.hspy",
                  "psnmf_decomposition.hspy", "pca_decomposition.hspy",
                  "component_spectra.png", "component_maps.png",
                  "element_maps.png", "scree.png", "deviance.png", "sum_spectrum.png",
                  "loss.png", "summary.json", "report.html"):
        assert (out / fname).is_file(), fname
    for fname in ("denoised.hspy", "pca_denoised.hspy"):  # only with write_denoised=True
        assert not (out / fname).exists(), fname
    den = denoised_from_factors(*(hs.load(out / f) for f in (
        "component_spectra.hspy", "component_maps.hspy", "count_scale.hspy")))
    ny, nx, ne = res.signal.data.shape
    assert den.data.shape == (ny, nx, ne)
    assert den.axes_manager.signal_axes[0].units == "keV"
    assert den.metadata.Signal.signal_type.startswith("EDS")
    assert den.axes_manager.signal_axes[0].offset == pytest.approx(
        res.signal.axes_manager.signal_axes[0].offset
    )
    # the denoised cube keeps every pixel's counts
    np.testing.assert_allclose(den.data.sum(-1).compute(), res.signal.data.sum(-1),
                               rtol=1e-6, atol=1e-6)
    maps = hs.load(out / "component_maps.hspy")
    assert maps.data.shape == (3, ny, nx)
    np.testing.assert_allclose(maps.data.sum(0), 1.0, atol=1e-6)
    spectra = hs.load(out / "component_spectra.hspy")
    np.testing.assert_allclose(spectra.data.sum(-1), 1.0, atol=1e-6)
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "element_maps.png")
    assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0


def test_summary_reports_heldout_deviance(run):
    name, res, out = run
    summary = json.loads((out / "summary.json").read_text())
    dev = summary["heldout_deviance"]
    for key in ("raw", "pca", "psnmf"):
        assert isinstance(dev[key], float) and np.isfinite(dev[key]) and dev[key] > 0, key
    assert dev["floor"] == pytest.approx(1e-6)
    # denoising predicts held-out counts better than the raw counts themselves
    assert dev["psnmf"] < dev["raw"]
    assert summary["parameters"]["n_components"] == 3
    assert summary["parameters"]["bin_factor"] == 8
    assert summary["parameters"]["seed"] == 0
    assert summary["input"]["counts_per_pixel"] > 0
    assert summary["input"]["source"]["file"].endswith(name)
    assert "energy_range_reason" in summary["input"]
    assert set(summary["psnmf"]["loss"]) == {"binned", "full"}
    assert summary["timings_s"]["total"] > 0
    assert summary["versions"]["hyperspy"]
    assert len(summary["pca_explained_variance_ratio"]) >= 3
    assert summary == json.loads(json.dumps(res.summary.to_dict()))  # the typed summary
    assert "psnmf" in format_summary(res) and str(out) in format_summary(res)


def test_default_energy_range_and_elements(run):
    name, res, out = run
    lo, hi = res.summary.input.energy_range_keV
    if name == "example_velox_EELS_EDS.emd":
        # nearly all counts of this file are in the zero-energy peak: full range + warning
        assert lo < 0 and any("zero-energy" in w for w in res.warnings)
    else:
        assert lo == pytest.approx(0.2, abs=0.011)
        assert not res.warnings
    beam = res.summary.input.beam_energy_keV
    assert hi <= min(beam, 20.0) + 0.011
    elements = res.summary.input.elements
    assert elements and set(res.element_maps) == {"raw", "pca", "psnmf"}
    lines = res.summary.input.xray_lines_mapped
    assert {line.split("_")[0] for line in lines} <= set(elements)
    for kind in ("raw", "pca", "psnmf"):
        for line in lines:
            assert res.element_maps[kind][line].shape == res.signal.data.shape[:2]


def test_reproducible_with_seed(run):
    name, res, out = run
    if name != "test_TEM.bcf":
        pytest.skip("checked on one file")
    again = unmix(REAL / name, n_components=3, bin_factor=8, seed=0, report=False, **FAST)
    assert again.deviance.psnmf == pytest.approx(res.deviance.psnmf, rel=1e-9)
    np.testing.assert_allclose(again.model.maps_, res.model.maps_)
    assert not again.paths  # nothing written without output_dir


def test_unmix_accepts_a_signal():
    s = io.load_spectrum_image(REAL / "test_TEM.bcf")
    res = unmix(s, n_components=2, bin_factor=8, **FAST)
    assert res.denoised.data.shape[:2] == (64, 64)
    assert res.maps.data.shape == (2, 64, 64)
    assert s.data.shape[-1] == 2048  # the caller's signal is not cropped in place


def test_auto_choice_runs_the_search():
    res = unmix(REAL / "test_TEM.bcf", n_components=None, bin_factor="auto", bins=(4, 8),
                components=(2, 3), **FAST)
    sel = res.selection
    assert isinstance(sel, ModelChoice)
    assert res.n_components == sel.best.candidate.n_components == sel.n_components
    assert res.bin_factor == sel.best.candidate.bin_factor == sel.bin_factor
    assert sel.components == [2, 3] and sel.bins == [4, 8]
    # k is chosen on the binned stage (k_search), b among the full-resolution trials at that k
    assert [t.candidate.n_components for t in sel.k_search.trials] == [2, 3]
    k_scores = {t.candidate.n_components: t.deviance for t in sel.k_search.trials}
    assert res.n_components == min(k_scores, key=k_scores.get)
    assert {t.candidate.n_components for t in sel.b_search.trials} == {res.n_components}
    # the closing summary counts the candidates of both searches
    assert "4 candidates (2 for k, 2 for b)" in format_summary(res)


def test_sweep_table_and_files(tmp_path):
    res = sweep(REAL / "test_TEM.bcf", bins=(2, 4, 8, 16), components=(3,), seed=0,
                output_dir=tmp_path / "sw", progress=False)
    assert isinstance(res, SweepResult)
    trials = res.selection.b_search.trials
    # from the largest b down, until the deviance rises
    tried = [t.candidate.bin_factor for t in trials]
    assert len(tried) >= 2 and tried == [16, 8, 4, 2][:len(tried)]
    assert all(t.deviance is not None and t.deviance > 0 for t in trials)
    assert res.selection.best.deviance == min(t.deviance for t in trials)
    text = res.to_text()
    assert "best: bin factor" in text and text.count("\n") >= 2 + len(tried)
    for key in ("json", "table", "figure"):
        assert res.paths[key].is_file()
    data = json.loads(res.paths["json"].read_text())
    assert data["best"]["bin_factor"] == res.selection.bin_factor


def test_clear_errors(tmp_path):
    with pytest.raises(io.InputNotFoundError, match="nope.bcf"):
        unmix(tmp_path / "nope.bcf", n_components=2, bin_factor=4, **FAST)
    with pytest.raises(ValueError, match="bin_factor"):
        unmix(REAL / "test_TEM.bcf", n_components=2, bin_factor="big", **FAST)
    with pytest.raises(ValueError, match="n_components"):
        unmix(REAL / "test_TEM.bcf", n_components=0, bin_factor=4, **FAST)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x.txt").write_text("x")
    with pytest.raises(io.OutputExistsError, match="overwrite"):
        unmix(REAL / "test_TEM.bcf", n_components=2, bin_factor=4, output_dir=busy, **FAST)
    with pytest.raises(ValueError, match="bins"):
        sweep(REAL / "test_TEM.bcf", bins="2,x", progress=False)


def test_the_heldout_fit_is_the_search_candidate(monkeypatch):
    """The b search's fit of X1 at the chosen (b, k) is the held-out fit: nothing is fitted
    again, and the score equals that of fitting the candidate afresh (no search); its TV
    maps at the final weight predict the other half better than its per-pixel maps."""
    from psnmf.pipeline import steps
    from psnmf.pipeline.progress import Progress
    from psnmf.selection import count_split
    from psnmf.simulate import mantle

    ds = mantle("low", seed=5, shape=(48, 48))
    counts = sp.csr_matrix(ds.counts.reshape(48 * 48, -1).astype(np.float64))
    data = steps.Split(counts, *count_split(counts, 0.5, random_state=0), (48, 48))
    fits: dict = {}
    sel = steps.choose(data, k=3, b=None, bins=(4, 8), components=None, seed=0,
                       progress=Progress(False, False), fits=fits)
    assert set(fits) == {(4, 3), (8, 3)}
    b = sel.bin_factor
    assert fits[(b, 3)].n_iter_["binned"] <= steps.SWEEP_ITERATIONS[0]
    cfg = {"seed": 0, "pure_spectra": True, "notes": []}
    fresh = steps.score(None, data, 3, b, smoothing_lam=2.0, **cfg)

    def refit(*args, **kwargs):
        raise AssertionError("the held-out half was fitted again")

    monkeypatch.setattr(PSNMF, "fit", refit)
    reused = steps.score(None, data, 3, b, smoothing_lam=2.0, candidate=fits[(b, 3)], **cfg)
    assert reused.psnmf == fresh.psnmf
    unsmoothed = steps.score(None, data, 3, b, smoothing_lam=0.0, candidate=fits[(b, 3)],
                             **cfg)
    assert reused.psnmf < unsmoothed.psnmf < reused.raw


def test_a_large_map_is_scored_on_its_central_window(monkeypatch):
    """Above ``HELDOUT_PIXELS`` the three predictions are scored on the central window: raw
    and the held-out counts are those of the window's rows; PSNMF (the whole half's fit,
    its TV maps solved on the window) still predicts better than PCA and raw."""
    from psnmf.pipeline import steps
    from psnmf.selection import count_split, heldout_deviance
    from psnmf.simulate import mantle

    ds = mantle("medium", seed=5, shape=(48, 48))
    counts = sp.csr_matrix(ds.counts.reshape(48 * 48, -1).astype(np.float64))
    data = steps.Split(counts, *count_split(counts, 0.5, random_state=0), (48, 48))
    cfg = {"seed": 0, "pure_spectra": True, "notes": [], "smoothing_lam": 2.0}
    whole = steps.score(None, data, 3, 4, **cfg)
    assert whole.window == (48, 48)
    monkeypatch.setattr(steps, "HELDOUT_PIXELS", 24 * 24)
    part = steps.score(None, data, 3, 4, **cfg)
    rows = (np.arange(12, 36)[:, None] * 48 + np.arange(12, 36)).ravel()
    assert part.window == (24, 24)
    assert part.heldout_counts == data.X2[rows].sum()
    assert part.raw == heldout_deviance(data.X2[rows], data.X1[rows], floor=part.floor)
    assert part.psnmf < part.pca < part.raw


def test_a_lower_iteration_cap_than_the_search_keeps_the_search_candidate_as_heldout_fit():
    """With ``max_iter`` below the search's cap the final fit stops earlier; the held-out
    score is still that of the search's candidate (its own caps)."""
    res = unmix(REAL / "test_TEM.bcf", n_components=2, bin_factor="auto", bins=(4, 8),
                **{**FAST, "max_iter": 50})
    assert res.model.n_iter_["binned"] <= 50
    assert np.isfinite(res.deviance.psnmf)


def test_unmix_extrapolates_a_never_pure_phase_by_the_signals_elements():
    """With ``never_pure='lines'`` the pipeline, which fits CSR counts, passes the signal's
    elements and EDX model to the estimator itself: on the ODS steel (mixed_phase,
    'medium', 64 x 64) the Y2Ti2O7 nanoclusters, never pure, have their vertex
    extrapolated by the lines in ``unmix`` (summary.json's ``vertex_lines``, the printed
    summary), and the pure phases keep theirs."""
    from psnmf.metrics import compare_to_truth
    from psnmf.simulate import sample_dataset

    ds = sample_dataset("mixed_phase", snr="medium", seed=0, shape=(64, 64))
    res = unmix(ds.to_signal(), n_components=3, bin_factor=4, n_boot=0, seed=0,
                max_iter=1000, max_iter_full=30, progress=False, never_pure="lines")
    par = res.summary.parameters
    assert par.line_elements == list(ds.elements)
    order = compare_to_truth(res.model.spectra_, res.model.maps_, ds.spectra,
                             ds.maps)["order"]
    y = int(order[list(ds.phase_names).index("Y2Ti2O7")])
    assert par.vertex_lines == [j == y for j in range(3)]
    assert f"extrapolated by element lines for #{y}" in format_summary(res)
    assert res.summary.to_dict()["parameters"]["vertex_lines"] == par.vertex_lines
