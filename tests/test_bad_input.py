"""One test per bad input: the error type, and a message that names the input and the fix.

Covers the engine, the PSNMF estimator, the baselines, the metrics, file reading/writing and
the command line. Each case is a row of a table, so the list of cases tried is the list of
parameters (``pytest --collect-only -q tests/test_bad_input.py``).
"""

from __future__ import annotations

import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_toy

from psnmf import (
    PSNMF,
    _validation,
    count_split,
    map_mse,
    match_components,
    pca_denoise,
    poisson_deviance,
    poisson_nmf,
    spectral_angle,
    standard_nmf,
)
from psnmf import io as pio
from psnmf.engine.binning import bin_counts, bin_cube
from psnmf.metrics import relative_error


def _counts(shape=(6, 5, 12), seed=0, lam=4.0):
    return np.random.default_rng(seed).poisson(lam, size=shape).astype(np.int64)


def _with(value, where=(0, 0, 0), shape=(6, 5, 12)):
    X = _counts(shape).astype(float)
    X[where] = value
    return X


def _eds(data, *, title="scan"):
    from exspy.signals import EDSTEMSpectrum

    data = np.asarray(data)
    names = ("t", "y", "x")[3 - (data.ndim - 1) :]
    axes = [
        {"name": name, "size": n, "units": "nm", "navigate": True}
        for name, n in zip(names, data.shape[:-1], strict=True)
    ]
    axes.append(
        {"name": "Energy", "size": data.shape[-1], "scale": 0.01, "units": "keV", "navigate": False}
    )
    s = EDSTEMSpectrum(data, axes=axes)
    s.metadata.General.title = title
    return s


def check(exc_info, *needles: str) -> None:
    """The message contains every needle (case-insensitive regex)."""
    msg = str(exc_info.value)
    for needle in needles:
        assert re.search(needle, msg, flags=re.IGNORECASE), f"{needle!r} not in: {msg}"


# ---------------------------------------------------------------------------
# The engine: poisson_nmf(X, k)
# ---------------------------------------------------------------------------
ENGINE_CASES = [
    # id, X, kwargs, exception, needles (input name, fix)
    (
        "negative",
        _with(-3.0)[..., :].reshape(30, 12),
        {},
        ValueError,
        ["X", "negative", "background"],
    ),
    ("nan", _with(np.nan).reshape(30, 12), {}, ValueError, ["X", "NaN", "nan_to_num"]),
    ("inf", _with(np.inf).reshape(30, 12), {}, ValueError, ["X", "infinite", "replace"]),
    (
        "sparse negative",
        sp.csr_matrix(_with(-1.0).reshape(30, 12)),
        {},
        ValueError,
        ["X", "negative"],
    ),
    ("complex", _counts((30, 12)).astype(complex), {}, TypeError, ["X", "real numbers", "dtype"]),
    ("strings", np.array([["a", "b"], ["c", "d"]]), {}, TypeError, ["X", "real numbers"]),
    ("ragged list", [[1, 2, 3], [4, 5]], {}, TypeError, ["X", "cannot be read", "NumPy array"]),
    ("cube to engine", _counts(), {}, ValueError, ["X", r"2-D", "reshape"]),
    ("single spectrum 1-D", _counts((12,)), {}, ValueError, ["X", r"spectrum\[None, :\]"]),
    ("empty", np.zeros((0, 12)), {}, ValueError, ["X", "empty"]),
    (
        "k too large",
        _counts((30, 12)),
        {"n_components": 13},
        ValueError,
        ["n_components=13", "at most", "fewer"],
    ),
    ("k zero", _counts((30, 12)), {"n_components": 0}, ValueError, ["n_components", ">= 1"]),
    ("k float", _counts((30, 12)), {"n_components": 2.5}, TypeError, ["n_components", "integer"]),
    ("max_iter negative", _counts((30, 12)), {"max_iter": -1}, ValueError, ["max_iter", ">= 0"]),
    ("tol nan", _counts((30, 12)), {"tol": float("nan")}, ValueError, ["tol", "finite"]),
    ("unknown init", _counts((30, 12)), {"init": "svd"}, ValueError, ["init='svd'", "nndsvda"]),
    (
        "A_init shape",
        _counts((30, 12)),
        {"A_init": np.ones((3, 2))},
        ValueError,
        ["A_init", r"\(30, 2\)"],
    ),
    (
        "S_init negative",
        _counts((30, 12)),
        {"S_init": -np.ones((2, 12))},
        ValueError,
        ["S_init", "non-negative"],
    ),
    (
        "spa without enough pixels with counts",
        np.eye(1, 12).repeat(3, 0) * [[1], [0], [0]],
        {"init": "spa"},
        ValueError,
        ["spa", "n_components=2", "init='random'"],
    ),
]


@pytest.mark.parametrize(
    "X, kwargs, exc, needles", [c[1:] for c in ENGINE_CASES], ids=[c[0] for c in ENGINE_CASES]
)
def test_engine_refuses(X, kwargs, exc, needles):
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(exc) as info:
        poisson_nmf(X, kwargs.pop("n_components"), **kwargs)
    check(info, *needles)


def test_engine_warns_on_non_integer_counts_and_explains():
    X = _counts((30, 12)) * 0.37
    with pytest.warns(_validation.NonIntegerCountsWarning) as rec:
        res = poisson_nmf(X, 2, max_iter=20, random_state=0)
    msg = str(rec[0].message)
    assert "X" in msg and "raw X-ray counts" in msg and "undo" in msg
    assert np.all(np.isfinite(res.A))


def test_engine_handles_all_zero_pixels_and_channels():
    X = _counts((30, 12)).astype(np.uint16)
    X[::3] = 0  # empty pixels
    X[:, [0, 5, 11]] = 0  # dead channels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = poisson_nmf(X, 3, max_iter=50, random_state=0)
    assert np.all(np.isfinite(res.A)) and np.allclose(res.A.sum(1), 1)
    assert np.allclose(res.S[:, [0, 5, 11]], 0, atol=1e-6)


# ---------------------------------------------------------------------------
# The estimator: PSNMF(...).fit(X)
# ---------------------------------------------------------------------------
def _line_scan_signal():
    return _eds(_counts((20, 12)))


def _single_spectrum_signal():
    return _eds(_counts((12,)))


def _signal2d():
    import hyperspy.api as hs

    return hs.signals.Signal2D(_counts((3, 6, 5)).astype(float))


ESTIMATOR_CASES = [
    ("negative", {}, lambda: _with(-2.0), ValueError, ["X", "negative", "background"]),
    ("nan", {}, lambda: _with(np.nan), ValueError, ["X", "NaN", "nan_to_num"]),
    ("inf", {}, lambda: _with(-np.inf), ValueError, ["X", "infinite"]),
    ("all zero", {}, lambda: np.zeros((6, 5, 12)), ValueError, ["X", "no counts", "energy_range"]),
    ("bin factor 0", {"bin_factor": 0}, _counts, ValueError, ["bin_factor", ">= 1"]),
    ("bin factor float", {"bin_factor": 2.5}, _counts, TypeError, ["bin_factor", "integer"]),
    (
        "bin factor larger than image",
        {"bin_factor": 7},
        _counts,
        ValueError,
        ["bin_factor=7", r"6 x 5", "1 <= bin_factor <= 6"],
    ),
    (
        "k > binned pixels",
        {"n_components": 5, "bin_factor": 4},
        _counts,
        ValueError,
        ["n_components=5", "bin_factor", "at most 3|fewer"],
    ),
    (
        "k > channels",
        {"n_components": 4, "bin_factor": 1},
        lambda: _counts((6, 5, 3)),
        ValueError,
        ["n_components=4", "channels", "fewer"],
    ),
    ("k zero", {"n_components": 0}, _counts, ValueError, ["n_components", ">= 1"]),
    ("line scan signal", {}, _line_scan_signal, ValueError, ["X", "line scan", "standard_nmf"]),
    (
        "single spectrum signal",
        {},
        _single_spectrum_signal,
        ValueError,
        ["X", "single spectrum", "standard_nmf"],
    ),
    ("Signal2D", {}, _signal2d, ValueError, ["X", "signal dimensions", "as_signal1D"]),
    ("1-D array", {}, lambda: _counts((12,)), ValueError, ["X", r"\(12,\)", "standard_nmf"]),
    ("4-D array", {}, lambda: _counts((2, 3, 4, 12)), ValueError, ["X", r"\(ny, nx, channels\)"]),
    (
        "matrix without image_shape",
        {},
        lambda: _counts((30, 12)),
        ValueError,
        ["X", "image_shape=", "line scan"],
    ),
    (
        "image_shape mismatch",
        {"image_shape": (4, 4)},
        lambda: _counts((30, 12)),
        ValueError,
        ["image_shape", "16 pixels", "30 rows"],
    ),
    (
        "image_shape malformed",
        {"image_shape": (30,)},
        lambda: _counts((30, 12)),
        ValueError,
        ["image_shape", "pair of integers"],
    ),
    ("unknown init", {"init": "pca"}, _counts, ValueError, ["init='pca'", "nndsvda"]),
    (
        "unknown stage2",
        {"stage2_spectra": "both"},
        _counts,
        ValueError,
        ["stage2_spectra", "fixed"],
    ),
    ("max_iter zero", {"max_iter": 0}, _counts, ValueError, ["max_iter", ">= 1"]),
    (
        "random_state string",
        {"random_state": "seed"},
        _counts,
        TypeError,
        ["random_state", "integer"],
    ),
    ("random_state negative", {"random_state": -1}, _counts, ValueError, ["random_state", ">= 0"]),
    ("ragged list", {}, lambda: [[[1, 2]], [[1]]], TypeError, ["X", "cannot be read"]),
]


@pytest.mark.parametrize(
    "params, make, exc, needles",
    [c[1:] for c in ESTIMATOR_CASES],
    ids=[c[0] for c in ESTIMATOR_CASES],
)
def test_psnmf_refuses(params, make, exc, needles):
    params = {"n_components": 2, "bin_factor": 2, "max_iter": 20, "max_iter_full": 10, **params}
    with pytest.raises(exc) as info:
        PSNMF(**params).fit(make())
    check(info, *needles)


def test_psnmf_warns_on_non_integer_counts():
    with pytest.warns(_validation.NonIntegerCountsWarning, match="X holds non-integer"):
        PSNMF(2, bin_factor=2, max_iter=10, max_iter_full=5).fit(_counts() * 0.5)


def test_psnmf_handles_empty_pixels_and_channels():
    cube = _counts().astype(np.uint8)
    cube[0] = 0
    cube[..., :4] = 0
    model = PSNMF(2, bin_factor=2, max_iter=50, max_iter_full=20, random_state=0).fit(cube)
    assert np.all(np.isfinite(model.maps_)) and np.allclose(model.maps_.sum(-1), 1)


def test_psnmf_transform_errors():
    with pytest.raises(AttributeError, match="not fitted yet; call fit"):
        PSNMF(2).transform(_counts())
    model = PSNMF(2, bin_factor=2, max_iter=20, max_iter_full=10).fit(_counts())
    with pytest.raises(ValueError) as info:
        model.transform(_counts((6, 5, 10)))
    check(info, "X has 10 channels", "fitted on 12", "same energy axis")


def test_binning_functions_refuse_bad_factor_and_shape():
    with pytest.raises(ValueError) as info:
        bin_cube(_counts(), 9)
    check(info, "bin_factor=9", "larger than the image")
    with pytest.raises(ValueError) as info:
        bin_counts(sp.csr_matrix(_counts((30, 12))), (4, 4), 2)
    check(info, "30 rows", "image_shape")


# ---------------------------------------------------------------------------
# Line scans and single spectra: standard NMF supports them
# ---------------------------------------------------------------------------
def test_standard_nmf_supports_line_scans_and_single_spectra():
    res = standard_nmf(_line_scan_signal(), 2, max_iter=30, random_state=0)
    assert res.maps.shape == (20, 2) and np.allclose(res.maps.sum(-1), 1)
    res = standard_nmf(_counts((20, 12)), 2, max_iter=30, random_state=0)
    assert res.maps.shape == (20, 2)
    res = standard_nmf(_single_spectrum_signal(), 1, max_iter=30)
    assert res.maps.shape == (1,) and res.reconstruct().shape == (12,)


BASELINE_CASES = [
    (
        "single spectrum k=2",
        lambda: standard_nmf(_counts((12,)), 2),
        ValueError,
        ["n_components=2", "at most", "min\\(pixels, channels\\) = min\\(1, 12\\)"],
    ),
    (
        "3 navigation axes",
        lambda: standard_nmf(_eds(_counts((2, 3, 4, 12))), 2),
        ValueError,
        ["X", "3 navigation axes", "sum or slice"],
    ),
    ("all zero", lambda: standard_nmf(np.zeros((4, 4, 8)), 1), ValueError, ["X", "no counts"]),
    (
        "random_state",
        lambda: standard_nmf(_counts(), 2, random_state=1.5),
        TypeError,
        ["random_state", "integer"],
    ),
    ("pca nan", lambda: pca_denoise(_with(np.nan), 2), ValueError, ["X", "NaN"]),
    (
        "pca k too large",
        lambda: pca_denoise(_counts((4, 4, 5)), 6),
        ValueError,
        ["n_components=6", "at most"],
    ),
    ("pca line scan", lambda: pca_denoise(_line_scan_signal(), 2), ValueError, ["X", "line scan"]),
]


@pytest.mark.parametrize(
    "call, exc, needles", [c[1:] for c in BASELINE_CASES], ids=[c[0] for c in BASELINE_CASES]
)
def test_baselines_refuse(call, exc, needles):
    with pytest.raises(exc) as info:
        call()
    check(info, *needles)


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------
METRIC_CASES = [
    (
        "angle channels differ",
        lambda: spectral_angle(np.ones(5), np.ones(6)),
        ValueError,
        ["v1 and v2", "channels"],
    ),
    (
        "angle nan",
        lambda: spectral_angle(np.array([np.nan, 1.0]), np.ones(2)),
        ValueError,
        ["v1", "NaN"],
    ),
    (
        "mse shapes differ",
        lambda: map_mse(np.ones((3, 3)), np.ones((3, 4))),
        ValueError,
        ["m1 and m2", "same shape"],
    ),
    (
        "mse inf",
        lambda: map_mse(np.full((2, 2), np.inf), np.ones((2, 2))),
        ValueError,
        ["m1", "infinite"],
    ),
    (
        "match too few",
        lambda: match_components(np.ones((1, 4)), np.ones((2, 4))),
        ValueError,
        ["1 found", "2 references"],
    ),
    (
        "match channels",
        lambda: match_components(np.ones((2, 4)), np.ones((2, 5))),
        ValueError,
        ["found and reference", "channels"],
    ),
    (
        "split fraction",
        lambda: count_split(_counts(), fraction=1.5),
        ValueError,
        ["fraction", r"\(0, 1\)"],
    ),
    ("split negative", lambda: count_split(_with(-1.0)), ValueError, ["X", "negative"]),
    (
        "split nan",
        lambda: count_split(sp.csr_matrix(_with(np.nan).reshape(30, 12))),
        ValueError,
        ["X", "NaN"],
    ),
    (
        "deviance shapes",
        lambda: poisson_deviance(_counts(), np.ones((2, 2))),
        ValueError,
        ["X", "M", "same number"],
    ),
    (
        "deviance nan M",
        lambda: poisson_deviance(_counts(), np.full((6, 5, 12), np.nan)),
        ValueError,
        ["M", "NaN"],
    ),
    (
        "relative error zero truth",
        lambda: relative_error(np.ones(3), np.zeros(3)),
        ValueError,
        ["truth", "all zeros"],
    ),
    (
        "relative error shapes",
        lambda: relative_error(np.ones(3), np.ones(4)),
        ValueError,
        ["estimate and truth", "same shape"],
    ),
]


@pytest.mark.parametrize(
    "call, exc, needles", [c[1:] for c in METRIC_CASES], ids=[c[0] for c in METRIC_CASES]
)
def test_metrics_refuse(call, exc, needles):
    with pytest.raises(exc) as info:
        call()
    check(info, *needles)


# ---------------------------------------------------------------------------
# Files: reading
# ---------------------------------------------------------------------------
def _save_hspy(signal, path: Path) -> Path:
    pio.save_signal(signal, path)
    return path


def _file_missing(tmp):
    return tmp / "nope.hspy"


def _file_unknown(tmp):
    p = tmp / "scan.xyz"
    p.write_bytes(b"abc")
    return p


def _file_spx(tmp):
    p = tmp / "spectrum.spx"
    p.write_bytes(b"abc")
    return p


def _file_garbage(tmp):
    p = tmp / "scan.hspy"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    return p


def _file_truncated(tmp):
    full = _save_hspy(_eds(_counts()), tmp / "full.hspy")
    p = tmp / "scan.hspy"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return p


def _file_empty(tmp):
    p = tmp / "scan.bcf"
    p.write_bytes(b"")
    return p


def _file_truncated_npz(tmp):
    full = tmp / "full.npz"
    np.savez(full, counts=_counts())
    p = tmp / "scan.npz"
    p.write_bytes(full.read_bytes()[:200])
    return p


def _file_image_only(tmp):
    import hyperspy.api as hs

    return _save_hspy(hs.signals.Signal2D(np.ones((8, 8))), tmp / "scan.hspy")


def _file_line_scan(tmp):
    return _save_hspy(_eds(_counts((20, 12))), tmp / "scan.hspy")


def _file_single_spectrum(tmp):
    return _save_hspy(_eds(_counts((12,))), tmp / "scan.hspy")


def _file_npz_negative(tmp):
    p = tmp / "scan.npz"
    np.savez(p, counts=_with(-5.0), energy_scale=0.01)
    return p


def _file_npz_nan(tmp):
    p = tmp / "scan.npz"
    np.savez(p, counts=_with(np.nan), energy_scale=0.01)
    return p


def _file_npz_no_counts(tmp):
    p = tmp / "scan.npz"
    np.savez(p, data=_counts())
    return p


def _file_npz_pickle(tmp):
    p = tmp / "scan.npz"
    np.savez(p, counts=np.array([{"a": 1}], dtype=object))
    return p


READ_CASES = [
    ("missing", _file_missing, {}, pio.InputNotFoundError, ["nope.hspy", "Check the path"]),
    (
        "unknown format",
        _file_unknown,
        {},
        pio.UnsupportedFormatError,
        ["scan.xyz", "Supported", ".bcf"],
    ),
    (
        "single-spectrum format",
        _file_spx,
        {},
        pio.UnsupportedFormatError,
        ["spectrum.spx", "single spectrum"],
    ),
    (
        "random bytes",
        _file_garbage,
        {},
        pio.CorruptFileError,
        ["scan.hspy", "truncated or corrupt", "again"],
    ),
    ("truncated hspy", _file_truncated, {}, pio.CorruptFileError, ["scan.hspy", "truncated"]),
    ("empty bcf", _file_empty, {}, pio.CorruptFileError, ["scan.bcf", "0 bytes|truncated"]),
    ("truncated npz", _file_truncated_npz, {}, pio.CorruptFileError, ["scan.npz", "truncated"]),
    ("pickled npz", _file_npz_pickle, {}, pio.CorruptFileError, ["scan.npz", "pickle"]),
    (
        "npz without counts",
        _file_npz_no_counts,
        {},
        pio.InvalidCountsError,
        ["scan.npz", "no 'counts'"],
    ),
    (
        "no EDS spectrum image",
        _file_image_only,
        {},
        pio.NoSpectrumImageError,
        ["scan.hspy", "no EDS spectrum image", "signal_index"],
    ),
    (
        "line scan file",
        _file_line_scan,
        {},
        pio.NoSpectrumImageError,
        ["scan.hspy", "line scan", "2-D spectrum image", "require_2d=False"],
    ),
    (
        "single spectrum file",
        _file_single_spectrum,
        {},
        pio.NoSpectrumImageError,
        ["scan.hspy", "2-D spectrum image", "The file holds"],
    ),
    (
        "signal_index out of range",
        _file_line_scan,
        {"signal_index": 5},
        pio.NoSpectrumImageError,
        ["signal_index=5", "scan.hspy"],
    ),
    (
        "negative counts",
        _file_npz_negative,
        {},
        pio.InvalidCountsError,
        ["scan.npz", "negative", "raw"],
    ),
    ("nan counts", _file_npz_nan, {}, pio.InvalidCountsError, ["scan.npz", "NaN", "Replace"]),
    (
        "energy range outside",
        _file_npz_negative,
        {"energy_range": (5.0, 9.0)},
        pio.PsnmfIOError,
        ["energy_range", "outside", "covers 0 to 0.12 keV"],
    ),
    (
        "energy range reversed",
        _file_npz_negative,
        {"energy_range": (0.1, 0.05)},
        pio.PsnmfIOError,
        ["energy_range", "lo < hi"],
    ),
    (
        "energy range not numbers",
        _file_npz_negative,
        {"energy_range": ("a", 1)},
        pio.PsnmfIOError,
        ["energy_range", "pair"],
    ),
]


@pytest.mark.parametrize(
    "make, kwargs, exc, needles", [c[1:] for c in READ_CASES], ids=[c[0] for c in READ_CASES]
)
def test_reading_refuses(tmp_path, make, kwargs, exc, needles):
    path = make(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc) as info:
            if "energy_range" in kwargs:  # checked on valid counts
                np.savez(path, counts=_counts(), energy_scale=0.01)
            pio.load_spectrum_image(path, **kwargs)
    check(info, *needles)


def test_non_integer_file_warns_with_the_fix(tmp_path):
    p = tmp_path / "scaled.npz"
    np.savez(p, counts=_counts() * 0.1, energy_scale=0.01)
    with pytest.warns(UserWarning, match="scaled.npz.*not integers.*undo the scale"):
        pio.load_spectrum_image(p)


def test_too_large_for_memory_points_to_the_lazy_path(tmp_path, monkeypatch):
    """With (pretend) 4 kB of memory, an eager read is refused before allocating; the lazy
    path the message points to works and gives the same fit."""
    path = _save_hspy(_eds(_counts((8, 8, 64))), tmp_path / "big.hspy")
    paper = {"spectra": "nmf", "smoothing": None}  # the lazy path has no TV maps
    model_ref = PSNMF(2, bin_factor=2, max_iter=30, max_iter_full=10, random_state=0,
                      **paper).fit(pio.load_spectrum_image(path))
    monkeypatch.setattr(_validation, "available_memory", lambda: 4096)
    with pytest.raises(_validation.InsufficientMemoryError) as info:
        pio.load_spectrum_image(path)
    assert isinstance(info.value, MemoryError)
    check(info, "big.hspy", "needs about", "available", "lazy=True")
    check(info, r"run psnmf unmix smaller\.hspy", r"s\.rebin")  # the CLI route too
    lazy = pio.load_spectrum_image(path, lazy=True)
    res = standard_nmf(lazy, 2, max_iter=30, random_state=0)  # converted chunk by chunk
    assert res.maps.shape == (8, 8, 2)
    model = PSNMF(2, bin_factor=2, max_iter=30, max_iter_full=10, random_state=0,
                  **paper).fit(lazy)
    # (the lazy route has its own stage-2 solver: same model, not bit-identical iterates)
    np.testing.assert_allclose(model.maps_, model_ref.maps_, atol=0.02)
    np.testing.assert_allclose(model.maps_.sum(-1), 1.0, atol=1e-9)


def test_memory_error_while_reading_is_reported_with_the_lazy_path(tmp_path, monkeypatch):
    import hyperspy.api as hs

    path = _save_hspy(_eds(_counts()), tmp_path / "scan.hspy")

    def boom(*args, **kwargs):
        if not kwargs.get("lazy"):
            raise MemoryError("Unable to allocate 64.0 GiB")
        return real(*args, **kwargs)

    real = hs.load
    monkeypatch.setattr(hs, "load", boom)
    with pytest.raises(_validation.InsufficientMemoryError) as info:
        pio.load_spectrum_image(path)
    check(info, "scan.hspy", "lazy=True")


def test_memory_guard_of_a_read_honours_the_address_space_limit(tmp_path, monkeypatch):
    """The read guard uses every limit of the process, here a (pretend) ulimit -v with
    64 kB left, against which the file is not small enough to pass on its size alone."""
    path = _save_hspy(_eds(_counts((16, 16, 64))), tmp_path / "limited.hspy")
    monkeypatch.setattr(_validation, "_rlimit", {"AS": 2**40}.get)
    monkeypatch.setattr(_validation, "_rlimit_as_left", lambda: 2**16)
    with pytest.raises(_validation.InsufficientMemoryError) as info:
        pio.load_spectrum_image(path)
    check(info, "limited.hspy", "needs about", r"only 6.1e-05 GiB is available")


# ---------------------------------------------------------------------------
# Files: writing
# ---------------------------------------------------------------------------
def test_output_folder_not_empty_needs_overwrite(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    with pytest.raises(pio.OutputExistsError) as info:
        pio.prepare_output_dir(out)
    check(info, "results", "not empty", "--overwrite")
    assert pio.prepare_output_dir(out, overwrite=True) == out


def test_output_folder_is_a_file(tmp_path):
    (tmp_path / "results").write_text("x")
    with pytest.raises(pio.OutputExistsError) as info:
        pio.prepare_output_dir(tmp_path / "results")
    check(info, "results", "is a file", "another output folder")


def test_output_folder_not_writable(tmp_path):
    """A folder below a file can never be created (works as root too, unlike chmod)."""
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(pio.OutputNotWritableError) as info:
        pio.prepare_output_dir(tmp_path / "blocker" / "results")
    check(info, "blocker/results", "not writable", "another folder")
    with pytest.raises(pio.OutputNotWritableError) as info:
        pio.write_json({"a": 1}, tmp_path / "blocker" / "summary.json")
    check(info, "summary.json", "another output location")


def test_output_file_exists_needs_overwrite(tmp_path):
    path = _save_hspy(_eds(_counts()), tmp_path / "denoised.hspy")
    with pytest.raises(pio.OutputExistsError) as info:
        pio.save_signal(_eds(_counts()), path)
    check(info, "denoised.hspy", "already exists", "overwrite=True")


def test_output_format_unknown(tmp_path):
    with pytest.raises(pio.UnsupportedFormatError) as info:
        pio.save_signal(_eds(_counts()), tmp_path / "denoised.tif")
    check(info, "denoised.tif", ".hspy")


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------
def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``psnmf argv``; return (exit code, stderr). argparse errors exit via SystemExit."""
    from psnmf.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _sample_file(tmp, text, name="bad.json"):
    p = tmp / name
    p.write_text(text)
    return str(p)


CLI_CASES = [
    (
        "unknown sample",
        lambda t: ["simulate", "nosuch", "-o", str(t / "o.hspy")],
        ["nosuch", "mantle"],
    ),
    ("no output", lambda t: ["simulate", "mantle"], ["-o FILE.hspy"]),
    (
        "wrong output extension",
        lambda t: ["simulate", "mantle", "--shape", "8x8", "-o", str(t / "o.tif")],
        ["o.tif", ".hspy"],
    ),
    (
        "output folder missing",
        lambda t: ["simulate", "mantle", "--shape", "8x8", "-o", str(t / "no" / "o.hspy")],
        ["no", "does not exist"],
    ),
    (
        "negative counts",
        lambda t: ["simulate", "mantle", "--counts", "-5", "-o", str(t / "o.hspy")],
        ["--counts", "> 0"],
    ),
    (
        "shape too small",
        lambda t: ["simulate", "mantle", "--shape", "1x1", "-o", str(t / "o.hspy")],
        ["shape", ">= 2"],
    ),
    (
        "shape garbage",
        lambda t: ["simulate", "mantle", "--shape", "big", "-o", str(t / "o.hspy")],
        ["shape 'big'", "NYxNX"],
    ),
    (
        "sample file missing",
        lambda t: ["simulate", "--sample", str(t / "none.json"), "-o", str(t / "o.hspy")],
        ["none.json"],
    ),
    (
        "sample file corrupt",
        lambda t: ["simulate", "--sample", _sample_file(t, "{not json"), "-o", str(t / "o.hspy")],
        ["bad.json"],
    ),
    ("unknown command", lambda t: ["unmixx", "scan.bcf"], ["invalid choice", "unmixx"]),
]


@pytest.mark.parametrize(
    "make_argv, needles", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_cli_refuses(tmp_path, capsys, make_argv, needles):
    code, err = run_cli(make_argv(tmp_path), capsys)
    assert code != 0
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr: {err}"
    assert not list(tmp_path.glob("*.hspy")) and not list(tmp_path.glob(".*tmp*"))


def test_cli_refuses_to_overwrite_with_no_overwrite(tmp_path, capsys):
    out = tmp_path / "o.hspy"
    out.write_bytes(b"earlier result")
    code, err = run_cli(
        ["simulate", "mantle", "--shape", "8x8", "--no-overwrite", "-o", str(out)], capsys
    )
    assert code == 2 and "o.hspy" in err and "overwrite" in err
    assert out.read_bytes() == b"earlier result"


def _unmix_registered() -> bool:
    from psnmf.cli import COMMANDS

    return "unmix" in COMMANDS


needs_unmix = pytest.mark.skipif(
    not _unmix_registered(), reason="the 'psnmf unmix' command is not registered yet"
)


@needs_unmix
@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda t: str(t / "missing.hspy"), ["missing.hspy"]),
        (lambda t: str(_file_unknown(t)), ["scan.xyz", "Supported"]),
        (lambda t: str(_file_garbage(t)), ["scan.hspy", "corrupt"]),
        (lambda t: str(_file_image_only(t)), ["scan.hspy", "no EDS spectrum image"]),
        (lambda t: str(_file_npz_negative(t)), ["scan.npz", "negative"]),
    ],
    ids=["missing", "unknown format", "corrupt", "no EDS SI", "negative counts"],
)
def test_cli_unmix_refuses_bad_files(tmp_path, capsys, make, needles):
    code, err = run_cli(["unmix", make(tmp_path), "-o", str(tmp_path / "res")], capsys)
    assert code != 0
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr: {err}"


# ---------------------------------------------------------------------------
# Issue 13, items 8-10: inputs refused with their real cause, or read correctly
# ---------------------------------------------------------------------------
def _npz(tmp, name="scan.npz", counts=None, **extra):
    p = tmp / name
    extra.setdefault("energy_scale", 0.05)
    np.savez(p, counts=_counts(shape=(6, 5, 40)) if counts is None else counts, **extra)
    return p


def _fifo(tmp):
    p = tmp / "pipe.npz"
    os.mkfifo(p)
    return p


def _hspy_axis(tmp, energies):
    from exspy.signals import EDSTEMSpectrum

    axes = [{"name": "y", "size": 6, "navigate": True}, {"name": "x", "size": 5, "navigate": True},
            {"name": "Energy", "axis": np.asarray(energies), "units": "keV", "navigate": False}]
    return _save_hspy(EDSTEMSpectrum(_counts(shape=(6, 5, len(energies))), axes=axes),
                      tmp / "scan.hspy")


INPUT_CASES = [
    ("boolean npz", lambda t: _npz(t, counts=_counts(shape=(6, 5, 40)) > 3),
     pio.InvalidCountsError, ["scan.npz", "boolean", r"astype\(np.uint16\)"]),
    ("npz without pixels", lambda t: _npz(t, counts=np.zeros((0, 5, 40), np.uint16)),
     pio.NoSpectrumImageError, ["scan.npz", "(0, 5, 40)", "length 0"]),
    ("npz without channels", lambda t: _npz(t, counts=np.zeros((6, 5, 0), np.uint16)),
     pio.NoSpectrumImageError, ["scan.npz", "length 0"]),
    ("FIFO", _fifo, pio.UnsupportedFormatError, ["pipe.npz", "FIFO", "regular file"]),
    ("beam energy 0", lambda t: _npz(t, beam_energy=0.0), pio.CalibrationError,
     ["scan.npz", "beam energy", "0.0 kV", "beam_energy", "> 0"]),
    ("beam energy negative", lambda t: _npz(t, beam_energy=-5.0), pio.CalibrationError,
     ["scan.npz", "beam energy", "-5.0 kV"]),
    ("beam energy NaN", lambda t: _npz(t, beam_energy=np.nan), pio.CalibrationError,
     ["scan.npz", "beam energy", "nan kV"]),
    ("energy scale 0", lambda t: _npz(t, energy_scale=0.0), pio.CalibrationError,
     ["scan.npz", "channel width of 0 keV", "energy_scale > 0"]),
    ("energy scale negative", lambda t: _npz(t, energy_scale=-0.05, energy_offset=2.0),
     pio.CalibrationError, ["scan.npz", r"-0.05 keV \(energies decrease\)"]),
    ("energy scale NaN", lambda t: _npz(t, energy_scale=np.nan), pio.CalibrationError,
     ["scan.npz", "not calibrated", "nan"]),
    ("descending axis", lambda t: _hspy_axis(t, np.linspace(4.0, 0.5, 40)),
     pio.CalibrationError, ["scan.hspy", "non-uniform energy axis", "strictly increasing"]),
]


@pytest.mark.parametrize("make, exc, needles", [c[1:] for c in INPUT_CASES],
                         ids=[c[0] for c in INPUT_CASES])
def test_inputs_refused_with_their_real_cause(tmp_path, make, exc, needles):
    """Not blamed on an energy_range never given; a FIFO is refused at once, not read."""
    path = make(tmp_path)
    with pytest.raises(exc) as info:
        pio.load_spectrum_image(path)
    check(info, *needles)
    assert "energy_range" not in str(info.value)


@needs_unmix
@pytest.mark.parametrize("command", ["unmix", "sweep"])
@pytest.mark.parametrize("make, exc, needles", [c[1:] for c in INPUT_CASES],
                         ids=[c[0] for c in INPUT_CASES])
def test_cli_refuses_bad_inputs_in_one_line(tmp_path, capsys, command, make, exc, needles):
    path = make(tmp_path)
    t0 = time.monotonic()
    code, err = run_cli([command, str(path), "-o", str(tmp_path / "res"), "-q"], capsys)
    assert code == 2 and time.monotonic() - t0 < 30  # (a FIFO would hang forever)
    assert err.startswith(f"psnmf {command}: ") and needles[0] in err
    assert "energy_range" not in err
    assert not (tmp_path / "res").exists()


def test_signal_passed_to_unmix_is_checked_too():
    from psnmf.pipeline import unmix

    signal = _eds(_counts())
    signal.axes_manager.signal_axes[0].scale = 0.0
    with pytest.raises(pio.CalibrationError, match="channel width of 0 keV"):
        unmix(signal, n_components=2, bin_factor=2, n_boot=0, progress=False)


def _ripple(tmp, name, *, byte_order="dont-care", signal_type=True):
    """The counts of a 16 x 16 x 200 .npz as ripple .rpl/.raw (RosettaSciIO's writer), with
    the byte order of the header and the data changed, or the signal type removed."""
    from exspy.signals import EDSTEMSpectrum

    counts = np.load(tmp / "base.npz")["counts"]
    s = EDSTEMSpectrum(counts)
    axis = s.axes_manager.signal_axes[0]
    axis.scale, axis.units = 0.05, "keV"
    rpl = tmp / f"{name}.rpl"
    s.save(rpl, overwrite=True)
    header = rpl.read_text()
    if byte_order == "big-endian":
        header = header.replace("byte-order\tdont-care", "byte-order\tbig-endian")
        raw = rpl.with_suffix(".raw")
        np.fromfile(raw, dtype="<u2").astype(">u2").tofile(raw)
    if not signal_type:
        header = "".join(line for line in header.splitlines(keepends=True)
                         if not line.startswith("signal\t"))
    rpl.write_text(header)
    return rpl


@pytest.fixture
def base_npz(tmp_path):
    toy = make_toy(16, 16, 200, counts=80.0, seed=0)
    np.savez(tmp_path / "base.npz", counts=toy.counts.astype(np.uint16), energy_scale=0.05)
    return tmp_path / "base.npz"


def test_big_endian_files_read_and_unmix_like_little_endian(tmp_path, base_npz):
    from psnmf.pipeline import unmix

    counts = np.load(base_npz)["counts"]
    be_npz = _npz(tmp_path, "be.npz", counts=counts.astype(">u2"))
    le_rpl = _ripple(tmp_path, "le")
    be_rpl = _ripple(tmp_path, "be", byte_order="big-endian")
    assert "big-endian" in be_rpl.read_text()
    fits = {}
    for path in (base_npz, be_npz, le_rpl, be_rpl):
        signal = pio.load_spectrum_image(path)
        assert signal.data.dtype.isnative
        np.testing.assert_array_equal(signal.data, counts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = unmix(path, n_components=2, bin_factor=2, n_boot=0, progress=False,
                        max_iter=40, max_iter_full=10, smoothing=None)
        fits[path.name] = (res.model.spectra_, res.deviance.psnmf)
    ref_spectra, ref_dev = fits["base.npz"]
    for name, (spectra, dev) in fits.items():
        np.testing.assert_allclose(spectra, ref_spectra, err_msg=name)
        assert dev == pytest.approx(ref_dev), name


def test_ripple_without_signal_type_is_read_as_eds_with_a_warning(tmp_path, base_npz, capsys):
    """The command line has no signal_index: the file's only spectrum image is used, with a
    warning saying it is treated as EDS_TEM."""
    rpl = _ripple(tmp_path, "nosig", signal_type=False)
    assert "signal\tEDS" not in rpl.read_text()
    with pytest.warns(UserWarning, match="no signal type; treating it as EDS_TEM"):
        s = pio.load_spectrum_image(rpl)
    assert type(s).__name__ == "EDSTEMSpectrum"
    code, err = run_cli(["sweep", str(rpl), "--bins", "2", "-k", "2", "-q", "-o",
                         str(tmp_path / "sw")], capsys)
    assert code == 0 and "treating it as EDS_TEM" in err


@pytest.mark.parametrize("argv, needle", [
    (["demo", "--bins", "0"], "argument --bins"),
    (["demo", "--bins", "100", "--shape", "16x16"], "larger than the image"),
    (["demo", "--shape", "1x1"], "both sizes must be >= 2"),
    (["demo", "--shape", "big"], "NYxNX"),
])
def test_demo_refuses_bad_bins_and_shapes_in_one_line(argv, needle, capsys):
    code, err = run_cli(argv, capsys)
    assert code == 2 and needle in err
