"""Progress of a run on stderr: one bar of steps, nested bars for searches, step timings."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
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

    def __init__(self, enabled: bool = True, verbose: bool = False, stream: Any = None) -> None:
        self.enabled = enabled
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stderr
        self.timings: dict[str, float] = {}
        self._bar: Any = None

    def start(self, total: int, desc: str) -> None:
        """Open the bar of the whole run, ``total`` steps."""
        if self.enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, desc=desc, file=self.stream, leave=False, dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} steps |{bar}| {elapsed}",
            )

    def close(self) -> None:
        """Close the bar of the run."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    @contextlib.contextmanager
    def step(self, name: str, label: str) -> Iterator[None]:
        """Time a step (stored in ``timings[name]``) and advance the bar."""
        if self._bar is not None:
            self._bar.set_description_str(label)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.timings[name] = self.timings.get(name, 0.0) + dt
            if self._bar is not None:
                self._bar.update(1)
            if self.verbose:
                self.write(f"  {label}: {dt:.1f} s")

    def iterate(self, items: Sequence[Any], desc: str) -> Iterator[Any]:
        """Iterate with a nested bar (one tick per item)."""
        if not self.enabled:
            yield from items
            return
        from tqdm.auto import tqdm

        yield from tqdm(
            items, desc=desc, file=self.stream, leave=False, dynamic_ncols=True, position=1
        )

    def write(self, message: str) -> None:
        """Print a message without breaking the bars."""
        if self._bar is not None:
            from tqdm.auto import tqdm

            tqdm.write(message, file=self.stream)
        else:
            print(message, file=self.stream)


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
