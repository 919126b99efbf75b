"""Checking a spectrum image's counts and turning them into a sparse matrix, block by block.

A spectrum image is checked and converted in row bands of about :data:`BLOCK_BYTES` of
native data (one band per row chunk for a Dask array), so neither the check nor the
conversion ever holds the cube in float64: a 512 x 512 x 4096 ``uint16`` cube (2 GiB) is
converted with temporaries of a few band sizes. Only the non-zero entries are kept, which for
EDX data (most channels of most pixels are 0) is a small fraction of the cube.

Counts must be finite and non-negative; non-integer values are let through with a warning
(the Poisson model assumes raw X-ray counts, so scores on scaled data are not calibrated).
A NumPy masked array with masked values is refused: its mask would otherwise be dropped
silently and the masked entries read as counts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse

from psnmf import _validation
from psnmf.io.errors import InvalidCountsError, PsnmfIOError

__all__ = [
    "BLOCK_BYTES",
    "check_block",
    "non_integer_message",
    "row_blocks",
    "source_name",
    "to_counts",
    "validate_counts",
]

#: Size of the row bands (in bytes of native data) in which big cubes are checked and
#: converted: large enough that NumPy's per-call overhead is negligible, small enough that
#: the temporaries of a band stay far below the cube.
BLOCK_BYTES = 64 * 2**20
#: Bands read and converted at once by :func:`to_counts`, each in its own thread: the
#: decompression of a chunked file and NumPy's scans release the GIL, so two bands keep
#: both cores of a small machine busy (a 512 x 512 x 2048 ``.zspy`` map on 2 cores: 5.1-8.3
#: s -> 2.8 s wall, peak RSS 1.06 -> 1.00 GB), for the temporaries of one more band.
READ_THREADS = 2

_COUNT_DTYPES = tuple(np.dtype(t) for t in (np.int32, np.int64, np.float32, np.float64))


def non_integer_message(source: str) -> str:
    """The warning (or error) text for data of ``source`` that are not integer counts."""
    return (
        f"The data of '{source}' are not integers. psnmf's Poisson model assumes raw X-ray "
        "counts: if the data were scaled (normalised, dose-corrected, averaged), undo the "
        "scale to get counts back; if they were denoised or background-subtracted, start "
        "from the raw file. Results on non-count data are not statistically meaningful."
    )


def _negative(block: np.ndarray, source: str, minimum: str) -> InvalidCountsError:
    return InvalidCountsError(
        f"'{source}' holds negative values (min {minimum}); counts must be >= 0. "
        "Start from the raw (not background-subtracted) data."
    )


def check_block(block: np.ndarray, source: str) -> bool:
    """Raise on negative or non-finite values; return whether all values are integers.

    Parameters
    ----------
    block : ndarray
        Any part of a cube (dense, unmasked).
    source : str
        Name of the data in messages (a file name or title).

    Raises
    ------
    InvalidCountsError
        For boolean, non-real, NaN, infinite or negative values.

    Examples
    --------
    >>> check_block(np.array([0, 2.5]), "x.npz"), check_block(np.array([1, 2]), "x.npz")
    (False, True)
    """
    kind = block.dtype.kind
    if kind == "b":
        raise InvalidCountsError(
            f"'{source}' holds boolean (True/False) values, not counts. If they are counts "
            "of 0 and 1, convert them first, e.g. counts.astype(np.uint16)."
        )
    if kind == "u":
        return True
    if kind == "i":
        if block.size and block.min() < 0:
            raise _negative(block, source, str(block.min()))
        return True
    if kind != "f":
        raise InvalidCountsError(
            f"'{source}' holds data of type {block.dtype}; counts must be real numbers."
        )
    if not np.isfinite(block).all():
        raise InvalidCountsError(
            f"'{source}' holds NaN or infinite values; counts must be finite. Replace them "
            "(e.g. dead pixels) with 0 or crop them away before running psnmf."
        )
    if block.size and block.min() < 0:
        raise _negative(block, source, f"{block.min():.4g}")
    return bool(np.array_equal(block, np.round(block)))


def _bands(data: Any) -> list[tuple[int, int]]:
    """Row bounds ``(r0, r1)`` of the bands read at once: one per row chunk of a Dask
    array, blocks of at most :data:`BLOCK_BYTES` (and at least one row) otherwise."""
    if hasattr(data, "dask"):
        bounds = np.cumsum((0, *data.chunks[0]))
        return [(int(r0), int(r1)) for r0, r1 in zip(bounds[:-1], bounds[1:], strict=True)]
    step = _rows_per_block(data)
    return [(r0, min(r0 + step, data.shape[0])) for r0 in range(0, data.shape[0], step)]


def _rows_per_block(data: Any) -> int:
    row_bytes = max(1, math.prod(data.shape[1:]) * np.dtype(data.dtype).itemsize)
    return max(1, BLOCK_BYTES // row_bytes)


def _band_blocks(data: Any, r0: int, r1: int,
                 scheduler: str | None = None) -> Iterator[tuple[int, Any]]:
    """``(first_row, block)`` of rows ``r0:r1``: a Dask band is computed once (with Dask's
    ``scheduler``, its default for None) and split so that each block holds at most
    :data:`BLOCK_BYTES`."""
    if hasattr(data, "dask"):
        band = data[r0:r1].compute(scheduler=scheduler)
        step = _rows_per_block(data)
        for s0 in range(0, band.shape[0], step):
            yield r0 + s0, band[s0 : s0 + step]
    else:
        yield r0, data[r0:r1]


def row_blocks(data: Any) -> Iterator[tuple[int, Any]]:
    """Yield ``(first_row, block)`` over row bands of a ``(ny, nx, ne)`` array.

    For a Dask array one band per row chunk is computed (never the whole cube at once
    unless the reader made it one chunk); in-memory bands are further split so that each
    block holds at most :data:`BLOCK_BYTES` (and at least one row).

    Examples
    --------
    >>> [(r0, b.shape) for r0, b in row_blocks(np.zeros((3, 2, 4)))]
    [(0, (3, 2, 4))]
    """
    for r0, r1 in _bands(data):
        yield from _band_blocks(data, r0, r1)


def _refuse_masked(data: Any, source: str) -> None:
    """Raise if ``data`` is a masked array with masked values (a mask psnmf would drop)."""
    if np.ma.isMaskedArray(data):
        n_masked = int(np.ma.count_masked(data))
        if n_masked:
            raise InvalidCountsError(_validation.masked_message(f"'{source}'", n_masked))


def _dense(block: Any, source: str) -> np.ndarray:
    """A block as a plain ndarray; a masked block with masked values is refused."""
    if np.ma.isMaskedArray(block):
        _refuse_masked(block, source)
        return np.asarray(block.data)
    if isinstance(block, np.ndarray):
        return block
    if hasattr(block, "todense"):  # sparse.COO / scipy sparse
        return np.asarray(block.todense())
    return np.asarray(block)


def validate_counts(data: Any, source: str, *, warn: bool) -> bool:
    """Check a cube block by block; return whether it is all integers.

    Parameters
    ----------
    data : array-like (ny, nx, ne)
        NumPy, Dask or ``sparse`` array.
    source : str
        Name of the data in messages.
    warn : bool
        Warn (``UserWarning``) when the values are not all integers.

    Raises
    ------
    InvalidCountsError
        See :func:`check_block`; also for masked values.
    """
    _refuse_masked(data, source)
    integer = True
    for _, block in row_blocks(data):
        integer &= check_block(_dense(block, source), source)
    if not integer and warn:
        warnings.warn(non_integer_message(source), UserWarning, stacklevel=3)
    return integer


def source_name(signal: Any) -> str:
    """The name of a signal in messages: its file, original file name or title."""
    md = getattr(signal, "metadata", None)
    if md is not None:
        for key in ("General.psnmf_source.file", "General.original_filename", "General.title"):
            value = md.get_item(key)
            if value:
                return str(value)
    return "the data"


def _cube(signal: Any, source: str) -> Any:
    """The ``(ny, nx, ne)`` data of a signal or array (not copied, Dask kept lazy)."""
    data = signal.data if hasattr(signal, "axes_manager") else signal
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    if len(data.shape) != 3:
        raise InvalidCountsError(
            f"to_counts needs a spectrum image of shape (ny, nx, ne); '{source}' has shape "
            f"{tuple(data.shape)}."
        )
    _refuse_masked(data, source)
    return data


def _block_entries(
    block: np.ndarray, dtype: np.dtype, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero values, their columns and the per-row counts of one block."""
    flat = block.reshape(-1, block.shape[-1])
    mask = flat != 0
    rows, cols = np.nonzero(mask)
    values = flat[rows, cols]
    if dtype.kind == "i" and values.size and values.max() > np.iinfo(dtype).max:
        raise InvalidCountsError(
            f"'{source}' holds counts up to {values.max()}, beyond {dtype}; call "
            "to_counts(..., dtype=np.int64)."
        )
    return values.astype(dtype, copy=False), cols, mask.sum(axis=1, dtype=np.int64)


def _csr(
    values: list[np.ndarray], cols: list[np.ndarray], row_nnz: list[np.ndarray],
    shape: tuple[int, int], dtype: np.dtype,
) -> scipy.sparse.csr_array:
    indptr = np.cumsum(np.concatenate([np.zeros(1, dtype=np.int64), *row_nnz]))
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, shape[1]) < np.iinfo(np.int32).max else np.int64
    data = np.concatenate(values) if values else np.zeros(0, dtype)
    indices = (np.concatenate(cols) if cols else np.zeros(0)).astype(index_dtype)
    return scipy.sparse.csr_array((data, indices, indptr.astype(index_dtype)), shape=shape)


def to_counts(
    signal: Any, *, dtype: np.dtype | type = np.int32
) -> tuple[scipy.sparse.csr_array, tuple[int, int]]:
    """Sparse count matrix of a spectrum image, built block by block (see the module).

    Parameters
    ----------
    signal : HyperSpy signal or array-like
        A signal from :func:`psnmf.io.load_spectrum_image` (in memory or lazy), or a
        NumPy/Dask array of shape ``(ny, nx, ne)``.
    dtype : {np.int32, np.int64, np.float32, np.float64}, default np.int32
        Data type of the stored values. Integer types require integer-valued data; a float
        type keeps fractional values (with a warning).

    Returns
    -------
    counts : scipy.sparse.csr_array
        Shape ``(ny * nx, ne)``; row ``i * nx + j`` is pixel ``(i, j)``. Only non-zero
        entries are stored.
    shape : (int, int)
        ``(ny, nx)``, to fold rows back into an image.

    Raises
    ------
    InvalidCountsError
        For a shape other than 3-D, negative, non-finite or masked values, or non-integer
        values with an integer ``dtype``.

    Examples
    --------
    >>> X, (ny, nx) = to_counts(np.array([[[0, 2, 0], [1, 0, 0]]]))
    >>> X.shape, X.nnz, (ny, nx), X.toarray().tolist()
    ((2, 3), 2, (1, 2), [[0, 2, 0], [1, 0, 0]])
    """
    dtype = np.dtype(dtype)
    if dtype not in _COUNT_DTYPES:
        raise PsnmfIOError(
            f"to_counts: dtype must be int32, int64, float32 or float64, got {dtype}."
        )
    source = source_name(signal)
    data = _cube(signal, source)
    ny, nx, ne = (int(n) for n in data.shape)

    def entries(bounds: tuple[int, int]) -> tuple[list[tuple[Any, ...]], bool]:
        parts, integer = [], True
        for _, block in _band_blocks(data, *bounds, scheduler="synchronous"):
            block = _dense(block, source)
            integer &= check_block(block, source)
            parts.append(_block_entries(block, dtype, source))
        return parts, integer

    values, cols, row_nnz = [], [], []
    integer = True
    pool = ThreadPoolExecutor(max_workers=READ_THREADS)
    try:  # on an error the bands not yet started are cancelled, not read
        for parts, band_integer in pool.map(entries, _bands(data)):
            integer &= band_integer
            if not integer and dtype.kind == "i":
                raise InvalidCountsError(
                    non_integer_message(source) + " To keep the fractional values anyway, "
                    "call to_counts(..., dtype=np.float32)."
                )
            for v, c, r in parts:
                values.append(v)
                cols.append(c)
                row_nnz.append(r)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if not integer:
        warnings.warn(non_integer_message(source), UserWarning, stacklevel=2)
    return _csr(values, cols, row_nnz, (ny * nx, ne), dtype), (ny, nx)
