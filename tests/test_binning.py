"""Spatial binning keeps every pixel and every count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from psnmf.engine.binning import bin_counts, bin_cube, binned_shape, upsample_maps


@pytest.mark.parametrize("shape", [(12, 12), (13, 10), (7, 5)])
@pytest.mark.parametrize("b", [1, 2, 3, 4, 5])
def test_bin_conserves_counts_and_keeps_edges(shape, b):
    rng = np.random.default_rng(0)
    cube = rng.poisson(2.0, size=(*shape, 6))
    binned = bin_cube(cube, b)
    assert binned.shape[:2] == binned_shape(shape, b)
    assert binned.sum() == cube.sum()
    # the last partial bin holds exactly the edge pixels
    ny, nx = shape
    y0, x0 = (binned.shape[0] - 1) * b, (binned.shape[1] - 1) * b
    np.testing.assert_array_equal(binned[-1, -1], cube[y0:, x0:].sum(axis=(0, 1)))
    flat = bin_counts(sp.csr_matrix(cube.reshape(ny * nx, 6)), shape, b)
    np.testing.assert_array_equal(flat.toarray(), binned.reshape(-1, 6))


def test_bin_small_integer_dtype_does_not_overflow():
    cube = np.full((8, 8, 2), 200, dtype=np.uint8)
    assert bin_cube(cube, 4).max() == 200 * 16


def test_upsample_maps_inverts_block_structure():
    maps = np.arange(3 * 2 * 2, dtype=float).reshape(3, 2, 2)
    up = upsample_maps(maps, (5, 4), 2)
    assert up.shape == (5, 4, 2)
    np.testing.assert_array_equal(up[4, 3], maps[2, 1])
    np.testing.assert_array_equal(up[0:2, 0:2].reshape(-1, 2), np.tile(maps[0, 0], (4, 1)))


@pytest.mark.parametrize(("b", "exc"), [(0, ValueError), (-2, ValueError), (2.0, TypeError),
                                        (13, ValueError)])
def test_bad_bin_factor(b, exc):
    with pytest.raises(exc, match="bin_factor"):
        bin_cube(np.ones((12, 10, 3)), b)
