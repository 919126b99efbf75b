"""Writing results so that an interrupted run never leaves a half-written or damaged file.

Every writer of psnmf writes through :func:`atomic_path`: the result is written to a hidden
temporary name next to the final path and renamed into place only when writing succeeded
(:func:`os.replace`, atomic within one file system), so an exception or Ctrl-C never leaves
a half-written file and never damages an existing one. :func:`save_signal`,
:func:`save_npz`, :func:`write_json`, :func:`write_text` and :func:`savefig` are built on
it; :func:`prepare_output_dir` checks an output folder up front and :func:`file_checksum`
records what was read.

Examples
--------
>>> import tempfile
>>> folder = prepare_output_dir(tempfile.mkdtemp())
>>> path = write_json({"k": np.int64(3), "loss": np.float32(0.5), "bad": np.nan},
...                   folder / "s.json")
>>> print(path.read_text())
{
  "k": 3,
  "loss": 0.5,
  "bad": null
}
<BLANKLINE>
>>> sorted(p.name for p in folder.iterdir())  # no temporary left behind
['s.json']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from psnmf.io.errors import (
    InputNotFoundError,
    MissingDependencyError,
    OutputExistsError,
    OutputNotWritableError,
    PsnmfIOError,
    UnsupportedFormatError,
)

if TYPE_CHECKING:  # pragma: no cover
    from hyperspy.signal import BaseSignal

__all__ = [
    "SIGNAL_WRITERS",
    "STAGING_TAG",
    "atomic_path",
    "file_checksum",
    "jsonable",
    "prepare_output_dir",
    "save_npz",
    "save_signal",
    "savefig",
    "write_json",
    "write_text",
]

#: The part of a name that marks a staging folder of :class:`psnmf.io.ResultsFolder`
#: (``.R.psnmf-staging-<pid>`` beside ``R``, or ``.psnmf-staging-<pid>`` inside it).
STAGING_TAG = "psnmf-staging-"

PathLike = str | os.PathLike[str]

#: Formats :func:`save_signal` writes, mapped to HyperSpy's format names.
SIGNAL_WRITERS: dict[str, str] = {".hspy": "HSPY", ".hdf5": "HSPY", ".zspy": "ZSPY"}


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
    >>> import tempfile
    >>> final = Path(tempfile.mkdtemp()) / "result.txt"
    >>> with atomic_path(final) as tmp:
    ...     _ = tmp.write_text("done")
    ...     final.exists()  # nothing under the final name until the block succeeds
    False
    >>> final.read_text()
    'done'
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
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, KeyboardInterrupt) and "." + STAGING_TAG not in final.parent.name:
            exc.add_note(f"psnmf: '{final}' was left as it was (nothing half-written).")
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
    file_format = SIGNAL_WRITERS.get(path.suffix.lower())
    if file_format is None:
        raise UnsupportedFormatError(
            f"Cannot save '{path}': use one of {', '.join(SIGNAL_WRITERS)} (HyperSpy's own "
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

    Raises
    ------
    UnsupportedFormatError
        For another extension, or a non-uniform energy axis (which the layout cannot hold).
    OutputExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() != ".npz":
        raise UnsupportedFormatError(f"save_npz writes .npz files; got '{path}'.")
    _refuse_overwrite(path, overwrite)
    axis = signal.axes_manager.signal_axes[0]
    if not axis.is_uniform:
        raise UnsupportedFormatError(
            f"Cannot save '{path}' as .npz: its energy axis is non-uniform, and the .npz "
            "layout stores only energy_offset and energy_scale. Save it with save_signal as "
            ".hspy, which keeps the axis."
        )
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


def jsonable(obj: Any) -> Any:
    """``obj`` with NumPy values, tuples, sets and paths made plain JSON types.

    NumPy scalars and arrays become Python numbers and lists, tuples and sets become lists,
    paths and NumPy strings become strings, and NaN and infinities become ``None`` (JSON's
    ``null``), so that ``json.dumps(jsonable(obj), allow_nan=False)`` succeeds.

    Examples
    --------
    >>> jsonable({"a": np.arange(2), 1: (np.float64("inf"), np.bool_(True))})
    {'a': [0, 1], '1': [None, True]}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
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
    text = json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n"
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
