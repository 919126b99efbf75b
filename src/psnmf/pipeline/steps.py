"""The steps of :func:`psnmf.pipeline.unmix`, one function each with a typed result.

``load`` (:mod:`psnmf.pipeline.load`) -> :func:`split` -> :func:`choose` (k and b, when
asked) -> :func:`pca` -> :func:`fit` -> :func:`score` -> :func:`residual_map` ->
:func:`element_maps` ->
:func:`quantify` -> :func:`write`. Every estimator of the pipeline is built by
:func:`make_estimator`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from psnmf import hyperspy as signals
from psnmf import io
from psnmf.baselines import PCA_DIMENSION, PCAFactors, pca_factors
from psnmf.engine.tv_maps import smooth_maps
from psnmf.estimator import PSNMF
from psnmf.pipeline.load import INTEGRATION_WINDOWS, Loaded, lines_in_range
from psnmf.pipeline.progress import Progress
from psnmf.pipeline.summary import Composition, HeldoutDeviance, UnmixResult
from psnmf.residuals import Residuals, residuals
from psnmf.selection import (
    DEFAULT_COMPONENTS,
    DEVIANCE_FLOOR,
    SPLIT_FRACTION,
    SWEEP_ITERATIONS,
    ModelChoice,
    candidate_fit,
    central_window,
    choose_model,
    count_split,
    fitted_factors,
    heldout_deviance,
)

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.quantify.maps import CompositionMaps
    from psnmf.report.background import PendingFigures

logger = logging.getLogger(__name__)

#: Iteration caps of the final fit (binned stage, full stage).
FINAL_ITERATIONS = (1000, 200)
#: Bootstrap replicates for the ± of the component compositions in the report.
DEFAULT_BOOTSTRAP = 20


def make_estimator(
    k: int, b: int, *, seed: int | None, iterations: tuple[int, int],
    smoothing: float | str | None, pure_spectra: bool,
    image_shape: tuple[int, int] | None = None, priors: dict[str, Any] | None = None,
    lines: dict[str, Any] | None = None,
) -> PSNMF:
    """The one place the pipeline builds a :class:`psnmf.PSNMF`.

    ``pure_spectra`` picks ``spectra='pure'`` (pure-pixel spectra where the data show pure
    pixels) or ``'nmf'`` (the paper's binned-stage spectra); ``iterations`` are the caps
    of the binned and the full-resolution stage; ``priors`` the estimator's prior options
    (``fixed_spectra``, ``spectra_mask``, ``init_rois``; :mod:`psnmf.pipeline.priors`);
    ``lines`` its ``never_pure``, ``elements`` and ``edx_model`` (:func:`line_physics`),
    with which it extrapolates the vertices of never-pure phases along their lines.
    """
    return PSNMF(
        n_components=k, bin_factor=b, spectra="pure" if pure_spectra else "nmf",
        smoothing=smoothing, random_state=seed, max_iter=iterations[0],
        max_iter_full=iterations[1], image_shape=image_shape, **(priors or {}),
        **(lines or {}),
    )


def line_physics(signal: Any, notes: list[str] | None = None) -> dict[str, Any]:
    """The estimator's ``never_pure='lines'`` with its ``elements`` and ``edx_model``, for
    the line extrapolation of never-pure vertices: the signal's ``Sample.elements``
    (the file's, or those the user gave) and the forward model of its energy axis
    (:func:`psnmf.quantify.model_for_signal`, the one the compositions are quantified
    with). The pipeline fits CSR counts, from which the estimator cannot read them.

    Empty (the never-pure vertices kept) when the signal names no element, and, noted in
    ``notes``, when no forward model fits its energy axis (an axis starting below zero)
    or none of its elements has an X-ray line on it.
    """
    from psnmf.engine.line_vertices import line_basis
    from psnmf.quantify import model_for_signal

    elements = list(signal.metadata.get_item("Sample.elements", []) or [])
    if not elements:
        return {}
    try:
        model = model_for_signal(signal)
        line_basis(model, elements)
    except ValueError as exc:
        if notes is not None:
            notes.append(f"The element lines could not bound the spectra of never-pure "
                         f"phases ({exc}); their vertices are NMF's.")
        return {}
    return {"never_pure": "lines", "elements": elements, "edx_model": model}


@dataclass
class Split:
    """The counts as CSR (pixels, channels) and their count split ``X1 + X2``.

    With a ``pixel_mask`` (True = masked out) the masked pixels' counts are zero in all
    three.
    """

    counts: sp.csr_matrix
    X1: sp.csr_matrix
    X2: sp.csr_matrix
    image_shape: tuple[int, int]
    pixel_mask: np.ndarray | None = None

    @property
    def n_fitted(self) -> int:
        """Pixels in the fit (not masked out)."""
        n = self.image_shape[0] * self.image_shape[1]
        return n if self.pixel_mask is None else int(np.count_nonzero(~self.pixel_mask))

    @property
    def total(self) -> float:
        """Total counts."""
        return float(self.counts.sum())

    @property
    def counts_per_pixel(self) -> float:
        """Mean counts per pixel."""
        return self.total / (self.image_shape[0] * self.image_shape[1])


def split(loaded: Loaded, seed: int | None, pixel_mask: np.ndarray | None = None) -> Split:
    """The loaded counts (the masked-out pixels' set to zero) split by binomial thinning
    (fraction 0.5, seeded)."""
    from psnmf.priors import apply_pixel_mask

    counts = apply_pixel_mask(loaded.counts, pixel_mask)
    X1, X2 = count_split(counts, SPLIT_FRACTION, random_state=seed)
    return Split(counts, X1, X2, loaded.image_shape, pixel_mask)


def choose(
    data: Split, *, k: int | None, b: int | None, bins: Sequence[int] | None,
    components: Sequence[int] | None, seed: int | None, progress: Progress,
    auto_components: Sequence[int] = DEFAULT_COMPONENTS,
    fits: dict[tuple[int, int], PSNMF] | None = None,
    priors: dict[str, Any] | None = None, pure_spectra: bool = True,
    lines: dict[str, Any] | None = None,
) -> ModelChoice:
    """Choose ``k`` and/or ``b`` by held-out deviance (:func:`psnmf.selection.choose_model`).

    ``k``/``b`` given fix that parameter; the candidate fits are the final fit's method
    (``pure_spectra``, ``priors``) without smoothing and with the iteration caps
    ``SWEEP_ITERATIONS`` (:func:`psnmf.selection.candidate_fit`). ``fits``, when given,
    receives every candidate fitted to ``data.X1`` (the fitted model), by ``(b, k)``:
    :func:`score` takes the chosen one as its fit of that half. The candidate ``k`` are
    restricted to those >= the fewest components the priors name.
    """
    from psnmf.priors import spectral_priors

    shape = data.image_shape
    engine_priors = None if not priors else spectral_priors(data.counts, shape, **priors)
    if engine_priors is not None and k is None:
        least = engine_priors.min_components()
        auto_components = [c for c in (components or auto_components) if c >= least]
        components = None
        if not auto_components:
            raise ValueError(f"the priors name component {least - 1}: no candidate k is "
                             f"large enough; give n_components >= {least} or candidates "
                             f"that include it.")
    template = make_estimator(k or 2, b or 4, seed=seed, iterations=SWEEP_ITERATIONS,
                              smoothing=None, pure_spectra=pure_spectra, image_shape=shape,
                              priors=priors, lines=lines)
    fit = candidate_fit(template, shape, pixel_mask=data.pixel_mask, fits=fits,
                        record=data.X1)
    return choose_model(
        data.X1, data.X2, shape, fit, bins=bins if b is None else (b,),
        components=components if k is None else (k,), auto_components=auto_components,
        seed=seed, progress=progress.iterate, priors=engine_priors,
        n_pixels=None if data.pixel_mask is None else data.n_fitted,
    )


@dataclass
class PCABaseline:
    """HyperSpy's Poisson-normalised PCA with ``k`` components and its scree.

    ``factors`` is ``None`` (and ``denoised`` too) when the PCA could not be computed; the
    reason is in the run's notes.
    """

    factors: PCAFactors | None
    scree: np.ndarray
    denoised: Any = None  #: lazy signal rebuilt from the factors (nothing computed)


#: Errors after which a run goes on without the PCA baseline (noted, not raised).
PCA_ERRORS = (ValueError, MemoryError, np.linalg.LinAlgError)


def pca(signal: Any, k: int, seed: int | None, notes: list[str] | None = None,
        data: Split | None = None) -> PCABaseline:
    """PCA of ``signal`` as HyperSpy users run it (:func:`psnmf.baselines.pca_factors`).

    Computed on the sparse counts (``data.counts`` when given); the denoised cube is a lazy
    signal built from the factors. When the PCA fails (too few pixels or channels for
    ``k``, not enough memory) the run goes on without it and ``notes`` says why.
    """
    try:
        factors = pca_factors(signal if data is None else data.counts, k,
                              n_factors=PCA_DIMENSION, random_state=seed,
                              image_shape=None if data is None else data.image_shape)
    except PCA_ERRORS as exc:
        if notes is None:
            raise
        notes.append(f"The PCA baseline could not be computed ({type(exc).__name__}: {exc}); "
                     "no PCA results.")
        return PCABaseline(None, np.zeros(0))
    denoised = signals.denoised_from_factors(
        pca_factor_signal(factors, signal), pca_loading_signal(factors, signal),
        title="PCA denoised")
    return PCABaseline(factors, factors.explained_variance_ratio, denoised)


def pca_factor_signal(factors: PCAFactors, template: Any) -> Any:
    """The ``k`` PCA factors used (k | channels), energy axis and metadata of the input."""
    k = factors.n_components
    return signals.spectra_signal(factors.factors[:, :k].T, template, title="PCA factors")


def pca_loading_signal(factors: PCAFactors, template: Any) -> Any:
    """The ``k`` PCA loadings used (k | ny, nx), spatial axes of the input."""
    k = factors.n_components
    return signals.maps_signal(factors.loadings[:, :k].reshape(*factors.image_shape, k),
                               template, title="PCA loadings")


@dataclass
class Fitted:
    """The final PSNMF fit and its outputs as signals."""

    model: PSNMF
    denoised: Any  #: lazy signal rebuilt from spectra, maps and scale (nothing computed)
    spectra: Any
    maps: Any
    scale: Any


def fit(signal: Any, data: Split, k: int, b: int, *, seed: int | None,
        iterations: tuple[int, int], smoothing: float | str | None,
        pure_spectra: bool, priors: dict[str, Any] | None = None,
        lines: dict[str, Any] | None = None) -> Fitted:
    """PSNMF of all the counts: component spectra, maps and count scale as signals with the
    axes and metadata of ``signal``, and the denoised cube (lazy, from the factors);
    ``lines`` the estimator's elements and EDX model (:func:`line_physics`)."""
    model = make_estimator(k, b, seed=seed, iterations=iterations, smoothing=smoothing,
                           pure_spectra=pure_spectra, image_shape=data.image_shape,
                           priors=priors, lines=lines).fit(data.counts,
                                                           pixel_mask=data.pixel_mask)
    if not all(model.converged_.values()):
        logger.info("PSNMF stopped at the iteration caps %s", model.n_iter_)
    spectra = signals.spectra_signal(model.spectra_, signal)
    maps = signals.maps_signal(model.maps_, signal)
    scale = signals.scale_signal(model.scale_, signal)
    denoised = signals.denoised_from_factors(spectra, maps, scale, title="PSNMF denoised")
    return Fitted(model, denoised, spectra, maps, scale)


def score(
    signal: Any, data: Split, k: int, b: int, *, seed: int | None,
    smoothing_lam: float, pure_spectra: bool, notes: list[str],
    candidate: PSNMF | None = None, priors: dict[str, Any] | None = None,
    lines: dict[str, Any] | None = None,
) -> HeldoutDeviance:
    """Held-out deviance of raw (``X1`` predicts ``X2``), PCA and PSNMF fitted on ``X1``.

    The PSNMF of ``X1`` is the model search's candidate at ``(b, k)`` (``candidate``,
    :func:`choose`: the final fit's method without smoothing, at the search's iteration
    caps :data:`psnmf.selection.SWEEP_ITERATIONS`), fitted here the same way when there
    was no search, so that half is never fitted twice. Its maps are then smoothed on
    ``X1`` with ``smoothing_lam``, the TV weight (counts units) of the final fit, used as
    is instead of a second weight search: the weight of a penalised likelihood does not
    depend on the number of counts (:mod:`psnmf.engine.tv_maps`). That TV solve stops at
    :data:`HELDOUT_TV_TOL`, looser than the final maps' tolerance: the score needs the
    maps' fit to the counts, not their last digits (measured on a 256 x 256 x 2048 mantle
    map at 120 counts/pixel: the deviance per count is within 4e-5 relative of the
    converged maps', 0.4 % of what the smoothing changes, after 51 sweeps instead of
    249). The final fit's iteration caps and smoothing option do not enter: the held-out
    fit is the search's. All three predictions share one floor.

    The three are scored on the central window of at most :data:`HELDOUT_PIXELS` pixels
    (the whole image when it is smaller): the TV maps and the PCA of that half are the
    score's cost, and a per-count deviance over 65,536 pixels (millions of counts at real
    count levels) is an estimate whose sampling error is far below the differences it
    compares.
    """
    X1, X2, shape = data.X1, data.X2, data.image_shape
    if candidate is None:
        template = make_estimator(k, b, seed=seed, iterations=SWEEP_ITERATIONS,
                                  smoothing=None, pure_spectra=pure_spectra,
                                  image_shape=shape, priors=priors, lines=lines)
        candidate = candidate_fit(template, shape, pixel_mask=data.pixel_mask)(X1, b, k)
    rows, window = central_window(np.arange(X1.shape[0]), shape, HELDOUT_PIXELS)
    mask = data.pixel_mask
    if window != tuple(shape):
        X1, X2 = X1[rows], X2[rows]
        mask = None if mask is None else np.asarray(mask).ravel()[rows]
    dev_raw = heldout_deviance(X2, X1, floor=DEVIANCE_FLOOR)
    dev_psnmf = heldout_deviance(
        X2, _smoothed_factors(candidate, X1, window, smoothing_lam, mask, rows),
        floor=DEVIANCE_FLOOR)
    try:
        pca_half = pca_factors(X1, k, n_factors=PCA_DIMENSION, random_state=seed,
                               image_shape=window)
        dev_pca: float | None = heldout_deviance(X2, pca_half.mean_factors(),
                                                   floor=DEVIANCE_FLOOR)
    except PCA_ERRORS as exc:
        notes.append(f"PCA of the first half of the counts failed ({type(exc).__name__}: "
                     f"{exc}); no PCA score.")
        dev_pca = None
    return HeldoutDeviance(raw=dev_raw, pca=dev_pca, psnmf=dev_psnmf, floor=DEVIANCE_FLOOR,
                           fraction=SPLIT_FRACTION, seed=seed, heldout_counts=float(X2.sum()),
                           window=(int(window[0]), int(window[1])))


#: Relative objective tolerance of the held-out fit's TV maps (:func:`score`).
HELDOUT_TV_TOL = 1e-5
#: Pixels of the central window :func:`score` scores (256 x 256). At 512 x 512 x 2048,
#: 120 counts/pixel, the whole image's TV maps and PCA of the first half took 15.5 and
#: 7.7 CPU s.
HELDOUT_PIXELS = 256 * 256


def _smoothed_factors(model: PSNMF, X: sp.csr_matrix, shape: tuple[int, int], lam: float,
                      pixel_mask: np.ndarray | None,
                      rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scale * maps, spectra)`` of ``model`` (fitted without smoothing) at its pixels
    ``rows``, the window of ``shape`` whose counts are ``X``: the maps smoothed on ``X`` at
    the weight ``lam`` (not for ``lam = 0``)."""
    L, S = fitted_factors(model)
    if not lam > 0:
        return L[rows], S
    k = S.shape[0]
    scale = np.nan_to_num(model.scale_.reshape(-1, 1)[rows])
    start = np.nan_to_num(model.maps_.reshape(-1, k)[rows], nan=1.0 / k)  # masked: NaN
    maps = smooth_maps(X, start, S, shape, float(lam), penalty=model.smoothing_penalty,
                       pixel_mask=pixel_mask, tol=HELDOUT_TV_TOL).maps
    return maps * scale, S


def residual_map(signal: Any, data: Split, fitted: Fitted) -> Residuals:
    """Standardised deviance of every pixel under the final fit, its worst-fitted region and
    that region's spectrum against the model (:func:`psnmf.residuals.residuals`)."""
    model = fitted.model
    axis = signal.axes_manager.signal_axes[0]
    return residuals(data.counts, model.maps_.reshape(-1, model.spectra_.shape[0]),
                     model.spectra_, data.image_shape, np.asarray(axis.axis, dtype=float))


@dataclass
class ElementMaps:
    """Line intensities (exspy ``get_lines_intensity``) of the raw, PCA and PSNMF data.

    ``maps[kind][line]``: 2-D array, ``kind`` in ``'raw'``, ``'pca'``, ``'psnmf'``.
    """

    lines: list[str]
    maps: dict[str, dict[str, np.ndarray]]


def element_maps(loaded: Loaded, pca_baseline: PCABaseline, fitted: Fitted,
                 notes: list[str]) -> ElementMaps:
    """Elemental maps (+-1.2 FWHM windows) of each line inside the energy range.

    Raw: exspy's ``get_lines_intensity`` of the data. PCA and PSNMF: from the factors,
    without the denoised cube: a window sum is linear, so the map of the model
    ``L @ F`` (loadings ``L`` (pixels, k), factor spectra ``F`` (k, channels)) is ``L @ w``
    with ``w`` the window sums of the factor spectra (``get_lines_intensity`` of the
    factor spectra, the same windows). For PSNMF ``L`` is maps times count scale.
    """
    lines, skipped = lines_in_range(loaded.signal)
    lo, hi = loaded.energy_range_keV
    if skipped:
        notes.append(
            "No elemental map for " + ", ".join(skipped) + ": the line window is outside "
            f"the energy range {lo:.3g}-{hi:.3g} keV."
        )
    if not lines:
        notes.append(
            "No elements in the file's metadata (or none inside the energy range): no "
            "elemental maps. Pass elements=[...] / --elements Fe,O,..."
        )
        return ElementMaps([], {"raw": {}, "pca": {}, "psnmf": {}})
    out = {"raw": _count_line_maps(loaded, lines)}
    model = fitted.model
    out["psnmf"] = _factor_line_maps(fitted.spectra, model.maps_ * model.scale_[..., None],
                                     lines)
    pf = pca_baseline.factors
    out["pca"] = {} if pf is None else _factor_line_maps(
        pca_factor_signal(pf, loaded.signal),
        pf.loadings[:, :pf.n_components].reshape(*pf.image_shape, -1), lines)
    return ElementMaps(lines, out)


def _line_maps(signal: Any, lines: list[str]) -> dict[str, np.ndarray]:
    intensities = signal.get_lines_intensity(
        xray_lines=lines, integration_windows=INTEGRATION_WINDOWS, only_one=True
    )
    return {line: np.asarray(m.data, dtype=float)
            for line, m in zip(lines, intensities, strict=True)}


def _count_line_maps(loaded: Loaded, lines: list[str]) -> dict[str, np.ndarray]:
    """Line maps of the counts: the sum of each line's integration window (the channels
    exspy's ``get_lines_intensity`` sums, found on the signal's axis), from the sparse
    counts, without reading the data again."""
    signal, counts = loaded.signal, loaded.counts
    windows = signal.estimate_integration_windows(windows_width=INTEGRATION_WINDOWS,
                                                  xray_lines=lines)
    axis = signal.axes_manager.signal_axes[0]
    out = {}
    for line, (start, end) in zip(lines, windows, strict=True):
        i0, i1 = axis.value2index(start), axis.value2index(end)
        window = np.asarray(counts[:, i0:i1].sum(axis=1)).ravel()
        out[line] = window.reshape(loaded.image_shape)
    return out


def _factor_line_maps(spectra: Any, loadings: np.ndarray,
                      lines: list[str]) -> dict[str, np.ndarray]:
    """Line maps of the model ``loadings @ spectra`` (loadings (ny, nx, k))."""
    windows = _line_maps(spectra, lines)  # {line: (k,) window sums of each spectrum}
    return {line: loadings @ w for line, w in windows.items()}


@dataclass
class Quantified:
    """The component compositions: the report's table and the bootstrap behind it (its
    replicate spectra and per-component quantifications feed :func:`composition_maps`),
    with the quantification options used."""

    table: Composition | None
    bootstrap: Any = None  #: psnmf.uncertainty.BootstrapResult, or None
    options: dict[str, Any] = field(default_factory=dict)


def quantify(model: PSNMF, data: Split, signal: Any, lines: list[str], n_boot: int,
             seed: int | None, notes: list[str],
             options: dict[str, Any] | None = None,
             progress: Callable[[int], Any] | None = None) -> Quantified:
    """Composition of every component with its error budget (report table).

    ``options`` go to :func:`psnmf.quantify.quantify` through the bootstrap (``method``,
    ``k_factors``, ``thickness``, ``thickness_sigma``, ``density``, ``exclude_elements``,
    ``detection_sigma``, ``thickness_from``, ``valences``, ``charge_balance_sd``,
    ``detector_window_known``...); excluded elements are fitted even when the element
    list lacks them. ``thickness_from`` is ``"auto"`` unless given (``"none"`` or None:
    the thickness given alone). ``progress`` is called with 1 per bootstrap replicate
    taken. The table records the film each component was corrected
    for (:func:`psnmf.pipeline.summary.thickness_record`: an ionic component's own,
    measured from its spectrum, where it was estimated). The table is ``None`` with fewer
    than two elements, or when the quantification fails (noted).
    """
    from psnmf.pipeline.summary import thickness_record
    from psnmf.quantify import model_for_signal, read_k_factors
    from psnmf.uncertainty import BUDGET_PARTS, bootstrap

    opts = dict(options or {})
    e_min = float(signal.axes_manager.signal_axes[0].offset)
    if e_min < 0:
        notes.append(
            f"No composition table: the energy range starts at {e_min:g} keV, below zero "
            "(the zero-energy peak was kept, see the note on the energy range), and the line "
            "fit models positive energies only; to quantify, give an energy range from "
            "0.2 keV (energy_range / --energy-range 0.2,HI).")
        return Quantified(None)
    elements = list(dict.fromkeys(line.split("_")[0] for line in lines))
    excluded = list(opts.get("exclude_elements") or [])
    elements += [el for el in excluded if el not in elements]
    if len([el for el in elements if el not in excluded]) < 2:
        return Quantified(None)
    # explicit, so that the bootstrap's replicates keep thickness_sigma where it weighs
    # the thickness given against an estimate; "none" is the config file's word for None
    from_ = opts.get("thickness_from", "auto")
    opts["thickness_from"] = None if from_ in ("none", None) else from_
    window_known = bool(opts.get("detector_window_known", False))
    source = ("theoretical (the forward model; relative sd psnmf.quantify.theoretical_k_sd: "
              + ("the emission part; the detector window known)" if window_known else
                 "the emission part and the detector window's spread)"))
    if isinstance(opts.get("k_factors"), str | Path):
        source = f"file {opts['k_factors']}"
        opts["k_factors"] = read_k_factors(opts["k_factors"])
    elif opts.get("k_factors") is not None:
        source = "given"
    try:
        res = bootstrap(model, data.counts, n_boot=n_boot, elements=elements,
                        edx_model=model_for_signal(signal), random_state=seed,
                        quantify_options=opts, progress=progress)
        rows = res.composition_rows(names=[f"#{j}" for j in range(model.spectra_.shape[0])])
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        notes.append(f"The compositions could not be computed ({exc}); no composition table.")
        return Quantified(None)
    qnotes = list(dict.fromkeys(n for q in res.quantifications for n in q.notes))
    for j, q in enumerate(res.quantifications):
        qnotes += [f"#{j}: {a} / {b} lines overlap (fitted intensities correlated {r:+.2f}): "
                   "their split rests on the model's line ratios" for a, b, r in q.unresolved]
    method = opts.get("method", "CL")
    parts = [p for p in BUDGET_PARTS  # thickness: given its sd, or a density's spread
             if p != "thickness" or opts.get("thickness_sigma") is not None
             or any("thickness" in q.uncertainty_budget for q in res.quantifications)]
    settings = {"method": method, "k_factors": source,
                "thickness_nm": opts.get("thickness", model_for_signal(signal).thickness),
                "thickness_sigma_nm": opts.get("thickness_sigma"),
                "density_g_cm3": opts.get("density"), "excluded": excluded,
                "detection_sigma": opts.get("detection_sigma", 3.0),
                "thickness_from": opts.get("thickness_from"),
                "valences": dict(opts.get("valences") or {}),
                "charge_balance_sd": opts.get("charge_balance_sd", 0.01),
                "detector_window_known": window_known}
    estimated = any(q.thickness_estimate is not None for q in res.quantifications)
    film = ("the absorption correction uses, for the ionic components, the film mass "
            "thickness measured from each one's spectrum by electroneutrality (combined "
            "with the thickness given when its sd is given), the thickness given for the "
            "others (the notes say why)"
            if estimated else
            "the absorption correction uses the thickness given (none for a thin film)")
    drawn = int(res.replicates.shape[0])
    stopped = ("" if drawn == n_boot else
               f" (of at most {n_boot}: more would not move any interval edge by a tenth "
               "of its half-width)")
    table = Composition(
        rows=rows, level=0.95, elements=elements, n_boot=drawn,
        method=(f"Atomic % by line fitting and {method} (psnmf.quantify), k-factors "
                f"{source}; ± one standard deviation and the 95% interval combining, in "
                f"quadrature, {drawn} parametric bootstrap replicates{stopped} of the "
                "binned stage (counting noise and NMF spread, psnmf.uncertainty) with the "
                "k-factor uncertainty (Monte Carlo) and "
                + ("the uncertainty of each component's estimated film." if estimated
                   else "the thickness uncertainty when given.")),
        note=("Each part of the budget is in summary.json and composition.csv. Elements "
              "whose fitted lines are below 3 sigma are reported below the detection limit; "
              f"elements outside the list are attributed to the continuum; {film}."),
        parts=parts, options=settings, notes=qnotes,
        thickness={f"#{j}": thickness_record(q) for j, q in enumerate(res.quantifications)},
    )
    return Quantified(table, res, opts)


def composition_maps(model: PSNMF, quantified: Quantified,
                     notes: list[str]) -> CompositionMaps | None:
    """Per-pixel compositions of the denoised data with sigma maps
    (:func:`psnmf.quantify.composition_maps`): from the component quantifications, the
    maps and the count scale, the bootstrap replicates of the spectra giving their
    ``bootstrap`` part. Components whose film was estimated (``thickness_from``) carry
    their own mass thickness, and each pixel is corrected for the abundance-weighted one
    (see :mod:`psnmf.quantify.maps`); ``thickness_sigma`` then applies to the components
    not estimated. ``None`` without a composition table, or when the maps cannot be
    computed (noted: another method than Cliff-Lorimer, exspy's absorption tables).
    """
    from psnmf.quantify import composition_maps as maps_of

    res = quantified.bootstrap
    if quantified.table is None or res is None or not res.quantifications:
        return None
    opts = quantified.options
    fit_keys = ("continuum_degree", "min_family_fraction", "max_iter", "overlap_threshold")
    try:
        return maps_of(
            res.quantifications, model.maps_, model.scale_, spectra=model.spectra_,
            replicate_spectra=res.replicates, density=opts.get("density"),
            thickness_sigma=opts.get("thickness_sigma"),
            takeoff_angle=opts.get("takeoff_angle"),
            database=opts.get("database", "xraylib"), tol=opts.get("tol"),
            max_absorption_iter=opts.get("max_absorption_iter", 100),
            fit_options={key: opts[key] for key in fit_keys if key in opts})
    except (ValueError, RuntimeError) as exc:
        notes.append(f"No composition maps ({exc}).")
        return None


#: The files of the factor outputs, by role (written by default).
FACTOR_FILES = {
    "spectra": "component_spectra.hspy",
    "maps": "component_maps.hspy",
    "scale": "count_scale.hspy",
    "psnmf_decomposition": "psnmf_decomposition.hspy",
    "pca_decomposition": "pca_decomposition.hspy",
    "residuals": "residual_map.hspy",
}
#: The composition maps and their sigma maps (with the composition table).
COMPOSITION_FILES = {"composition_maps": "composition_maps.hspy",
                     "composition_sigma": "composition_sigma_maps.hspy"}
#: The dense denoised cubes (``write_denoised=True``).
DENSE_FILES = {"denoised": "denoised.hspy", "pca_denoised": "pca_denoised.hspy"}


def write_signals(result: UnmixResult, out: Path, *,
                  write_denoised: bool = False) -> dict[str, Path]:
    """The factor outputs as ``.hspy`` (and the denoised cubes when asked); {role: path}.

    * ``component_spectra.hspy`` (k | channels), ``component_maps.hspy`` (k | y, x),
      ``count_scale.hspy`` (y, x): ``psnmf.hyperspy.denoised_from_factors(spectra, maps,
      scale)`` rebuilds the PSNMF-denoised cube.
    * ``residual_map.hspy`` (y, x): each pixel's standardised deviance under the fit
      (:class:`psnmf.residuals.Residuals`), high where the model misses something;
      float16 as the sigma maps (:func:`_float16`, float32 where a value is beyond
      float16's range): a score to 3 significant digits.
    * ``psnmf_decomposition.hspy`` and ``pca_decomposition.hspy``: HyperSpy decompositions
      (see :func:`psnmf.hyperspy.decomposition_signal`), factors and loadings in float32,
      the placeholder cube not written (:func:`psnmf.hyperspy.save_decomposition`):
      ``hs.load(path, lazy=True).get_decomposition_model()`` is the denoised cube to
      float32 precision (relative ~1e-7, as the float32 ``denoised.hspy``);
      ``get_decomposition_factors()`` / ``get_decomposition_loadings()`` the factors
      (PCA: the ``k`` components used).
    * ``composition_maps.hspy`` (float32) and ``composition_sigma_maps.hspy`` (float16,
      :func:`_float16`: a standard deviation to 3 significant digits; float32 where one
      is beyond float16's range)
      (element | y, x): the denoised data's at.% per pixel and its standard deviation
      (when the run computed them, :func:`composition_maps`); the elements in
      ``metadata.Sample.elements``, in the order of the navigation axis.
    * with ``write_denoised``: ``denoised.hspy`` and ``pca_denoised.hspy``, float32,
      written chunk by chunk from the factors (gzip-compressed HDF5 chunks).
    """
    model, template = result.model, result.signal
    k = result.n_components
    signals_out = {
        "spectra": result.spectra, "maps": result.maps, "scale": result.scale,
        "psnmf_decomposition": signals.decomposition_signal(
            model.spectra_.T, (model.maps_ * model.scale_[..., None]).reshape(-1, k),
            template, algorithm="PSNMF", title="PSNMF decomposition"),
    }
    if result.residuals is not None:
        signals_out["residuals"] = signals.scale_signal(
            _float16(result.residuals.z), template,
            title="PSNMF standardised residual deviance")
    if result.pca is not None:
        pf = result.pca
        signals_out["pca_decomposition"] = signals.decomposition_signal(
            pf.factors[:, :pf.n_components], pf.loadings[:, :pf.n_components], template,
            algorithm="SVD", poissonian_noise_normalized=True,
            explained_variance=pf.explained_variance[:pf.n_components],
            title="PCA decomposition")
    names = {**FACTOR_FILES, **COMPOSITION_FILES}
    cm = result.composition_maps
    if cm is not None:
        sigma = _float16(cm.sigma)
        signals_out["composition_maps"] = composition_signal(
            cm.composition, cm.elements, template, "PSNMF composition maps (at.%)")
        signals_out["composition_sigma"] = composition_signal(
            sigma, cm.elements, template,
            "PSNMF composition sigma maps (at.%, one standard deviation)", dtype=sigma.dtype)
    if write_denoised:
        for role, cube in (("denoised", result.denoised), ("pca_denoised", result.pca_denoised)):
            if cube is not None:
                signals_out[role] = _float32(cube)
        names.update(DENSE_FILES)

    def save(role: str, sig: Any) -> Path:
        if role not in DECOMPOSITION_ROLES:
            return _save(sig, out / names[role])
        with io.atomic_path(out / names[role]) as tmp:
            signals.save_decomposition(sig, tmp)
        return out / names[role]

    return {role: save(role, sig) for role, sig in signals_out.items()}


#: The roles of :data:`FACTOR_FILES` written by :func:`psnmf.hyperspy.save_decomposition`.
DECOMPOSITION_ROLES = ("psnmf_decomposition", "pca_decomposition")


def _float16(a: np.ndarray) -> np.ndarray:
    """``a`` in float16 for the maps that are spreads and scores (sigma, residual): 11
    significant bits (relative rounding at most 2**-11, 3 significant digits) at half the
    bytes of float32. Where a finite value lies beyond float16's range (+-65504) the maps
    stay float32 instead: no value is clipped.

    Examples
    --------
    >>> _float16(np.array([0.1234567, 2.0, np.nan])).tolist()
    [0.12347412109375, 2.0, nan]
    >>> _float16(np.array([0.5, 1e6])).dtype
    dtype('float32')
    """
    a = np.asarray(a)
    finite = np.abs(a[np.isfinite(a)])
    fits = finite.size == 0 or float(finite.max()) <= float(np.finfo(np.float16).max)
    return a.astype(np.float16 if fits else np.float32)


def composition_signal(data: np.ndarray, elements: list[str], template: Any,
                       title: str, dtype: Any = np.float32) -> Any:
    """(elements, ny, nx) at.% maps as a Signal2D (element | y, x) in ``dtype`` (float32;
    float16 for the sigma maps) with the template's spatial axes: navigation axis
    ``Element``, the elements in ``metadata.Sample.elements``, quantity
    ``Composition (at.%)``."""
    out = signals.maps_signal(np.moveaxis(np.asarray(data, dtype=dtype), 0, -1),
                              template, title=title)
    axis = out.axes_manager.navigation_axes[0]
    axis.name = "Element"
    axis.units = ""
    out.metadata.set_item("Sample.elements", list(elements))
    out.metadata.set_item("Signal.quantity", "Composition (at.%)")
    return out


def results_folder(output_dir: str | Path | None, *, overwrite: bool, path_or_signal: Any,
                   names: Any, command: str) -> Any:
    """The locked :class:`psnmf.io.ResultsFolder` of a run writing ``names`` (a null context
    giving ``None`` without ``output_dir``); its inputs are the file read and its companions
    (none for a signal)."""
    if output_dir is None:
        return contextlib.nullcontext(None)
    inputs = [] if signals.is_signal(path_or_signal) else io.input_files(path_or_signal)
    return io.ResultsFolder(output_dir, overwrite=overwrite, inputs=inputs, names=names,
                            command=command)


#: Fixed room kept for ``report.html`` and the figures that are not maps, in bytes: the
#: page's BokehJS (gzip-compressed, 0.6 MB), its text and tables, and the spectra,
#: deviance, scree, sweep, smoothing and loss figures (about 0.2 MB as 8-bit PNG).
REPORT_BYTES = 2 * 2**20
#: PNG bytes per pixel of a map panel of a figure, as an upper bound: the figures are
#: 8-bit palette PNGs (one byte a pixel before zlib, which compresses the panels' repeated
#: and smooth pixels). Measured: 0.13 bytes per map pixel for the 34 panels of a
#: 512 x 512 x 1980 map with k = 3 and six elements, 0.6 for the same at 180 x 180.
PNG_BYTES_PER_PIXEL = 1.0
#: Most pixels of one map panel of a figure (about 3.2 inches a side at 110 dpi): a map
#: with more pixels is drawn resampled to its panel.
PANEL_PIXELS = 360 * 360
#: Room per ``.hspy`` file for HDF5 structure and metadata, in bytes.
HSPY_OVERHEAD = 64 * 2**10


def output_names(*, write_denoised: bool = True) -> set[str]:
    """Every file name :func:`psnmf.pipeline.unmix` may write into its output folder (the
    dense cubes only with ``write_denoised``)."""
    from psnmf.report import FIGURES

    dense = DENSE_FILES.values() if write_denoised else ()
    return {*FACTOR_FILES.values(), *COMPOSITION_FILES.values(), *dense,
            *(name for _, name, _ in FIGURES),
            "summary.json", "report.html", "composition.csv", "config.toml"}


def report_bytes(shape: Sequence[int], k: int, n_lines: int) -> int:
    """An upper estimate of the bytes of the figures and ``report.html``.

    :data:`REPORT_BYTES`, the map panels of the figures (:data:`PNG_BYTES_PER_PIXEL` per
    pixel of a panel, at most :data:`PANEL_PIXELS` of them: the ``k`` component maps,
    the residual map and the ``n_lines`` element maps of three kinds; written once, as
    PNG files the page refers to) and, base64-encoded, the interactive page's data
    (:mod:`psnmf.report.explorer`): the raw region spectra (at most
    :data:`~psnmf.report.explorer.RAW_BUDGET_BYTES`), ``k`` float32 weights per region,
    and the ``k`` component maps and ``n_lines`` element maps of three kinds as one byte
    a pixel (:func:`psnmf.report.interactive.map_codes`, at most
    :data:`~psnmf.report.explorer.MAX_IMAGE_SIDE` pixels a side). Bokeh gzip-compresses
    the arrays, which only makes them smaller.

    Examples
    --------
    >>> report_bytes((512, 512, 2048), 3, 10) < 20 * 2**20
    True
    """
    from psnmf.report import explorer

    ny, nx, ne = (int(n) for n in shape)
    d = explorer.display_factor((ny, nx), explorer.MAX_IMAGE_SIDE)
    shown = -(-ny // d) * -(-nx // d)
    budget = explorer.RAW_BUDGET_BYTES
    raw = min(budget, 4 * ny * nx * min(ne, explorer.MAX_DISPLAY_CHANNELS))
    # a region holds at least 4 bytes of the budget (its row pointer, or its channels)
    regions = min(ny * nx, budget // 4 + 1)
    data = raw + 4 * k * regions + shown * (k + 3 * n_lines)
    panels = k + 1 + 3 * n_lines
    figures = PNG_BYTES_PER_PIXEL * min(ny * nx, PANEL_PIXELS) * panels
    return int(REPORT_BYTES + figures + data * 4 / 3)


def result_bytes(shape: Sequence[int], k: int, *, write_denoised: bool,
                 report: bool, n_lines: int = 0) -> int:
    """An upper estimate of the bytes :func:`write_signals` (and the report) write.

    ``shape`` is ``(ny, nx, ne)``. The factor files hold float64 spectra ``(k, ne)``, maps
    ``(k, ny, nx)`` and the count scale, and the float16 residual map; the two
    decompositions their float32 factors and loadings (PCA: ``k`` of each), their
    placeholder cube not written; the dense cubes (``write_denoised``) 4 bytes per value
    each before compression; the composition maps float32 and their sigma maps float16
    per mapped element (at most ``n_lines``) and pixel, and their figure (two panels per
    element, :data:`PNG_BYTES_PER_PIXEL` per panel pixel); the report
    :func:`report_bytes` (with ``n_lines`` element maps). gzip never grows a chunk by
    more than a few bytes, which :data:`HSPY_OVERHEAD` covers.

    Examples
    --------
    >>> result_bytes((16, 16, 200), 2, write_denoised=True, report=False) > 2 * 4 * 16 * 16 * 200
    True
    """
    ny, nx, ne = (int(n) for n in shape)
    pixels = ny * nx
    factors = 8 * (k * ne + k * pixels + pixels) + 2 * pixels
    decompositions = 2 * 4 * k * (ne + pixels)
    dense = 2 * 4 * pixels * ne if write_denoised else 0
    compositions = (4 + 2) * n_lines * pixels
    composition_figure = PNG_BYTES_PER_PIXEL * 2 * n_lines * min(pixels, PANEL_PIXELS)
    files = (len(FACTOR_FILES) + len(COMPOSITION_FILES)
             + (len(DENSE_FILES) if write_denoised else 0))
    return int(factors + decompositions + dense + compositions + files * HSPY_OVERHEAD
               + (report_bytes(shape, k, n_lines) + composition_figure if report else 0))


def _float32(signal: Any) -> Any:
    """A float32 copy of a signal; of a lazy one, lazy (computed chunk by chunk when saved)."""
    out = signal.deepcopy()
    out.change_dtype("float32")
    return out


def _save(signal: Any, path: Path) -> Path:
    """``.hspy`` written atomically (:func:`psnmf.io.atomic_path`), gzip-compressed HDF5
    chunks, lazy data chunk by chunk without HyperSpy's progress bar (it prints to
    stdout)."""
    with io.atomic_path(path) as tmp:
        signal.save(str(tmp), overwrite=True, file_format="HSPY", show_progressbar=False)
    return path


def start_figures(result: UnmixResult, out: Path) -> PendingFigures:
    """Start drawing the report's figures as PNG (and ``sweep.png`` when k or b was
    chosen) in forked processes (:func:`psnmf.report.draw_in_background`); the caller
    builds the rest of the report meanwhile and takes the paths from ``.result()``."""
    from psnmf import report

    jobs = report.figure_jobs(result, out)
    if result.selection is not None:
        selection = result.selection
        jobs.append(report.FigureJob("sweep_figure", lambda: report.save_sweep_figure(
            selection, out / "sweep.png")))
    return report.draw_in_background(jobs)


def write_figures(result: UnmixResult, out: Path) -> dict[str, Path]:
    """The report's figures as PNG (and ``sweep.png`` when k or b was chosen)."""
    return start_figures(result, out).result()
