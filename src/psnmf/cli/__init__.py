"""The ``psnmf`` command line.

Each subcommand lives in its own module under :mod:`psnmf.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with
the parsed arguments, returning an exit code). The heavy imports happen inside
``func`` so that ``psnmf --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``psnmf`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\npsnmf: interrupted; no result was left half-written.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
