"""A results folder written as one set: staged, locked, swapped in whole, with a manifest.

:class:`ResultsFolder` is how :func:`psnmf.pipeline.unmix` and :func:`psnmf.pipeline.sweep`
write. For an output folder ``R``:

1. **Lock.** ``.R.psnmf-lock`` next to ``R`` is locked with :func:`fcntl.flock` for the whole
   run (taken before the heavy work). A second run into ``R`` stops at once with
   :class:`~psnmf.io.errors.OutputLockedError`, naming the folder and the PID holding it.
   The lock is released by the kernel when the process ends, however it ends.
2. **Check.** ``R`` must not be a file; a non-empty ``R`` needs ``overwrite``; no input of
   the run may be ``R``, contain it, or lie in ``R`` where the run would replace or remove
   it (:class:`~psnmf.io.errors.OutputOverlapsInputError`); free space is checked
   (:meth:`ResultsFolder.check_space`).
3. **Stage.** Every file is written into the hidden sibling ``.R.psnmf-staging-<pid>``
   (:attr:`ResultsFolder.path`).
4. **Commit.** The user's own entries of ``R`` are hard-linked into the staging folder (no
   data copied; copied where the file system has no hard links), the manifest
   ``.psnmf-manifest.json`` is written, and the staging folder is swapped with ``R``.
   On Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` call: atomic, ``R`` always
   names a complete set. Elsewhere ``R`` is renamed aside and the staging folder renamed to
   ``R`` (two renames, with SIGINT and SIGTERM blocked in between): a crash in the
   microseconds between them leaves no ``R`` but both complete sets on disk, and the next
   run into ``R`` puts the earlier one back. The earlier set is then removed.

On any exception before the swap (KeyboardInterrupt, a SIGTERM turned into one by the
command line, a full disk) the staging folder is removed and ``R`` is left byte-identical;
a note on the exception (``exc.__notes__``) says so. A SIGINT during the run is also
remembered by the handler, so that one whose KeyboardInterrupt Python swallowed (raised in
a weakref callback, which only prints "Exception ignored") still stops the set before the
swap. A hard kill (SIGKILL, power cut) can
leave the hidden staging folder behind; ``R`` is still intact, and the next run into ``R``
removes it.

What ``overwrite`` replaces
---------------------------
Only psnmf's own files: those listed in the earlier manifest and unchanged since (same size,
and same modification time or checksum). Everything else in ``R`` (the user's notes, a
subfolder such as the ``unmix/`` of ``psnmf sweep --unmix``, a file edited after the run) is
kept untouched in the new set. Files of the earlier run that the new run does not write
(a stale ``sweep.png`` or ``smoothing.png``) are gone afterwards. A file of the user whose
name the run may write is never replaced: the run is refused up front, listing such files.
A folder written before manifests existed is recognised by its ``summary.json`` (or
``sweep.json``) carrying ``psnmf_version``: the files it lists are psnmf's. The manifest of
the new set records what was written (sizes, SHA-256), what was replaced, removed and kept.

When ``R``'s parent folder is not writable, or ``R`` is a mount point or holds the current
folder, a sibling cannot be used: the staging folder and the lock are then inside ``R``,
and the commit moves the new files in one rename each (the set changes over a few
milliseconds instead of at once; an interrupted run still leaves the earlier files intact).

Examples
--------
>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> with ResultsFolder(root / "R", command="example") as results:
...     _ = (results.path / "a.txt").write_text("first")
>>> sorted(p.name for p in (root / "R").iterdir())
['.psnmf-manifest.json', 'a.txt']
>>> _ = (root / "R" / "mine.txt").write_text("my notes")
>>> with ResultsFolder(root / "R", overwrite=True, command="example") as results:
...     _ = (results.path / "b.txt").write_text("second")
>>> sorted(p.name for p in (root / "R").iterdir())   # a.txt was psnmf's: gone; mine kept
['.psnmf-manifest.json', 'b.txt', 'mine.txt']
>>> manifest = read_manifest(root / "R")
>>> manifest["removed"], manifest["kept"]
(['a.txt'], ['mine.txt'])
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psnmf.io.errors import (
    InsufficientSpaceError,
    OutputExistsError,
    OutputLockedError,
    OutputNotWritableError,
    OutputOverlapsInputError,
    OutputWriteError,
    PsnmfIOError,
)
from psnmf.io.write import STAGING_TAG

__all__ = [
    "MANIFEST_NAME",
    "FolderState",
    "ResultsFolder",
    "folder_lock",
    "format_bytes",
    "lock_path",
    "read_manifest",
]

PathLike = str | os.PathLike[str]

#: Name of the manifest inside a results folder.
MANIFEST_NAME = ".psnmf-manifest.json"
#: Leftovers of psnmf's own writers (``atomic_path`` temporaries), removed with the set.
_TEMPORARY = re.compile(r"^\..+\.(tmp|old)-[0-9a-f]{8}$")
#: Errors of a write that mean the disk (or the file system) refused it.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}


def format_bytes(n: float) -> str:
    """``n`` bytes in words, e.g. ``'3.2 MB'``.

    Examples
    --------
    >>> format_bytes(512), format_bytes(3.2e6), format_bytes(2.5e9)
    ('512 bytes', '3.2 MB', '2.5 GB')
    """
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


# ---------------------------------------------------------------------------
# The manifest and what an existing folder holds
# ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(path)}


def read_manifest(folder: PathLike) -> dict[str, Any] | None:
    """The manifest of a results folder, or ``None`` when it has none (or an unreadable one).

    Keys: ``written_by``, ``psnmf_version``, ``created``, ``files`` (name -> ``size``,
    ``mtime_ns``, ``sha256``), ``replaced``, ``removed`` and ``kept`` (names).
    """
    try:
        data = json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def _unchanged(path: Path, record: Any) -> bool:
    """Whether ``path`` is still the file the manifest describes."""
    if not isinstance(record, dict) or not path.is_file() or path.is_symlink():
        return False
    st = path.stat()
    if st.st_size != record.get("size"):
        return False
    return st.st_mtime_ns == record.get("mtime_ns") or _sha256(path) == record.get("sha256")


def _legacy_files(folder: Path) -> set[str]:
    """psnmf's files of a folder written before manifests: from its summary/sweep JSON."""
    owned: set[str] = set()
    for name, extra in (("summary.json", ("report.html",)),
                        ("sweep.json", ("sweep.txt", "sweep.png"))):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "psnmf_version" not in data:
            continue
        listed = data.get("files") if isinstance(data.get("files"), dict) else {}
        owned |= {name, *extra, *(str(v) for v in listed.values())}
    return owned


@dataclass
class FolderState:
    """What an existing results folder holds, by who wrote it.

    Attributes
    ----------
    owned : list of str
        psnmf's files of the earlier run (replaced or removed by the new set).
    user : list of str
        Everything else (kept in the new set).
    changed : list of str
        The user entries that psnmf wrote but that changed since (part of ``user``).
    junk : list of str
        Hidden leftovers of psnmf's writers (removed).
    """

    owned: list[str] = field(default_factory=list)
    user: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, folder: Path) -> FolderState:
        """Classify the entries of ``folder`` (empty state if it does not exist)."""
        state = cls()
        if not folder.is_dir():
            return state
        manifest = read_manifest(folder)
        records = manifest["files"] if manifest else {}
        legacy = set() if manifest else _legacy_files(folder)
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            name = entry.name
            if name == MANIFEST_NAME or "." + STAGING_TAG in name or name.startswith(
                    ".psnmf-lock"):
                continue
            if _TEMPORARY.match(name):
                state.junk.append(name)
            elif name in records and _unchanged(entry, records[name]):
                state.owned.append(name)
            elif name in legacy and entry.is_file() and not entry.is_symlink():
                state.owned.append(name)
            else:
                state.user.append(name)
                if name in records:
                    state.changed.append(name)
        return state


# ---------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------
def _lock_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").split()
    except OSError:
        text = []
    return f"PID {text[0]}" if text else "a process whose PID is not recorded yet"


def _acquire_lock(path: Path, folder: Path) -> int:
    """Lock ``path`` (created if needed); the descriptor, or OutputLockedError."""
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputNotWritableError(
                f"Cannot create the lock file '{path}' for the output folder '{folder}' "
                f"({exc.strerror or exc}). Choose another output folder or fix its "
                "permissions."
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(
                f"The output folder '{folder}' is in use by another psnmf run "
                f"({_lock_holder(path)}, lock file '{path}'). Wait for that run to finish, "
                "or choose another output folder with -o."
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:  # not a file a finishing run unlinked after we opened it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            return fd
        os.close(fd)


def _release_lock(fd: int, path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.close(fd)


def _uses_inner(final: Path) -> bool:
    """Whether the helpers of output folder ``final`` (lock, staging) live inside it: when
    its parent is not writable, or it is a mount point or holds the working directory (it
    cannot be swapped with a sibling then)."""
    if not os.access(final.parent, os.W_OK | os.X_OK):
        return final.is_dir() or not final.exists()
    if final.is_dir():
        here = Path.cwd().resolve()
        resolved = final.resolve()
        return os.path.ismount(resolved) or here == resolved or resolved in here.parents
    return False


def lock_path(folder: PathLike) -> Path:
    """The lock file of output folder ``folder``: ``.R.psnmf-lock`` beside ``R``, or
    ``R/.psnmf-lock`` where the helpers must live inside ``R`` (see the module).

    Every writer of ``R`` (:class:`ResultsFolder`, :func:`folder_lock`) locks this one
    file, so they exclude each other.
    """
    final = Path(folder).expanduser().absolute()
    return final / ".psnmf-lock" if _uses_inner(final) else (
        final.parent / f".{final.name}.psnmf-lock")


@contextlib.contextmanager
def folder_lock(folder: PathLike) -> Iterator[Path]:
    """Hold the lock of output folder ``folder`` (:func:`lock_path`) for a ``with`` block.

    For writers that fill ``R`` with several results sets and files of their own, such as
    a batch run (``R/<name>/`` and an index): a second writer into ``R`` - another batch,
    or a single run whose output folder is ``R`` - stops at once with
    :class:`~psnmf.io.errors.OutputLockedError` naming the PID of the holder. The parent
    folders are created; ``R`` is created only where the lock lives inside it. The kernel
    releases the lock when the process ends, however it ends.

    Yields
    ------
    Path
        The lock file.
    """
    final = Path(folder).expanduser().absolute()
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if _uses_inner(final):
            final.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputNotWritableError(
            f"Output folder '{final}' is not writable ({exc.strerror or exc}). Choose "
            "another folder or fix its permissions."
        ) from exc
    path = lock_path(final)
    fd = _acquire_lock(path, final)
    try:
        yield path
    finally:
        _release_lock(fd, path)


# ---------------------------------------------------------------------------
# Swapping folders
# ---------------------------------------------------------------------------
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); False where not supported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM held back (delivered after the block) in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _link_entry(src: Path, dst: Path) -> None:
    """``src`` into ``dst`` by hard links (a copy where links are not possible)."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(src), str(dst))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


# ---------------------------------------------------------------------------
# The results folder
# ---------------------------------------------------------------------------
class ResultsFolder:
    """A run's output folder: locked, staged, swapped in as one set (see the module).

    Parameters
    ----------
    path : str or path-like
        The output folder ``R``.
    overwrite : bool, default False
        Accept a non-empty ``R``: psnmf's own files of the earlier run are replaced or
        removed, the user's files kept.
    inputs : sequence of path-like
        The files the run reads; refused when the run would replace or remove one of them.
    names : iterable of str
        Every file name the run may write; a user's file of such a name in ``R`` is refused
        up front rather than replaced.
    command : str
        Who writes (recorded in the manifest, named in messages), e.g. ``'psnmf unmix'``.

    Attributes
    ----------
    final : pathlib.Path
        ``R``.
    path : pathlib.Path
        The staging folder to write into (valid inside the ``with`` block).
    state : FolderState
        What ``R`` held when the run started.
    manifest : dict or None
        The manifest of the committed set.

    Notes
    -----
    Use as a context manager: entering locks and checks, a clean exit commits, an exception
    removes the staging folder and leaves ``R`` as it was (and adds a note saying so).
    """

    def __init__(self, path: PathLike, *, overwrite: bool = False,
                 inputs: Sequence[PathLike] = (), names: Iterable[str] = (),
                 command: str = "psnmf") -> None:
        self.final = Path(path).expanduser()
        self.overwrite = bool(overwrite)
        self.inputs = [Path(p).expanduser() for p in inputs]
        self.names = set(names)
        self.command = command
        self.state = FolderState()
        self.manifest: dict[str, Any] | None = None
        self.path = self.final
        self._inner = False
        self._lock: tuple[int, Path] | None = None
        self._committed = False
        self._free: int | None = None
        self._handlers: dict[int, Any] = {}
        self._signalled: int | None = None

    # -- entering -----------------------------------------------------------------------
    def __enter__(self) -> ResultsFolder:
        final = self.final
        if final.exists() and not final.is_dir():
            raise OutputExistsError(
                f"Output folder '{final}' exists and is a file; choose another output folder."
            )
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritableError(
                f"Output folder '{final}' is not writable ({exc.strerror or exc}). Choose "
                "another folder or fix its permissions."
            ) from exc
        self._inner = self._use_inner()
        if self._inner:
            self._mkdir(final)
        lock = (final / ".psnmf-lock") if self._inner else self._sibling("psnmf-lock")
        self._lock = (_acquire_lock(lock, final), lock)
        try:
            self._recover()
            self._check_existing()
            self._check_inputs()
            self._check_clashes()
            self.path = (final / f".{STAGING_TAG}{os.getpid()}" if self._inner
                         else self._sibling(f"{STAGING_TAG}{os.getpid()}"))
            _remove_tree(self.path)
            self._mkdir(self.path)
        except BaseException:
            self._unlock()
            raise
        self._latch_signals()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            if exc is None:
                with self.writing():
                    self.commit()
            elif not isinstance(exc, KeyboardInterrupt):
                self._raise_if_signalled()
        except BaseException as error:
            self._abandon(error)
            raise
        finally:
            self._restore_signals()
            self._unlock()
        if exc is not None:
            self._abandon(exc)

    def _latch_signals(self) -> None:
        """Remember a SIGINT (or a SIGTERM the program turned into an exception) during the
        run, so that one whose KeyboardInterrupt Python swallowed (raised inside a weakref
        callback or ``__del__``, which only print "Exception ignored") still stops the
        commit. The handlers in place are called as before; default ones are left alone."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def latch(num: int, frame: Any, previous: Any = previous) -> None:
                self._signalled = num
                if _in_finalizer(frame):  # an exception raised here would be swallowed:
                    threading.Timer(0.01, os.kill, (os.getpid(), num)).start()  # again soon
                    return
                previous(num, frame)

            signal.signal(signum, latch)
            self._handlers[signum] = previous

    def _restore_signals(self) -> None:
        for signum, previous in self._handlers.items():
            signal.signal(signum, previous)
        self._handlers = {}

    def _raise_if_signalled(self) -> None:
        """Re-raise a signal that arrived during the run (see :meth:`_latch_signals`).

        Also called when the run ends with another error after a signal: a
        KeyboardInterrupt raised inside a C library's callback (h5py's type converters) comes
        out as that library's own error, and the run must still end as interrupted."""
        if self._signalled is not None and self._signalled in self._handlers:
            self._handlers[self._signalled](self._signalled, None)

    def _sibling(self, tag: str) -> Path:
        return self.final.parent / f".{self.final.name}.{tag}"

    def _use_inner(self) -> bool:
        """Whether the staging folder must live inside ``R`` (see the module)."""
        return _uses_inner(self.final)

    def _mkdir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            with open(path / f".psnmf-write-test-{os.getpid()}", "wb"):
                pass
            (path / f".psnmf-write-test-{os.getpid()}").unlink()
        except OSError as exc:
            raise OutputNotWritableError(
                f"Output folder '{self.final}' is not writable ({exc.strerror or exc}): "
                f"cannot write '{path}'. Choose another folder or fix its permissions."
            ) from exc

    def _recover(self) -> None:
        """Under the lock: leftovers of a killed run into ``R`` are removed (or put back)."""
        parent, prefix = self.final.parent, f".{self.final.name}."
        stale = [parent / n for n in os.listdir(parent)
                 if n.startswith(prefix) and (STAGING_TAG in n or "psnmf-old-" in n)]
        if self.final.is_dir():
            stale += [p for p in self.final.iterdir() if p.name.startswith("." + STAGING_TAG)]
        olds = sorted(p for p in stale if "psnmf-old-" in p.name)
        if not self.final.exists() and olds:  # killed between the two renames of a swap
            os.rename(olds[0], self.final)
            stale.remove(olds[0])
        for path in stale:
            if path != self.path:
                _remove_tree(path)

    def _check_existing(self) -> None:
        final = self.final
        self.state = FolderState.of(final)
        entries = [*self.state.owned, *self.state.user]
        if entries and not self.overwrite:
            raise OutputExistsError(
                f"Output folder '{final}' exists and is not empty. Use --overwrite "
                "(overwrite=True) to replace psnmf's results in it (your own files there "
                "are kept), or choose another folder."
            )

    def _check_clashes(self) -> None:
        final = self.final
        clash = sorted(set(self.state.user) & self.names)
        if clash:
            why = {n: " (changed since psnmf wrote it)" for n in self.state.changed}
            listed = ", ".join(n + why.get(n, "") for n in clash)
            raise OutputExistsError(
                f"Output folder '{final}' holds files psnmf did not write (or that changed "
                f"since) that this run would replace: {listed}. psnmf replaces only its own "
                f"files (those listed in {final / MANIFEST_NAME}). Move these files elsewhere, "
                "or choose another output folder with -o."
            )

    def _check_inputs(self) -> None:
        final = self.final.resolve()
        doomed = [self.final / n for n in self.state.owned]
        for raw in self.inputs:
            if not raw.exists():
                continue
            src = raw.resolve()
            inside = final in src.parents
            top = src.relative_to(final).parts[0] if inside else None
            hit = (src == final or src in final.parents
                   or (inside and (top in self.state.owned or top in self.names))
                   or any(_same(raw, d) for d in doomed))
            if hit:
                how = "the folder is the input or lies inside it" if not inside else (
                    f"{self.command} would replace or remove '{top}' there")
                raise OutputOverlapsInputError(
                    f"The output folder '{self.final}' would overwrite the input '{raw}' "
                    f"({how}): the original data would be lost. Choose another output folder "
                    "with -o, or move or copy the input out of it first."
                )

    # -- space and write errors ---------------------------------------------------------
    def check_space(self, needed: float, what: str = "the results") -> None:
        """Refuse (InsufficientSpaceError) when the file system of ``R`` has less free space
        than ``needed`` bytes; the earlier results stay on disk until the swap, so they do
        not count as free."""
        try:
            free = shutil.disk_usage(self.path if self.path.exists() else self.final.parent).free
        except OSError:
            return
        self._free = free
        if free < needed:
            raise InsufficientSpaceError(
                f"Not enough free space for {what} in '{self.final}': about "
                f"{format_bytes(needed)} needed, {format_bytes(free)} free on its file system "
                "(the earlier results there are kept until the new set is complete). Free "
                "some space, or choose another output folder with -o."
            )

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn an OSError of the writers (full disk, I/O error) into one clear
        OutputWriteError; the staging folder is removed when the error leaves the block."""
        try:
            yield
        except PsnmfIOError:
            raise
        except OSError as exc:
            raise OutputWriteError(self._write_message(exc)) from exc

    def _write_message(self, exc: OSError) -> str:
        reason = (os.strerror(exc.errno) if exc.errno in _WRITE_ERRNOS
                  else exc.strerror or str(exc))
        if self._free is not None:
            reason += f" ({format_bytes(self._free)} were free before writing)"
        return (f"Could not write the results to '{self.final}': {reason}. Free some space "
                "(or fix the disk), or choose another output folder with -o.")

    # -- committing ---------------------------------------------------------------------
    def commit(self) -> dict[str, Any]:
        """Carry the user's entries over, write the manifest, swap the set into ``R``."""
        if self._committed:
            return self.manifest or {}
        self._raise_if_signalled()
        written = sorted(p.name for p in self.path.iterdir()
                         if p.is_file() and not _TEMPORARY.match(p.name))
        owned = set(self.state.owned)
        self.manifest = {
            "written_by": self.command, "psnmf_version": _version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "files": {n: _file_record(self.path / n) for n in written},
            "replaced": sorted(owned & set(written)),
            "removed": sorted(owned - set(written)),
            "kept": list(self.state.user),
        }
        with open(self.path / MANIFEST_NAME, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(self.manifest, indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self._inner:
            self._commit_inner(written)
        else:
            for name in self.state.user:
                _link_entry(self.final / name, self.path / name)
            _fsync_dir(self.path)
            self._swap()
        return self.manifest

    def _swap(self) -> None:
        """The staging folder becomes ``R``; the earlier set (if any) is removed after."""
        final, staging = self.final, self.path
        with _signals_blocked():
            self._raise_if_signalled()
            if not final.exists():
                os.rename(staging, final)
                earlier = None
            elif _exchange(staging, final):
                earlier = staging  # the staging name now holds the earlier set
            else:
                earlier = self._sibling(f"psnmf-old-{os.getpid()}")
                os.rename(final, earlier)
                try:
                    os.rename(staging, final)
                except BaseException:
                    os.rename(earlier, final)
                    raise
            self._committed = True
            self.path = final
        _fsync_dir(final.parent)
        if earlier is not None:
            _remove_tree(earlier)

    def _commit_inner(self, written: list[str]) -> None:
        final, staging = self.final, self.path
        with _signals_blocked():
            self._raise_if_signalled()
            for name in written:
                os.replace(staging / name, final / name)
            for name in self.manifest["removed"] if self.manifest else ():
                _remove_tree(final / name)
            for name in self.state.junk:
                _remove_tree(final / name)
            os.replace(staging / MANIFEST_NAME, final / MANIFEST_NAME)
            self._committed = True
            self.path = final
        _remove_tree(staging)
        _fsync_dir(final)

    # -- leaving --------------------------------------------------------------------------
    def _abandon(self, exc: BaseException) -> None:
        """Remove the staging folder; on an interrupt or a write error, note what was left."""
        staging = self.path
        if not self._committed and staging != self.final:
            _remove_tree(staging)
        if not isinstance(exc, KeyboardInterrupt | OutputWriteError):
            return
        if self._committed:
            note = f"'{self.final}' holds the complete results of this run."
        elif staging != self.final and staging.exists():
            note = (f"'{self.final}' was left as it was; a partial staging folder "
                    f"'{staging}' remains (the next run into that folder removes it).")
        elif self.state.owned or self.state.user:
            note = (f"'{self.final}' was left as it was (results are written as one set; "
                    "nothing of this run was kept).")
        else:
            note = f"Nothing was written to '{self.final}'."
        _add_note(exc, "psnmf: " + note)

    def _unlock(self) -> None:
        if self._lock is not None:
            _release_lock(*self._lock)
            self._lock = None


def _in_finalizer(frame: Any) -> bool:
    """Whether ``frame`` runs a weakref callback or ``__del__``, where Python swallows
    exceptions (a KeyboardInterrupt raised there only prints "Exception ignored")."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or code.co_filename.endswith(os.sep + "weakref.py"):
            return True
        frame = frame.f_back
    return False


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _add_note(exc: BaseException, note: str) -> None:
    notes = getattr(exc, "__notes__", [])
    if note not in notes:
        exc.add_note(note)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("psnmf")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"
