"""The user priors of :func:`psnmf.pipeline.unmix`: read, put on the data's axes, checked.

:class:`Priors` holds what the user gives, by component index: reference spectra to fix
(arrays, signals or files: ``.hspy``, ``.msa``, ``.csv``), elements to forbid in a
component, regions of interest to start components from and pixels to mask out of the fit
(boolean arrays or ``.npy`` / ``.png`` / ``.tif`` images of the map's shape).
:func:`resolve` turns them, against the loaded data, into the estimator's options
(:class:`psnmf.PSNMF` ``fixed_spectra``, ``spectra_mask``, ``init_rois`` and
``fit(pixel_mask=...)``) and a record for ``summary.json``.

A forbidden element's channels are the windows of its lines on the data's energy axis:
every line of each of its families in the energy range with at least
:data:`MIN_LINE_WEIGHT` of its family's strongest cross-section, +-1.2 FWHM of the detector
resolution at that line (:data:`psnmf.pipeline.load.INTEGRATION_WINDOWS`, the windows of
the elemental maps). In those channels that component's spectrum has no line but keeps a
continuum: a convex curve that follows the bremsstrahlung and the tails of the component's
other lines and holds no peak (:class:`psnmf.engine.priors.ContinuumWindows`). A line of
the component's own elements inside a window is not a tail: it is lost there too, so an
element whose lines sit on the component's own peaks cannot be forbidden cleanly. Nor can
an element that is in the phase after all: the curve's level is not tied to the
neighbouring channels, so the window keeps its counts as a plateau.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psnmf import priors as checks
from psnmf.pipeline.load import INTEGRATION_WINDOWS

__all__ = ["MIN_LINE_WEIGHT", "Priors", "ResolvedPriors", "forbidden_channels",
           "read_mask", "read_spectrum", "resolve"]

#: Lines weaker than this fraction of their family's strongest line get no window.
MIN_LINE_WEIGHT = 0.01
#: Relative tolerance on the energy axes under which a reference is on the data's axis.
AXIS_RTOL = 1e-6


@dataclass
class Priors:
    """User priors, by component index (0 is the first component).

    Attributes
    ----------
    fixed_spectra : dict {component: array, EDS signal or path}
        Reference spectra to fix (a path: ``.hspy``, ``.msa`` or ``.csv``; an array on the
        data's channels after the energy crop).
    forbid : dict {component: list of element symbols}
        Elements absent from a component.
    rois : dict {component: bool array or path}
        Regions of interest that start the components (a path: ``.npy``, ``.png``,
        ``.tif``; non-zero = in the region).
    pixel_mask : bool array or path, optional
        Pixels masked out of the fit (non-zero = masked out).
    """

    fixed_spectra: dict[int, Any] = field(default_factory=dict)
    forbid: dict[int, list[str]] = field(default_factory=dict)
    rois: dict[int, Any] = field(default_factory=dict)
    pixel_mask: Any = None

    @classmethod
    def from_any(cls, value: Any) -> Priors | None:
        """A :class:`Priors` from itself, a dict of its fields, or None."""
        if value is None or isinstance(value, Priors):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"priors must be a psnmf.pipeline.Priors or a dict with keys "
                            f"'fixed_spectra', 'forbid', 'rois', 'pixel_mask'; got "
                            f"{type(value).__name__}.")
        unknown = set(value) - {"fixed_spectra", "forbid", "rois", "pixel_mask"}
        if unknown:
            raise ValueError(f"priors has unknown key(s) {sorted(unknown)}: use "
                             "'fixed_spectra', 'forbid', 'rois', 'pixel_mask'.")
        return cls(**value)

    @property
    def empty(self) -> bool:
        """Whether no prior is given."""
        return not (self.fixed_spectra or self.forbid or self.rois) and self.pixel_mask is None


@dataclass
class ResolvedPriors:
    """The priors on the loaded data.

    Attributes
    ----------
    estimator : dict
        ``fixed_spectra``, ``spectra_mask``, ``init_rois`` for :class:`psnmf.PSNMF`.
    pixel_mask : ndarray (ny, nx) of bool or None
    record : dict
        What ``summary.json`` records (sources, elements, channel and pixel counts).
    """

    estimator: dict[str, Any]
    pixel_mask: np.ndarray | None
    record: dict[str, Any]

    @property
    def min_components(self) -> int:
        """The fewest components the priors name."""
        m = 0
        for key in ("fixed_spectra", "init_rois"):
            if self.estimator.get(key):
                m = max(m, max(self.estimator[key]) + 1)
        if self.estimator.get("spectra_mask") is not None:
            m = max(m, self.estimator["spectra_mask"].shape[0])
        return m


def _name(source: Any) -> str:
    return str(source) if isinstance(source, str | Path) else f"<{type(source).__name__}>"


def read_mask(source: Any, image_shape: tuple[int, int], what: str) -> np.ndarray:
    """A boolean (ny, nx) mask from an array or a ``.npy`` / ``.png`` / ``.tif`` file.

    Images: non-zero (in any channel) is True. The shape must be the map's.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what}: no file {path}; give a .npy, .png or .tif "
                                    "boolean image of the map's shape.")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif suffix in (".png", ".tif", ".tiff"):
            from PIL import Image

            arr = np.asarray(Image.open(path))
            if arr.ndim == 3:
                arr = arr[..., :3].any(axis=-1) if arr.shape[-1] >= 3 else arr.any(axis=-1)
        else:
            raise ValueError(f"{what}: {path} is not a .npy, .png or .tif file.")
    else:
        arr = np.asarray(source)
    arr = np.asarray(arr)
    if arr.shape != tuple(image_shape):
        raise ValueError(f"{what} ({_name(source)}) has shape {arr.shape}, but the maps are "
                         f"{image_shape[0]} x {image_shape[1]}: give a mask of the map's "
                         "shape (rows, columns).")
    return arr != 0


def _axis(signal: Any) -> tuple[float, float, int]:
    ax = signal.axes_manager.signal_axes[0]
    return float(ax.offset), float(ax.scale), int(ax.size)


def read_spectrum(source: Any, signal: Any, what: str) -> np.ndarray:
    """A reference spectrum on the energy axis of ``signal`` (the data after the crop).

    ``source``: an array with the data's channels, a HyperSpy Signal1D, or a ``.hspy`` /
    ``.msa`` file (read with HyperSpy) or ``.csv`` (two columns: energy in keV, counts;
    a header line is skipped). A spectrum on the same axis (offset and scale) whose range
    covers the data's is cut to the data's channels; on another axis it is interpolated
    linearly onto the data's channel energies, provided it covers the data's energy range;
    otherwise it is refused.
    """
    offset, scale, size = _axis(signal)
    energies = offset + scale * np.arange(size)
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what}: no file {path}.")
        suffix = path.suffix.lower()
        if suffix == ".csv":
            table = np.genfromtxt(path, delimiter=",", skip_header=0)
            if table.ndim == 2 and np.isnan(table[0]).any():
                table = table[1:]
            if table.ndim != 2 or table.shape[1] < 2:
                raise ValueError(f"{what}: {path} needs two columns, energy (keV) and "
                                 "counts.")
            return _on_axis(table[:, 0], table[:, 1], energies, scale, what, path)
        if suffix in (".hspy", ".msa", ".hdf5", ".h5"):
            import hyperspy.api as hs

            source = hs.load(str(path))
        else:
            raise ValueError(f"{what}: {path} is not a .hspy, .msa or .csv spectrum.")
    if hasattr(source, "axes_manager"):
        if source.axes_manager.navigation_dimension != 0:
            raise ValueError(f"{what} ({_name(source)}) is not a single spectrum (it has "
                             f"navigation shape {source.axes_manager.navigation_shape}); "
                             "sum it first (signal.sum()).")
        o, sc, n = _axis(source)
        values = np.asarray(source.data, dtype=np.float64)
        units = str(source.axes_manager.signal_axes[0].units or "keV")
        if units == "eV":
            o, sc = o / 1e3, sc / 1e3
        return _on_axis(o + sc * np.arange(n), values, energies, scale, what, source)
    arr = np.asarray(source, dtype=np.float64)
    if arr.ndim != 1 or arr.size != size:
        raise ValueError(f"{what} has {arr.size} values but the data have {size} channels "
                         f"({energies[0]:.3f}-{energies[-1]:.3f} keV after the energy crop):"
                         " give the spectrum on that axis, or a file or signal with its "
                         "energy axis.")
    return arr


def _on_axis(e_ref: np.ndarray, values: np.ndarray, energies: np.ndarray, scale: float,
             what: str, source: Any) -> np.ndarray:
    """``values`` at energies ``e_ref`` put on the channel energies ``energies``."""
    e_ref = np.asarray(e_ref, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    lo, hi = energies[0], energies[-1]
    tol = AXIS_RTOL * max(abs(scale), 1e-12) * len(energies) + 1e-9
    if e_ref.size < 2 or e_ref[0] > lo + 0.5 * scale or e_ref[-1] < hi - 0.5 * scale:
        raise ValueError(
            f"{what} ({_name(source)}) covers {e_ref[0]:.3f}-{e_ref[-1]:.3f} keV, but the "
            f"fit uses {lo:.3f}-{hi:.3f} keV: give a reference measured over the data's "
            "energy range (or crop the data with energy_range / --energy-range)."
        )
    ref_scale = (e_ref[-1] - e_ref[0]) / (e_ref.size - 1)
    start = (lo - e_ref[0]) / ref_scale
    same = abs(ref_scale - scale) <= tol and abs(start - round(start)) < 1e-3
    if same:
        i0 = int(round(start))
        return values[i0:i0 + len(energies)].copy()
    if ref_scale > 2 * scale:
        raise ValueError(
            f"{what} ({_name(source)}) has {ref_scale * 1e3:.1f} eV channels, coarser than "
            f"the data's {scale * 1e3:.1f} eV: interpolating it would invent detail; give "
            "a reference with channels as fine as the data's."
        )
    # counts per channel scale with the channel width: interpolate the density
    return np.interp(energies, e_ref, values) * (scale / ref_scale)


def forbidden_channels(model: Any, element: str) -> np.ndarray:
    """Bool (channels,): the windows of ``element``'s lines on the axis of ``model``.

    Raises ValueError for an unknown element or one without lines in the energy range.
    """
    from psnmf.physics import atomic_number

    try:
        atomic_number(element)
    except (KeyError, ValueError):
        raise ValueError(f"forbidden element {element!r} is not a chemical symbol (e.g. "
                         "Fe, O, Cu).") from None
    energy = model.energy
    out = np.zeros(energy.size, dtype=bool)
    for family in model.families(element):
        lines = model.lines(element, family)
        strongest = max(ln.cross_section for ln in lines)
        for ln in lines:
            if ln.cross_section < MIN_LINE_WEIGHT * strongest:
                continue
            half = 0.5 * INTEGRATION_WINDOWS * float(model.fwhm(ln.energy))
            out |= (energy >= ln.energy - half) & (energy <= ln.energy + half)
    if not out.any():
        raise ValueError(f"forbidden element {element} has no line in the energy range "
                         f"{energy[0]:.3g}-{energy[-1]:.3g} keV: nothing to forbid; drop it.")
    return out


def resolve(priors: Priors | None, signal: Any, counts: Any,
            image_shape: tuple[int, int]) -> ResolvedPriors | None:
    """The priors on the loaded data (``signal`` after the energy crop, its ``counts``).

    Every error names the prior and the fix; see :mod:`psnmf.priors` for the checks the
    estimator adds (values of the spectra, regions with counts, conflicts).
    """
    if priors is None or priors.empty:
        return None
    ne = counts.shape[1]
    record: dict[str, Any] = {}
    fixed = {}
    for j, src in sorted(priors.fixed_spectra.items()):
        j = checks.check_component(j, "fixed spectrum")
        fixed[j] = read_spectrum(src, signal, f"the fixed spectrum of component {j}")
    if fixed:
        checks.check_fixed_spectra(fixed, ne)
        record["fixed_spectra"] = {str(j): _name(src) for j, src in
                                   sorted(priors.fixed_spectra.items())}
    support = None
    if priors.forbid:
        from psnmf.quantify import model_for_signal

        model = model_for_signal(signal)
        m = max(checks.check_component(j, "forbid") for j in priors.forbid) + 1
        support = np.ones((m, ne), dtype=bool)
        record["forbid"] = {}
        for j, elements in sorted(priors.forbid.items()):
            els = [elements] if isinstance(elements, str) else list(elements)
            if not els:
                raise ValueError(f"forbid: no element given for component {j}.")
            for el in els:
                support[int(j)] &= ~forbidden_channels(model, str(el).strip())
            record["forbid"][str(j)] = {"elements": els,
                                        "channels": int((~support[int(j)]).sum())}
        checks.check_spectra_mask(support, ne)
    rois = {}
    for j, src in sorted(priors.rois.items()):
        j = checks.check_component(j, "roi")
        rois[j] = read_mask(src, image_shape, f"the region of interest of component {j}")
        if not rois[j].any():
            raise ValueError(f"the region of interest of component {j} ({_name(src)}) "
                             "selects no pixel.")
    if rois:
        record["init_rois"] = {str(j): {"source": _name(priors.rois[j]),
                                        "pixels": int(rois[j].sum())} for j in rois}
    mask = None
    if priors.pixel_mask is not None:
        mask = read_mask(priors.pixel_mask, image_shape, "the pixel mask")
        mask = checks.check_pixel_mask(mask, image_shape)
        record["pixel_mask"] = {"source": _name(priors.pixel_mask),
                                "masked_pixels": int(mask.sum()),
                                "fraction": float(mask.mean())}
        for j, roi in rois.items():
            if not (roi & ~mask).any():
                raise ValueError(f"the region of interest of component {j} lies wholly in "
                                 "the pixel mask: it has no counts to start from.")
    estimator = {"fixed_spectra": fixed or None, "spectra_mask": support,
                 "init_rois": rois or None}
    return ResolvedPriors(estimator=estimator, pixel_mask=mask, record=record)
