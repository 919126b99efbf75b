"""The interactive part of the report: maps to click on, the clicked region's spectrum.

Drawn with Bokeh rather than Plotly: Bokeh's standalone output
(:func:`bokeh.embed.file_html` with :data:`bokeh.resources.INLINE`) renders into a Jinja2
template of our own, bundles only the BokehJS parts the page uses (about 1.5 MB instead of
plotly.js's 4.5 MB), and its ``CustomJS`` callbacks receive NumPy arrays as typed arrays
(base64 in the page), which is what rebuilding a region's spectrum and model in the
browser needs.

Two roots are built from :class:`psnmf.report.explorer.ExplorerData`:

``explorer``
    The component maps; a tap on any map (these or the elemental maps) fills the spectrum
    panel (raw counts of the region holding the pixel, the PSNMF model and each
    component's part of it, linear and log tabs, the elements' lines marked) and a table
    of each component's share, and outlines the region on every map. The callback is
    ``templates/select_region.js``.
``element_maps``
    Raw, PCA and PSNMF elemental maps, one panel per line; buttons switch the method
    (``templates/element_source.js``).

All maps share their ranges (pan and zoom together) and are drawn in pixel coordinates,
``y`` downwards as in the static figures.

The maps go to the page as 8-bit colour codes, not floats (:func:`map_codes`): code ``c``
is the ``c``-th of :data:`LEVELS` equal steps of the map's colour range (the colour it is
drawn with), :data:`NAN_CODE` a pixel without value. A colour mapper has 256 colours, so
the picture is the float one's; the page holds 1 byte a map pixel instead of 4 (gzipped by
Bokeh, base64-encoded: the 21 maps of a 512 x 512 map with k = 3 and six elements take
1.47 MB of the page instead of 5.31 MB). The colour bars keep the maps' units and the hover
shows the value to within half a step, 1/510 of the colour range (:func:`_code_hover`);
the exact values are in the ``.hspy`` files.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from bokeh.document import Document
from bokeh.events import DocumentReady, Tap
from bokeh.layouts import column, gridplot, row
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    Div,
    HoverTool,
    InlineStyleSheet,
    Label,
    Legend,
    LinearColorMapper,
    Node,
    RadioButtonGroup,
    Range1d,
    Span,
    TabPanel,
    Tabs,
)
from bokeh.palettes import Category10_10, Inferno256, Viridis256, linear_palette
from bokeh.plotting import figure

from psnmf.report.explorer import ExplorerData

#: Names of the page's models that scripts and tests look up (``doc.get_model_by_name``).
NAMES = {
    "source": "region_spectrum",
    "marker": "region_marker",
    "info": "region_info",
    "element_source": "element_source",
}
METHOD_LABELS = {"raw": "raw", "pca": "PCA", "psnmf": "PSNMF"}
#: Floor of the values on the log-scale spectrum (counts).
LOG_FLOOR = 0.1
MAP_SIDE = 300
#: Colour levels of a map in the page (codes ``0 .. LEVELS - 1``), and the code of NaN.
LEVELS = 255
NAN_CODE = 255
#: Colour of pixels without value (masked out of the fit).
NAN_COLOR = "gray"


def _js(name: str) -> str:
    """A file of ``templates/`` (the callbacks' code, the info panel's style sheet)."""
    return resources.files("psnmf.report").joinpath("templates", name).read_text("utf-8")


def component_colors(k: int) -> list[str]:
    """One colour per component (Category10, as the static figures' tab10)."""
    return [Category10_10[i % 10] for i in range(k)]


def initial_pixel(data: ExplorerData) -> tuple[int, int]:
    """The pixel shown before any click: the centre of the image."""
    return data.shape[0] // 2, data.shape[1] // 2


def spectrum_columns(data: ExplorerData, iy: int, ix: int) -> dict[str, np.ndarray]:
    """The spectrum panel's columns for the region holding pixel ``(iy, ix)`` (the same
    columns ``select_region.js`` computes in the page)."""
    gy, gx = data.region_of(iy, ix)
    raw = data.counts.region(gy, gx)
    parts = data.region_model(gy, gx)
    cols: dict[str, np.ndarray] = {"raw": raw, "model": parts.sum(axis=0)}
    cols.update({f"c{j}": parts[j] for j in range(data.k)})
    cols.update({f"{key}_log": np.maximum(v, LOG_FLOOR) for key, v in list(cols.items())})
    return {"energy": data.energy.astype(np.float64), **cols}


def map_codes(img: np.ndarray, low: float, high: float) -> np.ndarray:
    """``img`` as uint8 colour codes: ``floor((v - low) / step)`` with ``step = (high -
    low) / LEVELS``, clipped to ``0 .. LEVELS - 1`` (as a colour mapper clips), NaN as
    :data:`NAN_CODE`.

    Examples
    --------
    >>> map_codes(np.array([[-1.0, 0.0, 0.5, 1.0, np.nan]]), 0.0, 1.0).tolist()
    [[0, 0, 127, 254, 255]]
    """
    a = np.asarray(img, dtype=np.float64)
    step = (high - low) / LEVELS if high > low else 1.0
    with np.errstate(invalid="ignore"):
        codes = np.clip(np.floor((a - low) / step), 0, LEVELS - 1)
    return np.where(np.isfinite(a), codes, NAN_CODE).astype(np.uint8)


@cache
def _code_mapper(palette: tuple[str, ...]) -> LinearColorMapper:
    """The mapper of the codes of :func:`map_codes`: code ``c`` gets colour ``c`` of
    ``palette`` resampled to :data:`LEVELS` colours, :data:`NAN_CODE` :data:`NAN_COLOR`
    (one per palette, shared by every map of the document being built)."""
    return LinearColorMapper(palette=linear_palette(palette, LEVELS), low=-0.5,
                             high=LEVELS - 0.5, high_color=NAN_COLOR, nan_color=NAN_COLOR)


def _code_hover(renderers: list[Any], ranges: list[tuple[float, float]],
                unit: str) -> HoverTool:
    """Hover of code maps: the pixel and its value, the centre of its code's step to 3
    digits (a bound for the first and last codes, which also hold the values beyond the
    colour range), from each renderer's ``(low, high)`` found by its name
    (``templates/map_value.js``)."""
    floor = CustomJSHover(code="return Math.floor(value).toString()")
    value = CustomJSHover(args=dict(names=[r.name for r in renderers],
                                    lows=[lo for lo, _ in ranges],
                                    highs=[hi for _, hi in ranges], unit=unit),
                          code=_js("map_value.js"))
    return HoverTool(renderers=renderers,
                     tooltips=[("pixel x, y", "$x{floor}, $y{floor}"),
                               ("value", "@image{custom}")],
                     formatters={"$x": floor, "$y": floor, "@image": value})


def _map_figure(title: str, x_range: Range1d, y_range: Range1d, side: int, name: str) -> Any:
    p = figure(title=title, name=name, width=side, height=side, x_range=x_range, y_range=y_range,
               tools="pan,wheel_zoom,box_zoom,reset", toolbar_location="above",
               match_aspect=True, min_border=4)
    p.grid.visible = False
    p.axis.major_label_text_font_size = "8pt"
    return p


def _image(p: Any, img: np.ndarray, palette: tuple[str, ...], low: float, high: float,
           shape: tuple[int, int], **kw: Any) -> Any:
    """The map ``img`` drawn over the data's pixels as codes (:func:`map_codes`)."""
    ny, nx = shape
    return p.image(image=[map_codes(img, low, high)], x=0, y=0, dw=nx, dh=ny,
                   color_mapper=_code_mapper(palette), **kw)


def _outline(p: Any, marker: ColumnDataSource) -> None:
    p.scatter(x="px", y="py", source=marker, marker="cross", size=13, line_color="white",
              line_width=3)
    p.scatter(x="px", y="py", source=marker, marker="cross", size=11, line_color="black",
              line_width=1.2)
    p.rect(x="x", y="y", width="w", height="h", source=marker, fill_alpha=0,
           line_color="white", line_width=2)
    p.rect(x="x", y="y", width="w", height="h", source=marker, fill_alpha=0,
           line_color="black", line_width=1, line_dash="dashed")


def _spectrum_figure(data: ExplorerData, source: ColumnDataSource, log: bool,
                     x_range: Range1d, names: list[str], colors: list[str]) -> Any:
    p = figure(width=760, height=360, x_range=x_range, y_axis_type="log" if log else "linear",
               tools="pan,wheel_zoom,box_zoom,reset,save", toolbar_location="above",
               x_axis_label="Energy (keV)", y_axis_label="counts per display channel")
    suffix = "_log" if log else ""
    items = [("raw counts", [p.step("energy", "raw" + suffix, source=source, mode="center",
                                    color="black", line_width=1)]),
             ("PSNMF model", [p.line("energy", "model" + suffix, source=source,
                                     color="#d62728", line_width=2.2, alpha=0.75)])]
    for j in range(data.k):
        items.append((names[j], [p.line("energy", f"c{j}{suffix}", source=source,
                                        color=colors[j], line_width=1.2, line_dash="dashed")]))
    legend = Legend(items=items, click_policy="hide", label_text_font_size="8pt")
    p.add_layout(legend, "right")
    for label, energy in data.markers:
        p.add_layout(Span(location=energy, dimension="height", line_color="#888888",
                          line_dash="dotted", line_width=1))
        p.add_layout(Label(x=energy, y=Node(target="frame", symbol="top", offset=4),
                           text=label, angle=np.pi / 2, text_align="right",
                           text_baseline="bottom", text_font_size="7pt",
                           text_color="#444444", x_offset=-1))
    if log:
        p.y_range.start = LOG_FLOOR * 0.8
    return p


def explorer_document(data: ExplorerData) -> Document:
    """The Bokeh document of the page: roots ``explorer`` and ``element_maps`` (see the
    module); when it is ready, the page shows the centre pixel's region."""
    ny, nx = data.shape
    k = data.k
    colors = component_colors(k)
    names = [f"component #{j}" for j in range(k)]
    x_range, y_range = Range1d(0, nx, bounds=(0, nx)), Range1d(ny, 0, bounds=(0, ny))
    iy, ix = initial_pixel(data)
    source = ColumnDataSource(spectrum_columns(data, iy, ix), name=NAMES["source"])
    gy, gx = data.region_of(iy, ix)
    r = data.counts.r
    x0, y0 = gx * r, gy * r
    x1, y1 = min(nx, x0 + r), min(ny, y0 + r)
    marker = ColumnDataSource({"x": [(x0 + x1) / 2], "y": [(y0 + y1) / 2],
                               "w": [x1 - x0], "h": [y1 - y0], "px": [ix + 0.5],
                               "py": [iy + 0.5]}, name=NAMES["marker"])
    info = Div(text="<p>Click on a map to show a region's spectrum.</p>", width=330,
               name=NAMES["info"], stylesheets=[InlineStyleSheet(css=_js("region_info.css"))])
    rc = data.counts
    empty = np.zeros(1, dtype=np.int32)
    select = CustomJS(
        args=dict(source=source, marker=marker, info=info, values=rc.values,
                  indices=rc.indices if rc.indices is not None else empty,
                  indptr=rc.indptr if rc.indptr is not None else empty,
                  weights=data.weights.ravel(), spectra=data.spectra.ravel(), nx=nx, ny=ny,
                  r=r, ngx=rc.grid[1], k=k, nch=rc.n_channels,
                  sparse=rc.encoding == "sparse", floor=LOG_FLOOR, names=names,
                  colors=colors, start=[ix + 0.5, iy + 0.5]),
        code=_js("select_region.js"))
    side = MAP_SIDE if k <= 3 else 240
    _code_mapper.cache_clear()  # a model belongs to one document
    abundance = LinearColorMapper(palette=Viridis256, low=0, high=1)
    maps = []
    for j in range(k):
        p = _map_figure(names[j], x_range, y_range, side, name=f"component_figure:{j}")
        p.title.text_color = colors[j]
        img = _image(p, data.component_maps[j], tuple(Viridis256), 0.0, 1.0, data.shape,
                     name=f"component_map:{j}")
        _outline(p, marker)
        p.add_tools(_code_hover([img], [(0.0, 1.0)], "(abundance)"))
        p.js_on_event(Tap, select)
        maps.append(p)
    maps[-1].add_layout(ColorBar(color_mapper=abundance, width=10, title="abundance"), "right")
    maps[-1].width += 90
    x_e = Range1d(*data.xlim, bounds=(float(data.energy[0]), float(data.energy[-1])))
    tabs = Tabs(tabs=[
        TabPanel(child=_spectrum_figure(data, source, False, x_e, names, colors),
                 title="linear"),
        TabPanel(child=_spectrum_figure(data, source, True, x_e, names, colors),
                 title="log"),
    ], name="spectrum_scale")
    help_text = Div(text=(
        "<p class='hint'>Click (tap) a pixel of any map: the panel shows the raw counts of "
        f"the {'pixel' if r == 1 else f'{r} x {r}-pixel region holding it'}"
        f"{'' if rc.c == 1 else f' ({rc.c} channels summed per point)'}, the PSNMF model "
        "of those counts and each component's part of it. Click a legend entry to hide a "
        "curve; the tabs switch the count axis between linear and log.</p>"), width=1100)
    explorer = column(help_text, gridplot(maps, ncols=min(k, 4), merge_tools=True,
                                          toolbar_location="right"),
                      row(tabs, info), name="explorer")
    doc = Document()
    doc.add_root(explorer)
    doc.add_root(_element_maps(data, x_range, y_range, marker, select))
    doc.js_on_event(DocumentReady, select)  # the first region's info, as after a click
    return doc


def _element_maps(data: ExplorerData, x_range: Range1d, y_range: Range1d,
                  marker: ColumnDataSource, select: CustomJS) -> Any:
    methods = [m for m in ("raw", "pca", "psnmf") if m in data.element_maps]
    lines = list(data.element_maps.get("raw") or next(iter(data.element_maps.values()), {}))
    if not lines:
        return column(Div(text="<p>No elements in the metadata: no elemental maps.</p>"),
                      name="element_maps")
    active = methods.index("psnmf") if "psnmf" in methods else len(methods) - 1
    figs, groups, bars, mappers = [], [], [], []
    for line in lines:
        p = _map_figure(line.replace("_", " "), x_range, y_range, 210,
                        name=f"element_figure:{line}")
        renderers, line_mappers, ranges = [], [], []
        for i, method in enumerate(methods):
            img = data.element_maps[method].get(line)
            if img is None:
                img = np.zeros_like(data.component_maps[0])
            hi = float(max(np.nanpercentile(img, 99.5), 1e-12))
            lo = float(min(0.0, np.nanpercentile(img, 0.5)))
            renderers.append(_image(p, img, tuple(Inferno256), lo, hi, data.shape,
                                    visible=i == active, name=f"element_map:{method}:{line}"))
            # the colour bar's mapper, in counts (the image's maps the codes)
            line_mappers.append(LinearColorMapper(palette=Inferno256, low=lo, high=hi))
            ranges.append((lo, hi))
        _outline(p, marker)
        p.add_tools(_code_hover(renderers, ranges, "counts"))
        bar = ColorBar(color_mapper=line_mappers[active], width=8,
                       major_label_text_font_size="7pt")
        p.add_layout(bar, "right")
        p.width += 60
        p.js_on_event(Tap, select)
        figs.append(p)
        groups.append(renderers)
        bars.append(bar)
        mappers.append(line_mappers)
    buttons = RadioButtonGroup(labels=[METHOD_LABELS[m] for m in methods], active=active,
                               name=NAMES["element_source"])
    buttons.js_on_change("active", CustomJS(
        args=dict(groups=groups, bars=bars, mappers=mappers, methods=methods),
        code=_js("element_source.js")))
    note = Div(text=(
        "<p class='hint'>Counts in each line's window; colour scale of each map: 0 to its "
        "99.5th percentile. The buttons switch between the raw data and the PCA- and "
        "PSNMF-denoised data; a click on a map shows that region's spectrum above.</p>"),
        width=1100)
    return column(note, buttons, gridplot(figs, ncols=4, merge_tools=True,
                                          toolbar_location="right"), name="element_maps")
