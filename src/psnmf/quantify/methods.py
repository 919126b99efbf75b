"""Compositions from line intensities: Cliff-Lorimer, zeta factors, cross-sections
(exspy's three methods, with the delta-method propagation of the counting covariance)."""

from __future__ import annotations

import math

import numpy as np
import scipy.constants as sc

from psnmf.physics import (
    atomic_weight,
)

__all__ = ["METHODS", "cliff_lorimer", "electron_dose", "zeta_factor", "cross_section"]


#: Quantification methods, with exspy's names.
METHODS = ("CL", "zeta", "cross_section")


def _vector(values: dict[str, float], elements: list[str], name: str, fix: str) -> np.ndarray:
    missing = [el for el in elements if el not in values]
    if missing:
        raise ValueError(f"no {name} for {missing}; {fix}")
    out = np.array([float(values[el]) for el in elements], dtype=float)
    bad = [el for el, v in zip(elements, out, strict=True) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"{name} of {bad} must be positive numbers; {fix}")
    return out


def cliff_lorimer(
    intensities: dict[str, float],
    k_factors: dict[str, float],
    covariance: np.ndarray | None = None,
    absorption: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, float] | None]:
    """Atomic percentages from line intensities and atomic-basis k-factors.

    ``C_A = 100 k_A I_A / A_A / sum_B k_B I_B / A_B`` (Cliff & Lorimer 1975), with
    ``A`` the absorption factors (1 without absorption). exspy's
    ``quantification_cliff_lorimer`` evaluates the same ratios on the weight basis
    (with its intensities multiplied by ``1 / A``); the two agree for k-factors
    converted with the same atomic weights.

    Parameters
    ----------
    intensities : dict
        Element -> intensity.
    k_factors : dict
        Element -> k-factor (atomic basis); every element needs one.
    covariance : numpy.ndarray, optional
        Covariance of the intensities (order of ``intensities``), propagated by the
        delta method.
    absorption : dict, optional
        Element -> absorption factor of its line family (0 < A <= 1), the detected
        fraction of the generated intensity (:func:`absorption_factors`).

    Returns
    -------
    composition : dict
        Element -> atomic %.
    uncertainty : dict or None
        Element -> standard deviation in atomic %.
    """
    elements = list(intensities)
    k = _vector(
        k_factors, elements, "k-factor",
        "add them to the k-factor file or omit k_factors to use the model's",
    )
    i = np.array([intensities[el] for el in elements], dtype=float)
    if absorption is not None:
        k = k / _vector(absorption, elements, "absorption factor", "give 0 < A <= 1")
    t = float(k @ i)
    if t <= 0:
        raise ValueError("all line intensities are zero: nothing to quantify")
    c = 100.0 * k * i / t
    comp = {el: float(v) for el, v in zip(elements, c, strict=True)}
    if covariance is None:
        return comp, None
    jac = 100.0 * (np.diag(k) / t - np.outer(k * i, k) / t**2)
    cov_c = jac @ np.asarray(covariance) @ jac.T
    unc = {el: float(math.sqrt(max(cov_c[j, j], 0.0))) for j, el in enumerate(elements)}
    return comp, unc


def electron_dose(beam_current: float, live_time: float, probe_area: float | None = None) -> float:
    """Electrons (or electrons per nm^2) delivered: ``i t / e`` (``/ probe_area``).

    exspy's ``EDSTEMSpectrum._get_dose``: beam current in nA, live time in s, probe
    area in nm^2 (for the cross-section method).
    """
    for name, v in (("beam_current", beam_current), ("live_time", live_time)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(
                f"{name} must be a positive number, got {v!r} (beam current in nA, "
                "live time in s)"
            )
    dose = float(beam_current) * 1e-9 * float(live_time) / sc.e
    if probe_area is None:
        return dose
    if not (isinstance(probe_area, int | float) and math.isfinite(probe_area) and probe_area > 0):
        raise ValueError(f"probe_area must be a positive number of nm^2, got {probe_area!r}")
    return dose / float(probe_area)


def zeta_factor(
    intensities: dict[str, float],
    zeta_factors: dict[str, float],
    dose: float,
    covariance: np.ndarray | None = None,
    absorption: dict[str, float] | None = None,
    atomic_weights: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, float] | None, float, float | None]:
    """The zeta-factor method: composition and mass thickness (Watanabe & Williams 2006).

    ``rho t C_A = zeta_A I_A / (A_A N_e)``: mass fractions ``C_A = x_A / sum_B x_B``
    with ``x_A = zeta_A I_A / A_A``, mass thickness ``rho t = sum_B x_B / N_e``
    (exspy's ``quantification_zeta_factor``). The atomic fractions are
    ``(C_A / M_A) / sum_B (C_B / M_B)``, i.e. Cliff-Lorimer with atomic k-factors
    ``zeta_A / M_A``, which is how their uncertainty is propagated.

    Parameters
    ----------
    intensities : dict
        Element -> counts of its line family.
    zeta_factors : dict
        Element -> zeta factor in kg/m^2 (exspy's unit; weight basis).
    dose : float
        Number of electrons, ``i t / e`` (:func:`electron_dose`).
    covariance : numpy.ndarray, optional
        Covariance of the intensities.
    absorption : dict, optional
        Element -> absorption factor (1 without absorption).
    atomic_weights : dict, optional
        Element -> g/mol (default xraylib's).

    Returns
    -------
    composition : dict
        Element -> atomic %.
    uncertainty : dict or None
        Element -> standard deviation in atomic %.
    mass_thickness : float
        ``rho t`` in kg/m^2 (1 kg/m^2 = 0.1 g/cm^2; 100 nm at 4 g/cm^3 is 4e-4).
    mass_thickness_sigma : float or None
        Its standard deviation (counting statistics).
    """
    elements = list(intensities)
    z = _vector(zeta_factors, elements, "zeta factor", "give kg/m^2 per element")
    if not (isinstance(dose, int | float) and math.isfinite(dose) and dose > 0):
        raise ValueError(f"dose must be a positive number of electrons, got {dose!r}")
    if absorption is not None:
        z = z / _vector(absorption, elements, "absorption factor", "give 0 < A <= 1")
    weights = atomic_weights or {el: atomic_weight(el) for el in elements}
    m = np.array([weights[el] for el in elements])
    k_atomic = dict(zip(elements, z / m, strict=True))
    comp, unc = cliff_lorimer(intensities, k_atomic, covariance)
    i = np.array([intensities[el] for el in elements], dtype=float)
    rho_t = float(z @ i) / dose
    sigma = None
    if covariance is not None:
        sigma = float(math.sqrt(max(z @ np.asarray(covariance) @ z, 0.0))) / dose
    return comp, unc, rho_t, sigma


def cross_section(
    intensities: dict[str, float],
    cross_sections: dict[str, float],
    dose_per_area: float,
    covariance: np.ndarray | None = None,
    absorption: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, float] | None, dict[str, float]]:
    """The cross-section method: atomic composition and number of atoms.

    ``N_A = I_A / (A_A sigma_A D)`` with ``sigma_A`` the detected cross-section in
    barns and ``D`` the dose in electrons per nm^2 (exspy's
    ``quantification_cross_section``, same units): ``N_A`` is the number of atoms of
    A in the probed column, ``C_A = N_A / sum_B N_B`` (Cliff-Lorimer with k-factors
    ``1 / sigma_A``).

    Returns
    -------
    composition : dict
        Element -> atomic %.
    uncertainty : dict or None
        Element -> standard deviation in atomic %.
    atoms : dict
        Element -> number of atoms under the probe.
    """
    elements = list(intensities)
    xs = _vector(cross_sections, elements, "cross-section", "give barns per element")
    if not (isinstance(dose_per_area, int | float) and math.isfinite(dose_per_area)
            and dose_per_area > 0):
        raise ValueError(f"dose_per_area must be > 0 electrons/nm^2, got {dose_per_area!r}")
    if absorption is not None:
        xs = xs * _vector(absorption, elements, "absorption factor", "give 0 < A <= 1")
    comp, unc = cliff_lorimer(intensities, dict(zip(elements, 1.0 / xs, strict=True)), covariance)
    i = np.array([intensities[el] for el in elements], dtype=float)
    atoms = i / (xs * 1e-10 * dose_per_area)
    return comp, unc, {el: float(v) for el, v in zip(elements, atoms, strict=True)}
