"""The one-call quantification: line fit, then CL, zeta or cross-section, with the error
budget, detection limits, exclusions and overlaps (:func:`quantify`)."""

from __future__ import annotations

import functools
import math
import os
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.constants as sc

from psnmf.physics import (
    EDXModel,
    atomic_weight,
)
from psnmf.quantify._common import GASEOUS, positive_or_none
from psnmf.quantify.absorption import (
    AbsorptionTables,
    absorption_factors,
    absorption_tables,
    equivalent_thickness_sd,
    exspy_tables,
    film_density,
    iterate_one,
)
from psnmf.quantify.electroneutrality import (
    MAX_MASS_THICKNESS,
    NeutralThickness,
    neutral_k_spread,
    neutral_thickness,
)
from psnmf.quantify.kfactors import (
    KFactors,
    k_factor_draws,
    k_factor_spread,
    read_k_factors,
    theoretical_k_sd,
)
from psnmf.quantify.linefit import Film, LineFit, fit_lines
from psnmf.quantify.methods import METHODS, cliff_lorimer, cross_section, electron_dose, zeta_factor
from psnmf.quantify.result import Quantification

__all__ = ["quantify", "quantify_spectra"]


def quantify(
    spectrum: Any,
    elements: list[str] | tuple[str, ...] | None = None,
    model: EDXModel | None = None,
    k_factors: dict[str, float] | KFactors | str | os.PathLike[str] | None = None,
    k_factor_basis: str = "atomic",
    families: dict[str, str] | None = None,
    total_counts: float | None = None,
    *,
    method: str = "CL",
    thickness: float | None = None,
    density: float | None = None,
    phase: str | None = None,
    takeoff_angle: float | None = None,
    thickness_sigma: float | None = None,
    absorption_correction: bool | None = None,
    zeta_factors: dict[str, float] | None = None,
    cross_sections: dict[str, float] | None = None,
    solid_angle: float | None = None,
    beam_current: float | None = None,
    live_time: float | None = None,
    probe_area: float | None = None,
    database: str = "xraylib",
    tol: float = 1e-6,
    max_absorption_iter: int = 100,
    k_factor_sd: float | dict[str, float] | None = None,
    detector_window_known: bool = False,
    thickness_from: str | None = "auto",
    valences: dict[str, float] | None = None,
    charge_balance_sd: float = 0.01,
    exclude_elements: list[str] | tuple[str, ...] | None = None,
    detection_sigma: float | None = 3.0,
    n_draws: int = 4000,
    film: Film | None = None,
    **fit_options: Any,
) -> Quantification:
    """Composition (atomic %) of one spectrum: line fitting, then CL, zeta or cross-section.

    Parameters
    ----------
    spectrum : array-like or HyperSpy signal
        One spectrum (see :func:`fit_lines`).
    elements : list of str, optional
        Elements to quantify (default: the signal's elements).
    model : EDXModel, optional
        Forward model for the line templates, the default k-factors, and the default
        thickness, density and take-off angle (a signal's model carries its metadata,
        :func:`model_for_signal`).
    k_factors : dict, KFactors, or path, optional
        User k-factors (element or line label -> k), or a CSV/JSON file
        (:func:`read_k_factors`). Default: the model's (:meth:`EDXModel.k_factors`),
        which are exact for data simulated with the same model.
    k_factor_basis : {"atomic", "weight"}
        Basis of ``k_factors`` given as a dict.
    families : dict, optional
        Element -> family to use (default from the k-factor file's line labels,
        then :meth:`EDXModel.quant_family`).
    total_counts : float, optional
        Total counts the spectrum stands for (enables uncertainties for normalised
        spectra).
    method : {"CL", "zeta", "cross_section"}
        Cliff-Lorimer (k-factors), zeta factors (with ``beam_current`` and
        ``live_time``; gives the mass thickness) or cross-sections (with
        ``beam_current``, ``live_time`` and ``probe_area``; gives numbers of atoms).
    thickness : float, optional
        Specimen thickness in nm for the CL absorption correction (default the
        model's ``thickness``: 0, no correction, unless the signal's metadata or the
        simulator gave one).
    density : float, optional
        Density in g/cm^3 (default the model's ``density``, then ``phase_densities``
        of ``phase``, then the mean of the model's ``phase_densities`` (a simulated
        sample's component whose phase is not named; their spread is the density's sd,
        in the ``"thickness"`` part of the uncertainty), then
        :func:`psnmf.physics.estimate_density`, which is far too low for oxides: give it).
    phase : str, optional
        Phase name to look up in the model's ``phase_densities``.
    takeoff_angle : float, optional
        Degrees (default the model's).
    thickness_sigma : float, optional
        Standard deviation of the thickness in nm (CL): adds the ``"thickness"`` part
        of the uncertainty, half the change of the composition from ``t - sigma`` to
        ``t + sigma`` at the fitted intensities (those of the film found, ``film``; the
        maps of :func:`composition_maps` use the same). Refitted in the films
        ``t -+ sigma`` the change is smaller where a film's absorption edge splits an
        overlapped family (TiN, 50 +- 31 nm: 0.31 at.% instead of 1.10), as the
        templates' change offsets the correction's (8YSZ, HfO2, CaPv: within 6 %). The
        density's sd (the spread of the model's phase densities, for a spectrum whose
        phase is not named) adds to it: ``sigma`` is then the thickness sd equivalent to
        both, ``sqrt(sigma_t^2 + (t sigma_rho / rho)^2)``.
    absorption_correction : bool, optional
        Default: CL corrects when the thickness is > 0; zeta and cross-section always
        correct (their mass thickness is measured). False switches it off (exspy's
        default).
    zeta_factors, cross_sections : dict, optional
        Element -> zeta factor (kg/m^2) or detected cross-section (barns); default the
        model's (:meth:`EDXModel.zeta_factors`, :meth:`EDXModel.cross_sections`), which
        need the detector ``solid_angle`` (sr).
    solid_angle : float, optional
        Detector solid angle in sr, for the model's zeta factors or cross-sections.
    beam_current, live_time, probe_area : float, optional
        nA, s and nm^2 (the electron dose of the zeta and cross-section methods).
    database : {"xraylib", "exspy"}
        Attenuation coefficients and their averaging over a family; ``"exspy"``
        reproduces exspy's absorption correction (see the module docstring).
    tol : float
        Convergence of the absorption loop: largest change in at.% between iterations.
    max_absorption_iter : int
        Iterations before the absorption loop gives up with an error.
    k_factor_sd : float or dict, optional
        Relative standard deviation of the k-factors (CL) or of the zeta factors or
        cross-sections (0.1 = 10 %), one for all or per element; it is the
        ``"k_factors"`` part of the uncertainty (:func:`k_factor_spread`). Default:
        :func:`theoretical_k_sd` for factors from the model, the file's
        :attr:`KFactors.relative_sd` for a k-factor table, none for zeta factors or
        cross-sections given as numbers (noted). 0 leaves the part out.
    detector_window_known : bool
        The model's detector window (``EDXModel.window``, e.g. from the signal's metadata
        or the detector's data sheet) is the real detector's: the theoretical k-factor sd
        leaves out its window part (:func:`theoretical_k_sd`), which is the spread of the
        efficiency over the windows a detector may have (O K: 45 % -> 15 %).
    thickness_from : {"auto", "electroneutrality", "none"} or None
        CL: where the film's mass thickness comes from. ``"electroneutrality"`` measures
        it from the spectrum itself, as the one at which the absorption-corrected
        composition is neutral (Van Cappellen 1990;
        :mod:`psnmf.quantify.electroneutrality`), instead of trusting ``thickness`` and
        ``density``: the anion's K line is the most absorbed, so the charge balance
        measures the absorption path. A ``thickness`` (or the model's) with a
        ``thickness_sigma`` (or a density's spread) is a log-normal prior on the mass
        thickness (median the thickness times the density, log sd the relative sd:
        ``50 +- 25 nm`` is a factor ``exp(0.5)`` either way at one sd), combined with the
        estimate by inverse variance in log mass thickness; without an sd the estimate
        replaces it (noted); without a thickness the estimate alone corrects the film.
        The ``"thickness"`` part of the uncertainty is then that of the mass thickness
        used (counting, valences, stoichiometry, and the prior; one log sd either side,
        a factor); the ``"k_factors"`` part estimates it again for every draw. A phase
        without an anion or a cation, or with an element that has no valence, keeps the
        thickness given (noted).
        ``"auto"`` (the default) estimates it only to refine a thickness given with an
        sd (``thickness_sigma``, or a density's spread), where the correction is on:
        without an sd, or where the estimate and the prior disagree by more than 3 sd of
        log mass thickness, the thickness given is used (noted); a thin film (no
        thickness) stays one. The estimate alone rests on the valence table and on the
        phase being one stoichiometric compound; a valence not the table's (Cu2O, Cu +1)
        or a component mixing a metal with an oxide would put a spurious film of
        hundreds of nm on it (10-17 at.% off, measured), which a thickness given with
        its sd guards against as far as that sd allows: a factor 7 is 3.9 sd of a
        thickness given to 50 % (``50 +- 25 nm``, density known) but 1.6 sd of
        ``25 +- 25 nm`` for an unnamed component (log sd 1.18 with the density's
        spread), which is used.
        ``"none"`` (or None): the thickness given alone.
    valences : dict, optional
        Element -> valence (anions negative, ``{"Fe": 3}``) for ``thickness_from``;
        default :data:`psnmf.quantify.electroneutrality.VALENCES` (in a nitride
        :data:`~psnmf.quantify.electroneutrality.NITRIDE_VALENCES`: Ti +3 in TiN), whose
        multivalent elements (Fe, Ti, U, Ce, ...) carry half their range as an sd unless
        stated here.
    charge_balance_sd : float
        Relative sd of a phase's charge balance (0.01: 1 % of its anion charge) for
        ``thickness_from``: the departure of a real phase from its nominal valences
        (unanalysed H, Li, B; vacancies); 0 for an exactly stoichiometric phase.
    exclude_elements : list of str, optional
        Elements fitted (their lines are in the spectrum: a Cu grid, Si of the
        detector) but left out of the composition, which is normalised without them.
    detection_sigma : float or None
        An element whose fitted intensity is below ``detection_sigma`` times its
        counting standard deviation is reported below the detection limit
        (:attr:`Quantification.below_detection`, with the limit in at.%) instead of
        being given a composition; needs counts (integer spectrum or
        ``total_counts``). None reports every element.
    n_draws : int
        Monte Carlo draws of the k-factor part.
    film : Film, optional
        The film whose self-absorption shapes the fitted lines and continuum
        (:func:`fit_lines`). Default: found with the composition. When the intensities
        are corrected for absorption, the spectrum is fitted again with the templates of
        the film just found (its composition and mass thickness), and again, until the
        composition changes by less than ``tol`` at.% (at most
        :data:`MAX_FILM_PASSES` fits, then one in the film found, with the error
        budget): the shapes of the lines of a family and of the
        continuum change across the film's absorption edges, and thin-film shapes put
        counts of one family into an overlapping one (N K and Ti L in TiN). Given, one
        fit with its templates.
    **fit_options
        Passed to :func:`fit_lines` (``continuum_degree``, ``min_family_fraction``...).

    Returns
    -------
    Quantification

    Examples
    --------
    >>> from psnmf.physics import EDXModel
    >>> film = EDXModel(thickness=100.0, density=3.6)
    >>> spec = film.phase_spectrum({"Mg": 40, "Fe": 10, "O": 50})   # absorbed
    >>> q = quantify(spec, ["Mg", "Fe", "O"], model=film)            # corrected
    >>> round(q.composition["O"], 1), q.thickness
    (50.0, 100.0)
    """
    call = _Call(**{name: value for name, value in locals().items()
                    if name not in ("fit_options", "film")})
    if film is not None:
        return _one_fit(call, film, True, fit_options)
    q = _one_fit(call, None, False, fit_options)
    if q.absorption is None:
        return q                   # thin: no film to find, the budget is in
    # the mass thickness of the templates: where it is estimated (electroneutrality) the
    # fixed point of "templates of x -> neutral mass thickness g(x)", found by secant steps
    # (the plain iteration contracts by only ~0.7 a fit in TiN); given, g does not depend
    # on x beyond the composition
    x = float(q.mass_thickness or 0.0)
    x_prev, h_prev = 0.0, x                  # the thin templates' fit: g(0) = x
    for _ in range(MAX_FILM_PASSES - 1):
        film = Film(q.composition, x, takeoff_angle)
        if not film.mass_thickness:
            break
        new = _one_fit(call, film, False, fit_options)
        change = max(abs(new.composition.get(el, 0.0) - c) for el, c in q.composition.items())
        q = new
        g = float(q.mass_thickness or 0.0)
        if q.thickness_estimate is None:
            x = g
            if change < tol:
                break
            continue
        h = g - x
        if change < tol and abs(h) <= FILM_RTOL * x:
            break
        step = x - h * (x - x_prev) / (h - h_prev) if h != h_prev else g
        x_prev, h_prev = x, h
        x = step if 0.0 < step <= MAX_MASS_THICKNESS else g
    else:
        warnings.warn(
            f"quantify: the film of the line templates still changed the composition by "
            f"{change:.2g} at.% after {MAX_FILM_PASSES} fits (tol {tol:g})", stacklevel=2)
    # the film found, with the error budget
    film = Film(q.composition, x, takeoff_angle)
    return _one_fit(call, film, True, fit_options)


#: Most fits :func:`quantify` makes to find the film its templates are absorbed in (one
#: more, in the film found, gives the result and its error budget).
MAX_FILM_PASSES = 10
#: Relative change of an estimated mass thickness (electroneutrality) at which the film
#: of the templates is found (with the composition's ``tol``).
FILM_RTOL = 1e-6


class _Call(SimpleNamespace):
    """The arguments of a :func:`quantify` call by name (but ``film`` and the fit options),
    as :func:`_one_fit` reads them."""


def _one_fit(o: _Call, film: Film | None, final: bool,
             fit_options: dict[str, Any]) -> Quantification:
    """One fit of :func:`quantify` (its arguments ``o``), with the templates of ``film``.

    Not ``final`` and correcting for absorption: a pass towards the film, without the
    error budget (it is computed once, in the film found).
    """
    if o.method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {o.method!r}")
    if o.database not in ("xraylib", "exspy"):
        raise ValueError(f"database must be 'xraylib' or 'exspy', got {o.database!r}")
    if not (isinstance(o.tol, int | float) and o.tol > 0):
        raise ValueError(f"tol must be a positive number of at.%, got {o.tol!r}")
    table: KFactors | None
    if o.k_factors is None:
        table = None
    elif isinstance(o.k_factors, KFactors):
        table = o.k_factors
    elif isinstance(o.k_factors, dict):
        table = KFactors(values=dict(o.k_factors), basis=o.k_factor_basis)
    else:
        table = read_k_factors(o.k_factors)
    fams = dict(table.families()) if table is not None else {}
    fams.update(o.families or {})
    fit = fit_lines(
        o.spectrum, o.elements, model=o.model, families=fams, total_counts=o.total_counts,
        film=film, **fit_options
    )
    model_used = fit.model
    toa = positive_or_none("takeoff_angle", o.takeoff_angle, "give degrees, e.g. 35")
    if toa is not None and toa > 90:
        raise ValueError(f"takeoff_angle must be <= 90 degrees, got {o.takeoff_angle!r}")
    toa = model_used.takeoff_angle if toa is None else toa
    lines = {el: model_used.line_label(el, fam) for el, fam in fit.families.items()}
    excluded = _subset("exclude_elements", o.exclude_elements, fit.elements)
    significance = None
    if fit.sigma is not None:
        significance = {
            el: (fit.intensities[el] / fit.sigma[el] if fit.sigma[el] > 0 else math.inf)
            for el in fit.elements
        }
    below: list[str] = []
    if o.detection_sigma is not None:
        dsig = positive_or_none("detection_sigma", o.detection_sigma, "e.g. 3 (sigma)")
        if significance is not None:
            below = [el for el in fit.elements
                     if el not in excluded and significance[el] < float(dsig)]
    incl = [el for el in fit.elements if el not in excluded and el not in below]
    if not incl:
        raise ValueError(
            f"no element left to quantify: excluded {excluded}, below the detection limit "
            f"{below}; check the element list, or lower detection_sigma"
        )
    idx = [fit.elements.index(el) for el in incl]
    intens = {el: fit.intensities[el] for el in incl}
    cov = None if fit.covariance is None else fit.covariance[np.ix_(idx, idx)]
    fams_incl = {el: fit.families[el] for el in incl}
    aw = None
    if o.database == "exspy":
        db = exspy_tables().elements
        aw = {el: float(db[el]["General_properties"]["atomic_weight"]) for el in fit.elements}

    @functools.cache
    def tables() -> AbsorptionTables:
        # tabulated once, when a correction needs it
        return absorption_tables(model_used, fams_incl, incl, toa, o.database)

    rho: float | None = None
    t_used: float | None = None
    budget: dict[str, dict[str, float]] = {}
    extra: dict[str, Any] = {}
    notes: list[str] = []
    neutral: NeutralThickness | None = None
    if o.method == "CL":
        if table is None:
            kf_all = model_used.k_factors(fit.elements, fit.families)
        else:
            kf_all = table.atomic()
        kf = {el: kf_all[el] for el in incl if el in kf_all}
        t = positive_or_none(
            "thickness", o.thickness, "give the specimen thickness in nm (0 = thin film)",
            allow_zero=True,
        )
        t_used = model_used.thickness if t is None else t
        sigma_t = positive_or_none(
            "thickness_sigma", o.thickness_sigma, "give the thickness uncertainty in nm",
            allow_zero=True,
        )
        rho_given, rho_sd = film_density(
            model_used, positive_or_none("density", o.density, "give g/cm^3, e.g. 4.1"), o.phase)
        mode = _thickness_mode(o.thickness_from)
        valences = dict(o.valences or {})
        _subset("valences", list(valences), fit.elements)
        if mode == "electroneutrality" and o.absorption_correction is False:
            raise ValueError("thickness_from='electroneutrality' estimates the film for the "
                             "absorption correction: drop absorption_correction=False "
                             "(or thickness_from='none')")
        cbs = positive_or_none("charge_balance_sd", o.charge_balance_sd,
                               "give a relative sd of the charge balance, e.g. 0.01",
                               allow_zero=True) or 0.0
        correct = (t_used > 0) if o.absorption_correction is None else bool(o.absorption_correction)
        if correct and t_used == 0 and o.absorption_correction:
            raise ValueError(
                "absorption_correction=True with Cliff-Lorimer needs thickness > 0 (nm)"
            )
        # the thickness and the density's spread (a component whose phase is not named)
        sigma_eq = equivalent_thickness_sd(t_used, sigma_t or 0.0, rho_given,
                                           rho_sd if correct else 0.0)
        if mode == "auto" and not correct:
            mode = None          # a thin film: nothing to correct
        if mode is not None:
            missing_k = [el for el in incl if el not in kf]
            if missing_k:
                raise ValueError(f"no k-factor for {missing_k}; add them to the k-factor "
                                 "file or omit k_factors to use the model's")
            neutral = neutral_thickness(
                incl, kf, intens, cov, {el: valences[el] for el in incl if el in valences},
                cbs, tables(), o.tol, o.max_absorption_iter,
                t_used, sigma_eq,
                rho_given, notes, auto=mode == "auto")
        estimate = None if neutral is None else neutral.estimate
        if neutral is not None:
            correct = True
            mt_fixed, mt_sd = neutral.value, neutral.sd
        light = correct and not final

        def solve(t_nm: float, mt: float | None = None
                  ) -> tuple[dict[str, float], dict[str, float] | None, float, int]:
            """Composition corrected for a film of ``t_nm`` nm, or of mass thickness
            ``mt`` (kg/m^2) when given."""
            if not correct or (mt is None and t_nm == 0):
                comp, _ = cliff_lorimer(intens, kf)
                return comp, None, 0.0, 0

            def step(a: dict[str, float] | None) -> tuple[dict[str, float], float]:
                comp, _ = cliff_lorimer(intens, kf, None, a)
                if mt is not None:
                    return comp, float(mt)
                return comp, float(tables().mass_thickness(tables().row(comp), rho_given, t_nm)[0])

            return iterate_one(step, tables(), o.tol, o.max_absorption_iter)

        if estimate is not None:
            comp0, a_used, rho_t, n_abs = solve(t_used, mt_fixed)
            if mt_sd > 0 and not light:   # one log sd either side: a factor, positive
                mt_lo, mt_hi = neutral.bounds()  # type: ignore[union-attr]
                lo = solve(t_used, mt_lo)[0]
                hi = solve(t_used, mt_hi)[0]
                budget["thickness"] = {el: abs(hi[el] - lo[el]) / 2.0 for el in comp0}
        else:
            comp0, a_used, rho_t, n_abs = solve(t_used)
            if sigma_eq > 0 and not light:
                lo = solve(max(t_used - sigma_eq, 0.0))[0]
                hi = solve(t_used + sigma_eq)[0]
                budget["thickness"] = {el: abs(hi[el] - lo[el]) / 2.0 for el in comp0}
        comp, unc = cliff_lorimer(intens, kf, cov, a_used)
        if a_used is not None:
            rho = float(tables().density(tables().row(comp), rho_given)[0])
            if estimate is not None:
                t_used = rho_t / rho * 1e6
            elif rho_given is None and set(comp) & GASEOUS:
                warnings.warn(
                    "absorption correction without a density: it is estimated from the "
                    "element densities, far too low for oxides and nitrides; pass "
                    "density= (g/cm^3) for a correct correction",
                    stacklevel=3,   # quantify's caller
                )
        if a_used is not None and rho_sd > 0 and estimate is None:
            notes.append(
                f"density {rho_given:.2f} +- {rho_sd:.2f} g/cm^3: the mean and spread of the "
                "model's phase densities (no phase named); the spread is in the thickness "
                "part (give phase= or density= for the phase's own)")
        mass_thickness = rho_t if a_used is not None else None
        if estimate is not None:
            extra["mass_thickness_sigma"] = mt_sd
    else:
        if o.thickness_sigma is not None:
            raise ValueError(
                f"thickness_sigma applies to method='CL'; method={o.method!r} measures the "
                "mass thickness from the data"
            )
        if o.beam_current is None or o.live_time is None:
            raise ValueError(
                f"method={o.method!r} needs beam_current (nA) and live_time (s) for the "
                "electron dose"
            )
        correct = True if o.absorption_correction is None else bool(o.absorption_correction)
        light = correct and not final
        omega = positive_or_none("solid_angle", o.solid_angle, "give the detector's sr")
        given = o.zeta_factors if o.method == "zeta" else o.cross_sections
        if given is None and omega is None:
            name = "zeta_factors" if o.method == "zeta" else "cross_sections"
            raise ValueError(
                f"method={o.method!r}: give {name} (element -> value) or the detector "
                "solid_angle (sr) to use the model's"
            )
        if o.method == "zeta":
            factors = dict(given) if given is not None else model_used.zeta_factors(
                fit.elements, fit.families, float(omega)
            )
            dose = electron_dose(o.beam_current, o.live_time)

            def step(a: dict[str, float] | None) -> tuple[dict[str, float], float]:
                comp, _, rt, _ = zeta_factor(intens, factors, dose, None, a, aw)
                return comp, rt

        else:
            factors = dict(given) if given is not None else model_used.cross_sections(
                fit.elements, fit.families, float(omega)
            )
            if o.probe_area is None:
                raise ValueError("method='cross_section' needs probe_area (nm^2)")
            dose = electron_dose(o.beam_current, o.live_time, o.probe_area)
            weights = aw or {el: atomic_weight(el) for el in fit.elements}

            def step(a: dict[str, float] | None) -> tuple[dict[str, float], float]:
                comp, _, atoms = cross_section(intens, factors, dose, None, a)
                mass = sum(n * weights[el] * 1e-3 / sc.Avogadro for el, n in atoms.items())
                return comp, mass / (float(o.probe_area) * 1e-18)

        if correct:
            _, a_used, mass_thickness, n_abs = iterate_one(step, tables(), o.tol,
                                                           o.max_absorption_iter)
        else:
            a_used, n_abs = None, 0
            mass_thickness = step(None)[1]
        if o.method == "zeta":
            comp, unc, mass_thickness, extra["mass_thickness_sigma"] = zeta_factor(
                intens, factors, dose, cov, a_used, aw
            )
            kf_all = {el: v / (aw or {}).get(el, atomic_weight(el))
                      for el, v in factors.items()}
        else:
            comp, unc, extra["atoms"] = cross_section(intens, factors, dose, cov, a_used)
            kf_all = {el: 1.0 / v for el, v in factors.items()}
        kf = {el: kf_all[el] for el in comp}
        rho = positive_or_none("density", o.density, "give g/cm^3") or model_used.density
        if rho is not None:
            t_used = mass_thickness / rho * 1e6
    from_model = {"CL": table is None, "zeta": o.zeta_factors is None,
                  "cross_section": o.cross_sections is None}[o.method]
    k_sd = _k_factor_sd(o.k_factor_sd, incl, fit.families, model_used, table, from_model,
                        o.method, notes, bool(o.detector_window_known))
    a_eff = a_used or {}
    scaled = {el: intens[el] / a_eff.get(el, 1.0) for el in comp}
    if any(v > 0 for v in k_sd.values()) and not light:
        if neutral is not None:
            draws = k_factor_draws(np.array([k_sd.get(el, 0.0) for el in incl]), o.n_draws)
            budget["k_factors"] = neutral_k_spread(neutral, incl, kf, intens, draws, tables(),
                                                   o.tol, o.max_absorption_iter)
        else:
            budget["k_factors"] = k_factor_spread(scaled, kf, k_sd, o.n_draws)
    limits: dict[str, float | None] = {}
    if below:
        total = sum(kf[el] * scaled[el] for el in comp)
        a_below = (absorption_factors(comp, mass_thickness, model_used,
                                      {el: fit.families[el] for el in below}, toa, o.database)
                   if a_used is not None else {})
        for el in below:
            if el not in kf_all:
                limits[el] = None
                notes.append(f"{el}: below the detection limit; no k-factor for its limit")
                continue
            x = kf_all[el] * float(dsig) * fit.sigma[el] / a_below.get(el, 1.0)
            limits[el] = 100.0 * x / (total + x)
    if unc is not None:
        budget = {"counting": unc, **budget}
    if budget:
        unc = {el: math.sqrt(sum(part[el] ** 2 for part in budget.values())) for el in comp}
    result = Quantification(
        composition=comp,
        uncertainty=unc,
        lines=lines,
        k_factors=kf,
        intensities=fit.intensities,
        intensity_sigma=fit.sigma,
        fit=fit,
        method=o.method,
        absorption=a_used,
        thickness=t_used,
        density=rho,
        mass_thickness=mass_thickness,
        absorption_iterations=n_abs,
        uncertainty_budget=budget,
        k_factor_sd=k_sd,
        excluded=excluded,
        below_detection=limits,
        significance=significance,
        thickness_estimate=neutral,
        unresolved=_unresolved(fit, incl, fit_options.get("overlap_threshold", 0.5)),
        notes=notes,
        **extra,
    )
    return result


#: The values of ``quantify(thickness_from=...)``; ``None`` is ``"none"``.
THICKNESS_FROM = ("auto", "electroneutrality", "none")


def _thickness_mode(value: Any) -> str | None:
    """``thickness_from`` checked: ``"auto"``, ``"electroneutrality"`` or ``None``."""
    if value is None or value == "none":
        return None
    if value not in THICKNESS_FROM:
        raise ValueError(f"thickness_from must be one of {list(THICKNESS_FROM)} (or None), "
                         f"got {value!r}")
    return str(value)


def _subset(name: str, values: Any, elements: list[str]) -> list[str]:
    """``values`` as a list of fitted elements (clear error otherwise)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [v for v in values.replace(" ", "").split(",") if v]
    out = list(dict.fromkeys(str(v) for v in values))
    unknown = [v for v in out if v not in elements]
    if unknown:
        raise ValueError(
            f"{name}: {unknown} are not among the fitted elements {elements}; add them to "
            "the elements (their lines must be fitted to be left out) or drop them"
        )
    return out


def _k_factor_sd(
    given: float | dict[str, float] | None,
    elements: list[str],
    families: dict[str, str],
    model: EDXModel,
    table: KFactors | None,
    from_model: bool,
    method: str,
    notes: list[str],
    window_known: bool = False,
) -> dict[str, float]:
    """Relative sd of each element's factor: given, theoretical (without the window part
    when the window is known), or the table's."""
    def check(el: str, v: Any) -> float:
        r = positive_or_none(f"k_factor_sd of {el}", v, "give a relative sd, e.g. 0.1",
                              allow_zero=True)
        return float(r or 0.0)

    if isinstance(given, dict):
        unknown = [el for el in given if el not in families]
        if unknown:
            raise ValueError(f"k_factor_sd: {unknown} are not among the elements {elements}")
    elif given is not None:
        return {el: check(el, given) for el in elements}
    given = given or {}
    out: dict[str, float] = {}
    missing: list[str] = []
    for el in elements:
        if el in given:
            out[el] = check(el, given[el])
        elif from_model:
            out[el] = theoretical_k_sd(el, families[el], model, window_known)
        elif table is not None and el in table.relative_sd:
            out[el] = table.relative_sd[el]
        else:
            out[el] = 0.0
            missing.append(el)
    if missing:
        what = {"CL": "k-factor", "zeta": "zeta factor", "cross_section": "cross-section"}
        notes.append(
            f"no uncertainty given for the {what[method]}s of {missing}: the uncertainty "
            "leaves their error out (give k_factor_sd, or sigma in the k-factor file)"
        )
    return out


def _unresolved(
    fit: LineFit, elements: list[str], threshold: float
) -> list[tuple[str, str, float]]:
    """Pairs of quantified elements whose fitted intensities correlate beyond ``threshold``."""
    if fit.correlation is None:
        return []
    out = []
    for a_i, a in enumerate(fit.elements):
        for b_i in range(a_i + 1, len(fit.elements)):
            b = fit.elements[b_i]
            r = float(fit.correlation[a_i, b_i])
            if a in elements and b in elements and abs(r) > threshold:
                out.append((a, b, r))
    return out


def quantify_spectra(
    spectra: Any,
    elements: list[str] | tuple[str, ...],
    total_counts: Any = None,
    **options: Any,
) -> list[Quantification]:
    """Quantify each row of a ``(k, n_channels)`` array (e.g. NMF component spectra).

    Parameters
    ----------
    spectra : array-like
        ``(k, n_channels)``.
    elements : list of str
        Elements to quantify.
    total_counts : float or sequence of float, optional
        Counts each spectrum stands for (enables uncertainties).
    **options
        Passed to :func:`quantify`.

    Returns
    -------
    list of Quantification
    """
    arr = np.asarray(spectra, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"spectra must be 2-D (k, n_channels), got shape {arr.shape}")
    counts = np.broadcast_to(
        np.asarray(total_counts if total_counts is not None else np.nan, dtype=float),
        (arr.shape[0],),
    )
    return [
        quantify(row, elements, total_counts=None if np.isnan(n) else float(n), **options)
        for row, n in zip(arr, counts, strict=True)
    ]
