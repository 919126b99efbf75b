"""Same input + seed = identical results; summary.json holds everything needed to rerun."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from psnmf import io
from psnmf.pipeline import unmix

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
TEM = REAL / "test_TEM.bcf"
pytestmark = pytest.mark.skipif(not TEM.exists(), reason=f"real data not found at {REAL}")


def _run(out: Path, **kw):
    return unmix(TEM, output_dir=out, progress=False, report=False, **kw)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    out = tmp_path_factory.mktemp("run1") / "res"
    return out, _run(out, n_components=3, bin_factor=4, seed=3)


def test_summary_records_what_a_rerun_needs(first):
    out, _ = first
    s = json.loads((out / "summary.json").read_text())
    assert s["psnmf_version"]
    for pkg in ("numpy", "scipy", "hyperspy", "exspy", "rosettasciio"):
        assert s["versions"][pkg]
    src = s["input"]["source"]
    assert src["sha256"] == io.file_checksum(TEM)
    assert src["signal_index"] is not None
    p = s["parameters"]
    assert p["seed"] == 3 and p["n_components"] == 3 and p["bin_factor"] == 4
    for key in ("init", "stage2_spectra", "max_iter", "max_iter_full", "tol"):
        assert key in p
    assert s["input"]["energy_range_keV"] == [0.2, 20.0]


def test_rerun_from_summary_is_identical(first, tmp_path):
    out, res = first
    s = json.loads((out / "summary.json").read_text())
    p = s["parameters"]
    again = _run(
        tmp_path / "res",
        n_components=p["n_components"],
        bin_factor=p["bin_factor"],
        seed=p["seed"],
        energy_range=tuple(s["input"]["energy_range_keV"]),
        max_iter=p["max_iter"],
        max_iter_full=p["max_iter_full"],
    )
    np.testing.assert_array_equal(again.model.spectra_, res.model.spectra_)
    np.testing.assert_array_equal(again.model.maps_, res.model.maps_)
    np.testing.assert_array_equal(again.denoised.data, res.denoised.data)
    s2 = json.loads((tmp_path / "res" / "summary.json").read_text())
    assert s2["heldout_deviance"] == s["heldout_deviance"]
    assert s2["psnmf"] == s["psnmf"]


def test_different_seed_changes_the_count_split(first, tmp_path):
    out, _ = first
    other = _run(tmp_path / "res", n_components=3, bin_factor=4, seed=4)
    s = json.loads((out / "summary.json").read_text())
    assert other.deviance.raw != s["heldout_deviance"]["raw"]
