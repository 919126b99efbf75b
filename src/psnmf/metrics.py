"""Metrics that compare decompositions: with ground truth, and without it (count splitting).

* :func:`spectral_angle` - eq. (1) of the paper, in degrees.
* :func:`map_mse` - eq. (2) of the paper.
* :func:`match_components` - optimal one-to-one matching of found to reference components
  (Hungarian algorithm on the spectral angles).
* :func:`count_split` and :func:`poisson_deviance` - a ground-truth-free score for real
  data: binomial thinning splits the counts into two independent Poisson halves with half
  the mean each; a method fitted on one half predicts the other, and the held-out Poisson
  deviance measures how well it captured the signal rather than the noise.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from psnmf._validation import check_finite_array


def spectral_angle(v1: np.ndarray, v2: np.ndarray) -> float | np.ndarray:
    """Spectral angle ``arccos(v1 . v2 / (|v1| |v2|))`` in degrees (eq. 1 of the paper).

    Works on the last axis, so stacks of spectra broadcast.

    Examples
    --------
    >>> round(spectral_angle(np.array([1.0, 0.0]), np.array([1.0, 1.0])), 9)
    45.0
    """
    v1 = check_finite_array(v1, "v1")
    v2 = check_finite_array(v2, "v2")
    if v1.ndim == 0 or v2.ndim == 0 or v1.shape[-1] != v2.shape[-1]:
        raise ValueError(
            f"v1 and v2 must be spectra with the same number of channels (last axis), got "
            f"shapes {v1.shape} and {v2.shape}."
        )
    try:
        np.broadcast_shapes(v1.shape, v2.shape)
    except ValueError:
        raise ValueError(
            f"v1 and v2 stacks of spectra do not broadcast: shapes {v1.shape} and {v2.shape}."
        ) from None
    num = np.sum(v1 * v2, axis=-1)
    den = np.linalg.norm(v1, axis=-1) * np.linalg.norm(v2, axis=-1)
    cos = np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)
    ang = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return float(ang) if np.ndim(ang) == 0 else ang


def map_mse(m1: np.ndarray, m2: np.ndarray) -> float:
    """Mean squared error between two maps of the same shape (eq. 2 of the paper)."""
    m1 = check_finite_array(m1, "m1")
    m2 = check_finite_array(m2, "m2")
    if m1.shape != m2.shape:
        raise ValueError(
            f"maps m1 and m2 must have the same shape, got {m1.shape} and {m2.shape}."
        )
    return float(np.mean((m1 - m2) ** 2))


def match_components(found: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Optimal matching of found spectra to reference spectra.

    Parameters
    ----------
    found : ndarray (k_found, channels)
    reference : ndarray (k_ref, channels)

    Returns
    -------
    order : ndarray (k_ref,) of int
        ``found[order[i]]`` is the component matched to ``reference[i]`` (Hungarian
        algorithm minimising the total spectral angle). Requires ``k_found >= k_ref``.
    """
    found = check_finite_array(found, "found")
    reference = check_finite_array(reference, "reference")
    if found.ndim != 2 or reference.ndim != 2 or found.shape[1] != reference.shape[1]:
        raise ValueError(
            "found and reference must be (components, channels) arrays with the same "
            f"number of channels, got shapes {found.shape} and {reference.shape}."
        )
    if found.shape[0] < reference.shape[0]:
        raise ValueError(
            f"cannot match {found.shape[0]} found components to {reference.shape[0]} "
            "references: need at least as many found as references."
        )
    cost = spectral_angle(reference[:, None, :], found[None, :, :])
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(reference.shape[0], dtype=int)
    order[rows] = cols
    return order


def compare_to_truth(
    spectra: np.ndarray,
    maps: np.ndarray,
    true_spectra: np.ndarray,
    true_maps: np.ndarray,
) -> dict[str, np.ndarray]:
    """Match components to the truth and return per-phase angles and map MSEs.

    Returns
    -------
    dict with ``order`` (found index per true phase), ``angle`` (degrees) and ``mse``.
    """
    order = match_components(spectra, true_spectra)
    angles = np.array(
        [spectral_angle(spectra[o], t) for o, t in zip(order, true_spectra, strict=True)]
    )
    mses = np.array(
        [map_mse(maps[..., o], true_maps[..., i]) for i, o in enumerate(order)]
    )
    return {"order": order, "angle": angles, "mse": mses}


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Relative squared error ``|estimate - truth|^2 / |truth|^2`` (denoising error)."""
    estimate = check_finite_array(estimate, "estimate")
    truth = check_finite_array(truth, "truth")
    if estimate.shape != truth.shape:
        raise ValueError(
            f"estimate and truth must have the same shape, got {estimate.shape} vs "
            f"{truth.shape}."
        )
    den = float(np.sum(truth**2))
    if not den > 0:
        raise ValueError(
            "truth is all zeros, so the relative error is undefined; compare with "
            "map_mse or poisson_deviance instead."
        )
    return float(np.sum((estimate - truth) ** 2) / den)
