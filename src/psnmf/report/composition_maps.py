"""The report's figure of the composition maps: each element's at.% per pixel of the
denoised data above its sigma map (:func:`psnmf.quantify.composition_maps`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from psnmf import io
from psnmf.report.figures import DPI

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.pipeline.summary import UnmixResult

#: The figure's (key, file name, caption), as in :data:`psnmf.report.figures.FIGURES`.
COMPOSITION_FIGURE = (
    "composition_maps_figure", "composition_maps.png",
    "Composition maps of the PSNMF-denoised data (at.% per pixel, Cliff-Lorimer as the "
    "component table, from the component line intensities and the maps) above their "
    "one-sigma maps (counting noise of each pixel's counts, bootstrap spread of the "
    "spectra, k-factor and thickness uncertainty, in quadrature). Colour scale of each "
    "panel: 0 to its 99.5th percentile.")


def composition_maps_figure(result: UnmixResult) -> Figure | None:
    """One column per element: its at.% map (top) and sigma map (bottom); None without
    composition maps."""
    cm = result.composition_maps
    if cm is None or not cm.elements:
        return None
    n = len(cm.elements)
    nav = result.signal.axes_manager.navigation_axes  # x, y
    x, y = nav[0], nav[1]
    b = cm.bin_factor
    ext = [x.offset - x.scale / 2, x.offset + x.scale * (x.size - 0.5),
           y.offset + y.scale * (y.size - 0.5), y.offset - y.scale / 2]
    units = str(x.units or "px")
    units = "px" if units in ("", "<undefined>") else units
    fig = Figure(figsize=(2.3 * n + 0.6, 4.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(2, n, squeeze=False)
    for e, el in enumerate(cm.elements):
        for row, (data, label) in enumerate(((cm.composition[e], "at.%"),
                                             (cm.sigma[e], "sigma at.%"))):
            ax = axes[row, e]
            finite = data[np.isfinite(data)]
            top = float(np.percentile(finite, 99.5)) if finite.size else 1.0
            im = ax.imshow(data, vmin=0, vmax=top if top > 0 else 1.0, cmap="viridis",
                           extent=ext if b == 1 else None, interpolation="nearest")
            ax.set_title(f"{el} {label}", fontsize=9)
            ax.tick_params(labelsize=6)
            ax.set_xlabel(units if b == 1 else f"bins of {b} px", fontsize=7)
            fig.colorbar(im, ax=ax, shrink=0.7).ax.tick_params(labelsize=6)
    return fig


def save_composition_maps_figure(result: UnmixResult, path: str | Path) -> Path | None:
    """Draw :func:`composition_maps_figure` and write it (PNG) atomically; None when the
    run has no composition maps."""
    fig = composition_maps_figure(result)
    return None if fig is None else io.savefig(fig, path, dpi=DPI)
