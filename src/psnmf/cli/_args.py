"""Argument types and options shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from psnmf.selection import DEFAULT_BINS

#: What the commands that run the pipeline import while they run: their parsers'
#: ``preload``, imported before the run by :func:`psnmf.cli.console`.
PIPELINE_MODULES: tuple[str, ...] = (
    "psnmf.pipeline", "psnmf.report", "hyperspy.api", "exspy", "matplotlib.pyplot",
    "bokeh.plotting",
)


def energy_range(text: str) -> tuple[float | None, float | None]:
    """``LO,HI`` in keV (either may be empty for an open end)."""
    parts = text.replace(":", ",").split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(
            f"energy range {text!r}: give LO,HI in keV, e.g. 0.2,15 (leave one empty for open)"
        )
    try:
        return tuple(None if not p.strip() else float(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"energy range {text!r}: LO and HI must be numbers in keV, e.g. 0.2,15"
        ) from None


def auto_int(text: str) -> int | str:
    """A positive integer or ``'auto'``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive integer or 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """Comma-separated positive integers, e.g. ``2,4,8,16``."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give comma-separated integers, e.g. 2,4,8,16"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 2,4,8,16")
    return values


def image_shape(text: str) -> tuple[int, int]:
    """``NYxNX`` (e.g. ``180x180``), both sizes at least 2."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        ny, nx = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r}: give NYxNX, e.g. 180x180") from None
    if ny < 2 or nx < 2:
        raise argparse.ArgumentTypeError(f"shape {text!r}: both sizes must be >= 2")
    return ny, nx


def element_list(text: str) -> list[str]:
    """Comma-separated chemical symbols (at least one)."""
    elements = [e.strip() for e in text.split(",") if e.strip()]
    if not elements:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give comma-separated chemical symbols, e.g. Fe,Cr,O (or leave out "
            "--elements to use the file's)")
    return elements


def thickness(text: str) -> tuple[float, float | None]:
    """``T`` or ``T,SIGMA``: specimen thickness and its standard deviation in nm."""
    parts = [p.strip() for p in text.replace("+-", ",").replace("±", ",").split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or any(not (v >= 0 and v < float("inf")) for v in values):
        raise argparse.ArgumentTypeError(
            f"thickness {text!r}: give nm, optionally with its standard deviation, e.g. 80 "
            "or 80,20 (0 = thin film, no absorption correction)")
    return values[0], (values[1] if len(values) == 2 else None)


def valence(text: str) -> tuple[str, float]:
    """``EL=V``: an element's valence (anions negative, e.g. ``Fe=3``, ``O=-2``)."""
    from psnmf.physics import atomic_number

    el, sep, value = (t.strip() for t in text.partition("="))
    try:
        v = float(value)
    except ValueError:
        v = float("nan")
    if not sep or not (abs(v) < float("inf")):
        raise argparse.ArgumentTypeError(
            f"valence {text!r}: give ELEMENT=VALENCE, e.g. Fe=3 (anions negative: C=-4)")
    try:
        atomic_number(el)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"valence {text!r}: {el!r} is not a chemical symbol (capital first letter, "
            "e.g. Fe=3)") from None
    return el, v


def _whole_number(text: str, what: str) -> int:
    """``text`` as an int; the error says to give ``what``."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give {what}") from None


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2**32 - 1 (what NumPy and scikit-learn accept)."""
    value = _whole_number(text, "an integer seed, e.g. 0")
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r}: a seed must be from 0 to 2**32 - 1")
    return value


def replicates(text: str) -> int:
    """A number of bootstrap replicates: 0 (none) or at least 2."""
    value = _whole_number(text, "a whole number, e.g. 20")
    if value < 0 or value == 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give 0 (no composition table) or at least 2 replicates")
    return value


def smoothing(text: str) -> float | str | None:
    """A TV weight relative to the counts per pixel, ``'auto'`` or ``'none'``."""
    t = text.strip().lower()
    if t in ("auto", "none"):
        return None if t == "none" else "auto"
    try:
        value = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a weight such as 0.1, 'auto' or 'none', got {text!r}"
        ) from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"the weight must be >= 0, got {text!r}")
    return value


def add_bins(p: argparse.ArgumentParser, help: str) -> None:
    """The ``--bins B,B`` option."""
    default = ",".join(str(b) for b in DEFAULT_BINS)
    p.add_argument("--bins", type=int_list, default=DEFAULT_BINS, metavar="B,B",
                   help=f"{help} (default {default})")


def add_common(p: argparse.ArgumentParser, *, several: bool = False) -> None:
    """Options shared by ``unmix`` and ``sweep``: the file (``several``: any number of
    files, positional ``files``), energy range, elements, output, seed, overwrite,
    quiet/verbose."""
    if several:
        p.add_argument("files", nargs="*", metavar="FILE",
                       help="EDX spectrum image(s) (.bcf, .emd, .pts, .spd, .hspy, .npz, ...); "
                       "several: one results folder each in -o OUT, and OUT/index.html")
    else:
        p.add_argument("file",
                       help="EDX spectrum image (.bcf, .emd, .pts, .spd, .hspy, .npz, ...)")
    p.add_argument(
        "--energy-range", type=energy_range, metavar="LO,HI",
        help="channels used, keV (default: 0.2 keV, above the zero-energy peak, to the beam "
        "energy, at most 20 keV unless an element's line needs more)",
    )
    p.add_argument(
        "--elements", type=element_list, metavar="EL,EL",
        help="elements for the elemental maps and line markers (default: the file's)",
    )
    p.add_argument("-o", "--output", metavar="DIR", help="output folder")
    p.add_argument("--seed", type=seed, default=0, help="seed of count split and init (0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="step timings and library messages")


def default_output(file: str, suffix: str) -> Path:
    """``<file stem>_<suffix>`` in the current folder."""
    return Path(Path(file).stem + f"_{suffix}")


def report_error(command: str, exc: BaseException) -> int:
    """Print ``command: message`` (and the notes of the cleanup, e.g. that the output
    folder is unchanged) on stderr; the exit code 2."""
    print(f"{command}: {exc}", file=sys.stderr)
    for note in getattr(exc, "__notes__", []):
        print(note, file=sys.stderr)
    return 2


def folder_changes(folder: Path) -> list[str]:
    """Lines saying what a run replaced, removed and kept in its results ``folder``
    (from its manifest); empty for a new folder."""
    from psnmf.io import read_manifest

    manifest = read_manifest(folder) or {}
    labels = (("replaced", "replaced (earlier run)"), ("removed", "removed (earlier run)"),
              ("kept", "kept (not psnmf's)"))
    return [f"  {label:<22}  {', '.join(manifest[key])}"
            for key, label in labels if manifest.get(key)]
