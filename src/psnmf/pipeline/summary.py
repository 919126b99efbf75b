"""The typed summary of a run: what ``summary.json`` holds and the report is made from.

:class:`Summary` gathers one dataclass per part (input, parameters, held-out deviances,
fit, smoothing, compositions, the k/b search, warnings, timings, files); its
:meth:`Summary.to_dict` is the one conversion to JSON-ready data.
"""

from __future__ import annotations

import csv
import importlib.metadata as md
import io
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psnmf.io import jsonable
from psnmf.selection import ModelChoice

#: How the held-out deviances are computed, as recorded in ``summary.json``.
HELDOUT_METHOD = (
    "binomial count split (fraction 0.5); raw: X1 predicts X2; PCA and PSNMF: fitted on X1 "
    "with the same k and b (PSNMF: the model search's fit of X1, at its iteration caps, "
    "with the final fit's TV weight); Poisson deviance of X2 per count, predicted means "
    "floored; scored over the pixels of `window` (the central window of a larger map)"
)


@dataclass
class InputInfo:
    """The data unmixed: source, energy range, shape, counts, elements and mapped lines."""

    source: dict[str, Any]
    energy_range_keV: list[float]
    energy_range_reason: str
    full_energy_range_keV: list[float]
    beam_energy_keV: float | None
    signal_type: str
    shape: list[int]
    total_counts: float
    counts_per_pixel: float
    elements: list[str]
    xray_lines_mapped: list[str]


@dataclass
class Parameters:
    """The settings of the run; with the input's file they reproduce it."""

    n_components: int
    n_components_choice: str
    bin_factor: int
    bin_factor_choice: str
    seed: int | None
    init: str
    stage2_spectra: str
    max_iter: int
    max_iter_full: int
    tol: float
    estimator: str
    vertex_moved: list[bool] | None
    #: Per component, whether its vertex was extrapolated by the element lines
    #: (``PSNMF(never_pure='lines')``, :func:`psnmf.engine.two_stage.extrapolate_never_pure`);
    #: None where the extrapolation did not run (``never_pure='keep'``, no elements, or
    #: ``vertex=False``).
    vertex_lines: list[bool] | None
    #: The elements whose lines bounded that extrapolation (None where it did not run).
    line_elements: list[str] | None
    smoothing: float | str | None
    n_boot: int
    integration_windows_fwhm: float
    pca: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return jsonable(dict(self.__dict__))


@dataclass
class HeldoutDeviance:
    """Held-out Poisson deviance per count of raw, PCA and PSNMF (lower is better).

    Attributes
    ----------
    raw : float
        ``X1`` as the prediction of ``X2`` (no denoising).
    pca, psnmf : float or None
        PCA and PSNMF fitted on ``X1`` (same ``k`` and ``b``) predicting ``X2``; ``pca`` is
        ``None`` when the PCA of ``X1`` failed.
    floor, fraction, seed : the deviance floor and the count split.
    heldout_counts : float
        Counts of ``X2`` in the pixels scored.
    window : (int, int)
        The central window scored (the whole image unless it holds more than
        :data:`psnmf.pipeline.steps.HELDOUT_PIXELS` pixels).
    """

    raw: float
    pca: float | None
    psnmf: float
    floor: float
    fraction: float
    seed: int | None
    heldout_counts: float
    window: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the method in words."""
        return jsonable({**self.__dict__, "method": HELDOUT_METHOD})


@dataclass
class FitInfo:
    """Iterations, convergence, loss histories and mean abundances of the final fit."""

    n_iter: dict[str, int]
    converged: dict[str, bool]
    loss: dict[str, np.ndarray]
    component_pixel_fraction: np.ndarray


@dataclass
class SmoothingInfo:
    """The total-variation weight of the maps (the model's ``smoothing_``).

    ``lam`` in counts, ``relative`` per count per pixel, ``penalty`` ``None`` when the maps
    are per-pixel; ``grid`` and ``deviance`` the evidence when the weight was chosen,
    ``n_iter`` the iterations of the smoothing solve when it ran; ``extra`` any other
    entries of ``smoothing_`` (such as a note why no weight was chosen).
    """

    lam: float
    relative: float
    penalty: str | None
    grid: list[float] | None = None
    deviance: list[float] | None = None
    n_iter: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _KNOWN = ("lam", "relative", "penalty", "grid", "deviance", "n_iter")

    @classmethod
    def from_model(cls, smoothing: dict[str, Any]) -> SmoothingInfo:
        """From a fitted model's ``smoothing_`` dict."""
        return cls(**{k: smoothing.get(k) for k in cls._KNOWN},
                   extra={k: v for k, v in smoothing.items() if k not in cls._KNOWN})

    @property
    def chosen(self) -> bool:
        """Whether the weight was chosen by held-out deviance."""
        return bool(self.deviance)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the evidence and ``n_iter`` only when present)."""
        out = {"lam": self.lam, "relative": self.relative, "grid": self.grid,
               "deviance": self.deviance, "penalty": self.penalty, "n_iter": self.n_iter}
        out = {k: v for k, v in out.items()
               if v is not None or k not in ("grid", "deviance", "n_iter")}
        return jsonable({**out, **self.extra})


@dataclass
class Composition:
    """Atomic % of every component with its error budget, ± and intervals.

    ``rows``: one dict per (component, element) from
    :meth:`psnmf.uncertainty.BootstrapResult.composition_rows` (status, at.%, total sd,
    interval, the budget's parts, detection limit, overlapping elements).
    ``options``: the quantification settings (method, k-factor source, thickness and
    its uncertainty, excluded elements, detection threshold); ``notes``: what the
    numbers leave out or flag (overlaps, k-factors without an uncertainty).
    ``thickness``: per component (``'#0'``, ...) the film its absorption correction
    used, :func:`thickness_record` (with ``thickness_from="electroneutrality"`` each
    component has its own, measured from its spectrum).
    """

    rows: list[dict[str, Any]]
    level: float
    elements: list[str]
    n_boot: int
    method: str
    note: str
    parts: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    thickness: dict[str, dict[str, Any]] = field(default_factory=dict)

    #: Columns of :meth:`csv_text`.
    CSV_COLUMNS = ("component", "element", "status", "at_percent", "sd", "low", "high",
                   "counting", "nmf", "bootstrap", "k_factors", "thickness",
                   "detection_limit", "overlaps", "debiased")

    def for_component(self, name: str) -> list[dict[str, Any]]:
        """The rows of one component (``'#0'``, ...)."""
        return [r for r in self.rows if r["component"] == name]

    @property
    def components(self) -> list[str]:
        """Component names in order."""
        return list(dict.fromkeys(r["component"] for r in self.rows))

    @staticmethod
    def cell(row: dict[str, Any]) -> tuple[str, str]:
        """``("18.63 ± 2.70", "[13.3, 23.9]")``; ``("< 0.04", "")`` below the detection
        limit; ``("excluded", "")``."""
        if row["status"] == "excluded":
            return "excluded", ""
        if row["status"] == "below_detection_limit":
            dl = row["detection_limit"]
            return ("< DL" if dl is None else f"< {dl:.2f}"), ""
        return (f"{row['at_percent']:.2f} ± {row['sd']:.2f}",
                f"[{row['low']:.2f}, {row['high']:.2f}]")

    @property
    def estimated(self) -> bool:
        """Whether any component's film was estimated from its spectrum."""
        return any(t.get("source") == "electroneutrality" for t in self.thickness.values())

    def thickness_cell(self, name: str) -> str:
        """The film component ``name`` was corrected for: ``"92 ± 14 nm (estimated, weight
        0.92 against the given)"`` (the estimate's weight in the thickness used),
        ``"100 nm (given)"``, ``"-"`` without a correction."""
        t = self.thickness.get(name) or {}
        if t.get("thickness_nm") is None or not t.get("mass_thickness_kg_m2"):
            return "-"
        sd = t.get("thickness_sd_nm")
        text = f"{t['thickness_nm']:.0f}" + (f" ± {sd:.0f}" if sd else "") + " nm"
        if t.get("source") != "electroneutrality":
            return text + " (given)"
        w = t["weight"]
        return text + (" (estimated)" if w == 1.0 else
                       f" (estimated, weight {w:.2f} against the given)")

    def to_text(self, indent: str = "  ") -> str:
        """The phase x element matrix: at.% ± total sd, the interval beneath; the film
        each component was corrected for when any was estimated."""
        width = max(15, *(len(self.cell(r)[1]) for r in self.rows)) + 1
        lines = [f"{indent}composition, at.% ± sd and {round(100 * self.level)}% interval "
                 f"(error budget: {', '.join(self.parts)})",
                 f"{indent}{'':6s}" + "".join(f"{el:>{width}s}" for el in self.elements)]
        for name in self.components:
            rows = {r["element"]: r for r in self.for_component(name)}
            cells = [self.cell(rows[el]) for el in self.elements]
            lines.append(f"{indent}{name:6s}" + "".join(f"{c[0]:>{width}s}" for c in cells))
            lines.append(f"{indent}{'':6s}" + "".join(f"{c[1]:>{width}s}" for c in cells))
        if self.estimated:
            lines.append(f"{indent}film (electroneutrality): " + ", ".join(
                f"{name} {self.thickness_cell(name)}" for name in self.components))
        lines += [f"{indent}note: {n}" for n in self.notes]
        return "\n".join(lines)

    def csv_text(self) -> str:
        """One line per component and element, with every part of the error budget."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.CSV_COLUMNS)
        for r in self.rows:
            budget = r.get("budget") or {}
            values = {**r, **{p: budget.get(p) for p in
                              ("counting", "nmf", "bootstrap", "k_factors", "thickness")},
                      "overlaps": " ".join(f"{e}:{c:+.2f}"
                                           for e, c in (r.get("overlaps") or {}).items())}
            writer.writerow(["" if values.get(c) is None else
                             (f"{values[c]:.6g}" if isinstance(values[c], float) else values[c])
                             for c in self.CSV_COLUMNS])
        return out.getvalue()

    def write_csv(self, path: Path) -> Path:
        """:meth:`csv_text` written atomically to ``path``."""
        from psnmf.io import atomic_path

        with atomic_path(path) as tmp:
            Path(tmp).write_text(self.csv_text(), encoding="utf-8")
        return Path(path)


def thickness_record(q: Any) -> dict[str, Any]:
    """The film a component's absorption correction used, JSON-ready.

    Parameters
    ----------
    q : psnmf.quantify.Quantification
        The component's quantification.

    Returns
    -------
    dict
        ``thickness_nm`` and ``thickness_sd_nm`` (None without an sd), ``density_g_cm3``,
        ``mass_thickness_kg_m2`` and its sd (``rho t``, what the correction uses; None
        without a correction), ``source`` (``"electroneutrality"`` or ``"given"``), and
        when estimated (:class:`psnmf.quantify.electroneutrality.NeutralThickness`):
        ``estimate`` (the spectrum's own neutral mass thickness, kg/m^2: ``value``,
        ``sd`` and its ``sd_counting``, ``sd_valence``, ``sd_stoichiometry`` parts,
        ``slope`` of the charge per kg/m^2), ``weight`` of the estimate in the value used
        (1: the estimate alone; below 1: combined with the thickness given as a prior),
        ``prior_kg_m2`` and ``prior_sd_kg_m2`` (None without a prior) and the
        ``valences`` balanced.
    """
    mt = q.mass_thickness if q.absorption is not None else None
    mt_sd = q.mass_thickness_sigma if mt is not None else None
    rho = q.density
    out: dict[str, Any] = {
        "thickness_nm": q.thickness, "thickness_sd_nm": (
            mt_sd / rho * 1e6 if mt_sd is not None and rho else None),
        "density_g_cm3": rho, "mass_thickness_kg_m2": mt, "mass_thickness_sd_kg_m2": mt_sd,
        "source": "given",
    }
    neutral = getattr(q, "thickness_estimate", None)
    if neutral is None:
        return out
    e = neutral.estimate
    out.update(
        source="electroneutrality",
        estimate={"value": e.value, "sd": e.sd, "sd_counting": e.sd_counting,
                  "sd_valence": e.sd_valence, "sd_stoichiometry": e.sd_stoichiometry,
                  "slope": e.slope},
        weight=neutral.weight, prior_kg_m2=neutral.prior, prior_sd_kg_m2=neutral.prior_sd,
        valences={el: float(v) for el, v in zip(q.composition, neutral.valence,
                                                strict=True)},
    )
    return out


@dataclass
class Summary:
    """Everything ``summary.json`` holds, typed."""

    psnmf_version: str
    versions: dict[str, str]
    input: InputInfo
    parameters: Parameters
    heldout_deviance: HeldoutDeviance
    fit: FitInfo
    smoothing: SmoothingInfo
    composition: Composition | None
    pca_explained_variance_ratio: np.ndarray
    selection: ModelChoice | None
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] | None = None
    residuals: dict[str, Any] | None = None  #: :meth:`psnmf.residuals.Residuals.to_dict`
    #: The user priors (:mod:`psnmf.pipeline.priors`) and excluded elements; {} for none.
    priors: dict[str, Any] = field(default_factory=dict)
    #: Per element: mean, 1st and 99th percentile and median sigma (at.%) of the
    #: composition maps (:meth:`psnmf.quantify.CompositionMaps.summary`); None without.
    composition_maps: dict[str, dict[str, float | None]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready content of ``summary.json``."""
        out = {
            "psnmf_version": self.psnmf_version,
            "versions": dict(self.versions),
            "input": dict(self.input.__dict__),
            "parameters": self.parameters.to_dict(),
            "heldout_deviance": self.heldout_deviance.to_dict(),
            "psnmf": dict(self.fit.__dict__),
            "smoothing": self.smoothing.to_dict(),
            "composition": None if self.composition is None else dict(self.composition.__dict__),
            "pca_explained_variance_ratio": self.pca_explained_variance_ratio,
            "sweep": None if self.selection is None else self.selection.to_dict(),
            "residuals": self.residuals,
            "warnings": list(self.warnings),
            "timings_s": dict(self.timings_s),
            "priors": dict(self.priors),
            "composition_maps": self.composition_maps,
        }
        if self.files is not None:
            out["files"] = dict(self.files)
        return jsonable(out)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape the results."""
    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "scikit-learn", "hyperspy", "exspy", "rosettasciio",
                 "matplotlib"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:  # pragma: no cover
            out[name] = "not installed"
    return out


@dataclass
class UnmixResult:
    """Everything :func:`psnmf.pipeline.unmix` produced.

    Attributes
    ----------
    model : PSNMF
        The fitted estimator (``spectra_``, ``maps_``, ``scale_``, ``loss_``, ``n_iter_``).
    signal : EDS signal
        The raw data after energy cropping (what was unmixed): lazy for a file (``compute()``
        loads it; its counts were read once, sparse, for the run), as given for a signal.
    denoised, pca_denoised : lazy EDS signals
        PSNMF-denoised (fused) cube and HyperSpy PCA-denoised cube (same ``k``), built from
        the factors (:func:`psnmf.hyperspy.denoised_from_factors`): nothing dense is held
        until asked (``.compute()``, ``.data[...]``). ``pca_denoised`` is ``None`` when the
        PCA could not be computed (see ``warnings``).
    spectra, maps : signals
        Component spectra (k | channels, rows sum to one) and maps (k | y, x, summing to
        one per pixel).
    element_maps : dict
        ``{'raw'|'pca'|'psnmf': {xray_line: 2-D ndarray}}`` line intensities.
    deviance : HeldoutDeviance
        Held-out Poisson deviance per count of raw, PCA and PSNMF.
    scree : ndarray
        PCA explained variance ratio of the first components.
    selection : ModelChoice or None
        The evidence of the search over k and/or b, when one ran.
    summary : Summary
        What ``summary.json`` holds (``summary.to_dict()``).
    paths : dict
        Written files, by role (empty when no ``output_dir`` was given).
    warnings : list of str
        Things the user should know (also emitted as ``UserWarning``).
    scale : Signal2D
        The per-pixel count scale (y, x) of the PSNMF fit.
    pca : psnmf.baselines.PCAFactors or None
        Factors and loadings of the PCA baseline (``None`` when it could not be computed).
    residuals : psnmf.residuals.Residuals or None
        Standardised deviance map of the fit, its worst-fitted region and that region's
        spectrum against the model, and whether the residuals show structure.
    composition_maps : psnmf.quantify.CompositionMaps or None
        Per-pixel at.% of the denoised data with sigma maps and their parts (with the
        composition table, ``n_boot > 0``).
    raw_sum : ndarray (channels,) or None
        The raw counts summed over the pixels (from the counts read for the run, so that
        the report's sum spectrum needs no second pass over a lazy file).
    counts : scipy.sparse.csr_matrix (pixels, channels) or None
        The raw counts of ``signal`` as read for the run (pixels masked out of the fit
        included), from which the report's region spectra are summed without a second
        pass over a lazy file.
    """

    model: Any
    signal: Any
    denoised: Any
    pca_denoised: Any
    spectra: Any
    maps: Any
    element_maps: dict[str, dict[str, np.ndarray]]
    deviance: HeldoutDeviance
    scree: np.ndarray
    selection: ModelChoice | None
    summary: Summary
    paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    scale: Any = None
    pca: Any = None
    residuals: Any = None
    composition_maps: Any = None
    raw_sum: np.ndarray | None = None
    counts: Any = field(default=None, repr=False)

    @property
    def n_components(self) -> int:
        """Number of components used."""
        return int(self.model.spectra_.shape[0])

    @property
    def bin_factor(self) -> int:
        """Bin factor used."""
        return int(self.model.bin_factor_)
