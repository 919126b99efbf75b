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
   (:func:`psnmf.metrics.count_split`, seeded).
3. Choose the number of components ``k`` and/or the bin factor ``b`` when asked
   (``n_components=None``, ``bin_factor="auto"``): fit PSNMF on ``X1`` for each candidate
   and keep the one with the lowest held-out Poisson deviance on ``X2`` (see :func:`sweep`).
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

from psnmf import __version__, _signals
from psnmf.baselines import PCA_DIMENSION, pca_denoise
from psnmf.binning import binned_shape
from psnmf.metrics import count_split, poisson_deviance
from psnmf.pansharpen import PSNMF

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
#: Floor of the predicted means in the held-out deviance (see poisson_deviance).
DEVIANCE_FLOOR = 1e-6
#: Width of the line integration windows, in FWHM of the line (i.e. +-1.2 FWHM).
INTEGRATION_WINDOWS = 2.4
#: Target counts per binned pixel for the first bin factor of the two-stage search.
TARGET_BINNED_COUNTS = 50.0
#: Iteration caps of the candidate fits of a sweep (binned stage, full stage).
SWEEP_ITERATIONS = (200, 50)
#: Iteration caps of the final fit (binned stage, full stage).
FINAL_ITERATIONS = (1000, 200)


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
        One per candidate, in the order run: ``bin_factor``, ``n_components``,
        ``deviance`` (held-out Poisson deviance per count, lower is better), ``stage``
        (``'k'``, ``'b'`` or ``'grid'``), ``n_iter`` and ``time_s``.
    best : dict
        The row with the lowest deviance.
    fraction, floor, seed : the count split and deviance settings.
    """

    rows: list[dict[str, Any]]
    best: dict[str, Any]
    fraction: float = SPLIT_FRACTION
    floor: float = DEVIANCE_FLOOR
    seed: int | None = 0
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def bins(self) -> list[int]:
        """The bin factors tried."""
        return sorted({r["bin_factor"] for r in self.rows})

    @property
    def components(self) -> list[int]:
        """The numbers of components tried."""
        return sorted({r["n_components"] for r in self.rows})

    def to_text(self) -> str:
        """The table as aligned text (best row marked with ``*``)."""
        lines = [
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
def heldout_deviance(
    X2: sp.csr_matrix, predict: Any, *, floor: float = DEVIANCE_FLOOR, chunk: int = 2048
) -> float:
    """Poisson deviance per count of held-out counts under a prediction, by row blocks.

    The same number as ``poisson_deviance(X2, M, floor=floor)`` with ``M`` the full
    prediction, without holding ``M`` in memory at once.

    Parameters
    ----------
    X2 : CSR (pixels, channels) held-out counts
    predict : callable ``slice -> ndarray (rows, channels)`` or an array (pixels, channels)
    floor : float
        Predicted means below it count as ``floor`` (so zeros of a raw prediction and
        negative PCA values give a finite score).
    """
    X2 = sp.csr_matrix(X2)
    n = X2.shape[0]
    total = float(X2.sum())
    if total <= 0:
        return float("nan")
    dev = 0.0
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        block = predict(sl) if callable(predict) else np.asarray(predict[sl])
        dev += poisson_deviance(X2[sl], block, floor=floor, per_count=False)
    return dev / total


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
    return PSNMF(
        n_components=k,
        bin_factor=b,
        random_state=seed,
        max_iter=iterations[0],
        max_iter_full=iterations[1],
        image_shape=shape,
    ).fit(counts)


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


def _first_bin(bins: Sequence[int], counts_per_pixel: float) -> int:
    """Smallest bin factor giving ``TARGET_BINNED_COUNTS`` counts per binned pixel."""
    for b in sorted(bins):
        if b * b * counts_per_pixel >= TARGET_BINNED_COUNTS:
            return int(b)
    return int(max(bins))


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
    """Score candidates; ``components=None`` means the two-stage search over
    ``auto_components`` then ``bins``."""
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

    if components is None:
        all_bins = bins if bins is not None else DEFAULT_BINS
        ok = _valid_bins(all_bins, shape, max(auto_components))
        if not ok:
            raise ValueError(
                f"none of the bin factors {list(all_bins)} fits the {shape[0]} x {shape[1]} "
                "image; use smaller ones."
            )
        b0 = _first_bin(ok, cpp)
        score([(b0, k) for k in auto_components], "k", f"choosing k (b={b0})")
        k_best = _best(rows)["n_components"]
        if bins is None or len(ok) > 1:
            score([(b, k_best) for b in ok], "b", f"choosing b (k={k_best})")
    else:
        all_bins = bins if bins is not None else DEFAULT_BINS
        ok = _valid_bins(all_bins, shape, max(components))
        if not ok:
            raise ValueError(
                f"none of the bin factors {list(all_bins)} leaves at least {max(components)} "
                f"binned pixels on the {shape[0]} x {shape[1]} image; use smaller ones."
            )
        stage = "grid" if len(ok) > 1 and len(components) > 1 else (
            "b" if len(ok) > 1 else "k"
        )
        score([(b, k) for k in components for b in ok], stage, "sweep")
    return SweepResult(rows=rows, best=_best(rows), seed=seed)


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in rows if r["deviance"] is not None]
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

    The counts are split by binomial thinning into two halves (``seed``); PSNMF is fitted
    on one half for each candidate and its prediction of the other half scored by the
    Poisson deviance per count (lower is better). Binning helps until it blurs the phases:
    the curve over ``b`` has its minimum where the spectra are best estimated without
    losing the maps.

    Parameters
    ----------
    path_or_signal : path or HyperSpy EDS spectrum image
    bins : sequence of int, default (2, 4, 8, 16)
        Bin factors to try (too large ones for the image are skipped).
    components : sequence of int, int, 'auto' or None
        Numbers of components. ``None``/``'auto'``: a two-stage search, ``k`` in
        2..6 at a bin factor giving about 50 counts per binned pixel, then ``bins`` at the
        best ``k``. Given explicitly: the full grid ``bins x components``.
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
        ``.rows`` (the table), ``.best`` and ``.to_text()``.

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
) -> UnmixResult:
    """Read, unmix and denoise an EDX spectrum image; write results and a report.

    Parameters
    ----------
    path_or_signal : path or HyperSpy EDS spectrum image
        Any file :func:`psnmf.io.load_spectrum_image` reads (Bruker .bcf, Velox .emd, JEOL
        .pts, EDAX .spd, .hspy, .npz, ...), or a signal with two navigation axes.
    n_components : int, 'auto' or None (default)
        Number of phases ``k``. ``None``/``'auto'``: the ``k`` in ``components`` with the
        lowest held-out Poisson deviance (count splitting).
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
    n_steps = 6 + int(k_auto or b_auto) + int(out is not None) * 2
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
                t_start=t_start,
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
        model = PSNMF(
            n_components=k, bin_factor=b, random_state=seed,
            max_iter=iterations[0], max_iter_full=iterations[1],
        ).fit(signal)
        denoised = model.reconstruct()
        denoised.metadata.General.title = "PSNMF denoised"
        spectra = model.get_spectra()
        maps = model.get_maps()
        if not all(model.converged_.values()):
            logger.info("PSNMF stopped at the iteration caps %s", model.n_iter_)

    with prog.step("heldout", "held-out deviance"):
        floor = DEVIANCE_FLOOR
        dev_raw = heldout_deviance(X2, lambda sl: X1[sl].toarray(), floor=floor)
        half = _fit_psnmf(X1, shape, b, k, seed, iterations)
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
