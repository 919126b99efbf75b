"""The ``psnmf`` command line.

Each subcommand lives in its own module under :mod:`psnmf.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with
the parsed arguments, returning an exit code). The heavy imports happen inside
``func`` so that ``psnmf --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from psnmf import __version__

#: Subcommand modules, in the order they are listed by ``psnmf --help``.
COMMANDS: tuple[str, ...] = ("demo", "simulate", "unmix", "sweep")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="psnmf",
        description=(
            "PSNMF: NMF-based pan-sharpening of STEM-EDX spectrum images. "
            "Clean phase spectra, high-resolution phase maps and denoised data."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"psnmf {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"psnmf.cli.{name}")
        module.register(subparsers)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup runs (exit code 143)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` during the command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Print what an interrupt left behind (the notes of the code that cleaned up)."""
    what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    notes = getattr(exc, "__notes__", [])
    print(f"\npsnmf: {what}.", file=sys.stderr)
    for note in notes:
        print(note, file=sys.stderr)
    return 143 if isinstance(exc, Terminated) else 130


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``psnmf`` command; returns the process exit code.

    Ctrl-C exits with 130 and SIGTERM with 143, each after the cleanup of the output being
    written; the message says what was left (e.g. that the output folder is unchanged).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with _sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        return _interrupted(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
