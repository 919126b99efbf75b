"""Spatial binning of count cubes and the matching upsampling of maps.

Binning sums the counts of ``b x b`` pixel blocks, so the binned data are still Poisson.
When ``b`` does not divide the image size, the last row/column of bins are partial (they
sum fewer pixels): no pixel is dropped. The PSNMF model has a per-pixel count scale, so
partial bins with fewer counts need no special treatment.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from psnmf._validation import check_positive_int


def check_bin_factor(bin_factor, image_shape: tuple[int, int]) -> int:
    """Validate a bin factor against an image of shape ``(ny, nx)``."""
    b = check_positive_int(bin_factor, "bin_factor")
    ny, nx = image_shape
    if b > max(ny, nx):
        raise ValueError(
            f"bin_factor={b} is larger than the image ({ny} x {nx} pixels). Choose "
            f"1 <= bin_factor <= {max(ny, nx)}; values that leave at least a few bins per "
            "side work best."
        )
    return b


def binned_shape(image_shape: tuple[int, int], bin_factor: int) -> tuple[int, int]:
    """Shape of the binned image: ``ceil(ny / b), ceil(nx / b)`` (partial edge bins kept)."""
    ny, nx = image_shape
    b = int(bin_factor)
    return (-(-ny // b), -(-nx // b))


def bin_index(image_shape: tuple[int, int], bin_factor: int) -> np.ndarray:
    """Flat bin index of every pixel (row-major), shape ``(ny * nx,)``."""
    ny, nx = image_shape
    b = int(bin_factor)
    nby, nbx = binned_shape(image_shape, b)
    yy, xx = np.divmod(np.arange(ny * nx), nx)
    return (yy // b) * nbx + (xx // b)


def binning_matrix(image_shape: tuple[int, int], bin_factor: int) -> sp.csr_matrix:
    """Sparse (n_bins, n_pixels) 0/1 matrix ``B`` such that ``B @ X`` bins ``X``."""
    ny, nx = image_shape
    idx = bin_index(image_shape, bin_factor)
    n_bins = int(np.prod(binned_shape(image_shape, bin_factor)))
    return sp.csr_matrix(
        (np.ones(ny * nx), (idx, np.arange(ny * nx))), shape=(n_bins, ny * nx)
    )


def bin_counts(
    X: sp.spmatrix | np.ndarray, image_shape: tuple[int, int], bin_factor: int
) -> sp.csr_matrix:
    """Bin a (pixels, channels) counts matrix (rows in row-major image order).

    Parameters
    ----------
    X : scipy.sparse matrix or ndarray, shape (ny * nx, n_channels)
    image_shape : (ny, nx)
    bin_factor : int

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_bins, n_channels)
        Summed counts of every ``b x b`` block, row-major over the binned image, float64
        with sorted int32 indices and int64 row pointers (the form the engine's NMF takes
        without re-validation, ``poisson_nmf(..., check_input=False)``).
    """
    ny, nx = image_shape
    if X.shape[0] != ny * nx:
        raise ValueError(
            f"X has {X.shape[0]} rows but image_shape={image_shape} has {ny * nx} pixels."
        )
    b = check_bin_factor(bin_factor, image_shape)
    B = binning_matrix(image_shape, b)
    out = sp.csr_matrix(B @ (X if sp.issparse(X) else sp.csr_matrix(X)), dtype=np.float64)
    out.sort_indices()
    out.eliminate_zeros()
    # the canonical index dtypes of validated counts (psnmf.engine.poisson_nmf.is_counts_csr)
    out.indices = out.indices.astype(np.int32, copy=False)
    out.indptr = out.indptr.astype(np.int64, copy=False)
    return out


def bin_cube(cube: np.ndarray, bin_factor: int) -> np.ndarray:
    """Bin a dense (ny, nx, channels) cube by summing ``b x b`` blocks (partial edges kept).

    Examples
    --------
    >>> import numpy as np
    >>> bin_cube(np.ones((5, 4, 2)), 2)[:, :, 0]
    array([[4., 4.],
           [4., 4.],
           [2., 2.]])
    """
    cube = np.asarray(cube)
    ny, nx, ne = cube.shape
    b = check_bin_factor(bin_factor, (ny, nx))
    nby, nbx = binned_shape((ny, nx), b)
    dtype = np.result_type(cube.dtype, np.int64) if cube.dtype.kind in "iub" else cube.dtype
    padded = np.zeros((nby * b, nbx * b, ne), dtype=dtype)
    padded[:ny, :nx] = cube
    return padded.reshape(nby, b, nbx, b, ne).sum(axis=(1, 3))


def upsample_maps(maps: np.ndarray, image_shape: tuple[int, int], bin_factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of binned maps back to the full image.

    Parameters
    ----------
    maps : ndarray, shape (nby, nbx, k) or (n_bins, k)
    image_shape : (ny, nx) of the full-resolution image
    bin_factor : int

    Returns
    -------
    ndarray, shape (ny, nx, k): every pixel gets the values of the bin it belongs to.
    """
    ny, nx = image_shape
    n_bins = int(np.prod(binned_shape(image_shape, bin_factor)))
    flat = np.asarray(maps).reshape(n_bins, -1)
    return flat[bin_index(image_shape, bin_factor)].reshape(ny, nx, -1)
