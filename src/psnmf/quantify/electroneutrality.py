"""The mass thickness of an ionic film from its own spectrum: electroneutrality.

Van Cappellen's parameterless correction (Van Cappellen, Ultramicroscopy 32 (1990) 51;
Van Cappellen & Doukhan, Ultramicroscopy 53 (1994) 343): the anion K line (O K at
0.525 keV, N K at 0.392 keV) is absorbed far more in a film than the cations' lines, so
the Cliff-Lorimer composition corrected for a film of mass thickness ``rho t`` has a net
charge ``q(rho t) = sum_i v_i C_i`` (valences ``v_i``, atomic % ``C_i``) that falls as
``rho t`` grows; the film's own ``rho t`` is the one at which the corrected composition
is neutral. It measures the absorption path the correction needs from the data, with
no thickness, density or take-off error, which is why it is preferred to a thickness
measured elsewhere (measured on the built-in oxide samples at 50, 100 and 200 nm,
noise-free, exact k-factors: every element within 0.45 at.% of the truth, against up to
3 at.% for a thickness 50 % off).

What it assumes, and what the uncertainty carries
-------------------------------------------------
* Every quantified element has a known valence (:data:`VALENCES`, the common oxidation
  states in oxides, nitrides and halides; a user's ``valences`` override them). In a
  nitride (N the main anion by charge) the metals of groups 4-6 take their nitride states
  (:data:`NITRIDE_VALENCES`: Ti +3 in TiN, not the +4 of TiO2). An element
  with more than one common state (Fe 2/3, Ti 4/3, U 4/6, Ce 3/4, ...) whose valence the
  user does not state gets the first (most common) with an sd of half the range of its
  states: the charge balance then knows less, and so does the mass thickness.
* The phase is stoichiometric to within ``charge_balance_sd`` (relative to its anion
  charge): unanalysed light elements (H of hydrous phases, Li, B, which EDX does not
  see), vacancies and valence mixtures not in the table unbalance a real phase's nominal
  charges. The default, 1 %, is an assumption of this package stated here: it is the
  size of the imbalance of careful analyses of stoichiometric minerals (the mantle
  sample's Table 1 phases, from a published analysis, are off by 0.9 % (Brg) and 1.6 %
  (CaPv) with Fe2+ and U4+); 0 states an exactly stoichiometric phase.
* The k-factors are right. With k-factors in error, the neutral ``rho t`` absorbs the
  anion's k-factor error (the composition stays balanced, the mass thickness does not
  measure the film): the k-factor part of the budget is then drawn with the mass
  thickness estimated again for every draw (:func:`neutral_rows`).

The counting sd of ``rho t`` is that of the charge, ``sqrt(v^T Cov_C v)`` (delta
method on the composition covariance), divided by ``|dq / d(rho t)|``; the valence and
stoichiometry sds add to the charge's sd in quadrature.

A thickness given as the prior: log-normal
------------------------------------------
A thickness given with an sd (and a density with its spread) is a prior on the mass
thickness, combined with the estimate in log mass thickness (:func:`log_normal_prior`,
:func:`combine_log`). A thickness and a density are known to within a factor, not to
within a number of kg/m^2: ``50 +- 50 nm`` says "somewhere from about half to about
twice", and a Gaussian in ``rho t`` would put 16 % of its weight on films of negative
thickness and call a film three times the thickness given (a density 2 x the mean of an
unnamed component's phases, the thickness 1.5 x) more than 3 sd off. The prior's median
is the thickness given times the density, its log sd the relative sds of the thickness
and the density in quadrature, ``s_p^2 = (sigma_t / t)^2 + (sigma_rho / rho)^2`` (the
Gaussian's relative sd, to first order); the estimate's log sd is its relative sd,
``s_e = sd / value`` (delta method). The mass thickness used is the inverse-variance
mean in log space, ``ln m = w ln m_e + (1 - w) ln m_p``, ``w = s_p^2 / (s_p^2 + s_e^2)``,
with log sd ``1 / sqrt(1 / s_e^2 + 1 / s_p^2)``; the two disagree by
``z = (ln m_e - ln m_p) / sqrt(s_e^2 + s_p^2)`` sd, tested against
:data:`MAX_DISAGREEMENT`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from psnmf.quantify.absorption import AbsorptionTables

__all__ = ["VALENCES", "NITRIDE_VALENCES", "common_valences", "main_anion", "valences_of",
           "neutral_rows", "neutral_thickness", "MassThicknessEstimate", "NeutralThickness",
           "log_normal_prior", "combine_log", "MAX_DISAGREEMENT"]

#: Common oxidation states in oxides, nitrides and halides (first: the one assumed when
#: the user states none). Anions negative. Elements absent (C, Si in silicides, metals in
#: alloys...) have no valence that an electroneutrality could use: the user gives one.
VALENCES: dict[str, tuple[int, ...]] = {
    # anions
    "O": (-2,), "N": (-3,), "F": (-1,), "Cl": (-1,), "Br": (-1,), "I": (-1,), "S": (-2,),
    # alkali, alkaline earth
    "Li": (1,), "Na": (1,), "K": (1,), "Rb": (1,), "Cs": (1,),
    "Be": (2,), "Mg": (2,), "Ca": (2,), "Sr": (2,), "Ba": (2,),
    # p block
    "B": (3,), "Al": (3,), "Ga": (3,), "In": (3,), "Si": (4,), "Ge": (4,), "Sn": (4, 2),
    "Pb": (2, 4), "P": (5,), "As": (5, 3), "Sb": (5, 3), "Bi": (3,), "Se": (4, 6),
    "Te": (4, 6),
    # transition metals
    "Sc": (3,), "Ti": (4, 3), "V": (5, 3, 4), "Cr": (3, 6), "Mn": (2, 3, 4), "Fe": (2, 3),
    "Co": (2, 3), "Ni": (2,), "Cu": (2, 1), "Zn": (2,), "Y": (3,), "Zr": (4,), "Nb": (5,),
    "Mo": (6, 4), "Ru": (4,), "Rh": (3,), "Pd": (2,), "Ag": (1,), "Cd": (2,), "Hf": (4,),
    "Ta": (5,), "W": (6, 4), "Re": (7, 4), "Ir": (4,), "Pt": (4, 2), "Au": (3, 1),
    # lanthanides, actinides
    "La": (3,), "Ce": (4, 3), "Pr": (3, 4), "Nd": (3,), "Sm": (3,), "Eu": (3, 2), "Gd": (3,),
    "Tb": (3, 4), "Dy": (3,), "Ho": (3,), "Er": (3,), "Tm": (3,), "Yb": (3,), "Lu": (3,),
    "Th": (4,), "U": (4, 6),
}

#: Common oxidation states in nitrides where they differ from :data:`VALENCES` (those of
#: oxides): the rock-salt nitrides of groups 4-6 (TiN, ZrN, HfN, VN, NbN, TaN, CrN) are
#: formally M3+ N3- where the oxides are TiO2, ZrO2, HfO2, V2O5, Nb2O5, Ta2O5 and Cr2O3;
#: the nitrogen-rich Zr3N4, Hf3N4 and Ta3N5 give Zr, Hf 4 and Ta 5 as second states. Used
#: for a phase whose main anion (by charge, :func:`main_anion`) is N.
NITRIDE_VALENCES: dict[str, tuple[int, ...]] = {
    "Ti": (3,), "Zr": (3, 4), "Hf": (3, 4), "V": (3,), "Nb": (3,), "Ta": (3, 5), "Cr": (3,),
}

#: Disagreement (in sd of log mass thickness, :func:`combine_log`) between the estimate
#: and the thickness given beyond which the estimate is noted as suspect, and not used by
#: ``thickness_from="auto"``.
MAX_DISAGREEMENT = 3.0

#: Largest mass thickness (kg/m^2) searched: 0.5 mg/cm^2, about 1.2 um of a 4 g/cm^3
#: oxide, far beyond the thin-film correction's validity.
MAX_MASS_THICKNESS = 5e-3


def common_valences(anion: str | None = None) -> dict[str, tuple[int, ...]]:
    """The table of common oxidation states for a phase whose main anion is ``anion``:
    :data:`VALENCES`, with :data:`NITRIDE_VALENCES` for ``"N"``."""
    return VALENCES | NITRIDE_VALENCES if anion == "N" else dict(VALENCES)


def main_anion(elements: Sequence[str], composition: Sequence[float],
               given: dict[str, float] | None = None) -> str | None:
    """The anion carrying most of the negative charge of ``composition`` (at.%, order of
    ``elements``), with the valences given or :data:`VALENCES`; None without one."""
    given = dict(given or {})
    charge = {}
    for el, c in zip(elements, composition, strict=True):
        v = given.get(el, VALENCES[el][0] if el in VALENCES else 0)
        if isinstance(v, int | float) and v < 0:   # a bad one is refused by valences_of
            charge[el] = -v * float(c)
    return max(charge, key=lambda el: charge[el]) if charge else None


def valences_of(
    elements: Sequence[str], given: dict[str, float] | None = None,
    anion: str | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Valence and its sd of each element: the user's (sd 0), else the common ones
    (:func:`common_valences` of the phase's main anion).

    Parameters
    ----------
    elements : sequence of str
        The quantified elements.
    given : dict, optional
        Element -> valence (anions negative) stated by the user; elements not in
        ``elements`` are ignored (the caller checks them against the fitted ones).
    anion : str, optional
        The phase's main anion (:func:`main_anion`): ``"N"`` takes the nitride states
        (:data:`NITRIDE_VALENCES`, Ti +3 in TiN), otherwise those of oxides.

    Returns
    -------
    valence, sd : ndarray
        Per element; the sd of an element with several common states the user did not
        state is half their range (Fe 2 or 3: 2 +- 0.5).
    assumed : list of str
        The elements whose valence was taken from several states (for the notes).

    Raises
    ------
    ValueError
        For an element with no valence (neither given nor in the table), or a given
        valence that is not a finite number.
    """
    given = dict(given or {})
    table = common_valences(anion)
    v, sd, assumed, missing = [], [], [], []
    for el in elements:
        if el in given:
            x = given[el]
            if not (isinstance(x, int | float) and math.isfinite(x)):
                raise ValueError(f"valences: {el} must be a number (e.g. 2, or -2 for O), "
                                 f"got {x!r}")
            v.append(float(x))
            sd.append(0.0)
        elif el in table:
            states = table[el]
            v.append(float(states[0]))
            sd.append((max(states) - min(states)) / 2.0)
            if len(states) > 1:
                assumed.append(el)
        else:
            missing.append(el)
    if missing:
        raise ValueError(
            f"no valence for {missing}: electroneutrality needs every quantified element's "
            "valence; give valences={...} (e.g. {'C': -4} in a carbide), or exclude the "
            "element, or do not estimate the thickness for this phase")
    return np.array(v), np.array(sd), assumed


def _compositions(k_over_a: np.ndarray, intensities: np.ndarray) -> np.ndarray:
    """Cliff-Lorimer at.% of rows of absorption-corrected k-factors (n, m)."""
    x = k_over_a * intensities
    return 100.0 * x / x.sum(axis=1, keepdims=True)


def neutral_rows(
    k_factors: np.ndarray,
    intensities: np.ndarray,
    valence: np.ndarray,
    tables: AbsorptionTables,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mass thickness of neutral corrected compositions, row by row.

    Alternates the absorption fixed point with the neutral mass thickness: with the
    absorption factors of the current compositions, the mass thickness at which the
    corrected composition's charge is 0 is found by bisection (the charge falls with the
    mass thickness, the anion's line being the most absorbed), then the compositions are
    recomputed; a row stops when its composition changes by less than ``tol`` at.%.

    Parameters
    ----------
    k_factors : ndarray (n, m) or (m,)
        Atomic-basis k-factors (a row per draw, or one for all).
    intensities : ndarray (n, m) or (m,)
        Line intensities.
    valence : ndarray (m,)
        Valences (anions negative).
    tables : AbsorptionTables
        Absorption data of the m elements (absorbers and emitters in the same order).
    tol : float
        Convergence of the compositions (at.%).
    max_iter : int
        Outer iterations before giving up.

    Returns
    -------
    compositions : ndarray (n, m)
        Neutral corrected compositions (at.%); at a bound when no neutral one exists.
    mass_thickness : ndarray (n,)
        kg/m^2; 0 where even the uncorrected composition has too much anion (the anion's
        k-factor too high, or a valence too low), :data:`MAX_MASS_THICKNESS` where no
        film thin enough for the correction is neutral.
    status : ndarray (n,) of int
        0 neutral, -1 anion in excess at 0, +1 cations in excess at the largest.
    """
    k = np.atleast_2d(np.asarray(k_factors, dtype=np.float64))
    i = np.atleast_2d(np.asarray(intensities, dtype=np.float64))
    n = max(k.shape[0], i.shape[0])
    k = np.broadcast_to(k, (n, k.shape[1]))
    i = np.broadcast_to(i, (n, i.shape[1]))
    v = np.asarray(valence, dtype=np.float64)
    comp = _compositions(k, i)
    mt = np.zeros(n)
    status = np.zeros(n, dtype=np.int64)

    def charge(mu: np.ndarray, m: np.ndarray, rows: np.ndarray) -> np.ndarray:
        a = tables.factors_of(mu, m)
        return _compositions(k[rows] / a, i[rows]) @ v

    active = np.ones(n, dtype=bool)
    for _ in range(max_iter):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        c = comp[rows]
        mu = tables.attenuation(c)  # the composition is fixed while the thickness moves
        lo = np.zeros(rows.size)
        hi = np.full(rows.size, MAX_MASS_THICKNESS)
        q_lo = charge(mu, lo, rows)
        q_hi = charge(mu, hi, rows)
        st = np.where(q_lo < 0, -1, np.where(q_hi > 0, 1, 0))
        lo, hi, q_l, q_h = _bracket_root(lambda m, mu=mu, rows=rows: charge(mu, m, rows),
                                         lo, hi, q_lo, q_hi, st == 0,
                                         ROOT_XTOL * MAX_MASS_THICKNESS)
        m = np.where(st == -1, 0.0, np.where(st == 1, MAX_MASS_THICKNESS, 0.5 * (lo + hi)))
        # the root of the linear interpolation in the last bracket
        lin = lo + (hi - lo) * q_l / np.where(q_l != q_h, q_l - q_h, 1.0)
        m = np.where(st == 0, np.clip(lin, lo, hi), m)
        new = _compositions(k[rows] / tables.factors_of(mu, m), i[rows])
        delta = np.abs(new - c).max(axis=1)
        comp[rows], mt[rows], status[rows] = new, m, st
        active[rows[delta < tol]] = False
    if active.any():
        raise RuntimeError(
            f"electroneutral thickness: {int(active.sum())} of {n} compositions did not "
            f"converge in {max_iter} iterations; the film is too thick for the thin-film "
            "correction")
    return comp, mt, status


#: Width, relative to :data:`MAX_MASS_THICKNESS`, of the bracket in which
#: :func:`neutral_rows` takes the neutral mass thickness (2**-32, 32 bisections' worth).
ROOT_XTOL = 2.0**-32


def _bracket_root(f: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
                  f_lo: np.ndarray, f_hi: np.ndarray, rows: np.ndarray, xtol: float,
                  max_iter: int = 200,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Brackets ``[lo, hi]`` of width <= ``xtol`` around the root of the decreasing ``f``
    (``f(lo) > 0 >= f(hi)``) in each of ``rows`` (a mask; the others are returned as
    given), with ``f`` at both ends, by the Illinois method (regula falsi that halves the
    value kept at an end twice in a row), vectorised over rows: superlinear where ``f`` is
    smooth, as the charge of a film is in its mass thickness, so about 8 evaluations
    instead of the 32 of bisection; a step that would leave the bracket bisects.

    Examples
    --------
    >>> f = lambda x: 2.0 - x * x
    >>> x = np.array([0.0]), np.array([2.0])
    >>> lo, hi, f_lo, f_hi = _bracket_root(f, *x, f(x[0]), f(x[1]), np.array([True]),
    ...                                    1e-12)
    >>> bool(abs(lo[0] - 2**0.5) < 1e-12 and hi[0] - lo[0] <= 1e-12)
    True
    >>> bool(f_lo[0] == f(lo)[0] and f_hi[0] == f(hi)[0])
    True
    """
    lo, hi = lo.copy(), hi.copy()
    f_lo, f_hi = f_lo.copy(), f_hi.copy()
    true_lo, true_hi = f_lo.copy(), f_hi.copy()  # f at the ends, f_lo/f_hi halved by Illinois
    todo = rows & (hi - lo > xtol)
    kept = np.zeros(lo.size, dtype=np.int64)  # the end kept last: +1 hi, -1 lo
    for _ in range(max_iter):
        if not todo.any():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            x = hi - f_hi * (hi - lo) / (f_hi - f_lo)
        x = np.where(np.isfinite(x) & (x > lo) & (x < hi), x, 0.5 * (lo + hi))
        fx = f(x)
        up = todo & (fx > 0)     # the root is above x
        down = todo & ~(fx > 0)
        lo, f_lo = np.where(up, x, lo), np.where(up, fx, f_lo)
        hi, f_hi = np.where(down, x, hi), np.where(down, fx, f_hi)
        true_lo, true_hi = np.where(up, fx, true_lo), np.where(down, fx, true_hi)
        f_hi = np.where(up & (kept == 1), 0.5 * f_hi, f_hi)
        f_lo = np.where(down & (kept == -1), 0.5 * f_lo, f_lo)
        kept = np.where(up, 1, np.where(down, -1, kept))
        todo &= (hi - lo > xtol) & (fx != 0)
    return lo, hi, true_lo, true_hi


@dataclass(frozen=True)
class MassThicknessEstimate:
    """The neutral mass thickness of one spectrum and its uncertainty.

    Attributes
    ----------
    value : float
        kg/m^2.
    sd : float
        Its sd: counting, valence and stoichiometry parts in quadrature (the attributes
        below).
    sd_counting, sd_valence, sd_stoichiometry : float
        kg/m^2 each.
    slope : float
        ``dq / d(rho t)``: charge (at.% x valence) per kg/m^2 at the estimate.
    status : int
        0 neutral; -1 anion in excess even without correction, +1 no neutral film
        within :data:`MAX_MASS_THICKNESS` (the value is then the bound and ``sd`` inf).
    """

    value: float
    sd: float
    sd_counting: float
    sd_valence: float
    sd_stoichiometry: float
    slope: float
    status: int


def estimate_one(
    k_factors: np.ndarray,
    intensities: np.ndarray,
    covariance: np.ndarray | None,
    valence: np.ndarray,
    valence_sd: np.ndarray,
    charge_balance_sd: float,
    tables: AbsorptionTables,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> MassThicknessEstimate:
    """The neutral mass thickness of one spectrum (:func:`neutral_rows`) and its sd.

    The slope ``dq/d(rho t)`` is the charge change of the converged correction between
    ``rho t (1 -+ 1 %)`` (absorption factors of the converged composition); the charge's
    counting variance is ``v^T J Cov_I J^T v`` with ``J`` the Cliff-Lorimer Jacobian at
    the converged absorption factors; valence sds weigh by the element's at.%, the
    stoichiometry sd by the anion charge.
    """
    comp, mt, status = neutral_rows(k_factors, intensities, valence, tables, tol, max_iter)
    c, m, st = comp[0], float(mt[0]), int(status[0])
    k = np.asarray(k_factors, dtype=np.float64).reshape(-1)
    i = np.asarray(intensities, dtype=np.float64).reshape(-1)
    h = max(m, 1e-6) * 0.01
    c2 = c[None, :]
    q_hi = (_compositions(k / tables.factors(c2, np.array([m + h])), i) @ valence)[0]
    q_lo = (_compositions(k / tables.factors(c2, np.array([max(m - h, 0.0)])), i)
            @ valence)[0]
    slope = float((q_hi - q_lo) / (m + h - max(m - h, 0.0)))
    if covariance is not None:
        kk = k / tables.factors(c2, np.array([m]))[0]
        t = float(kk @ i)
        jac = 100.0 * (np.diag(kk) / t - np.outer(kk * i, kk) / t**2)
        var_q_count = float(valence @ jac @ np.asarray(covariance) @ jac.T @ valence)
    else:
        var_q_count = 0.0
    var_q_val = float(np.sum((c * valence_sd) ** 2))
    anion = float(-np.sum(np.minimum(valence, 0.0) * c))
    var_q_stoich = (charge_balance_sd * anion) ** 2
    var_q = var_q_count + var_q_val + var_q_stoich
    if st != 0 or slope >= 0:
        return MassThicknessEstimate(m, math.inf, math.inf, math.inf, math.inf, slope, st)
    s = abs(slope)
    return MassThicknessEstimate(
        value=m, sd=math.sqrt(var_q) / s, sd_counting=math.sqrt(max(var_q_count, 0.0)) / s,
        sd_valence=math.sqrt(var_q_val) / s, sd_stoichiometry=math.sqrt(var_q_stoich) / s,
        slope=slope, status=st,
    )


def log_normal_prior(mass_thickness: float, thickness: float,
                     thickness_sd: float) -> tuple[float, float]:
    """The log-normal prior on the mass thickness of a thickness given with its sd.

    Parameters
    ----------
    mass_thickness : float
        The thickness given times the density (kg/m^2): the prior's median.
    thickness, thickness_sd : float
        The thickness given (nm, > 0) and its sd (nm), the density's spread included
        (:func:`psnmf.quantify.equivalent_thickness_sd`, whose relative sd is that of
        thickness and density in quadrature).

    Returns
    -------
    log_median, log_sd : float
        ``ln(mass_thickness)`` and ``thickness_sd / thickness``: a factor ``exp(log_sd)``
        either way at one sd, what a thickness known "to within 50 %" or a density known
        to within a factor states, with no weight on films of negative thickness.

    Examples
    --------
    >>> mu, s = log_normal_prior(2.5e-4, 50.0, 25.0)
    >>> round(math.exp(mu), 6), s
    (0.00025, 0.5)
    """
    return math.log(mass_thickness), float(thickness_sd) / float(thickness)


def combine_log(value: float, sd: float, log_prior: float,
                log_prior_sd: float) -> tuple[float, float, float, float]:
    """An estimate ``value +- sd`` combined with a log-normal prior, in log space.

    The estimate's log sd is its relative sd (delta method, ``sd / value``); the log mass
    thickness used is the inverse-variance mean of the two logs.

    Parameters
    ----------
    value, sd : float
        The estimate (kg/m^2, > 0) and its sd.
    log_prior, log_prior_sd : float
        The prior's log median and log sd (:func:`log_normal_prior`), sd > 0.

    Returns
    -------
    value, log_sd : float
        The mass thickness used (kg/m^2, the combined median) and its log sd.
    weight : float
        Weight of the estimate's log, ``s_p^2 / (s_p^2 + s_e^2)``.
    z : float
        Their disagreement in sd, ``(ln value - log_prior) / sqrt(s_e^2 + s_p^2)``.

    Examples
    --------
    A film twice the prior's median, estimated to 10 %, with the prior known to a factor
    ``e``: the estimate dominates, 0.7 sd apart.

    >>> m, s, w, z = combine_log(2.0, 0.2, 0.0, 1.0)
    >>> round(m, 3), round(s, 3), round(w, 3), round(z, 2)
    (1.986, 0.1, 0.99, 0.69)
    """
    if not (value > 0 and math.isfinite(sd)):
        return math.exp(log_prior), log_prior_sd, 0.0, 0.0
    s_e = sd / value
    le = math.log(value)
    w = log_prior_sd**2 / (log_prior_sd**2 + s_e**2)
    log_m = w * le + (1.0 - w) * log_prior
    log_sd = 1.0 / math.sqrt(1.0 / s_e**2 + 1.0 / log_prior_sd**2) if s_e > 0 else 0.0
    z = (le - log_prior) / math.hypot(s_e, log_prior_sd)
    return math.exp(log_m), log_sd, w, z


@dataclass(frozen=True)
class NeutralThickness:
    """The mass thickness a correction uses when it is estimated from the data.

    Attributes
    ----------
    estimate : MassThicknessEstimate
        The neutral mass thickness of the spectrum alone.
    value, sd : float
        The mass thickness used (kg/m^2) and its sd (``value * log_sd``, the log sd as a
        linear sd to first order): the estimate's, or the inverse-variance mean of the
        estimate and the thickness given with its sd (a log-normal prior) in log space,
        ``1 / s^2 = 1 / s_e^2 + 1 / s_p^2`` (see the module docstring).
    weight : float
        Weight of the estimate's log in ``ln value`` (1: the estimate alone).
    prior, prior_sd : float or None
        The mass thickness of the thickness given (the prior's median, kg/m^2) and its sd
        (``prior * prior_log_sd``, kg/m^2), when a prior.
    valence : ndarray
        The valences used (order of the quantified elements).
    fallback : float
        Mass thickness (kg/m^2) of the thickness given (0 for none): what a correction
        uses where no neutral film exists (a Monte Carlo draw of the k-factors that puts
        the anion in excess even without absorption), as :func:`quantify` does for the
        spectrum.
    log_sd : float
        The log sd of ``value`` (its relative sd): the film's interval is
        ``value * exp(-+ log_sd)`` (:meth:`bounds`).
    prior_log_sd : float or None
        The prior's log sd, ``thickness_sd / thickness`` (:func:`log_normal_prior`).
    disagreement : float or None
        The estimate and the prior apart, in sd of log mass thickness (:func:`combine_log`).
    """

    estimate: MassThicknessEstimate
    value: float
    sd: float
    weight: float
    prior: float | None
    prior_sd: float | None
    valence: np.ndarray
    fallback: float
    log_sd: float = 0.0
    prior_log_sd: float | None = None
    disagreement: float | None = None

    def bounds(self) -> tuple[float, float]:
        """The mass thicknesses one sd either side of ``value`` (kg/m^2): ``value *
        exp(-+ log_sd)``, the thickness part of the error budget (positive, asymmetric as
        a factor is)."""
        return self.value * math.exp(-self.log_sd), self.value * math.exp(self.log_sd)

    def combine(self, estimates: np.ndarray, status: np.ndarray) -> np.ndarray:
        """Mass thicknesses used for other estimates (Monte Carlo draws): combined with
        the prior with the same weights in log space, the thickness given where
        ``status`` says no neutral film exists."""
        m = np.asarray(estimates, dtype=np.float64)
        ok = (np.asarray(status) == 0) & (m > 0)
        if self.prior is not None:
            w = self.weight
            m = np.exp(w * np.log(np.where(ok, m, 1.0)) + (1.0 - w) * math.log(self.prior))
        return np.where(ok, m, self.fallback)


def neutral_thickness(
    elements: Sequence[str],
    k_factors: dict[str, float],
    intensities: dict[str, float],
    covariance: np.ndarray | None,
    valences: dict[str, float] | None,
    charge_balance_sd: float,
    tables: AbsorptionTables,
    tol: float,
    max_iter: int,
    thickness: float | None,
    thickness_sd: float,
    density: float | None,
    notes: list[str],
    auto: bool = False,
) -> NeutralThickness | None:
    """The electroneutral mass thickness of a spectrum, with a given thickness as prior.

    Parameters
    ----------
    elements : sequence of str
        The quantified elements (the order of ``tables``' absorbers and emitters).
    k_factors, intensities : dict
        Element -> atomic-basis k-factor, line intensity.
    covariance : ndarray, optional
        Counting covariance of the intensities (order of ``elements``).
    valences : dict, optional
        Valences stated by the user (:func:`valences_of`).
    charge_balance_sd : float
        Relative sd of the phase's charge balance (see the module docstring).
    tables : AbsorptionTables
        Absorption data of the elements.
    tol, max_iter
        Convergence of the loops.
    thickness, thickness_sd : float or None, float
        The thickness given (nm; the model's by default) and its sd (nm, with the
        density's spread): a log-normal prior when both are > 0 (median the thickness
        given times the density, log sd ``thickness_sd / thickness``;
        :func:`log_normal_prior`), combined with the estimate in log space
        (:func:`combine_log`). A thickness without an sd is
        replaced by the estimate (its difference noted), and used where a k-factor draw
        has no neutral film (:attr:`NeutralThickness.fallback`); with ``auto`` it is
        kept instead.
    density : float, optional
        g/cm^3 of the film (default: from the estimate's composition) for the prior.
    notes : list of str
        Appended: what was estimated, or why not (then None is returned and the
        correction uses the thickness given).
    auto : bool
        The estimate of ``quantify(thickness_from="auto")``: it refines a thickness given
        with an sd and nothing else. None (the thickness given is used, noted) where the
        thickness given has no sd, or where the estimate and the prior disagree by more
        than :data:`MAX_DISAGREEMENT` sd in log mass thickness: the charge balance then
        rests on an assumption the data contradict (a valence, the stoichiometry: Cu2O
        with the table's Cu +2, a component mixing a metal with an oxide), which would
        put a spurious film of several hundred nm on a phase and move its composition by
        10-17 at.% (measured on noise-free Cu2O and Pd + TiO2 at 50 nm). The test is as
        strict as the prior is narrow: a factor 7 is 3.9 sd from ``50 +- 25 nm`` (log sd
        0.5), 1.6 sd from ``25 +- 25 nm`` of an unnamed component (log sd 1.18).

    Returns
    -------
    NeutralThickness or None
        None when no estimate is possible: no anion or no cation among the elements, an
        element without a valence, or no neutral film: the anion in excess even without
        absorption (its k-factor too high), or no film thin enough for the correction is
        neutral (the note says which). The correction then uses the thickness given.
    """
    given = dict(valences or {})
    missing = [el for el in elements if el not in given and el not in VALENCES]
    if missing:
        notes.append(f"thickness not estimated: no valence for {missing}; give them in "
                     "valences= (e.g. {'C': -4} in a carbide)")
        return None
    k = np.array([k_factors[el] for el in elements])
    i = np.array([intensities[el] for el in elements])
    anion = main_anion(elements, _compositions(k[None, :], i)[0], given)
    table = common_valences(anion)
    v, v_sd, assumed = valences_of(elements, given, anion)
    if not (np.any(v < 0) and np.any(v > 0)):
        notes.append("thickness not estimated: electroneutrality needs an anion and a cation "
                     f"among {list(elements)} (a metal or alloy has neither)")
        return None
    est = estimate_one(k, i, covariance, v, v_sd, charge_balance_sd, tables, tol, max_iter)
    if est.status != 0:
        why = ("the anion is in excess even without absorption: its k-factor is too high "
               "(theoretical k-factors of O K can be 30 % off) or a valence too low"
               if est.status < 0 else
               "no film thin enough for the correction is neutral (a valence too high?)")
        notes.append(f"thickness not estimated: {why}; the thickness given is used")
        return None
    if assumed:
        notes.append("valences assumed " + ", ".join(
            f"{el} {table[el][0]:+d} (of {'/'.join(str(x) for x in table[el])})"
            for el in assumed) + (" in a nitride" if anion == "N" else "")
            + ": their range is in the thickness sd; give valences= to state them")
    msg = (f"mass thickness from electroneutrality {est.value:.4g} +- {est.sd:.2g} kg/m^2 "
           f"(counting {est.sd_counting:.2g}, valences {est.sd_valence:.2g}, "
           f"stoichiometry {est.sd_stoichiometry:.2g})")
    comp = _compositions(k[None, :] / tables.factors(_compositions(k[None, :], i),
                                                     np.array([est.value])), i)
    rho = float(tables.density(comp, density)[0])
    alone_log_sd = est.sd / est.value if est.value > 0 else math.inf
    if thickness is None or thickness <= 0:
        notes.append(msg)
        return NeutralThickness(est, est.value, est.sd, 1.0, None, None, v, 0.0,
                                alone_log_sd)
    prior = rho * thickness * 1e-6
    diff = (est.value - prior) / rho * 1e6
    if thickness_sd <= 0:
        if auto:
            notes.append(f"{msg}: not used, the thickness given, {thickness:.4g} nm, has no sd "
                         f"to weigh it against (off by {diff:+.3g} nm; give its sd to combine "
                         "them, or thickness_from='electroneutrality' to replace it)")
            return None
        notes.append(f"{msg}; replaces the thickness given, {thickness:.4g} nm (no sd given), "
                     f"off by {diff:+.3g} nm")
        return NeutralThickness(est, est.value, est.sd, 1.0, None, None, v, prior,
                                alone_log_sd)
    log_prior, log_prior_sd = log_normal_prior(prior, thickness, thickness_sd)
    value, log_sd, w, z = combine_log(est.value, est.sd, log_prior, log_prior_sd)
    sd = value * log_sd
    if auto and abs(z) > MAX_DISAGREEMENT:
        notes.append(f"{msg}: not used, it disagrees with the thickness given {thickness:.4g} "
                     f"+- {thickness_sd:.3g} nm by {z:.1f} sd of log mass thickness (a valence, "
                     "the stoichiometry, a component mixing phases, or the thickness given is "
                     "off); the thickness given is used")
        return None
    notes.append(f"{msg}, combined with the thickness given {thickness:.4g} +- "
                 f"{thickness_sd:.3g} nm (log-normal, weight {w:.2f} on the estimate, "
                 f"{z:+.1f} sd apart)"
                 + (f"; they disagree by {z:.1f} sd: check the thickness given"
                    if abs(z) > MAX_DISAGREEMENT else ""))
    return NeutralThickness(est, value, sd, w, prior, prior * log_prior_sd, v, prior,
                            log_sd, log_prior_sd, z)


def neutral_k_spread(
    neutral: NeutralThickness,
    elements: Sequence[str],
    k_factors: dict[str, float],
    intensities: dict[str, float],
    draws: np.ndarray,
    tables: AbsorptionTables,
    tol: float,
    max_iter: int,
) -> dict[str, float]:
    """sd (at.%) of the corrected composition over k-factor draws, the mass thickness
    estimated again for each draw (combined with the prior as the spectrum's was; the
    thickness given where a draw has no neutral film, as :func:`quantify` does).

    A k-factor error moves the neutral mass thickness, which takes up the anion's part of
    it: holding the thickness at the spectrum's estimate would count that part twice.
    """
    from psnmf.quantify.absorption import iterate_absorption

    k = np.array([k_factors[el] for el in elements]) * draws
    i = np.array([intensities[el] for el in elements])
    _, mt, status = neutral_rows(k, i, neutral.valence, tables, tol, max_iter)
    used = neutral.combine(mt, status)

    def step(rows: np.ndarray | None, a: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if rows is None or a is None:
            return _compositions(k, np.broadcast_to(i, k.shape)), used.copy()
        return _compositions(k[rows] / a, np.broadcast_to(i, (rows.size, i.size))), used[rows]

    comp, _, _, _ = iterate_absorption(step, tables, tol, max_iter)
    return {el: float(s) for el, s in zip(elements, comp.std(axis=0, ddof=1), strict=True)}
