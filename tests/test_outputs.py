"""The outputs of ``unmix``: factors that rebuild the denoised cubes, dense cubes on request.

On ``test_TEM.bcf`` (64 x 64 x 1979 channels after cropping) and a small simulated map.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from psnmf.baselines import pca_factors
from psnmf.hyperspy import denoised_from_factors
from psnmf.pipeline import unmix

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FAST = {"max_iter": 100, "max_iter_full": 30, "progress": False, "n_boot": 0}

pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data not found at {REAL}")


#: Relative difference allowed between a model rebuilt from float32 factors (the HyperSpy
#: decomposition files) and the float64 one: float32's precision, 6e-8 a value, times a
#: margin for the sums of the products.
F32 = 1e-6


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    """test_TEM.bcf with ``write_denoised=True`` (factors and dense cubes)."""
    out = tmp_path_factory.mktemp("outputs") / "tem"
    res = unmix(REAL / "test_TEM.bcf", n_components=3, bin_factor=8, output_dir=out,
                seed=0, report=False, write_denoised=True, **FAST)
    return res, out


def test_psnmf_factors_rebuild_the_denoised_cube(dense_run):
    import hyperspy.api as hs

    res, out = dense_run
    exact = res.model.scale_[..., None] * (res.model.maps_ @ res.model.spectra_)
    # the function route, lazy and in memory
    parts = [hs.load(out / f) for f in ("component_spectra.hspy", "component_maps.hspy",
                                        "count_scale.hspy")]
    lazy = denoised_from_factors(*parts)
    assert lazy._lazy and lazy.data.dtype == np.float64
    np.testing.assert_array_equal(lazy.data.compute(), exact)
    np.testing.assert_array_equal(denoised_from_factors(*parts, lazy=False).data, exact)
    blocks = denoised_from_factors(*parts, chunk_bytes=10 * 64 * 8 * exact.shape[-1])
    assert blocks.data.numblocks[0] == 7  # row blocks of 10 rows
    np.testing.assert_array_equal(blocks.data.compute(), exact)
    pca_blocks = denoised_from_factors(
        hs.load(out / "pca_decomposition.hspy").get_decomposition_factors(),
        hs.load(out / "pca_decomposition.hspy").get_decomposition_loadings(), chunk_bytes=1)
    assert pca_blocks.data.numblocks[0] == 64
    # the decomposition files hold float32 factors: float32 precision
    assert _rel(pca_blocks.data.compute(), res.pca.cube()) < F32
    assert type(lazy).__name__ == "LazyEDSTEMSpectrum"
    axis = lazy.axes_manager.signal_axes[0]
    ref = res.signal.axes_manager.signal_axes[0]
    assert (axis.offset, axis.scale, axis.size) == pytest.approx((ref.offset, ref.scale, ref.size))
    # HyperSpy's route: the decomposition file's get_decomposition_model(), to float32
    # precision (its factors are float32)
    dec = hs.load(out / "psnmf_decomposition.hspy", lazy=True)
    model = dec.get_decomposition_model()
    assert _rel(model.data.compute(), exact) < F32
    assert dec.learning_results.factors.shape == (exact.shape[-1], 3)
    # the result's own lazy cube
    np.testing.assert_array_equal(np.asarray(res.denoised.data), exact)


def test_pca_factors_rebuild_the_pca_cube(dense_run):
    import hyperspy.api as hs

    res, out = dense_run
    ref = res.pca.cube()
    dec = hs.load(out / "pca_decomposition.hspy", lazy=True)
    assert dec.learning_results.poissonian_noise_normalized
    assert _rel(dec.get_decomposition_model().data.compute(), ref) < F32
    rebuilt = denoised_from_factors(dec.get_decomposition_factors(),
                                    dec.get_decomposition_loadings())
    assert _rel(rebuilt.data.compute(), ref) < F32
    # and it is HyperSpy's PCA of the same data (in memory: the run's signal of a file is lazy)
    s = res.signal.deepcopy()
    if s._lazy:
        s.compute()
    s.change_dtype("float64")
    s.decomposition(normalize_poissonian_noise=True, algorithm="SVD", output_dimension=20,
                    svd_solver="randomized", random_state=0, print_info=False,
                    navigation_mask=None)
    assert _rel(ref, s.get_decomposition_model(3).data) < 1e-10


def test_write_denoised_gives_float32_chunked_compressed_cubes(dense_run):
    import hyperspy.api as hs

    res, out = dense_run
    refs = {"denoised.hspy": np.asarray(res.denoised.data), "pca_denoised.hspy": res.pca.cube()}
    for name, ref in refs.items():
        with h5py.File(out / name, "r") as f:
            (key,) = [k for k in f["Experiments"]]
            dset = f["Experiments"][key]["data"]
            assert dset.dtype == np.float32 and dset.shape == ref.shape
            assert dset.chunks is not None and dset.compression == "gzip"
        cube = hs.load(out / name)
        assert cube.metadata.Signal.signal_type.startswith("EDS")
        np.testing.assert_allclose(cube.data, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_default_folder_is_smaller_than_the_input(tmp_path):
    """The default outputs (factors, figures, report) of a real file take less disk.

    The report has a fixed part of about 0.75 MB (BokehJS compressed, 0.6 MB, and the
    figures that are not maps), and each map panel of a figure up to ~0.1 MB: the file
    here is the 6.7 MB Velox map."""
    src = REAL / "example_velox_EELS_EDS.emd"
    out = tmp_path / "res"
    res = unmix(src, n_components=3, bin_factor=5, output_dir=out, seed=0, **FAST)
    size = sum(p.stat().st_size for p in out.iterdir())
    assert size < src.stat().st_size, (size, src.stat().st_size)
    assert not (out / "denoised.hspy").exists() and not (out / "pca_denoised.hspy").exists()
    assert set(res.summary.files) >= {"spectra", "maps", "scale", "psnmf_decomposition",
                                      "pca_decomposition", "report", "summary"}


def test_element_maps_from_factors_equal_the_cube_route(dense_run):
    """Line maps computed from the factors = get_lines_intensity of the denoised cubes."""
    from psnmf.pipeline.load import INTEGRATION_WINDOWS

    res, _ = dense_run
    lines = res.summary.input.xray_lines_mapped
    assert lines
    for kind, cube in (("psnmf", res.denoised), ("pca", res.pca_denoised)):
        dense = cube.deepcopy()
        dense.compute()
        ref = dense.get_lines_intensity(xray_lines=lines, only_one=True,
                                        integration_windows=INTEGRATION_WINDOWS)
        for line, m in zip(lines, ref, strict=True):
            np.testing.assert_allclose(res.element_maps[kind][line], m.data, rtol=1e-9,
                                       atol=1e-9 * np.abs(m.data).max())


def test_pca_failure_is_reported_not_raised():
    """A map too small for the PCA of k components: the run goes on without PCA."""
    from psnmf.simulate import mantle

    signal = mantle("medium", seed=0, shape=(12, 12)).to_signal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="n_components"):
            pca_factors(signal, 200)
    from psnmf.pipeline import steps

    notes: list[str] = []
    baseline = steps.pca(signal, 200, 0, notes)
    assert baseline.factors is None and baseline.denoised is None
    assert notes and "PCA baseline could not be computed" in notes[0]


def test_default_folder_holds_no_cube_and_each_figure_once(tmp_path):
    """The default results of a small simulated run hold no dense cube (neither as a file
    nor as a decomposition's placeholder data: that dataset has no chunk written), each
    figure's bytes once (the page refers to the PNG files beside it, it embeds none), the
    precisions the documentation gives, and no more bytes than the free-space check
    asked for."""
    import re

    import hyperspy.api as hs

    import psnmf.simulate
    from psnmf.pipeline import steps

    signal = psnmf.simulate.mantle("medium", seed=0, shape=(40, 56)).to_signal()
    out = tmp_path / "res"
    res = unmix(signal, n_components=3, bin_factor=4, output_dir=out, seed=0,
                **{**FAST, "n_boot": 2})
    shape = res.signal.data.shape
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    assert not set(sizes) & set(steps.DENSE_FILES.values())
    dtypes = {}
    for name in sizes:
        if name.endswith(".hspy"):
            with h5py.File(out / name, "r") as f:
                (group,) = f["Experiments"].values()
                dtypes[name] = group["data"].dtype
                if name.endswith("_decomposition.hspy"):
                    assert group["data"].shape == shape
                    assert group["data"].id.get_storage_size() == 0  # nothing written
                    lr = group["learning_results"]
                    dtypes[name] = (lr["factors"].dtype, lr["loadings"].dtype)
    assert dtypes == {
        "component_spectra.hspy": np.float64, "component_maps.hspy": np.float64,
        "count_scale.hspy": np.float64, "residual_map.hspy": np.float16,
        "psnmf_decomposition.hspy": (np.float32, np.float32),
        "pca_decomposition.hspy": (np.float32, np.float32),
        "composition_maps.hspy": np.float32, "composition_sigma_maps.hspy": np.float16}
    # the sigma and residual maps: the run's to float16's rounding (half a unit in the
    # last place: 2**-11 relative, 2**-25 absolute below float16's normal range)
    sigma = hs.load(out / "composition_sigma_maps.hspy")
    ref = res.composition_maps.sigma
    assert sigma.data.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(sigma.data), np.isnan(ref))
    for got, want in ((sigma.data, ref), (hs.load(out / "residual_map.hspy").data,
                                          res.residuals.z)):
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=2.0**-11,
                                   atol=2.0**-25)
    # the page: no figure inside, every figure a file of the folder
    text = (out / "report.html").read_text()
    assert "data:image" not in text and "iVBORw0KGgo" not in text  # no (base64) PNG
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', re.sub(r"<script\b.*?</script>", "", text,
                                                          flags=re.S))
    pngs = {name for name in sizes if name.endswith(".png")}
    assert sorted(srcs) == sorted(pngs) and len(pngs) >= 9
    assert sum(sizes.values()) <= steps.result_bytes(
        shape, 3, write_denoised=False, report=True,
        n_lines=len(res.summary.input.xray_lines_mapped or ()))


def test_no_composition_table_below_zero_energy():
    """A run that kept the zero-energy peak (axis from -0.2 keV): no composition table,
    with a note naming the cause and the option, before any bootstrap fit."""
    from psnmf.pipeline import steps
    from psnmf.simulate import mantle

    signal = mantle("medium", seed=0, shape=(8, 8)).to_signal()
    signal.axes_manager.signal_axes[0].offset = -0.2
    notes: list[str] = []
    quantified = steps.quantify(None, None, signal, ["Mg_Ka", "Si_Ka", "O_Ka"], 20, 0, notes)
    assert quantified.table is None
    assert len(notes) == 1 and "starts at -0.2 keV" in notes[0]
    assert "--energy-range 0.2,HI" in notes[0]
