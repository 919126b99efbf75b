"""The load step: read (or take) the EDS spectrum image, crop its energy axis, find its lines.

The default energy range starts at :data:`LOW_ENERGY_CUT` (drops the zero-energy noise
peak) and ends at the beam energy, at most :data:`HIGH_ENERGY_CUT` unless an element's main
line needs more. A file whose counts lie almost all in the noise peak keeps the full range,
with a warning: there is next to no X-ray signal to unmix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf import hyperspy as signals
from psnmf import io
from psnmf._validation import counts_csr

#: Lower end of the default energy range (keV): drops the zero-energy (noise) peak.
LOW_ENERGY_CUT = 0.2
#: Upper end of the default energy range when the beam energy allows more (keV).
HIGH_ENERGY_CUT = 20.0
#: Width of the line integration windows, in FWHM of the line (i.e. +-1.2 FWHM).
INTEGRATION_WINDOWS = 2.4


@dataclass
class Loaded:
    """Result of :func:`load`: the counts to unmix, their signal and where they came from.

    Attributes
    ----------
    signal : EDS signal
        The data after energy cropping (a copy; the caller's signal is not changed). Lazy
        for a file (its axes, metadata and lines are what the run uses; the counts are in
        ``counts``), as given for a signal passed in.
    counts : scipy.sparse.csr_matrix (pixels, channels)
        The counts of ``signal``, read once, block by block for a file
        (:func:`psnmf.io.to_counts`; :func:`psnmf.hyperspy.as_counts` for a signal passed
        in): every later step works on them.
    image_shape : (ny, nx)
    source : dict
        ``file``, ``signal_index``, ``n_signals``, ``title`` and ``sha256`` of a file
        (``file`` is ``None`` for a signal passed in).
    energy_range_keV, full_energy_range_keV : [lo, hi]
        The range used and the range of the data.
    energy_range_reason : str
        Why that range.
    beam_energy_keV : float or None
    signal_type : str
    """

    signal: Any
    counts: sp.csr_matrix
    image_shape: tuple[int, int]
    source: dict[str, Any]
    energy_range_keV: list[float]
    energy_range_reason: str
    full_energy_range_keV: list[float]
    beam_energy_keV: float | None
    signal_type: str


def load(
    path_or_signal: Any,
    energy_range: tuple[float | None, float | None] | None,
    elements: Sequence[str] | None,
    notes: list[str],
) -> Loaded:
    """Load (or copy) the signal, read its counts and crop its energy axis.

    A file is opened lazily and its counts read once, chunk by chunk, into a sparse
    matrix: the dense cube is never held in memory (at 512 x 512 x 4096 it is 2 GB of
    uint16 for 0.3 million counts). The counts of every channel are checked; the energy
    range is then a slice of channels of both the signal (lazy) and the counts. Warnings go
    to ``notes``.
    """
    signal, source = _read(path_or_signal, elements)
    if source.get("file") is None:
        counts, shape, _ = signals.as_counts(signal, None)
    else:  # checked and converted block by block; messages name the file
        csr, shape = io.to_counts(signal, dtype=np.float64)
        counts = counts_csr(csr)
    energies = np.asarray(signal.axes_manager.signal_axes[0].axis, dtype=float)
    width = float(energies[1] - energies[0]) if energies.size > 1 else 1.0
    full = (float(energies[0]), float(energies[-1] + width))
    beam = beam_energy(signal)
    name = source.get("file") or "signal"
    if energy_range is None:
        rng, why = default_energy_range(signal, full, beam)
        i0, i1 = io.energy_channels(signal, rng, name)
        total = float(counts.data.sum())
        kept = _channel_total(counts, i0, i1)
        if total > 0 and (kept < 0.01 * total or kept < 100):
            notes.append(_noise_peak_note(kept, total, rng))
            rng = (full[0], rng[1])
            why = "full range from the first channel (default range held almost no counts)"
            i0, i1 = io.energy_channels(signal, rng, name)
    else:
        lo, hi = energy_range
        rng = (full[0] if lo is None else float(lo), full[1] if hi is None else float(hi))
        why = "given by the user"
        i0, i1 = io.energy_channels(signal, energy_range, name)
    signal = signal.isig[i0:i1]
    counts = counts_csr(counts[:, i0:i1]) if (i0, i1) != (0, counts.shape[1]) else counts
    signal.metadata.General.title = signal.metadata.General.get_item("title", "") or "EDS"
    return Loaded(
        signal=signal, counts=counts, image_shape=(int(shape[0]), int(shape[1])),
        source=source, energy_range_keV=[float(rng[0]), float(rng[1])],
        energy_range_reason=why, full_energy_range_keV=list(full), beam_energy_keV=beam,
        signal_type=signal.metadata.Signal.signal_type,
    )


def _channel_total(counts: sp.csr_matrix, i0: int, i1: int) -> float:
    """Total counts in the channels ``[i0, i1)``."""
    inside = (counts.indices >= i0) & (counts.indices < i1)
    return float(counts.data[inside].sum())


def _read(path_or_signal: Any, elements: Sequence[str] | None) -> tuple[Any, dict[str, Any]]:
    """The signal (lazy for a file; a copy of one passed in, as EDS) and its source record."""
    if signals.is_signal(path_or_signal):
        signals.check_spectrum_image(path_or_signal, "path_or_signal")
        signal = path_or_signal.deepcopy()
        if not hasattr(signal, "get_lines_intensity"):
            signal.set_signal_type("EDS_TEM")
        if elements is not None:
            io.set_elements(signal, elements)
        io.native_byte_order(signal)
        io.check_calibration(signal, "path_or_signal")
        source = {"file": None, "title": signal.metadata.General.get_item("title", "")}
    else:
        source_path = Path(path_or_signal).expanduser()
        signal = io.load_spectrum_image(source_path, elements=elements, lazy=True)
        source = dict(signal.metadata.General.psnmf_source.as_dictionary())
        source["sha256"] = io.file_checksum(source_path)
    return signal, source


def _noise_peak_note(kept: float, total: float, rng: tuple[float, float]) -> str:
    return (
        f"Only {kept:.0f} of {total:.0f} counts ({100 * kept / total:.2g} %) lie in the "
        f"default energy range {rng[0]:.3g}-{rng[1]:.3g} keV: almost all counts of this "
        "file are in the zero-energy (detector noise) peak, so there is next to no "
        "X-ray signal. The run used the full energy range up to "
        f"{rng[1]:.3g} keV, including the zero-energy peak; its components and maps "
        "describe that peak, not phases. Check the acquisition (or pass "
        "energy_range / --energy-range explicitly)."
    )


def beam_energy(signal: Any) -> float | None:
    """The beam energy (keV) of the TEM or SEM metadata, if recorded."""
    for mode in ("TEM", "SEM"):
        value = signal.metadata.get_item(f"Acquisition_instrument.{mode}.beam_energy")
        if value is not None:
            return float(value)
    return None


def main_lines(signal: Any) -> list[str]:
    """The X-ray line exspy would integrate for each element (one per element).

    The lines of ``metadata.Sample.xray_lines`` if set, else those ``add_lines`` picks
    (the highest 'a' line below half the beam energy), found on a one-spectrum copy so
    the signal's metadata stay as they are.
    """
    elements = list(signal.metadata.get_item("Sample.elements", []) or [])
    if not elements:
        return []
    lines = signal.metadata.get_item("Sample.xray_lines")
    if lines:
        return [str(x) for x in lines]
    ne = signal.axes_manager.signal_axes[0].size
    probe = signals.spectra_signal(np.zeros((1, ne)), signal)
    try:
        probe.add_lines()
    except Exception:  # pragma: no cover - exspy internals
        return []
    return [str(x) for x in probe.metadata.get_item("Sample.xray_lines", []) or []]


def _line_energy(line: str) -> float:
    from exspy.material import elements as db

    el, ln = line.split("_")
    return float(db[el]["Atomic_properties"]["Xray_lines"][ln]["energy (keV)"])


def default_energy_range(
    signal: Any, full: tuple[float, float], beam: float | None
) -> tuple[tuple[float, float], str]:
    """The default ``(lo, hi)`` in keV and the reason, in words."""
    lo = max(LOW_ENERGY_CUT, full[0])
    hi = full[1]
    parts = [f"from {LOW_ENERGY_CUT} keV (drops the zero-energy noise peak)"]
    if beam is not None and beam < hi:
        hi = beam
        parts.append(f"up to the beam energy ({beam:g} keV)")
    if hi > HIGH_ENERGY_CUT:
        needed = [_line_energy(x) for x in main_lines(signal)]
        top = max([HIGH_ENERGY_CUT, *[1.1 * e + 0.5 for e in needed]])
        if top < hi:
            hi = top
            parts.append(f"up to {top:g} keV (above it no main line of the elements)")
    if hi >= full[1]:
        parts.append("up to the end of the axis")
    return (lo, hi), ", ".join(parts)


def lines_in_range(signal: Any) -> tuple[list[str], list[str]]:
    """(main lines whose integration window lies inside the energy axis, the others)."""
    axis = signal.axes_manager.signal_axes[0]
    lo, hi = float(axis.axis[0]), float(axis.axis[-1])
    inside, outside = [], []
    for line in main_lines(signal):
        try:
            (start, end), = signal.estimate_integration_windows(
                windows_width=INTEGRATION_WINDOWS, xray_lines=[line]
            )
        except Exception:  # pragma: no cover - unknown line
            outside.append(line)
            continue
        (inside if lo <= start and end <= hi else outside).append(line)
    return inside, outside
