"""One call from a microscope file to unmixed, denoised results and a report.

:func:`unmix` is what ``psnmf unmix FILE`` runs, :func:`sweep` what ``psnmf sweep FILE``
runs. Both accept a file path (anything :func:`psnmf.io.load_spectrum_image` reads) or a
HyperSpy EDS spectrum image.

The steps of :func:`unmix`
--------------------------
1. Load the EDS spectrum image and crop its energy axis (default: drop the zero-energy
   noise peak, i.e. channels below 0.2 keV, and channels above the beam energy; above
   20 keV only if an element's main line needs them).
2. Split the counts by binomial thinning into two independent halves ``X1``, ``X2``
   (:func:`psnmf.selection.count_split`, seeded).
3. Choose the number of components ``k`` and/or the bin factor ``b`` when asked
   (``n_components=None``, ``bin_factor="auto"``) by held-out Poisson deviance (see
   :func:`sweep`): ``k`` by 5-fold count splitting of the binned counts (binned stage
   fitted on four fifths, scored on the rest), then ``b`` by fitting PSNMF on ``X1`` and
   scoring it on ``X2``.
4. PCA of the full data as HyperSpy users run it (``decomposition`` with
   ``normalize_poissonian_noise=True``): scree plot and the PCA-denoised baseline with the
   same ``k``.
5. PSNMF of the full data: component spectra, maps, denoised cube.
6. Held-out deviance of raw (``X1`` predicts ``X2``), PCA (fitted on ``X1``) and PSNMF
   (fitted on ``X1``), all with the same floor.
7. Elemental maps of the raw, PCA and PSNMF data (exspy ``get_lines_intensity``).
8. Write everything (when ``output_dir`` is given): signals as ``.hspy``, figures as PNG,
   ``summary.json`` and a self-contained ``report.html``.

Examples
--------
>>> from psnmf.workflow import unmix                                       # doctest: +SKIP
>>> res = unmix("../shared/data/real/test_TEM.bcf", output_dir="tem_out")  # doctest: +SKIP
>>> res.deviance                                                           # doctest: +SKIP
{'raw': 11.2, 'pca': 1.31, 'psnmf': 1.27, ...}
"""

from __future__ import annotations

import contextlib
import logging
import math
import platform
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf import __version__
from psnmf import hyperspy as _signals
from psnmf.baselines import PCA_DIMENSION, pca_denoise
from psnmf.engine.binning import bin_counts, binned_shape
from psnmf.estimator import PSNMF
from psnmf.selection import (
    DEVIANCE_FLOOR,
    count_folds,
    count_split,
    heldout_deviance,
    poisson_deviance,
)

logger = logging.getLogger(__name__)

#: Bin factors tried by default (``bin_factor="auto"``, ``psnmf sweep``).
DEFAULT_BINS: tuple[int, ...] = (2, 4, 8, 16)
#: Numbers of components tried by default (``n_components=None``).
DEFAULT_COMPONENTS: tuple[int, ...] = (2, 3, 4, 5, 6)
#: Lower end of the default energy range (keV): drops the zero-energy (noise) peak.
LOW_ENERGY_CUT = 0.2
#: Upper end of the default energy range when the beam energy allows more (keV).
HIGH_ENERGY_CUT = 20.0
#: Fraction of the counts in the fitting half of the count split.
SPLIT_FRACTION = 0.5
#: Width of the line integration windows, in FWHM of the line (i.e. +-1.2 FWHM).
INTEGRATION_WINDOWS = 2.4
#: Counts per binned pixel wanted where the number of components is scored (_first_bin).
TARGET_BINNED_COUNTS = 3000.0
#: Fewest binned pixels where the number of components is scored (_first_bin).
MIN_BINNED_PIXELS = 100
#: Folds of the count split that scores the number of components: each candidate is
#: fitted on all folds but one and scored on that one, for every fold.
COMPONENT_FOLDS = 5
#: Iteration caps of the candidate fits of a sweep (binned stage, full stage).
SWEEP_ITERATIONS = (200, 50)
#: Iteration caps of the final fit (binned stage, full stage).
FINAL_ITERATIONS = (1000, 200)
#: Bootstrap replicates for the ± of the component compositions in the report.
DEFAULT_BOOTSTRAP = 20


# ---------------------------------------------------------------------------------------
# Progress and messages
# ---------------------------------------------------------------------------------------
class Progress:
    """Step timer with optional tqdm progress bars on stderr.

    Parameters
    ----------
    enabled : bool
        Show progress bars.
    verbose : bool
        Also log each finished step with its time (to stderr).
    stream : file-like, default sys.stderr
    """

    def __init__(self, enabled: bool = True, verbose: bool = False, stream: Any = None) -> None:
        self.enabled = enabled
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stderr
        self.timings: dict[str, float] = {}
        self._bar: Any = None

    def start(self, total: int, desc: str) -> None:
        """Open the bar of the whole run, ``total`` steps."""
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed}",
            )

    def close(self) -> None:
        """Close the bar of the run."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @contextlib.contextmanager
    def step(self, name: str, label: str) -> Iterator[None]:
        """Time a step (stored in ``timings[name]``) and advance the bar."""
        if self._bar is not None:
            self._bar.set_description_str(label)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.timings[name] = self.timings.get(name, 0.0) + dt
            if self._bar is not None:
                self._bar.update(1)
            if self.verbose:
                self.write(f"  {label}: {dt:.1f} s")

    def iterate(self, items: Sequence[Any], desc: str) -> Iterator[Any]:
        """Iterate with a nested bar (one tick per item)."""
        if not self.enabled:
            yield from items
            return
        from tqdm.auto import tqdm

        yield from tqdm(
            items, desc=desc, file=self.stream, leave=False, dynamic_ncols=True, position=1
        )

    def write(self, message: str) -> None:
        """Print a message without breaking the bars."""
        if self._bar is not None:
            from tqdm.auto import tqdm

            tqdm.write(message, file=self.stream)
        else:
            print(message, file=self.stream)


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """Held-out Poisson deviance of PSNMF for candidate bin factors and component numbers.

    Attributes
    ----------
    rows : list of dict
        PSNMF fitted on one half of the counts and scored on the other, one row per
        candidate ``(b, k)`` in the order run: ``bin_factor``, ``n_components``,
        ``deviance`` (held-out Poisson deviance per count, lower is better), ``stage``
        (``'k'``, ``'b'`` or ``'grid'``), ``n_iter`` and ``time_s``.
    best : dict
        The chosen row: the lowest deviance among the rows with the chosen ``k``.
    k_rows : list of dict
        How ``k`` was chosen when there were several candidates (else empty): per ``k``,
        the held-out deviance per count of the binned stage alone, fitted and scored by
        ``k_folds``-fold count splitting of the counts binned by ``k_bin``; same keys as
        ``rows`` (``stage`` ``'k'``). The chosen ``k`` has the lowest one.
    k_bin, k_folds : bin factor and number of folds of that k stage.
    fraction, floor, seed : the count split of ``rows`` and the deviance settings.
    """

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    fraction: float = SPLIT_FRACTION
    floor: float = DEVIANCE_FLOOR
    seed: int | None = 0
    paths: dict[str, Path] = field(default_factory=dict)
    k_rows: list[dict[str, Any]] = field(default_factory=list)
    k_bin: int | None = None
    k_folds: int = COMPONENT_FOLDS

    @property
    def bins(self) -> list[int]:
        """The bin factors tried (full PSNMF fits)."""
        return sorted({r["bin_factor"] for r in self.rows})

    @property
    def components(self) -> list[int]:
        """The numbers of components tried."""
        return sorted({r["n_components"] for r in self.rows + self.k_rows})

    def to_text(self) -> str:
        """The tables as aligned text (chosen rows marked with ``*``)."""
        lines = []
        if self.k_rows:
            k_best = self.best["n_components"]
            lines += [
                f"k: binned stage on the counts binned {self.k_bin} x {self.k_bin}, "
                f"{self.k_folds}-fold count splitting",
                "       k   held-out deviance/count   iterations   time",
                "       --  -----------------------   ----------   ------",
            ]
            for r in self.k_rows:
                mark = "*" if r["n_components"] == k_best else " "
                dev = "failed" if r["deviance"] is None else f"{r['deviance']:.5f}"
                lines.append(
                    f"{mark}      {r['n_components']:<3d} {dev:>23s}   {r['n_iter']:>10s}   "
                    f"{r['time_s']:5.1f} s"
                )
            lines.append(f"b: PSNMF on half of the counts, scored on the other half (k = {k_best})")
        lines += [
            "  b    k   held-out deviance/count   iterations (binned+full)   time",
            "  --   --  -----------------------   ------------------------   ------",
        ]
        for r in sorted(self.rows, key=lambda r: (r["n_components"], r["bin_factor"])):
            mark = "*" if r is self.best else " "
            dev = "failed" if r["deviance"] is None else f"{r['deviance']:.5f}"
            lines.append(
                f"{mark} {r['bin_factor']:<4d} {r['n_components']:<3d} {dev:>23s}   "
                f"{r['n_iter']:>24s}   {r['time_s']:5.1f} s"
            )
        b, k = self.best["bin_factor"], self.best["n_components"]
        lines.append(f"best: bin factor {b}, {k} components (* above)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rows": self.rows,
            "best": {key: self.best[key] for key in ("bin_factor", "n_components", "deviance")},
            "k_stage": {"bin_factor": self.k_bin, "folds": self.k_folds, "rows": self.k_rows}
            if self.k_rows else None,
            "split_fraction": self.fraction,
            "deviance_floor": self.floor,
            "seed": self.seed,
            "files": {k: str(v) for k, v in self.paths.items()},
        }


@dataclass
class UnmixResult:
    """Everything :func:`unmix` produced.

    Attributes
    ----------
    model : PSNMF
        The fitted estimator (spectra_, maps_, scale_, loss_, n_iter_).
    signal : EDS signal
        The raw data after energy cropping (what was unmixed).
    denoised, pca_denoised : EDS signals
        PSNMF-denoised (fused) cube and HyperSpy PCA-denoised cube (same ``k``).
    spectra, maps : signals
        Component spectra (k | channels, rows sum to one) and maps (k | y, x, summing to
        one per pixel).
    element_maps : dict
        ``{'raw'|'pca'|'psnmf': {xray_line: 2-D ndarray}}`` line intensities.
    deviance : dict
        Held-out Poisson deviance per count: ``raw``, ``pca``, ``psnmf``, with ``floor``
        and ``fraction`` of the split.
    scree : ndarray
        PCA explained variance ratio of the first components.
    sweep : SweepResult or None
        The search over b and/or k, when one ran.
    summary : dict
        What ``summary.json`` holds.
    paths : dict
        Written files, by role (empty when no ``output_dir`` was given).
    warnings : list of str
        Things the user should know (also emitted as ``UserWarning``).
    """

    model: PSNMF
    signal: Any
    denoised: Any
    pca_denoised: Any
    spectra: Any
    maps: Any
    element_maps: dict[str, dict[str, np.ndarray]]
    deviance: dict[str, Any]
    scree: np.ndarray
    sweep: SweepResult | None
    summary: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_components(self) -> int:
        """Number of components used."""
        return int(self.model.spectra_.shape[0])

    @property
    def bin_factor(self) -> int:
        """Bin factor used."""
        return int(self.model.bin_factor_)


# ---------------------------------------------------------------------------------------
# Loading and energy range
# ---------------------------------------------------------------------------------------
def _load(
    path_or_signal: Any,
    energy_range: tuple[float | None, float | None] | None,
    elements: Sequence[str] | None,
    notes: list[str],
) -> tuple[Any, dict[str, Any]]:
    """Load (or take) the signal and crop its energy axis; returns (signal, info)."""
    from psnmf import io

    if _signals.is_signal(path_or_signal):
        signal = path_or_signal
        _signals.check_spectrum_image(signal, "path_or_signal")
        if not hasattr(signal, "get_lines_intensity"):
            signal = signal.deepcopy()
            signal.set_signal_type("EDS_TEM")
        else:
            signal = signal.deepcopy()
        if elements is not None:
            io._set_elements(signal, elements)
        source = {"file": None, "title": signal.metadata.General.get_item("title", "")}
    else:
        source_path = Path(path_or_signal).expanduser()
        signal = io.load_spectrum_image(source_path, elements=elements)
        source = dict(signal.metadata.General.psnmf_source.as_dictionary())
        source["sha256"] = io.file_checksum(source_path)
    if hasattr(signal.data, "compute"):
        signal.compute()
    axis = signal.axes_manager.signal_axes[0]
    energies = np.asarray(axis.axis, dtype=float)
    width = float(energies[1] - energies[0]) if energies.size > 1 else 1.0
    full = (float(energies[0]), float(energies[-1] + width))
    beam = _beam_energy(signal)
    if energy_range is None:
        rng, why = _default_energy_range(signal, full, beam)
        cropped = io._crop_energy(signal, rng, source.get("file") or "signal")
        total = float(np.asarray(signal.data.sum(), dtype=float))
        kept = float(np.asarray(cropped.data.sum(), dtype=float))
        if total > 0 and (kept < 0.01 * total or kept < 100):
            notes.append(
                f"Only {kept:.0f} of {total:.0f} counts ({100 * kept / total:.2g} %) lie in the "
                f"default energy range {rng[0]:.3g}-{rng[1]:.3g} keV: almost all counts of this "
                "file are in the zero-energy (detector noise) peak, so there is next to no "
                "X-ray signal. The run used the full energy range up to "
                f"{rng[1]:.3g} keV, including the zero-energy peak; its components and maps "
                "describe that peak, not phases. Check the acquisition (or pass "
                "energy_range / --energy-range explicitly)."
            )
            rng = (full[0], rng[1])
            why = "full range from the first channel (default range held almost no counts)"
            cropped = io._crop_energy(signal, rng, source.get("file") or "signal")
        signal = cropped
    else:
        lo, hi = energy_range
        rng = (full[0] if lo is None else float(lo), full[1] if hi is None else float(hi))
        why = "given by the user"
        signal = io._crop_energy(signal, energy_range, source.get("file") or "signal")
    signal.metadata.General.title = signal.metadata.General.get_item("title", "") or "EDS"
    info = {
        "source": source,
        "energy_range_keV": [float(rng[0]), float(rng[1])],
        "energy_range_reason": why,
        "full_energy_range_keV": list(full),
        "beam_energy_keV": beam,
        "signal_type": signal.metadata.Signal.signal_type,
    }
    return signal, info


def _beam_energy(signal: Any) -> float | None:
    for mode in ("TEM", "SEM"):
        value = signal.metadata.get_item(f"Acquisition_instrument.{mode}.beam_energy")
        if value is not None:
            return float(value)
    return None


def _main_lines(signal: Any) -> list[str]:
    """The X-ray line exspy would integrate for each element (one per element)."""
    elements = list(signal.metadata.get_item("Sample.elements", []) or [])
    if not elements:
        return []
    lines = signal.metadata.get_item("Sample.xray_lines")
    if lines:
        return [str(x) for x in lines]
    try:
        return list(signal._get_lines_from_elements(elements, only_one=True, only_lines=("a",)))
    except Exception:  # pragma: no cover - exspy internals
        return []


def _line_energy(line: str) -> float:
    from exspy.material import elements as db

    el, ln = line.split("_")
    return float(db[el]["Atomic_properties"]["Xray_lines"][ln]["energy (keV)"])


def _default_energy_range(
    signal: Any, full: tuple[float, float], beam: float | None
) -> tuple[tuple[float, float], str]:
    lo = max(LOW_ENERGY_CUT, full[0])
    hi = full[1]
    parts = [f"from {LOW_ENERGY_CUT} keV (drops the zero-energy noise peak)"]
    if beam is not None and beam < hi:
        hi = beam
        parts.append(f"up to the beam energy ({beam:g} keV)")
    if hi > HIGH_ENERGY_CUT:
        needed = [_line_energy(x) for x in _main_lines(signal)]
        top = max([HIGH_ENERGY_CUT, *[1.1 * e + 0.5 for e in needed]])
        if top < hi:
            hi = top
            parts.append(f"up to {top:g} keV (above it no main line of the elements)")
    if hi >= full[1]:
        parts.append("up to the end of the axis")
    return (lo, hi), ", ".join(parts)


# ---------------------------------------------------------------------------------------
# Held-out deviance
# ---------------------------------------------------------------------------------------
def _psnmf_predictor(model: PSNMF):
    A = model.maps_.reshape(-1, model.spectra_.shape[0])
    scale = model.scale_.reshape(-1)
    S = model.spectra_
    return lambda sl: scale[sl, None] * (A[sl] @ S)


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "auto"


def _positive_int_or_auto(value: Any, name: str) -> int:
    """``value`` as an int >= 1; the error names ``name`` and the 'auto' alternative."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer or 'auto', got {value!r}.") from None
    if number < 1:
        raise ValueError(f"{name} must be >= 1, got {number}.")
    return number


def _fit_psnmf(counts: Any, shape: tuple[int, int], b: int, k: int, seed: int | None,
               iterations: tuple[int, int]) -> PSNMF:
    """The paper's PSNMF (no vertex correction, no smoothing), as the search fits it."""
    return _final_estimator(k, b, seed, iterations, None, False, shape).fit(counts)


# ---------------------------------------------------------------------------------------
# Sweep
# ---------------------------------------------------------------------------------------
def _valid_bins(bins: Sequence[int], shape: tuple[int, int], k: int) -> list[int]:
    out = []
    for b in bins:
        b = int(b)
        if b < 1:
            raise ValueError(f"bin factors must be >= 1, got {b}.")
        if b <= min(shape) and int(np.prod(binned_shape(shape, b))) >= max(k, 4):
            out.append(b)
    return out


def _first_bin(bins: Sequence[int], counts_per_pixel: float,
               shape: tuple[int, int] | None = None) -> int:
    """Bin factor on which the number of components is scored.

    The smallest of ``bins`` giving ``TARGET_BINNED_COUNTS`` counts per binned pixel
    among those leaving at least ``MIN_BINNED_PIXELS`` binned pixels on ``shape`` (the
    largest of those if none gives that many counts; the smallest of ``bins`` if none
    leaves that many pixels).

    Why: the phases are told apart by the binned stage, so ``k`` is scored there, where
    every binned pixel holds enough counts for its mixture to be determined. Too few
    counts and a small or rare phase is not resolved, so ``k`` comes out too low (the
    catalyst's Pt, 1 % of the counts at 18 counts/pixel, won at about 1150 counts per
    binned pixel and lost at about 290). Many more than needed slow the multiplicative
    updates (at about 37,000 counts per binned pixel the 200-iteration fits of the true
    ``k`` had not converged and ``k + 1`` scored better; at 9,400 they were fine),
    dilute small phases in mixed binned pixels and leave fewer pixels to score on.
    ``TARGET_BINNED_COUNTS`` lies between those measurements.
    """
    ordered = sorted(int(b) for b in bins)
    if shape is not None:
        roomy = [b for b in ordered
                 if int(np.prod(binned_shape(shape, b))) >= MIN_BINNED_PIXELS]
        if not roomy:
            return ordered[0]
        ordered = roomy
    for b in ordered:
        if b * b * counts_per_pixel >= TARGET_BINNED_COUNTS:
            return b
    return ordered[-1]


def _score_components(
    counts: sp.csr_matrix,
    shape: tuple[int, int],
    b: int,
    components: Sequence[int],
    *,
    seed: int | None,
    progress: Progress,
    max_iter: int,
) -> list[dict[str, Any]]:
    """Held-out deviance per count of the binned stage for each ``k`` (the k stage).

    The counts binned by ``b`` are split into ``COMPONENT_FOLDS`` folds; for each fold the
    binned stage of PSNMF (Poisson NMF with per-pixel simplex, as in the final fit) is
    fitted on the other folds and its prediction, scaled to one fold, scored on that fold.
    The deviances are summed over the folds and divided by the total counts, so every
    count is held out once and each fit sees ``(folds - 1) / folds`` of the counts.
    """
    binned = bin_counts(counts, shape, b)
    folds = count_folds(binned, COMPONENT_FOLDS, seed)
    total = float(binned.sum())
    rows: list[dict[str, Any]] = []
    for k in progress.iterate(list(components), f"choosing k (b={b})"):
        t0 = time.perf_counter()
        dev: float | None = 0.0
        n_iter: list[int] = []
        try:
            for test in folds:
                train = binned - test
                train.eliminate_zeros()
                stage1, S, A = PSNMF(
                    n_components=k, bin_factor=b, random_state=seed, max_iter=max_iter
                )._fit_binned(train, k)
                pred = stage1.scale[:, None] * (A @ S) / (COMPONENT_FOLDS - 1)
                dev += poisson_deviance(test, pred, floor=DEVIANCE_FLOOR, per_count=False)
                n_iter.append(int(stage1.n_iter))
        except ValueError as exc:  # e.g. more components than binned pixels
            logger.info("k stage b=%d k=%d failed: %s", b, k, exc)
            dev = None
        value = None if dev is None or total <= 0 else dev / total
        rows.append({
            "bin_factor": int(b), "n_components": int(k),
            "deviance": None if value is None or not math.isfinite(value) else float(value),
            "stage": "k", "n_iter": str(max(n_iter)) if n_iter else "-",
            "time_s": time.perf_counter() - t0,
        })
    return rows


def _parse_choices(values: Any, name: str) -> tuple[int, ...] | None:
    if values is None or (isinstance(values, str) and values.strip().lower() == "auto"):
        return None
    if isinstance(values, str):
        values = [v for v in values.replace(" ", "").split(",") if v]
    if isinstance(values, int | np.integer):
        values = [values]
    try:
        out = tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be integers such as 2,4,8 (or 'auto'), got {values!r}."
        ) from None
    if not out or min(out) < 1:
        raise ValueError(f"{name} must be positive integers, got {values!r}.")
    return out


def _search(
    X1: sp.csr_matrix,
    X2: sp.csr_matrix,
    shape: tuple[int, int],
    bins: tuple[int, ...] | None,
    components: tuple[int, ...] | None,
    *,
    seed: int | None,
    progress: Progress,
    iterations: tuple[int, int] = SWEEP_ITERATIONS,
    auto_components: tuple[int, ...] = DEFAULT_COMPONENTS,
) -> SweepResult:
    """Choose ``k`` (when several are candidates) and ``b``; see :func:`sweep`.

    ``components=None`` means ``auto_components``. With several candidates, ``k`` is
    chosen first, by :func:`_score_components` on the counts ``X1 + X2`` binned by
    :func:`_first_bin` (of ``bins`` and ``DEFAULT_BINS``): held-out deviance of the
    binned stage, where the spectra are estimated. Then PSNMF is fitted on ``X1`` and
    scored on ``X2`` for every ``b`` in ``bins`` at that ``k`` (for every ``(b, k)`` when
    ``components`` were given), and ``b`` is the best one at the chosen ``k``.

    Why not the full-resolution deviance for ``k`` as well: it also charges every
    component for the noise of its per-pixel abundances, which at low counts outweighs
    what a small phase adds. Scored that way at the ~50 counts per binned pixel of the
    former search it chose k = 2 for all four simulated three-phase samples at 18
    counts/pixel (96 x 96 and 180 x 180, seeds 0-2); on 180 x 180 even fitted on 80 % of
    the counts, at each k's own best ``b``, it still chose 2 for the catalyst (Pt, 1 % of
    the counts) and left the ceramic a tie, while the binned stage chooses 3 for all.
    """
    cpp = float(X1.sum() + X2.sum()) / (shape[0] * shape[1])
    cache: dict[tuple[int, int], dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def score(points: list[tuple[int, int]], stage: str, desc: str) -> None:
        todo = [p for p in points if p not in cache]
        for b, k in progress.iterate(todo, desc):
            t0 = time.perf_counter()
            try:
                model = _fit_psnmf(X1, shape, b, k, seed, iterations)
                dev = heldout_deviance(X2, _psnmf_predictor(model))
                n_iter = f"{model.n_iter_['binned']}+{model.n_iter_['full']}"
            except ValueError as exc:  # e.g. too many components for the binned image
                logger.info("candidate b=%d k=%d failed: %s", b, k, exc)
                dev, n_iter = None, "-"
            row = {
                "bin_factor": b, "n_components": k,
                "deviance": None if dev is None or not math.isfinite(dev) else float(dev),
                "stage": stage, "n_iter": n_iter, "time_s": time.perf_counter() - t0,
            }
            cache[(b, k)] = row
            rows.append(row)

    all_bins = tuple(bins) if bins is not None else DEFAULT_BINS
    candidates = tuple(auto_components if components is None else components)
    k_rows: list[dict[str, Any]] = []
    k_bin: int | None = None
    if len(candidates) > 1:
        pool = _valid_bins(sorted({*all_bins, *DEFAULT_BINS}), shape, max(candidates))
        if not pool:
            raise ValueError(
                f"no bin factor leaves at least {max(*candidates, 4)} binned pixels on the "
                f"{shape[0]} x {shape[1]} image; use fewer components."
            )
        k_bin = _first_bin(pool, cpp, shape)
        k_rows = _score_components(
            X1 + X2, shape, k_bin, candidates, seed=seed, progress=progress,
            max_iter=iterations[0],
        )
        k_best = int(_best(k_rows)["n_components"])
    else:
        k_best = int(candidates[0])

    grid = components is not None and len(candidates) > 1
    ks = candidates if grid else (k_best,)
    ok = _valid_bins(all_bins, shape, max(ks))
    if not ok:
        raise ValueError(
            f"none of the bin factors {list(all_bins)} leaves at least {max(*ks, 4)} binned "
            f"pixels on the {shape[0]} x {shape[1]} image; use smaller ones."
        )
    if grid:
        score([(b, k) for k in ks for b in ok], "grid" if len(ok) > 1 else "k", "sweep")
    else:
        score([(b, k_best) for b in ok], "b", f"choosing b (k={k_best})")
    return SweepResult(rows=rows, best=_best(rows, k_best), seed=seed, k_rows=k_rows,
                       k_bin=k_bin)


def _best(rows: list[dict[str, Any]], n_components: int | None = None) -> dict[str, Any]:
    """The scored row with the lowest deviance (among those with ``n_components``).

    Ties go to fewer components, then to the larger bin factor.
    """
    scored = [r for r in rows if r["deviance"] is not None
              and (n_components is None or r["n_components"] == n_components)]
    if not scored:
        raise ValueError(
            "every candidate fit failed, so no bin factor / number of components could be "
            "scored; try smaller bin factors or fewer components."
        )
    return min(scored, key=lambda r: (r["deviance"], r["n_components"], -r["bin_factor"]))


def _split(signal: Any, seed: int | None) -> tuple[sp.csr_matrix, sp.csr_matrix,
                                                     sp.csr_matrix, tuple[int, int]]:
    counts, shape, _ = _signals.as_counts(signal, None)
    X1, X2 = count_split(counts, SPLIT_FRACTION, random_state=seed)
    return sp.csr_matrix(counts), X1, X2, shape


def sweep(
    path_or_signal: Any,
    bins: Sequence[int] | str | None = DEFAULT_BINS,
    components: Sequence[int] | int | str | None = None,
    *,
    seed: int | None = 0,
    energy_range: tuple[float | None, float | None] | None = None,
    elements: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> SweepResult:
    """Score bin factors and numbers of components by held-out Poisson deviance.

    Counts are split by binomial thinning (``seed``) into parts with independent Poisson
    noise; a model is fitted on one part and its prediction of the other scored by the
    Poisson deviance per count (lower is better).

    * ``k`` (when there are several candidates) is scored where the spectra are
      estimated, on the binned stage: the counts are binned by one bin factor giving
      about 3000 counts per binned pixel while leaving at least 100 binned pixels (see
      ``_first_bin``), split into 5 folds, and for every fold and ``k`` the binned stage is
      fitted on the other four and scored on it. The ``k`` with the lowest total wins
      (``SweepResult.k_rows``).
    * ``b``: PSNMF (both stages) is fitted on one half of the counts at that ``k`` and
      scored on the other half at full resolution (``SweepResult.rows``). Binning helps
      until it blurs the phases: the curve over ``b`` has its minimum where the spectra
      are best estimated without losing the maps.

    The full-resolution score is not used for ``k``: it also charges each component for
    the noise of its per-pixel abundances, and at low counts that favours too few
    components (the former search, which scored ``k`` that way, chose k = 2 for all four
    simulated three-phase samples at 18 counts/pixel).

    Parameters
    ----------
    path_or_signal : path or HyperSpy EDS spectrum image
    bins : sequence of int, default (2, 4, 8, 16)
        Bin factors to try (too large ones for the image are skipped).
    components : sequence of int, int, 'auto' or None
        Numbers of components. ``None``/``'auto'``: ``k`` in 2..6 chosen on the binned
        stage, then ``bins`` at that ``k``. Several given: the same choice of ``k`` among
        them, and the table holds the full grid ``bins x components`` (``best`` is the
        best ``b`` at the chosen ``k``, which need not be the lowest row). One given: only
        ``b`` is chosen.
    seed : int
        Seed of the count split and of the NMF initialisations.
    energy_range, elements : as in :func:`unmix`.
    output_dir : path, optional
        Write ``sweep.json``, ``sweep.txt`` and ``sweep.png`` there.
    overwrite : bool
        Accept a non-empty ``output_dir``.
    progress, verbose : bool
        Progress bars and step timings on stderr.

    Returns
    -------
    SweepResult
        ``.rows`` (the full-resolution table), ``.k_rows`` (the choice of ``k``),
        ``.best`` and ``.to_text()``.

    Examples
    --------
    >>> res = sweep("../shared/data/real/test_TEM.bcf", bins=(2, 4, 8, 16))  # doctest: +SKIP
    >>> print(res.to_text())                                                # doctest: +SKIP
    """
    from psnmf import io

    bins_t = _parse_choices(bins, "bins")
    comps_t = _parse_choices(components, "components")
    out = io.prepare_output_dir(output_dir, overwrite) if output_dir is not None else None
    prog = Progress(progress, verbose)
    notes: list[str] = []
    with _quiet_libraries(verbose):
        signal, info = _load(path_or_signal, energy_range, elements, notes)
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=2)
        _, X1, X2, shape = _split(signal, seed)
        result = _search(X1, X2, shape, bins_t, comps_t, seed=seed, progress=prog)
    if out is not None:
        from psnmf import report

        result.paths["json"] = io.write_json(
            {**result.to_dict(), "input": info, "psnmf_version": __version__},
            out / "sweep.json",
        )
        result.paths["table"] = io.write_text(result.to_text() + "\n", out / "sweep.txt")
        result.paths["figure"] = report.save_sweep_figure(result, out / "sweep.png")
    return result


# ---------------------------------------------------------------------------------------
# Unmix
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_libraries(verbose: bool) -> Iterator[None]:
    """Silence HyperSpy/exspy/RosettaSciIO chatter (deprecations, info logs)."""
    names = ("hyperspy", "exspy", "rsciio")
    old = {n: logging.getLogger(n).level for n in names}
    with warnings.catch_warnings():
        if not verbose:
            for n in names:
                logging.getLogger(n).setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", module=r"(hyperspy|exspy|rsciio|dask)")
            try:
                from hyperspy.exceptions import VisibleDeprecationWarning

                warnings.filterwarnings("ignore", category=VisibleDeprecationWarning)
            except ImportError:  # pragma: no cover
                pass
        try:
            yield
        finally:
            for n, level in old.items():
                logging.getLogger(n).setLevel(level)


def _pca(signal: Any, k: int, seed: int | None = 0) -> tuple[Any, np.ndarray]:
    """HyperSpy PCA denoising (see :func:`psnmf.baselines.pca_denoise`) and its scree."""
    return pca_denoise(signal, k, n_factors=PCA_DIMENSION, random_state=seed, return_scree=True)


def _element_maps(signals: dict[str, Any], lines: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """exspy line intensities (+-1.2 FWHM windows) of each signal, by line."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, s in signals.items():
        maps = s.get_lines_intensity(
            xray_lines=lines, integration_windows=INTEGRATION_WINDOWS, only_one=True
        )
        out[name] = {
            line: np.asarray(m.data, dtype=float) for line, m in zip(lines, maps, strict=True)
        }
    return out


def _lines_in_range(signal: Any) -> tuple[list[str], list[str]]:
    """(lines inside the energy axis, lines outside it)."""
    lines = _main_lines(signal)
    axis = signal.axes_manager.signal_axes[0]
    lo, hi = float(axis.axis[0]), float(axis.axis[-1])
    inside, outside = [], []
    for line in lines:
        try:
            energy, fwhm = signal._get_line_energy(line, FWHM_MnKa="auto")
        except Exception:  # pragma: no cover - unknown line
            outside.append(line)
            continue
        half = INTEGRATION_WINDOWS * fwhm / 2
        (inside if lo <= energy - half and energy + half <= hi else outside).append(line)
    return inside, outside


def unmix(
    path_or_signal: Any,
    *,
    n_components: int | str | None = None,
    bin_factor: int | str = "auto",
    energy_range: tuple[float | None, float | None] | None = None,
    elements: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    seed: int | None = 0,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = False,
    bins: Sequence[int] = DEFAULT_BINS,
    components: Sequence[int] = DEFAULT_COMPONENTS,
    max_iter: int = FINAL_ITERATIONS[0],
    max_iter_full: int = FINAL_ITERATIONS[1],
    report: bool = True,
    smoothing: float | str | None = "auto",
    vertex: bool = True,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> UnmixResult:
    """Read, unmix and denoise an EDX spectrum image; write results and a report.

    Parameters
    ----------
    path_or_signal : path or HyperSpy EDS spectrum image
        Any file :func:`psnmf.io.load_spectrum_image` reads (Bruker .bcf, Velox .emd, JEOL
        .pts, EDAX .spd, .hspy, .npz, ...), or a signal with two navigation axes.
    n_components : int, 'auto' or None (default)
        Number of phases ``k``. ``None``/``'auto'``: the ``k`` in ``components`` with the
        lowest held-out Poisson deviance of the binned stage (count splitting; see
        :func:`sweep`).
    bin_factor : int or 'auto' (default)
        Spatial bin factor ``b`` of PSNMF's first stage. ``'auto'``: the ``b`` in ``bins``
        with the lowest held-out deviance (see :func:`sweep`).
    energy_range : (lo, hi) in keV, optional
        Channels used. Default: from 0.2 keV (drops the zero-energy noise peak) to the
        beam energy (to 20 keV, or further if an element's main line needs it). If that
        range holds almost no counts (a file with only the noise peak) the full range is
        used and a warning says so.
    elements : list of str, optional
        Elements for the elemental maps and line markers. Default: the file's metadata.
    output_dir : path, optional
        Where to write the results (see below). ``None`` writes nothing.
    seed : int
        Seed of the count split and of the NMF initialisation (results are reproducible).
    overwrite : bool
        Accept a non-empty ``output_dir`` (files are replaced).
    progress, verbose : bool
        Progress bars, and step timings, on stderr.
    bins, components : sequences of int
        Candidates for ``'auto'``.
    max_iter, max_iter_full : int
        Iteration caps of the final PSNMF fit (binned stage, full-resolution stage).
    report : bool
        Write the figures and ``report.html`` (needs ``output_dir``).
    smoothing : float, 'auto' (default) or None
        Total-variation regularisation of the maps (:mod:`psnmf.engine.tv_maps`): ``'auto'``
        chooses the weight by held-out deviance (0, i.e. none, is a candidate), a number is
        the weight relative to the counts per pixel, ``None`` keeps per-pixel maps.
    vertex : bool
        Move each binned-stage spectrum to its pure-pixel cluster when the data show one
        (:class:`psnmf.improve.PSNMFPlus`; a phase that is never pure keeps its NMF
        spectrum). ``False`` gives the paper's PSNMF spectra.
    n_boot : int
        Bootstrap replicates for the ± of the component compositions
        (:func:`psnmf.uncertainty.bootstrap`); 0 skips the composition table.

    Returns
    -------
    UnmixResult

    Notes
    -----
    Files written to ``output_dir``: ``denoised.hspy`` (PSNMF-denoised cube, with the input's
    axes and metadata), ``pca_denoised.hspy``, ``component_spectra.hspy`` and
    ``component_maps.hspy`` (+ ``component_spectra.png``, ``component_maps.png``),
    ``element_maps.png`` (raw vs PCA vs PSNMF), ``scree.png``, ``deviance.png``,
    ``loss.png``, ``sum_spectrum.png``, ``sweep.png`` (when b or k was chosen),
    ``summary.json`` and the self-contained ``report.html``.

    The held-out deviance: the counts are split in two halves ``X1``, ``X2``; raw
    predicts ``X2`` by ``X1``, PCA and PSNMF by their fits to ``X1`` (same ``k`` and
    ``b``); the Poisson deviance per count of ``X2`` is reported with predicted means
    floored at ``1e-6``. Lower is better; raw is the no-denoising reference.

    Examples
    --------
    >>> from psnmf.workflow import unmix                                    # doctest: +SKIP
    >>> res = unmix("../shared/data/real/test_TEM.bcf", output_dir="out")   # doctest: +SKIP
    >>> res.maps, res.denoised, res.paths["report"]                         # doctest: +SKIP
    """
    from psnmf import io

    t_start = time.perf_counter()
    k_auto = n_components is None or _is_auto(n_components)
    b_auto = _is_auto(bin_factor)
    if not k_auto:
        n_components = _positive_int_or_auto(n_components, "n_components")
    if not b_auto:
        bin_factor = _positive_int_or_auto(bin_factor, "bin_factor")
    out = io.prepare_output_dir(output_dir, overwrite) if output_dir is not None else None
    prog = Progress(progress, verbose)
    notes: list[str] = []
    n_steps = 7 + int(k_auto or b_auto) + int(out is not None) * 2
    prog.start(n_steps, "psnmf unmix")
    try:
        with _quiet_libraries(verbose):
            result = _unmix_steps(
                path_or_signal, prog, notes, out,
                k=None if k_auto else int(n_components),  # type: ignore[arg-type]
                b=None if b_auto else int(bin_factor),
                energy_range=energy_range, elements=elements, seed=seed,
                bins=tuple(bins), components=tuple(components),
                iterations=(int(max_iter), int(max_iter_full)), write_report=report,
                t_start=t_start, smoothing=smoothing, vertex=bool(vertex),
                n_boot=int(n_boot),
            )
    finally:
        prog.close()
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return result


def _unmix_steps(
    path_or_signal: Any,
    prog: Progress,
    notes: list[str],
    out: Path | None,
    *,
    k: int | None,
    b: int | None,
    energy_range: Any,
    elements: Any,
    seed: int | None,
    bins: tuple[int, ...],
    components: tuple[int, ...],
    iterations: tuple[int, int],
    write_report: bool,
    t_start: float,
    smoothing: float | str | None = "auto",
    vertex: bool = True,
    n_boot: int = DEFAULT_BOOTSTRAP,
) -> UnmixResult:
    from psnmf import io

    with prog.step("load", "loading"):
        signal, info = _load(path_or_signal, energy_range, elements, notes)
        counts, X1, X2, shape = _split(signal, seed)
        ny, nx = shape
        total = float(counts.sum())
        cpp = total / (ny * nx)

    sweep_result = None
    if k is None or b is None:
        with prog.step("sweep", "choosing " + " and ".join(
            x for x, auto in (("k", k is None), ("b", b is None)) if auto
        )):
            sweep_result = _search(
                X1, X2, shape, bins if b is None else (b,), None if k is None else (k,),
                seed=seed, progress=prog, auto_components=components,
            )
        k = k if k is not None else int(sweep_result.best["n_components"])
        b = b if b is not None else int(sweep_result.best["bin_factor"])

    with prog.step("pca", "PCA (HyperSpy)"):
        pca_model, scree = _pca(signal, k, seed)

    with prog.step("psnmf", f"PSNMF k={k} b={b}"):
        model = _final_estimator(k, b, seed, iterations, smoothing, vertex).fit(signal)
        denoised = model.reconstruct()
        denoised.metadata.General.title = "PSNMF denoised"
        spectra = model.get_spectra()
        maps = model.get_maps()
        if not all(model.converged_.values()):
            logger.info("PSNMF stopped at the iteration caps %s", model.n_iter_)

    with prog.step("heldout", "held-out deviance"):
        floor = DEVIANCE_FLOOR
        dev_raw = heldout_deviance(X2, lambda sl: X1[sl].toarray(), floor=floor)
        half = _final_estimator(k, b, seed, iterations, smoothing, vertex, shape).fit(X1)
        dev_psnmf = heldout_deviance(X2, _psnmf_predictor(half), floor=floor)
        try:
            half_signal = signal._deepcopy_with_new_data(
                X1.toarray().reshape(ny, nx, -1).astype(np.float64)
            )
            pca_half, _ = _pca(half_signal, k, seed)
            del half_signal
            dev_pca: float | None = heldout_deviance(
                X2, np.asarray(pca_half.data).reshape(ny * nx, -1), floor=floor
            )
            del pca_half
        except ValueError as exc:
            notes.append(f"PCA of the first half of the counts failed ({exc}); no PCA score.")
            dev_pca = None
        deviance = {
            "raw": dev_raw, "pca": dev_pca, "psnmf": dev_psnmf,
            "floor": floor, "fraction": SPLIT_FRACTION, "seed": seed,
            "heldout_counts": float(X2.sum()),
        }

    with prog.step("elements", "elemental maps"):
        lines, skipped = _lines_in_range(signal)
        if skipped:
            notes.append(
                "No elemental map for " + ", ".join(skipped) + ": the line window is outside "
                f"the energy range {info['energy_range_keV'][0]:.3g}-"
                f"{info['energy_range_keV'][1]:.3g} keV."
            )
        if not lines:
            notes.append(
                "No elements in the file's metadata (or none inside the energy range): no "
                "elemental maps. Pass elements=[...] / --elements Fe,O,..."
            )
        element_maps = _element_maps(
            {"raw": signal, "pca": pca_model, "psnmf": denoised}, lines
        ) if lines else {"raw": {}, "pca": {}, "psnmf": {}}

    composition = None
    if n_boot > 0 and lines:
        with prog.step("composition", f"compositions (bootstrap, {n_boot} replicates)"):
            composition = _compositions(model, counts, signal, lines, n_boot, seed, notes)

    timings = dict(prog.timings)
    summary: dict[str, Any] = {
        "psnmf_version": __version__,
        "versions": _versions(),
        "input": {
            **info,
            "shape": [ny, nx, int(signal.axes_manager.signal_axes[0].size)],
            "total_counts": total,
            "counts_per_pixel": cpp,
            "elements": list(signal.metadata.get_item("Sample.elements", []) or []),
            "xray_lines_mapped": lines,
        },
        "parameters": {
            "n_components": k,
            "n_components_choice": "auto (held-out deviance)" if sweep_result is not None
            and len(sweep_result.components) > 1 else "given",
            "bin_factor": b,
            "bin_factor_choice": "auto (held-out deviance)" if sweep_result is not None
            and len(sweep_result.bins) > 1 else "given",
            "seed": seed,
            "init": model.init,
            "stage2_spectra": model.stage2_spectra,
            "max_iter": iterations[0],
            "max_iter_full": iterations[1],
            "tol": model.tol,
            "estimator": type(model).__name__,
            "vertex_moved": (model.vertex_moved_.tolist() if hasattr(model, "vertex_moved_")
                             else None),
            "smoothing": smoothing,
            "n_boot": n_boot,
            "integration_windows_fwhm": INTEGRATION_WINDOWS,
            "pca": "HyperSpy decomposition(normalize_poissonian_noise=True, algorithm='SVD', "
            f"svd_solver='randomized', output_dimension={PCA_DIMENSION}, navigation_mask=None)"
            f", get_decomposition_model({k})",
        },
        "heldout_deviance": {
            **deviance,
            "method": "binomial count split (fraction 0.5); raw: X1 predicts X2; PCA and "
            "PSNMF: fitted on X1 with the same k and b; Poisson deviance of X2 per count, "
            "predicted means floored",
        },
        "psnmf": {
            "n_iter": model.n_iter_,
            "converged": model.converged_,
            "loss": {key: np.asarray(v, dtype=float) for key, v in model.loss_.items()},
            "component_pixel_fraction": model.maps_.reshape(-1, k).mean(0),
        },
        "smoothing": model.smoothing_,
        "composition": composition,
        "pca_explained_variance_ratio": scree,
        "sweep": sweep_result.to_dict() if sweep_result is not None else None,
        "warnings": list(notes),
        "timings_s": timings,
    }
    result = UnmixResult(
        model=model, signal=signal, denoised=denoised, pca_denoised=pca_model,
        spectra=spectra, maps=maps, element_maps=element_maps, deviance=deviance,
        scree=scree, sweep=sweep_result, summary=summary, warnings=notes,
    )

    if out is not None:
        with prog.step("save", "writing signals"):
            paths = result.paths
            paths["denoised"] = io.save_signal(denoised, out / "denoised.hspy", overwrite=True)
            paths["pca_denoised"] = io.save_signal(
                pca_model, out / "pca_denoised.hspy", overwrite=True
            )
            paths["spectra"] = io.save_signal(
                spectra, out / "component_spectra.hspy", overwrite=True
            )
            paths["maps"] = io.save_signal(maps, out / "component_maps.hspy", overwrite=True)
        with prog.step("report", "figures and report"):
            if write_report:
                from psnmf import report as report_mod

                paths.update(report_mod.write_figures(result, out))
                if sweep_result is not None:
                    paths["sweep_figure"] = report_mod.save_sweep_figure(
                        sweep_result, out / "sweep.png"
                    )
        summary["timings_s"] = dict(prog.timings)
        summary["timings_s"]["total"] = time.perf_counter() - t_start
        summary["files"] = {key: p.name for key, p in result.paths.items()}
        summary["files"]["summary"] = "summary.json"
        if write_report:
            summary["files"]["report"] = "report.html"
            from psnmf import report as report_mod

            result.paths["report"] = report_mod.write_html(result, out / "report.html")
        result.paths["summary"] = io.write_json(summary, out / "summary.json")
    else:
        summary["timings_s"]["total"] = time.perf_counter() - t_start
    return result


def _final_estimator(
    k: int, b: int, seed: int | None, iterations: tuple[int, int],
    smoothing: float | str | None, vertex: bool, shape: tuple[int, int] | None = None,
) -> PSNMF:
    """The estimator of the final fit (and of its held-out score, on half the counts)."""
    from psnmf.improve import PSNMFPlus

    est = PSNMFPlus if vertex else PSNMF
    return est(
        n_components=k, bin_factor=b, random_state=seed, max_iter=iterations[0],
        max_iter_full=iterations[1], smoothing=smoothing, image_shape=shape,
    )


def _compositions(
    model: PSNMF, counts: Any, signal: Any, lines: list[str], n_boot: int,
    seed: int | None, notes: list[str],
) -> dict[str, Any] | None:
    """Cliff-Lorimer composition of every component, with bootstrap ± (report table)."""
    from psnmf.quantify import model_for_signal
    from psnmf.uncertainty import bootstrap

    elements = list(dict.fromkeys(line.split("_")[0] for line in lines))
    if len(elements) < 2:
        return None
    try:
        res = bootstrap(model, counts, n_boot=n_boot, elements=elements,
                        edx_model=model_for_signal(signal), random_state=seed)
        rows = res.composition_rows(names=[f"#{j}" for j in range(model.spectra_.shape[0])])
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        notes.append(f"The compositions could not be computed ({exc}); no composition table.")
        return None
    return {
        "rows": rows, "level": 0.95, "elements": elements, "n_boot": n_boot,
        "method": (f"Atomic % by line fitting and Cliff-Lorimer with theoretical k-factors "
                   f"(psnmf.quantify), ± one bootstrap standard deviation and the 95% interval "
                   f"from {n_boot} parametric bootstrap replicates of the binned stage "
                   "(psnmf.uncertainty)."),
        "note": ("The intervals cover counting noise and the spread of the NMF solution, not "
                 "errors of the k-factors or of the element list: with theoretical k-factors "
                 "expect a few at.% of systematic error, and elements outside the list are "
                 "attributed to the continuum."),
    }


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "scikit-learn", "hyperspy", "exspy", "rosettasciio",
                 "matplotlib"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:  # pragma: no cover
            out[name] = "not installed"
    return out


def format_summary(result: UnmixResult) -> str:
    """The closing summary printed by ``psnmf unmix``."""
    s = result.summary
    inp = s["input"]
    par = s["parameters"]
    dev = result.deviance
    src = inp["source"].get("file") or "signal"
    lo, hi = inp["energy_range_keV"]
    lines = [
        f"psnmf unmix: {src}",
        f"  data        {inp['shape'][0]} x {inp['shape'][1]} pixels x {inp['shape'][2]} "
        f"channels ({lo:.3g} to {hi:.3g} keV), {inp['counts_per_pixel']:.3g} counts/pixel, "
        f"elements {', '.join(inp['elements']) or 'none'}",
        f"  model       k = {par['n_components']} components ({par['n_components_choice']}), "
        f"bin factor b = {par['bin_factor']} ({par['bin_factor_choice']}), seed {par['seed']}",
    ]
    frac = result.model.maps_.reshape(-1, result.n_components).mean(0)
    lines.append(
        "  components  mean abundance " + ", ".join(
            f"#{i}: {f:.2f}" for i, f in enumerate(frac)
        )
    )
    moved = par.get("vertex_moved")
    if moved is not None:
        lines.append("  spectra     pure-pixel vertex moved for " + (
            ", ".join(f"#{i}" for i, m in enumerate(moved) if m) or "none (no pure cluster)"
        ))
    sm = s.get("smoothing") or {}
    if sm.get("penalty"):
        how = "auto (held-out deviance)" if sm.get("deviance") else "given"
        lines.append(f"  maps        total-variation weight {sm['relative']:.3g} x counts/pixel "
                     f"({how})")
    comp = s.get("composition")
    if comp:
        for j in range(result.n_components):
            rows = [r for r in comp["rows"] if r["component"] == f"#{j}"]
            lines.append(f"  at.% #{j}     " + ", ".join(
                f"{r['element']} {r['at_percent']:.1f}±{r['sd']:.1f}" for r in rows))
    pca = "n/a" if dev["pca"] is None else f"{dev['pca']:.4f}"
    lines.append(
        f"  held-out Poisson deviance per count (lower is better): raw {dev['raw']:.4f} | "
        f"PCA {pca} | PSNMF {dev['psnmf']:.4f}"
    )
    if result.sweep is not None:
        best = result.sweep.best
        lines.append(
            f"  search      {len(result.sweep.rows)} candidates, best b = {best['bin_factor']}, "
            f"k = {best['n_components']} (deviance {best['deviance']:.4f})"
        )
    lines.append(f"  time        {s['timings_s'].get('total', float('nan')):.1f} s")
    for note in result.warnings:
        lines.append(f"  warning     {note}")
    if result.paths:
        folder = Path(result.paths["summary"]).parent
        lines.append(f"  results     {folder}/")
        if "report" in result.paths:
            lines.append(f"  report      {result.paths['report']}")
        lines.append(
            "  files       " + ", ".join(
                sorted(p.name for key, p in result.paths.items() if key != "report")
            )
        )
    return "\n".join(lines)
