"""Reading EDX spectrum images and writing results safely.

Everything in psnmf that touches a file goes through this module.

Reading
-------
:func:`load_spectrum_image` reads every EDX spectrum-image format that
RosettaSciIO reads through :func:`hyperspy.api.load` (Bruker ``.bcf``, Thermo
Fisher Velox ``.emd`` with its sparse EDS streams, JEOL ``.pts``/``.asw``, EDAX
``.spd``, Gatan ``.dm3``/``.dm4``, HyperSpy ``.hspy``/``.hdf5``/``.zspy``,
ripple ``.rpl``) plus a plain NumPy ``.npz`` layout (see :func:`load_npz`). It
returns one exspy EDS signal (``EDSTEMSpectrum`` or ``EDSSEMSpectrum``) with two
navigation axes (y, x) and one signal axis (energy, in keV). When a file holds
several signals, :func:`describe_signals` lists them and the EDS spectrum image
is picked automatically (or by ``signal_index``).

:func:`to_counts` turns such a signal (or a plain ``(ny, nx, ne)`` array) into
the sparse ``(ny * nx, ne)`` count matrix the NMF engine consumes, chunk by
chunk, without ever densifying the cube in float64.

Writing
-------
Every writer in the project writes through :func:`atomic_path`: the result is
written to a hidden temporary name next to the final path and renamed into
place only when writing succeeded, so an interrupted run (an exception, Ctrl-C)
never leaves a half-written file and never damages an existing one.
:func:`save_signal`, :func:`save_npz`, :func:`write_json`, :func:`write_text`
and :func:`savefig` are built on it; :func:`prepare_output_dir` checks an
output folder up front and :func:`file_checksum` records what was read.

Exceptions
----------
All errors raised here derive from :class:`PsnmfIOError`, itself a
:class:`ValueError`, so ``except ValueError`` keeps working for callers that do
not care about the details. Each message names the file or folder and says
what to do. The hierarchy::

    PsnmfIOError(ValueError)
    ├── InputNotFoundError(PsnmfIOError, FileNotFoundError)  missing input file
    ├── UnsupportedFormatError       unknown extension (lists the supported ones)
    ├── CorruptFileError             the reader failed: truncated/corrupt file
    ├── MissingDependencyError(PsnmfIOError, ImportError)  reader needs a package
    ├── NoSpectrumImageError         no (2-D) EDS spectrum image in the file
    ├── InvalidCountsError           negative / non-finite / non-integer counts
    ├── OutputExistsError(PsnmfIOError, FileExistsError)  refusing to overwrite
    └── OutputNotWritableError(PsnmfIOError, PermissionError)  cannot write there

Non-integer (but non-negative, finite) data only give a :class:`UserWarning`
at load time, because the Poisson model assumes counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse

from psnmf import _validation

if TYPE_CHECKING:  # pragma: no cover
    from hyperspy.signal import BaseSignal

__all__ = [
    "PsnmfIOError",
    "InputNotFoundError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "MissingDependencyError",
    "NoSpectrumImageError",
    "InvalidCountsError",
    "OutputExistsError",
    "OutputNotWritableError",
    "SUPPORTED_EXTENSIONS",
    "SignalInfo",
    "describe_signals",
    "load_spectrum_image",
    "load_npz",
    "to_counts",
    "atomic_path",
    "save_signal",
    "save_npz",
    "write_json",
    "write_text",
    "savefig",
    "prepare_output_dir",
    "file_checksum",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------
class PsnmfIOError(ValueError):
    """Base class of every error raised by :mod:`psnmf.io`."""


class InputNotFoundError(PsnmfIOError, FileNotFoundError):
    """The input file does not exist."""


class UnsupportedFormatError(PsnmfIOError):
    """The file extension is not one psnmf can read or write."""


class CorruptFileError(PsnmfIOError):
    """The reader failed on the file: it is probably truncated or corrupt."""


class MissingDependencyError(PsnmfIOError, ImportError):
    """Reading this format needs an optional package that is not installed."""


class NoSpectrumImageError(PsnmfIOError):
    """The file (or the chosen signal) is not a 2-D EDS spectrum image."""


class InvalidCountsError(PsnmfIOError):
    """The data are not valid counts (negative, non-finite, wrong shape)."""


class OutputExistsError(PsnmfIOError, FileExistsError):
    """Refusing to overwrite an existing output file or non-empty folder."""


class OutputNotWritableError(PsnmfIOError, PermissionError):
    """The output location cannot be created or written to."""


# ---------------------------------------------------------------------------
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

#: Formats :func:`save_signal` writes, mapped to HyperSpy's format names.
_SIGNAL_WRITERS: dict[str, str] = {".hspy": "HSPY", ".hdf5": "HSPY", ".zspy": "ZSPY"}

#: Extra hints for files that need a companion or are single spectra.
_EXTENSION_HINTS: dict[str, str] = {
    ".raw": "a ripple .raw file is read through its .rpl header: pass the .rpl file",
    ".spx": "Bruker .spx files hold a single spectrum, not a spectrum image",
    ".msa": "EMSA/MSA files hold a single spectrum, not a spectrum image",
    ".spc": "EDAX .spc files hold a single spectrum; pass the .spd spectrum image",
}

_EDS_TYPES = ("EDS_TEM", "EDS_SEM")

#: Size of the blocks (in bytes of native data) in which big cubes are checked
#: and converted.
_BLOCK_BYTES = 64 * 2**20


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
    if sig_dim != 1 or signal_type not in _EDS_TYPES:
        return False
    return nav_dim == 2 or (not require_2d and nav_dim == 1)


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
        return None
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
        For a missing, unsupported or corrupt file (see the module docstring).

    Examples
    --------
    >>> for info in describe_signals("test_TEM.bcf"):  # doctest: +SKIP
    ...     print(info)
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
    return path


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
        :func:`to_counts`, chunk by chunk, instead of at load.
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
        See the module docstring; messages name the file and the fix.
    psnmf._validation.InsufficientMemoryError
        (a :class:`MemoryError`) when ``lazy=False`` and the data would not fit in memory;
        the message points to ``lazy=True``.

    Warns
    -----
    UserWarning
        When the data are not integer counts.

    Examples
    --------
    >>> s = load_spectrum_image("test_TEM.bcf", energy_range=(0.2, 10))  # doctest: +SKIP
    >>> s.data.shape, s.metadata.Sample.elements  # doctest: +SKIP
    ((64, 64, 1000), ['Cu', 'O', 'Pd', 'Ti'])
    """
    path = _check_input(path)
    if not lazy:
        _check_fits_in_memory(path)
    signals = _read_all(path, lazy=lazy)
    infos = [_info(i, s) for i, s in enumerate(signals)]

    if signal_index is None:
        index = _pick(infos, require_2d=require_2d)
        if index is None:
            raise NoSpectrumImageError(
                f"'{path}' holds no EDS spectrum image that psnmf can use: psnmf needs a 2-D "
                "spectrum image (an EDS_TEM/EDS_SEM signal with navigation axes y, x and one "
                "energy axis) to bin; a line scan can be loaded with require_2d=False and "
                f"unmixed with psnmf.standard_nmf. The file holds:\n{_format_infos(infos)}\n"
                "If one of these is an EDS spectrum image without its signal type, pass its "
                "number as signal_index."
            )
    else:
        if not -len(signals) <= signal_index < len(signals):
            raise NoSpectrumImageError(
                f"signal_index={signal_index} is out of range for '{path}', which holds "
                f"{len(signals)} signal(s):\n{_format_infos(infos)}"
            )
        index = signal_index % len(signals)
    signal = signals[index]
    info = infos[index]
    _check_chosen(signal, info, path, infos, require_2d)
    logger.info("%s: using signal %s", path, info)

    signal = _as_eds(signal, info, path)
    _normalise_energy_axis(signal, path)
    if energy_range is not None:
        signal = _crop_energy(signal, energy_range, path)
    if elements is not None:
        _set_elements(signal, elements)
    if not lazy:
        _validate_counts(signal.data, str(path), warn=True)
    signal.metadata.set_item(
        "General.psnmf_source",
        {"file": str(path), "signal_index": index, "n_signals": len(signals), "title": info.title},
    )
    return signal


#: A file this many times smaller than the available memory is read eagerly without
#: first looking at its shape (compressed formats such as .bcf expand on reading).
_EXPANSION_GUESS = 64


def _check_fits_in_memory(path: Path) -> None:
    """Before an eager read, refuse a file whose dense arrays would not fit in memory.

    Small files (the usual case) are let through on their size alone; for big ones the
    file is opened lazily to read the exact shapes and dtypes.
    """
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
    if info.signal_type not in _EDS_TYPES and not generic:
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


def _as_eds(signal: BaseSignal, info: SignalInfo, path: Path) -> BaseSignal:
    if info.signal_type in _EDS_TYPES:
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


def _crop_energy(
    signal: BaseSignal, energy_range: tuple[float | None, float | None], path: Path | str
) -> BaseSignal:
    """Keep channels with ``lo <= E < hi``; error naming the axis limits if outside."""
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
        f"the energy axis of '{path}' covers {first:.4g} to {upper:.4g} keV "
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
    return signal.isig[i0:i1]


def _set_elements(signal: BaseSignal, elements: Sequence[str]) -> None:
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
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if "counts" not in keys:
                raise InvalidCountsError(
                    f"'{path}' has no 'counts' array (it holds: {sorted(keys)}). A psnmf .npz "
                    "needs counts of shape (ny, nx, ne); see psnmf.io.load_npz."
                )
            counts = npz["counts"]
            extra = {k: npz[k] for k in keys - {"counts"}}
    except PsnmfIOError:
        raise
    except Exception as exc:
        raise CorruptFileError(
            f"Could not read '{path}' as .npz: {type(exc).__name__}: {exc}. The file is "
            "probably truncated or corrupt, or holds pickled objects (not allowed): write it "
            "again with numpy.savez and plain arrays."
        ) from exc
    if counts.ndim != 3:
        raise NoSpectrumImageError(
            f"'{path}': 'counts' has shape {counts.shape}; psnmf needs a 2-D spectrum image, "
            "an array of shape (ny, nx, ne)."
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
    if signal_type not in _EDS_TYPES:
        raise PsnmfIOError(
            f"'{path}': signal_type must be one of {_EDS_TYPES}, got '{signal_type}'."
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


# ---------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------
def _non_integer_warning(source: str) -> str:
    return (
        f"The data of '{source}' are not integers. psnmf's Poisson model assumes raw X-ray "
        "counts: if the data were scaled (normalised, dose-corrected, averaged), undo the "
        "scale to get counts back; if they were denoised or background-subtracted, start "
        "from the raw file. Results on non-count data are not statistically meaningful."
    )


def _check_block(block: np.ndarray, source: str) -> bool:
    """Raise on negative or non-finite values; return whether all are integers."""
    kind = block.dtype.kind
    if kind == "b" or kind == "u":
        return True
    if kind == "i":
        if block.size and block.min() < 0:
            raise InvalidCountsError(
                f"'{source}' holds negative values (min {block.min()}); counts must be >= 0. "
                "Start from the raw (not background-subtracted) data."
            )
        return True
    if kind != "f":
        raise InvalidCountsError(
            f"'{source}' holds data of type {block.dtype}; counts must be real numbers."
        )
    if not np.isfinite(block).all():
        raise InvalidCountsError(
            f"'{source}' holds NaN or infinite values; counts must be finite. Replace them "
            "(e.g. dead pixels) with 0 or crop them away before running psnmf."
        )
    if block.size and block.min() < 0:
        raise InvalidCountsError(
            f"'{source}' holds negative values (min {block.min():.4g}); counts must be >= 0. "
            "Start from the raw (not background-subtracted) data."
        )
    return bool(np.array_equal(block, np.round(block)))


def _row_blocks(data: Any) -> Iterator[tuple[int, Any]]:
    """Yield ``(first_row, block)`` over row bands of a (ny, nx, ne) array.

    For dask arrays one band per row chunk is computed (never the whole
    cube at once unless the reader made it one chunk); in-memory bands are
    further split so that temporaries stay small.
    """
    ny = data.shape[0]
    row_bytes = max(1, math.prod(data.shape[1:]) * np.dtype(data.dtype).itemsize)
    rows_per_block = max(1, _BLOCK_BYTES // row_bytes)
    if hasattr(data, "dask"):
        bounds = np.cumsum((0, *data.chunks[0]))
        for r0, r1 in zip(bounds[:-1], bounds[1:], strict=True):
            band = data[int(r0) : int(r1)].compute()
            for s0 in range(0, band.shape[0], rows_per_block):
                yield int(r0) + s0, band[s0 : s0 + rows_per_block]
    else:
        for r0 in range(0, ny, rows_per_block):
            yield r0, data[r0 : r0 + rows_per_block]


def _dense(block: Any) -> np.ndarray:
    if isinstance(block, np.ndarray):
        return block
    if hasattr(block, "todense"):  # sparse.COO / scipy sparse
        return np.asarray(block.todense())
    return np.asarray(block)


def _validate_counts(data: Any, source: str, *, warn: bool) -> bool:
    """Check a cube block by block; return whether it is all integers."""
    integer = True
    for _, block in _row_blocks(data):
        integer &= _check_block(_dense(block), source)
    if not integer and warn:
        warnings.warn(_non_integer_warning(source), UserWarning, stacklevel=3)
    return integer


def _source_name(signal: Any) -> str:
    md = getattr(signal, "metadata", None)
    if md is not None:
        for key in ("General.psnmf_source.file", "General.original_filename", "General.title"):
            value = md.get_item(key)
            if value:
                return str(value)
    return "the data"


def to_counts(
    signal: Any, *, dtype: np.dtype | type = np.int32
) -> tuple[scipy.sparse.csr_array, tuple[int, int]]:
    """Sparse count matrix of a spectrum image, built chunk by chunk.

    Parameters
    ----------
    signal : HyperSpy signal or array-like
        A signal from :func:`load_spectrum_image` (in memory or lazy), or a
        NumPy/dask array of shape ``(ny, nx, ne)``.
    dtype : {np.int32, np.int64, np.float32, np.float64}, default np.int32
        Data type of the stored values. Integer types require integer-valued
        data; a float type keeps fractional values (with a warning).

    Returns
    -------
    counts : scipy.sparse.csr_array
        Shape ``(ny * nx, ne)``; row ``i * nx + j`` is pixel ``(i, j)``. Only
        non-zero entries are stored.
    shape : (int, int)
        ``(ny, nx)``, to fold rows back into an image.

    Raises
    ------
    InvalidCountsError
        For a shape other than 3-D, negative, non-finite values, or
        non-integer values with an integer ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> X, (ny, nx) = to_counts(np.array([[[0, 2, 0], [1, 0, 0]]]))
    >>> X.shape, X.nnz, (ny, nx)
    ((2, 3), 2, (1, 2))
    """
    dtype = np.dtype(dtype)
    if dtype not in (
        np.dtype(np.int32),
        np.dtype(np.int64),
        np.dtype(np.float32),
        np.dtype(np.float64),
    ):
        raise PsnmfIOError(
            f"to_counts: dtype must be int32, int64, float32 or float64, got {dtype}."
        )
    source = _source_name(signal)
    data = signal.data if hasattr(signal, "axes_manager") else signal
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    if len(data.shape) != 3:
        raise InvalidCountsError(
            f"to_counts needs a spectrum image of shape (ny, nx, ne); '{source}' has shape "
            f"{tuple(data.shape)}."
        )
    ny, nx, ne = (int(n) for n in data.shape)
    limit = np.iinfo(dtype).max if dtype.kind == "i" else None
    pieces_data, pieces_idx, row_nnz = [], [], [np.zeros(1, dtype=np.int64)]
    integer = True
    for _, block in _row_blocks(data):
        block = _dense(block)
        integer &= _check_block(block, source)
        if not integer and dtype.kind == "i":
            raise InvalidCountsError(
                _non_integer_warning(source)
                + " To keep the fractional values anyway, call to_counts(..., dtype=np.float32)."
            )
        flat = block.reshape(-1, ne)
        mask = flat != 0
        rows, cols = np.nonzero(mask)
        values = flat[rows, cols]
        if limit is not None and values.size and values.max() > limit:
            raise InvalidCountsError(
                f"'{source}' holds counts up to {values.max()}, beyond {dtype}; call "
                "to_counts(..., dtype=np.int64)."
            )
        pieces_data.append(values.astype(dtype, copy=False))
        pieces_idx.append(cols)
        row_nnz.append(mask.sum(axis=1, dtype=np.int64))
    if not integer:
        warnings.warn(_non_integer_warning(source), UserWarning, stacklevel=2)
    indptr = np.cumsum(np.concatenate(row_nnz))
    nnz = int(indptr[-1])
    index_dtype = np.int32 if max(nnz, ne) < np.iinfo(np.int32).max else np.int64
    values = np.concatenate(pieces_data) if pieces_data else np.zeros(0, dtype)
    indices = (np.concatenate(pieces_idx) if pieces_idx else np.zeros(0)).astype(index_dtype)
    matrix = scipy.sparse.csr_array(
        (values, indices, indptr.astype(index_dtype)), shape=(ny * nx, ne)
    )
    return matrix, (ny, nx)


# ---------------------------------------------------------------------------
# Atomic writing
# ---------------------------------------------------------------------------
def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _tmp_name(final: Path, tag: str = "tmp") -> Path:
    return final.parent / f".{final.name}.{tag}-{secrets.token_hex(4)}"


@contextlib.contextmanager
def atomic_path(final_path: PathLike) -> Iterator[Path]:
    """Write to a temporary path and move it into place only on success.

    Parameters
    ----------
    final_path : str or path-like
        Where the result should end up. Its folder is created if needed.

    Yields
    ------
    pathlib.Path
        A not-yet-existing path in the same folder, named
        ``.<name>.tmp-<random>``. Write the file (or folder, e.g. a ``.zspy``
        store) there.

    Notes
    -----
    On success the temporary path is renamed onto ``final_path`` with
    :func:`os.replace` (atomic on POSIX and Windows within one file system);
    an existing folder at ``final_path`` is swapped out and removed. On any
    exception, KeyboardInterrupt included, the temporary path is removed and
    ``final_path`` is left untouched. Only a hard kill can leave a hidden
    ``.tmp-`` file behind.

    Examples
    --------
    >>> with atomic_path("result.txt") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("done")
    """
    final = Path(final_path).expanduser()
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(
            f"Cannot create the folder '{final.parent}' for '{final.name}': {exc}. Choose "
            "another output location or fix its permissions."
        ) from exc
    tmp = _tmp_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise PsnmfIOError(f"Nothing was written for '{final}' (expected it at '{tmp}').")
        _replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _replace(tmp: Path, final: Path) -> None:
    if tmp.is_dir() and final.is_dir() and not final.is_symlink():
        # os.replace cannot replace a non-empty folder: swap it out first.
        old = _tmp_name(final, "old")
        os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            os.replace(old, final)
            raise
        _remove(old)
    elif final.is_dir() and not final.is_symlink():
        raise OutputExistsError(
            f"Cannot write '{final}': a folder with that name exists. Remove it or choose "
            "another name."
        )
    else:
        os.replace(tmp, final)


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"'{path}' already exists; not overwriting it. Pass overwrite=True (--overwrite on "
            "the command line) to replace it, or choose another name."
        )


def save_signal(signal: BaseSignal, path: PathLike, overwrite: bool = False) -> Path:
    """Save a HyperSpy signal as ``.hspy``/``.hdf5`` or ``.zspy``, atomically.

    Parameters
    ----------
    signal : hyperspy.signal.BaseSignal
        Any HyperSpy signal, in memory or lazy.
    path : str or path-like
        Destination; the extension picks the format.
    overwrite : bool, default False
        Replace an existing file (or ``.zspy`` folder).

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    UnsupportedFormatError
        For another extension.
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path).expanduser()
    file_format = _SIGNAL_WRITERS.get(path.suffix.lower())
    if file_format is None:
        raise UnsupportedFormatError(
            f"Cannot save '{path}': use one of {', '.join(_SIGNAL_WRITERS)} (HyperSpy's own "
            "formats, which keep axes and metadata)."
        )
    _refuse_overwrite(path, overwrite)
    with atomic_path(path) as tmp:
        try:
            signal.save(str(tmp), overwrite=True, file_format=file_format)
        except AttributeError as exc:
            if file_format != "ZSPY":
                raise
            # RosettaSciIO <= 0.15 writes .zspy with the zarr 2 store API only.
            import rsciio
            import zarr

            raise MissingDependencyError(
                f"Cannot write '{path}': RosettaSciIO {rsciio.__version__} cannot write .zspy "
                f"with the installed zarr {zarr.__version__} ({exc}). Save as .hspy instead, "
                "or install zarr<3."
            ) from exc
    return path


def save_npz(signal: BaseSignal, path: PathLike, overwrite: bool = False) -> Path:
    """Save an EDS spectrum image in the plain ``.npz`` layout of :func:`load_npz`.

    Navigation-axis calibration is not stored; use :func:`save_signal` to keep
    everything.

    Parameters
    ----------
    signal : exspy EDS signal
        With data of shape ``(ny, nx, ne)`` and a uniform energy axis in keV.
    path : str or path-like
        Destination ``.npz`` file.
    overwrite : bool, default False
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != ".npz":
        raise UnsupportedFormatError(f"save_npz writes .npz files; got '{path}'.")
    _refuse_overwrite(path, overwrite)
    axis = signal.axes_manager.signal_axes[0]
    scale, offset = float(axis.scale), float(axis.offset)
    if str(axis.units).lower() == "ev":
        scale, offset = scale / 1000.0, offset / 1000.0
    arrays: dict[str, Any] = {
        "counts": np.asarray(signal.data),
        "energy_offset": np.float64(offset),
        "energy_scale": np.float64(scale),
        "signal_type": np.str_(signal.metadata.get_item("Signal.signal_type", "EDS_TEM")),
    }
    elements = signal.metadata.get_item("Sample.elements")
    if elements is not None:
        arrays["elements"] = np.array([str(e) for e in elements], dtype=str)
    for key in ("Acquisition_instrument.TEM.beam_energy", "Acquisition_instrument.SEM.beam_energy"):
        beam = signal.metadata.get_item(key)
        if beam is not None:
            arrays["beam_energy"] = np.float64(beam)
            break
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.str_ | os.PathLike):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_text(text: str, path: PathLike, *, encoding: str = "utf-8") -> Path:
    """Write a text file atomically (replacing an existing one).

    Parameters
    ----------
    text : str
        Content.
    path : str or path-like
        Destination.
    encoding : str, default "utf-8"

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path).expanduser()
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding) as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def write_json(obj: Any, path: PathLike, *, indent: int = 2) -> Path:
    """Write JSON atomically, converting NumPy types.

    NumPy scalars and arrays become Python numbers and lists, paths become
    strings; NaN and infinities become ``null`` so the file is strict JSON.

    Parameters
    ----------
    obj : Any
        JSON-like data (dicts, lists, numbers, strings, NumPy values).
    path : str or path-like
        Destination.
    indent : int, default 2

    Returns
    -------
    pathlib.Path
        The written path.
    """
    text = json.dumps(_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return write_text(text, path)


def savefig(fig: Any, path: PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically; the extension picks the format.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : str or path-like
        Destination, e.g. ``maps.png`` or ``spectra.pdf``.
    **kwargs
        Passed to :meth:`matplotlib.figure.Figure.savefig` (``dpi``, ``bbox_inches``).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = Path(path).expanduser()
    fmt = path.suffix.lstrip(".").lower() or None
    if fmt is None:
        raise UnsupportedFormatError(f"savefig: '{path}' has no extension (e.g. .png, .pdf).")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)
    return path


def prepare_output_dir(path: PathLike, overwrite: bool = False) -> Path:
    """Create an output folder, refusing to mix results into a non-empty one.

    Parameters
    ----------
    path : str or path-like
        The folder; created with its parents if missing.
    overwrite : bool, default False
        Accept an existing non-empty folder (its files will be replaced as
        results are written).

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    OutputExistsError
        If it exists and is non-empty (or is a file) and ``overwrite`` is False.
    OutputNotWritableError
        If it cannot be created or written to.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputExistsError(
            f"Output folder '{path}' exists and is a file; choose another output folder."
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(
            f"Output folder '{path}' exists and is not empty. Use --overwrite "
            "(overwrite=True) to write into it anyway, or choose another folder."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".psnmf-write-test-"):
            pass
    except OSError as exc:
        raise OutputNotWritableError(
            f"Output folder '{path}' is not writable ({exc.strerror or exc}). Choose another "
            "folder or fix its permissions."
        ) from exc
    return path


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------
def file_checksum(path: PathLike, *, chunk_size: int = 2**20) -> str:
    """SHA-256 of a file, read in chunks (for reproducibility records).

    A folder (e.g. a ``.zspy`` store) is hashed over its files' relative
    paths and contents, in sorted order.

    Parameters
    ----------
    path : str or path-like
    chunk_size : int, default 1 MiB

    Returns
    -------
    str
        Hex digest.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputNotFoundError(f"Cannot checksum '{path}': no such file.")
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as fh:
            while chunk := fh.read(chunk_size):
                digest.update(chunk)
    return digest.hexdigest()
