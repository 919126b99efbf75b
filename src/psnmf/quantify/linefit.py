"""Line intensities by fitting: line-family templates of the forward model and a smooth
continuum, Poisson maximum likelihood, counting covariance, overlap ties and flags.

In a film of finite thickness every line and every continuum channel leaves the specimen
attenuated by its own factor ``A(E)``: the lines of one family are absorbed unequally
when an absorption edge of the film lies between them (Ti Ll at 0.395 keV below the N K
edge at 0.410 keV, Ti La at 0.452 keV above it, in TiN), and the continuum drops at
each edge (C K at 0.284 keV right under the C K line). Templates of the unabsorbed
(thin-film) shapes then misplace counts between overlapping families (N K and Ti L:
N K 6 % high in a 50 nm TiN film) or between a line and the continuum (C K 5 % low
in 80 nm M23C6). With a :class:`Film` the templates are those of the film
(:meth:`EDXModel.absorbed_family_template`, :meth:`EDXModel.absorbed_continuum_shape`),
as the spectrum was emitted.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import nnls
from scipy.special import comb

from psnmf.physics import (
    EDXModel,
    absorption_factor,
    atomic_number,
    mass_attenuation,
    mass_fractions,
)

__all__ = ["Film", "LineFit", "as_spectrum", "fit_lines", "model_for_signal"]


@dataclass(frozen=True)
class Film:
    """The specimen film a spectrum was emitted in: its lines and continuum are fitted
    with the shapes they have after self-absorption in it.

    Attributes
    ----------
    composition : dict of str to float
        The film's composition, element -> atomic % (the absorbers).
    mass_thickness : float
        ``rho t`` in kg/m^2 (the unit of :attr:`Quantification.mass_thickness`); 0 is a
        thin film (the unabsorbed templates).
    takeoff_angle : float, optional
        Degrees; default the model's.
    """

    composition: dict[str, float]
    mass_thickness: float
    takeoff_angle: float | None = None

    def __post_init__(self) -> None:
        comp = {str(el): float(c) for el, c in dict(self.composition).items()}
        if not comp or any(not (math.isfinite(c) and c >= 0) for c in comp.values()) or \
                sum(comp.values()) <= 0:
            raise ValueError(f"Film: composition must be non-negative at.% summing to > 0, "
                             f"got {self.composition!r}")
        for el in comp:
            atomic_number(el)
        object.__setattr__(self, "composition", comp)
        mt = self.mass_thickness
        if not (isinstance(mt, int | float) and math.isfinite(mt) and mt >= 0):
            raise ValueError(f"Film: mass_thickness must be finite and >= 0 kg/m^2, got {mt!r}")
        object.__setattr__(self, "mass_thickness", float(mt))
        toa = self.takeoff_angle
        if toa is not None:
            if not (isinstance(toa, int | float) and math.isfinite(toa) and 0 < toa <= 90):
                raise ValueError(f"Film: takeoff_angle must be in (0, 90] degrees, got {toa!r}")
            object.__setattr__(self, "takeoff_angle", float(toa))

    def model(self, model: EDXModel) -> EDXModel:
        """``model`` at the film's take-off angle (the one its absorption is computed at)."""
        if self.takeoff_angle is None or self.takeoff_angle == model.takeoff_angle:
            return model
        return replace(model, takeoff_angle=self.takeoff_angle)

    @property
    def mass_thickness_gcm2(self) -> float:
        """``rho t`` in g/cm^2 (the unit of :class:`EDXModel`'s absorption)."""
        return self.mass_thickness * 0.1


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
    film : Film or None
        The film whose absorption shaped the templates (None: thin-film templates).
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
    film: Film | None = None


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
    film: Film | None = None,
) -> tuple[np.ndarray, list[str], dict[str, tuple[int, float]]]:
    """Columns (unit sum), labels, and element -> (column, intensity per unit coefficient).

    Families in ``tie`` (labels such as ``"Hf_M"``) are tied to their element's
    quantification family with the model's ratio, as the weak ones are. With a
    ``film`` every line and the continuum carry their absorption in it, and the
    intensity per unit coefficient is that of the absorbed family (the detected counts,
    which the absorption correction divides by the family's factor). Which families are
    fitted freely is decided on the thin-film strengths, whatever the film.
    """
    fmodel = model if film is None else film.model(model)
    rt = 0.0 if film is None else film.mass_thickness_gcm2

    def template(el: str, fam: str) -> np.ndarray:
        if film is None or rt == 0:
            return model.family_template(el, fam)
        return fmodel.absorbed_family_template(el, fam, film.composition, rt)

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
            t = template(el, fam)
            if fam == qf:
                for other in tied:
                    t = t + template(el, other)
            total = t.sum()
            if total <= 0:
                raise ValueError(f"{el} {fam} lines fall outside the energy axis")
            if fam == qf:
                detected = strength[qf]
                if film is not None and rt > 0:
                    detected *= fmodel.family_absorption(el, qf, film.composition, rt)
                quant[el] = (len(cols), detected / total)
            cols.append(t / total)
            labels.append(f"{el}_{fam}")
    shape = model.continuum_shape()
    if film is not None and rt > 0:
        shape = shape * _channel_absorption(fmodel, film.composition, rt)
    ax = model.axis
    x = (ax.values - ax.values[0]) / (ax.values[-1] - ax.values[0])
    for v, b in enumerate(_bernstein(x, continuum_degree).T):
        c = shape * b
        cols.append(c / c.sum())
        labels.append(f"continuum_{v}")
    return np.stack(cols, axis=1), labels, quant


@lru_cache(maxsize=256)
def _channel_attenuation(model: EDXModel, element: str) -> np.ndarray:
    """``(mu/rho)`` of a pure element at every channel centre (cm^2/g), tabulated once."""
    out = np.asarray(mass_attenuation({element: 100.0}, model.energy), dtype=float)
    out.flags.writeable = False
    return out


def _channel_absorption(model: EDXModel, composition: dict[str, float],
                        mass_thickness: float) -> np.ndarray:
    """Absorption factor at every channel centre in a film (mass thickness in g/cm^2):
    :meth:`EDXModel.absorbed_continuum_shape`'s factor, from the elements' tabulated
    coefficients (the mass-fraction mean, as :func:`psnmf.physics.mass_attenuation`)."""
    mu = sum(w * _channel_attenuation(model, el)
             for el, w in mass_fractions(composition).items())
    chi = np.asarray(mu) * mass_thickness / math.sin(math.radians(model.takeoff_angle))
    return np.asarray(absorption_factor(chi))


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


def as_spectrum(
    spectrum: Any, model: EDXModel | None, elements: list[str] | tuple[str, ...] | None
) -> tuple[np.ndarray, EDXModel, list[str]]:
    """Array, model and elements of one spectrum given as an array or a HyperSpy signal
    (the model and the elements from the signal's axis and metadata when not given)."""
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
    film: Film | None = None,
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
    film : Film, optional
        The film the spectrum was emitted in: each line and the continuum are fitted
        with their shapes after self-absorption in it (the relative heights of a
        family's lines change across an absorption edge of the film, the continuum
        drops at each edge), and the intensities are the detected (absorbed) ones.
        Default: thin-film templates. :func:`quantify` finds the film itself.

    Returns
    -------
    LineFit
    """
    data, model, elements = as_spectrum(spectrum, model, elements)
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
                                   min_family_fraction, tie, film)
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
        film=film,
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
