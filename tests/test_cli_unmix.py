"""``psnmf unmix`` and ``psnmf sweep`` from the command line, on the three real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from psnmf.cli import main

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FILES = ["test_TEM.bcf", "bcf_v2_50x50px.bcf", "example_velox_EELS_EDS.emd"]
FAST = ["--max-iter", "100", "--max-iter-full", "30"]

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not found at {REAL}")


@pytest.mark.parametrize("name", FILES)
def test_unmix_command_on_real_file(name, tmp_path, capsys):
    out = tmp_path / "res"
    code = main(["unmix", str(REAL / name), "-k", "2", "--bin", "8", "-o", str(out), *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    text = captured.out
    assert f"psnmf unmix: {REAL / name}" in text
    assert "held-out Poisson deviance" in text and "raw" in text and "PCA" in text
    assert "PSNMF" in text and str(out / "report.html") in text
    summary = json.loads((out / "summary.json").read_text())
    dev = summary["heldout_deviance"]
    assert all(np.isfinite(dev[k]) for k in ("raw", "pca", "psnmf"))
    assert f"{dev['psnmf']:.4f}" in text
    import hyperspy.api as hs

    maps = hs.load(out / "component_maps.hspy")
    np.testing.assert_allclose(maps.data.sum(0), 1.0, atol=1e-6)
    dec = hs.load(out / "psnmf_decomposition.hspy", lazy=True)
    assert dec.get_decomposition_model().data.shape[:2] == maps.data.shape[1:]
    assert not (out / "denoised.hspy").exists()  # the dense cubes only with --write-denoised
    if name.endswith(".emd"):
        assert "zero-energy" in text  # the warning is in the closing summary


def test_unmix_default_output_folder_and_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["unmix", str(REAL / "test_TEM.bcf"), "-k", "2", "-b", "8", "--quiet", *FAST]
    assert main(args) == 0
    assert capsys.readouterr().out == ""  # --quiet
    assert (tmp_path / "test_TEM_psnmf" / "report.html").is_file()
    assert main(args) == 2  # folder not empty
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err
    assert main([*args, "--overwrite"]) == 0


def test_unmix_bad_inputs(tmp_path, capsys):
    assert main(["unmix", str(tmp_path / "missing.bcf"), "-o", str(tmp_path / "o")]) == 2
    assert "missing.bcf" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["unmix", str(REAL / "test_TEM.bcf"), "--bin", "zero"])
    with pytest.raises(SystemExit):
        main(["unmix", str(REAL / "test_TEM.bcf"), "--energy-range", "a,b"])


def test_sweep_command_prints_table_and_feeds_unmix(tmp_path, capsys):
    out = tmp_path / "sw"
    code = main(["sweep", str(REAL / "test_TEM.bcf"), "--bins", "4,8", "-k", "2", "-o",
                 str(out), "--unmix", "--quiet"])
    assert code == 0, capsys.readouterr().err
    table = (out / "sweep.txt").read_text()
    assert "best: bin factor" in table
    best_b = json.loads((out / "sweep.json").read_text())["best"]["bin_factor"]
    summary = json.loads((out / "unmix" / "summary.json").read_text())
    assert summary["parameters"]["bin_factor"] == best_b
    assert (out / "sweep.png").is_file()


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "unmix" in text and "sweep" in text
    for cmd in ("unmix", "sweep"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        assert "examples:" in text and f"psnmf {cmd} sample.bcf" in text
        assert "--quiet" in text and "--verbose" in text and "--seed" in text
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("psnmf ")


def test_own_process_freezes_after_the_pipeline_imports(tmp_path, monkeypatch, capsys):
    """As the ``psnmf`` program: every pipeline library is imported before the first
    freeze, and the heap is frozen again when the command ends (even on an error); a
    library caller (``own_process`` unset) leaves the collector alone."""
    import gc

    from psnmf.cli._args import PIPELINE_MODULES

    seen: list[list[str]] = []
    monkeypatch.setattr(gc, "freeze", lambda: seen.append(
        [m for m in PIPELINE_MODULES if m in sys.modules]))
    missing = str(tmp_path / "missing.hspy")
    assert main(["unmix", missing], own_process=True) == 2
    assert seen == [list(PIPELINE_MODULES)] * 2
    assert "missing.hspy" in capsys.readouterr().err
    seen.clear()
    assert main(["unmix", missing]) == 2
    assert seen == []


def test_real_command_shows_progress_and_summary(tmp_path):
    """The installed entry point, as a user runs it: progress on stderr, summary on stdout."""
    exe = Path(sys.executable).with_name("psnmf")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "psnmf.cli"]
    env = {**os.environ, "TQDM_MININTERVAL": "0"}
    proc = subprocess.run(
        [*cmd, "unmix", str(REAL / "test_TEM.bcf"), "-k", "2", "-b", "8", "-o",
         str(tmp_path / "r"), "--verbose", *FAST],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "PSNMF k=2 b=8" in proc.stderr and "held-out deviance" in proc.stderr
    assert "held-out Poisson deviance per count" in proc.stdout


def test_unmix_write_denoised_flag(tmp_path, capsys):
    import hyperspy.api as hs

    out = tmp_path / "res"
    code = main(["unmix", str(REAL / "test_TEM.bcf"), "-k", "2", "--bin", "8", "-o", str(out),
                 "--bootstrap", "0", "--write-denoised", *FAST])
    assert code == 0, capsys.readouterr().err
    for name in ("denoised.hspy", "pca_denoised.hspy"):
        assert hs.load(out / name, lazy=True).data.dtype == np.float32
    files = json.loads((out / "summary.json").read_text())["files"]
    assert files["denoised"] == "denoised.hspy" and files["pca_denoised"] == "pca_denoised.hspy"


@pytest.mark.parametrize("argv, message", [
    (["unmix", "missing.npz", "--seed", "-1"], "a seed must be from 0 to 2**32 - 1"),
    (["unmix", "missing.npz", "--seed", str(2**32)], "a seed must be from 0 to 2**32 - 1"),
    (["unmix", "missing.npz", "--bootstrap", "-5"], "at least 2 replicates"),
    (["unmix", "missing.npz", "--bootstrap", "1"], "at least 2 replicates"),
    (["unmix", "missing.npz", "--elements", ","], "chemical symbols"),
    (["sweep", "missing.npz", "--seed", "-1"], "a seed must be"),
    (["demo", "--seed", "x"], "integer seed"),
    (["simulate", "mantle", "--seed", "-3"], "a seed must be"),
])
def test_bad_arguments_refused_before_loading(argv, message, capsys):
    """Seeds, replicate counts and element lists are checked by the argument parser (exit 2,
    one message naming the option) before any file is read."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("n_boot", [-5, 1, 2.5])
def test_api_refuses_bad_replicate_count(n_boot):
    from psnmf.pipeline import unmix

    with pytest.raises(ValueError, match="n_boot.*0 or an integer >= 2"):
        unmix("missing.npz", n_boot=n_boot, progress=False)


def test_memory_refusal_is_one_line_and_leaves_the_folder_alone(tmp_path, capsys, monkeypatch):
    """Issue 13, item 7 (checked here for the command line): InsufficientMemoryError is
    printed as one message, exit 2, and the output folder is not created."""
    from conftest import make_toy

    from psnmf import _validation

    toy = make_toy(16, 16, 200, counts=80.0, seed=0)
    path = tmp_path / "base.npz"
    np.savez(path, counts=toy.counts.astype(np.uint16), energy_scale=0.05)
    monkeypatch.setattr(_validation, "available_memory", lambda: 10 * 2**20)
    code = main(["unmix", str(path), "-o", str(tmp_path / "R"), "-k", "2", "--bin", "2",
                 "--bootstrap", "0", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("psnmf unmix: ") and "memory" in err
    assert not (tmp_path / "R").exists()
