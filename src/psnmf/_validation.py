"""Input checks: every check names the input and says how to fix it.

The checks of counts run once, where data enter psnmf (:func:`psnmf.hyperspy.as_counts`
for the estimators, :func:`psnmf.io.to_counts` for files and Dask arrays); what passes is
put in the internal form of :func:`counts_csr`, which the layers below receive. The rules:
counts are real, finite and non-negative (errors), integer (a
:class:`NonIntegerCountsWarning` otherwise), and not hidden behind a mask (a NumPy masked
array with masked values is refused, because ``numpy.asarray`` would drop the mask).
Parameter checks (:func:`check_positive_int`, :func:`check_random_state`, ...) and the
memory guard (:func:`check_memory`, with :func:`available_memory`, which honours RAM,
rlimits and cgroup limits) live here too.
"""

from __future__ import annotations

import math
import os
import warnings
from numbers import Integral

import numpy as np
import scipy.sparse as sp


class NonIntegerCountsWarning(UserWarning):
    """The data are not integer counts, which the Poisson model assumes."""


class InsufficientMemoryError(MemoryError):
    """The in-memory path would need more memory than this process has available.

    Raised before the allocation, by :func:`check_memory` (one array, e.g. a file read
    eagerly) and :func:`psnmf.pipeline.memory.check_unmix_memory` (a whole ``unmix`` run);
    the message names the input, the memory needed and available, and the fixes.
    """


#: Fraction of the available memory a single dense array may take before psnmf refuses.
MEMORY_FRACTION = 0.8


#: Where :func:`memory_limits` reads the process's state and the cgroup file system
#: (module attributes so that tests can point them at fake files).
PROC_DIR = "/proc"
CGROUP_ROOT = "/sys/fs/cgroup"
#: What :func:`available_memory` returns when no source can tell (never refuses).
NO_LIMIT = 2**63 - 1


def available_memory() -> int:
    """Bytes this process can still allocate now: the smallest of :func:`memory_limits`.

    Each source counts only where it is set and readable (a missing file, an unlimited
    rlimit or ``max`` in a cgroup file means "no limit" from that source); ``NO_LIMIT``
    (``2**63 - 1``) when none can tell, so that a check never refuses by mistake.

    Examples
    --------
    >>> 0 < available_memory() <= NO_LIMIT
    True
    """
    limits = memory_limits()
    return min(limits.values()) if limits else NO_LIMIT


def memory_limits() -> dict[str, int]:
    """The memory left to this process by each source that sets a limit, in bytes.

    ``ram``
        ``MemAvailable`` of ``/proc/meminfo`` (:mod:`psutil` where ``/proc`` is missing).
    ``rlimit_as``
        The soft ``RLIMIT_AS`` (``ulimit -v``) minus the address space in use (``VmSize``).
    ``rlimit_data``
        The soft ``RLIMIT_DATA`` minus the data segment in use (``VmData``).
    ``cgroup``
        For the cgroup of this process and each of its ancestors: v2 ``memory.max`` minus
        ``memory.current`` (v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``),
        with the reclaimable page cache (``inactive_file`` of ``memory.stat``) counted as
        free; the smallest over the hierarchy.

    A value is clipped at 0. Sources that are not set, or cannot be read, are left out.
    """
    out: dict[str, int] = {}
    for name, source in (("ram", _ram_available), ("rlimit_as", _rlimit_as_left),
                         ("rlimit_data", _rlimit_data_left), ("cgroup", _cgroup_left)):
        try:
            value = source()
        except (OSError, ValueError, TypeError, AttributeError, IndexError):
            value = None
        if value is not None:
            out[name] = max(int(value), 0)
    return out


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _kb_field(text: str | None, field: str) -> int | None:
    """A ``Field:  123 kB`` line of ``/proc/meminfo`` or ``/proc/self/status``, in bytes."""
    for line in (text or "").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def _ram_available() -> int | None:
    value = _kb_field(_read_text(os.path.join(PROC_DIR, "meminfo")), "MemAvailable")
    if value is not None:
        return value
    try:  # pragma: no cover - systems without /proc/meminfo
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover
        return None


def _rlimit(which: str) -> int | None:
    """The soft limit ``resource.RLIMIT_<which>`` in bytes, ``None`` if unlimited or unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    code = getattr(resource, f"RLIMIT_{which}", None)
    if code is None:  # pragma: no cover
        return None
    soft, _ = resource.getrlimit(code)
    return None if soft in (resource.RLIM_INFINITY, -1) or soft < 0 else int(soft)


def _rlimit_left(which: str, field: str) -> int | None:
    limit = _rlimit(which)
    if limit is None:
        return None
    used = _kb_field(_read_text(os.path.join(PROC_DIR, "self", "status")), field)
    return limit - (used or 0)


def _rlimit_as_left() -> int | None:
    return _rlimit_left("AS", "VmSize")


def _rlimit_data_left() -> int | None:
    return _rlimit_left("DATA", "VmData")


def _cgroup_number(path: str) -> int | None:
    """An integer cgroup file; ``None`` for a missing file or ``max`` (no limit)."""
    text = _read_text(path)
    if text is None:
        return None
    text = text.strip()
    if not text or text == "max":
        return None
    value = int(text)
    # cgroup v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages)
    return None if value >= 2**60 else value


def _cgroup_stat(path: str, key: str) -> int:
    for line in (_read_text(path) or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


def _cgroup_dirs() -> list[tuple[str, str]]:
    """(directory, version) of this process's memory cgroup and its ancestors, deepest first.

    From ``/proc/self/cgroup``: ``0::/path`` (v2) under ``CGROUP_ROOT``, ``N:...memory...:/path``
    (v1) under ``CGROUP_ROOT/memory``. In a container the path may name the host's
    hierarchy, which is not mounted; the root of the mount then stands for it.
    """
    text = _read_text(os.path.join(PROC_DIR, "self", "cgroup")) or ""
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, rel = parts
        if hier == "0" and controllers == "":
            base, version = CGROUP_ROOT, "v2"
        elif "memory" in controllers.split(","):
            base, version = os.path.join(CGROUP_ROOT, "memory"), "v1"
        else:
            continue
        rel = rel.strip().strip("/")
        chain = []
        while True:
            chain.append(os.path.join(base, rel) if rel else base)
            if not rel:
                break
            rel = os.path.dirname(rel)
        found += [(d, version) for d in chain if os.path.isdir(d)] or [(base, version)]
    return found


def _cgroup_left() -> int | None:
    best: int | None = None
    for directory, version in _cgroup_dirs():
        if version == "v2":
            limit = _cgroup_number(os.path.join(directory, "memory.max"))
            used = _cgroup_number(os.path.join(directory, "memory.current"))
        else:
            limit = _cgroup_number(os.path.join(directory, "memory.limit_in_bytes"))
            used = _cgroup_number(os.path.join(directory, "memory.usage_in_bytes"))
        if limit is None:
            continue
        cache = _cgroup_stat(os.path.join(directory, "memory.stat"),
                             "inactive_file" if version == "v2" else "total_inactive_file")
        left = limit - max((used or 0) - cache, 0)
        best = left if best is None else min(best, left)
    return best


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"


def check_memory(n_bytes: int, what: str) -> None:
    """Refuse, before allocating, a dense array that would not fit in memory.

    The one place where psnmf decides that a dataset is too large for the in-memory path.

    Parameters
    ----------
    n_bytes : int
        Estimated bytes the dense path would allocate.
    what : str
        What would be allocated, naming the input (e.g. ``"'scan.bcf' as a dense
        (512, 512, 4096) uint16 cube"``).

    Raises
    ------
    InsufficientMemoryError
        If ``n_bytes`` exceeds :data:`MEMORY_FRACTION` of :func:`available_memory`; the
        message says how much is needed and available, and the fixes
        (:func:`too_large_error`).
    """
    available = available_memory()
    if n_bytes > MEMORY_FRACTION * available:
        raise too_large_error(what, n_bytes, available)


def too_large_error(
    what: str, n_bytes: int | None = None, available: int | None = None
) -> InsufficientMemoryError:
    """The :class:`InsufficientMemoryError` psnmf raises when data will not fit in memory.

    The message gives the fix both for the command line (make the file smaller with a
    lazy HyperSpy load, which reads chunk by chunk) and for Python (the lazy path).
    """
    need = f"needs about {_gib(n_bytes)} of memory" if n_bytes is not None else (
        "does not fit in memory"
    )
    have = f", but only {_gib(available)} is available" if available is not None else ""
    return InsufficientMemoryError(
        f"{what} {need}{have}. psnmf unmix reads the whole file: make it smaller first, "
        "in HyperSpy without reading it all (s = hyperspy.api.load(path, lazy=True); crop "
        "with s.inav[...] or s.isig[lo:hi], or bin with s.rebin(scale=(2, 2, 1)); then "
        "s.save('smaller.hspy') and run psnmf unmix smaller.hspy). From Python, the lazy "
        "path never holds the dense cube: psnmf.io.load_spectrum_image(path, lazy=True) "
        "(or hyperspy.api.load(path, lazy=True)) and pass the lazy signal on, so the counts "
        "are converted to a sparse matrix chunk by chunk."
    )


def dense_nbytes(shape: tuple[int, ...], dtype) -> int:
    """Bytes of a dense array of ``shape`` and ``dtype``."""
    return int(math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def check_n_components(n_components, shape: tuple[int, int]) -> int:
    """Validate the number of components against a (pixels, channels) matrix."""
    k = check_positive_int(n_components, "n_components")
    n, ne = shape
    if k > min(n, ne):
        raise ValueError(
            f"n_components={k} is more than the data can support: it must be at most "
            f"min(pixels, channels) = min({n}, {ne}) = {min(n, ne)}. Use fewer components"
            " (or a smaller bin factor, which leaves more pixels)."
        )
    return k


def _check_values(values: np.ndarray, name: str) -> None:
    if values.size == 0:
        return
    dt = values.dtype
    if not np.issubdtype(dt, np.number) or np.issubdtype(dt, np.complexfloating):
        raise TypeError(
            f"{name} must hold real numbers (counts), got dtype {values.dtype}. Convert it "
            f"to counts first, e.g. np.asarray({name}, dtype=np.uint32)."
        )
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"{name} contains {int(bad.sum())} NaN or infinite value(s). Counts must be "
                "finite: replace or mask them (e.g. np.nan_to_num) before fitting."
            )
    if np.any(values < 0):
        raise ValueError(
            f"{name} contains {int(np.sum(values < 0))} negative value(s) (min "
            f"{values.min()}). Counts must be >= 0: undo any background subtraction or "
            "offset before fitting."
        )
    if np.issubdtype(values.dtype, np.floating):
        frac = np.abs(values - np.round(values))
        if np.any(frac > 1e-6):
            warnings.warn(
                f"{name} holds non-integer values, but the Poisson model assumes raw X-ray "
                "counts. If the data were scaled or normalised, undo that first; otherwise "
                "results are still computed but likelihood-based scores are not calibrated.",
                NonIntegerCountsWarning,
                stacklevel=3,
            )


def check_counts_matrix(X, name: str = "X") -> sp.csr_matrix:
    """Validate counts and return them as a CSR matrix with float64 data, no explicit zeros.

    The values are checked with the rules of :func:`check_counts_values`, then the matrix
    is put in the form :func:`counts_csr` describes. Dense input becomes sparse in its
    native dtype first, so no dense float64 copy of the data is made.

    Parameters
    ----------
    X : array-like (n_pixels, n_channels) or scipy.sparse matrix
    name : str
        Name of the argument, used in error messages.

    Examples
    --------
    >>> M = check_counts_matrix(np.array([[0, 3], [1, 0]], dtype=np.uint8))
    >>> M.dtype, M.nnz, M.indices.dtype
    (dtype('float64'), 2, dtype('int32'))
    """
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (pixels, channels), got {X.ndim}-D.")
        M = sp.csr_matrix(X)
        _check_values(M.data, name)
        return counts_csr(sp.csr_matrix(M, dtype=np.float64, copy=True), name)
    arr = as_array(X, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D counts matrix (pixels, channels), got shape "
            f"{arr.shape}. Reshape a (ny, nx, channels) cube with cube.reshape(-1, "
            "channels) (a single spectrum with spectrum[None, :]) or use the PSNMF "
            "estimator, which takes cubes."
        )
    _check_values(arr, name)
    # sparse first, in the native dtype: never a dense float64 copy of the cube
    native = arr.dtype.kind in "iu" or arr.dtype in (np.float32, np.float64)
    M = sp.csr_matrix(arr if native else arr.astype(np.float64))
    return counts_csr(M, name)


def counts_csr(M: sp.spmatrix | sp.sparray, name: str = "X") -> sp.csr_matrix:
    """Put counts whose values are already checked into psnmf's internal CSR form.

    The form every layer below the input receives: a ``scipy.sparse.csr_matrix`` of shape
    (pixels, channels) with float64 data, duplicates summed, no explicit zeros, int32
    column indices and int64 row pointers. The values are not checked again: call this only
    on counts that passed :func:`check_counts_matrix`, :func:`check_counts_values` or
    :func:`psnmf.io.to_counts`. ``M`` may be modified in place when it is already a
    float64 ``csr_matrix``.

    Raises
    ------
    ValueError
        For a matrix without pixels or channels.
    """
    M = sp.csr_matrix(M, dtype=np.float64)
    if M.shape[0] < 1 or M.shape[1] < 1:
        raise ValueError(f"{name} is empty (shape {M.shape}); it needs pixels and channels.")
    if not M.has_canonical_format or not M.data.all():
        # sort, sum duplicates, drop explicit zeros; SciPy's routines need one index type,
        # so a matrix already in the internal form (the usual case) is not copied for them
        M.indices = M.indices.astype(np.int64, copy=False)
        M.indptr = M.indptr.astype(np.int64, copy=False)
        M.sum_duplicates()
        M.eliminate_zeros()
    M.indices = M.indices.astype(np.int32, copy=False)
    M.indptr = M.indptr.astype(np.int64, copy=False)
    return M


def masked_message(name: str, n_masked: int) -> str:
    """Why a masked array with ``n_masked`` masked values is refused, and the fix.

    NumPy's ``asarray`` (and so every computation of psnmf) drops a mask silently, so the
    masked entries would enter the fit as counts.
    """
    return (
        f"{name} is a NumPy masked array with {n_masked} masked value(s); psnmf does not use "
        "masks, so the masked entries would be read as counts. Fill them first (e.g. "
        "data.filled(0) where they hold no counts) or crop the masked pixels or channels "
        "away, and pass the plain array."
    )


def as_array(X, name: str = "X") -> np.ndarray:
    """``np.asarray(X)``, with an error naming ``name`` for inputs that are not counts arrays.

    Ragged nested lists, for example, otherwise fail deep inside NumPy, and a masked array
    would lose its mask: one with masked values is refused (:func:`masked_message`), one
    without is taken as its data.

    Examples
    --------
    >>> as_array(np.ma.masked_array([1, 2], mask=[False, True]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: X is a NumPy masked array with 1 masked value(s); psnmf does not use masks, ...
    """
    if np.ma.isMaskedArray(X):
        n_masked = int(np.ma.count_masked(X))
        if n_masked:
            raise ValueError(masked_message(name, n_masked))
        X = X.data
    try:
        return np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise TypeError(
            f"{name} cannot be read as an array of counts ({exc}). Pass a NumPy array of "
            "shape (ny, nx, channels) or (pixels, channels), a scipy.sparse matrix, or a "
            "HyperSpy signal."
        ) from None


def check_has_counts(counts: sp.spmatrix, name: str = "X") -> None:
    """Refuse data without a single count: there is nothing to unmix.

    All-zero pixels and channels are fine (they are handled); an all-zero dataset means the
    wrong signal, energy range or file.
    """
    if counts.nnz == 0 or not counts.sum() > 0:
        raise ValueError(
            f"{name} holds no counts at all (every pixel and channel is zero, shape "
            f"{counts.shape}): there is nothing to unmix. Check that the right signal was "
            "loaded and that energy_range does not exclude every peak."
        )


def check_image_shape(image_shape, n_pixels: int, name: str = "X") -> tuple[int, int]:
    """Validate ``image_shape=(ny, nx)`` against the number of rows of a counts matrix."""
    try:
        ny, nx = (int(v) for v in image_shape)
        if any(float(v) != int(v) for v in image_shape):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(
            f"image_shape must be a pair of integers (ny, nx), got {image_shape!r}."
        ) from None
    if ny < 1 or nx < 1:
        raise ValueError(f"image_shape={(ny, nx)} must have sizes >= 1.")
    if ny * nx != n_pixels:
        raise ValueError(
            f"image_shape={(ny, nx)} has {ny * nx} pixels but {name} has {n_pixels} rows; "
            "pass the (ny, nx) of the image the rows come from (row-major order). In "
            "HyperSpy, EDS signals mask low-count pixels in decomposition() by default: "
            "call it with navigation_mask=None, normalize_poissonian_noise=False."
        )
    return ny, nx


def check_cube(cube, name: str = "X") -> np.ndarray:
    """Validate a dense (ny, nx, channels) counts cube (values checked by the caller)."""
    arr = as_array(cube, name)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a spectrum image of shape (ny, nx, channels), got {arr.ndim}-D "
            f"shape {arr.shape}. For a (pixels, channels) matrix pass image_shape=(ny, nx)."
        )
    if min(arr.shape) < 1:
        raise ValueError(f"{name} is empty (shape {arr.shape}).")
    return arr


def check_random_state(random_state, name: str = "random_state") -> np.random.Generator:
    """Return a NumPy Generator for ``None``, a non-negative int, a Generator or a
    ``RandomState``.

    A ``RandomState`` (scikit-learn's convention) seeds a new Generator from four draws of
    it, so, as in scikit-learn, the instance's state advances and each use differs.
    """
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1, size=4).tolist())
    if isinstance(random_state, Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"{name} must be >= 0, got {random_state}.")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        f"{name} must be None, a non-negative integer seed, a numpy.random.Generator or "
        "a numpy.random.RandomState, "
        f"got {random_state!r}. Pass an integer such as {name}=0 for reproducible results."
    )


def check_finite_array(values, name: str) -> np.ndarray:
    """Return ``values`` as a float64 array, or raise if it holds NaN or infinite values."""
    arr = as_array(values, name)
    try:
        arr = arr.astype(float, copy=False)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}.") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} contains {int(np.sum(~np.isfinite(arr)))} NaN or infinite value(s); "
            "metrics need finite values. Check where they came from (a failed fit, a "
            "division by zero) and replace or mask them."
        )
    return arr


def check_counts_values(values, name: str = "X") -> None:
    """Raise for negative, NaN or infinite counts; warn for non-integer ones (any shape)."""
    if sp.issparse(values):
        _check_values(sp.csr_matrix(values).data, name)
    else:
        _check_values(as_array(values, name), name)
