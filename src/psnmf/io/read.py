"""Reading EDX spectrum images: one exspy EDS signal out of any supported file.

:func:`load_spectrum_image` reads every EDX spectrum-image format that RosettaSciIO reads
through :func:`hyperspy.api.load` (Bruker ``.bcf``, Thermo Fisher Velox ``.emd`` with its
sparse EDS streams, JEOL ``.pts``/``.asw``, EDAX ``.spd``, Gatan ``.dm3``/``.dm4``, HyperSpy
``.hspy``/``.hdf5``/``.zspy``, ripple ``.rpl``) plus a plain NumPy ``.npz`` layout (see
:func:`load_npz`). It returns one exspy EDS signal (``EDSTEMSpectrum`` or
``EDSSEMSpectrum``) with two navigation axes (y, x) and one signal axis (energy, in keV).
When a file holds several signals, :func:`describe_signals` lists them and the EDS spectrum
image is picked automatically (or by ``signal_index``). :func:`crop_energy` and
:func:`set_elements` apply ``energy_range`` and ``elements`` to a signal already in memory.

An eager read checks the counts (:func:`psnmf.io.counts.validate_counts`): errors for
negative, non-finite or masked values, a :class:`UserWarning` for non-integer ones, because
the Poisson model assumes counts. A lazy read leaves the check to the conversion to counts.

Examples
--------
>>> import tempfile, numpy as np
>>> path = Path(tempfile.mkdtemp()) / "tiny.npz"
>>> np.savez(path, counts=np.ones((2, 3, 40), dtype=np.uint16), energy_scale=0.05)
>>> s = load_spectrum_image(path, energy_range=(0.5, 1.5))
>>> type(s).__name__, s.data.shape, s.axes_manager.signal_axes[0].offset
('EDSTEMSpectrum', (2, 3, 20), 0.5)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from psnmf import _validation
from psnmf.io.counts import validate_counts
from psnmf.io.errors import (
    CalibrationError,
    CorruptFileError,
    InputNotFoundError,
    InvalidCountsError,
    MissingDependencyError,
    NoSpectrumImageError,
    PsnmfIOError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:  # pragma: no cover
    from hyperspy.signal import BaseSignal

__all__ = [
    "EDS_TYPES",
    "SUPPORTED_EXTENSIONS",
    "SignalInfo",
    "check_calibration",
    "crop_energy",
    "describe_signals",
    "input_files",
    "load_npz",
    "load_spectrum_image",
    "native_byte_order",
    "set_elements",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


# Formats
# ---------------------------------------------------------------------------
#: Reader keyword arguments per extension, passed to :func:`hyperspy.api.load`.
#: Velox: sum the frames of the sparse EDS stream and the detectors, so one
#: (y, x, energy) cube comes back and memory stays bounded by that cube.
#: JEOL: frames are summed by default, but in ``uint8`` that overflows.
_READER_KWARGS: dict[str, dict[str, Any]] = {
    ".bcf": {"index": "all"},
    ".emd": {"sum_frames": True, "sum_EDS_detectors": True},
    ".pts": {"sum_frames": True, "SI_dtype": np.uint16},
    ".asw": {"sum_frames": True, "SI_dtype": np.uint16},
    ".spd": {},
    ".dm3": {},
    ".dm4": {},
    ".hspy": {},
    ".hdf5": {},
    ".zspy": {},
    ".rpl": {},
}

#: Every extension :func:`load_spectrum_image` accepts (lower case).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (*_READER_KWARGS, ".npz")

#: Extra hints for files that need a companion or are single spectra.
_EXTENSION_HINTS: dict[str, str] = {
    ".raw": "a ripple .raw file is read through its .rpl header: pass the .rpl file",
    ".spx": "Bruker .spx files hold a single spectrum, not a spectrum image",
    ".msa": "EMSA/MSA files hold a single spectrum, not a spectrum image",
    ".spc": "EDAX .spc files hold a single spectrum; pass the .spd spectrum image",
}

#: HyperSpy signal types psnmf reads as EDS data.
EDS_TYPES = ("EDS_TEM", "EDS_SEM")


# ---------------------------------------------------------------------------
# Describing what a file holds
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SignalInfo:
    """One signal held by a file, as listed by :func:`describe_signals`.

    Attributes
    ----------
    index : int
        Position in the file; pass it as ``signal_index`` to pick this signal.
    title : str
        The signal's title (e.g. ``"EDX"``, ``"HAADF"``).
    signal_type : str
        HyperSpy signal type (``"EDS_TEM"``, ``"EDS_SEM"``, ``"EELS"``, ``""``).
    class_name : str
        Class of the HyperSpy signal, e.g. ``"EDSTEMSpectrum"``.
    shape : tuple of int
        Data shape, navigation first (``(ny, nx, ne)`` for a spectrum image).
    dtype : str
        Data type of the stored data.
    navigation_dimension, signal_dimension : int
        HyperSpy dimensions.
    is_eds_spectrum_image : bool
        Whether psnmf can use it: an EDS signal with one signal axis and two
        navigation axes.
    picked : bool
        Whether :func:`load_spectrum_image` picks it when no ``signal_index``
        is given.
    """

    index: int
    title: str
    signal_type: str
    class_name: str
    shape: tuple[int, ...]
    dtype: str
    navigation_dimension: int
    signal_dimension: int
    is_eds_spectrum_image: bool
    picked: bool = False

    def __str__(self) -> str:
        kind = self.signal_type or "no signal type"
        mark = "  <- EDS spectrum image (picked)" if self.picked else ""
        dims = "x".join(str(n) for n in self.shape)
        return (
            f"[{self.index}] {self.class_name} '{self.title}' ({kind}), {dims} {self.dtype}{mark}"
        )


def _format_infos(infos: Sequence[SignalInfo]) -> str:
    if not infos:
        return "    (no signals)"
    return "\n".join(f"    {info}" for info in infos)


def _is_usable(nav_dim: int, sig_dim: int, signal_type: str, require_2d: bool) -> bool:
    """The single place that decides which EDS signals psnmf can use.

    A spectrum image has one signal axis and two navigation axes. Line scans
    (one navigation axis) are let through only when ``require_2d`` is False.
    """
    if sig_dim != 1 or signal_type not in EDS_TYPES:
        return False
    return nav_dim == 2 or (not require_2d and nav_dim == 1)


def _is_generic_image(info: SignalInfo, require_2d: bool) -> bool:
    """A 1-D signal without signal type shaped like a spectrum image (a .rpl without
    ``signal``, a plain HyperSpy ``Signal1D``): used as EDS when the file holds no EDS
    signal and exactly one of these."""
    nav = info.navigation_dimension
    return (info.signal_type == "" and info.signal_dimension == 1
            and (nav == 2 or (not require_2d and nav == 1)))


def _info(index: int, signal: BaseSignal) -> SignalInfo:
    am = signal.axes_manager
    signal_type = str(signal.metadata.get_item("Signal.signal_type", "") or "")
    return SignalInfo(
        index=index,
        title=str(signal.metadata.get_item("General.title", "") or ""),
        signal_type=signal_type,
        class_name=type(signal).__name__,
        shape=tuple(int(n) for n in signal.data.shape),
        dtype=str(signal.data.dtype),
        navigation_dimension=int(am.navigation_dimension),
        signal_dimension=int(am.signal_dimension),
        is_eds_spectrum_image=_is_usable(
            am.navigation_dimension, am.signal_dimension, signal_type, True
        ),
    )


def _pick(infos: list[SignalInfo], require_2d: bool) -> int | None:
    """Index of the largest usable EDS signal, or None."""
    usable = [
        info
        for info in infos
        if _is_usable(
            info.navigation_dimension, info.signal_dimension, info.signal_type, require_2d
        )
    ]
    if not usable:
        generic = [info for info in infos if _is_generic_image(info, require_2d)]
        return generic[0].index if len(generic) == 1 else None
    # Prefer spectrum images over line scans, then the largest.
    best = max(usable, key=lambda i: (i.navigation_dimension == 2, math.prod(i.shape)))
    return best.index


def describe_signals(path: PathLike, *, lazy: bool = True) -> list[SignalInfo]:
    """List the signals a file holds and mark the one psnmf would pick.

    Parameters
    ----------
    path : str or path-like
        Any file :func:`load_spectrum_image` accepts.
    lazy : bool, default True
        Read lazily (cheap for big files: the data are not decompressed).

    Returns
    -------
    list of SignalInfo
        One entry per signal, in file order; ``print`` them for a table.

    Raises
    ------
    PsnmfIOError
        For a missing, unsupported or corrupt file (see :mod:`psnmf.io.errors`).

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "scan.npz"
    >>> np.savez(path, counts=np.ones((4, 5, 30), dtype=np.uint16), energy_scale=0.01)
    >>> for info in describe_signals(path):
    ...     print(info)
    [0] EDSTEMSpectrum 'scan' (EDS_TEM), 4x5x30 uint16  <- EDS spectrum image (picked)

    A Bruker file with a HAADF image beside the EDX cube (``test_TEM.bcf``) lists::

        [0] Signal2D 'HAADF' (no signal type), 64x64 uint16
        [1] EDSTEMSpectrum 'EDX' (EDS_TEM), 64x64x2048 uint8  <- EDS spectrum image (picked)
    """
    path = _check_input(path)
    if not lazy:
        _check_fits_in_memory(path)
    signals = _read_all(path, lazy=lazy)
    infos = [_info(i, s) for i, s in enumerate(signals)]
    picked = _pick(infos, require_2d=True)
    return [dataclasses.replace(info, picked=info.index == picked) for info in infos]


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------
def _check_input(path: PathLike) -> Path:
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputNotFoundError(
            f"Input file not found: '{path}'. Check the path (relative paths are taken from "
            f"the current folder, {Path.cwd()})."
        )
    if suffix not in SUPPORTED_EXTENSIONS:
        hint = _EXTENSION_HINTS.get(suffix)
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        raise UnsupportedFormatError(
            f"Cannot read '{path}': unsupported extension '{path.suffix}'"
            + (f" ({hint})" if hint else "")
            + f". Supported EDX spectrum-image formats: {supported}. Other formats HyperSpy "
            "reads can be converted: load them with hyperspy.api.load and save as .hspy."
        )
    if path.is_dir() and suffix != ".zspy":
        raise UnsupportedFormatError(f"Cannot read '{path}': it is a folder, not a file.")
    mode = path.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket"
                if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or
                stat.S_ISBLK(mode) else "not a regular file")
        raise UnsupportedFormatError(
            f"Cannot read '{path}': it is {kind}, not a regular file. psnmf reads files "
            "with random access (HDF5, zip): save the data to a file and pass that."
        )
    return path


def input_files(path: PathLike) -> list[Path]:
    """The files a read of ``path`` uses: the file itself and, for a ripple ``.rpl``
    header, its ``.raw`` data file.

    Examples
    --------
    >>> [p.name for p in input_files("scan.npz")]
    ['scan.npz']
    """
    path = Path(path).expanduser()
    files = [path]
    if path.suffix.lower() == ".rpl":
        files += [p for p in (path.with_suffix(".raw"), path.with_suffix(".RAW"))
                  if p.exists() and p not in files]
    return files


class _DropRsciioReportHint(logging.Filter):
    """Drop HyperSpy's 'please report this error to RosettaSciIO' log line.

    psnmf re-raises the reader's error with its own hint; the suggestion to
    file a bug is misleading for what is usually a truncated file.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "report this error" not in record.getMessage()


@contextlib.contextmanager
def _quiet_report_hint() -> Iterator[None]:
    hs_logger = logging.getLogger("hyperspy.io")
    flt = _DropRsciioReportHint()
    hs_logger.addFilter(flt)
    try:
        yield
    finally:
        hs_logger.removeFilter(flt)


def _read_all(path: Path, *, lazy: bool) -> list[BaseSignal]:
    """Read every signal of a file as a list (the npz layout gives one)."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return [load_npz(path)]
    import hyperspy.api as hs

    kwargs = _READER_KWARGS[suffix]
    try:
        with _quiet_report_hint():
            loaded = hs.load(str(path), lazy=lazy, **kwargs)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"Reading '{path}' needs the Python package '{exc.name}', which is not installed. "
            f"Install it (pip install {exc.name}) and try again."
        ) from exc
    except KeyboardInterrupt:
        raise
    except MemoryError as exc:
        if lazy or isinstance(exc, _validation.InsufficientMemoryError):
            raise
        raise _validation.too_large_error(f"Reading '{path}' into memory") from exc
    except Exception as exc:
        raise CorruptFileError(
            f"Could not read '{path}' ({os.path.getsize(path) if path.is_file() else '?'} "
            f"bytes): {type(exc).__name__}: {exc}. The file is probably truncated or "
            "corrupt (an interrupted copy or download?): compare its size with the original, "
            "copy or export it again from the instrument software, and check that it opens "
            "with hyperspy.api.load."
        ) from exc
    signals = loaded if isinstance(loaded, list) else [loaded]
    return signals


def load_spectrum_image(
    path: PathLike,
    *,
    signal_index: int | None = None,
    energy_range: tuple[float | None, float | None] | None = None,
    elements: Sequence[str] | None = None,
    lazy: bool = False,
    require_2d: bool = True,
) -> BaseSignal:
    """Read an EDX spectrum image as an exspy EDS signal.

    Parameters
    ----------
    path : str or path-like
        A file in one of :data:`SUPPORTED_EXTENSIONS`: ``.bcf`` (Bruker),
        ``.emd`` (Velox; frames and detectors are summed), ``.pts``/``.asw``
        (JEOL; frames summed in uint16), ``.spd`` (EDAX), ``.dm3``/``.dm4``,
        ``.hspy``/``.hdf5``/``.zspy``, ``.rpl`` (ripple with its ``.raw``), or
        ``.npz`` (layout in :func:`load_npz`).
    signal_index : int, optional
        Which signal of the file to use (see :func:`describe_signals`). By
        default the EDS spectrum image is picked; if there are several, the
        largest. A generic 1-D signal (no signal type) with two navigation
        axes is accepted when picked this way and treated as EDS_TEM.
    energy_range : (float or None, float or None), optional
        Keep only channels with ``lo <= E < hi`` (keV); None leaves that end
        open.
    elements : sequence of str, optional
        Chemical symbols to set as ``metadata.Sample.elements`` (replacing
        those of the file). Default: the elements stored in the file.
    lazy : bool, default False
        Keep the data as a dask array. Count checks then happen in
        :func:`psnmf.io.to_counts`, chunk by chunk, instead of at load.
    require_2d : bool, default True
        Require two navigation axes. ``False`` lets line scans through, for
        :func:`psnmf.standard_nmf` (PSNMF itself needs a 2-D map to bin).

    Returns
    -------
    exspy.signals.EDSTEMSpectrum or exspy.signals.EDSSEMSpectrum
        Data of shape ``(ny, nx, ne)``; the energy axis in keV. Where it came
        from is recorded in ``metadata.General.psnmf_source`` (``file``,
        ``signal_index``, ``n_signals``, ``title``).

    Raises
    ------
    InputNotFoundError, UnsupportedFormatError, CorruptFileError,
    MissingDependencyError, NoSpectrumImageError, InvalidCountsError, PsnmfIOError
        See :mod:`psnmf.io.errors`; messages name the file and the fix.
    psnmf._validation.InsufficientMemoryError
        (a :class:`MemoryError`) when ``lazy=False`` and the data would not fit in memory;
        the message points to ``lazy=True``.

    Warns
    -----
    UserWarning
        When the data are not integer counts.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "scan.npz"
    >>> np.savez(path, counts=np.ones((4, 5, 300), dtype=np.uint16), energy_scale=0.01,
    ...          elements=np.array(["O", "Fe"]), beam_energy=200.0)
    >>> s = load_spectrum_image(path, energy_range=(0.2, 2.0))
    >>> type(s).__name__, s.data.shape, s.metadata.Sample.elements
    ('EDSTEMSpectrum', (4, 5, 180), ['Fe', 'O'])
    >>> s.metadata.General.psnmf_source.signal_index
    0
    """
    path = _check_input(path)
    if not lazy:
        _check_fits_in_memory(path)
    signals = _read_all(path, lazy=lazy)
    infos = [_info(i, s) for i, s in enumerate(signals)]
    index = _choose(infos, signal_index, require_2d, path)
    signal = signals[index]
    info = infos[index]
    _check_chosen(signal, info, path, infos, require_2d)
    logger.info("%s: using signal %s", path, info)

    _check_not_empty(signal, info, path)
    signal = _as_eds(signal, info, path)
    native_byte_order(signal)
    _normalise_energy_axis(signal, path)
    check_calibration(signal, path)
    if energy_range is not None:
        signal = crop_energy(signal, energy_range, path)
    if elements is not None:
        set_elements(signal, elements)
    if not lazy:
        validate_counts(signal.data, str(path), warn=True)
    signal.metadata.set_item(
        "General.psnmf_source",
        {"file": str(path), "signal_index": index, "n_signals": len(signals), "title": info.title},
    )
    return signal


def _choose(
    infos: list[SignalInfo], signal_index: int | None, require_2d: bool, path: Path
) -> int:
    """Index of the signal to use: ``signal_index``, else the picked EDS spectrum image."""
    if signal_index is None:
        index = _pick(infos, require_2d=require_2d)
        if index is None:
            raise NoSpectrumImageError(
                f"'{path}' holds no EDS spectrum image that psnmf can use: psnmf needs a 2-D "
                "spectrum image (an EDS_TEM/EDS_SEM signal with navigation axes y, x and one "
                "energy axis) to bin; a line scan can be loaded with require_2d=False and "
                f"unmixed with psnmf.standard_nmf. The file holds:\n{_format_infos(infos)}\n"
                "If one of these is an EDS spectrum image without its signal type, pass its "
                "number as signal_index to psnmf.io.load_spectrum_image (on the command "
                "line: load it in HyperSpy, call s.set_signal_type('EDS_TEM'), save it as "
                ".hspy and pass that file)."
            )
        return index
    if not -len(infos) <= signal_index < len(infos):
        raise NoSpectrumImageError(
            f"signal_index={signal_index} is out of range for '{path}', which holds "
            f"{len(infos)} signal(s):\n{_format_infos(infos)}"
        )
    return signal_index % len(infos)


#: A file this many times smaller than the available memory is read eagerly without
#: first looking at its shape (compressed formats such as .bcf expand on reading).
_EXPANSION_GUESS = 64


def _check_fits_in_memory(path: Path) -> None:
    """Before an eager read, refuse a file whose dense arrays would not fit in memory.

    Small files (the usual case) are let through on their size alone; for big ones the
    file is opened lazily to read the exact shapes and dtypes. An ``.npz`` has no lazy
    read: :func:`load_npz` checks the size its header declares before reading (here it
    would be read once for the check and again for the data).
    """
    if path.suffix.lower() == ".npz":
        return
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    size = sum(p.stat().st_size for p in files)
    if size * _EXPANSION_GUESS < _validation.MEMORY_FRACTION * _validation.available_memory():
        return
    signals = _read_all(path, lazy=True)
    sizes = [
        (_validation.dense_nbytes(s.data.shape, s.data.dtype), tuple(s.data.shape), s.data.dtype)
        for s in signals
    ]
    _, shape, dtype = max(sizes, key=lambda t: t[0])
    _validation.check_memory(
        sum(t[0] for t in sizes),
        f"Reading '{path}' into memory (largest array: {shape} {dtype})",
    )


def _check_chosen(
    signal: BaseSignal,
    info: SignalInfo,
    path: Path,
    infos: list[SignalInfo],
    require_2d: bool,
) -> None:
    nav, sig = info.navigation_dimension, info.signal_dimension
    generic = info.signal_type == "" and sig == 1
    if info.signal_type not in EDS_TYPES and not generic:
        raise NoSpectrumImageError(
            f"Signal {info.index} of '{path}' is not EDS data ({info}). The file holds:\n"
            f"{_format_infos(infos)}"
        )
    if sig != 1 or not (nav == 2 or (not require_2d and nav == 1)):
        what = {0: "a single spectrum", 1: "a line scan"}.get(nav, f"{nav} navigation axes")
        raise NoSpectrumImageError(
            f"Signal {info.index} of '{path}' is {what} ({info}); PSNMF needs a 2-D spectrum "
            "image (navigation axes y, x and one energy axis) to bin. For a line scan, load "
            "it with require_2d=False and unmix it with standard NMF (psnmf.standard_nmf), "
            "which needs no image."
        )


def _check_not_empty(signal: BaseSignal, info: SignalInfo, path: Path) -> None:
    if 0 in info.shape:
        raise NoSpectrumImageError(
            f"Signal {info.index} of '{path}' is empty: its shape {info.shape} has an axis "
            "of length 0 (no pixels or no channels). Export the spectrum image again."
        )


def native_byte_order(signal: BaseSignal) -> None:
    """Convert the data of ``signal`` to the machine's byte order, in place (lazily for a
    Dask array). Big-endian files (a ripple ``.rpl`` with ``byte-order big-endian``, a
    ``.npz`` saved from a big-endian array) read the same as little-endian ones.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> s = hs.signals.Signal1D(np.arange(6, dtype=">u2").reshape(1, 2, 3))
    >>> native_byte_order(s)
    >>> s.data.dtype.isnative, s.data.tolist()
    (True, [[[0, 1, 2], [3, 4, 5]]])
    """
    dtype = np.dtype(signal.data.dtype)
    if not dtype.isnative:
        signal.data = signal.data.astype(dtype.newbyteorder("="))


def check_calibration(signal: BaseSignal, source: Path | str = "the signal") -> None:
    """Refuse an energy axis or beam energy that cannot be right (CalibrationError).

    The energy axis (in keV) must increase: a uniform axis needs a finite offset and a
    finite scale > 0, a non-uniform one finite, strictly increasing energies. A beam
    energy in the metadata (``Acquisition_instrument.TEM`` or ``.SEM.beam_energy``, kV)
    must be finite and > 0. The message names the value, where it is stored and the fix.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> s = hs.signals.Signal1D(np.ones((2, 2, 5)))
    >>> s.axes_manager.signal_axes[0].scale = 0.0
    >>> check_calibration(s, "x.hspy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    psnmf.io.errors.CalibrationError: The energy axis of 'x.hspy' has a channel width of 0 keV...
    """
    axis = signal.axes_manager.signal_axes[0]
    fix = ("Fix the calibration of the file (for a .npz: energy_offset and energy_scale > 0 "
           "in keV; in HyperSpy: s.axes_manager.signal_axes[0].offset/.scale) and save it "
           "again.")
    if axis.is_uniform:
        scale, offset = float(axis.scale), float(axis.offset)
        if not (math.isfinite(scale) and math.isfinite(offset)):
            raise CalibrationError(
                f"The energy axis of '{source}' is not calibrated: offset {offset:g}, channel "
                f"width {scale:g} keV (not finite numbers). {fix}")
        if scale <= 0:
            what = "0 keV" if scale == 0 else f"{scale:g} keV (energies decrease)"
            raise CalibrationError(
                f"The energy axis of '{source}' has a channel width of {what}; psnmf needs "
                f"energies increasing from channel to channel. {fix}")
    else:
        energies = np.asarray(axis.axis, dtype=float)
        if not np.isfinite(energies).all() or (np.diff(energies) <= 0).any():
            raise CalibrationError(
                f"The non-uniform energy axis of '{source}' is not finite and strictly "
                f"increasing (from {energies[0]:g} to {energies[-1]:g} keV over "
                f"{energies.size} channels); psnmf needs energies increasing from channel "
                f"to channel. {fix}")
    for mode in ("TEM", "SEM"):
        key = f"Acquisition_instrument.{mode}.beam_energy"
        value = signal.metadata.get_item(key)
        if value is None:
            continue
        try:
            beam = float(value)
        except (TypeError, ValueError):
            beam = math.nan
        if not (math.isfinite(beam) and beam > 0):
            raise CalibrationError(
                f"The beam energy of '{source}' is {value!r} kV (metadata {key}); it must be "
                "a number > 0 (e.g. 200 for a 200 kV TEM). Fix the metadata (for a .npz: "
                "beam_energy; in HyperSpy: s.set_microscope_parameters(beam_energy=200)) or "
                "remove it.")


def _as_eds(signal: BaseSignal, info: SignalInfo, path: Path) -> BaseSignal:
    if info.signal_type in EDS_TYPES:
        return signal
    warnings.warn(
        f"Signal {info.index} of '{path}' has no signal type; treating it as EDS_TEM. Call "
        "signal.set_signal_type('EDS_SEM') afterwards if it was recorded on an SEM.",
        UserWarning,
        stacklevel=3,
    )
    signal.set_signal_type("EDS_TEM")
    return signal


def _normalise_energy_axis(signal: BaseSignal, path: Path | str) -> None:
    axis = signal.axes_manager.signal_axes[0]
    units = str(axis.units or "").strip()
    if units.lower() == "kev":
        axis.units = "keV"
        return
    if units.lower() == "ev":
        if axis.is_uniform:
            axis.scale = axis.scale / 1000.0
            axis.offset = axis.offset / 1000.0
        else:
            axis.axis = np.asarray(axis.axis) / 1000.0
        axis.units = "keV"
        return
    warnings.warn(
        f"The energy axis of '{path}' has units '{units or 'undefined'}'; assuming keV. If "
        "that is wrong, set signal.axes_manager.signal_axes[0] scale, offset and units.",
        UserWarning,
        stacklevel=3,
    )
    axis.units = "keV"


def crop_energy(
    signal: BaseSignal,
    energy_range: tuple[float | None, float | None],
    source: Path | str = "the signal",
) -> BaseSignal:
    """The channels of ``signal`` with ``lo <= E < hi`` keV (a new signal, same class; lazy
    for a lazy signal), the channels :func:`energy_channels` selects.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> s = hs.signals.Signal1D(np.ones((2, 10)))
    >>> s.axes_manager.signal_axes[0].scale = 0.5
    >>> crop_energy(s, (1.0, None)).axes_manager.signal_axes[0].axis.tolist()
    [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    """
    i0, i1 = energy_channels(signal, energy_range, source)
    return signal.isig[i0:i1]


def energy_channels(
    signal: BaseSignal,
    energy_range: tuple[float | None, float | None],
    source: Path | str = "the signal",
) -> tuple[int, int]:
    """The channel slice ``[i0, i1)`` of ``signal`` with ``lo <= E < hi`` keV.

    Parameters
    ----------
    signal : HyperSpy Signal1D
        With its energy axis in keV (uniform or not).
    energy_range : (float or None, float or None)
        ``(lo, hi)``; None leaves that end open. The upper end of the axis is the last
        channel plus one channel width, and limits are compared with a tolerance of
        1e-6 channel widths, so limits typed from a printed axis select what they show.
    source : str or path-like
        Name of the data in messages (its file).

    Raises
    ------
    PsnmfIOError
        For a malformed or empty range, a range outside the axis (the message gives the
        axis limits), or one that selects no channel.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> s = hs.signals.Signal1D(np.ones((2, 10)))
    >>> s.axes_manager.signal_axes[0].scale = 0.5
    >>> energy_channels(s, (1.0, 4.0))
    (2, 8)
    """
    try:
        lo, hi = energy_range
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
    except (TypeError, ValueError):
        raise PsnmfIOError(
            f"energy_range must be a pair (lo, hi) of numbers in keV, got {energy_range!r}."
        ) from None
    energies = np.asarray(signal.axes_manager.signal_axes[0].axis, dtype=float)
    width = float(energies[-1] - energies[-2]) if energies.size > 1 else 1.0
    tol = 1e-6 * abs(width)
    first, upper = float(energies[0]), float(energies[-1]) + width
    limits = (
        f"the energy axis of '{source}' covers {first:.4g} to {upper:.4g} keV "
        f"({energies.size} channels of {width:.4g} keV)"
    )
    lo_v = first if lo is None else lo
    hi_v = upper if hi is None else hi
    if not (math.isfinite(lo_v) and math.isfinite(hi_v)) or lo_v >= hi_v:
        raise PsnmfIOError(
            f"energy_range={energy_range!r} is empty or invalid (need lo < hi); {limits}."
        )
    if lo_v < first - tol or hi_v > upper + tol:
        raise PsnmfIOError(
            f"energy_range={energy_range!r} keV is outside the data: {limits}. Pick limits "
            "inside that interval (None leaves an end open)."
        )
    i0 = int(np.searchsorted(energies, lo_v - tol, side="left"))
    i1 = int(np.searchsorted(energies, hi_v - tol, side="left"))
    if i1 <= i0:
        raise PsnmfIOError(f"energy_range={energy_range!r} selects no channel; {limits}.")
    return i0, i1


def set_elements(signal: BaseSignal, elements: Sequence[str] | str) -> None:
    """Set ``metadata.Sample.elements`` of an EDS signal, in place, and prune its X-ray lines.

    X-ray lines already in the metadata are kept only for the given elements (and removed
    when none is left), so that quantification does not use lines of elements left out.

    Parameters
    ----------
    signal : exspy EDS signal
    elements : sequence of str, or one str
        Chemical symbols; surrounding spaces are ignored.

    Raises
    ------
    PsnmfIOError
        For an unknown symbol (exspy's message).
    """
    if isinstance(elements, str):
        elements = [elements]
    elements = [str(e).strip() for e in elements]
    try:
        signal.set_elements(elements)
    except ValueError as exc:
        raise PsnmfIOError(f"elements={list(elements)!r}: {exc}") from exc
    lines = signal.metadata.get_item("Sample.xray_lines")
    if lines is not None:
        kept = [line for line in lines if line.split("_")[0] in elements]
        if kept:
            signal.metadata.Sample.xray_lines = kept
        else:
            del signal.metadata.Sample.xray_lines


def _npy_header(npz: Any, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``key`` member of an open ``.npz``, read from its header only
    (a compressed member of many GiB is not decompressed)."""
    with npz.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(member)
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _npz_arrays(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The ``counts`` array of a psnmf ``.npz`` and its other arrays (no pickles).

    The size the counts declare is checked against the memory available before they are
    read (:func:`psnmf._validation.check_memory`), so a file too large for this machine is
    refused as such, never reported as corrupt.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "counts" not in keys:
                raise InvalidCountsError(
                    f"'{path}' has no 'counts' array (it holds: {sorted(keys)}). A psnmf .npz "
                    "needs counts of shape (ny, nx, ne); see psnmf.io.load_npz."
                )
            shape, dtype = _npy_header(npz, "counts")
            _validation.check_memory(
                _validation.dense_nbytes(shape, dtype),
                f"'{path}' as its dense {shape} {dtype} counts array",
            )
            return npz["counts"], {k: npz[k] for k in keys - {"counts"}}
    except (PsnmfIOError, _validation.InsufficientMemoryError):
        raise
    except Exception as exc:
        raise CorruptFileError(
            f"Could not read '{path}' as .npz: {type(exc).__name__}: {exc}. The file is "
            "probably truncated or corrupt, or holds pickled objects (not allowed): write it "
            "again with numpy.savez and plain arrays."
        ) from exc


def load_npz(path: PathLike) -> BaseSignal:
    """Read the plain NumPy ``.npz`` layout.

    Keys:

    ``counts`` (required)
        ``(ny, nx, ne)`` array of non-negative counts.
    ``energy_offset``, ``energy_scale`` (optional)
        Energy of channel 0 and channel width, in keV (default 0 and 0.01,
        with a warning).
    ``elements`` (optional)
        Array of chemical symbols (str), e.g. ``np.array(["Fe", "O"])``.
    ``beam_energy`` (optional)
        Accelerating voltage in kV.
    ``signal_type`` (optional)
        ``"EDS_TEM"`` (default) or ``"EDS_SEM"``.

    Written by :func:`save_npz`. Only plain arrays are read (no pickles).

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file.

    Returns
    -------
    exspy.signals.EDSTEMSpectrum or exspy.signals.EDSSEMSpectrum
    """
    from exspy.signals import EDSSEMSpectrum, EDSTEMSpectrum

    path = Path(path)
    counts, extra = _npz_arrays(path)
    if counts.ndim != 3:
        raise NoSpectrumImageError(
            f"'{path}': 'counts' has shape {counts.shape}; psnmf needs a 2-D spectrum image, "
            "an array of shape (ny, nx, ne)."
        )
    if 0 in counts.shape:
        raise NoSpectrumImageError(
            f"'{path}': 'counts' has shape {counts.shape}, with an axis of length 0 (no "
            "pixels or no channels); psnmf needs at least one pixel and one channel."
        )
    if "energy_scale" not in extra:
        warnings.warn(
            f"'{path}' has no 'energy_scale'; assuming 0.01 keV per channel from "
            f"{float(extra.get('energy_offset', 0.0))} keV. Add energy_offset and "
            "energy_scale (keV) to the file for a calibrated axis.",
            UserWarning,
            stacklevel=3,
        )
    offset = float(extra.get("energy_offset", 0.0))
    scale = float(extra.get("energy_scale", 0.01))
    signal_type = str(extra.get("signal_type", "EDS_TEM"))
    if signal_type not in EDS_TYPES:
        raise PsnmfIOError(
            f"'{path}': signal_type must be one of {EDS_TYPES}, got '{signal_type}'."
        )
    ny, nx, ne = counts.shape
    axes = [
        {"name": "y", "size": ny, "navigate": True, "units": "px"},
        {"name": "x", "size": nx, "navigate": True, "units": "px"},
        {
            "name": "Energy",
            "size": ne,
            "offset": offset,
            "scale": scale,
            "units": "keV",
            "navigate": False,
        },
    ]
    cls = EDSTEMSpectrum if signal_type == "EDS_TEM" else EDSSEMSpectrum
    signal = cls(counts, axes=axes, metadata={"General": {"title": path.stem}})
    if "elements" in extra:
        signal.set_elements([str(e) for e in np.atleast_1d(extra["elements"])])
    if "beam_energy" in extra:
        signal.set_microscope_parameters(beam_energy=float(extra["beam_energy"]))
    return signal
