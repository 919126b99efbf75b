"""Files in and out: reading EDX spectrum images, checking counts, writing results safely.

Everything in psnmf that touches a file goes through this package. It has five modules,
each usable on its own; their public names are all importable from ``psnmf.io``:

:mod:`psnmf.io.read`
    :func:`load_spectrum_image` reads any supported EDX spectrum image
    (:data:`SUPPORTED_EXTENSIONS`) as one exspy EDS signal with axes (y, x | energy in
    keV); :func:`describe_signals` lists what a file holds; :func:`load_npz` reads the
    plain ``.npz`` layout; :func:`crop_energy` and :func:`set_elements` apply an energy
    range and elements to a signal.
:mod:`psnmf.io.counts`
    :func:`to_counts` turns a signal or ``(ny, nx, ne)`` array (in memory or Dask) into
    the sparse ``(ny * nx, ne)`` count matrix, block by block, checking the values.
:mod:`psnmf.io.write`
    :func:`atomic_path` and the writers built on it (:func:`save_signal`,
    :func:`save_npz`, :func:`write_json`, :func:`write_text`, :func:`savefig`): a result
    appears under its name complete or not at all. :func:`prepare_output_dir`,
    :func:`file_checksum`, :func:`jsonable`.
:mod:`psnmf.io.results`
    :class:`ResultsFolder`: a run's output folder, locked for the run, written into a
    staging sibling and swapped in as one set, with a manifest of psnmf's files
    (:func:`read_manifest`); an interrupted or failed run leaves the folder as it was.
:mod:`psnmf.io.errors`
    :class:`PsnmfIOError` (a :class:`ValueError`) and one subclass per way a file can fail;
    every message names the file or folder and says what to do.

Examples
--------
>>> import tempfile, numpy as np
>>> from psnmf import io
>>> folder = io.prepare_output_dir(tempfile.mkdtemp())
>>> path = folder / "tiny.npz"
>>> np.savez(path, counts=np.eye(3, 5, dtype=np.uint16).reshape(1, 3, 5), energy_scale=0.1)
>>> counts, shape = io.to_counts(io.load_spectrum_image(path))
>>> counts.shape, shape, counts.nnz
((3, 5), (1, 3), 3)
>>> io.load_spectrum_image(folder / "missing.bcf")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
psnmf.io.errors.InputNotFoundError: Input file not found: '...missing.bcf'. Check the path ...
"""

from __future__ import annotations

from psnmf.io import counts, errors, read, results, write
from psnmf.io.counts import to_counts
from psnmf.io.errors import (
    CalibrationError,
    CorruptFileError,
    InputNotFoundError,
    InsufficientSpaceError,
    InvalidCountsError,
    MissingDependencyError,
    NoSpectrumImageError,
    OutputExistsError,
    OutputLockedError,
    OutputNotWritableError,
    OutputOverlapsInputError,
    OutputWriteError,
    PsnmfIOError,
    UnsupportedFormatError,
)
from psnmf.io.read import (
    SUPPORTED_EXTENSIONS,
    SignalInfo,
    check_calibration,
    crop_energy,
    describe_signals,
    energy_channels,
    input_files,
    load_npz,
    load_spectrum_image,
    native_byte_order,
    set_elements,
)
from psnmf.io.results import MANIFEST_NAME, ResultsFolder, read_manifest
from psnmf.io.write import (
    atomic_path,
    file_checksum,
    jsonable,
    prepare_output_dir,
    save_npz,
    save_signal,
    savefig,
    write_json,
    write_text,
)

__all__ = [
    "PsnmfIOError",
    "InputNotFoundError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "MissingDependencyError",
    "NoSpectrumImageError",
    "InvalidCountsError",
    "CalibrationError",
    "OutputExistsError",
    "OutputNotWritableError",
    "OutputOverlapsInputError",
    "OutputLockedError",
    "OutputWriteError",
    "InsufficientSpaceError",
    "MANIFEST_NAME",
    "ResultsFolder",
    "read_manifest",
    "SUPPORTED_EXTENSIONS",
    "SignalInfo",
    "describe_signals",
    "check_calibration",
    "input_files",
    "native_byte_order",
    "load_spectrum_image",
    "load_npz",
    "crop_energy",
    "energy_channels",
    "set_elements",
    "to_counts",
    "atomic_path",
    "save_signal",
    "save_npz",
    "write_json",
    "write_text",
    "savefig",
    "jsonable",
    "prepare_output_dir",
    "file_checksum",
    "counts",
    "errors",
    "read",
    "results",
    "write",
]
