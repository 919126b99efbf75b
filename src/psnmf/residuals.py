"""Residual maps: where the fitted model fails to explain the counts.

Each pixel is scored by the Poisson deviance of its counts under the final model's
prediction, with the pixel's total as its count scale (the maximum-likelihood value, which
the model uses), so a pixel scores only how its counts spread over the energies (a missed
phase, a trace element, a wrong spectrum), not its brightness. The channels are summed into
energy windows narrower than the detector's resolution first (:data:`N_WINDOWS`), which keeps
every peak and makes the cost ``pixels x windows`` instead of ``pixels x channels``.

Each pixel's deviance ``D`` is standardised by the mean and variance it would have if the
model were the truth (``E``, ``V``: exact Poisson moments of the deviance at each predicted
mean, tabulated once): ``z = (D - E) / sqrt(V)``. The model was fitted to these counts, so
``D`` runs a little below ``E`` everywhere (each pixel's ``k`` abundances absorb some
noise); scoring the model's fit to one half of a count split on the other half would avoid
that, but there a pixel's own estimation noise dominates at low counts (per-pixel maps from
a few counts: single pixels scored 10 sd off on correct models), which is not what a
residual map should show. One pixel at 100 counts says little, so regions are scored too:
sums of ``D``, ``E`` and ``V`` over sliding ``r x r`` windows (:data:`SCALES`), turned into
normal scores with a chi-square tail (deviances of few counts are skewed) and standardised
robustly across the image (median and MAD), which absorbs the uniform shift. A region whose
robust score exceeds the Bonferroni bound (:data:`ALPHA` over every window of every scale)
is structure the model did not explain; the most extreme one is the worst-fitted region,
whose summed raw spectrum is compared with the model's, window by window, to name the
energies (and the X-ray lines there, from exspy's table) that the model misses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy import stats

from psnmf.selection import DEVIANCE_FLOOR

#: Energy windows the channels are summed into (at most): 2048 channels of 10 eV become
#: windows of 80 eV, below the 120-140 eV resolution of an EDX detector at Mn K-alpha.
N_WINDOWS = 256
#: Sizes (pixels) of the square regions scored; the ones larger than a third of the image
#: are left out.
SCALES = (2, 4, 8, 16, 32)
#: Fewest non-overlapping regions of a scale for its median and spread to be trusted.
MIN_TILES = 16
#: Family-wise false-alarm rate of the structure test, over all regions of all scales.
ALPHA = 0.01
#: Windows of the worst region's spectrum whose excess or deficit is at least this many
#: standard deviations are reported.
PEAK_SIGMA = 5.0
#: Pixels per chunk of the window-by-pixel evaluation (8,192 x 256 float64 = 16 MB per
#: array, about six alive at once).
CHUNK = 8192


@dataclass
class Peak:
    """An energy range where the worst region's counts depart from the model."""

    energy_keV: float
    sigma: float  #: (raw - model) / sqrt(model) of the window, positive for an excess
    raw: float  #: counts of the region in the window
    model: float  #: the model's counts there
    lines: list[str] = field(default_factory=list)  #: X-ray lines within reach (exspy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"energy_keV": self.energy_keV, "sigma": self.sigma, "raw": self.raw,
                "model": self.model, "lines": list(self.lines)}


@dataclass
class Residuals:
    """Standardised deviance per pixel, the worst-fitted region and its spectrum.

    Attributes
    ----------
    z : ndarray (ny, nx)
        ``(D - E) / sqrt(V)`` per pixel (NaN where a pixel has no counts or no
        prediction); near 0 (a little below) where the model is right, large where it
        misses.
    region : (y0, y1, x0, x1)
        The worst-fitted region (a slice of the image: ``z[y0:y1, x0:x1]``).
    region_score : float
        Its robust score (standard deviations above the typical region of its size).
    threshold : float
        The bound the score is tested against (Bonferroni at :data:`ALPHA`).
    structured : bool
        Whether some region exceeds its bound: structure the model did not explain.
    energy : ndarray (windows,)
        Centre of each energy window (keV) of the region's spectra.
    raw, model : ndarray (windows,)
        Counts of the worst region and the model's prediction of them, per window.
    peaks : list of Peak
        Windows (merged where adjacent) of the region with an excess or a deficit of at
        least :data:`PEAK_SIGMA` standard deviations, largest first.
    """

    z: np.ndarray
    region: tuple[int, int, int, int]
    region_score: float
    threshold: float
    structured: bool
    energy: np.ndarray
    raw: np.ndarray
    model: np.ndarray
    peaks: list[Peak] = field(default_factory=list)

    @property
    def message(self) -> str:
        """One sentence for the summary and the report."""
        y0, y1, x0, x1 = self.region
        where = f"x {x0}-{x1 - 1}, y {y0}-{y1 - 1} ({x1 - x0} x {y1 - y0} px)"
        if not self.structured:
            return (f"No residual structure: every region is predicted within noise (the "
                    f"worst, {where}, scores {self.region_score:.1f} sd against a bound "
                    f"of {self.threshold:.1f}).")
        text = (f"The residuals show structure the model did not explain: the region "
                f"{where} is predicted {self.region_score:.1f} sd worse than a typical "
                f"region (bound {self.threshold:.1f}).")
        excess = [p for p in self.peaks if p.sigma > 0][:3]
        if excess:
            text += " Its counts exceed the model at " + ", ".join(
                f"{p.energy_keV:.2f} keV" + (f" ({', '.join(p.lines[:3])})" if p.lines else "")
                for p in excess) + ": a missed phase or element?"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the map itself is written as a signal)."""
        y0, y1, x0, x1 = self.region
        return {"structured": self.structured, "region": {"y": [y0, y1], "x": [x0, x1]},
                "region_score": self.region_score, "threshold": self.threshold,
                "alpha": ALPHA, "peaks": [p.to_dict() for p in self.peaks],
                "message": self.message}


@functools.cache
def deviance_moments() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and variance of the Poisson deviance ``2 [y log(y/m) - y + m]``, ``y ~ Pois(m)``,
    on a grid of ``log m`` from the deviance floor to ``1e4`` (exact sums over ``y``).

    Returns ``(log m, mean, variance)``; above the grid the large-``m`` limits (1, 2) hold
    to better than 1e-4.
    """
    log_m = np.linspace(np.log(DEVIANCE_FLOOR), np.log(1e4), 600)
    mean, var = np.empty_like(log_m), np.empty_like(log_m)
    for i, m in enumerate(np.exp(log_m)):
        hi = int(m + 12 * np.sqrt(m) + 25)
        lo = max(0, int(m - 12 * np.sqrt(m)))
        y = np.arange(lo, hi + 1, dtype=np.float64)
        p = stats.poisson.pmf(y, m)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = 2.0 * (np.where(y > 0, y * np.log(y / m), 0.0) - y + m)
        mean[i] = p @ d
        var[i] = p @ (d * d) - mean[i] ** 2
    return log_m, mean, var


def window_matrix(n_channels: int, n_windows: int = N_WINDOWS) -> sp.csr_matrix:
    """(channels, windows) 0/1 matrix summing consecutive channels into at most
    ``n_windows`` windows of equal width (the last one may be narrower)."""
    width = max(1, -(-n_channels // n_windows))
    cols = np.arange(n_channels) // width
    return sp.csr_matrix((np.ones(n_channels), (np.arange(n_channels), cols)),
                         shape=(n_channels, int(cols[-1]) + 1))


def pixel_deviance(
    X: sp.csr_matrix, maps: np.ndarray, spectra: np.ndarray,
    windows: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel deviance ``D`` of counts under a model, and its mean ``E`` and variance
    ``V`` if the model were the truth.

    Parameters
    ----------
    X : CSR (pixels, channels)
        Counts.
    maps : ndarray (pixels, k)
        Abundances of the model (rows summing to one; NaN rows are pixels without a
        prediction).
    spectra : ndarray (k, channels)
        Its spectra (rows summing to one).
    windows : CSR (channels, windows), optional
        Energy windows (default :func:`window_matrix`).

    Returns
    -------
    D, E, V : ndarray (pixels,)
        NaN where a pixel has no counts or no prediction. The predicted mean of a window is
        the pixel's total times its model spectrum there, floored at the
        deviance floor.
    """
    W = window_matrix(X.shape[1]) if windows is None else windows
    Xw = sp.csr_matrix(X @ W)
    Sw = np.asarray((W.T @ np.asarray(spectra, dtype=np.float64).T).T)
    t = np.asarray(Xw.sum(axis=1)).ravel()
    log_m, mean, var = deviance_moments()
    n = Xw.shape[0]
    D, E, V = (np.full(n, np.nan) for _ in range(3))
    for start in range(0, n, CHUNK):
        sl = slice(start, min(n, start + CHUNK))
        A = np.asarray(maps[sl], dtype=np.float64)
        ok = (t[sl] > 0) & np.all(np.isfinite(A), axis=1)
        M = np.maximum(t[sl, None] * (np.where(ok[:, None], A, 0.0) @ Sw), DEVIANCE_FLOOR)
        x = Xw[sl].toarray()
        with np.errstate(divide="ignore", invalid="ignore"):
            d = 2.0 * (np.where(x > 0, x * np.log(x / M), 0.0) - x + M)
        lm = np.log(M)
        e = np.interp(lm, log_m, mean, right=1.0)
        v = np.interp(lm, log_m, var, right=2.0)
        D[sl] = np.where(ok, d.sum(axis=1), np.nan)
        E[sl] = np.where(ok, e.sum(axis=1), np.nan)
        V[sl] = np.where(ok, v.sum(axis=1), np.nan)
    return D, E, V


def _region_sums(a: np.ndarray, r: int) -> np.ndarray:
    """Sums of ``a`` over the ``r x r`` windows lying inside the image (top-left corners)."""
    c = np.pad(np.cumsum(np.cumsum(a, axis=0), axis=1), ((1, 0), (1, 0)))
    return c[r:, r:] - c[:-r, r:] - c[r:, :-r] + c[:-r, :-r]


def _region_z(D: np.ndarray, E: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Normal scores of deviances ``D`` of mean ``E`` and variance ``V``, each taken as a
    scaled chi-square ``c chi2(nu)`` with those moments (``c = V / 2E``, ``nu = 2E^2 / V``):
    a deviance summed over few counts is skewed to the right, and a normal tail would call
    its ordinary large values significant. NaN where ``V`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        c = V / (2.0 * E)
        nu = 2.0 * E * E / V
        ok = (V > 0) & (E > 0)
        z = np.full(D.shape, np.nan)
        z[ok] = stats.norm.isf(stats.chi2.sf(D[ok] / c[ok], nu[ok]))
    return np.clip(z, -40.0, 40.0)


def worst_region(
    D: np.ndarray, E: np.ndarray, V: np.ndarray, image_shape: tuple[int, int],
    scales: tuple[int, ...] = SCALES, alpha: float = ALPHA,
) -> tuple[tuple[int, int, int, int], float, float, bool]:
    """The region whose deviance departs most from the rest, and whether it is
    more than chance allows.

    At each scale ``r``, every ``r x r`` window gets ``Z = sum(D - E) / sqrt(sum V)``,
    robustly standardised over the windows (median, 1.4826 MAD) and compared with the
    one-sided normal quantile at ``alpha / (number of independent windows of all scales)``.
    A window must also exceed the bound before standardisation (``Z`` itself), so an image
    where every region scores alike is never flagged by a small spread.

    Returns ``(region (y0, y1, x0, x1), score, threshold, structured)``: the window with the
    largest score relative to its scale's threshold.
    """
    ny, nx = image_shape
    dev, mean, var = (np.nan_to_num(a.reshape(ny, nx)) for a in (D, E, V))
    usable = [r for r in scales if (ny // r) * (nx // r) >= MIN_TILES]
    usable = usable or [max(1, min(ny, nx) // 4)]
    n_tests = sum((ny - r + 1) * (nx - r + 1) for r in usable)
    threshold = float(stats.norm.isf(alpha / max(n_tests, 1)))
    best: tuple[float, tuple[int, int, int, int], float, bool] | None = None
    for r in usable:
        Z = _region_z(_region_sums(dev, r), _region_sums(mean, r), _region_sums(var, r))
        tiles = Z[::r, ::r]
        tiles = tiles[np.isfinite(tiles)]
        if tiles.size < 3:
            continue
        med = float(np.median(tiles))
        spread = max(1.4826 * float(np.median(np.abs(tiles - med))), 1.0)
        score = (Z - med) / spread
        i = int(np.nanargmax(score))
        y, x = np.unravel_index(i, score.shape)
        s = float(score[y, x])
        flagged = s > threshold
        if best is None or (flagged, s) > (best[3], best[0]):
            best = (s, (int(y), int(y) + r, int(x), int(x) + r), threshold, flagged)
    if best is None:
        return (0, ny, 0, nx), float("nan"), threshold, False
    score, region, thr, flagged = best
    return region, score, thr, flagged


def region_spectra(
    X: sp.csr_matrix, maps: np.ndarray, spectra: np.ndarray, image_shape: tuple[int, int],
    region: tuple[int, int, int, int], windows: sp.csr_matrix,
) -> tuple[np.ndarray, np.ndarray]:
    """The region's summed counts and the model's prediction of them (each pixel's total
    times its model spectrum; NaN maps count as zero), per energy window."""
    y0, y1, x0, x1 = region
    rows = (np.arange(y0, y1)[:, None] * image_shape[1] + np.arange(x0, x1)).ravel()
    Xr = X[rows]
    t = np.asarray(Xr.sum(axis=1)).ravel()
    raw = np.asarray(Xr.sum(axis=0)).ravel() @ windows
    model = (t @ np.nan_to_num(maps[rows])) @ spectra @ windows
    return np.asarray(raw).ravel(), np.asarray(model).ravel()


def find_peaks(
    energy: np.ndarray, raw: np.ndarray, model: np.ndarray, width_keV: float,
    sigma: float = PEAK_SIGMA, max_peaks: int = 6,
) -> list[Peak]:
    """Runs of windows where ``(raw - model) / sqrt(model)`` is beyond ``sigma`` (same sign),
    each summarised at its most extreme window, with the X-ray lines within
    ``max(width_keV, 0.1)`` keV of it, nearest first (exspy's line table); largest first."""
    from exspy.utils.eds import get_xray_lines_near_energy

    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(model > 0, (raw - model) / np.sqrt(np.maximum(model, 1.0)), 0.0)
    sign = np.sign(s) * (np.abs(s) >= sigma)
    peaks: list[Peak] = []
    i = 0
    while i < len(s):
        if sign[i] == 0:
            i += 1
            continue
        j = i
        while j + 1 < len(s) and sign[j + 1] == sign[i]:
            j += 1
        at = i + int(np.argmax(np.abs(s[i:j + 1])))
        e = float(energy[at])
        lines = get_xray_lines_near_energy(e, width=2 * max(width_keV, 0.1),
                                           only_lines=("a", "b", "Ma", "La", "Ka"))
        peaks.append(Peak(energy_keV=e, sigma=float(s[at]), raw=float(raw[at]),
                          model=float(model[at]), lines=list(lines)))
        i = j + 1
    peaks.sort(key=lambda p: -abs(p.sigma))
    return peaks[:max_peaks]


def residuals(
    X: sp.csr_matrix, maps: np.ndarray, spectra: np.ndarray, image_shape: tuple[int, int],
    energy: np.ndarray,
) -> Residuals:
    """Residual map and worst-fitted region of a model of the counts ``X``.

    Parameters
    ----------
    X : CSR (pixels, channels)
        The counts the model was fitted to.
    maps : ndarray (pixels, k)
        Its abundances (rows summing to one; NaN rows: pixels without a prediction).
    spectra : ndarray (k, channels)
        Its spectra (rows summing to one).
    image_shape : (ny, nx)
    energy : ndarray (channels,)
        Energy of each channel in keV.

    Examples
    --------
    A two-phase image fitted with the true factors, then with one phase missing:

    >>> rng = np.random.default_rng(0)
    >>> S = np.array([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]).repeat(64, axis=1) / 64
    >>> A = np.zeros((32 * 32, 2)); A[:, 0] = 1; A[:64, :] = [0, 1]
    >>> X = sp.csr_matrix(rng.poisson(200 * A @ S).astype(float))
    >>> e = np.linspace(0.2, 10, 256)
    >>> residuals(X, A, S, (32, 32), e).structured
    False
    >>> residuals(X, np.tile([1.0, 0.0], (1024, 1)), S, (32, 32), e).structured
    True
    """
    W = window_matrix(X.shape[1])
    D, E, V = pixel_deviance(X, maps, spectra, W)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ((D - E) / np.sqrt(V)).reshape(image_shape)
    region, score, threshold, structured = worst_region(D, E, V, image_shape)
    e_win = (np.asarray(energy, dtype=np.float64) @ W) / np.asarray(W.sum(axis=0)).ravel()
    raw, model = region_spectra(X, maps, spectra, image_shape, region, W)
    width = float(np.median(np.diff(e_win))) if e_win.size > 1 else 0.1
    return Residuals(z=z.astype(np.float32), region=region, region_score=score,
                     threshold=threshold, structured=structured, energy=e_win, raw=raw,
                     model=model, peaks=find_peaks(e_win, raw, model, width))
