"""Thin-film self-absorption: absorption factors of line families and the fixed point
of composition and absorption (exspy's loop), on arrays of compositions.

One implementation serves one spectrum (:func:`psnmf.quantify.quantify`, a composition is
a 1-row array) and every pixel of a map at once (:func:`psnmf.quantify.composition_maps`):
the attenuation coefficients of every absorber at every line of the corrected families
are tabulated once (:func:`absorption_tables`), after which the factors of ``n`` films
are two matrix products (:meth:`AbsorptionTables.factors`) and the loop
(:func:`iterate_absorption`) iterates all rows together, each stopping on its own change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from psnmf.physics import (
    EDXModel,
    absorption_factor,
    atomic_weight,
    estimate_density,
    mass_attenuation,
)

#: The public name; the tables and the loop serve quantify and composition_maps.
__all__ = ["absorption_factors"]

#: ``step(rows, factors)``: compositions (m, absorbers) and mass thicknesses (m,) of the
#: rows ``rows`` corrected with absorption factors ``factors`` (m, emitters); called first
#: as ``step(None, None)``: every row, uncorrected.
Step = Callable[[np.ndarray | None, np.ndarray | None], tuple[np.ndarray, np.ndarray]]


def exspy_tables() -> Any:
    """exspy's material tables (``exspy.material``), imported when first needed."""
    import exspy.material as material

    return material


@dataclass(frozen=True)
class AbsorptionTables:
    """What the absorption correction needs of a set of elements, as arrays.

    Attributes
    ----------
    absorbers : tuple of str
        The elements of the film: the columns of a composition array.
    emitters : tuple of str
        The elements whose line family is corrected: the columns of the factors.
    line_weights : ndarray (L, emitters)
        Weight of each line in its family's factor (its detected thin-film intensity) in
        the column of the element it belongs to, 0 elsewhere.
    mu : ndarray (absorbers, L)
        Mass attenuation coefficient (cm^2/g) of each absorber at each line.
    atomic_weights : ndarray (absorbers,)
        g/mol: atomic % -> mass fractions.
    element_density : ndarray (absorbers,)
        g/cm^3 of each pure element: the density estimate of a film without one.
    sin_takeoff : float
        Sine of the take-off angle.
    """

    absorbers: tuple[str, ...]
    emitters: tuple[str, ...]
    line_weights: np.ndarray
    mu: np.ndarray
    atomic_weights: np.ndarray
    element_density: np.ndarray
    sin_takeoff: float

    def row(self, composition: dict[str, float]) -> np.ndarray:
        """A composition dict as a (1, absorbers) array (0 for an absent absorber)."""
        return np.array([[float(composition.get(el, 0.0)) for el in self.absorbers]])

    def mass_fractions(self, compositions: np.ndarray) -> np.ndarray:
        """Mass fractions (n, absorbers) of compositions (n, absorbers) in atomic %."""
        mass = compositions * self.atomic_weights
        return mass / mass.sum(axis=1, keepdims=True)

    def density(self, compositions: np.ndarray, given: float | None = None) -> np.ndarray:
        """Film density (n,) in g/cm^3: ``given`` for every row, else the mass-weighted
        element densities of each row (:func:`psnmf.physics.estimate_density`, or
        exspy's element densities with ``database="exspy"``)."""
        if given is not None:
            return np.full(compositions.shape[0], float(given))
        return self.mass_fractions(compositions) @ self.element_density

    def mass_thickness(self, compositions: np.ndarray, density: float | None,
                       thickness_nm: float) -> np.ndarray:
        """``rho t`` (n,) in kg/m^2 of films of the given compositions and thickness."""
        return self.density(compositions, density) * thickness_nm * 1e-6

    def factors(self, compositions: np.ndarray, mass_thickness: np.ndarray) -> np.ndarray:
        """Absorption factors (n, emitters) of films of compositions (n, absorbers, at.%)
        and mass thicknesses (n,, kg/m^2).

        ``A = (1 - exp(-chi)) / chi``, ``chi = (mu/rho) rho t / sin(take-off)`` with
        ``mu/rho`` the mass-fraction mean of the absorbers' coefficients; a family's
        factor is the weighted mean over its lines (1 for a family without lines).
        """
        return self.factors_of(self.attenuation(compositions), mass_thickness)

    def attenuation(self, compositions: np.ndarray) -> np.ndarray:
        """``mu/rho`` (n, lines) of films of compositions (n, absorbers, at.%) at every
        tabulated line: the part of :meth:`factors` that does not depend on the mass
        thickness, for callers that try many thicknesses of one composition."""
        return self.mass_fractions(compositions) @ self.mu

    def factors_of(self, attenuation: np.ndarray, mass_thickness: np.ndarray) -> np.ndarray:
        """:meth:`factors` from :meth:`attenuation` (n, lines) and mass thicknesses (n,)."""
        rt = np.asarray(mass_thickness, dtype=np.float64).reshape(-1)
        chi = attenuation * (rt * 0.1 / self.sin_takeoff)[:, None]  # kg/m^2 -> g/cm^2
        a = np.asarray(absorption_factor(chi))
        total = self.line_weights.sum(axis=0)
        out = (a @ self.line_weights) / np.where(total > 0, total, 1.0)
        out[:, total == 0] = 1.0
        return out


def absorption_tables(
    model: EDXModel,
    families: dict[str, str],
    absorbers: Sequence[str] | None = None,
    takeoff_angle: float | None = None,
    database: str = "xraylib",
) -> AbsorptionTables:
    """Tabulate the absorption data of the families ``families`` in films of ``absorbers``.

    Parameters
    ----------
    model : EDXModel
        Its lines and detector efficiency weight the lines of a family.
    families : dict
        Element -> family whose intensity is corrected (the emitters).
    absorbers : sequence of str, optional
        Elements of the film (default: the emitters).
    takeoff_angle : float, optional
        Degrees (default the model's).
    database : {"xraylib", "exspy"}
        ``"xraylib"`` (default): xraylib attenuation coefficients and element densities,
        the factor averaged over all lines of the family weighted by their detected
        thin-film intensity (the inverse of the simulator's absorption). ``"exspy"``:
        exspy's choice, FFAST coefficients (``exspy.material``) at the energy of the
        family's principal line (``"Fe_Ka"``), exspy's atomic weights and element densities.

    Returns
    -------
    AbsorptionTables
    """
    if database not in ("xraylib", "exspy"):
        raise ValueError(f"database must be 'xraylib' or 'exspy', got {database!r}")
    toa = model.takeoff_angle if takeoff_angle is None else float(takeoff_angle)
    if not (0 < toa <= 90):
        raise ValueError(f"takeoff_angle must be in (0, 90] degrees, got {takeoff_angle!r}")
    absorbers = tuple(families if absorbers is None else absorbers)
    emitters = tuple(families)
    if database == "xraylib":
        owner, weight, energies = [], [], []
        for e, el in enumerate(emitters):
            lines = model.lines(el, families[el])
            en = np.array([ln.energy for ln in lines])
            owner += [e] * len(lines)
            weight += list(np.array([ln.cross_section for ln in lines]) * model.efficiency(en))
            energies += list(en)
        en_all = np.array(energies)
        mu = np.array([np.atleast_1d(mass_attenuation({el: 100.0}, en_all)) for el in absorbers])
        aw = [atomic_weight(el) for el in absorbers]
        rho = [estimate_density({el: 100.0}) for el in absorbers]
    else:
        material = exspy_tables()
        labels = [model.line_label(el, families[el]) for el in emitters]
        owner, weight = list(range(len(emitters))), [1.0] * len(emitters)
        mu = np.array([material.mass_absorption_coefficient(el, list(labels))
                       for el in absorbers])
        db = material.elements
        aw = [float(db[el]["General_properties"]["atomic_weight"]) for el in absorbers]
        rho = [float(db[el]["Physical_properties"]["density (g/cm^3)"]) for el in absorbers]
    line_weights = np.zeros((len(owner), len(emitters)))
    line_weights[np.arange(len(owner)), owner] = weight
    return AbsorptionTables(
        absorbers=absorbers, emitters=emitters, line_weights=line_weights,
        mu=np.asarray(mu, dtype=np.float64).reshape(len(absorbers), len(owner)),
        atomic_weights=np.array(aw), element_density=np.array(rho),
        sin_takeoff=math.sin(math.radians(toa)),
    )


def film_density(model: EDXModel, density: float | None = None,
                 phase: str | None = None) -> tuple[float | None, float]:
    """Density (g/cm^3) of the film an absorption correction assumes, and its sd.

    The density given, else the model's ``density``, else the density of the named
    ``phase`` in the model's ``phase_densities``: known, sd 0. A film whose phase is not
    named (an NMF component) in a sample whose phases' densities are known is one of
    them, which one unknown: the mean of those densities, with their spread (population
    sd) as its sd. None (sd 0) when no density is known: the correction then estimates
    one from each composition (:meth:`AbsorptionTables.density`).

    Parameters
    ----------
    model : EDXModel
        Its ``density`` and ``phase_densities``.
    density : float, optional
        A density given (checked by the caller).
    phase : str, optional
        The film's phase name.

    Returns
    -------
    density, sd : float or None, float
    """
    if density is not None:
        return float(density), 0.0
    named = dict(model.phase_densities)
    if model.density is not None:
        return float(model.density), 0.0
    if phase is not None and phase in named:
        return float(named[phase]), 0.0
    if named:
        values = np.array(list(named.values()), dtype=np.float64)
        return float(values.mean()), float(values.std())
    return None, 0.0


def equivalent_thickness_sd(thickness: float, thickness_sd: float, density: float | None,
                            density_sd: float) -> float:
    """The thickness sd (nm) equivalent to the sds of thickness and density together.

    The absorption depends on ``rho t`` only, so their relative sds add in quadrature:
    ``sqrt(sigma_t^2 + (t sigma_rho / rho)^2)``.
    """
    rel = density_sd / density if density and density_sd else 0.0
    return math.hypot(float(thickness_sd or 0.0), float(thickness) * rel)


def absorption_factors(
    composition: dict[str, float],
    mass_thickness: float,
    model: EDXModel,
    families: dict[str, str],
    takeoff_angle: float | None = None,
    database: str = "xraylib",
) -> dict[str, float]:
    """Thin-film absorption factor of each element's quantification family, in one film.

    ``A = (1 - exp(-chi)) / chi``, ``chi = (mu/rho) rho t / sin(take-off)``; the
    one-row case of :meth:`AbsorptionTables.factors`.

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
        Attenuation data (see :func:`absorption_tables`).

    Returns
    -------
    dict
        Element -> A (1 for ``mass_thickness = 0``).
    """
    rt = float(mass_thickness)
    if not (math.isfinite(rt) and rt >= 0):
        raise ValueError(f"mass_thickness must be finite and >= 0 kg/m^2, got {mass_thickness!r}")
    tables = absorption_tables(model, families, list(composition), takeoff_angle, database)
    a = tables.factors(tables.row(composition), np.array([rt]))[0]
    return {el: float(v) for el, v in zip(tables.emitters, a, strict=True)}


def iterate_absorption(
    step: Step,
    tables: AbsorptionTables,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed point of composition <-> absorption of every row (exspy's loop, to ``tol`` at.%).

    Each iteration computes the absorption factors of the current compositions and mass
    thicknesses and recomputes the rows still moving; a row stops once its largest
    change is below ``tol``, so a row converges as it would alone.

    Parameters
    ----------
    step : callable
        ``step(rows, factors)`` -> compositions (m, absorbers) in at.% and mass
        thicknesses (m,) in kg/m^2 of the rows ``rows`` with absorption factors
        ``factors`` (m, emitters); ``step(None, None)`` gives every row uncorrected.
    tables : AbsorptionTables
        The factors of a composition (:func:`absorption_tables`).
    tol : float
        Largest change (at.%) of a converged row.
    max_iter : int
        Iterations before giving up.

    Returns
    -------
    compositions, factors, mass_thickness, iterations
        (n, absorbers), (n, emitters), (n,) and the iterations of each row (n,).

    Raises
    ------
    RuntimeError
        When a row has not converged in ``max_iter`` iterations (a film too thick for
        the thin-film correction).
    """
    comp, rho_t = (np.array(v, dtype=np.float64) for v in step(None, None))
    n = comp.shape[0]
    factors = np.ones((n, len(tables.emitters)))
    iterations = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    change = math.inf
    for it in range(1, max_iter + 1):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        factors[rows] = tables.factors(comp[rows], rho_t[rows])
        new, rho_t[rows] = step(rows, factors[rows])
        delta = np.abs(new - comp[rows]).max(axis=1)
        comp[rows] = new
        iterations[rows] = it
        active[rows[delta < tol]] = False
        change = float(delta.max())
    if active.any():
        where = "" if n == 1 else f" for {int(active.sum())} of {n} compositions"
        raise RuntimeError(
            f"absorption correction did not converge in {max_iter} iterations{where} (last "
            f"change {change:.3g} at.%): the film is too thick for the thin-film correction; "
            "check the thickness (nm) and density (g/cm^3), or raise max_absorption_iter")
    return comp, factors, rho_t, iterations


def iterate_one(
    step: Callable[[dict[str, float] | None], tuple[dict[str, float], float]],
    tables: AbsorptionTables,
    tol: float,
    max_iter: int,
) -> tuple[dict[str, float], dict[str, float], float, int]:
    """:func:`iterate_absorption` of one film whose ``step`` works on dicts.

    ``step(A)`` returns the composition (absorber -> at.%) and mass thickness (kg/m^2)
    for absorption factors ``A`` (emitter -> factor; None: no absorption). Returns the
    composition, factors, mass thickness and iterations.
    """
    def rows_step(rows: np.ndarray | None, a: np.ndarray | None) -> tuple[np.ndarray,
                                                                         np.ndarray]:
        comp, rt = step(None if a is None else dict(zip(tables.emitters, a[0], strict=True)))
        return tables.row(comp), np.array([rt])

    comp, a, rt, n = iterate_absorption(rows_step, tables, tol, max_iter)
    return ({el: float(v) for el, v in zip(tables.absorbers, comp[0], strict=True)},
            {el: float(v) for el, v in zip(tables.emitters, a[0], strict=True)},
            float(rt[0]), int(n[0]))
