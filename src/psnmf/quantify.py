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
A thickness uncertainty (``thickness_sigma``) adds a part of its own, the change of
the corrected composition between ``t - sigma`` and ``t + sigma``; every part is kept
in :attr:`Quantification.uncertainty_budget` and ``uncertainty`` is their quadrature
sum. Uncertainty of the k-factors is not included.

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
)

__all__ = [
    "KFactors",
    "LineFit",
    "Quantification",
    "METHODS",
    "read_k_factors",
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
    """

    values: dict[str, float]
    lines: dict[str, str] = field(default_factory=dict)
    basis: str = "atomic"

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

    CSV: one ``element,k`` pair per line (an element may be a line label such as
    ``Nd_La``; a header line ``element,k`` and ``#`` comments are allowed; a comment
    ``# basis: weight`` sets the basis). JSON: ``{"Fe": 1.2, "Nd_La": 2.9}`` or
    ``{"basis": "weight", "k_factors": {...}}``.

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
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"k-factor file {str(path)!r} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "k_factors" in data:
            file_basis = data.get("basis")
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
            if len(row) != 2:
                raise ValueError(
                    f"k-factor file {str(path)!r}, line {lineno}: expected 'element,k', got {row}"
                )
            if first.lower() in ("element", "line", "xray_line") and lineno == 1:
                continue
            values[first] = row[1].strip()
        if not values:
            raise ValueError(f"k-factor file {str(path)!r} holds no 'element,k' rows")
    return KFactors(values=dict(values), basis=basis or file_basis or "atomic")


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
) -> tuple[np.ndarray, list[str], dict[str, tuple[int, float]]]:
    """Columns (unit sum), labels, and element -> (column, intensity per unit coefficient)."""
    cols: list[np.ndarray] = []
    labels: list[str] = []
    quant: dict[str, tuple[int, float]] = {}
    for el in elements:
        fams = model.families(el)
        qf = families[el]
        strength = {f: model.line_intensity(el, f) for f in fams}
        strongest = max(strength.values())
        own = [f for f in fams if f == qf or strength[f] >= min_family_fraction * strongest]
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
    a, labels, quant = _design(model, elements, families, continuum_degree, min_family_fraction)
    coef, mu, n_iter = _poisson_nnls(a, y, max_iter, tol)
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
    if is_counts:
        pos = mu > 0
        fisher = (a[pos] / mu[pos, None]).T @ a[pos]
        cov_coef = np.linalg.pinv(fisher, hermitian=True)
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
    )


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
        Part name (``"counting"``, ``"thickness"``) -> element -> standard deviation
        in atomic %.
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
    intens, cov = fit.intensities, fit.covariance
    aw = None
    if database == "exspy":
        db = _exspy_tables().elements
        aw = {el: float(db[el]["General_properties"]["atomic_weight"]) for el in fit.elements}

    def absorption_of(comp: dict[str, float], rho_t: float) -> dict[str, float]:
        return absorption_factors(comp, rho_t, model_used, fit.families, toa, database)

    rho: float | None = None
    t_used: float | None = None
    budget: dict[str, dict[str, float]] = {}
    extra: dict[str, Any] = {}
    if method == "CL":
        if table is None:
            kf = model_used.k_factors(fit.elements, fit.families)
        else:
            kf = table.atomic()
        kf = {el: kf[el] for el in fit.elements if el in kf}
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
            kf = {el: factors[el] / (aw or {}).get(el, atomic_weight(el)) for el in comp}
        else:
            comp, unc, extra["atoms"] = cross_section(intens, factors, dose, cov, a_used)
            kf = {el: 1.0 / factors[el] for el in comp}
        rho = _positive_or_none("density", density, "give g/cm^3") or model_used.density
        if rho is not None:
            t_used = mass_thickness / rho * 1e6
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
        **extra,
    )


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
