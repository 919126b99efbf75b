"""Quantification of EDX spectra: line intensities by fitting, then Cliff-Lorimer.

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
2. :func:`cliff_lorimer` -- compositions ``C_A = k_A I_A / sum_B k_B I_B`` (atomic
   fractions; Cliff & Lorimer, J. Microsc. 103 (1975) 203), with k-factors from the
   same forward model (:meth:`EDXModel.k_factors`) or from a user file
   (:func:`read_k_factors`).

Uncertainties come from counting statistics: the covariance of the fitted
coefficients is the inverse Fisher information of the Poisson likelihood,
``(A^T diag(1/mu) A)^-1``, propagated to intensities and (with the correlations)
to atomic percentages by the delta method. They are reported when the spectrum
is in counts (integer values) or when ``total_counts`` is given (the spectrum is
then rescaled to that many counts). Uncertainty of the k-factors is not included.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls
from scipy.special import comb

from psnmf.physics import FAMILIES, EDXModel, atomic_number, atomic_weight

__all__ = [
    "KFactors",
    "LineFit",
    "Quantification",
    "read_k_factors",
    "fit_lines",
    "cliff_lorimer",
    "quantify",
    "quantify_spectra",
    "model_for_signal",
]


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

    Its energy axis, the beam energy and the detector resolution at Mn Ka from the
    signal's metadata (the simulator's own model for a simulated signal), the defaults of
    :class:`EDXModel` for what the metadata do not say.

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


# --- Cliff-Lorimer -------------------------------------------------------------------------------
def cliff_lorimer(
    intensities: dict[str, float],
    k_factors: dict[str, float],
    covariance: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[str, float] | None]:
    """Atomic percentages from line intensities and atomic-basis k-factors.

    ``C_A = 100 k_A I_A / sum_B k_B I_B`` (Cliff & Lorimer 1975).

    Parameters
    ----------
    intensities : dict
        Element -> intensity.
    k_factors : dict
        Element -> k-factor (atomic basis); every element needs one.
    covariance : numpy.ndarray, optional
        Covariance of the intensities (order of ``intensities``), propagated by the
        delta method.

    Returns
    -------
    composition : dict
        Element -> atomic %.
    uncertainty : dict or None
        Element -> standard deviation in atomic %.
    """
    elements = list(intensities)
    missing = [el for el in elements if el not in k_factors]
    if missing:
        raise ValueError(
            f"no k-factor for {missing}; add them to the k-factor file or omit k_factors "
            "to use the model's"
        )
    i = np.array([intensities[el] for el in elements], dtype=float)
    k = np.array([k_factors[el] for el in elements], dtype=float)
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


@dataclass
class Quantification:
    """Result of :func:`quantify`.

    Attributes
    ----------
    composition : dict
        Element -> atomic %.
    uncertainty : dict or None
        Element -> one standard deviation in atomic % (counting statistics).
    lines : dict
        Element -> line label of the family used, e.g. ``"Nd_La"``.
    k_factors : dict
        Element -> atomic-basis k-factor used.
    intensities : dict
        Element -> fitted family intensity (counts).
    intensity_sigma : dict or None
        Element -> its standard deviation.
    fit : LineFit
        The full fit.
    """

    composition: dict[str, float]
    uncertainty: dict[str, float] | None
    lines: dict[str, str]
    k_factors: dict[str, float]
    intensities: dict[str, float]
    intensity_sigma: dict[str, float] | None
    fit: LineFit

    def table(self) -> str:
        """A plain-text table: element, line, intensity, k-factor, at.% (+- sigma)."""
        rows = [f"{'element':8s} {'line':7s} {'intensity':>12s} {'k':>8s} {'at.%':>8s} {'+-':>6s}"]
        for el, c in self.composition.items():
            err = f"{self.uncertainty[el]:6.2f}" if self.uncertainty else "     -"
            rows.append(
                f"{el:8s} {self.lines[el]:7s} {self.intensities[el]:12.5g} "
                f"{self.k_factors[el]:8.4f} {c:8.2f} {err}"
            )
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()


def quantify(
    spectrum: Any,
    elements: list[str] | tuple[str, ...] | None = None,
    model: EDXModel | None = None,
    k_factors: dict[str, float] | KFactors | str | os.PathLike[str] | None = None,
    k_factor_basis: str = "atomic",
    families: dict[str, str] | None = None,
    total_counts: float | None = None,
    **fit_options: Any,
) -> Quantification:
    """Composition (atomic %) of one spectrum by line fitting and Cliff-Lorimer.

    Parameters
    ----------
    spectrum : array-like or HyperSpy signal
        One spectrum (see :func:`fit_lines`).
    elements : list of str, optional
        Elements to quantify (default: the signal's elements).
    model : EDXModel, optional
        Forward model for the line templates and default k-factors.
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
    **fit_options
        Passed to :func:`fit_lines` (``continuum_degree``, ``min_family_fraction``...).

    Returns
    -------
    Quantification
    """
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
    if table is None:
        kf = model_used.k_factors(fit.elements, fit.families)
    else:
        kf = table.atomic()
    kf = {el: kf[el] for el in fit.elements if el in kf}
    comp, unc = cliff_lorimer(fit.intensities, kf, fit.covariance)
    lines = {el: model_used.line_label(el, fam) for el, fam in fit.families.items()}
    return Quantification(
        composition=comp,
        uncertainty=unc,
        lines=lines,
        k_factors=kf,
        intensities=fit.intensities,
        intensity_sigma=fit.sigma,
        fit=fit,
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
