"""The data the interactive report embeds: region spectra, model weights, display maps.

The browser gets the raw counts summed over square regions of ``r x r`` pixels and over
groups of ``c`` adjacent channels, with ``r`` the smallest side for which the counts fit in
:data:`RAW_BUDGET_BYTES` (stored dense, or as a CSR matrix when most entries are zero, in
the narrowest unsigned integer type that holds them) and for which the counts and the
regions' model weights, gzip-compressed as Bokeh embeds them, fit in
:data:`PACKED_BUDGET_BYTES`, and ``c`` the smallest group that leaves at most
:data:`MAX_DISPLAY_CHANNELS` channels. The second bound keeps the page small where the
counts are many or sparse: a sparse map's counts fit the raw bound pixel by pixel, and
the page would hold every count and a weight per pixel, more than the input. The PSNMF model
of a region is rebuilt in the page from ``k`` weights per region (the region's sum of
``scale * maps``) and the ``k`` component spectra grouped the same way, since the model of
a pixel is ``scale * maps @ spectra``. Maps (components and elements) are averaged over
``d x d`` blocks, with ``d`` the smallest factor that leaves at most
:data:`MAX_IMAGE_SIDE` pixels a side.

Everything is computed from :class:`psnmf.pipeline.summary.UnmixResult`: the region
spectra from the sparse counts the run read (``result.counts``), else from the signal with
NumPy in row bands (:func:`psnmf.io.counts.row_blocks`), or through its sparse counts
when single pixels fit the budget: the cube is never densified in float64.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from psnmf.engine.binning import binning_matrix
from psnmf.io.counts import row_blocks, to_counts

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.pipeline.summary import UnmixResult

#: Bytes the embedded raw region spectra may take (before compression and base64 encoding).
RAW_BUDGET_BYTES = 4 * 2**20
#: Bytes the region spectra and the regions' model weights may take in the page,
#: gzip-compressed (as Bokeh embeds arrays) and before base64 encoding.
PACKED_BUDGET_BYTES = 256 * 2**10
#: zlib level of the estimate of the packed size: Bokeh's default (2); a higher level
#: set in Bokeh only makes the page smaller than the estimate.
PACK_LEVEL = 2
#: Most channels the page's spectra have (adjacent channels are summed beyond that).
MAX_DISPLAY_CHANNELS = 512
#: Most pixels a side of the maps the page draws (blocks are averaged beyond that).
MAX_IMAGE_SIDE = 256


@dataclass
class RegionCounts:
    """Raw counts summed over ``r x r`` pixel regions and ``c``-channel groups.

    Attributes
    ----------
    r, c : int
        Region side (pixels) and channels per display channel.
    grid : (int, int)
        Regions along y and x (the last row/column of regions may be partial).
    encoding : {'dense', 'sparse'}
        ``dense``: ``values`` is the row-major ``(regions, channels)`` matrix; ``sparse``:
        ``values``, ``indices`` (channels) and ``indptr`` (per region) of a CSR matrix.
    values : ndarray of uint8, uint16 or uint32
    indices, indptr : ndarray of int32 or None
    n_channels : int
    """

    r: int
    c: int
    grid: tuple[int, int]
    encoding: str
    values: np.ndarray
    indices: np.ndarray | None
    indptr: np.ndarray | None
    n_channels: int

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the page embeds."""
        return sum(a.nbytes for a in self._arrays())

    @property
    def packed_nbytes(self) -> int:
        """Bytes of the arrays gzip-compressed as Bokeh embeds them (before base64)."""
        return sum(packed_size(a) for a in self._arrays())

    def _arrays(self) -> list[np.ndarray]:
        return [a for a in (self.values, self.indices, self.indptr) if a is not None]

    def region(self, gy: int, gx: int) -> np.ndarray:
        """The counts of region ``(gy, gx)`` (float64, ``n_channels``)."""
        g = gy * self.grid[1] + gx
        out = np.zeros(self.n_channels)
        if self.encoding == "dense":
            out[:] = self.values[g * self.n_channels:(g + 1) * self.n_channels]
        else:
            lo, hi = self.indptr[g], self.indptr[g + 1]
            out[self.indices[lo:hi]] = self.values[lo:hi]
        return out


def packed_size(a: np.ndarray) -> int:
    """Bytes of ``a`` zlib-compressed at :data:`PACK_LEVEL`: what it adds to the page
    (Bokeh gzip-compresses each array; the gzip header adds 18 bytes) before base64.

    Examples
    --------
    >>> packed_size(np.zeros(10**6, dtype=np.uint8)) < 5000
    True
    """
    return len(zlib.compress(np.ascontiguousarray(a).tobytes(), PACK_LEVEL))


def _uint(max_value: float) -> np.dtype:
    for t in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.float32)  # pragma: no cover - beyond 4e9 counts in one entry


def channel_groups(n: int, c: int) -> np.ndarray:
    """Start indices of the ``c``-channel groups of ``n`` channels (the last may be short)."""
    return np.arange(0, n, c)


def group_channels(a: np.ndarray, c: int) -> np.ndarray:
    """Sum the last axis of ``a`` over groups of ``c`` channels."""
    return a if c == 1 else np.add.reduceat(a, channel_groups(a.shape[-1], c), axis=-1)


def _index_dtype(n_channels: int) -> np.dtype:
    """The dtype of the CSR channel indices: uint16 where the channels allow."""
    return np.dtype(np.uint16 if n_channels <= 2**16 else np.int32)


def _sparse_bytes(nnz: int, n_regions: int, itemsize: int, n_channels: int) -> int:
    return nnz * (_index_dtype(n_channels).itemsize + itemsize) + 4 * (n_regions + 1)


def _grid(shape: tuple[int, int], r: int) -> tuple[int, int]:
    return -(-shape[0] // r), -(-shape[1] // r)


def choose_region_side(shape: tuple[int, int], n_channels: int, total_counts: float,
                       budget: int = RAW_BUDGET_BYTES) -> tuple[int, str]:
    """The smallest region side whose counts may fit ``budget``, and the likelier route.

    The bound assumes 2-byte values; dense needs ``regions x channels`` of them, sparse at
    most ``total_counts`` entries (each non-zero entry holds at least one count). Returns
    ``(r, 'sparse')`` when only the sparse bound fits (the counts are then gathered as a
    sparse matrix), else ``(r, 'dense')``.
    """
    for r in range(1, max(shape) + 1):
        ny, nx = _grid(shape, r)
        regions = ny * nx
        if regions * n_channels * 2 <= budget:
            return r, "dense"
        nnz = min(total_counts, regions * n_channels)
        if _sparse_bytes(int(nnz), regions, 2, n_channels) <= budget:
            return r, "sparse"
    return max(shape), "dense"  # pragma: no cover - one region always fits


def _dense_region_sums(data: Any, r: int, c: int) -> np.ndarray:
    """``(ny_regions, nx_regions, channel groups)`` int64 sums, band by band."""
    ny, nx, ne = (int(n) for n in data.shape)
    gy, gx = _grid((ny, nx), r)
    xs = np.arange(0, nx, r)
    out = np.zeros((gy, gx, -(-ne // c)), dtype=np.int64)
    for r0, block in row_blocks(data):
        block = np.asarray(block.todense() if hasattr(block, "todense") else block)
        rows = (r0 + np.arange(block.shape[0])) // r
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        for s, e in zip(starts, np.r_[starts[1:], rows.size], strict=True):
            band = block[s:e].sum(axis=0, dtype=np.int64)  # (nx, ne)
            band = np.add.reduceat(band, xs, axis=0)  # (gx, ne)
            out[rows[s]] += group_channels(band, c)
    return out


def _sparse_region_sums(X: Any, shape: tuple[int, int], r: int, c: int) -> sp.csr_array:
    """``(regions, channel groups)`` sums as CSR, from sparse counts ``X`` (pixels,
    channels)."""
    ny, nx = shape
    gy, gx = _grid(shape, r)
    yy, xx = np.divmod(np.arange(ny * nx), nx)
    region = (yy // r) * gx + xx // r
    R = sp.csr_array((np.ones(ny * nx, dtype=np.int64), (region, np.arange(ny * nx))),
                     shape=(gy * gx, ny * nx))
    ne = X.shape[1]
    C = sp.csr_array((np.ones(ne, dtype=np.int64), (np.arange(ne), np.arange(ne) // c)),
                     shape=(ne, -(-ne // c)))
    B = sp.csr_array(R @ X @ C)
    B.sum_duplicates()
    B.eliminate_zeros()
    return B


def _encode(B: np.ndarray | sp.csr_array, r: int, c: int, grid: tuple[int, int],
            form: str | None = None) -> RegionCounts:
    """The smaller of the dense and the CSR form of ``B`` (regions x channels), or the
    ``form`` given (``'dense'`` or ``'sparse'``)."""
    n_regions, n_ch = B.shape
    if sp.issparse(B):
        B = sp.csr_array(B)
        dtype = _uint(B.data.max() if B.nnz else 0)
        nnz = B.nnz
    else:
        dtype = _uint(B.max() if B.size else 0)
        nnz = int(np.count_nonzero(B))
    smaller = _sparse_bytes(nnz, n_regions, dtype.itemsize, n_ch) < n_regions * n_ch * \
        dtype.itemsize
    if form == "sparse" or (form is None and smaller):
        S = sp.csr_array(B)
        S.sum_duplicates()
        S.eliminate_zeros()
        return RegionCounts(r, c, grid, "sparse", S.data.astype(dtype),
                            S.indices.astype(_index_dtype(n_ch)), S.indptr.astype(np.int32),
                            n_ch)
    dense = B.toarray() if sp.issparse(B) else B
    return RegionCounts(r, c, grid, "dense", dense.astype(dtype).ravel(), None, None, n_ch)


def region_counts(signal: Any, shape: tuple[int, int], total_counts: float, *,
                  budget: int = RAW_BUDGET_BYTES, max_channels: int = MAX_DISPLAY_CHANNELS,
                  counts: Any = None, packed_budget: int | None = PACKED_BUDGET_BYTES,
                  region_bytes: int = 0) -> RegionCounts:
    """The raw counts of ``signal`` summed over the regions and channel groups the page gets.

    Parameters
    ----------
    signal : EDS signal or ndarray (ny, nx, ne)
        The counts (in memory or lazy).
    shape : (ny, nx)
    total_counts : float
        Their sum (bounds the number of non-zero entries).
    budget : int
        Bytes the encoded counts may take.
    max_channels : int
        Most channel groups.
    counts : sparse matrix (pixels, channels), optional
        The counts of ``signal``, already read: summed from them (a sparse product)
        instead of reading ``signal`` again.
    packed_budget : int or None
        Bytes the encoded counts, compressed (:func:`packed_size`), plus ``region_bytes``
        per region may take; ``None``: no such bound. Where the region side that fits
        ``budget`` does not fit this, the regions are merged ``m x m`` (``m`` = 2, 3, ...)
        until they do: the data are read once.
    region_bytes : int
        Further bytes the page holds per region (its model weights).

    Examples
    --------
    >>> cube = np.arange(4 * 4 * 6).reshape(4, 4, 6) % 3
    >>> rc = region_counts(cube, (4, 4), cube.sum(), budget=40, max_channels=3)
    >>> rc.r, rc.c, rc.grid, rc.encoding
    (2, 2, (2, 2), 'dense')
    >>> rc.region(1, 0).tolist() == cube[2:4, 0:2].sum((0, 1)).reshape(3, 2).sum(1).tolist()
    True
    """
    data = signal.data if hasattr(signal, "axes_manager") else signal
    ne = int(data.shape[-1])
    c = max(1, math.ceil(ne / max_channels))
    n_ch = -(-ne // c)
    r, route = choose_region_side(shape, n_ch, float(total_counts), budget)
    while True:
        grid = _grid(shape, r)
        if counts is not None:
            B = _sparse_region_sums(counts, shape, r, c)
        elif route == "sparse":
            B = _sparse_region_sums(to_counts(signal, dtype=np.int64)[0], shape, r, c)
        else:
            B = _dense_region_sums(data, r, c).reshape(grid[0] * grid[1], n_ch)
        rc = _encode(B, r, c, grid)
        if rc.nbytes <= budget or r >= max(shape):
            break
        r += 1  # the values needed a wider type than the bound assumed
    if packed_budget is None:
        return rc
    return _fit_packed(B, rc, shape, packed_budget, region_bytes, budget)


def _packed_total(rc: RegionCounts, region_bytes: int) -> int:
    return rc.packed_nbytes + region_bytes * rc.grid[0] * rc.grid[1]


def _packed_encode(B: np.ndarray | sp.csr_array, r: int, c: int, grid: tuple[int, int],
                   budget: int) -> RegionCounts:
    """The form of ``B`` (dense or CSR) smaller once compressed, among those whose raw
    bytes fit ``budget`` (the raw choice of :func:`_encode` when neither does): gzip
    shrinks the zeros of a dense form, so that it is often the smaller in the page where
    the CSR form is smaller raw."""
    forms = [_encode(B, r, c, grid, form) for form in ("dense", "sparse")]
    fits = [rc for rc in forms if rc.nbytes <= budget]
    return min(fits, key=lambda rc: rc.packed_nbytes) if fits else _encode(B, r, c, grid)


def _fit_packed(B: np.ndarray | sp.csr_array, rc: RegionCounts, shape: tuple[int, int],
                packed_budget: int, region_bytes: int, budget: int) -> RegionCounts:
    """``rc`` (the sums ``B`` at side ``rc.r``) when its packed size fits
    ``packed_budget``; else the same counts merged over ``m x m`` regions, with the
    smallest ``m`` tried whose packed size fits, in the form smaller packed
    (:func:`_packed_encode`).

    The packed size of dense counts falls about as ``1 / m**2``, so the next ``m`` tried is
    ``m * sqrt(size / packed_budget)`` (at least ``m + 1``); sparse counts fall slower and
    take more steps."""
    base, grid0, r0, m = B, rc.grid, rc.r, 1
    top = -(-max(shape) // r0)  # the m of a single region
    size = _packed_total(rc, region_bytes)
    while size > packed_budget and m < top:
        m = min(max(m + 1, int(m * math.sqrt(size / packed_budget))), top)
        r = r0 * m
        rc = _packed_encode(_merge_regions(base, grid0, m), r, rc.c, _grid(shape, r), budget)
        size = _packed_total(rc, region_bytes)
    return rc


def _merge_regions(B: np.ndarray | sp.csr_array, grid: tuple[int, int],
                   m: int) -> np.ndarray | sp.csr_array:
    """Sums of ``B`` (regions of ``grid``, row-major, x channels) over ``m x m`` blocks of
    regions, the binning of the region grid by ``m``: the sums over regions of side
    ``m * r`` when ``B``'s have side ``r`` (``(y // r) // m == y // (m * r)``)."""
    return binning_matrix(grid, m) @ B


def region_weights(maps: np.ndarray, scale: np.ndarray, r: int) -> np.ndarray:
    """``(regions, k)`` float32: each region's sum of ``scale * maps`` (its model counts
    per component; pixels masked out of the fit, NaN maps, count zero)."""
    ny, nx, k = maps.shape
    w = np.nan_to_num(maps) * scale[..., None]
    w = np.add.reduceat(np.add.reduceat(w, np.arange(0, ny, r), axis=0),
                        np.arange(0, nx, r), axis=1)
    return w.reshape(-1, k).astype(np.float32)


def display_image(a: np.ndarray, d: int) -> np.ndarray:
    """``a`` averaged over ``d x d`` blocks (partial blocks at the edges averaged over what
    they hold; NaN, pixels masked out of the fit, left out, a block of them NaN), as
    float32."""
    a = np.asarray(a, dtype=np.float64)
    if d == 1:
        return a.astype(np.float32)
    ny, nx = a.shape
    ys, xs = np.arange(0, ny, d), np.arange(0, nx, d)
    finite = np.isfinite(a)
    s = np.add.reduceat(np.add.reduceat(np.where(finite, a, 0.0), ys, axis=0), xs, axis=1)
    n = np.add.reduceat(np.add.reduceat(finite.astype(np.float64), ys, axis=0), xs, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / n, np.nan).astype(np.float32)


def display_factor(shape: tuple[int, int], max_side: int = MAX_IMAGE_SIDE) -> int:
    """The smallest block side ``d`` that leaves at most ``max_side`` pixels a side."""
    return max(1, math.ceil(max(shape) / max_side))


@dataclass
class ExplorerData:
    """Everything the interactive part of the page is drawn from.

    Attributes
    ----------
    shape : (ny, nx)
        Pixels of the data.
    counts : RegionCounts
        Raw region spectra.
    energy : ndarray (channels,)
        Centre of each channel group (keV).
    spectra : ndarray (k, channels) float32
        Component spectra summed over the channel groups.
    weights : ndarray (regions, k) float32
        Model counts per component of each region.
    d : int
        Block side of the display maps.
    component_maps : list of ndarray
        Display maps of the abundances (``k`` of them).
    element_maps : dict
        ``{method: {line: display map}}`` for ``raw``, ``pca``, ``psnmf`` (those present).
    markers : list of (label, energy)
        X-ray lines to mark on the spectra.
    xlim : (float, float)
        Energy range shown first (up to a little beyond the highest line or the last
        channel with signal, as the static figures).
    """

    shape: tuple[int, int]
    counts: RegionCounts
    energy: np.ndarray
    spectra: np.ndarray
    weights: np.ndarray
    d: int
    component_maps: list[np.ndarray]
    element_maps: dict[str, dict[str, np.ndarray]]
    markers: list[tuple[str, float]]
    xlim: tuple[float, float]

    @property
    def k(self) -> int:
        """Number of components."""
        return int(self.spectra.shape[0])

    def region_of(self, iy: int, ix: int) -> tuple[int, int]:
        """The region ``(gy, gx)`` holding pixel ``(iy, ix)``."""
        return iy // self.counts.r, ix // self.counts.r

    def region_model(self, gy: int, gx: int) -> np.ndarray:
        """``(k, channels)``: each component's model counts in region ``(gy, gx)``."""
        g = gy * self.counts.grid[1] + gx
        return self.weights[g][:, None].astype(np.float64) * self.spectra


def explorer_data(result: UnmixResult, *, budget: int = RAW_BUDGET_BYTES,
                  max_channels: int = MAX_DISPLAY_CHANNELS,
                  max_side: int = MAX_IMAGE_SIDE,
                  packed_budget: int | None = PACKED_BUDGET_BYTES) -> ExplorerData:
    """Gather the page's data from a result (see the module for what and at which
    resolution; ``packed_budget`` bounds the compressed region counts and weights, the
    weights counted at their 4 raw bytes each, see :func:`region_counts`)."""
    from psnmf.report.figures import energy_limits, line_markers

    model = result.model
    maps = np.asarray(model.maps_)
    ny, nx, k = maps.shape
    counts = region_counts(result.signal, (ny, nx), result.summary.input.total_counts,
                           budget=budget, max_channels=max_channels, counts=result.counts,
                           packed_budget=packed_budget, region_bytes=4 * k)
    axis = result.signal.axes_manager.signal_axes[0]
    e = np.asarray(axis.axis, dtype=np.float64)
    starts = channel_groups(e.size, counts.c)
    energy = np.add.reduceat(e, starts) / np.diff(np.r_[starts, e.size])
    spectra = group_channels(np.asarray(model.spectra_, dtype=np.float64), counts.c)
    weights = region_weights(maps, np.asarray(model.scale_, dtype=np.float64), counts.r)
    d = display_factor((ny, nx), max_side)
    markers = line_markers(result.signal)
    element_maps = {
        method: {line: display_image(a, d) for line, a in lines.items()}
        for method, lines in result.element_maps.items() if lines
    }
    return ExplorerData(
        shape=(ny, nx), counts=counts, energy=energy.astype(np.float32),
        spectra=spectra.astype(np.float32), weights=weights, d=d,
        component_maps=[display_image(maps[..., j], d) for j in range(k)],
        element_maps=element_maps, markers=markers,
        xlim=energy_limits(result.signal, markers, np.asarray(model.spectra_).max(axis=0)),
    )
