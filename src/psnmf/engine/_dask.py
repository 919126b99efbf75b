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
    model = PSNMF(n_components=3, bin_factor=4).fit(s)

The workers must be able to read the file (shared file system or object store) and have
psnmf installed. Chunks of a few hundred MB that span whole image rows work best
(``s.rechunk(nav_chunks=(None, 64))`` or ``data.rechunk({0: 64, 1: -1, 2: -1})``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf.engine.binning import bin_cube, binned_shape
from psnmf.engine.poisson_nmf import poisson_nmf

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
    """Counts CSR (float64 data, sorted int32 indices) of a dense 2-D block, no float64 copy."""
    from psnmf._validation import check_counts_matrix

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
    from psnmf.estimator import stage2_start

    A0 = stage2_start(binned_maps[yy, xx].reshape(-1, k))
    res = poisson_nmf(X, k, A_init=A0, S_init=S, update_S=False, max_iter=max_iter, tol=tol)
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


def fit_lazy(model: Any, X: Any) -> Any:
    """Fit a :class:`psnmf.PSNMF` to a dask array or lazy signal, chunk by chunk.

    Parameters
    ----------
    model : PSNMF
        The (unfitted) estimator; its parameters are used and its fitted attributes set.
    X : dask array (ny, nx, channels) or lazy HyperSpy spectrum image

    Returns
    -------
    model
        Fitted, with the same attributes as :meth:`PSNMF.fit`.
    """
    from psnmf import hyperspy as _signals
    signal = None
    if _signals.is_signal(X):
        _signals.check_spectrum_image(X, "X")
        signal = X
        data = X.data
    else:
        data = X
    if data.ndim != 3:
        raise ValueError(
            f"X must be a lazy spectrum image of shape (ny, nx, channels), got shape "
            f"{tuple(data.shape)}."
        )
    if model.stage2_spectra != "fixed":
        raise ValueError(
            "stage2_spectra='free' couples all pixels and cannot run chunk by chunk; use "
            "stage2_spectra='fixed' (the default) for lazy / Dask data, or load the data "
            "into memory (signal.compute())."
        )
    ny, nx, ne = (int(n) for n in data.shape)
    shape = (ny, nx)
    b, k = model._check_params(shape, ne)
    if model.smoothing not in (None, 0, 0.0):
        raise ValueError(
            f"smoothing={model.smoothing!r} couples neighbouring pixels and needs the whole "
            "image in memory; use smoothing=None for lazy / Dask data, or load the data "
            "into memory (signal.compute())."
        )
    stage1, S, A1 = model._fit_binned(bin_lazy(data, b), k)
    binned_maps = A1.reshape(*binned_shape(shape, b), k)

    import dask.array as da

    bands = _bands(data, b)
    solved = da.map_blocks(
        _solve_band, bands, binned_maps, S, b, model.max_iter_full, model.tol,
        dtype=np.float64, chunks=(bands.chunks[0], (nx,), (k + 4,)),
    )
    out = np.asarray(solved.compute())
    maps = np.ascontiguousarray(out[..., :k])
    scale = out[..., k]

    n_iter_px = out[..., k + 3]
    maps = model._smooth(None, maps, S, shape)  # smoothing is off here: sets its attributes
    return model._set_fitted(
        shape, b, stage1, S, binned_maps,
        full_spectra=S,
        maps=maps,
        scale=scale,
        full_loss=np.array([out[..., k + 1].sum(), out[..., k + 2].sum()]),
        full_n_iter=int(n_iter_px.max()),
        full_converged=bool(np.all(n_iter_px < model.max_iter_full)),
        signal=signal,
    )


def reconstruct_lazy(model: Any, chunk_rows: int = 64, dtype: Any = np.float32) -> Any:
    """The fused cube ``scale * maps @ spectra`` as a dask array, built band by band.

    Parameters
    ----------
    model : fitted PSNMF
    chunk_rows : int
        Image rows per chunk.
    dtype : numpy dtype, default float32
        Dtype of the cube (float32 halves the memory of a computed band).

    Returns
    -------
    dask.array.Array, shape (ny, nx, channels)
    """
    import dask.array as da

    maps = da.from_array(model.maps_ * model.scale_[..., None], chunks=(chunk_rows, -1, -1))
    spectra = model.spectra_.astype(dtype)
    return maps.astype(dtype).map_blocks(
        lambda m: m @ spectra, dtype=dtype,
        chunks=(maps.chunks[0], maps.chunks[1], (spectra.shape[1],)),
    )


__all__ = ["BAND_BYTES", "bin_lazy", "fit_lazy", "is_lazy", "reconstruct_lazy"]
