"""Tests of psnmf.io: reading real instrument files, counts, atomic writing."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from psnmf import io as pio

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
TEM_BCF = REAL / "test_TEM.bcf"
SEM_BCF = REAL / "bcf_v2_50x50px.bcf"
VELOX = REAL / "example_velox_EELS_EDS.emd"

needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real test data folder {REAL} (../shared/data/real) is absent"
)


def _eds(data, *, signal_type="EDS_TEM", units="keV", scale=0.01, offset=0.0):
    """A small exspy EDS signal with calibrated axes."""
    from exspy.signals import EDSSEMSpectrum, EDSTEMSpectrum

    cls = EDSTEMSpectrum if signal_type == "EDS_TEM" else EDSSEMSpectrum
    data = np.asarray(data)
    axes = [
        {"name": name, "size": n, "scale": 1.5, "offset": 0.0, "units": "nm", "navigate": True}
        for name, n in zip(("y", "x")[-(data.ndim - 1) :], data.shape[:-1], strict=True)
    ]
    axes.append(
        {
            "name": "Energy",
            "size": data.shape[-1],
            "scale": scale,
            "offset": offset,
            "units": units,
            "navigate": False,
        }
    )
    return cls(data, axes=axes)


# ---------------------------------------------------------------------------
# Real files: loaded once per module
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tem():
    if not REAL.is_dir():
        pytest.skip(f"real test data folder {REAL} is absent")
    return pio.load_spectrum_image(TEM_BCF)


@pytest.fixture(scope="module")
def sem():
    if not REAL.is_dir():
        pytest.skip(f"real test data folder {REAL} is absent")
    return pio.load_spectrum_image(SEM_BCF)


@pytest.fixture(scope="module")
def velox():
    if not REAL.is_dir():
        pytest.skip(f"real test data folder {REAL} is absent")
    return pio.load_spectrum_image(VELOX)


@pytest.mark.parametrize(
    "name, cls, shape, elements, beam, index, mean_counts",
    [
        ("tem", "EDSTEMSpectrum", (64, 64, 2048), ["Cu", "O", "Pd", "Ti"], 200.0, 1, 6.35),
        ("sem", "EDSSEMSpectrum", (50, 50, 2048), ["Ag", "Al", "C", "Cu", "O"], 20.0, 2, 380),
        ("velox", "EDSTEMSpectrum", (128, 128, 4096), ["Co", "Fe", "O"], 300.0, 17, 0.677),
    ],
)
def test_real_files_load_as_2d_eds(request, name, cls, shape, elements, beam, index, mean_counts):
    s = request.getfixturevalue(name)
    assert type(s).__name__ == cls
    assert s.data.shape == shape
    assert s.axes_manager.navigation_dimension == 2
    assert s.axes_manager.signal_dimension == 1
    assert s.axes_manager.signal_axes[0].units == "keV"
    assert sorted(s.metadata.Sample.elements) == elements
    mode = "TEM" if cls == "EDSTEMSpectrum" else "SEM"
    assert s.metadata.get_item(f"Acquisition_instrument.{mode}.beam_energy") == pytest.approx(beam)
    assert s.metadata.General.psnmf_source.signal_index == index
    assert np.issubdtype(s.data.dtype, np.integer)
    assert s.data.sum() / (shape[0] * shape[1]) == pytest.approx(mean_counts, rel=0.01)


@needs_real
def test_describe_signals_lists_everything_and_marks_the_pick():
    infos = pio.describe_signals(VELOX)
    assert len(infos) == 18
    picked = [i for i in infos if i.picked]
    assert [i.index for i in picked] == [17]
    assert picked[0].shape == (128, 128, 4096)
    assert {i.signal_type for i in infos} >= {"EDS_TEM", "EELS", ""}
    assert "picked" in str(picked[0])
    sem_infos = pio.describe_signals(SEM_BCF)
    assert [i.picked for i in sem_infos] == [False, False, True]
    assert sem_infos[2].signal_type == "EDS_SEM"


@needs_real
def test_signal_index_override_and_its_errors():
    s = pio.load_spectrum_image(TEM_BCF, signal_index=1)
    assert s.data.shape == (64, 64, 2048)
    with pytest.raises(pio.NoSpectrumImageError, match="single spectrum") as err:
        pio.load_spectrum_image(VELOX, signal_index=0)
    assert VELOX.name in str(err.value) and "2-D spectrum image" in str(err.value)
    with pytest.raises(pio.NoSpectrumImageError, match="not EDS") as err:
        pio.load_spectrum_image(VELOX, signal_index=14)  # EELS
    assert VELOX.name in str(err.value)
    with pytest.raises(pio.NoSpectrumImageError, match="out of range") as err:
        pio.load_spectrum_image(TEM_BCF, signal_index=5)
    assert TEM_BCF.name in str(err.value) and "HAADF" in str(err.value)


def test_energy_range_crops_the_signal_axis(tem):
    s = pio.load_spectrum_image(TEM_BCF, energy_range=(0.2, 10.0))
    energies = s.axes_manager.signal_axes[0].axis
    assert energies[0] >= 0.2 - 1e-9 and energies[0] < 0.2 + 0.0101
    assert energies[-1] < 10.0 and energies[-1] > 10.0 - 0.0101
    full = tem.axes_manager.signal_axes[0].axis
    i0 = int(np.searchsorted(full, energies[0] - 1e-9))
    np.testing.assert_array_equal(s.data, tem.data[..., i0 : i0 + s.data.shape[-1]])
    open_ended = pio.load_spectrum_image(TEM_BCF, energy_range=(5.0, None))
    assert open_ended.axes_manager.signal_axes[0].size == len(full) - np.searchsorted(full, 5.0)


@needs_real
@pytest.mark.parametrize("bad", [(-5.0, 10.0), (0.5, 500.0), (8.0, 2.0), (1.0,)])
def test_energy_range_outside_names_the_axis_limits(bad):
    with pytest.raises(pio.PsnmfIOError, match="energy_range") as err:
        pio.load_spectrum_image(TEM_BCF, energy_range=bad)
    if len(bad) == 2 and bad[0] < bad[1]:
        assert "outside" in str(err.value) and TEM_BCF.name in str(err.value)
        assert "-0.4754" in str(err.value)  # the axis starts at -0.4754 keV


@needs_real
def test_elements_override():
    s = pio.load_spectrum_image(TEM_BCF, elements=["Fe", "O"])
    assert sorted(s.metadata.Sample.elements) == ["Fe", "O"]
    with pytest.raises(pio.PsnmfIOError, match="Xx"):
        pio.load_spectrum_image(TEM_BCF, elements=["Fe", "Xx"])


def test_to_counts_on_real_data(tem, velox):
    for s in (tem, velox):
        X, (ny, nx) = pio.to_counts(s)
        assert (ny, nx) == s.data.shape[:2]
        assert X.shape == (ny * nx, s.data.shape[2])
        assert X.dtype == np.int32
        assert X.sum() == s.data.sum()
        np.testing.assert_array_equal(X[[5]].toarray()[0], s.data.reshape(ny * nx, -1)[5])


@needs_real
def test_lazy_load_gives_the_same_counts(tem):
    lazy = pio.load_spectrum_image(TEM_BCF, lazy=True)
    assert lazy._lazy
    X_lazy, shape = pio.to_counts(lazy)
    X, _ = pio.to_counts(tem)
    assert shape == (64, 64)
    assert (X_lazy != X).nnz == 0


def test_to_counts_in_blocks_and_from_dask(monkeypatch):
    import dask.array as da

    rng = np.random.default_rng(0)
    cube = rng.poisson(0.3, size=(7, 5, 11)).astype(np.uint16)
    monkeypatch.setattr(pio.counts, "BLOCK_BYTES", 3 * 5 * 11 * 2)  # 3 rows per block
    X, shape = pio.to_counts(cube)
    np.testing.assert_array_equal(X.toarray(), cube.reshape(35, 11))
    Xd, _ = pio.to_counts(da.from_array(cube, chunks=(2, 5, 4)))
    np.testing.assert_array_equal(Xd.toarray(), cube.reshape(35, 11))
    Xf, _ = pio.to_counts(_eds(cube.astype(np.float64)), dtype=np.float32)
    assert Xf.dtype == np.float32 and shape == (7, 5)


def test_to_counts_rejects_invalid_counts():
    with pytest.raises(pio.InvalidCountsError, match="negative"):
        pio.to_counts(np.full((2, 2, 3), -1, dtype=np.int16))
    with pytest.raises(pio.InvalidCountsError, match="NaN"):
        pio.to_counts(np.full((2, 2, 3), np.nan))
    with pytest.raises(pio.InvalidCountsError, match="float32"):
        pio.to_counts(np.full((2, 2, 3), 0.5))
    with pytest.warns(UserWarning, match="Poisson"):
        X, _ = pio.to_counts(np.full((2, 2, 3), 0.5), dtype=np.float32)
    assert X.sum() == pytest.approx(6.0)
    with pytest.raises(pio.InvalidCountsError, match="shape"):
        pio.to_counts(np.zeros((4, 3)))


# ---------------------------------------------------------------------------
# npz and hspy round trips
# ---------------------------------------------------------------------------
def test_npz_round_trip(tem, sem, tmp_path):
    for s, stype in ((tem, "EDS_TEM"), (sem, "EDS_SEM")):
        path = pio.save_npz(s, tmp_path / f"{stype}.npz")
        back = pio.load_spectrum_image(path)
        assert back.metadata.Signal.signal_type == stype
        np.testing.assert_array_equal(back.data, s.data)
        a, b = back.axes_manager.signal_axes[0], s.axes_manager.signal_axes[0]
        assert (a.scale, a.offset) == pytest.approx((b.scale, b.offset))
        assert a.units == "keV"
        assert back.metadata.Sample.elements == s.metadata.Sample.elements
        mode = stype[-3:]
        beam = f"Acquisition_instrument.{mode}.beam_energy"
        assert back.metadata.get_item(beam) == s.metadata.get_item(beam)


def test_npz_refuses_a_non_uniform_energy_axis_and_hspy_keeps_it(tmp_path):
    s = _eds(np.ones((2, 3, 12), dtype=np.uint16))
    axis = s.axes_manager.signal_axes[0]
    axis.convert_to_non_uniform_axis()
    axis.axis = 0.2 + 0.01 * np.arange(12) ** 1.2
    with pytest.raises(pio.UnsupportedFormatError, match="non-uniform.*save_signal"):
        pio.save_npz(s, tmp_path / "nonuniform.npz")
    assert not (tmp_path / "nonuniform.npz").exists()
    back = pio.load_spectrum_image(pio.save_signal(s, tmp_path / "nonuniform.hspy"))
    np.testing.assert_allclose(back.axes_manager.signal_axes[0].axis, axis.axis)


def test_npz_layout_written_by_hand(tmp_path):
    path = tmp_path / "plain.npz"
    counts = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4)
    np.savez(
        path,
        counts=counts,
        energy_offset=0.1,
        energy_scale=0.02,
        elements=np.array(["Fe", "O"]),
        beam_energy=120.0,
    )
    s = pio.load_spectrum_image(path)
    assert type(s).__name__ == "EDSTEMSpectrum"
    assert s.axes_manager.signal_axes[0].offset == pytest.approx(0.1)
    assert s.metadata.Acquisition_instrument.TEM.beam_energy == 120.0
    assert s.metadata.Sample.elements == ["Fe", "O"]
    np.savez(tmp_path / "nocal.npz", counts=counts)
    with pytest.warns(UserWarning, match="energy_scale"):
        pio.load_spectrum_image(tmp_path / "nocal.npz")
    np.savez(tmp_path / "nocounts.npz", data=counts)
    with pytest.raises(pio.InvalidCountsError, match="nocounts.npz"):
        pio.load_spectrum_image(tmp_path / "nocounts.npz")
    np.savez(tmp_path / "flat.npz", counts=counts[0], energy_scale=0.01)
    with pytest.raises(pio.NoSpectrumImageError, match="flat.npz"):
        pio.load_spectrum_image(tmp_path / "flat.npz")


@pytest.mark.parametrize(
    "values, exc, match",
    [(-1.0, pio.InvalidCountsError, "negative"), (np.nan, pio.InvalidCountsError, "NaN")],
)
def test_invalid_counts_at_load_name_the_file(tmp_path, values, exc, match):
    counts = np.ones((2, 2, 5))
    counts[1, 1, 2] = values
    path = tmp_path / "bad.npz"
    np.savez(path, counts=counts, energy_scale=0.01)
    with pytest.raises(exc, match=match) as err:
        pio.load_spectrum_image(path)
    assert "bad.npz" in str(err.value)


def test_non_integer_counts_warn(tmp_path):
    path = tmp_path / "scaled.npz"
    np.savez(path, counts=np.full((2, 2, 5), 0.25), energy_scale=0.01)
    with pytest.warns(UserWarning, match="undo the scale"):
        pio.load_spectrum_image(path)


def test_hspy_round_trip_keeps_axes_and_metadata(velox, tmp_path):
    path = pio.save_signal(velox, tmp_path / "velox.hspy")
    back = pio.load_spectrum_image(path)
    np.testing.assert_array_equal(back.data, velox.data)
    for a, b in zip(back.axes_manager._axes, velox.axes_manager._axes, strict=True):
        assert (a.name, a.size, a.units, a.navigate) == (b.name, b.size, b.units, b.navigate)
        assert (a.scale, a.offset) == pytest.approx((b.scale, b.offset))
    assert back.metadata.Sample.elements == velox.metadata.Sample.elements
    assert back.metadata.Acquisition_instrument.TEM.beam_energy == 300.0
    assert back.metadata.General.psnmf_source.file == str(path)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def _zspy_writable() -> bool:
    import zarr

    return int(zarr.__version__.split(".")[0]) < 3


def test_zspy_round_trip_or_clear_error(tmp_path):
    s = _eds(np.arange(2 * 3 * 8, dtype=np.uint16).reshape(2, 3, 8))
    s.set_elements(["Cu"])
    target = tmp_path / "cube.zspy"
    if not _zspy_writable():
        with pytest.raises(pio.MissingDependencyError, match="cube.zspy") as err:
            pio.save_signal(s, target)
        assert ".hspy" in str(err.value)
        assert os.listdir(tmp_path) == []
        return
    path = pio.save_signal(s, target)
    assert path.is_dir()
    np.testing.assert_array_equal(pio.load_spectrum_image(path).data, s.data)
    with pytest.raises(pio.OutputExistsError, match="cube.zspy"):
        pio.save_signal(s, path)
    pio.save_signal(_eds(s.data * 2), path, overwrite=True)
    np.testing.assert_array_equal(pio.load_spectrum_image(path).data, s.data * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.zspy"]


def test_atomic_path_replaces_a_folder(tmp_path):
    final = tmp_path / "store.zspy"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(RuntimeError):
        with pio.atomic_path(final) as tmp:
            tmp.mkdir()
            (tmp / "new").write_text("new")
            raise RuntimeError
    assert os.listdir(final) == ["old"]
    with pio.atomic_path(final) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert os.listdir(final) == ["new"]
    assert os.listdir(tmp_path) == ["store.zspy"]


def test_save_signal_refuses_to_overwrite(tmp_path):
    s = _eds(np.ones((2, 2, 4), dtype=np.uint8))
    path = tmp_path / "a.hspy"
    path.write_bytes(b"precious")
    with pytest.raises(pio.OutputExistsError, match="overwrite=True") as err:
        pio.save_signal(s, path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, FileExistsError) and isinstance(err.value, ValueError)
    assert path.read_bytes() == b"precious"
    pio.save_signal(s, path, overwrite=True)
    np.testing.assert_array_equal(pio.load_spectrum_image(path).data, s.data)
    with pytest.raises(pio.UnsupportedFormatError, match=r"\.hspy"):
        pio.save_signal(s, tmp_path / "a.tif")


def test_ev_energy_axis_is_normalised_to_kev(tmp_path):
    s = _eds(np.ones((2, 2, 10), dtype=np.uint8), units="eV", scale=10.0, offset=-200.0)
    path = pio.save_signal(s, tmp_path / "ev.hspy")
    back = pio.load_spectrum_image(path)
    axis = back.axes_manager.signal_axes[0]
    assert axis.units == "keV"
    assert (axis.scale, axis.offset) == pytest.approx((0.01, -0.2))


# ---------------------------------------------------------------------------
# Errors on input
# ---------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "nope.bcf"
    with pytest.raises(pio.InputNotFoundError, match="nope.bcf") as err:
        pio.load_spectrum_image(path)
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    with pytest.raises(pio.InputNotFoundError):
        pio.describe_signals(path)


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_bytes(b"x")
    with pytest.raises(pio.UnsupportedFormatError, match="data.xyz") as err:
        pio.load_spectrum_image(path)
    for ext in (".bcf", ".emd", ".pts", ".spd", ".hspy", ".zspy", ".rpl", ".npz"):
        assert ext in str(err.value)
    raw = tmp_path / "cube.raw"
    raw.write_bytes(b"x")
    with pytest.raises(pio.UnsupportedFormatError, match=r"\.rpl"):
        pio.load_spectrum_image(raw)


@needs_real
@pytest.mark.parametrize(
    "source, name, nbytes",
    [(TEM_BCF, "cut.bcf", 100_000), (VELOX, "cut.emd", 3_000_000), (None, "empty.hspy", 0)],
)
def test_corrupt_or_truncated_file(tmp_path, source, name, nbytes):
    path = tmp_path / name
    path.write_bytes(source.read_bytes()[:nbytes] if source else b"")
    with pytest.raises(pio.CorruptFileError, match="truncated or corrupt") as err:
        pio.load_spectrum_image(path)
    assert name in str(err.value)
    assert err.value.__cause__ is not None


def test_random_bytes_are_reported_as_corrupt(tmp_path):
    path = tmp_path / "junk.bcf"
    path.write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(pio.CorruptFileError, match="junk.bcf"):
        pio.load_spectrum_image(path)


def test_missing_reader_dependency(tmp_path, monkeypatch):
    import hyperspy.api as hs

    def fail(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'sparse'", name="sparse")

    monkeypatch.setattr(hs, "load", fail)
    path = tmp_path / "x.emd"
    path.write_bytes(b"x")
    with pytest.raises(pio.MissingDependencyError, match="pip install sparse") as err:
        pio.load_spectrum_image(path)
    assert "x.emd" in str(err.value)


def test_file_without_eds_spectrum_image_lists_contents(tmp_path):
    import hyperspy.api as hs

    path = tmp_path / "image.hspy"
    image = hs.signals.Signal2D(np.zeros((4, 4)))
    image.metadata.General.title = "HAADF-only"
    image.save(path)
    with pytest.raises(pio.NoSpectrumImageError, match="image.hspy") as err:
        pio.load_spectrum_image(path)
    assert "HAADF-only" in str(err.value) and "Signal2D" in str(err.value)


def test_line_scan_needs_require_2d_false(tmp_path):
    path = pio.save_signal(_eds(np.ones((6, 8), dtype=np.uint8)), tmp_path / "line.hspy")
    with pytest.raises(pio.NoSpectrumImageError, match="2-D spectrum image") as err:
        pio.load_spectrum_image(path)
    assert "line.hspy" in str(err.value)
    s = pio.load_spectrum_image(path, require_2d=False)
    assert s.axes_manager.navigation_dimension == 1


def test_generic_signal1d_cube_is_used_as_eds_with_a_warning(tmp_path):
    """The only spectrum-image-shaped signal of a file, without signal type (a .rpl without
    ``signal``, a plain Signal1D), is used as EDS_TEM with a warning: no signal_index needed
    (the command line has none)."""
    import hyperspy.api as hs

    cube = hs.signals.Signal1D(np.ones((2, 3, 5), dtype=np.uint8))
    cube.axes_manager.signal_axes[0].units = "keV"
    path = tmp_path / "generic.hspy"
    cube.save(path)
    for kwargs in ({}, {"signal_index": 0}):
        with pytest.warns(UserWarning, match="EDS_TEM"):
            s = pio.load_spectrum_image(path, **kwargs)
        assert type(s).__name__ == "EDSTEMSpectrum"


# ---------------------------------------------------------------------------
# Atomic writing
# ---------------------------------------------------------------------------
def test_atomic_path_success(tmp_path):
    final = tmp_path / "out.txt"
    with pio.atomic_path(final) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".out.txt.tmp-")
        assert not final.exists()
        tmp.write_text("done")
    assert final.read_text() == "done"
    assert os.listdir(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
@pytest.mark.parametrize("existing", [False, True])
def test_atomic_path_failure_leaves_nothing_and_keeps_old_file(tmp_path, exc, existing):
    final = tmp_path / "result.json"
    if existing:
        final.write_text("old")
    with pytest.raises(type(exc)):
        with pio.atomic_path(final) as tmp:
            tmp.write_text("half-writ")
            raise exc
    assert os.listdir(tmp_path) == (["result.json"] if existing else [])
    if existing:
        assert final.read_text() == "old"


def test_save_signal_interrupted_keeps_old_file(tmp_path, monkeypatch):
    s = _eds(np.ones((2, 2, 4), dtype=np.uint8))
    final = tmp_path / "s.hspy"
    final.write_bytes(b"old")
    original = type(s).save

    def interrupted(self, filename, *args, **kwargs):
        original(self, filename, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(s), "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pio.save_signal(s, final, overwrite=True)
    assert final.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["s.hspy"]


def test_atomic_path_nothing_written_is_an_error(tmp_path):
    with pytest.raises(pio.PsnmfIOError, match="Nothing was written"):
        with pio.atomic_path(tmp_path / "x.txt"):
            pass
    assert os.listdir(tmp_path) == []


def test_write_json_converts_numpy(tmp_path):
    obj = {
        "a": np.int64(3),
        "b": np.float32(0.5),
        "c": np.arange(3),
        "d": np.bool_(True),
        "e": (1, np.nan),
        "f": tmp_path,
        "g": np.str_("Fe"),
    }
    path = pio.write_json(obj, tmp_path / "sub" / "r.json")
    assert json.loads(path.read_text()) == {
        "a": 3,
        "b": 0.5,
        "c": [0, 1, 2],
        "d": True,
        "e": [1, None],
        "f": str(tmp_path),
        "g": "Fe",
    }


def test_write_text_and_savefig(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert pio.write_text("héllo\n", tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = pio.savefig(fig, tmp_path / "f.png", dpi=50)
    plt.close(fig)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["f.png", "t.txt"]


def test_prepare_output_dir(tmp_path):
    out = pio.prepare_output_dir(tmp_path / "a" / "b")
    assert out.is_dir() and not any(out.iterdir())
    assert pio.prepare_output_dir(out) == out  # empty: fine
    (out / "old.txt").write_text("x")
    with pytest.raises(pio.OutputExistsError, match="--overwrite") as err:
        pio.prepare_output_dir(out)
    assert str(out) in str(err.value)
    assert pio.prepare_output_dir(out, overwrite=True) == out
    assert os.listdir(out) == ["old.txt"]
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(pio.OutputExistsError, match="is a file"):
        pio.prepare_output_dir(afile)
    with pytest.raises(pio.OutputNotWritableError, match="file/sub"):
        pio.prepare_output_dir(afile / "sub")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere"
)
def test_prepare_output_dir_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(pio.OutputNotWritableError, match="locked"):
            pio.prepare_output_dir(locked)
    finally:
        locked.chmod(0o700)


def test_file_checksum(tmp_path):
    data = np.random.default_rng(2).bytes(3000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert pio.file_checksum(path) == expected
    assert pio.file_checksum(path, chunk_size=7) == expected
    with pytest.raises(pio.InputNotFoundError, match="g.bin"):
        pio.file_checksum(tmp_path / "g.bin")


@needs_real
def test_file_checksum_real_file():
    assert len(pio.file_checksum(TEM_BCF)) == 64


def test_no_warnings_on_clean_counts(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, counts=np.ones((2, 2, 3), dtype=np.uint16), energy_scale=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pio.load_spectrum_image(path)


# ---------------------------------------------------------------------------
# A non-uniform energy axis survives unmix (issue 13, item 6)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("units", ["keV", "eV"])
def test_non_uniform_energy_axis_is_kept_in_every_output(tmp_path, units):
    import hyperspy.api as hs
    from exspy.signals import EDSTEMSpectrum

    from psnmf.pipeline import unmix

    rng = np.random.default_rng(0)
    kev = 0.3 + 0.05 * np.arange(120) + 2e-4 * np.arange(120) ** 2  # widening channels
    axes = [{"name": "y", "size": 12, "navigate": True},
            {"name": "x", "size": 12, "navigate": True},
            {"name": "Energy", "axis": kev * (1000 if units == "eV" else 1), "units": units,
             "navigate": False}]
    path = tmp_path / "nonuniform.hspy"
    EDSTEMSpectrum(rng.poisson(2.0, (12, 12, 120)), axes=axes).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unmix(path, n_components=2, bin_factor=2, n_boot=0, progress=False, report=False,
              output_dir=tmp_path / "R", write_denoised=True, max_iter=30, max_iter_full=10)
    for name in ("component_spectra.hspy", "denoised.hspy", "pca_denoised.hspy",
                 "psnmf_decomposition.hspy", "pca_decomposition.hspy"):
        s = hs.load(tmp_path / "R" / name, lazy=True)
        if "decomposition" in name:
            s = s.get_decomposition_factors()
        axis = s.axes_manager.signal_axes[0]
        assert not axis.is_uniform, name
        assert axis.units == "keV", name
        np.testing.assert_allclose(axis.axis, kev, err_msg=name)
