"""Thin-film self-absorption: absorption factors of line families and the fixed point
of composition and absorption (exspy's loop)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from psnmf.physics import (
    EDXModel,
    absorption_factor,
    atomic_weight,
    estimate_density,
)

__all__ = ["absorption_factors"]


def exspy_tables() -> Any:
    """exspy's material tables (``exspy.material``), imported when first needed."""
    import exspy.material as material

    return material


def _weights_of(composition: dict[str, float], database: str) -> dict[str, float]:
    """Atomic % -> mass fractions with the atomic weights of ``database``."""
    if database == "exspy":
        db = exspy_tables().elements
        m = {el: float(db[el]["General_properties"]["atomic_weight"]) for el in composition}
    else:
        m = {el: atomic_weight(el) for el in composition}
    mass = {el: c * m[el] for el, c in composition.items()}
    total = sum(mass.values())
    return {el: v / total for el, v in mass.items()}


def film_density(composition: dict[str, float], density: float | None, database: str) -> float:
    """The density (g/cm^3) of the film: the one given, else an estimate from the
    composition (exspy's mass-weighted element densities with ``database="exspy"``)."""
    if density is not None:
        return float(density)
    if database == "exspy":
        db = exspy_tables().elements
        w = _weights_of(composition, database)
        return float(
            sum(v * db[el]["Physical_properties"]["density (g/cm^3)"] for el, v in w.items())
        )
    return estimate_density(composition)


def absorption_factors(
    composition: dict[str, float],
    mass_thickness: float,
    model: EDXModel,
    families: dict[str, str],
    takeoff_angle: float | None = None,
    database: str = "xraylib",
) -> dict[str, float]:
    """Thin-film absorption factor of each element's quantification family.

    ``A = (1 - exp(-chi)) / chi``, ``chi = (mu/rho) rho t / sin(take-off)``, in a film
    of the given composition.

    Parameters
    ----------
    composition : dict
        The film, element -> atomic % (the current estimate).
    mass_thickness : float
        ``rho t`` in kg/m^2 (exspy's unit).
    model : EDXModel
        Its lines and detector efficiency weight the lines of a family.
    families : dict
        Element -> family whose intensity is corrected.
    takeoff_angle : float, optional
        Degrees (default the model's).
    database : {"xraylib", "exspy"}
        ``"xraylib"`` (default): xraylib attenuation coefficients, the factor averaged
        over all lines of the family weighted by their detected thin-film intensity
        (the inverse of the simulator's absorption). ``"exspy"``: exspy's choice, FFAST
        coefficients (``exspy.material.mass_absorption_mixture``) at the energy of the
        family's principal line (``"Fe_Ka"``) and exspy's atomic weights.

    Returns
    -------
    dict
        Element -> A (1 for ``mass_thickness = 0``).
    """
    if database not in ("xraylib", "exspy"):
        raise ValueError(f"database must be 'xraylib' or 'exspy', got {database!r}")
    rt = float(mass_thickness)
    if not (math.isfinite(rt) and rt >= 0):
        raise ValueError(f"mass_thickness must be finite and >= 0 kg/m^2, got {mass_thickness!r}")
    toa = model.takeoff_angle if takeoff_angle is None else float(takeoff_angle)
    if not (0 < toa <= 90):
        raise ValueError(f"takeoff_angle must be in (0, 90] degrees, got {takeoff_angle!r}")
    if rt == 0:
        return {el: 1.0 for el in families}
    rt_cgs = rt * 0.1  # kg/m^2 -> g/cm^2
    if database == "xraylib":
        geo = replace(model, takeoff_angle=toa) if toa != model.takeoff_angle else model
        return {
            el: geo.family_absorption(el, fam, composition, rt_cgs)
            for el, fam in families.items()
        }
    material = exspy_tables()
    w = _weights_of(composition, "exspy")
    absorbers = list(w)
    labels = [model.line_label(el, fam) for el, fam in families.items()]
    mac = np.atleast_1d(
        material.mass_absorption_mixture(
            weight_percent=[100.0 * w[el] for el in absorbers], elements=absorbers,
            energies=labels,
        )
    )
    chi = mac * rt_cgs / math.sin(math.radians(toa))
    a = np.atleast_1d(absorption_factor(chi))
    return {el: float(v) for el, v in zip(families, a, strict=True)}


def iterate_absorption(
    step: Callable[[dict[str, float] | None], tuple[dict[str, float], float]],
    absorption_of: Callable[[dict[str, float], float], dict[str, float]],
    tol: float,
    max_iter: int,
) -> tuple[dict[str, float], dict[str, float], float, int]:
    """Fixed point of composition <-> absorption (exspy's loop, to ``tol`` at.%).

    ``step(A)`` returns the composition (at.%) and mass thickness (kg/m^2) for
    absorption factors ``A`` (None: no absorption); ``absorption_of(comp, rho_t)``
    returns the factors for a composition.
    """
    comp, rho_t = step(None)
    factors = {el: 1.0 for el in comp}
    for n in range(1, max_iter + 1):
        factors = absorption_of(comp, rho_t)
        new, rho_t = step(factors)
        change = max(abs(new[el] - comp[el]) for el in comp)
        comp = new
        if change < tol:
            return comp, factors, rho_t, n
    raise RuntimeError(
        f"absorption correction did not converge in {max_iter} iterations (last change "
        f"{change:.3g} at.%): the film is too thick for the thin-film correction; check "
        "the thickness (nm) and density (g/cm^3), or raise max_iter"
    )
