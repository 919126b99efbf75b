"""Figures (PNG) of the report of :func:`psnmf.pipeline.unmix` and of ``psnmf sweep``.

Every figure is drawn on a plain :class:`matplotlib.figure.Figure` (no pyplot, no display
needed) from the typed result (:class:`psnmf.pipeline.summary.UnmixResult`, its
:class:`~psnmf.pipeline.summary.Summary`, the :class:`psnmf.selection.ModelChoice`) and
written atomically by :func:`save_png` as an 8-bit palette PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from psnmf import io
from psnmf.report.background import FigureJob

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.pipeline.summary import UnmixResult
    from psnmf.selection import ModelChoice

DPI = 110
#: Figures of the report, in display order: (key, file name, caption).
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("sum_spectrum_figure", "sum_spectrum.png",
     "Sum spectrum of the data used (log scale) with the elements' X-ray lines."),
    ("spectra_figure", "component_spectra.png",
     "PSNMF component spectra (each sums to one) with the elements' X-ray lines."),
    ("maps_figure", "component_maps.png",
     "PSNMF abundance maps: fraction of each pixel's counts in each component "
     "(the maps sum to one in every pixel)."),
    ("element_maps_figure", "element_maps.png",
     "Elemental maps (counts in each line's window, +-1.2 FWHM, exspy get_lines_intensity) "
     "of the raw data, the PCA-denoised data and the PSNMF-denoised data (colour scale of "
     "each panel: 0 to its 99.5th percentile, in counts)."),
    ("deviance_figure", "deviance.png",
     "Held-out Poisson deviance per count (count splitting): how well each method, fitted "
     "on half of the counts, predicts the other half. Lower is better."),
    ("scree_figure", "scree.png",
     "PCA scree plot (HyperSpy, Poisson-normalised SVD): explained variance ratio."),
    ("sweep_figure", "sweep.png",
     "Choice of the bin factor b and number of components k by held-out deviance."),
    ("smoothing_figure", "smoothing.png",
     "Choice of the total-variation weight of the maps: held-out deviance (count splitting, "
     "central window of the image) against the weight relative to the counts per pixel."),
    ("residuals_figure", "residuals.png",
     "Where the model fails. Left: each pixel's deviance under the fit, standardised by "
     "what it would be if the model were right (0: explained; large: the counts spread "
     "over the energies differently from the model), with the worst-fitted region boxed. "
     "Right: that region's summed counts against the model's prediction, per energy "
     "window (log scale), with the energies where they differ by 5 sd or more."),
    ("loss_figure", "loss.png", "PSNMF loss (generalised KL) per iteration of both stages."),
    ("composition_maps_figure", "composition_maps.png",
    "Composition maps of the PSNMF-denoised data (at.% per pixel, Cliff-Lorimer as the "
    "component table, from the component line intensities and the maps) above their "
    "one-sigma maps (counting noise of each pixel's counts, bootstrap spread of the "
    "spectra, k-factor and thickness uncertainty, in quadrature). Colour scale of each "
    "panel: its 0.5th to 99.5th percentile."),
)


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` (at :data:`DPI`) as a PNG of 256 palette colours, atomically.

    Matplotlib writes 32-bit RGBA. The figures are opaque and hold a colour map's 256
    colours, the lines' few and the grey shades of anti-aliased text; Pillow's
    maximum-coverage quantisation to 256 colours (no dithering) changes a pixel by at most
    about 7/255 per channel (4/255 on the map figures) and makes the files 2.5 to 3.5
    times smaller (``element_maps.png`` of a 512 x 512 map with six elements: 2.2 MB to
    0.6 MB). The data themselves are in the ``.hspy`` files.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.set_dpi(DPI)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    img = rgb.quantize(256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    with io.atomic_path(Path(path)) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return Path(path)


def line_markers(signal: Any) -> list[tuple[str, float]]:
    """(label, energy) of each element's main lines (Ka, La, Ma) inside the energy axis."""
    from exspy.material import elements as db

    axis = signal.axes_manager.signal_axes[0]
    lo, hi = float(axis.axis[0]), float(axis.axis[-1])
    out = []
    for el in signal.metadata.get_item("Sample.elements", []) or []:
        try:
            lines = db[el]["Atomic_properties"]["Xray_lines"]
        except (KeyError, AttributeError):
            continue
        for name in ("Ka", "La", "Ma"):
            if name in lines.keys():
                energy = float(lines[name]["energy (keV)"])
                if lo <= energy <= hi:
                    out.append((f"{el} {name}", energy))
    return sorted(out, key=lambda t: t[1])


def _mark_lines(ax: Any, markers: list[tuple[str, float]], labels: bool = True) -> None:
    for label, energy in markers:
        ax.axvline(energy, color="0.45", lw=0.7, ls="--", zorder=0)
        if labels:
            ax.text(
                energy, 0.98, " " + label, rotation=90, va="top", ha="right", fontsize=7,
                color="0.25", transform=ax.get_xaxis_transform(),
            )


def _energy(signal: Any) -> tuple[np.ndarray, str]:
    axis = signal.axes_manager.signal_axes[0]
    return np.asarray(axis.axis, dtype=float), f"Energy ({axis.units or 'keV'})"


def energy_limits(signal: Any, markers: list[tuple[str, float]],
                  data: np.ndarray) -> tuple[float, float]:
    """The energy range to show: from the first channel up to 1 keV beyond the highest line
    or the last channel where ``data`` exceeds 1e-3 of its maximum."""
    e, _ = _energy(signal)
    nz = np.nonzero(data > data.max() * 1e-3)[0] if data.max() > 0 else np.array([e.size - 1])
    top = max([e[nz[-1]] if nz.size else e[-1], *[m[1] for m in markers]]) + 1.0
    return float(e[0]), float(min(e[-1], top))


def sum_spectrum_figure(result: UnmixResult) -> Figure:
    """Sum spectrum of the raw data (log y) with line markers."""
    e, label = _energy(result.signal)
    total = (np.asarray(result.raw_sum, dtype=float) if result.raw_sum is not None
             else np.asarray(result.signal.data.sum(axis=(0, 1)), dtype=float))
    markers = line_markers(result.signal)
    fig = Figure(figsize=(10, 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    model = result.model  # the sum of scale * maps @ spectra over pixels, from the factors
    k = model.spectra_.shape[0]
    den = np.nansum((model.maps_ * model.scale_[..., None]).reshape(-1, k), 0) @ model.spectra_
    ax.plot(e, np.maximum(den, 0.5), color="tab:red", lw=1.6, alpha=0.6,
            label="PSNMF denoised (sum)")
    ax.plot(e, np.maximum(total, 0.5), color="k", lw=0.6, label="raw (sum of all pixels)")
    ax.set_yscale("log")
    ax.set_xlim(*energy_limits(result.signal, markers, total))
    ax.set_xlabel(label)
    ax.set_ylabel("Counts per channel")
    ax.legend(loc="upper right", fontsize=8)
    _mark_lines(ax, markers)
    return fig


def _colors(k: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(k)]


def spectra_figure(result: UnmixResult) -> Figure:
    """Component spectra, one panel each, with line markers."""
    e, label = _energy(result.signal)
    S = result.model.spectra_
    k = S.shape[0]
    markers = line_markers(result.signal)
    fig = Figure(figsize=(10, 1.9 * k + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    xlim = energy_limits(result.signal, markers, S.max(axis=0))
    frac = np.nanmean(result.model.maps_.reshape(-1, k), 0)
    for i, (ax, color) in enumerate(zip(axes, _colors(k), strict=True)):
        ax.plot(e, S[i], color=color, lw=0.9)
        ax.set_ylabel(f"#{i}", rotation=0, ha="right", va="center", fontsize=10)
        ax.text(0.995, 0.9, f"component {i}: mean abundance {frac[i]:.2f}",
                transform=ax.transAxes, ha="right", va="top", fontsize=8)
        ax.set_xlim(*xlim)
        ax.set_ylim(0, S[i].max() * 1.15 if S[i].max() > 0 else 1)
        _mark_lines(ax, markers, labels=i == 0)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel(label)
    fig.suptitle("PSNMF component spectra (fraction of counts per channel)", fontsize=10)
    return fig


def _extent(result: UnmixResult) -> tuple[list[float], str]:
    nav = result.signal.axes_manager.navigation_axes  # x, y
    x, y = nav[0], nav[1]
    units = str(x.units or "px")
    if units in ("", "<undefined>"):
        units = "px"
    ext = [x.offset - x.scale / 2, x.offset + x.scale * (x.size - 0.5),
           y.offset + y.scale * (y.size - 0.5), y.offset - y.scale / 2]
    return [float(v) for v in ext], units


def maps_figure(result: UnmixResult) -> Figure:
    """Component abundance maps (0..1), one panel each."""
    maps = result.model.maps_
    k = maps.shape[-1]
    ncol = min(k, 4)
    nrow = int(np.ceil(k / ncol))
    ext, units = _extent(result)
    fig = Figure(figsize=(3.2 * ncol + 0.8, 3.1 * nrow), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False)
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= k:
            ax.set_axis_off()
            continue
        im = ax.imshow(maps[..., i], vmin=0, vmax=1, cmap="viridis", extent=ext,
                       interpolation="nearest")
        ax.set_title(f"component {i}", fontsize=10, color=_colors(k)[i])
        ax.set_xlabel(units, fontsize=8)
        ax.tick_params(labelsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="abundance")
    return fig


def element_maps_figure(result: UnmixResult) -> Figure:
    """Raw vs PCA vs PSNMF elemental maps (rows) for each line (columns).

    A method without maps (the PCA when it could not be computed) has a row saying so.
    """
    rows = [("raw", "raw"), ("pca", "PCA denoised"), ("psnmf", "PSNMF denoised")]
    lines = list(result.element_maps.get("raw", {}))
    ext, _ = _extent(result)
    if not lines:
        fig = Figure(figsize=(6, 1.5), dpi=DPI)
        fig.text(0.5, 0.5, "No elements in the metadata: no elemental maps.", ha="center")
        return fig
    n = len(lines)
    width, height = 2.7 * n + 1.2, 8.4
    # a fixed grid (margins in inches) instead of constrained layout: its layout pass over
    # 3 n axes and their colour bars took twice as long as drawing them
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=0.45 / width, right=1 - 0.15 / width, bottom=0.1 / height,
                        top=1 - 0.4 / height, wspace=0.3, hspace=0.12)
    axes = fig.subplots(3, n, squeeze=False)
    for j, line in enumerate(lines):
        for i, (key, name) in enumerate(rows):
            ax = axes[i, j]
            data = result.element_maps.get(key, {}).get(line)
            if data is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{name}:\nnot available", ha="center", va="center",
                        transform=ax.transAxes, fontsize=9)
                continue
            vmax = float(max(np.percentile(data, 99.5), 1e-12))
            vmin = float(min(0.0, np.percentile(data, 0.5)))
            im = ax.imshow(data, vmin=vmin, vmax=vmax, cmap="inferno", extent=ext,
                           interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(line.replace("_", " "), fontsize=11)
            if j == 0:
                ax.set_ylabel(name, fontsize=10)
            cb = fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02)
            cb.ax.tick_params(labelsize=7)
    return fig


def deviance_figure(result: UnmixResult) -> Figure:
    """Bar chart of the held-out deviance of raw, PCA and PSNMF."""
    dev = result.deviance
    names = ["raw (no denoising)", "PCA (HyperSpy)", "PSNMF"]
    values = [dev.raw, dev.pca, dev.psnmf]
    fig = Figure(figsize=(7, 2.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    colors = ["0.6", "tab:blue", "tab:red"]
    for i, (v, c) in enumerate(zip(values, colors, strict=True)):
        if v is None:
            ax.text(1, i, " n/a", va="center")
            continue
        ax.barh(i, v, color=c)
        ax.text(v, i, f" {v:.4f}", va="center", fontsize=9)
    ax.set_yticks(range(3), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    finite = [v for v in values if v is not None and v > 0]
    if finite:
        ax.set_xlim(min(finite) / 1.5, max(finite) * 6)
    ax.set_xlabel(f"held-out Poisson deviance per count (log scale; means floored at "
                  f"{dev.floor:g})")
    return fig


def residuals_figure(result: UnmixResult) -> Figure | None:
    """Standardised residual map with the worst region, and that region's spectrum against
    the model's, the departing energies marked."""
    from matplotlib.patches import Rectangle

    res = result.residuals
    if res is None:
        return None
    fig = Figure(figsize=(11, 3.8), dpi=DPI, layout="constrained")
    ax_map, ax_sp = fig.subplots(1, 2, width_ratios=[1, 1.6])
    z = np.asarray(res.z, dtype=float)
    finite = z[np.isfinite(z)]
    hi = float(max(np.percentile(finite, 99.9), 5.0)) if finite.size else 5.0
    im = ax_map.imshow(z, cmap="RdBu_r", vmin=-hi, vmax=hi, interpolation="nearest")
    y0, y1, x0, x1 = res.region
    ax_map.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                               edgecolor="k" if res.structured else "0.4", linewidth=1.5))
    ax_map.set_title("standardised deviance per pixel (pixels)", fontsize=10)
    fig.colorbar(im, ax=ax_map, shrink=0.85, pad=0.02, label="sd")
    ax_sp.semilogy(res.energy, np.maximum(res.raw, 0.5), color="0.3", lw=0.9,
                   drawstyle="steps-mid", label="counts of the region")
    ax_sp.semilogy(res.energy, np.maximum(res.model, 0.5), color="tab:red", lw=1.1,
                   label="model")
    for p in res.peaks:
        label = f"{p.energy_keV:.2f} keV" + (f"\n{p.lines[0]}" if p.lines else "")
        ax_sp.axvline(p.energy_keV, color="tab:green" if p.sigma > 0 else "tab:purple",
                      lw=0.8, ls="--")
        ax_sp.annotate(f"{label} ({p.sigma:+.0f} sd)", (p.energy_keV, max(p.raw, 1.0)),
                       fontsize=7, rotation=90, va="bottom", ha="right")
    ax_sp.set_xlabel("energy (keV)")
    ax_sp.set_ylabel("counts per window")
    verdict = "structure not explained" if res.structured else "within noise"
    ax_sp.set_title(f"worst region x {x0}-{x1 - 1}, y {y0}-{y1 - 1}: "
                    f"{res.region_score:.1f} sd ({verdict})", fontsize=10)
    ax_sp.legend(fontsize=8, loc="upper right")
    return fig


def scree_figure(result: UnmixResult) -> Figure:
    """Explained variance ratio of the PCA, with the chosen k marked."""
    ratio = np.asarray(result.scree, dtype=float)
    k = result.n_components
    fig = Figure(figsize=(6, 3), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    idx = np.arange(ratio.size)
    ax.plot(idx, ratio, "o-", color="tab:blue", ms=4)
    if k <= ratio.size:
        ax.plot(idx[:k], ratio[:k], "o", color="tab:red", ms=6, label=f"k = {k} used")
        ax.legend(fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("PCA component index")
    ax.set_ylabel("explained variance ratio")
    ax.grid(alpha=0.3)
    return fig


def loss_figure(result: UnmixResult) -> Figure:
    """Loss histories of the binned and full-resolution stages."""
    fig = Figure(figsize=(9, 2.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (key, title) in zip(
        axes, (("binned", "stage 1: binned data"), ("full", "stage 2: full resolution")),
        strict=True,
    ):
        loss = np.asarray(result.model.loss_[key], dtype=float)
        if loss.size:
            ax.plot(np.arange(1, loss.size + 1), loss - loss.min() + 1e-9 * max(
                1.0, abs(loss.min())), color="k", lw=1)
            ax.set_yscale("log")
        ax.set_title(f"{title} ({result.model.n_iter_[key]} iterations)", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss - final loss")
        ax.grid(alpha=0.3)
    return fig



def sweep_figure(choice: ModelChoice) -> Figure:
    """The evidence for ``b`` and ``k``.

    Left: held-out deviance of the full PSNMF fits against the bin factor, one curve per
    ``k``. Right: the binned-stage deviance of the k search against ``k``; when ``k`` was
    not searched, the full-resolution deviance against ``k`` (one curve per ``b``) if the
    b search tried several ``k``.
    """
    fig = Figure(figsize=(10, 3.2), dpi=DPI, layout="constrained")
    ax_b, ax_k = fig.subplots(1, 2)
    b_trials = [t for t in choice.b_search.trials if t.deviance is not None]
    _curves(ax_b, b_trials, "bin_factor", "n_components", "k")
    ax_b.plot(choice.bin_factor, choice.best.deviance, "*", ms=16, color="tab:red",
              label="best", zorder=5)
    ax_b.set_xscale("log", base=2)
    ax_b.set_xlabel("bin factor b")
    ax_b.set_ylabel("held-out deviance / count\n(PSNMF, full resolution)")
    if choice.k_search is not None:
        k_trials = [t for t in choice.k_search.trials if t.deviance is not None]
        xs = [t.candidate.n_components for t in k_trials]
        ax_k.plot(xs, [t.deviance for t in k_trials], "o-", ms=5, color="tab:blue",
                  label=f"binned stage, b = {choice.k_bin}, {choice.k_folds} folds")
        ax_k.plot(choice.n_components, choice.k_search.best.deviance, "*", ms=16,
                  color="tab:red", label="chosen k", zorder=5)
        ax_k.set_ylabel("held-out deviance / count\n(binned stage)")
    else:
        _curves(ax_k, b_trials, "n_components", "bin_factor", "b")
        ax_k.plot(choice.n_components, choice.best.deviance, "*", ms=16, color="tab:red",
                  label="best", zorder=5)
        ax_k.set_ylabel("held-out deviance / count\n(PSNMF, full resolution)")
    ax_k.set_xlabel("number of components k")
    ax_k.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (ax_b, ax_k):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"best: b = {choice.bin_factor}, k = {choice.n_components}", fontsize=10)
    return fig


def _curves(ax: Any, trials: list[Any], xkey: str, ckey: str, letter: str) -> None:
    """Deviance against ``xkey``, one curve per value of ``ckey`` (single points skipped
    when there are several curves)."""
    groups: dict[int, list[tuple[int, float]]] = {}
    for t in trials:
        groups.setdefault(getattr(t.candidate, ckey), []).append(
            (getattr(t.candidate, xkey), t.deviance))
    for c, pts in sorted(groups.items()):
        if len(pts) < 2 and len(groups) > 1:
            continue
        xs, ys = zip(*sorted(pts), strict=True)
        ax.plot(xs, ys, "o-", ms=5, label=f"{letter} = {c}")

def smoothing_figure(result: UnmixResult) -> Figure | None:
    """Held-out deviance against the TV weight (``None`` when no weight was chosen)."""
    sm = result.summary.smoothing
    grid, dev = sm.grid or [], sm.deviance or []
    if len(dev) < 2:
        return None
    cpp = result.summary.input.counts_per_pixel
    rel = np.asarray(grid[: len(dev)], dtype=float) / max(float(cpp), 1e-300)
    x = np.where(rel > 0, rel, rel[rel > 0].min() / 3 if np.any(rel > 0) else 1.0)
    fig = Figure(figsize=(6, 3), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(x, dev, "o-", color="tab:red")
    best = int(np.nanargmin(dev))
    ax.plot(x[best], dev[best], "*", ms=14, color="tab:orange", label="chosen")
    ax.set_xscale("log")
    labels = ["0" if r == 0 else f"{r:g}" for r in rel]
    ax.set_xticks(x, labels)
    ax.minorticks_off()
    ax.set_xlabel("TV weight / counts per pixel")
    ax.set_ylabel("held-out deviance / count")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def save_sweep_figure(choice: ModelChoice, path: str | Path) -> Path:
    """Draw :func:`sweep_figure` and write it (PNG) atomically."""
    return save_png(sweep_figure(choice), path)


#: Most elements side by side; more wrap onto further pairs of rows.
MAX_COLUMNS = 6


def composition_maps_figure(result: UnmixResult) -> Figure | None:
    """Each element's at.% map above its sigma map, at most :data:`MAX_COLUMNS` elements a
    row pair; None without composition maps.

    A fixed grid (margins in inches), not constrained layout: its layout pass over the
    many small axes and colour bars costs as much as drawing them.
    """
    cm = result.composition_maps
    if cm is None or not cm.elements:
        return None
    n = len(cm.elements)
    ncol = min(n, MAX_COLUMNS)
    nrow = 2 * -(-n // ncol)
    nav = result.signal.axes_manager.navigation_axes  # x, y
    x, y = nav[0], nav[1]
    b = cm.bin_factor
    ext = [x.offset - x.scale / 2, x.offset + x.scale * (x.size - 0.5),
           y.offset + y.scale * (y.size - 0.5), y.offset - y.scale / 2]
    width, height = 2.4 * ncol + 0.5, 2.2 * nrow
    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.subplots_adjust(left=0.1 / width, right=1 - 0.45 / width, bottom=0.2 / height,
                        top=1 - 0.3 / height, wspace=0.35, hspace=0.2)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for e in range(n, nrow // 2 * ncol):  # empty places of the last row pair
        for row in (0, 1):
            axes[2 * (e // ncol) + row, e % ncol].set_axis_off()
    for e, el in enumerate(cm.elements):
        for row, (data, label) in enumerate(((cm.composition[e], "at.%"),
                                             (cm.sigma[e], "sigma at.%"))):
            ax = axes[2 * (e // ncol) + row, e % ncol]
            finite = data[np.isfinite(data)]
            low, top = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
            im = ax.imshow(data, vmin=float(low), vmax=float(max(top, low + 1e-6)),
                           cmap="viridis",
                           extent=ext if b == 1 else None, interpolation="nearest")
            ax.set_title(f"{el} {label}", fontsize=9)
            ax.set_xticks([])  # the component maps carry the axes' calibration
            ax.set_yticks([])
            if b > 1:
                ax.set_xlabel(f"bins of {b} px", fontsize=7)
            fig.colorbar(im, ax=ax, shrink=0.85, pad=0.03).ax.tick_params(labelsize=6)
    return fig


#: Relative drawing cost of a figure, to share them between processes: per element for the
#: element and composition maps, else per figure.
_COST = {"element_maps_figure": 1.5, "composition_maps_figure": 0.5, "maps_figure": 1.5,
         "residuals_figure": 1.5}


def figure_jobs(result: UnmixResult, out: str | Path) -> list[FigureJob]:
    """Every figure of the report as a job that draws it into ``out`` (PNG)."""
    out = Path(out)
    makers = {
        "sum_spectrum_figure": sum_spectrum_figure,
        "spectra_figure": spectra_figure,
        "maps_figure": maps_figure,
        "element_maps_figure": element_maps_figure,
        "deviance_figure": deviance_figure,
        "scree_figure": scree_figure,
        "smoothing_figure": smoothing_figure,
        "residuals_figure": residuals_figure,
        "loss_figure": loss_figure,
        "composition_maps_figure": composition_maps_figure,
    }
    cm = result.composition_maps
    panels = {"element_maps_figure": max(len(result.element_maps.get("raw", {})), 1),
              "composition_maps_figure": len(cm.elements) if cm is not None else 1}

    def job(key: str, name: str) -> FigureJob:
        def draw() -> Path | None:
            fig = makers[key](result)
            return None if fig is None else save_png(fig, out / name)

        return FigureJob(key, draw, _COST.get(key, 1.0) * panels.get(key, 1))

    return [job(key, name) for key, name, _ in FIGURES if key in makers]


def write_figures(result: UnmixResult, out: str | Path) -> dict[str, Path]:
    """Write every figure of the report as PNG into ``out``; returns {key: path}."""
    return {key: path for key, path in ((j.key, j.draw()) for j in figure_jobs(result, out))
            if path is not None}
