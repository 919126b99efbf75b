"""The errors of :mod:`psnmf.io`: one base class, one subclass per way a file can fail.

Every error derives from :class:`PsnmfIOError`, itself a :class:`ValueError`, so ``except
ValueError`` works for callers that do not care about the details; the subclasses that
also derive from a built-in (``FileNotFoundError``, ``ImportError``, ``FileExistsError``,
``PermissionError``) can be caught as that. Each message names the file or folder and says
what to do. The hierarchy::

    PsnmfIOError(ValueError)
    ├── InputNotFoundError(PsnmfIOError, FileNotFoundError)  missing input file
    ├── UnsupportedFormatError       unknown extension (lists the supported ones)
    ├── CorruptFileError             the reader failed: truncated/corrupt file
    ├── MissingDependencyError(PsnmfIOError, ImportError)  reader needs a package
    ├── NoSpectrumImageError         no (2-D) EDS spectrum image in the file
    ├── InvalidCountsError           negative / non-finite / non-integer counts
    ├── CalibrationError             energy axis or beam energy unusable
    ├── OutputExistsError(PsnmfIOError, FileExistsError)  refusing to overwrite
    ├── OutputNotWritableError(PsnmfIOError, PermissionError)  cannot write there
    ├── OutputOverlapsInputError     the results would replace an input
    ├── OutputLockedError            another run holds the output folder
    └── OutputWriteError             writing failed (full disk, I/O error)
        └── InsufficientSpaceError   not enough free space, found before writing

Examples
--------
>>> issubclass(InputNotFoundError, FileNotFoundError), issubclass(CorruptFileError, ValueError)
(True, True)
"""

from __future__ import annotations

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
]


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
    """The data are not valid counts (negative, non-finite, masked, wrong shape)."""


class CalibrationError(PsnmfIOError):
    """The energy axis (scale, offset, order) or the beam energy of the data is unusable."""


class OutputExistsError(PsnmfIOError, FileExistsError):
    """Refusing to overwrite an existing output file or non-empty folder."""


class OutputNotWritableError(PsnmfIOError, PermissionError):
    """The output location cannot be created or written to."""


class OutputOverlapsInputError(PsnmfIOError):
    """The output folder is, contains, or would replace one of the run's input files."""


class OutputLockedError(PsnmfIOError):
    """Another psnmf run is writing into the same output folder."""


class OutputWriteError(PsnmfIOError):
    """Writing the results failed (full disk, quota, I/O error); nothing was kept."""


class InsufficientSpaceError(OutputWriteError):
    """The file system of the output folder has less free space than the results need."""
