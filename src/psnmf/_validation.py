"""Input validation at the door: every check names the input and says how to fix it."""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import scipy.sparse as sp


class NonIntegerCountsWarning(UserWarning):
    """The data are not integer counts, which the Poisson model assumes."""


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def check_n_components(n_components, shape: tuple[int, int]) -> int:
    """Validate the number of components against a (pixels, channels) matrix."""
    k = check_positive_int(n_components, "n_components")
    n, ne = shape
    if k > min(n, ne):
        raise ValueError(
            f"n_components={k} is more than the data can support: it must be at most "
            f"min(pixels, channels) = min({n}, {ne}) = {min(n, ne)}. Use fewer components"
            " (or a smaller bin factor, which leaves more pixels)."
        )
    return k


def _check_values(values: np.ndarray, name: str) -> None:
    if values.size == 0:
        return
    dt = values.dtype
    if not np.issubdtype(dt, np.number) or np.issubdtype(dt, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers (counts), got dtype {values.dtype}.")
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"{name} contains {int(bad.sum())} NaN or infinite value(s). Counts must be "
                "finite: replace or mask them (e.g. np.nan_to_num) before fitting."
            )
    if np.any(values < 0):
        raise ValueError(
            f"{name} contains {int(np.sum(values < 0))} negative value(s) (min "
            f"{values.min()}). Counts must be >= 0: undo any background subtraction or "
            "offset before fitting."
        )
    if np.issubdtype(values.dtype, np.floating):
        frac = np.abs(values - np.round(values))
        if np.any(frac > 1e-6):
            warnings.warn(
                f"{name} holds non-integer values, but the Poisson model assumes raw X-ray "
                "counts. If the data were scaled or normalised, undo that first; otherwise "
                "results are still computed but likelihood-based scores are not calibrated.",
                NonIntegerCountsWarning,
                stacklevel=3,
            )


def check_counts_matrix(X, name: str = "X") -> sp.csr_matrix:
    """Validate counts and return them as a CSR matrix with float64 data, no explicit zeros.

    Parameters
    ----------
    X : array-like (n_pixels, n_channels) or scipy.sparse matrix
    name : str
        Name of the argument, used in error messages.
    """
    if sp.issparse(X):
        M = sp.csr_matrix(X)
        if M.ndim != 2:
            raise ValueError(f"{name} must be 2-D (pixels, channels), got {M.ndim}-D.")
        _check_values(M.data, name)
        M = sp.csr_matrix(M, dtype=np.float64, copy=True)
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ValueError(
                f"{name} must be a 2-D counts matrix (pixels, channels), got shape "
                f"{arr.shape}. Reshape a (ny, nx, channels) cube with cube.reshape(-1, "
                "channels) or use the PSNMF estimator, which takes cubes."
            )
        _check_values(arr, name)
        M = sp.csr_matrix(arr.astype(np.float64, copy=False))
    if M.shape[0] < 1 or M.shape[1] < 1:
        raise ValueError(f"{name} is empty (shape {M.shape}); it needs pixels and channels.")
    M.sum_duplicates()
    M.eliminate_zeros()
    M.indices = M.indices.astype(np.int32, copy=False)
    M.indptr = M.indptr.astype(np.int64, copy=False)
    return M


def check_cube(cube, name: str = "X") -> np.ndarray:
    """Validate a dense (ny, nx, channels) counts cube (values checked by the caller)."""
    arr = np.asarray(cube)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a spectrum image of shape (ny, nx, channels), got {arr.ndim}-D "
            f"shape {arr.shape}. For a (pixels, channels) matrix pass image_shape=(ny, nx)."
        )
    if min(arr.shape) < 1:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    return arr
