"""Conversions between HyperSpy signals and the arrays the engine works on."""

from __future__ import annotations

from typing import Any

import numpy as np

from psnmf._validation import (
    as_array,
    check_counts_matrix,
    check_cube,
    check_image_shape,
)


def is_signal(obj: Any) -> bool:
    """True for a HyperSpy signal (without importing HyperSpy when it is not one)."""
    return hasattr(obj, "axes_manager") and hasattr(obj, "data") and hasattr(obj, "metadata")


_LINE_SCAN_HINT = (
    "PSNMF bins the image spatially, so it needs a 2-D map; for a line scan or single "
    "spectrum use standard NMF instead: psnmf.standard_nmf(X, n_components) or "
    "psnmf.poisson_nmf(counts_matrix, n_components), which take any number of pixels."
)


def check_spectrum_image(signal: Any, name: str = "X", *, allow_line_scan: bool = False) -> None:
    """Raise unless ``signal`` is a 1-D signal with two navigation axes.

    With ``allow_line_scan=True``, zero or one navigation axis (a single spectrum or a line
    scan) is accepted as well.
    """
    am = signal.axes_manager
    if am.signal_dimension != 1:
        raise ValueError(
            f"{name} must be a spectrum image (a Signal1D such as EDSTEMSpectrum), got a "
            f"signal with {am.signal_dimension} signal dimensions. Use signal.as_signal1D(...)"
            " to make the energy axis the signal axis."
        )
    nav = am.navigation_dimension
    if nav == 2 or (allow_line_scan and nav in (0, 1)):
        return
    what = {0: "a single spectrum", 1: "a line scan"}.get(nav, f"{nav} navigation axes")
    if allow_line_scan:
        raise ValueError(
            f"{name} has {what} (navigation shape {am.navigation_shape}); at most two "
            "navigation axes (y, x) are supported. Sum or slice the extra axes first "
            "(e.g. signal.sum(axis=...) over frames or tilts)."
        )
    raise ValueError(
        f"{name} must have two navigation axes (y, x), got {what} (navigation shape "
        f"{am.navigation_shape}). {_LINE_SCAN_HINT}"
    )


def _lazy_counts(data: Any, source: Any) -> Any:
    """Sparse counts of a lazy (dask) array, converted chunk by chunk (never dense).

    ``source`` is the signal (its file name goes into error messages) or the array itself.
    """
    from psnmf.io import to_counts

    if data.ndim != 3:  # line scan / single spectrum: view as a (1, n, channels) image
        data = data.reshape((1, -1, data.shape[-1]))
        source = data
    counts, _ = to_counts(source, dtype=np.float64)
    return counts


def as_counts(
    X: Any,
    image_shape: tuple[int, int] | None,
    name: str = "X",
    *,
    allow_line_scan: bool = False,
):
    """Return ``(counts CSR (pixels, channels), navigation shape, signal or None)``.

    Accepts a HyperSpy spectrum image, a (ny, nx, channels) array, or a (pixels, channels)
    array/sparse matrix together with ``image_shape``. The navigation shape is ``(ny, nx)``.

    With ``allow_line_scan=True`` (standard NMF, which needs no image), a line scan (a
    signal with one navigation axis, or a (pixels, channels) matrix without
    ``image_shape``) gives the navigation shape ``(n,)`` and a single spectrum (a signal
    without navigation axes, or a 1-D array) gives ``()``.

    A lazy signal (or dask array) is converted to sparse counts chunk by chunk with
    :func:`psnmf.io.to_counts`, so the dense cube is never held in memory.
    """
    signal = None
    if is_signal(X):
        check_spectrum_image(X, name, allow_line_scan=allow_line_scan)
        signal = X
        data = X.data
        shape = tuple(int(n) for n in data.shape[:-1])
        if hasattr(data, "compute"):  # lazy signal: the chunked, sparse path
            counts = check_counts_matrix(_lazy_counts(data, X), name)
        else:
            data = np.asarray(data)
            counts = check_counts_matrix(data.reshape(-1, data.shape[-1]), name)
        return counts, shape, signal
    import scipy.sparse as sp

    if hasattr(X, "dask") and getattr(X, "ndim", 0) == 3:  # a bare dask cube: chunked path
        counts = check_counts_matrix(_lazy_counts(X, X), name)
        return counts, (int(X.shape[0]), int(X.shape[1])), None
    if not sp.issparse(X):
        X = as_array(X, name)
    ndim = X.ndim
    if ndim == 3:
        cube = check_cube(X, name)
        ny, nx, ne = cube.shape
        counts = check_counts_matrix(cube.reshape(ny * nx, ne), name)
        shape: tuple[int, ...] = (ny, nx)
    elif ndim == 2:
        counts = check_counts_matrix(X, name)
        if image_shape is None:
            if allow_line_scan:
                return counts, (counts.shape[0],), None
            raise ValueError(
                f"{name} is a 2-D (pixels, channels) matrix, so PSNMF needs "
                "image_shape=(ny, nx) to know how to bin it spatially (HyperSpy's "
                "decomposition passes such a matrix: set image_shape to the signal's "
                "axes_manager.navigation_shape[::-1]). If it is a line scan, "
                + _LINE_SCAN_HINT
            )
        shape = check_image_shape(image_shape, counts.shape[0], name)
    elif ndim == 1 and allow_line_scan:
        counts = check_counts_matrix(np.asarray(X)[None, :], name)
        shape = ()
    else:
        raise ValueError(
            f"{name} must be a spectrum image of shape (ny, nx, channels) or a HyperSpy "
            f"Signal1D with two navigation axes, got an array of shape {np.shape(X)}. "
            + (_LINE_SCAN_HINT if ndim in (0, 1) else "")
        )
    return counts, shape, signal


def _copy_axis(dst, src) -> None:
    for attr in ("name", "units", "scale", "offset"):
        value = getattr(src, attr, None)
        if value is not None:
            setattr(dst, attr, value)


def spectra_signal(spectra: np.ndarray, template: Any, title: str = "PSNMF spectra") -> Any:
    """(k, channels) spectra as a signal of the template's class, energy axis and metadata."""
    out = template.__class__(np.asarray(spectra))
    out.metadata.add_dictionary(template.metadata.as_dictionary())
    out.metadata.General.title = title
    _copy_axis(out.axes_manager.signal_axes[0], template.axes_manager.signal_axes[0])
    nav = out.axes_manager.navigation_axes[0]
    nav.name, nav.units = "Component", ""
    return out


def maps_signal(maps: np.ndarray, template: Any, title: str = "PSNMF maps") -> Any:
    """(ny, nx, k) maps as a Signal2D (k | ny, nx) with the template's spatial axes."""
    import hyperspy.api as hs

    out = hs.signals.Signal2D(np.moveaxis(np.asarray(maps), -1, 0))
    out.metadata.General.title = title
    src_nav = template.axes_manager.navigation_axes  # (x, y) in HyperSpy order
    dst_sig = out.axes_manager.signal_axes  # (x, y)
    for dst, src in zip(dst_sig, src_nav, strict=True):
        _copy_axis(dst, src)
    nav = out.axes_manager.navigation_axes[0]
    nav.name, nav.units = "Component", ""
    return out


def cube_signal(cube: np.ndarray, template: Any, title: str | None = None) -> Any:
    """A (ny, nx, channels) cube as a copy of the template signal with new data."""
    data = cube if hasattr(cube, "compute") else np.asarray(cube)  # keep dask arrays lazy
    out = template._deepcopy_with_new_data(data)
    if title is not None:
        out.metadata.General.title = title
    return out
