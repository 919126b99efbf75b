"""k-factors calibrated on an internal standard: a component or region of known
composition in the same map."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from psnmf.physics import (
    EDXModel,
    normalize_composition,
)
from psnmf.quantify._common import positive_or_none
from psnmf.quantify.absorption import absorption_factors
from psnmf.quantify.kfactors import KFactors, theoretical_k_sd
from psnmf.quantify.linefit import Film, as_spectrum, fit_lines

__all__ = ["calibrate_k_factors"]


def calibrate_k_factors(
    spectrum: Any,
    composition: dict[str, float],
    elements: list[str] | tuple[str, ...] | None = None,
    model: EDXModel | None = None,
    total_counts: float | None = None,
    *,
    composition_sd: dict[str, float] | None = None,
    thickness: float | None = None,
    density: float | None = None,
    takeoff_angle: float | None = None,
    reference: str | None = None,
    **fit_options: Any,
) -> KFactors:
    """k-factors from a spectrum of known composition (an internal standard).

    The standard (a component spectrum, or the sum of a region of the map, whose
    composition is known) is fitted with :func:`fit_lines` (with a thickness, with the
    line and continuum shapes of its known film, :class:`Film`); each of its elements gets
    ``k_A = C_A A_A / I_A`` (atomic basis, ``A`` the thin-film absorption factor of its
    family in the standard when a thickness is given), scaled so that ``reference``
    has k = 1. Its relative standard deviation combines the counting error of ``I_A``
    and the stated uncertainty of ``C_A``. Elements in ``elements`` that the standard
    does not contain get the model's theoretical k-factor, scaled onto the calibrated
    ones (weighted geometric mean of the ratios over the standard's elements, weights
    1 / theoretical variance) and keeping its theoretical uncertainty
    (:func:`theoretical_k_sd`, with the error of that mean): the standard says little
    about them.

    Parameters
    ----------
    spectrum : array-like or HyperSpy signal
        The standard's spectrum, in counts (or with ``total_counts``).
    composition : dict
        Its known composition, element -> atomic % (rescaled to 100).
    elements : list of str, optional
        Elements the k-factors are wanted for (default: the standard's).
    model : EDXModel, optional
        Line templates and the theoretical k-factors of the other elements.
    total_counts : float, optional
        Counts the spectrum stands for (a normalised component spectrum).
    composition_sd : dict, optional
        Element -> standard deviation of the known at.%.
    thickness, density, takeoff_angle : float, optional
        nm, g/cm^3, degrees: the standard's absorption (default the model's thickness,
        density and take-off angle; no correction for a thin film).
    reference : str, optional
        Element with k = 1 (default Si if calibrated, else the first element).
    **fit_options
        Passed to :func:`fit_lines`.

    Returns
    -------
    KFactors
        Atomic basis, with ``relative_sd`` for every element and the line families
        used, ready for ``quantify(k_factors=...)``.

    Examples
    --------
    >>> import numpy as np
    >>> from psnmf.physics import EDXModel
    >>> model = EDXModel()
    >>> std = np.random.default_rng(0).poisson(2e6 * model.phase_spectrum({"Mg": 40, "O": 60}))
    >>> kf = calibrate_k_factors(std, {"Mg": 40, "O": 60}, ["Mg", "O", "Fe"], model=model)
    >>> round(kf.relative_sd["Mg"], 3) < 0.01, round(kf.relative_sd["Fe"], 3)
    (True, 0.114)
    """
    known = normalize_composition(composition)
    known = {el: c for el, c in known.items() if c > 0}
    if len(known) < 1:
        raise ValueError("composition: give the standard's at.% of at least one element")
    std_elements = list(known)
    wanted = list(dict.fromkeys([*(elements or []), *std_elements]))
    data, m, _ = as_spectrum(spectrum, model, std_elements)
    t = positive_or_none("thickness", thickness, "give nm (0 = thin film)", allow_zero=True)
    t = m.thickness if t is None else t
    film = None
    if t > 0:
        rho = positive_or_none("density", density, "give g/cm^3, e.g. 4.1")
        rho = m.density_of(known) if rho is None else rho
        toa = positive_or_none("takeoff_angle", takeoff_angle, "give degrees, e.g. 35")
        film = Film(known, rho * t * 1e-6, toa)
    fit = fit_lines(data, std_elements, model=m, total_counts=total_counts, film=film,
                    **fit_options)
    if fit.sigma is None:
        raise ValueError(
            "calibrate_k_factors needs counts for the k-factors' uncertainty: give an "
            "integer spectrum or total_counts (the counts the spectrum stands for)"
        )
    absorb = {el: 1.0 for el in std_elements}
    if film is not None:
        absorb = absorption_factors(known, film.mass_thickness, m, fit.families,
                                    film.takeoff_angle)
    sd_c = dict(composition_sd or {})
    unknown = [el for el in sd_c if el not in known]
    if unknown:
        raise ValueError(f"composition_sd: {unknown} are not in the standard's composition")
    raw: dict[str, float] = {}
    rel: dict[str, float] = {}
    for el in std_elements:
        i, sig = fit.intensities[el], fit.sigma[el]
        if not i > 3 * sig:
            raise ValueError(
                f"the standard's {el} intensity ({i:.4g} +- {sig:.3g} counts) is not "
                "significant: use a larger region or drop it from the standard"
            )
        raw[el] = known[el] * absorb[el] / i
        rel[el] = math.hypot(sig / i, float(sd_c.get(el, 0.0)) / known[el])
    others = [el for el in wanted if el not in known]
    if others:
        fams = {el: m.quant_family(el) for el in others}
        theo = m.k_factors([*std_elements, *others], {**fit.families, **fams})
        # the theoretical k-factors are put on the calibrated scale by the mean log
        # ratio over the standard's elements, each weighted by 1 / its theoretical
        # variance (well-modelled lines count most); that mean's own error is added
        w = np.array([theoretical_k_sd(el, fit.families[el], m) ** -2 for el in std_elements])
        logs = np.array([math.log(raw[el] / theo[el]) for el in std_elements])
        scale = math.exp(float(w @ logs / w.sum()))
        for el in others:
            raw[el] = theo[el] * scale
            rel[el] = math.hypot(theoretical_k_sd(el, fams[el], m), 1.0 / math.sqrt(w.sum()))
    else:
        fams = {}
    if reference is None:
        reference = "Si" if "Si" in known else std_elements[0]
    if reference not in raw:
        raise ValueError(f"reference {reference!r} is not among {list(raw)}")
    values = {el: raw[el] / raw[reference] for el in wanted}
    families = {**fit.families, **fams}
    return KFactors(values=values, basis="atomic",
                    lines={el: m.line_label(el, families[el]) for el in wanted},
                    relative_sd={el: rel[el] for el in wanted})
