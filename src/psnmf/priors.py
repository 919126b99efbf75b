"""Checks of the user priors of :class:`psnmf.PSNMF`, each naming the input and the fix.

The estimator's prior options and its ``fit(pixel_mask=...)`` are checked here when
``fit`` starts, and turned into what the engine runs with: a
:class:`psnmf.engine.priors.SpectralPriors` (fixed spectra, spectral supports, start
spectra of regions of interest) and the counts with the masked-out pixels set to zero.

Why zeroing removes a pixel from the fit: the model's count scale of a pixel is its total
counts, so a pixel without counts has no term in the Poisson likelihood of either stage
(every sum of the engine runs over the non-zero counts), brings nothing to a binned pixel
(sums), never joins a pure cluster (those need counts) and predicts nothing in a held-out
deviance (its mean is zero there, the same floor for every candidate). The total-variation
maps couple neighbours, so they get the mask too
(:func:`psnmf.engine.tv_maps.smooth_maps`): a masked pixel links no pair of pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf.engine.priors import SpectralPriors, roi_spectra

__all__ = [
    "apply_pixel_mask",
    "check_component",
    "check_coverage",
    "check_fixed_spectra",
    "check_init_rois",
    "check_pixel_mask",
    "check_spectra_mask",
    "spectral_priors",
]


def check_component(key: Any, name: str) -> int:
    """A component index (int >= 0) or a ValueError naming ``name``."""
    if isinstance(key, bool) or not isinstance(key, int | np.integer) or key < 0:
        raise ValueError(f"{name}: component {key!r} is not a component index (an integer "
                         ">= 0; component 0 is the first).")
    return int(key)


def _by_component(value: Any, name: str) -> dict[int, Any]:
    """A dict ``{component: item}`` from a dict or a sequence (item ``j`` for component j)."""
    if isinstance(value, Mapping):
        return {check_component(j, name): v for j, v in value.items()}
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
        return dict(enumerate(value))
    raise TypeError(f"{name} must be a dict {{component: ...}} or a list (item j for "
                    f"component j), got {type(value).__name__}.")


def check_fixed_spectra(value: Any, n_channels: int) -> dict[int, np.ndarray]:
    """``fixed_spectra`` as ``{component: spectrum summing to one}``.

    Each spectrum is 1-D with ``n_channels`` finite, non-negative values, not all zero (a
    measured reference, in counts or normalised).
    """
    if value is None:
        return {}
    out = {}
    for j, s in _by_component(value, "fixed_spectra").items():
        arr = np.asarray(s, dtype=np.float64) if not hasattr(s, "data") else np.asarray(
            s.data, dtype=np.float64)
        if arr.ndim != 1 or arr.size != n_channels:
            raise ValueError(
                f"fixed_spectra[{j}] has shape {arr.shape}, but the data have {n_channels} "
                "channels: give the reference spectrum on the data's energy axis (the same "
                "channels and energy range as the fit)."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"fixed_spectra[{j}] has non-finite values (NaN or inf); give "
                             "a measured spectrum of finite counts.")
        if np.any(arr < 0):
            raise ValueError(f"fixed_spectra[{j}] has negative values (smallest "
                             f"{arr.min():.3g}): a spectrum is non-negative; clip a "
                             "background-subtracted reference at zero or give the raw one.")
        total = arr.sum()
        if not total > 0:
            raise ValueError(f"fixed_spectra[{j}] is zero in every channel: give a spectrum "
                             "with counts.")
        out[j] = arr / total
    return out


def check_spectra_mask(value: Any, n_channels: int) -> np.ndarray | None:
    """``spectra_mask`` as a (m, channels) bool array: True where component ``j`` may be
    non-zero. Each row allows at least one channel."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_channels:
        raise ValueError(
            f"spectra_mask has shape {arr.shape}, expected (components, {n_channels}): one "
            "row per component (the first rows; the others are unconstrained), one value "
            "per channel, True where the spectrum may be non-zero."
        )
    if arr.dtype != bool:
        if not np.all(np.isin(arr, (0, 1))):
            raise ValueError("spectra_mask must be boolean (True where a component's "
                             "spectrum may be non-zero), got other values.")
        arr = arr.astype(bool)
    empty = np.flatnonzero(~arr.any(axis=1))
    if empty.size:
        raise ValueError(f"spectra_mask forbids every channel of component(s) "
                         f"{empty.tolist()}: allow at least the channels of its elements.")
    return arr


def check_pixel_mask(value: Any, image_shape: tuple[int, int],
                     name: str = "pixel_mask", *, allow_all: bool = False) -> np.ndarray | None:
    """A (ny, nx) bool mask (True = masked out) of the image, or None."""
    if value is None:
        return None
    arr = np.asarray(value)
    ny, nx = image_shape
    if arr.shape not in ((ny, nx), (ny * nx,)):
        raise ValueError(f"{name} has shape {arr.shape}, but the image is {ny} x {nx}: give "
                         "a boolean image of the map's shape (True = masked out).")
    if arr.dtype != bool:
        if not np.all(np.isin(arr, (0, 1))):
            raise ValueError(f"{name} must be boolean (True = masked out), got other values.")
        arr = arr.astype(bool)
    arr = arr.reshape(ny, nx)
    if arr.all() and not allow_all:
        raise ValueError(f"{name} masks out every pixel: nothing is left to fit; mask only "
                         "the pixels to leave out (vacuum, contamination, damage).")
    return arr


def check_init_rois(value: Any, image_shape: tuple[int, int]) -> dict[int, np.ndarray]:
    """``init_rois`` as ``{component: (ny, nx) bool mask}``, each with at least one pixel."""
    if value is None:
        return {}
    out = {}
    for j, roi in _by_component(value, "init_rois").items():
        mask = check_pixel_mask(roi, image_shape, name=f"init_rois[{j}]", allow_all=True)
        if mask is None or not mask.any():
            raise ValueError(f"init_rois[{j}] selects no pixel: mark the region of "
                             "component j with True.")
        out[j] = mask
    return out


def apply_pixel_mask(counts: sp.csr_matrix, mask: np.ndarray | None) -> sp.csr_matrix:
    """``counts`` with the rows of the masked pixels emptied (canonical CSR, a copy)."""
    if mask is None:
        return counts
    keep = ~np.asarray(mask, dtype=bool).ravel()
    out = sp.diags(keep.astype(np.float64)) @ counts
    out = sp.csr_matrix(out, dtype=np.float64)
    out.eliminate_zeros()
    out.sort_indices()
    out.indices = out.indices.astype(np.int32, copy=False)
    out.indptr = out.indptr.astype(np.int64, copy=False)
    return out


def spectral_priors(
    counts: sp.csr_matrix, image_shape: tuple[int, int], *, fixed_spectra: Any,
    spectra_mask: Any, init_rois: Any,
) -> SpectralPriors | None:
    """The checked priors of an estimator's options for ``counts`` (masked pixels already
    empty), or None when none is set.

    Refuses a component with both a fixed spectrum and a region of interest (the fixed
    spectrum is its spectrum: it needs no start), or both a fixed spectrum and forbidden
    channels (the fixed spectrum is used as given: nothing is left to forbid).
    """
    ne = counts.shape[1]
    fixed = check_fixed_spectra(fixed_spectra, ne)
    support = check_spectra_mask(spectra_mask, ne)
    rois = check_init_rois(init_rois, image_shape)
    both = sorted(set(fixed) & set(rois))
    if both:
        raise ValueError(f"component(s) {both} have both a fixed spectrum and a region of "
                         "interest: a fixed spectrum needs no start; drop one of the two.")
    if support is not None:
        for j in fixed:
            if j < support.shape[0] and not support[j].all():
                raise ValueError(
                    f"component {j} has a fixed spectrum and channels forbidden by "
                    "spectra_mask: a fixed spectrum is used as given, lines and all; drop "
                    f"the mask of component {j} (set its row to True) or its fixed spectrum."
                )
    if not (fixed or rois or support is not None):
        return None
    return SpectralPriors(fixed=fixed, support=support, init=roi_spectra(counts, rois))


def check_coverage(counts: sp.csr_matrix, priors: SpectralPriors | None, k: int) -> None:
    """Refuse priors that leave a channel with counts where no component may be non-zero.

    There the model is zero whatever the maps; the Poisson likelihood is -inf. Only fixed
    spectra can do that: a forbidden channel still carries its component's continuum
    (:class:`psnmf.engine.priors.ContinuumWindows`), so every free component may be
    non-zero in every channel.
    """
    if priors is None:
        return
    if k < priors.min_components():
        raise ValueError(
            f"the priors name component {priors.min_components() - 1}, but n_components={k}"
            f" has components 0 .. {k - 1}: use n_components >= {priors.min_components()} "
            "or drop the priors of the components above."
        )
    fixed_rows, fixed, _ = priors.rows(k, counts.shape[1])
    if fixed_rows is None or not fixed_rows.all():
        return
    dead = ~(fixed > 0).any(axis=0)
    hit = (np.unique(counts.indices[dead[counts.indices]]).tolist() if dead.any() else [])
    if len(hit):
        raise ValueError(
            f"channel(s) {hit[:10]}{' ...' if len(hit) > 10 else ''} have counts, but "
            "every component has a fixed spectrum, zero there: no component can explain "
            "them; leave a component free, or give references with counts there."
        )
