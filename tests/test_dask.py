"""The Dask path (lazy signals, dask arrays, a distributed cluster) equals the in-memory path."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")

from psnmf import PSNMF  # noqa: E402
from psnmf.engine._dask import bin_lazy, is_lazy, reconstruct_lazy  # noqa: E402
from psnmf.engine.binning import bin_counts  # noqa: E402

PAPER = {"spectra": "nmf", "smoothing": None}


@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(0)
    spectra = rng.dirichlet(np.ones(64), size=3)
    yy, xx = np.mgrid[:42, :38]  # not a multiple of the bin factor: partial edge bins
    maps = np.stack([xx < 15, (xx >= 15) & (yy < 20), (xx >= 15) & (yy >= 20)], -1)
    maps = 0.8 * maps + 0.2 / 3
    return rng.poisson(60 * maps @ spectra).astype(np.uint16)


@pytest.fixture(scope="module")
def in_memory(cube):
    return PSNMF(3, 4, random_state=0, max_iter=300, **PAPER).fit(cube)


def _same(a, b):
    np.testing.assert_allclose(a.maps_, b.maps_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.spectra_, b.spectra_, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    np.testing.assert_allclose(a.loss_["full"], b.loss_["full"], rtol=1e-10)
    assert a.n_iter_ == b.n_iter_


def test_lazy_binning_equals_in_memory(cube):
    lazy = da.from_array(cube, chunks=(10, 20, 64))  # chunks across bins and columns
    ref = bin_counts(cube.reshape(-1, 64), cube.shape[:2], 4)
    got = bin_lazy(lazy, 4)
    np.testing.assert_array_equal(got.toarray(), ref.toarray())


def test_dask_array_on_local_cluster_equals_in_memory(cube, in_memory):
    lazy = da.from_array(cube, chunks=(8, 38, 64))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, distributed.Client(cluster):
        model = PSNMF(3, 4, random_state=0, max_iter=300, **PAPER).fit(lazy)
    _same(model, in_memory)


def test_lazy_signal_equals_in_memory(cube, in_memory):
    hs = pytest.importorskip("hyperspy.api")
    s = hs.signals.Signal1D(cube).as_lazy()
    assert is_lazy(s)
    model = PSNMF(3, 4, random_state=0, max_iter=300, **PAPER).fit(s)
    _same(model, in_memory)
    assert model.get_maps().data.shape == (3, 42, 38)


def test_lazy_pure_spectra_equal_in_memory(cube):
    ref = PSNMF(3, 4, random_state=0, max_iter=300, spectra="pure", smoothing=None).fit(cube)
    model = PSNMF(3, 4, random_state=0, max_iter=300, spectra="pure", smoothing=None).fit(
        da.from_array(cube, chunks=(8, 38, 64)))
    _same(model, ref)
    np.testing.assert_array_equal(model.vertex_moved_, ref.vertex_moved_)
    np.testing.assert_array_equal(model.nmf_spectra_, ref.nmf_spectra_)


def test_lazy_reconstruct_equals_dense(in_memory):
    lazy = reconstruct_lazy(in_memory.maps_, in_memory.scale_, in_memory.spectra_,
                            chunk_rows=16, dtype=np.float64)
    np.testing.assert_allclose(lazy.compute(), in_memory.reconstruct(), rtol=1e-12)


def test_free_spectra_refused_on_lazy_data(cube):
    with pytest.raises(ValueError, match="stage2_spectra='free'"):
        PSNMF(3, 4, stage2_spectra="free", smoothing=None).fit(
            da.from_array(cube, chunks=(8, 38, 64)))


def test_auto_smoothing_on_lazy_data_warns_and_keeps_per_pixel_maps(cube):
    """TV maps need the whole image: 'auto' gives the per-pixel maps, says so, records why."""
    lazy = da.from_array(cube, chunks=(8, 38, 64))
    with pytest.warns(UserWarning, match="per-pixel maps"):
        model = PSNMF(3, 4, random_state=0, max_iter=300, spectra="nmf").fit(lazy)
    ref = PSNMF(3, 4, random_state=0, max_iter=300, **PAPER).fit(lazy)
    np.testing.assert_array_equal(model.maps_, ref.maps_)
    assert model.smoothing_["lam"] == 0.0 and "memory" in model.smoothing_["note"]
    with pytest.raises(ValueError, match="smoothing=0.1 couples neighbouring pixels"):
        PSNMF(3, 4, smoothing=0.1).fit(lazy)
