"""Progress of a run on stderr: one bar of steps, nested bars for searches, step timings.

The bar of the run shows the current step, its elapsed time and, for a step with an
expected duration (:meth:`Progress.expect`), the time left in the step and in the run; the
expectations are rescaled by how fast the finished steps went (:meth:`Progress.speed`). A
background thread refreshes the bar once a second, so a single long call (a fit, a PCA)
still shows time passing. Iterated steps (:meth:`Progress.iterate`) and work that counts
its own units (:meth:`Progress.counter`) get a nested tqdm bar with its own rate and time
left.
With ``track_memory`` each step also records the peak resident memory of the process
(``VmHWM``, reset at the start of the step through ``/proc/self/clear_refs``), which is
how :mod:`psnmf.pipeline.memory` measures the peak of every stage.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class Progress:
    """Step timer with optional tqdm progress bars on stderr.

    Parameters
    ----------
    enabled : bool
        Show progress bars.
    verbose : bool
        Also log each finished step with its time (to stderr).
    stream : file-like, default sys.stderr

    Examples
    --------
    >>> prog = Progress(enabled=False)
    >>> with prog.step("load", "loading"):
    ...     pass
    >>> list(prog.timings)
    ['load']
    """

    #: Record the peak resident memory of every step in :attr:`peaks` (Linux only; it
    #: resets the process's ``VmHWM`` at the start of each step).
    track_memory: bool = False
    #: Seconds between refreshes of the bar during a step.
    refresh_s: float = 1.0
    #: Weight, in expected seconds, of the prior belief that the time model is right on
    #: this machine: :meth:`speed` leaves 1 only as finished steps outweigh it.
    prior_s: float = 10.0

    def __init__(self, enabled: bool = True, verbose: bool = False, stream: Any = None) -> None:
        self.enabled = enabled
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stderr
        self.timings: dict[str, float] = {}
        #: Peak resident bytes of the process during each step (with ``track_memory``).
        self.peaks: dict[str, int] = {}
        #: Resident bytes at the start of each step (with ``track_memory``).
        self.resident: dict[str, int] = {}
        self.expected: dict[str, float] = {}
        self._bar: Any = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._current: tuple[str, float] | None = None

    def expect(self, seconds: dict[str, float]) -> None:
        """Expected duration of steps by name (from a time model): the bar shows time left."""
        self.expected.update({k: float(v) for k, v in seconds.items() if v and v > 0})

    def skip(self, *names: str) -> None:
        """Steps that will not run after all (a stage with nothing to do): their expected
        durations no longer count in the time left in the run."""
        for name in names:
            self.expected.pop(name, None)

    def speed(self) -> float:
        """How much slower than expected this run goes: the seconds the finished steps took
        over the seconds expected of them, shrunk towards 1 by :attr:`prior_s` and kept in
        [1/4, 4].

        The time model (:meth:`expect`) was measured on one machine and one kind of data;
        the expected durations of the steps still to come are multiplied by this factor, so
        the time left adapts to this machine and these data as the run goes on.

        Examples
        --------
        >>> prog = Progress(enabled=False)
        >>> prog.expect({"load": 10.0, "fit": 40.0})
        >>> prog.speed()
        1.0
        >>> prog.timings["load"] = 30.0  # three times slower than expected
        >>> prog.speed()
        2.0
        """
        done = [name for name in self.timings if name in self.expected]
        expected = sum(self.expected[name] for name in done)
        took = sum(self.timings[name] for name in done)
        return min(max((took + self.prior_s) / (expected + self.prior_s), 0.25), 4.0)

    def status(self) -> str:
        """The current step's elapsed time, its expected total and time left if known, and
        the time left in the whole run when steps with an expected duration follow.

        Examples
        --------
        >>> prog = Progress(enabled=False)
        >>> prog.expect({"fit": 40.0, "report": 15.0})
        >>> prog._current = ("fit", time.perf_counter() - 10.0)
        >>> prog.status()
        '10 s of ~40 s, ~30 s left; run ~45 s left'
        """
        if self._current is None:
            return ""
        name, t0 = self._current
        dt = time.perf_counter() - t0
        text = _fmt_s(dt)
        speed = self.speed()
        left = 0.0
        total = self.expected.get(name)
        if total is not None and total * speed >= 1.0:  # no estimate for a blink
            total *= speed
            left = total - dt
            text += f" of ~{_fmt_s(total)}, " + (
                f"~{_fmt_s(left)} left" if left > 0 else "taking longer than expected")
        later = speed * sum(seconds for step, seconds in self.expected.items()
                            if step != name and step not in self.timings)
        if later > 0:
            text += f"; run ~{_fmt_s(max(left, 0.0) + later)} left"
        return text

    def _tick(self) -> None:
        while not self._stop.wait(self.refresh_s):
            bar = self._bar
            if bar is None:
                return
            try:
                bar.set_postfix_str(self.status(), refresh=True)
            except Exception:  # pragma: no cover - a closed stream must not kill the run
                return

    def start(self, total: int, desc: str) -> None:
        """Open the bar of the whole run, ``total`` steps."""
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed} {postfix}",
            )
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, name="psnmf-progress",
                                            daemon=True)
            self._ticker.start()

    def close(self) -> None:
        """Close the bar of the run."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @contextlib.contextmanager
    def step(self, name: str, label: str) -> Iterator[None]:
        """Time a step (stored in ``timings[name]``) and advance the bar."""
        if self._bar is not None:
            self._bar.set_description_str(label)
        if self.track_memory:
            self.resident[name] = reset_peak()
        t0 = time.perf_counter()
        self._current = (name, t0)
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self._current = None
            self.timings[name] = self.timings.get(name, 0.0) + dt
            if self.track_memory:
                self.peaks[name] = max(self.peaks.get(name, 0), _status_bytes("VmHWM"))
            if self._bar is not None:
                self._bar.set_postfix_str("", refresh=False)
                self._bar.update(1)
            if self.verbose:
                self.write(f"  {label}: {dt:.1f} s")

    def iterate(self, items: Sequence[Any], desc: str) -> Iterator[Any]:
        """Iterate with a nested bar (one tick per item)."""
        if not self.enabled:
            yield from items
            return
        yield from self._nested_bar(desc, iterable=items)

    @contextlib.contextmanager
    def counter(self, total: int, desc: str) -> Iterator[Callable[[int], Any]]:
        """A nested bar of ``total`` units for work that reports its own progress (the
        bootstrap's replicates): yields ``advance(n)``, to call as ``n`` units finish; the
        bar shows their rate and, at that rate, the time left for all ``total``."""
        if not self.enabled:
            yield lambda n: None
            return
        bar = self._nested_bar(desc, total=total)
        try:
            yield bar.update
        finally:
            bar.close()

    def _nested_bar(self, desc: str, **kwargs: Any) -> Any:
        """A tqdm bar on the line below the run's bar, removed when it closes."""
        from tqdm.auto import tqdm

        return tqdm(desc=desc, file=self.stream, leave=False, dynamic_ncols=True, position=1,
                    **kwargs)

    def write(self, message: str) -> None:
        """Print a message without breaking the bars."""
        if self._bar is not None:
            from tqdm.auto import tqdm

            tqdm.write(message, file=self.stream)
        else:
            print(message, file=self.stream)


def _fmt_s(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``, ``VmSize``) in bytes; 0
    where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def reset_peak() -> int:
    """Reset the process's peak resident size to the current one; returns the current one.

    Linux >= 4.0: writing ``5`` to ``/proc/self/clear_refs`` sets ``VmHWM`` to ``VmRSS``.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_bytes("VmRSS")


@contextlib.contextmanager
def quiet_libraries(verbose: bool) -> Iterator[None]:
    """Silence HyperSpy/exspy/RosettaSciIO chatter (deprecations, info logs) unless verbose."""
    names = ("hyperspy", "exspy", "rsciio")
    old = {n: logging.getLogger(n).level for n in names}
    with warnings.catch_warnings():
        if not verbose:
            for n in names:
                logging.getLogger(n).setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", module=r"(hyperspy|exspy|rsciio|dask)")
            try:
                from hyperspy.exceptions import VisibleDeprecationWarning

                warnings.filterwarnings("ignore", category=VisibleDeprecationWarning)
            except ImportError:  # pragma: no cover
                pass
        try:
            yield
        finally:
            for n, level in old.items():
                logging.getLogger(n).setLevel(level)
