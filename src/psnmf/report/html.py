"""The HTML report of :func:`psnmf.pipeline.unmix`.

The page is rendered from the Jinja2 template ``templates/report.html.jinja`` (package
data) by :func:`bokeh.embed.file_html`. It holds the interactive views of
:mod:`psnmf.report.interactive` (maps to click, the clicked region's spectrum and model,
switchable elemental maps), the summary, deviance, composition (sortable), error budget,
smoothing, selection, priors and residual tables, and shows the matplotlib figures.

What it weighs, and where it looks: the page opens offline and fetches nothing from the
network, but it is not one file. The figures are the PNG files written beside it,
referenced by relative path (``<img src="element_maps.png">``), not a second, base64 copy
of each (4/3 of the PNG bytes); the results folder is the deliverable, and the page moved
away from its figures shows their places empty (and its render check says so). BokehJS is
inlined gzip-compressed and base64-encoded (0.6 MB instead of 1.65 MB) and decompressed
by the browser (``DecompressionStream``, in Chrome/Edge 80, Firefox 113, Safari 16.4 and
later; ``templates/load_bokeh.js``), which then runs Bokeh's embedding script.

On load the page checks that every figure decoded and writes the result into its title
and into ``<div id="render-check">``, and that the Bokeh views were built
(``#interactive-check``); the tests that open it in headless Chromium read both.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import jinja2

from psnmf import io
from psnmf.report.figures import FIGURES
from psnmf.residuals import ALPHA, SCALES

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.pipeline.summary import Composition, UnmixResult
    from psnmf.report.explorer import ExplorerData
    from psnmf.selection import ModelChoice

TEMPLATE = "report.html.jinja"


def _fmt(v: Any, digits: int = 4) -> str:
    """A value for a table cell: floats to ``digits`` significant digits, None as n/a."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.4g}"
    return str(v)


@cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report's templates (HTML autoescaped)."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("psnmf.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "jinja"]),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["fmt"] = _fmt
    env.filters["g"] = lambda v: f"{v:g}"
    env.filters["packed_scripts"] = packed_scripts
    return env


@cache
def _pack(code: str) -> str:
    return base64.b64encode(gzip.compress(code.encode("utf-8"), 9, mtime=0)).decode("ascii")


def packed_scripts(html: str) -> str:
    """The code of every ``<script>`` of ``html`` (Bokeh's rendered resources), joined,
    gzip-compressed (level 9, deterministic) and base64-encoded: the text of the page's
    ``#psnmf-bokehjs`` element, which ``templates/load_bokeh.js`` decompresses and runs.

    Examples
    --------
    >>> packed = packed_scripts("<script>var a = 1;</script><script>a += 1;</script>")
    >>> gzip.decompress(base64.b64decode(packed)).decode()
    'var a = 1;\\na += 1;'
    """
    return _pack("\n".join(re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S)))


def _figure(path: Path, caption: str, alt: str, page_dir: Path | None) -> dict[str, str]:
    """A figure of the page: its source relative to the page's folder (default the
    figure's own: the page written beside it)."""
    path = Path(path)
    rel = os.path.relpath(path, page_dir if page_dir is not None else path.parent)
    return {"src": quote(Path(rel).as_posix()), "caption": caption, "alt": alt}


def _summary_rows(result: UnmixResult, src: str) -> tuple[list[tuple[str, Any]], ...]:
    s = result.summary
    inp, par = s.input, s.parameters
    lo, hi = inp.energy_range_keV
    left = [
        ("file", src),
        ("signal", f"{inp.signal_type}, {inp.shape[0]} x {inp.shape[1]} pixels"
                   f" x {inp.shape[2]} channels"),
        ("energy range", f"{lo:.3g} - {hi:.3g} keV ({inp.energy_range_reason})"),
        ("beam energy", None if inp.beam_energy_keV is None else f"{inp.beam_energy_keV:g} keV"),
        ("counts per pixel", inp.counts_per_pixel),
        ("total counts", f"{inp.total_counts:.0f}"),
        ("elements", ", ".join(inp.elements) or "none in the metadata"),
    ]
    right = [
        ("components k", f"{par.n_components} ({par.n_components_choice})"),
        ("bin factor b", f"{par.bin_factor} ({par.bin_factor_choice})"),
        ("seed", par.seed),
        ("iterations", f"binned {s.fit.n_iter['binned']}, full {s.fit.n_iter['full']}"),
        ("run time", f"{s.timings_s.get('total', float('nan')):.1f} s"),
    ]
    return left, right


def _composition(comp: Composition | None) -> dict[str, Any] | None:
    """The phase x element matrix (at.% ± sd, interval; sort key at.%, -1 when not
    quantified; the film each component was corrected for when any was estimated from
    its spectrum) and the error budget rows of the quantified entries."""
    if comp is None:
        return None
    matrix = []
    for name in comp.components:
        rows = {r["element"]: r for r in comp.for_component(name)}
        cells = []
        for el in comp.elements:
            value, interval = comp.cell(rows[el])
            quantified = rows[el]["status"] == "quantified"
            cells.append({"value": value, "interval": interval,
                          "key": rows[el]["at_percent"] if quantified else -1})
        matrix.append({"name": str(name), "cells": cells,
                       "thickness": comp.thickness_cell(name) if comp.estimated else None,
                       "thickness_key": (comp.thickness.get(name) or {}).get("thickness_nm")
                       or -1})
    parts = list(comp.parts)
    budget = [
        {"component": str(r["component"]), "element": r["element"],
         "at_percent": r["at_percent"], "sd": r["sd"],
         "parts": [r["budget"].get(p) for p in parts],
         "overlaps": ", ".join(f"{e} ({c:+.2f})" for e, c in r["overlaps"].items())}
        for r in comp.rows if r["status"] == "quantified"
    ]
    return {"method": comp.method, "level_pct": int(round(100 * comp.level)),
            "elements": list(comp.elements), "matrix": matrix, "parts": parts,
            "thickness_estimated": comp.estimated,
            "budget": budget, "note": comp.note, "notes": list(comp.notes)}


def _smoothing(result: UnmixResult) -> dict[str, Any] | None:
    sm = result.summary.smoothing
    if not sm.penalty:
        return None
    return {"kind": "total-variation" if sm.penalty == "tv" else "Laplacian",
            "relative": sm.relative, "lam": sm.lam,
            "how": "chosen by held-out deviance" if sm.chosen else "given"}


def _selection(choice: ModelChoice | None) -> dict[str, Any] | None:
    """The rows of the k search (if any) and of the b search, chosen rows marked."""
    if choice is None:
        return None
    k_rows = [] if choice.k_search is None else [
        {"k": t.candidate.n_components, "deviance": t.deviance, "n_iter": t.n_iter,
         "best": t.candidate.n_components == choice.n_components}
        for t in choice.k_search.trials]
    b_rows = [{"b": t.candidate.bin_factor, "k": t.candidate.n_components,
               "deviance": t.deviance, "n_iter": t.n_iter, "best": t is choice.best}
              for t in choice.sorted_b_trials()]
    return {"k_rows": k_rows, "k_bin": choice.k_bin, "k_folds": choice.k_folds,
            "b_rows": b_rows}


def _priors(result: UnmixResult) -> list[tuple[str, str]]:
    """The user priors of the run (summary.json ``priors``), one row each."""
    pri = result.summary.priors or {}
    rows: list[tuple[str, str]] = []
    for j, src in pri.get("fixed_spectra", {}).items():
        rows.append((f"#{j} spectrum fixed", str(src)))
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
    return rows


def _residuals(result: UnmixResult) -> dict[str, Any] | None:
    """The residual section: the verdict, the departing energies of the worst region."""
    res = result.residuals
    if res is None:
        return None
    return {"structured": res.structured, "message": res.message,
            "alpha_pct": 100 * ALPHA, "scales": f"{min(SCALES)} to {max(SCALES)}",
            "peaks": [{"energy": p.energy_keV, "sigma": p.sigma, "raw": p.raw,
                       "model": p.model, "lines": ", ".join(p.lines[:4])}
                      for p in res.peaks]}


def _explorer_info(data: ExplorerData) -> dict[str, Any]:
    rc = data.counts
    return {"r": rc.r, "c": rc.c, "grid": rc.grid, "n_channels": rc.n_channels,
            "encoding": rc.encoding, "kib": round(rc.packed_nbytes / 1024), "d": data.d}


def context(result: UnmixResult, figure_paths: dict[str, Path],
            data: ExplorerData, page_dir: Path | None = None) -> dict[str, Any]:
    """The template's variables (besides those :func:`bokeh.embed.file_html` adds);
    ``page_dir``: the folder the page is written into (see :func:`build_html`)."""
    s = result.summary
    src = s.input.source.get("file") or "HyperSpy signal"
    name = Path(src).name if s.input.source.get("file") else src
    left, right = _summary_rows(result, src)
    dev = result.deviance
    return {
        "name": name,
        "psnmf_version": s.psnmf_version,
        "warnings": list(result.warnings),
        "summary_input": left,
        "summary_fit": right,
        "explorer": _explorer_info(data),
        "deviance": {"raw": dev.raw, "pca": dev.pca, "psnmf": dev.psnmf,
                     "floor": dev.floor, "seed": dev.seed,
                     "window": None if list(dev.window) == list(s.input.shape[:2])
                     else dev.window},
        "k": s.parameters.n_components,
        "b": s.parameters.bin_factor,
        "figures": {key: _figure(figure_paths[key], caption, fname, page_dir)
                    for key, fname, caption in FIGURES if key in figure_paths},
        "priors": _priors(result),
        "residuals": _residuals(result),
        "composition": _composition(s.composition),
        "smoothing": _smoothing(result),
        "selection": _selection(result.selection),
        "files": [str(v) for v in (s.files or {}).values()],
        "versions": list(s.versions.items()),
        "parameters_json": json.dumps(s.parameters.to_dict(), indent=1),
    }


@dataclass
class PreparedPage:
    """The interactive part of a report, built before its figures are ready: the data
    the page embeds and the Bokeh document of its views (:func:`prepare_html`)."""

    data: ExplorerData
    document: Any


def prepare_html(result: UnmixResult, *, raw_budget: int | None = None,
                 max_image_side: int | None = None) -> PreparedPage:
    """The page's embedded data and interactive views (the costly part of the report, which
    needs no figure): see :func:`build_html` for the parameters."""
    from psnmf.report import explorer
    from psnmf.report.interactive import explorer_document

    data = explorer.explorer_data(
        result, budget=raw_budget or explorer.RAW_BUDGET_BYTES,
        max_side=max_image_side or explorer.MAX_IMAGE_SIDE)
    return PreparedPage(data, explorer_document(data))


def build_html(result: UnmixResult, figure_paths: dict[str, Path], *,
               raw_budget: int | None = None, max_image_side: int | None = None,
               prepared: PreparedPage | None = None, page_dir: str | Path | None = None) -> str:
    """The report as one HTML string: BokehJS (compressed) and the interactive views' data
    embedded, the figures referenced by their paths relative to ``page_dir``.

    Parameters
    ----------
    result : UnmixResult
    figure_paths : dict
        ``{figure key: PNG path}`` (see :data:`psnmf.report.figures.FIGURES`).
    raw_budget, max_image_side : int, optional
        Bytes of the embedded region spectra and most pixels a side of the page's maps
        (default :data:`psnmf.report.explorer.RAW_BUDGET_BYTES` and
        :data:`~psnmf.report.explorer.MAX_IMAGE_SIDE`).
    prepared : PreparedPage, optional
        The interactive part, when :func:`prepare_html` built it already (while the
        figures were being drawn); then ``raw_budget`` and ``max_image_side`` are its.
    page_dir : str or path-like, optional
        The folder the page will be written into; default: the folder of each figure
        (the page beside its figures, as :func:`write_html` writes it).
    """
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    page = prepared or prepare_html(result, raw_budget=raw_budget,
                                    max_image_side=max_image_side)
    ctx = context(result, figure_paths, page.data,
                  None if page_dir is None else Path(page_dir))
    return file_html(page.document, resources=INLINE, title=f"psnmf report: {ctx['name']}",
                     template=environment().get_template(TEMPLATE), template_variables=ctx)


def index_html(batch: dict[str, Any]) -> str:
    """The index page of a batch of runs from the content of its ``index.json``
    (:meth:`psnmf.pipeline.batch.BatchResult.to_dict`): one row per file with its status,
    k, b, held-out deviances, residual verdict, time and links."""
    return environment().get_template("index.html.jinja").render(**batch)


def write_html(result: UnmixResult, path: str | Path,
               prepared: PreparedPage | None = None) -> Path:
    """Write the report (figures must already be in ``result.paths``; the page refers to
    them relative to its own folder; ``prepared``: its interactive part built beforehand
    by :func:`prepare_html`)."""
    figure_paths = {k: Path(v) for k, v in result.paths.items() if k.endswith("_figure")}
    return io.write_text(build_html(result, figure_paths, prepared=prepared,
                                    page_dir=Path(path).parent), path)
