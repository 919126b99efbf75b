"""Figures drawn in forked processes while the caller builds the rest of the report.

Matplotlib draws on one core and holds the GIL: the report's dozen figures take 3-5 s at
180 x 180 pixels and more at 512 x 512, while the interactive page and the signal files
could be written meanwhile. On a platform with ``fork`` the figures are split over up to
:data:`MAX_WORKERS` child processes, which see the finished result without copying or
pickling it (copy on write), write their PNG files atomically and tell the parent which
files they wrote through a pipe.

A child inherits every lock of the parent as it was at the fork, and other threads (the
progress display, idle thread pools) may hold some: so a child draws only, never writes
to standard output or error (warnings are ignored), never calls a parallel kernel, and
leaves with ``os._exit`` (no ``atexit`` handler of the parent runs, no stream is flushed).
A figure whose child failed or died is drawn again by the parent when the result is
asked for, so that its error surfaces as it would without children. Without ``fork``,
with one worker or one figure, the figures are drawn in the parent, one after the other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask

from psnmf.engine import _kernels as kernels

__all__ = ["FigureJob", "PendingFigures", "draw_in_background"]

#: Most child processes drawing figures at once (1 on macOS, where a forked process that
#: touches Apple's frameworks can crash).
MAX_WORKERS = 1 if sys.platform == "darwin" else 2


@dataclass(frozen=True)
class FigureJob:
    """One figure to draw: ``draw()`` writes it and returns its path (None: no figure).

    ``cost`` is a relative estimate of its drawing time (e.g. its number of panels), used
    to share the figures evenly between the children.
    """

    key: str
    draw: Callable[[], Path | None]
    cost: float = 1.0


@dataclass
class PendingFigures:
    """Figures being drawn; :meth:`result` waits for them."""

    jobs: list[FigureJob]
    children: list[tuple[int, int]] = field(default_factory=list)  # (pid, read end)
    done: dict[str, Path | None] = field(default_factory=dict)

    def result(self) -> dict[str, Path]:
        """``{key: path}`` of every figure drawn (None-returning jobs left out), once all
        are written; a figure a child did not deliver is drawn here."""
        while self.children:
            pid, fd = self.children[0]
            self.done.update(_read(fd))
            self.children.pop(0)
            os.waitpid(pid, 0)
        for job in self.jobs:
            if job.key not in self.done:
                self.done[job.key] = job.draw()
        return {key: p for key, p in self.done.items() if p is not None}

    def cancel(self) -> None:
        """Stop the children still drawing and reap them (a run that failed does not wait
        for its figures); nothing once :meth:`result` was taken."""
        for pid, fd in self.children:
            with contextlib.suppress(OSError):  # already ended, or its pipe already read
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children = []


def draw_in_background(jobs: Sequence[FigureJob],
                       workers: int | None = None) -> PendingFigures:
    """Start drawing ``jobs`` in up to ``workers`` (default :data:`MAX_WORKERS`) forked
    children; returns at once.

    Without ``os.fork`` (or with fewer than two jobs or one worker) nothing starts here:
    :meth:`PendingFigures.result` draws every figure in this process.
    """
    jobs = list(jobs)
    pending = PendingFigures(jobs)
    n = min(MAX_WORKERS if workers is None else int(workers), len(jobs))
    if n < 2 or not hasattr(os, "fork"):
        return pending
    shares: list[list[FigureJob]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for job in sorted(jobs, key=lambda j: -j.cost):  # the costliest first, to the least loaded
        i = loads.index(min(loads))
        shares[i].append(job)
        loads[i] += job.cost
    for share in shares:
        read, write = os.pipe()
        with warnings.catch_warnings():  # Python 3.12+ warns on fork with threads alive
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: draw, report, leave without any cleanup of the parent's
            os.close(read)
            _child(share, write)
        os.close(write)
        pending.children.append((pid, read))
    return pending


def _child(jobs: list[FigureJob], fd: int) -> None:
    """Draw ``jobs``, write ``key<TAB>path`` (empty path: no figure) per delivered figure
    to ``fd``, then end the process."""
    code = 0
    try:
        # fresh streams and no logging: the inherited ones may be locked by another
        # thread of the parent (the progress display) and would never be released here
        sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115
        logging.disable(logging.CRITICAL)
        warnings.simplefilter("ignore")
        # the parent's thread pools did not follow into this process: Dask arrays (a lazy
        # signal's sum spectrum) are computed in this thread, the kernels run serially
        dask.config.set(scheduler="synchronous")
        with kernels.serial_kernels():
            code = _draw(jobs, fd)
    finally:
        os.close(fd)
        os._exit(code)


def _draw(jobs: list[FigureJob], fd: int) -> int:
    """Draw ``jobs`` and report each delivered one to ``fd``; 1 if any failed, else 0."""
    code = 0
    for job in jobs:
        try:
            path = job.draw()
        except BaseException:  # the parent draws it again and raises there
            code = 1
            continue
        line = f"{job.key}\t{'' if path is None else os.fspath(path)}\n"
        os.write(fd, line.encode("utf-8", "surrogateescape"))
    return code


def _read(fd: int) -> dict[str, Path | None]:
    """What a child delivered through the read end ``fd`` (closed here)."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    out: dict[str, Path | None] = {}
    for line in b"".join(chunks).decode("utf-8", "surrogateescape").splitlines():
        key, _, path = line.partition("\t")
        out[key] = Path(path) if path else None
    return out

