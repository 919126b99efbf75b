"""Figures (PNG) and the self-contained HTML report of :func:`psnmf.workflow.unmix`.

Every figure is drawn on a plain :class:`matplotlib.figure.Figure` (no pyplot, no display
needed), written atomically with :func:`psnmf.io.savefig`, and embedded in ``report.html``
as a base64 ``data:`` URI, so the report is a single file that can be mailed or archived.
The page checks on load that every figure decoded and writes the result into its title
and into ``<div id="render-check">`` (used by the test that opens it in headless Chromium).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from psnmf import io

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.workflow import SweepResult, UnmixResult

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
    ("loss_figure", "loss.png", "PSNMF loss (generalised KL) per iteration of both stages."),
)


def _lines_for_markers(signal: Any) -> list[tuple[str, float]]:
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


def _xlim(signal: Any, markers: list[tuple[str, float]], data: np.ndarray) -> tuple[float, float]:
    """Show up to a little beyond the highest line or the last channel with signal."""
    e, _ = _energy(signal)
    nz = np.nonzero(data > data.max() * 1e-3)[0] if data.max() > 0 else np.array([e.size - 1])
    top = max([e[nz[-1]] if nz.size else e[-1], *[m[1] for m in markers]]) + 1.0
    return float(e[0]), float(min(e[-1], top))


def sum_spectrum_figure(result: UnmixResult) -> Figure:
    """Sum spectrum of the raw data (log y) with line markers."""
    e, label = _energy(result.signal)
    total = np.asarray(result.signal.data.sum(axis=(0, 1)), dtype=float)
    markers = _lines_for_markers(result.signal)
    fig = Figure(figsize=(10, 3.4), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    den = np.asarray(result.denoised.data.sum(axis=(0, 1)), dtype=float)
    ax.plot(e, np.maximum(den, 0.5), color="tab:red", lw=1.6, alpha=0.6,
            label="PSNMF denoised (sum)")
    ax.plot(e, np.maximum(total, 0.5), color="k", lw=0.6, label="raw (sum of all pixels)")
    ax.set_yscale("log")
    ax.set_xlim(*_xlim(result.signal, markers, total))
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
    markers = _lines_for_markers(result.signal)
    fig = Figure(figsize=(10, 1.9 * k + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(k, 1, sharex=True, squeeze=False)[:, 0]
    xlim = _xlim(result.signal, markers, S.max(axis=0))
    frac = result.model.maps_.reshape(-1, k).mean(0)
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
    """Raw vs PCA vs PSNMF elemental maps (rows) for each line (columns)."""
    rows = [("raw", "raw"), ("pca", "PCA denoised"), ("psnmf", "PSNMF denoised")]
    lines = list(result.element_maps.get("raw", {}))
    ext, _ = _extent(result)
    if not lines:
        fig = Figure(figsize=(6, 1.5), dpi=DPI)
        fig.text(0.5, 0.5, "No elements in the metadata: no elemental maps.", ha="center")
        return fig
    n = len(lines)
    fig = Figure(figsize=(2.7 * n + 1.2, 8.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    for j, line in enumerate(lines):
        for i, (key, name) in enumerate(rows):
            ax = axes[i, j]
            data = result.element_maps[key][line]
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
    values = [dev["raw"], dev["pca"], dev["psnmf"]]
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
                  f"{dev['floor']:g})")
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


def sweep_figure(sweep: SweepResult) -> Figure:
    """Held-out deviance vs bin factor (one curve per k) and vs k (one curve per b)."""
    rows = [r for r in sweep.rows if r["deviance"] is not None]
    fig = Figure(figsize=(10, 3.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (xkey, ckey, xlabel) in zip(
        axes,
        (("bin_factor", "n_components", "bin factor b"),
         ("n_components", "bin_factor", "number of components k")),
        strict=True,
    ):
        groups: dict[int, list[tuple[int, float]]] = {}
        for r in rows:
            groups.setdefault(r[ckey], []).append((r[xkey], r["deviance"]))
        for c, pts in sorted(groups.items()):
            pts.sort()
            if len(pts) < 2 and len(groups) > 1:
                continue
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, "o-", ms=5, label=f"{'k' if ckey == 'n_components' else 'b'} = {c}")
        best = sweep.best
        ax.plot(best[xkey], best["deviance"], "*", ms=16, color="tab:red", label="best",
                zorder=5)
        if xkey == "bin_factor":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out deviance / count")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"best: b = {sweep.best['bin_factor']}, k = {sweep.best['n_components']}", fontsize=10
    )
    return fig


def smoothing_figure(result: UnmixResult) -> Figure | None:
    """Held-out deviance against the TV weight (``None`` when no weight was chosen)."""
    sm = result.summary.get("smoothing") or {}
    grid, dev = sm.get("grid") or [], sm.get("deviance") or []
    if len(dev) < 2:
        return None
    cpp = result.summary["input"]["counts_per_pixel"]
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


def save_sweep_figure(sweep: SweepResult, path: str | Path) -> Path:
    """Draw :func:`sweep_figure` and write it (PNG) atomically."""
    return io.savefig(sweep_figure(sweep), path, dpi=DPI)


def write_figures(result: UnmixResult, out: str | Path) -> dict[str, Path]:
    """Write every figure of the report as PNG into ``out``; returns {key: path}."""
    out = Path(out)
    makers = {
        "sum_spectrum_figure": sum_spectrum_figure,
        "spectra_figure": spectra_figure,
        "maps_figure": maps_figure,
        "element_maps_figure": element_maps_figure,
        "deviance_figure": deviance_figure,
        "scree_figure": scree_figure,
        "smoothing_figure": smoothing_figure,
        "loss_figure": loss_figure,
    }
    paths = {}
    for key, name, _ in FIGURES:
        if key in makers:
            fig = makers[key](result)
            if fig is not None:
                paths[key] = io.savefig(fig, out / name, dpi=DPI)
    return paths


def _smoothing_html(result: UnmixResult, fig_html: dict[str, str]) -> list[str]:
    sm = result.summary.get("smoothing") or {}
    if not sm or not sm.get("penalty"):
        return ["<h2>Spatial regularisation of the maps</h2>",
                "<p>None: each pixel's abundances come from its own counts only.</p>"]
    how = ("chosen by held-out deviance" if sm.get("deviance") else "given")
    return [
        "<h2>Spatial regularisation of the maps</h2>",
        f"<p>The maps carry a {'total-variation' if sm['penalty'] == 'tv' else 'Laplacian'} "
        "prior: neighbouring pixels are pulled towards the same abundances, which removes "
        "most of the counting noise inside grains while keeping their boundaries sharp. "
        f"Weight {_fmt(sm['relative'])} x counts per pixel ({_fmt(sm['lam'])} counts), "
        f"{how}: the maps were fitted on half of the counts for each candidate weight and "
        "scored on the other half. The spectra are not affected.</p>",
        fig_html.get("smoothing_figure", ""),
    ]


def _composition_html(result: UnmixResult) -> list[str]:
    comp = result.summary.get("composition")
    if not comp:
        return []
    rows = comp.get("rows", [])
    head = (f"<tr><th>component</th><th>element</th><th>at.%</th><th>&plusmn; sd</th>"
            f"<th>{int(round(100 * comp.get('level', 0.95)))}% interval</th></tr>")
    body = "".join(
        f"<tr><td>{html.escape(str(r['component']))}</td><td>{html.escape(r['element'])}</td>"
        f"<td class='num'>{r['at_percent']:.2f}</td><td class='num'>&plusmn; {r['sd']:.2f}"
        f"</td><td class='num'>[{r['low']:.2f}, {r['high']:.2f}]</td></tr>"
        for r in rows
    )
    return [
        "<h2>Composition of the components</h2>",
        f"<p>{html.escape(comp.get('method', ''))}</p>",
        f"<table>{head}{body}</table>",
        f"<p>{html.escape(comp.get('note', ''))}</p>",
    ]


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;
background:#f4f5f7;color:#1d2330}
main{max-width:1180px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin-top:32px;border-bottom:2px solid
#dde1e8;padding-bottom:4px}.sub{color:#5a6475;margin:0 0 16px}
table{border-collapse:collapse;font-size:.9em;margin:8px 0}td,th{border:1px solid #dde1e8;
padding:4px 10px;text-align:left}th{background:#f0f2f6}td.num{text-align:right;
font-variant-numeric:tabular-nums}tr.best td{background:#fff3d6;font-weight:600}
figure{margin:12px 0 20px}figure img{max-width:100%;border:1px solid #e4e7ec}
figcaption{font-size:.88em;color:#4a5465;margin-top:4px}.warn{background:#fff4e5;
border-left:4px solid #f0a020;padding:8px 12px;margin:8px 0}.grid{display:grid;
grid-template-columns:1fr 1fr;gap:8px 32px}.key{font-size:1.05em}code{background:#f0f2f6;
padding:1px 4px;border-radius:3px}#render-check{font-size:.8em;color:#5a6475}
"""

_CHECK_JS = """
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (im) { return !(im.complete && im.naturalWidth > 0); });
  var ok = imgs.length > 0 && bad.length === 0;
  var el = document.getElementById('render-check');
  el.setAttribute('data-ok', ok ? 'true' : 'false');
  el.setAttribute('data-images', String(imgs.length));
  el.setAttribute('data-failed', String(bad.length));
  el.textContent = 'figures rendered: ' + (imgs.length - bad.length) + '/' + imgs.length;
  document.title = document.title + (ok ? ' [figures ok]' : ' [figures FAILED]');
});
"""


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _img(path: Path, caption: str, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def build_html(result: UnmixResult, figure_paths: dict[str, Path]) -> str:
    """The report as one HTML string with every figure embedded."""
    s = result.summary
    inp, par, dev = s["input"], s["parameters"], result.deviance
    src = inp["source"].get("file") or "HyperSpy signal"
    name = Path(src).name if inp["source"].get("file") else src
    lo, hi = inp["energy_range_keV"]
    fig_html = {
        key: _img(figure_paths[key], caption, fname)
        for key, fname, caption in FIGURES if key in figure_paths
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>psnmf report: {html.escape(name)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>PSNMF unmixing of {html.escape(name)}</h1>",
        f"<p class='sub'>psnmf {html.escape(s['psnmf_version'])} &middot; NMF-based "
        "pan-sharpening (bin, unmix the binned data for the spectra, refine the maps at full "
        "resolution, fuse) &middot; "
        f"<span id='render-check' data-ok='pending'>figures: checking</span></p>",
    ]
    for note in result.warnings:
        parts.append(f"<div class='warn'>{html.escape(note)}</div>")
    pca = dev["pca"]
    parts += [
        "<h2>Summary</h2><div class='grid'><div>",
        _table([
            ("file", src),
            ("signal", f"{inp['signal_type']}, {inp['shape'][0]} x {inp['shape'][1]} pixels"
                       f" x {inp['shape'][2]} channels"),
            ("energy range", f"{lo:.3g} - {hi:.3g} keV ({inp['energy_range_reason']})"),
            ("beam energy", None if inp["beam_energy_keV"] is None
             else f"{inp['beam_energy_keV']:g} keV"),
            ("counts per pixel", inp["counts_per_pixel"]),
            ("total counts", f"{inp['total_counts']:.0f}"),
            ("elements", ", ".join(inp["elements"]) or "none in the metadata"),
        ]),
        "</div><div>",
        _table([
            ("components k", f"{par['n_components']} ({par['n_components_choice']})"),
            ("bin factor b", f"{par['bin_factor']} ({par['bin_factor_choice']})"),
            ("seed", par["seed"]),
            ("iterations", f"binned {s['psnmf']['n_iter']['binned']}, full "
                           f"{s['psnmf']['n_iter']['full']}"),
            ("run time", f"{s['timings_s'].get('total', float('nan')):.1f} s"),
        ]),
        "</div></div>",
        "<h2>Held-out Poisson deviance</h2>",
        "<p>The counts were split at random into two independent halves (binomial "
        "thinning). Each method was fitted on one half and predicts the other; the Poisson "
        "deviance per held-out count measures how much of the prediction is signal rather "
        "than noise (lower is better). Raw = the first half used as is.</p>",
        "<table><tr><th>method</th><th>deviance / count</th></tr>"
        f"<tr><td>raw (no denoising)</td><td class='num'>{_fmt(dev['raw'])}</td></tr>"
        f"<tr><td>PCA (HyperSpy, k = {par['n_components']})</td>"
        f"<td class='num'>{_fmt(pca)}</td></tr>"
        f"<tr class='best'><td>PSNMF (k = {par['n_components']}, b = {par['bin_factor']})"
        f"</td><td class='num'>{_fmt(dev['psnmf'])}</td></tr></table>",
        f"<p>Predicted means floored at {dev['floor']:g}; seed {dev['seed']}.</p>",
        fig_html.get("deviance_figure", ""),
        "<h2>Components</h2>",
        fig_html.get("spectra_figure", ""),
        fig_html.get("maps_figure", ""),
        *_composition_html(result),
        *_smoothing_html(result, fig_html),
        "<h2>Elemental maps: raw, PCA, PSNMF</h2>",
        fig_html.get("element_maps_figure", ""),
        "<h2>Data</h2>",
        fig_html.get("sum_spectrum_figure", ""),
        "<h2>Choosing k and b</h2>",
        fig_html.get("scree_figure", ""),
    ]
    if result.sweep is not None:
        rows = []
        for r in sorted(result.sweep.rows, key=lambda r: (r["n_components"], r["bin_factor"])):
            cls = " class='best'" if r is result.sweep.best else ""
            rows.append(
                f"<tr{cls}><td class='num'>{r['bin_factor']}</td>"
                f"<td class='num'>{r['n_components']}</td>"
                f"<td class='num'>{_fmt(r['deviance'], 6)}</td>"
                f"<td class='num'>{html.escape(r['n_iter'])}</td></tr>"
            )
        parts += [
            "<p>Each candidate was fitted on the first half of the counts and scored on the "
            "second (fewer iterations than the final fit).</p>",
            "<table><tr><th>b</th><th>k</th><th>held-out deviance / count</th>"
            "<th>iterations</th></tr>" + "".join(rows) + "</table>",
            fig_html.get("sweep_figure", ""),
        ]
    else:
        parts.append("<p>k and b were given; no sweep was run.</p>")
    parts += [
        "<h2>Convergence</h2>",
        fig_html.get("loss_figure", ""),
        "<h2>Files</h2><ul>",
        *[f"<li><code>{html.escape(str(v))}</code></li>" for v in s.get("files", {}).values()],
        "</ul><h2>Software</h2>",
        _table(list(s["versions"].items())),
        "<h2>Parameters (summary.json)</h2><pre style='font-size:.8em;white-space:pre-wrap'>",
        html.escape(json.dumps(io._jsonable(par), indent=1)),
        "</pre>",
        f"<script>{_CHECK_JS}</script></main></body></html>",
    ]
    return "\n".join(parts)


def write_html(result: UnmixResult, path: str | Path) -> Path:
    """Write the self-contained report (figures must already be in ``result.paths``)."""
    figure_paths = {k: Path(v) for k, v in result.paths.items() if k.endswith("_figure")}
    return io.write_text(build_html(result, figure_paths), path)
