"""The steps of :func:`psnmf.pipeline.unmix`, one function each with a typed result.

``load`` (:mod:`psnmf.pipeline.load`) -> :func:`split` -> :func:`choose` (k and b, when
asked) -> :func:`pca` -> :func:`fit` -> :func:`score` -> :func:`element_maps` ->
:func:`quantify` -> :func:`write`. Every estimator of the pipeline is built by
:func:`make_estimator`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf import hyperspy as signals
from psnmf import io
from psnmf.baselines import PCA_DIMENSION, pca_denoise
from psnmf.estimator import PSNMF
from psnmf.pipeline.load import INTEGRATION_WINDOWS, Loaded, lines_in_range
from psnmf.pipeline.progress import Progress
from psnmf.pipeline.summary import Composition, HeldoutDeviance, UnmixResult
from psnmf.selection import (
    DEFAULT_COMPONENTS,
    DEVIANCE_FLOOR,
    SPLIT_FRACTION,
    SWEEP_ITERATIONS,
    ModelChoice,
    choose_model,
    count_split,
    fitted_means,
    heldout_deviance,
)

logger = logging.getLogger(__name__)

#: Iteration caps of the final fit (binned stage, full stage).
FINAL_ITERATIONS = (1000, 200)
#: Bootstrap replicates for the ± of the component compositions in the report.
DEFAULT_BOOTSTRAP = 20


def make_estimator(
    k: int, b: int, *, seed: int | None, iterations: tuple[int, int],
    smoothing: float | str | None, pure_spectra: bool,
    image_shape: tuple[int, int] | None = None,
) -> PSNMF:
    """The one place the pipeline builds a :class:`psnmf.PSNMF`.

    ``pure_spectra`` picks ``spectra='pure'`` (pure-pixel spectra where the data show pure
    pixels) or ``'nmf'`` (the paper's binned-stage spectra); ``iterations`` are the caps
    of the binned and the full-resolution stage.
    """
    return PSNMF(
        n_components=k, bin_factor=b, spectra="pure" if pure_spectra else "nmf",
        smoothing=smoothing, random_state=seed, max_iter=iterations[0],
        max_iter_full=iterations[1], image_shape=image_shape,
    )


@dataclass
class Split:
    """The counts as CSR (pixels, channels) and their count split ``X1 + X2``."""

    counts: sp.csr_matrix
    X1: sp.csr_matrix
    X2: sp.csr_matrix
    image_shape: tuple[int, int]

    @property
    def total(self) -> float:
        """Total counts."""
        return float(self.counts.sum())

    @property
    def counts_per_pixel(self) -> float:
        """Mean counts per pixel."""
        return self.total / (self.image_shape[0] * self.image_shape[1])


def split(signal: Any, seed: int | None) -> Split:
    """Counts of ``signal`` split by binomial thinning (fraction 0.5, seeded)."""
    counts, shape, _ = signals.as_counts(signal, None)
    X1, X2 = count_split(counts, SPLIT_FRACTION, random_state=seed)
    return Split(sp.csr_matrix(counts), X1, X2, shape)


def choose(
    data: Split, *, k: int | None, b: int | None, bins: Sequence[int] | None,
    components: Sequence[int] | None, seed: int | None, progress: Progress,
    auto_components: Sequence[int] = DEFAULT_COMPONENTS,
) -> ModelChoice:
    """Choose ``k`` and/or ``b`` by held-out deviance (:func:`psnmf.selection.choose_model`).

    ``k``/``b`` given fix that parameter; the candidate fits are the paper's PSNMF
    (``spectra='nmf'``, no smoothing) with the iteration caps ``SWEEP_ITERATIONS``.
    """
    shape = data.image_shape

    def fit(X: sp.csr_matrix, bin_factor: int, n_components: int) -> PSNMF:
        return make_estimator(n_components, bin_factor, seed=seed, iterations=SWEEP_ITERATIONS,
                              smoothing=None, pure_spectra=False, image_shape=shape).fit(X)

    return choose_model(
        data.X1, data.X2, shape, fit, bins=bins if b is None else (b,),
        components=components if k is None else (k,), auto_components=auto_components,
        seed=seed, progress=progress.iterate,
    )


@dataclass
class PCABaseline:
    """HyperSpy PCA denoising with ``k`` components and its scree (explained variance)."""

    denoised: Any
    scree: np.ndarray


def pca(signal: Any, k: int, seed: int | None) -> PCABaseline:
    """PCA of ``signal`` as HyperSpy users run it (:func:`psnmf.baselines.pca_denoise`)."""
    model, scree = pca_denoise(signal, k, n_factors=PCA_DIMENSION, random_state=seed,
                               return_scree=True)
    return PCABaseline(model, scree)


@dataclass
class Fitted:
    """The final PSNMF fit and its outputs as signals."""

    model: PSNMF
    denoised: Any
    spectra: Any
    maps: Any


def fit(signal: Any, k: int, b: int, *, seed: int | None, iterations: tuple[int, int],
        smoothing: float | str | None, pure_spectra: bool) -> Fitted:
    """PSNMF of the whole signal: component spectra, maps and the denoised cube."""
    model = make_estimator(k, b, seed=seed, iterations=iterations, smoothing=smoothing,
                           pure_spectra=pure_spectra).fit(signal)
    denoised = model.reconstruct()
    denoised.metadata.General.title = "PSNMF denoised"
    if not all(model.converged_.values()):
        logger.info("PSNMF stopped at the iteration caps %s", model.n_iter_)
    return Fitted(model, denoised, model.get_spectra(), model.get_maps())


def score(
    signal: Any, data: Split, k: int, b: int, *, seed: int | None,
    iterations: tuple[int, int], smoothing: float | str | None, pure_spectra: bool,
    notes: list[str],
) -> HeldoutDeviance:
    """Held-out deviance of raw (``X1`` predicts ``X2``), PCA and PSNMF fitted on ``X1``.

    The PSNMF of ``X1`` is configured as the final fit; all three share one floor.
    """
    X1, X2, shape = data.X1, data.X2, data.image_shape
    dev_raw = heldout_deviance(X2, lambda sl: X1[sl].toarray(), floor=DEVIANCE_FLOOR)
    half = make_estimator(k, b, seed=seed, iterations=iterations, smoothing=smoothing,
                          pure_spectra=pure_spectra, image_shape=shape).fit(X1)
    dev_psnmf = heldout_deviance(X2, fitted_means(half), floor=DEVIANCE_FLOOR)
    try:
        half_signal = signals.cube_signal(
            X1.toarray().reshape(*shape, -1).astype(np.float64), signal
        )
        pca_half = pca(half_signal, k, seed).denoised
        del half_signal
        dev_pca: float | None = heldout_deviance(
            X2, np.asarray(pca_half.data).reshape(shape[0] * shape[1], -1),
            floor=DEVIANCE_FLOOR,
        )
    except ValueError as exc:
        notes.append(f"PCA of the first half of the counts failed ({exc}); no PCA score.")
        dev_pca = None
    return HeldoutDeviance(raw=dev_raw, pca=dev_pca, psnmf=dev_psnmf, floor=DEVIANCE_FLOOR,
                           fraction=SPLIT_FRACTION, seed=seed, heldout_counts=float(X2.sum()))


@dataclass
class ElementMaps:
    """Line intensities (exspy ``get_lines_intensity``) of the raw, PCA and PSNMF data.

    ``maps[kind][line]``: 2-D array, ``kind`` in ``'raw'``, ``'pca'``, ``'psnmf'``.
    """

    lines: list[str]
    maps: dict[str, dict[str, np.ndarray]]


def element_maps(loaded: Loaded, pca_denoised: Any, denoised: Any,
                 notes: list[str]) -> ElementMaps:
    """Elemental maps (+-1.2 FWHM windows) of each line inside the energy range."""
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
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, s in (("raw", loaded.signal), ("pca", pca_denoised), ("psnmf", denoised)):
        intensities = s.get_lines_intensity(
            xray_lines=lines, integration_windows=INTEGRATION_WINDOWS, only_one=True
        )
        out[name] = {line: np.asarray(m.data, dtype=float)
                     for line, m in zip(lines, intensities, strict=True)}
    return ElementMaps(lines, out)


def quantify(model: PSNMF, data: Split, signal: Any, lines: list[str], n_boot: int,
             seed: int | None, notes: list[str]) -> Composition | None:
    """Cliff-Lorimer composition of every component with bootstrap ± (report table).

    ``None`` with fewer than two elements, or when the bootstrap fails (noted).
    """
    from psnmf.quantify import model_for_signal
    from psnmf.uncertainty import bootstrap

    elements = list(dict.fromkeys(line.split("_")[0] for line in lines))
    if len(elements) < 2:
        return None
    try:
        res = bootstrap(model, data.counts, n_boot=n_boot, elements=elements,
                        edx_model=model_for_signal(signal), random_state=seed)
        rows = res.composition_rows(names=[f"#{j}" for j in range(model.spectra_.shape[0])])
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        notes.append(f"The compositions could not be computed ({exc}); no composition table.")
        return None
    return Composition(
        rows=rows, level=0.95, elements=elements, n_boot=n_boot,
        method=(f"Atomic % by line fitting and Cliff-Lorimer with theoretical k-factors "
                f"(psnmf.quantify), ± one bootstrap standard deviation and the 95% interval "
                f"from {n_boot} parametric bootstrap replicates of the binned stage "
                "(psnmf.uncertainty)."),
        note=("The intervals cover counting noise and the spread of the NMF solution, not "
              "errors of the k-factors or of the element list: with theoretical k-factors "
              "expect a few at.% of systematic error, and elements outside the list are "
              "attributed to the continuum."),
    )


def write_signals(result: UnmixResult, out: Path) -> dict[str, Path]:
    """The denoised cubes, component spectra and maps as ``.hspy``; returns {role: path}."""
    return {
        "denoised": io.save_signal(result.denoised, out / "denoised.hspy", overwrite=True),
        "pca_denoised": io.save_signal(result.pca_denoised, out / "pca_denoised.hspy",
                                       overwrite=True),
        "spectra": io.save_signal(result.spectra, out / "component_spectra.hspy",
                                  overwrite=True),
        "maps": io.save_signal(result.maps, out / "component_maps.hspy", overwrite=True),
    }


def write_figures(result: UnmixResult, out: Path) -> dict[str, Path]:
    """The report's figures as PNG (and ``sweep.png`` when k or b was chosen)."""
    from psnmf import report

    paths = report.write_figures(result, out)
    if result.selection is not None:
        paths["sweep_figure"] = report.save_sweep_figure(result.selection, out / "sweep.png")
    return paths
