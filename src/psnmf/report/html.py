"""The self-contained HTML report of :func:`psnmf.pipeline.unmix`.

Made from the typed result (:class:`psnmf.pipeline.summary.UnmixResult` and its
:class:`~psnmf.pipeline.summary.Summary`). Every figure is embedded as a base64 ``data:``
URI, so the report is a single file that can be mailed or archived. The page checks on
load that every figure decoded and writes the result into its title and into
``<div id="render-check">`` (used by the test that opens it in headless Chromium).
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psnmf import io
from psnmf.report.figures import FIGURES
from psnmf.residuals import ALPHA

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.pipeline.summary import UnmixResult
    from psnmf.selection import ModelChoice


def _smoothing_html(result: UnmixResult, fig_html: dict[str, str]) -> list[str]:
    sm = result.summary.smoothing
    if not sm.penalty:
        return ["<h2>Spatial regularisation of the maps</h2>",
                "<p>None: each pixel's abundances come from its own counts only.</p>"]
    how = "chosen by held-out deviance" if sm.chosen else "given"
    return [
        "<h2>Spatial regularisation of the maps</h2>",
        f"<p>The maps carry a {'total-variation' if sm.penalty == 'tv' else 'Laplacian'} "
        "prior: neighbouring pixels are pulled towards the same abundances, which removes "
        "most of the counting noise inside grains while keeping their boundaries sharp. "
        f"Weight {_fmt(sm.relative)} x counts per pixel ({_fmt(sm.lam)} counts), "
        f"{how}: the maps were fitted on half of the counts for each candidate weight and "
        "scored on the other half. The spectra are not affected.</p>",
        fig_html.get("smoothing_figure", ""),
    ]


def _composition_html(result: UnmixResult) -> list[str]:
    """The phase x element matrix (at.% ± sd, interval) and the error budget per part."""
    comp = result.summary.composition
    if comp is None:
        return []
    head = "<tr><th>component</th>" + "".join(
        f"<th>{html.escape(el)}</th>" for el in comp.elements) + "</tr>"
    body = ""
    for name in comp.components:
        rows = {r["element"]: r for r in comp.for_component(name)}
        cells = "".join(
            "<td class='num'>{}<br><small>{}</small></td>".format(
                *(html.escape(c) for c in comp.cell(rows[el])))
            for el in comp.elements)
        body += f"<tr><td>{html.escape(str(name))}</td>{cells}</tr>"
    parts = list(comp.parts)
    bhead = ("<tr><th>component</th><th>element</th><th>at.%</th><th>&plusmn; sd</th>"
             + "".join(f"<th>{html.escape(p)}</th>" for p in parts) + "<th>overlaps</th></tr>")
    bbody = "".join(
        f"<tr><td>{html.escape(str(r['component']))}</td><td>{html.escape(r['element'])}</td>"
        f"<td class='num'>{r['at_percent']:.2f}</td><td class='num'>{r['sd']:.2f}</td>"
        + "".join(f"<td class='num'>{r['budget'][p]:.2f}</td>" if p in r["budget"]
                  else "<td>-</td>" for p in parts)
        + "<td>" + html.escape(", ".join(f"{e} ({c:+.2f})" for e, c in r["overlaps"].items()))
        + "</td></tr>"
        for r in comp.rows if r["status"] == "quantified")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in comp.notes)
    return [
        "<h2>Composition of the components</h2>",
        f"<p>{html.escape(comp.method)}</p>",
        f"<p>at.% &plusmn; one standard deviation, the {int(round(100 * comp.level))}% "
        "interval beneath; &lt; x: below the detection limit x.</p>",
        f"<table>{head}{body}</table>",
        "<h3>Error budget (standard deviations in at.%)</h3>",
        f"<table>{bhead}{bbody}</table>",
        f"<p>{html.escape(comp.note)}</p>",
        f"<ul>{notes}</ul>" if notes else "",
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
border-left:4px solid #f0a020;padding:8px 12px;margin:8px 0}.ok{background:#eef7ee;
border-left:4px solid #4a9a4a;padding:8px 12px;margin:8px 0}.grid{display:grid;
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
    src = s.input.source.get("file") or "HyperSpy signal"
    name = Path(src).name if s.input.source.get("file") else src
    fig_html = {
        key: _img(figure_paths[key], caption, fname)
        for key, fname, caption in FIGURES if key in figure_paths
    }
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>psnmf report: {html.escape(name)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>PSNMF unmixing of {html.escape(name)}</h1>",
        f"<p class='sub'>psnmf {html.escape(s.psnmf_version)} &middot; NMF-based "
        "pan-sharpening (bin, unmix the binned data for the spectra, refine the maps at full "
        "resolution, fuse) &middot; "
        f"<span id='render-check' data-ok='pending'>figures: checking</span></p>",
        *[f"<div class='warn'>{html.escape(note)}</div>" for note in result.warnings],
        *_summary_html(result, src),
        *_priors_html(result),
        *_deviance_html(result, fig_html),
        *_residuals_html(result, fig_html),
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
        *(_selection_html(result.selection, fig_html) if result.selection is not None
          else ["<p>k and b were given; no sweep was run.</p>"]),
        "<h2>Convergence</h2>",
        fig_html.get("loss_figure", ""),
        "<h2>Files</h2>",
        "<p>The denoised data are stored as their factors: <code>psnmf.hyperspy."
        "denoised_from_factors(hs.load('component_spectra.hspy'), hs.load("
        "'component_maps.hspy'), hs.load('count_scale.hspy'))</code> rebuilds the PSNMF cube "
        "lazily, and in HyperSpy <code>hs.load('psnmf_decomposition.hspy', lazy=True)"
        ".get_decomposition_model()</code> (or <code>pca_decomposition.hspy</code> for PCA) "
        "gives it. <code>--write-denoised</code> also writes the dense cubes (float32).</p>",
        "<ul>",
        *[f"<li><code>{html.escape(str(v))}</code></li>" for v in (s.files or {}).values()],
        "</ul><h2>Software</h2>",
        _table(list(s.versions.items())),
        "<h2>Parameters (summary.json)</h2><pre style='font-size:.8em;white-space:pre-wrap'>",
        html.escape(json.dumps(s.parameters.to_dict(), indent=1)),
        "</pre>",
        f"<script>{_CHECK_JS}</script></main></body></html>",
    ]
    return "\n".join(parts)


def _priors_html(result: UnmixResult) -> list[str]:
    """The user priors of the run (summary.json ``priors``), one row each; none: nothing."""
    pri = getattr(result.summary, "priors", None) or {}
    rows: list[tuple[str, Any]] = []
    for j, src in pri.get("fixed_spectra", {}).items():
        rows.append((f"#{j} spectrum fixed", src))
    for j, f in pri.get("forbid", {}).items():
        rows.append((f"#{j} forbidden", f"{', '.join(f['elements'])} ({f['channels']} "
                     "channels zero)"))
    for j, r in pri.get("init_rois", {}).items():
        rows.append((f"#{j} started from region", f"{r['source']} ({r['pixels']} pixels)"))
    if "pixel_mask" in pri:
        m = pri["pixel_mask"]
        rows.append(("pixels masked out", f"{m['masked_pixels']} ({100 * m['fraction']:.1f} "
                     f"%, maps NaN there) from {m['source']}"))
    if pri.get("exclude_elements"):
        rows.append(("excluded from quantification", ", ".join(pri["exclude_elements"])))
    return ["<h2>Priors</h2>", _table(rows)] if rows else []


def _summary_html(result: UnmixResult, src: str) -> list[str]:
    s = result.summary
    inp, par = s.input, s.parameters
    lo, hi = inp.energy_range_keV
    return [
        "<h2>Summary</h2><div class='grid'><div>",
        _table([
            ("file", src),
            ("signal", f"{inp.signal_type}, {inp.shape[0]} x {inp.shape[1]} pixels"
                       f" x {inp.shape[2]} channels"),
            ("energy range", f"{lo:.3g} - {hi:.3g} keV ({inp.energy_range_reason})"),
            ("beam energy", None if inp.beam_energy_keV is None
             else f"{inp.beam_energy_keV:g} keV"),
            ("counts per pixel", inp.counts_per_pixel),
            ("total counts", f"{inp.total_counts:.0f}"),
            ("elements", ", ".join(inp.elements) or "none in the metadata"),
        ]),
        "</div><div>",
        _table([
            ("components k", f"{par.n_components} ({par.n_components_choice})"),
            ("bin factor b", f"{par.bin_factor} ({par.bin_factor_choice})"),
            ("seed", par.seed),
            ("iterations", f"binned {s.fit.n_iter['binned']}, full {s.fit.n_iter['full']}"),
            ("run time", f"{s.timings_s.get('total', float('nan')):.1f} s"),
        ]),
        "</div></div>",
    ]


def _deviance_html(result: UnmixResult, fig_html: dict[str, str]) -> list[str]:
    dev, par = result.deviance, result.summary.parameters
    return [
        "<h2>Held-out Poisson deviance</h2>",
        "<p>The counts were split at random into two independent halves (binomial "
        "thinning). Each method was fitted on one half and predicts the other; the Poisson "
        "deviance per held-out count measures how much of the prediction is signal rather "
        "than noise (lower is better). Raw = the first half used as is.</p>",
        "<table><tr><th>method</th><th>deviance / count</th></tr>"
        f"<tr><td>raw (no denoising)</td><td class='num'>{_fmt(dev.raw)}</td></tr>"
        f"<tr><td>PCA (HyperSpy, k = {par.n_components})</td>"
        f"<td class='num'>{_fmt(dev.pca)}</td></tr>"
        f"<tr class='best'><td>PSNMF (k = {par.n_components}, b = {par.bin_factor})"
        f"</td><td class='num'>{_fmt(dev.psnmf)}</td></tr></table>",
        f"<p>Predicted means floored at {dev.floor:g}; seed {dev.seed}.</p>",
        fig_html.get("deviance_figure", ""),
    ]


def _residuals_html(result: UnmixResult, fig_html: dict[str, str]) -> list[str]:
    res = result.residuals
    if res is None:
        return []
    rows = "".join(
        f"<tr><td class='num'>{p.energy_keV:.2f}</td><td class='num'>{p.sigma:+.1f}</td>"
        f"<td class='num'>{p.raw:.0f}</td><td class='num'>{p.model:.1f}</td>"
        f"<td>{html.escape(', '.join(p.lines[:4]))}</td></tr>" for p in res.peaks)
    table = ("<table><tr><th>keV</th><th>(counts - model) / sd</th><th>counts</th>"
             f"<th>model</th><th>lines near</th></tr>{rows}</table>" if rows else "")
    return [
        "<h2>Residuals: where the model fails</h2>",
        f"<div class='{'warn' if res.structured else 'ok'}'>{html.escape(res.message)}</div>",
        fig_html.get("residuals_figure", ""),
        table,
        "<p>Each pixel's counts are scored by their Poisson deviance under the fitted model "
        "(with the pixel's own total), standardised by the deviance's mean and spread if "
        "the model were right, and summed over square regions of 2 to 32 pixels; a region "
        "counts as structure when it stands out from the others by more than chance allows "
        f"over all regions (family-wise false-alarm rate {100 * ALPHA:g}%). The map is in "
        "<code>residual_map.hspy</code>.</p>",
    ]


def _selection_html(choice: ModelChoice, fig_html: dict[str, str]) -> list[str]:
    """The tables of the k search (if any) and of the b search, chosen rows marked."""
    out = []
    if choice.k_search is not None:
        rows = "".join(
            f"<tr{_best_class(t.candidate.n_components == choice.n_components)}>"
            f"<td class='num'>{t.candidate.n_components}</td>"
            f"<td class='num'>{_fmt(t.deviance, 6)}</td>"
            f"<td class='num'>{html.escape(t.n_iter)}</td></tr>"
            for t in choice.k_search.trials
        )
        out += [
            f"<p>k: the binned stage on the counts binned {choice.k_bin} x {choice.k_bin}, "
            f"scored by {choice.k_folds}-fold count splitting (each fold held out once).</p>",
            "<table><tr><th>k</th><th>held-out deviance / count (binned stage)</th>"
            "<th>iterations</th></tr>" + rows + "</table>",
        ]
    rows = "".join(
        f"<tr{_best_class(t is choice.best)}><td class='num'>{t.candidate.bin_factor}</td>"
        f"<td class='num'>{t.candidate.n_components}</td>"
        f"<td class='num'>{_fmt(t.deviance, 6)}</td>"
        f"<td class='num'>{html.escape(t.n_iter)}</td></tr>"
        for t in choice.sorted_b_trials()
    )
    return [
        *out,
        "<p>b: each candidate was fitted on the first half of the counts and scored on the "
        "second (fewer iterations than the final fit).</p>",
        "<table><tr><th>b</th><th>k</th><th>held-out deviance / count</th>"
        "<th>iterations</th></tr>" + rows + "</table>",
        fig_html.get("sweep_figure", ""),
    ]


def _best_class(best: bool) -> str:
    return " class='best'" if best else ""


def write_html(result: UnmixResult, path: str | Path) -> Path:
    """Write the self-contained report (figures must already be in ``result.paths``)."""
    figure_paths = {k: Path(v) for k, v in result.paths.items() if k.endswith("_figure")}
    return io.write_text(build_html(result, figure_paths), path)

