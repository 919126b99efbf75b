"""Conversions between HyperSpy signals and the arrays the engine works on."""

from __future__ import annotations

from typing import Any

import numpy as np

from psnmf._validation import check_counts_matrix, check_cube


def is_signal(obj: Any) -> bool:
    """True for a HyperSpy signal (without importing HyperSpy when it is not one)."""
    return hasattr(obj, "axes_manager") and hasattr(obj, "data") and hasattr(obj, "metadata")


def check_spectrum_image(signal: Any, name: str = "X") -> None:
    """Raise unless ``signal`` is a 1-D signal with two navigation axes."""
    am = signal.axes_manager
    if am.signal_dimension != 1:
        raise ValueError(
            f"{name} must be a spectrum image (a Signal1D such as EDSTEMSpectrum), got a "
            f"signal with {am.signal_dimension} signal dimensions. Use signal.as_signal1D(...)"
            " to make the energy axis the signal axis."
        )
    if am.navigation_dimension != 2:
        raise ValueError(
            f"{name} must have two navigation axes (y, x), got {am.navigation_dimension} "
            f"(navigation shape {am.navigation_shape}). PSNMF bins the image spatially, so "
            "a 2-D map is required; a line scan or single spectrum has nothing to bin."
        )


def as_counts(X: Any, image_shape: tuple[int, int] | None, name: str = "X"):
    """Return ``(counts CSR (pixels, channels), (ny, nx), signal or None)`` for any input.

    Accepts a HyperSpy spectrum image, a (ny, nx, channels) array, or a (pixels, channels)
    array/sparse matrix together with ``image_shape``.
    """
    signal = None
    if is_signal(X):
        check_spectrum_image(X, name)
        signal = X
        data = X.data
        if hasattr(data, "compute"):  # lazy signal: bring the counts in, sparse
            data = data.compute()
        ny, nx, ne = data.shape
        counts = check_counts_matrix(np.asarray(data).reshape(ny * nx, ne), name)
        shape = (ny, nx)
    else:
        try:
            import scipy.sparse as sp

            ndim = X.ndim if sp.issparse(X) else np.ndim(X)
        except Exception as exc:  # pragma: no cover
            raise TypeError(f"{name} must be an array or a HyperSpy signal.") from exc
        if ndim == 3:
            cube = check_cube(X, name)
            ny, nx, ne = cube.shape
            counts = check_counts_matrix(cube.reshape(ny * nx, ne), name)
            shape = (ny, nx)
        elif ndim == 2:
            counts = check_counts_matrix(X, name)
            if image_shape is None:
                raise ValueError(
                    f"{name} is a 2-D (pixels, channels) matrix, so PSNMF needs "
                    "image_shape=(ny, nx) to know how to bin it spatially (HyperSpy's "
                    "decomposition passes such a matrix: set image_shape to the signal's "
                    "axes_manager.navigation_shape[::-1])."
                )
            shape = (int(image_shape[0]), int(image_shape[1]))
            if shape[0] * shape[1] != counts.shape[0]:
                raise ValueError(
                    f"image_shape={tuple(image_shape)} has {shape[0] * shape[1]} pixels but "
                    f"{name} has {counts.shape[0]} rows."
                )
        else:
            raise ValueError(
                f"{name} must be a spectrum image of shape (ny, nx, channels) or a HyperSpy "
                f"Signal1D with two navigation axes, got an array of shape {np.shape(X)}."
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
    out = template._deepcopy_with_new_data(np.asarray(cube))
    if title is not None:
        out.metadata.General.title = title
    return out
