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
    "panel: its 0.5th to 99.5th percentile.")


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


def save_composition_maps_figure(result: UnmixResult, path: str | Path) -> Path | None:
    """Draw :func:`composition_maps_figure` and write it (PNG) atomically; None when the
    run has no composition maps."""
    fig = composition_maps_figure(result)
    return None if fig is None else io.savefig(fig, path, dpi=DPI)
