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
    ├── OutputExistsError(PsnmfIOError, FileExistsError)  refusing to overwrite
    └── OutputNotWritableError(PsnmfIOError, PermissionError)  cannot write there

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
    "OutputExistsError",
    "OutputNotWritableError",
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


class OutputExistsError(PsnmfIOError, FileExistsError):
    """Refusing to overwrite an existing output file or non-empty folder."""


class OutputNotWritableError(PsnmfIOError, PermissionError):
    """The output location cannot be created or written to."""
