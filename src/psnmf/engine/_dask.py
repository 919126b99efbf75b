"""PSNMF on Dask arrays and lazy HyperSpy signals: cubes larger than memory, many machines.

The three stages map onto Dask as follows.

1. **Binning** is a block-wise reduction: the cube is cut into bands of whole bin rows
   (``b`` image rows times a multiple), every band is summed ``b x b`` on a worker, and only
   the binned cube (``b^2`` times smaller) comes back.
2. **The binned NMF** (stage 1) runs in memory on the client: it is small.
3. **The full-resolution stage** with the spectra fixed is independent per pixel, so it runs
   band by band with :func:`dask.array.map_blocks`: each worker turns its band into sparse
   counts and solves its pixels' abundances. Only the maps come back (``k`` numbers a pixel).

Every pixel of stage 3 is solved to its own tolerance
(:func:`psnmf.engine._kernels.solve_fixed_spectra`), so the maps do not depend on how the cube is
chunked: they are the same as those of the in-memory path, bit for bit, when the binned
data are the same.

Running on a cluster
--------------------
The computations go to whatever Dask scheduler is active. To use an existing cluster, open
a client before fitting::

    from dask.distributed import Client
    import hyperspy.api as hs
    from psnmf import PSNMF

    client = Client("tcp://scheduler-host:8786")     # or a LocalCluster, SLURMCluster...
    s = hs.load("big_map.zspy", lazy=True)           # chunks are read by the workers
    model = PSNMF(n_components=3, bin_factor=4, smoothing=None).fit(s)  # TV maps need it all

The workers must be able to read the file (shared file system or object store) and have
psnmf installed. Chunks of a few hundred MB that span whole image rows work best
(``s.rechunk(nav_chunks=(None, 64))`` or ``data.rechunk({0: 64, 1: -1, 2: -1})``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf._validation import check_counts_matrix
from psnmf.engine import _kernels as kernels
from psnmf.engine.binning import bin_cube, binned_shape
from psnmf.engine.poisson_nmf import NMFResult, poisson_nmf
from psnmf.engine.two_stage import stage2_start

#: Target size (bytes, of the stored dtype) of one band of rows in the Dask graph.
BAND_BYTES = 256 * 2**20


def is_lazy(X: Any) -> bool:
    """True for a dask array or a lazy HyperSpy signal (whose ``data`` is a dask array)."""
    data = X.data if hasattr(X, "axes_manager") and hasattr(X, "data") else X
    return hasattr(data, "dask") and hasattr(data, "map_blocks")


def _bands(data: Any, b: int) -> Any:
    """Rechunk a (ny, nx, ne) dask array into bands of whole bin rows spanning the image."""
    ny, nx, ne = data.shape
    row_bytes = nx * ne * np.dtype(data.dtype).itemsize
    rows = max(1, BAND_BYTES // max(row_bytes, 1))
    rows = max(b, (rows // b) * b)
    if data.chunks[0][0] % b == 0 and len(data.chunks[1]) == 1 and len(data.chunks[2]) == 1:
        if all(c % b == 0 for c in data.chunks[0][:-1]):
            return data  # already bands of whole bin rows
    return data.rechunk({0: min(rows, ny), 1: -1, 2: -1})


def _bin_band(block: np.ndarray, b: int) -> np.ndarray:
    block = np.asarray(block)
    if block.dtype.kind == "f":
        return bin_cube(block, b)
    return bin_cube(block, b).astype(np.int64, copy=False)


def bin_lazy(data: Any, bin_factor: int) -> sp.csr_matrix:
    """Bin a (ny, nx, ne) dask array ``b x b`` as a Dask reduction; return binned counts CSR.

    Partial edge bins are kept, as in :func:`psnmf.engine.binning.bin_counts`.
    """
    import dask.array as da

    b = int(bin_factor)
    ny, nx, ne = data.shape
    bands = _bands(data, b)
    nbx = binned_shape((ny, nx), b)[1]
    out_dtype = np.float64 if np.dtype(data.dtype).kind == "f" else np.int64
    binned = da.map_blocks(
        _bin_band, bands, b, dtype=out_dtype,
        chunks=(tuple(-(-c // b) for c in bands.chunks[0]), (nbx,), (ne,)),
    )
    cube = np.asarray(binned.compute())
    return _to_csr(cube.reshape(-1, ne))


def _to_csr(flat: np.ndarray) -> sp.csr_matrix:
    """Counts CSR (float64 data, sorted int32 indices) of a dense 2-D block, no float64 copy.

    The door of lazy data: every band is validated here as it is converted, on its worker.
    """
    return check_counts_matrix(sp.csr_matrix(flat))


def _solve_band(
    block: np.ndarray,
    binned_maps: np.ndarray,
    S: np.ndarray,
    b: int,
    max_iter: int,
    tol: float,
    block_info: dict | None = None,
) -> np.ndarray:
    """Stage 3 on one band: ``(rows, nx, k + 4)`` = maps, totals, loss0, loss1, iterations."""
    r0 = block_info[0]["array-location"][0][0] if block_info else 0
    rows, nx, ne = block.shape
    k = S.shape[0]
    X = _to_csr(np.asarray(block).reshape(rows * nx, ne))
    # nearest-neighbour upsampling of the binned maps for the band's rows
    yy = (np.arange(r0, r0 + rows) // b)[:, None]
    xx = (np.arange(nx) // b)[None, :]
    A0 = stage2_start(binned_maps[yy, xx].reshape(-1, k))
    # Dask runs bands side by side on its own threads: each band's kernels run serially
    # (they release the GIL; Numba's thread pool must not be entered from several threads)
    with kernels.serial_kernels():
        res = poisson_nmf(X, k, A_init=A0, S_init=S, update_S=False, max_iter=max_iter,
                          tol=tol, check_input=False)
    out = np.empty((rows * nx, k + 4))
    out[:, :k] = res.A
    out[:, k] = res.scale
    out[:, k + 1 : k + 3] = _pixel_loss(X, res.scale, res.info["pixel_xlogm"]).T
    out[:, k + 3] = res.info["pixel_iter"]
    return out.reshape(rows, nx, k + 4)


def _pixel_loss(X: sp.csr_matrix, totals: np.ndarray, xlogm: np.ndarray) -> np.ndarray:
    """Per-pixel generalised KL of the simplex model from ``sum x log(aS)`` (2, n)."""
    xlogx = np.zeros(X.shape[0])
    nz = np.diff(X.indptr) > 0
    if nz.any():
        xlogx[nz] = np.add.reduceat(X.data * np.log(X.data), X.indptr[:-1][nz])
    nlogn = np.where(totals > 0, totals * np.log(np.maximum(totals, 1e-300)), 0.0)
    return xlogx - nlogn - xlogm


def fit_full_lazy(
    data: Any,
    spectra: np.ndarray,
    binned_maps: np.ndarray,
    bin_factor: int,
    *,
    max_iter: int = 500,
    tol: float = 1e-7,
) -> NMFResult:
    """The full-resolution stage with fixed spectra on a (ny, nx, channels) dask array.

    Runs band by band (:func:`dask.array.map_blocks`); every pixel is solved to its own
    tolerance, so the result equals :func:`psnmf.engine.two_stage.fit_full` with
    ``stage2_spectra='fixed'`` bit for bit.

    Parameters
    ----------
    data : dask array (ny, nx, channels) of counts
    spectra : (k, channels) spectra of the binned stage
    binned_maps : (nby, nbx, k) or (binned pixels, k) maps of the binned stage
    bin_factor : int
    max_iter, tol : of :func:`psnmf.engine.poisson_nmf.poisson_nmf`

    Returns
    -------
    NMFResult
        ``A`` (ny * nx, k), ``scale`` (ny * nx,), ``loss`` ``[initial, final]`` summed over
        the pixels, ``n_iter`` the largest per-pixel count, ``S`` the spectra.
    """
    import dask.array as da

    b = int(bin_factor)
    ny, nx, _ = (int(n) for n in data.shape)
    k = spectra.shape[0]
    grid = np.asarray(binned_maps).reshape(*binned_shape((ny, nx), b), k)
    bands = _bands(data, b)
    solved = da.map_blocks(
        _solve_band, bands, grid, spectra, b, max_iter, tol,
        dtype=np.float64, chunks=(bands.chunks[0], (nx,), (k + 4,)),
    )
    out = np.asarray(solved.compute())  # (ny, nx, k + 4)
    n_iter_px = out[..., k + 3].ravel()
    return NMFResult(
        A=np.ascontiguousarray(out[..., :k]).reshape(ny * nx, k),
        S=spectra,
        scale=out[..., k].ravel(),
        loss=np.array([out[..., k + 1].sum(), out[..., k + 2].sum()]),
        n_iter=int(n_iter_px.max()),
        converged=bool(np.all(n_iter_px < max_iter)),
        info={"pixel_iter": n_iter_px},
    )


def reconstruct_lazy(
    maps: np.ndarray,
    scale: np.ndarray,
    spectra: np.ndarray,
    chunk_rows: int = 64,
    dtype: Any = np.float32,
) -> Any:
    """The fused cube ``scale * maps @ spectra`` as a dask array, built band by band.

    Parameters
    ----------
    maps : (ny, nx, k) abundance maps
    scale : (ny, nx) per-pixel count scale
    spectra : (k, channels)
    chunk_rows : int
        Image rows per chunk.
    dtype : numpy dtype, default float32
        Dtype of the cube (float32 halves the memory of a computed band).

    Returns
    -------
    dask.array.Array, shape (ny, nx, channels)
    """
    import dask.array as da

    loadings = da.from_array(maps * scale[..., None], chunks=(chunk_rows, -1, -1))
    S = spectra.astype(dtype)
    return loadings.astype(dtype).map_blocks(
        lambda m: m @ S, dtype=dtype,
        chunks=(loadings.chunks[0], loadings.chunks[1], (S.shape[1],)),
    )


__all__ = ["BAND_BYTES", "bin_lazy", "fit_full_lazy", "is_lazy", "reconstruct_lazy"]
