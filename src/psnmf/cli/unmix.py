"""``psnmf unmix``: read an EDX file, unmix and denoise it, write results and a report."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  psnmf unmix sample.bcf                          # everything automatic -> sample_psnmf/
  psnmf unmix sample.emd -k 3 --bin 8 -o results  # given k and b
  psnmf unmix sample.bcf --bin auto --bins 2,4,8  # b chosen by held-out deviance
  psnmf unmix sample.pts --energy-range 0.3,12 --elements Fe,Cr,Ni,O
  psnmf unmix sample.spd --seed 1 --overwrite --quiet

Reads every EDX spectrum image RosettaSciIO reads (Bruker .bcf, Velox .emd, JEOL
.pts, EDAX .spd, .hspy, ...) and plain .npz. Writes to the output folder: denoised.hspy,
pca_denoised.hspy, component_spectra/maps (.hspy, .png), element_maps.png (raw vs PCA vs
PSNMF), scree.png, deviance.png, sweep.png, summary.json and report.html (self-contained).
The same in Python: psnmf.workflow.unmix(path, output_dir=...).
"""


def _energy_range(text: str) -> tuple[float | None, float | None]:
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


def _auto_int(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive integer or 'auto'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give comma-separated integers, e.g. 2,4,8,16"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 2,4,8,16")
    return values


def _elements(text: str) -> list[str]:
    return [e.strip() for e in text.split(",") if e.strip()]


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared by ``unmix`` and ``sweep``."""
    p.add_argument("file", help="EDX spectrum image (.bcf, .emd, .pts, .spd, .hspy, .npz, ...)")
    p.add_argument(
        "--energy-range", type=_energy_range, metavar="LO,HI",
        help="channels used, keV (default: 0.2 keV, above the zero-energy peak, to the beam "
        "energy, at most 20 keV unless an element's line needs more)",
    )
    p.add_argument(
        "--elements", type=_elements, metavar="EL,EL",
        help="elements for the elemental maps and line markers (default: the file's)",
    )
    p.add_argument("-o", "--output", metavar="DIR", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of count split and init (0)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    g = p.add_mutually_exclusive_group()
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    g.add_argument("-v", "--verbose", action="store_true",
                   help="step timings and library messages")


def register(subparsers: Any) -> None:
    """Add the ``unmix`` subcommand."""
    p = subparsers.add_parser(
        "unmix",
        help="unmix and denoise an EDX spectrum image; results and an HTML report",
        description=(
            "Read an EDX spectrum image, choose the number of components and the bin "
            "factor by held-out Poisson deviance (unless given), run PSNMF, compare it with "
            "HyperSpy's PCA denoising, and write the denoised data, component spectra and "
            "maps, elemental maps, summary.json and a self-contained report.html."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "-k", "--components", type=_auto_int, default="auto", metavar="K",
        help="number of components, or 'auto' (default: the best of 2-6 by held-out deviance)",
    )
    p.add_argument(
        "-b", "--bin", dest="bin_factor", type=_auto_int, default="auto", metavar="B",
        help="bin factor, or 'auto' (default: the best of --bins by held-out deviance)",
    )
    p.add_argument("--bins", type=_int_list, default=(2, 4, 8, 16), metavar="B,B",
                   help="candidate bin factors for --bin auto (default 2,4,8,16)")
    p.add_argument("--max-iter", type=int, default=None, metavar="N",
                   help="iteration cap of the binned stage (default 1000)")
    p.add_argument("--max-iter-full", type=int, default=None, metavar="N",
                   help="iteration cap of the full-resolution stage (default 200)")
    p.add_argument("--smoothing", type=_smoothing, default="auto", metavar="W",
                   help="total-variation weight of the maps relative to the counts per "
                   "pixel, 'auto' (default: chosen by held-out deviance) or 'none'")
    p.add_argument("--no-vertex", action="store_true",
                   help="keep the binned-stage NMF spectra (the paper's PSNMF) instead of "
                   "moving them to pure-pixel clusters")
    p.add_argument("--bootstrap", type=int, default=20, metavar="N",
                   help="bootstrap replicates for the ± of the compositions (0: none; "
                   "default 20)")
    add_common(p)
    p.set_defaults(func=run)


def _smoothing(text: str) -> float | str | None:
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


def default_output(file: str, suffix: str) -> Path:
    """``<file stem>_<suffix>`` next to the current folder."""
    return Path(Path(file).stem + f"_{suffix}")


def run(args: argparse.Namespace) -> int:
    """Run ``psnmf unmix``; returns the exit code."""
    from psnmf import workflow
    from psnmf.io import PsnmfIOError

    out = Path(args.output) if args.output else default_output(args.file, "psnmf")
    kwargs: dict[str, Any] = {}
    if args.max_iter is not None:
        kwargs["max_iter"] = args.max_iter
    if args.max_iter_full is not None:
        kwargs["max_iter_full"] = args.max_iter_full
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            result = workflow.unmix(
                args.file,
                n_components=args.components,
                bin_factor=args.bin_factor,
                energy_range=args.energy_range,
                elements=args.elements,
                output_dir=out,
                seed=args.seed,
                overwrite=args.overwrite,
                progress=not args.quiet,
                verbose=args.verbose,
                bins=args.bins,
                smoothing=args.smoothing,
                vertex=not args.no_vertex,
                n_boot=args.bootstrap,
                **kwargs,
            )
        except (PsnmfIOError, ValueError, FileNotFoundError, FileExistsError) as exc:
            print(f"psnmf unmix: {exc}", file=sys.stderr)
            return 2
    _print_other_warnings(caught, result.warnings, quiet=args.quiet, verbose=args.verbose)
    if not args.quiet:
        print(workflow.format_summary(result))
    return 0


def _print_other_warnings(caught: list[Any], shown: list[str], *, quiet: bool,
                          verbose: bool) -> None:
    """Warnings not already in the summary go to stderr (in quiet mode: ours only)."""
    seen = set(shown) if not quiet else set()
    for w in caught:
        text = str(w.message)
        if text in seen:
            continue
        seen.add(text)
        if verbose or issubclass(w.category, UserWarning):
            print(f"psnmf: warning: {text}", file=sys.stderr)
