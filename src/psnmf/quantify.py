"""Quantification of EDX spectra: line intensities by fitting, then composition.

Two steps:

1. :func:`fit_lines` -- the spectrum is fitted as a non-negative combination of
   line-family templates (one per element and family, with the line energies,
   relative weights and detector resolution of the forward model
   :class:`psnmf.physics.EDXModel`, the model the simulator uses) plus a smooth
   non-negative continuum basis (the model's Kramers continuum shape times Bernstein
   polynomials of the energy, so the model continuum is exactly representable and real
   continua are approximated smoothly). Overlapping lines (Nd L / Sm L, Y L / Zr L, ...) are
   separated by the fit. The fit maximises the Poisson likelihood (iteratively
   reweighted non-negative least squares with weights ``1 / mu``, whose fixed point
   satisfies the Poisson score equations). Families much weaker than the element's
   strongest one (relative detected intensity below ``min_family_fraction``) are
   tied to the quantification family with the model's ratio.
2. Compositions from the intensities by one of exspy's three methods
   (``EDSTEMSpectrum.quantification``), chosen with ``quantify(method=...)``:

   * ``"CL"`` -- :func:`cliff_lorimer`, ``C_A = k_A I_A / sum_B k_B I_B`` (atomic
     fractions; Cliff & Lorimer, J. Microsc. 103 (1975) 203), with k-factors from the
     same forward model (:meth:`EDXModel.k_factors`) or from a user file
     (:func:`read_k_factors`);
   * ``"zeta"`` -- :func:`zeta_factor`, ``rho t C_A = zeta_A I_A / N_e`` (Watanabe &
     Williams, J. Microsc. 221 (2006) 89) from the beam current and live time: mass
     fractions and the mass thickness;
   * ``"cross_section"`` -- :func:`cross_section`, ``N_A = I_A / (sigma_A D)`` with
     ``D`` the electron dose per area: atomic fractions and the number of atoms.

   With a specimen thickness (CL) or always (zeta, cross-section, whose mass
   thickness comes out of the data), the thin-film self-absorption is corrected by
   iteration (:func:`absorption_factors`): the intensities are divided by the
   absorption factor ``A = (1 - exp(-chi)) / chi`` of their line family in a film of
   the current composition, and the composition is recomputed until it changes by
   less than ``tol`` at.%, as exspy does (``absorption_correction=True``).

Where psnmf follows exspy and where not
---------------------------------------
The three formulas, the fixed-point absorption loop and the units (zeta factors in
kg/m^2 on the weight basis, cross-sections in barns, doses from nA and s, mass
thickness in kg/m^2) are exspy's; ``tests/test_quant_methods.py`` checks that the
same intensities give exspy's compositions. psnmf evaluates them itself instead of
calling ``exspy._misc.eds.utils`` because (i) those functions are private to exspy,
(ii) exspy's Cliff-Lorimer sets to zero every intensity below 0.1, which zeroes
normalised component spectra, (iii) it propagates no uncertainty, and (iv) exspy's
absorption correction has three choices psnmf does not share by default: the mass
thickness from the mass-weighted mean of *element* densities (a third of the real
density of an oxide, whose oxygen counts as a gas), FFAST attenuation coefficients
at the principal line's energy only, and a stop when the composition changes by
less than 0.5 wt%. psnmf takes the density given (or the model's), uses xraylib's
coefficients (those of its forward model and simulator) averaged over all lines of
the fitted family with their detected weights (the fitted intensity is the whole
family), and iterates to ``tol``. ``database="exspy"`` with ``density=None``
reproduces exspy's choices.

Uncertainties come from counting statistics: the covariance of the fitted
coefficients is the inverse Fisher information of the Poisson likelihood,
``(A^T diag(1/mu) A)^-1``, propagated to intensities and (with the correlations)
to atomic percentages by the delta method (absorption factors held at their
converged values). They are reported when the spectrum is in counts (integer values)
or when ``total_counts`` is given (the spectrum is then rescaled to that many counts).
The k-factors (and zeta factors, cross-sections) add a part of their own: theoretical
ones carry a stated relative standard deviation by family and line energy
(:data:`THEORETICAL_K_SD`, from the literature on the accuracy of calculated k-factors:
20 % for K lines below 1 keV, 10 % for 1-2 keV, 5 % above, 15-25 % for L and M lines), a
k-factor file may give its own (:func:`read_k_factors`), and calibrated ones carry the
error of their standard (:func:`calibrate_k_factors`); the part is propagated to at.% by
Monte Carlo (:func:`k_factor_spread`). A thickness uncertainty (``thickness_sigma``)
adds a part of its own, the change of the corrected composition between
``t - sigma`` and ``t + sigma`` (linearised: one solve each side, because every solve
iterates the absorption correction). Every part is kept in
:attr:`Quantification.uncertainty_budget` and ``uncertainty`` is their quadrature sum
(the parts are independent).

Detection limits, exclusions and overlaps
-----------------------------------------
An element whose fitted intensity is below ``detection_sigma`` (3) times its counting
standard deviation gets no composition; it is reported in
:attr:`Quantification.below_detection` with its detection limit in at.% (the
composition its ``3 sigma`` intensity would give). Elements in ``exclude_elements`` are
fitted (their lines are in the spectrum) but left out of the totals. A secondary family
whose free fit overlaps another element's lines (Hf M on Si K, Mo L on S K) is tied to
its element's quantification family with the model's ratio, so that the element's other
lines decide; quantified elements whose intensities stay correlated beyond
``overlap_threshold`` (Ti K / Ba L at 200 kV below 20 keV) are listed in
:attr:`Quantification.unresolved`.

Examples
--------
>>> from psnmf.physics import EDXModel
>>> model = EDXModel()
>>> spectrum = model.phase_spectrum({"Mg": 40, "Fe": 10, "O": 50})
>>> q = quantify(spectrum, ["Mg", "Fe", "O"], model=model)
>>> round(q.composition["Fe"], 3)
10.0
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.constants as sc
from scipy.optimize import nnls
from scipy.special import comb

from psnmf.physics import (
    FAMILIES,
    EDXModel,
    absorption_factor,
    atomic_number,
    atomic_weight,
    estimate_density,
    normalize_composition,
)

__all__ = [
    "KFactors",
    "LineFit",
    "Quantification",
    "METHODS",
    "read_k_factors",
    "THEORETICAL_K_SD",
    "theoretical_k_sd",
    "k_factor_spread",
    "calibrate_k_factors",
    "fit_lines",
    "cliff_lorimer",
    "zeta_factor",
    "cross_section",
    "electron_dose",
    "absorption_factors",
    "quantify",
    "quantify_spectra",
    "model_for_signal",
]

#: Quantification methods, with exspy's names.
METHODS = ("CL", "zeta", "cross_section")

#: Elements whose element density is that of a gas (the density estimate fails for them).
_GASEOUS = frozenset({"H", "He", "N", "O", "F", "Ne", "Cl", "Ar", "Kr", "Xe", "Rn"})


# --- k-factors ---------------------------------------------------------------------------------
@dataclass
class KFactors:
    """A table of Cliff-Lorimer k-factors.

    Attributes
    ----------
    values : dict
        Element -> k-factor.
    lines : dict
        Element -> line label (e.g. ``"Nd_La"``) where the file named one; the
        element is then quantified with that line's family.
    basis : {"atomic", "weight"}
        Whether ``C_A / C_B = (k_A / k_B) (I_A / I_B)`` holds for atomic or weight
        fractions (HyperSpy and most vendors use weight fractions).
    relative_sd : dict
        Element -> relative standard deviation of its k-factor (0.05 = 5 %), where the
        file or the calibration gave one; it becomes the ``"k_factors"`` part of the
        uncertainty of :func:`quantify`. Elements without one add no k-factor part
        (and :attr:`Quantification.notes` says so).
    """

    values: dict[str, float]
    lines: dict[str, str] = field(default_factory=dict)
    basis: str = "atomic"
    relative_sd: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.basis not in ("atomic", "weight"):
            raise ValueError(f"k-factor basis must be 'atomic' or 'weight', got {self.basis!r}")
        clean: dict[str, float] = {}
        for key, value in self.values.items():
            element, line = _split_key(str(key))
            try:
                k = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"k-factor of {key} is {value!r}, not a number") from None
            if not math.isfinite(k) or k <= 0:
                raise ValueError(f"k-factor of {key} must be a positive number, got {value!r}")
            clean[element] = k
            if line:
                self.lines[element] = f"{element}_{line}"
        self.values = clean
        sds: dict[str, float] = {}
        for key, value in self.relative_sd.items():
            element, _ = _split_key(str(key))
            try:
                r = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"k-factor uncertainty of {key} is {value!r}, not a number"
                ) from None
            if not math.isfinite(r) or r < 0:
                raise ValueError(
                    f"k-factor uncertainty of {key} must be a relative sd >= 0 (0.05 = 5 %), "
                    f"got {value!r}"
                )
            if element not in clean:
                raise ValueError(f"k-factor uncertainty given for {key} but no k-factor")
            sds[element] = r
        self.relative_sd = sds

    def atomic(self) -> dict[str, float]:
        """k-factors for atomic fractions (weight-basis ones divided by atomic weight)."""
        if self.basis == "atomic":
            return dict(self.values)
        return {el: k / atomic_weight(el) for el, k in self.values.items()}

    def families(self) -> dict[str, str]:
        """Element -> family implied by the line labels (``"Nd_La"`` -> ``"L"``)."""
        return {el: line.split("_", 1)[1][0].upper() for el, line in self.lines.items()}


def _split_key(key: str) -> tuple[str, str]:
    """``"Fe"`` -> ``("Fe", "")``; ``"Fe_Ka"`` -> ``("Fe", "Ka")``; validated."""
    element, _, line = key.strip().partition("_")
    atomic_number(element)
    if line and line[0].upper() not in FAMILIES:
        raise ValueError(
            f"k-factor key {key!r}: the line must start with K, L or M (e.g. {element}_Ka)"
        )
    return element, line


def read_k_factors(path: str | os.PathLike[str], basis: str | None = None) -> KFactors:
    """Read k-factors from a CSV or JSON file.

    CSV: one ``element,k`` pair per line, or ``element,k,sigma`` with the k-factor's
    standard deviation in the units of ``k`` (an element may be a line label such as
    ``Nd_La``; a header line ``element,k[,sigma]`` and ``#`` comments are allowed; a
    comment ``# basis: weight`` sets the basis). JSON: ``{"Fe": 1.2, "Nd_La": 2.9}`` or
    ``{"basis": "weight", "k_factors": {...}, "sigma": {...}}`` (``sigma`` optional, in
    the units of ``k``). The standard deviations are kept relative
    (:attr:`KFactors.relative_sd`) and enter the error budget of :func:`quantify`.

    Parameters
    ----------
    path : str or path-like
        The file.
    basis : {"atomic", "weight"}, optional
        Overrides the basis stated in the file (default atomic).

    Returns
    -------
    KFactors
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"k-factor file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    file_basis = None
    sigmas: dict[str, Any] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"k-factor file {str(path)!r} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "k_factors" in data:
            file_basis = data.get("basis")
            sigmas = dict(data.get("sigma") or {})
            data = data["k_factors"]
        if not isinstance(data, dict) or not data:
            raise ValueError(
                f'k-factor file {str(path)!r}: expected an object such as {{"Fe": 1.2}}'
            )
        values = data
    else:
        values = {}
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or not "".join(row).strip():
                continue
            first = row[0].strip()
            if first.startswith("#"):
                body = ",".join(row).lstrip("#").strip().lower()
                if body.startswith("basis:"):
                    file_basis = body.split(":", 1)[1].strip()
                continue
            if len(row) not in (2, 3):
                raise ValueError(
                    f"k-factor file {str(path)!r}, line {lineno}: expected 'element,k' or "
                    f"'element,k,sigma', got {row}"
                )
            if first.lower() in ("element", "line", "xray_line") and lineno == 1:
                continue
            values[first] = row[1].strip()
            if len(row) == 3 and row[2].strip():
                sigmas[first] = row[2].strip()
        if not values:
            raise ValueError(f"k-factor file {str(path)!r} holds no 'element,k' rows")
    relative: dict[str, float] = {}
    for key, sd in sigmas.items():
        if key not in values:
            raise ValueError(f"k-factor file {str(path)!r}: sigma given for {key} but no k")
        try:
            relative[key] = float(sd) / float(values[key])
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(
                f"k-factor file {str(path)!r}: k = {values[key]!r}, sigma = {sd!r} of {key} "
                "must be numbers, k > 0"
            ) from None
    return KFactors(values=dict(values), basis=basis or file_basis or "atomic",
                    relative_sd=relative)


# --- k-factor uncertainty ------------------------------------------------------------------------
#: Relative standard deviation (1 sigma) of a theoretical detected intensity per atom
#: (and so of a theoretical k-, zeta- or cross-section factor), by family and line
#: energy: ``(family, upper energy in keV, relative sd)``, the first row that matches.
#: Literature on the accuracy of calculated k-factors (Williams & Carter, *Transmission
#: Electron Microscopy*, 2nd ed. 2009, ch. 35: calculated k-factors good to about
#: 10-20 %, worse for light elements; Sheridan, J. Electron Microsc. Tech. 11 (1989) 41
#: and Wood et al., J. Microsc. 133 (1984) 255: calculated and measured k_ASi agree
#: within about 5-10 % for K lines of Z = 14-30, with larger errors below Si), and
#: what drives the errors: K lines below 1 keV (C, N, O, F) depend on the detector's
#: window and dead-layer transmission and on fluorescence yields that differ by 10-20 %
#: between compilations; K lines of 1-2 keV (Na, Mg, Al, Si) still on the efficiency
#: edge; L and M lines on fluorescence yields and Coster-Kronig rates uncertain by
#: 10-30 % (Campbell, At. Data Nucl. Data Tables 85 (2003) 291), soft L and M lines on
#: the window as well. Errors of different elements are taken as independent, so
#: the error of a ratio ``k_A / k_B`` is ``sqrt(sd_A^2 + sd_B^2)`` (O / Si about 22 %,
#: Mg / Si 14 %, Fe / Si 7 %).
THEORETICAL_K_SD: tuple[tuple[str, float, float], ...] = (
    ("K", 1.0, 0.20),
    ("K", 2.0, 0.10),
    ("K", math.inf, 0.05),
    ("L", 2.0, 0.25),
    ("L", math.inf, 0.15),
    ("M", math.inf, 0.25),
)


def theoretical_k_sd(element: str, family: str, model: EDXModel | None = None) -> float:
    """Relative standard deviation of a theoretical k-factor (:data:`THEORETICAL_K_SD`).

    Parameters
    ----------
    element : str
        Chemical symbol.
    family : {"K", "L", "M"}
        The line family quantified.
    model : EDXModel, optional
        Gives the family's principal line energy (default ``EDXModel()``).

    Returns
    -------
    float
        e.g. 0.20 for O K, 0.10 for Mg K, 0.05 for Fe K, 0.15 for Nd L.

    Examples
    --------
    >>> theoretical_k_sd("O", "K"), theoretical_k_sd("Fe", "K")
    (0.2, 0.05)
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown line family {family!r}: use one of {sorted(FAMILIES)}")
    energy = (model or EDXModel()).main_line(element, family).energy
    for fam, upper, sd in THEORETICAL_K_SD:
        if fam == family and energy < upper:
            return sd
    raise AssertionError("THEORETICAL_K_SD covers every family")  # pragma: no cover


def k_factor_spread(
    intensities: dict[str, float],
    k_factors: dict[str, float],
    relative_sd: dict[str, float],
    n_draws: int = 4000,
    random_state: int | None = 0,
) -> dict[str, float]:
    """Standard deviation (at.%) of a composition caused by uncertain k-factors.

    Monte Carlo: every k-factor is multiplied by an independent log-normal factor of
    mean 1 and relative sd ``relative_sd[element]``, and ``C_A = k_A I_A / sum_B k_B I_B``
    is recomputed with the intensities held fixed. Monte Carlo rather than the delta
    method because the errors are not small (20 % for O K), where the composition is
    visibly non-linear in the k-factors; 4000 draws give the sd to about 1 %.

    Parameters
    ----------
    intensities : dict
        Element -> intensity (already divided by its absorption factor, if any).
    k_factors : dict
        Element -> atomic-basis k-factor.
    relative_sd : dict
        Element -> relative sd of its k-factor (missing: 0).
    n_draws : int
        Monte Carlo draws.
    random_state : int, optional
        Seed (fixed by default, so the same input gives the same budget).

    Returns
    -------
    dict
        Element -> sd in atomic %.
    """
    elements = list(intensities)
    i = np.array([intensities[el] for el in elements], dtype=float)
    k = np.array([k_factors[el] for el in elements], dtype=float)
    sd = np.array([float(relative_sd.get(el, 0.0)) for el in elements])
    if not np.any(sd > 0):
        return {el: 0.0 for el in elements}
    if int(n_draws) < 2:
        raise ValueError(f"n_draws must be >= 2, got {n_draws!r}")
    rng = np.random.default_rng(random_state)
    sigma_log = np.sqrt(np.log1p(sd**2))
    eps = np.exp(rng.standard_normal((int(n_draws), len(elements))) * sigma_log
                 - sigma_log**2 / 2)
    x = eps * (k * i)
    c = 100.0 * x / x.sum(axis=1, keepdims=True)
    return {el: float(v) for el, v in zip(elements, c.std(axis=0, ddof=1), strict=True)}


# --- fitting -------------------------------------------------------------------------------------
@dataclass
class LineFit:
    """Result of :func:`fit_lines`.

    Attributes
    ----------
    elements : list of str
        Elements fitted.
    families : dict
        Element -> family whose intensity is reported (quantification family).
    intensities : dict
        Element -> detected counts in its quantification family (all its lines,
        including parts outside the energy range), in the units of the (possibly
        rescaled) spectrum.
    sigma : dict or None
        Element -> standard deviation of the intensity (counting statistics).
    covariance : numpy.ndarray or None
        Covariance of the intensities, in ``elements`` order.
    labels : list of str
        Labels of the fitted columns (``"Fe_K"``, ``"Fe_L"``, ``"continuum_0"``...).
    coefficients : numpy.ndarray
        Counts attributed to each column (within the energy range).
    fitted : numpy.ndarray
        Fitted spectrum.
    continuum : numpy.ndarray
        Fitted continuum.
    scale : float
        Factor applied to the input spectrum before fitting (1 unless ``total_counts``).
    deviance : float
        Poisson deviance of the fit (meaningful for counts).
    n_iter : int
        Reweighting iterations.
    model : EDXModel
        The forward model used for the templates.
    correlation : numpy.ndarray or None
        Correlation matrix of the intensities (``elements`` order) from the Fisher
        information; it does not depend on the spectrum's scale, so it is given for
        normalised spectra too.
    tied : list of str
        Secondary families (``"Hf_M"``) tied to their element's quantification family
        because, fitted freely, they overlapped another element's lines.
    overlaps : list of tuple
        ``(column, column, correlation)`` of fitted columns of different elements
        whose coefficients stay correlated beyond ``overlap_threshold`` after the
        ties: lines the fit does not separate well.
    """

    elements: list[str]
    families: dict[str, str]
    intensities: dict[str, float]
    sigma: dict[str, float] | None
    covariance: np.ndarray | None
    labels: list[str]
    coefficients: np.ndarray
    fitted: np.ndarray
    continuum: np.ndarray
    scale: float
    deviance: float
    n_iter: int
    model: EDXModel
    correlation: np.ndarray | None = None
    tied: list[str] = field(default_factory=list)
    overlaps: list[tuple[str, str, float]] = field(default_factory=list)


def _bernstein(x: np.ndarray, degree: int) -> np.ndarray:
    return np.stack(
        [comb(degree, v) * x**v * (1 - x) ** (degree - v) for v in range(degree + 1)], axis=1
    )


def _design(
    model: EDXModel,
    elements: list[str],
    families: dict[str, str],
    continuum_degree: int,
    min_family_fraction: float,
    tie: frozenset[str] = frozenset(),
) -> tuple[np.ndarray, list[str], dict[str, tuple[int, float]]]:
    """Columns (unit sum), labels, and element -> (column, intensity per unit coefficient).

    Families in ``tie`` (labels such as ``"Hf_M"``) are tied to their element's
    quantification family with the model's ratio, as the weak ones are.
    """
    cols: list[np.ndarray] = []
    labels: list[str] = []
    quant: dict[str, tuple[int, float]] = {}
    for el in elements:
        fams = model.families(el)
        qf = families[el]
        strength = {f: model.line_intensity(el, f) for f in fams}
        strongest = max(strength.values())
        own = [f for f in fams if f == qf or (strength[f] >= min_family_fraction * strongest
                                               and f"{el}_{f}" not in tie)]
        tied = [f for f in fams if f not in own]
        for fam in own:
            t = model.family_template(el, fam)
            if fam == qf:
                for other in tied:
                    t = t + model.family_template(el, other)
            total = t.sum()
            if total <= 0:
                raise ValueError(f"{el} {fam} lines fall outside the energy axis")
            if fam == qf:
                quant[el] = (len(cols), strength[qf] / total)
            cols.append(t / total)
            labels.append(f"{el}_{fam}")
    shape = model.continuum_shape()
    ax = model.axis
    x = (ax.values - ax.values[0]) / (ax.values[-1] - ax.values[0])
    for v, b in enumerate(_bernstein(x, continuum_degree).T):
        c = shape * b
        cols.append(c / c.sum())
        labels.append(f"continuum_{v}")
    return np.stack(cols, axis=1), labels, quant


def _poisson_nnls(
    a: np.ndarray, y: np.ndarray, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Non-negative Poisson maximum likelihood by reweighted NNLS (weights 1/mu).

    The first pass uses weights ``1 / (y + mean(y))`` (robust to empty channels);
    later passes ``1 / mu`` with the current model ``mu``. At the fixed point the
    Karush-Kuhn-Tucker conditions are those of the Poisson likelihood.
    """
    floor = max(1e-6 * float(y.mean()), 1e-300)
    w = 1.0 / (y + float(y.mean()))
    coef = np.zeros(a.shape[1])
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        sw = np.sqrt(w)
        new, _ = nnls(a * sw[:, None], y * sw, maxiter=50 * a.shape[1])
        change = np.abs(new - coef).max() / max(np.abs(new).max(), 1e-300)
        coef = new
        w = 1.0 / np.maximum(a @ coef, floor)
        if change < tol:
            break
    return coef, a @ coef, n_iter


def model_for_signal(signal: Any) -> EDXModel:
    """The forward model (line templates, k-factors) for a HyperSpy EDS signal.

    Its energy axis, the beam energy, the detector resolution at Mn Ka, the specimen
    thickness (HyperSpy's ``Sample.thickness``, in metres) and the take-off angle
    (exspy's ``get_take_off_angle()`` from the stage tilt and detector azimuth and
    elevation) from the signal's metadata (the simulator's own model for a simulated
    signal, thickness, densities and take-off included), the defaults of
    :class:`EDXModel` for what the metadata do not say (a thin film, 35 degrees).

    Examples
    --------
    >>> from psnmf.simulate import mantle
    >>> s = mantle("medium", seed=0, shape=(2, 2)).to_signal()
    >>> model_for_signal(s) == mantle("medium", seed=0, shape=(2, 2)).model
    True
    """
    ax = signal.axes_manager.signal_axes[0]
    md = signal.metadata
    kw: dict[str, Any] = {}
    if md.has_item("Acquisition_instrument.TEM.beam_energy"):
        kw["beam_energy"] = float(md.Acquisition_instrument.TEM.beam_energy)
    if md.has_item("Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa"):
        res = md.Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa
        kw["fwhm_mn_ka"] = float(res) / 1e3
    if md.has_item("Sample.thickness"):
        t_m = md.Sample.thickness
        if isinstance(t_m, int | float) and math.isfinite(t_m) and t_m >= 0:
            kw["thickness"] = float(t_m) * 1e9
    if md.has_item("Acquisition_instrument.TEM.Detector.EDS.elevation_angle") and hasattr(
        signal, "get_take_off_angle"
    ):
        try:
            toa = float(signal.get_take_off_angle())
        except (ValueError, TypeError, AttributeError):
            toa = float("nan")
        if 0 < toa <= 90:
            kw["takeoff_angle"] = toa
    offset, scale, size = float(ax.offset), float(ax.scale), int(ax.size)
    if md.has_item("Simulation.model"):
        return replace(EDXModel.from_dict(json.loads(md.Simulation.model)),
                       e_min=offset, e_max=offset + scale * size, channel_width=scale)
    return EDXModel.for_axis(offset, scale, size, **kw)


def _as_spectrum(
    spectrum: Any, model: EDXModel | None, elements: list[str] | tuple[str, ...] | None
) -> tuple[np.ndarray, EDXModel, list[str]]:
    """Array, model and elements from an array or a HyperSpy signal."""
    if hasattr(spectrum, "axes_manager") and hasattr(spectrum, "metadata"):
        s = spectrum
        if s.axes_manager.navigation_dimension > 0:
            raise ValueError(
                "quantify: give a single spectrum; sum a region first, e.g. "
                "s.inav[0:12, 0:12].sum(s.axes_manager.navigation_axes)"
            )
        if model is None:
            model = model_for_signal(s)
        if elements is None and s.metadata.has_item("Sample.elements"):
            elements = list(s.metadata.Sample.elements)
        data = np.asarray(s.data, dtype=float)
    else:
        data = np.asarray(spectrum, dtype=float)
        model = model or EDXModel()
    if data.ndim != 1:
        raise ValueError(
            f"quantify: expected one spectrum (1-D), got shape {data.shape}; use "
            "quantify_spectra for several"
        )
    if data.size != model.axis.size:
        raise ValueError(
            f"spectrum has {data.size} channels but the model's axis has {model.axis.size}; "
            "pass model=EDXModel.for_axis(offset, scale, size)"
        )
    if not np.all(np.isfinite(data)) or np.any(data < 0):
        raise ValueError("spectrum must be finite and non-negative (counts)")
    if data.sum() <= 0:
        raise ValueError("spectrum is empty (sums to 0)")
    if not elements:
        raise ValueError("give the elements to quantify, e.g. elements=['Mg', 'Si', 'O']")
    elements = list(dict.fromkeys(str(e) for e in elements))
    for el in elements:
        atomic_number(el)
    return data, model, elements


def fit_lines(
    spectrum: Any,
    elements: list[str] | tuple[str, ...] | None = None,
    model: EDXModel | None = None,
    families: dict[str, str] | None = None,
    total_counts: float | None = None,
    continuum_degree: int = 3,
    min_family_fraction: float = 0.02,
    max_iter: int = 100,
    tol: float = 1e-9,
    overlap_threshold: float = 0.5,
) -> LineFit:
    """Fit line-family intensities and a continuum to one spectrum.

    Parameters
    ----------
    spectrum : array-like or HyperSpy signal
        One spectrum on the model's energy axis (counts, or any non-negative scale).
        A HyperSpy EDS signal brings its axis, beam energy, resolution and elements.
    elements : list of str, optional
        Elements present (default: the signal's ``metadata.Sample.elements``).
    model : EDXModel, optional
        Forward model giving the line templates (default ``EDXModel()`` or one
        built from the signal's metadata).
    families : dict, optional
        Element -> family to report (default :meth:`EDXModel.quant_family`).
    total_counts : float, optional
        Total counts the spectrum stands for; it is rescaled to that many counts and
        uncertainties are computed. Integer-valued spectra are taken as counts.
    continuum_degree : int
        Degree of the Bernstein polynomial multiplying the continuum shape.
    min_family_fraction : float
        Families weaker than this fraction of the element's strongest family are
        tied to its quantification family.
    max_iter, tol : int, float
        Reweighting iterations and relative tolerance on the coefficients.
    overlap_threshold : float
        A secondary family fitted freely (Hf M beside Hf L) whose coefficient
        correlates with a column of another element (Si K) by more than this (in
        absolute value) is tied to its element's quantification family and the fit is
        redone: the element's other lines then say how much of the overlap is its own.
        Pairs still correlated beyond it are listed in :attr:`LineFit.overlaps`.

    Returns
    -------
    LineFit
    """
    data, model, elements = _as_spectrum(spectrum, model, elements)
    if continuum_degree < 0:
        raise ValueError(f"continuum_degree must be >= 0, got {continuum_degree}")
    families = dict(families or {})
    for el in elements:
        fam = families.get(el) or model.quant_family(el)
        if fam not in model.families(el):
            raise ValueError(f"{el}: no {fam} lines in range; choose among {model.families(el)}")
        families[el] = fam
    families = {el: families[el] for el in elements}
    if total_counts is not None:
        if not (math.isfinite(total_counts) and total_counts > 0):
            raise ValueError(f"total_counts must be > 0, got {total_counts!r}")
        scale = float(total_counts) / float(data.sum())
        is_counts = True
    else:
        scale = 1.0
        is_counts = bool(np.all(data == np.round(data)))
    y = data * scale
    if not 0 < overlap_threshold <= 1:
        raise ValueError(f"overlap_threshold must be in (0, 1], got {overlap_threshold!r}")
    tie: frozenset[str] = frozenset()
    while True:
        a, labels, quant = _design(model, elements, families, continuum_degree,
                                   min_family_fraction, tie)
        coef, mu, n_iter = _poisson_nnls(a, y, max_iter, tol)
        cov_coef = _coefficient_covariance(a, mu)
        corr_coef = _correlation(cov_coef)
        quant_cols = {col for col, _ in quant.values()}
        owner = [lab.rsplit("_", 1)[0] for lab in labels]
        n_lines = len(labels) - (continuum_degree + 1)
        more = {
            labels[i] for i in range(n_lines) if i not in quant_cols and any(
                owner[j] != owner[i] and abs(corr_coef[i, j]) > overlap_threshold
                for j in range(n_lines))
        }
        if not more - tie:
            break
        tie = tie | more
    overlaps = [
        (labels[i], labels[j], float(corr_coef[i, j]))
        for i in range(n_lines) for j in range(i + 1, n_lines)
        if owner[i] != owner[j] and abs(corr_coef[i, j]) > overlap_threshold
    ]
    n_cont = continuum_degree + 1
    continuum = a[:, -n_cont:] @ coef[-n_cont:]
    d = np.zeros((len(elements), a.shape[1]))
    for i, el in enumerate(elements):
        col, factor = quant[el]
        d[i, col] = factor
    intens = d @ coef
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(y > 0, y * np.log(y / np.maximum(mu, 1e-300)), 0.0) - (y - mu)
    deviance = float(2 * terms.sum())
    sigma = cov = None
    correlation = _correlation(d @ cov_coef @ d.T)
    if is_counts:
        cov = d @ cov_coef @ d.T
        sigma = {el: float(math.sqrt(max(cov[i, i], 0.0))) for i, el in enumerate(elements)}
    return LineFit(
        elements=elements,
        families=families,
        intensities={el: float(v) for el, v in zip(elements, intens, strict=True)},
        sigma=sigma,
        covariance=cov,
        labels=labels,
        coefficients=coef,
        fitted=mu,
        continuum=continuum,
        scale=scale,
        deviance=deviance,
        n_iter=n_iter,
        model=model,
        correlation=correlation,
        tied=sorted(tie),
        overlaps=overlaps,
    )


def _coefficient_covariance(a: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Inverse Fisher information ``(A^T diag(1/mu) A)^-1`` of Poisson coefficients."""
    pos = mu > 0
    fisher = (a[pos] / mu[pos, None]).T @ a[pos]
    return np.linalg.pinv(fisher, hermitian=True)


def _correlation(cov: np.ndarray) -> np.ndarray:
    """Correlation matrix of a covariance (0 where a variance is 0)."""
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = cov / np.outer(sd, sd)
    return np.where(np.isfinite(out), out, 0.0)


# --- calibration from an internal standard ---------------------------------------------------
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
    composition is known) is fitted with :func:`fit_lines`; each of its elements gets
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
    (True, 0.102)
    """
    known = normalize_composition(composition)
    known = {el: c for el, c in known.items() if c > 0}
    if len(known) < 1:
        raise ValueError("composition: give the standard's at.% of at least one element")
    std_elements = list(known)
    wanted = list(dict.fromkeys([*(elements or []), *std_elements]))
    fit = fit_lines(spectrum, std_elements, model=model, total_counts=total_counts,
                    **fit_options)
    if fit.sigma is None:
        raise ValueError(
            "calibrate_k_factors needs counts for the k-factors' uncertainty: give an "
            "integer spectrum or total_counts (the counts the spectrum stands for)"
        )
    m = fit.model
    t = _positive_or_none("thickness", thickness, "give nm (0 = thin film)", allow_zero=True)
    t = m.thickness if t is None else t
    absorb = {el: 1.0 for el in std_elements}
    if t > 0:
        rho = _positive_or_none("density", density, "give g/cm^3, e.g. 4.1")
        rho = m.density_of(known) if rho is None else rho
        toa = _positive_or_none("takeoff_angle", takeoff_angle, "give degrees, e.g. 35")
        absorb = absorption_factors(known, rho * t * 1e-6, m, fit.families, toa)
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


# --- compositions from intensities -----------------------------------------------------------
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


# --- absorption ----------------------------------------------------------------------------------
def _exspy_tables() -> Any:
    import exspy.material as material

    return material


def _weights_of(composition: dict[str, float], database: str) -> dict[str, float]:
    """Atomic % -> mass fractions with the atomic weights of ``database``."""
    if database == "exspy":
        db = _exspy_tables().elements
        m = {el: float(db[el]["General_properties"]["atomic_weight"]) for el in composition}
    else:
        m = {el: atomic_weight(el) for el in composition}
    mass = {el: c * m[el] for el, c in composition.items()}
    total = sum(mass.values())
    return {el: v / total for el, v in mass.items()}


def _density(composition: dict[str, float], density: float | None, database: str) -> float:
    if density is not None:
        return float(density)
    if database == "exspy":
        db = _exspy_tables().elements
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
    material = _exspy_tables()
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


def _iterate_absorption(
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


@dataclass
class Quantification:
    """Result of :func:`quantify`.

    Attributes
    ----------
    composition : dict
        Element -> atomic %.
    uncertainty : dict or None
        Element -> one standard deviation in atomic %: the quadrature sum of the parts
        in ``uncertainty_budget`` (counting statistics, and the thickness when its
        uncertainty was given).
    lines : dict
        Element -> line label of the family used, e.g. ``"Nd_La"``.
    k_factors : dict
        Element -> atomic-basis factor used: the k-factor (CL), ``zeta / M`` (zeta) or
        ``1 / sigma`` (cross-section), before absorption.
    intensities : dict
        Element -> fitted family intensity (counts, as detected: absorbed).
    intensity_sigma : dict or None
        Element -> its standard deviation.
    fit : LineFit
        The full fit.
    method : {"CL", "zeta", "cross_section"}
        The quantification method.
    absorption : dict or None
        Element -> absorption factor ``A`` its intensity was divided by (None when no
        absorption correction was made).
    thickness : float or None
        Specimen thickness in nm used (CL) or implied by the mass thickness and the
        density (zeta, cross-section, when the density is known).
    density : float or None
        Density in g/cm^3 used for the mass thickness (CL with absorption).
    mass_thickness : float or None
        ``rho t`` in kg/m^2: measured (zeta, cross-section) or ``density x thickness``
        (CL with absorption).
    mass_thickness_sigma : float or None
        Its counting standard deviation (zeta).
    atoms : dict or None
        Element -> number of atoms under the probe (cross-section).
    absorption_iterations : int
        Iterations of the absorption loop (0 without absorption).
    uncertainty_budget : dict
        Part name -> element -> standard deviation in atomic %: ``"counting"`` (the
        Poisson noise of the spectrum, when it is in counts), ``"k_factors"`` (the
        k-factor uncertainty, :func:`k_factor_spread`), ``"thickness"`` (when a
        thickness uncertainty was given).
    k_factor_sd : dict
        Element -> relative sd of its k-factor used for the ``"k_factors"`` part.
    excluded : list of str
        Elements fitted but left out of the composition (``exclude_elements``).
    below_detection : dict
        Element -> detection limit in at.% (``detection_sigma`` times the counting sd
        of its intensity, as a composition; None without a k-factor) of the elements
        whose fitted intensity is not significant; they have no composition.
    significance : dict or None
        Element -> fitted intensity / its counting sd.
    unresolved : list of tuple
        ``(element, element, correlation)`` of quantified elements whose fitted
        intensities correlate beyond the fit's ``overlap_threshold``: overlapping
        families the fit separates only partly (their split rests on the model's
        line ratios).
    notes : list of str
        What the numbers leave out (e.g. k-factors given without an uncertainty).
    """

    composition: dict[str, float]
    uncertainty: dict[str, float] | None
    lines: dict[str, str]
    k_factors: dict[str, float]
    intensities: dict[str, float]
    intensity_sigma: dict[str, float] | None
    fit: LineFit
    method: str = "CL"
    absorption: dict[str, float] | None = None
    thickness: float | None = None
    density: float | None = None
    mass_thickness: float | None = None
    mass_thickness_sigma: float | None = None
    atoms: dict[str, float] | None = None
    absorption_iterations: int = 0
    uncertainty_budget: dict[str, dict[str, float]] = field(default_factory=dict)
    k_factor_sd: dict[str, float] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    below_detection: dict[str, float | None] = field(default_factory=dict)
    significance: dict[str, float] | None = None
    unresolved: list[tuple[str, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """A plain-text table: element, line, intensity, k-factor, A, at.% (+- sigma)."""
        rows = [
            f"{'element':8s} {'line':7s} {'intensity':>12s} {'k':>8s} {'A':>6s} "
            f"{'at.%':>8s} {'+-':>6s}"
        ]
        for el, c in self.composition.items():
            err = f"{self.uncertainty[el]:6.2f}" if self.uncertainty else "     -"
            a = f"{self.absorption[el]:6.3f}" if self.absorption else "     -"
            rows.append(
                f"{el:8s} {self.lines[el]:7s} {self.intensities[el]:12.5g} "
                f"{self.k_factors[el]:8.4f} {a} {c:8.2f} {err}"
            )
        for el, limit in self.below_detection.items():
            dl = f"< {limit:.2f}" if limit is not None else "< DL"
            rows.append(f"{el:8s} {self.lines[el]:7s} {self.intensities[el]:12.5g} "
                        f"{'':8s} {'':6s} {dl:>8s} (below the detection limit)")
        for el in self.excluded:
            rows.append(f"{el:8s} {self.lines[el]:7s} {self.intensities[el]:12.5g} "
                        "excluded from the totals")
        for a, b, r in self.unresolved:
            rows.append(f"{a}/{b}: overlapping lines, intensities correlated {r:+.2f}")
        if self.mass_thickness is not None:
            rows.append(f"mass thickness {self.mass_thickness:.4g} kg/m^2"
                        + (f" (thickness {self.thickness:.4g} nm)" if self.thickness else ""))
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def _positive_or_none(name: str, value: Any, fix: str, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}; {fix}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}; {fix}")
    return v


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
    exclude_elements: list[str] | tuple[str, ...] | None = None,
    detection_sigma: float | None = 3.0,
    n_draws: int = 4000,
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
        sample's component whose phase is not named), then
        :func:`psnmf.physics.estimate_density`, which is far too low for oxides: give it).
    phase : str, optional
        Phase name to look up in the model's ``phase_densities``.
    takeoff_angle : float, optional
        Degrees (default the model's).
    thickness_sigma : float, optional
        Standard deviation of the thickness in nm (CL): adds the ``"thickness"`` part
        of the uncertainty, half the change of the composition from ``t - sigma`` to
        ``t + sigma``.
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
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if database not in ("xraylib", "exspy"):
        raise ValueError(f"database must be 'xraylib' or 'exspy', got {database!r}")
    if not (isinstance(tol, int | float) and tol > 0):
        raise ValueError(f"tol must be a positive number of at.%, got {tol!r}")
    table: KFactors | None
    if k_factors is None:
        table = None
    elif isinstance(k_factors, KFactors):
        table = k_factors
    elif isinstance(k_factors, dict):
        table = KFactors(values=dict(k_factors), basis=k_factor_basis)
    else:
        table = read_k_factors(k_factors)
    fams = dict(table.families()) if table is not None else {}
    fams.update(families or {})
    fit = fit_lines(
        spectrum, elements, model=model, families=fams, total_counts=total_counts, **fit_options
    )
    model_used = fit.model
    toa = _positive_or_none("takeoff_angle", takeoff_angle, "give degrees, e.g. 35")
    if toa is not None and toa > 90:
        raise ValueError(f"takeoff_angle must be <= 90 degrees, got {takeoff_angle!r}")
    toa = model_used.takeoff_angle if toa is None else toa
    lines = {el: model_used.line_label(el, fam) for el, fam in fit.families.items()}
    excluded = _subset("exclude_elements", exclude_elements, fit.elements)
    significance = None
    if fit.sigma is not None:
        significance = {
            el: (fit.intensities[el] / fit.sigma[el] if fit.sigma[el] > 0 else math.inf)
            for el in fit.elements
        }
    below: list[str] = []
    if detection_sigma is not None:
        dsig = _positive_or_none("detection_sigma", detection_sigma, "e.g. 3 (sigma)")
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
    if database == "exspy":
        db = _exspy_tables().elements
        aw = {el: float(db[el]["General_properties"]["atomic_weight"]) for el in fit.elements}

    def absorption_of(comp: dict[str, float], rho_t: float) -> dict[str, float]:
        return absorption_factors(comp, rho_t, model_used, fams_incl, toa, database)

    rho: float | None = None
    t_used: float | None = None
    budget: dict[str, dict[str, float]] = {}
    extra: dict[str, Any] = {}
    if method == "CL":
        if table is None:
            kf_all = model_used.k_factors(fit.elements, fit.families)
        else:
            kf_all = table.atomic()
        kf = {el: kf_all[el] for el in incl if el in kf_all}
        t = _positive_or_none(
            "thickness", thickness, "give the specimen thickness in nm (0 = thin film)",
            allow_zero=True,
        )
        t_used = model_used.thickness if t is None else t
        sigma_t = _positive_or_none(
            "thickness_sigma", thickness_sigma, "give the thickness uncertainty in nm",
            allow_zero=True,
        )
        rho_given = _positive_or_none("density", density, "give g/cm^3, e.g. 4.1")
        if rho_given is None:
            named = dict(model_used.phase_densities)
            if model_used.density is not None:
                rho_given = model_used.density
            elif phase is not None and phase in named:
                rho_given = named[phase]
            elif named:
                # a spectrum of a sample whose phases' densities are known, without
                # saying which phase it is (an NMF component): their mean
                rho_given = float(np.mean(list(named.values())))
        correct = (t_used > 0) if absorption_correction is None else bool(absorption_correction)
        if correct and t_used == 0 and absorption_correction:
            raise ValueError(
                "absorption_correction=True with Cliff-Lorimer needs thickness > 0 (nm)"
            )

        def solve(t_nm: float) -> tuple[dict[str, float], dict[str, float] | None, float, int]:
            if not correct or t_nm == 0:
                comp, _ = cliff_lorimer(intens, kf)
                return comp, None, 0.0, 0

            def step(a: dict[str, float] | None) -> tuple[dict[str, float], float]:
                comp, _ = cliff_lorimer(intens, kf, None, a)
                return comp, _density(comp, rho_given, database) * t_nm * 1e-6

            return _iterate_absorption(step, absorption_of, tol, max_absorption_iter)

        comp0, a_used, rho_t, n_abs = solve(t_used)
        comp, unc = cliff_lorimer(intens, kf, cov, a_used)
        if a_used is not None:
            rho = _density(comp, rho_given, database)
            if rho_given is None and set(comp) & _GASEOUS:
                warnings.warn(
                    "absorption correction without a density: it is estimated from the "
                    "element densities, far too low for oxides and nitrides; pass "
                    "density= (g/cm^3) for a correct correction",
                    stacklevel=2,
                )
        if sigma_t:
            lo = solve(max(t_used - sigma_t, 0.0))[0]
            hi = solve(t_used + sigma_t)[0]
            budget["thickness"] = {el: abs(hi[el] - lo[el]) / 2.0 for el in comp}
        mass_thickness = rho_t if a_used is not None else None
    else:
        if thickness_sigma is not None:
            raise ValueError(
                f"thickness_sigma applies to method='CL'; method={method!r} measures the "
                "mass thickness from the data"
            )
        if beam_current is None or live_time is None:
            raise ValueError(
                f"method={method!r} needs beam_current (nA) and live_time (s) for the "
                "electron dose"
            )
        correct = True if absorption_correction is None else bool(absorption_correction)
        omega = _positive_or_none("solid_angle", solid_angle, "give the detector's sr")
        given = zeta_factors if method == "zeta" else cross_sections
        if given is None and omega is None:
            name = "zeta_factors" if method == "zeta" else "cross_sections"
            raise ValueError(
                f"method={method!r}: give {name} (element -> value) or the detector "
                "solid_angle (sr) to use the model's"
            )
        if method == "zeta":
            factors = dict(given) if given is not None else model_used.zeta_factors(
                fit.elements, fit.families, float(omega)
            )
            dose = electron_dose(beam_current, live_time)

            def step(a: dict[str, float] | None) -> tuple[dict[str, float], float]:
                comp, _, rt, _ = zeta_factor(intens, factors, dose, None, a, aw)
                return comp, rt

        else:
            factors = dict(given) if given is not None else model_used.cross_sections(
                fit.elements, fit.families, float(omega)
            )
            if probe_area is None:
                raise ValueError("method='cross_section' needs probe_area (nm^2)")
            dose = electron_dose(beam_current, live_time, probe_area)
            weights = aw or {el: atomic_weight(el) for el in fit.elements}

            def step(a: dict[str, float] | None) -> tuple[dict[str, float], float]:
                comp, _, atoms = cross_section(intens, factors, dose, None, a)
                mass = sum(n * weights[el] * 1e-3 / sc.Avogadro for el, n in atoms.items())
                return comp, mass / (float(probe_area) * 1e-18)

        if correct:
            _, a_used, mass_thickness, n_abs = _iterate_absorption(
                step, absorption_of, tol, max_absorption_iter
            )
        else:
            a_used, n_abs = None, 0
            mass_thickness = step(None)[1]
        if method == "zeta":
            comp, unc, mass_thickness, extra["mass_thickness_sigma"] = zeta_factor(
                intens, factors, dose, cov, a_used, aw
            )
            kf_all = {el: v / (aw or {}).get(el, atomic_weight(el))
                      for el, v in factors.items()}
        else:
            comp, unc, extra["atoms"] = cross_section(intens, factors, dose, cov, a_used)
            kf_all = {el: 1.0 / v for el, v in factors.items()}
        kf = {el: kf_all[el] for el in comp}
        rho = _positive_or_none("density", density, "give g/cm^3") or model_used.density
        if rho is not None:
            t_used = mass_thickness / rho * 1e6
    from_model = {"CL": table is None, "zeta": zeta_factors is None,
                  "cross_section": cross_sections is None}[method]
    notes: list[str] = []
    k_sd = _k_factor_sd(k_factor_sd, incl, fit.families, model_used, table, from_model,
                        method, notes)
    a_eff = a_used or {}
    scaled = {el: intens[el] / a_eff.get(el, 1.0) for el in comp}
    if any(v > 0 for v in k_sd.values()):
        budget["k_factors"] = k_factor_spread(scaled, kf, k_sd, n_draws)
    limits: dict[str, float | None] = {}
    if below:
        total = sum(kf[el] * scaled[el] for el in comp)
        a_below = (absorption_factors(comp, mass_thickness, model_used,
                                      {el: fit.families[el] for el in below}, toa, database)
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
    return Quantification(
        composition=comp,
        uncertainty=unc,
        lines=lines,
        k_factors=kf,
        intensities=fit.intensities,
        intensity_sigma=fit.sigma,
        fit=fit,
        method=method,
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
        unresolved=_unresolved(fit, incl, fit_options.get("overlap_threshold", 0.5)),
        notes=notes,
        **extra,
    )


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
) -> dict[str, float]:
    """Relative sd of each element's factor: given, theoretical, or the table's."""
    def check(el: str, v: Any) -> float:
        r = _positive_or_none(f"k_factor_sd of {el}", v, "give a relative sd, e.g. 0.1",
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
            out[el] = theoretical_k_sd(el, families[el], model)
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
