"""``psnmf unmix``: read an EDX file, unmix and denoise it, write results and a report."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from psnmf.cli._args import (
    add_bins,
    add_common,
    auto_int,
    default_output,
    element_list,
    folder_changes,
    replicates,
    report_error,
    smoothing,
    thickness,
)

EXAMPLES = """\
examples:
  psnmf unmix sample.bcf                          # everything automatic -> sample_psnmf/
  psnmf unmix sample.emd -k 3 --bin 8 -o results  # given k and b
  psnmf unmix sample.bcf --bin auto --bins 2,4,8  # b chosen by held-out deviance
  psnmf unmix sample.pts --energy-range 0.3,12 --elements Fe,Cr,Ni,O
  psnmf unmix sample.spd --seed 1 --overwrite --quiet
  psnmf unmix sample.bcf --write-denoised         # also the dense denoised cubes
  psnmf unmix sample.bcf --thickness 80,20 --exclude-elements Cu --k-factors k.csv
  psnmf unmix sample.bcf -k 3 --fix-spectrum 0=olivine.msa --forbid 1=Fe,Mg \
      --roi 2=grain.png --mask-pixels vacuum.npy   # priors (component 0 is the first)

Reads every EDX spectrum image RosettaSciIO reads (Bruker .bcf, Velox .emd, JEOL
.pts, EDAX .spd, .hspy, ...) and plain .npz. Writes to the output folder the
factorisation: component_spectra.hspy, component_maps.hspy, count_scale.hspy (the
PSNMF-denoised cube is psnmf.hyperspy.denoised_from_factors(spectra, maps, scale)),
psnmf_decomposition.hspy and pca_decomposition.hspy (in HyperSpy:
hs.load(path, lazy=True).get_decomposition_model() is the denoised cube); with
--write-denoised also denoised.hspy and pca_denoised.hspy (float32, compressed). And
component_spectra/maps.png, element_maps.png (raw vs PCA vs PSNMF), scree.png,
deviance.png, sweep.png, summary.json and report.html (self-contained).
The same in Python: psnmf.pipeline.unmix(path, output_dir=...).
"""


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
        "-k", "--components", type=auto_int, default="auto", metavar="K",
        help="number of components, or 'auto' (default: the best of 2-6 by held-out deviance)",
    )
    p.add_argument(
        "-b", "--bin", dest="bin_factor", type=auto_int, default="auto", metavar="B",
        help="bin factor, or 'auto' (default: the best of --bins by held-out deviance)",
    )
    add_bins(p, "candidate bin factors for --bin auto")
    p.add_argument("--max-iter", type=int, default=None, metavar="N",
                   help="iteration cap of the binned stage (default 1000)")
    p.add_argument("--max-iter-full", type=int, default=None, metavar="N",
                   help="iteration cap of the full-resolution stage (default 200)")
    p.add_argument("--smoothing", type=smoothing, default="auto", metavar="W",
                   help="total-variation weight of the maps relative to the counts per "
                   "pixel, 'auto' (default: chosen by held-out deviance) or 'none'")
    p.add_argument("--no-vertex", action="store_true",
                   help="keep the binned-stage NMF spectra (the paper's PSNMF) instead of "
                   "moving them to pure-pixel clusters")
    p.add_argument("--write-denoised", action="store_true",
                   help="also write the dense denoised cubes denoised.hspy and "
                   "pca_denoised.hspy (float32, chunked, compressed); by default only the "
                   "factors they are rebuilt from")
    p.add_argument("--bootstrap", type=replicates, default=20, metavar="N",
                   help="bootstrap replicates for the ± of the compositions (0: none; "
                   "default 20)")
    q = p.add_argument_group("quantification of the components")
    q.add_argument("--method", choices=("CL", "zeta", "cross_section"), default="CL",
                   help="Cliff-Lorimer (default), zeta factors or cross-sections; the last "
                   "two need --beam-current and --live-time (the whole map's)")
    q.add_argument("--k-factors", metavar="FILE", default=None,
                   help="k-factor file (CSV element,k[,sigma] or JSON, see "
                   "psnmf.quantify.read_k_factors); default: theoretical k-factors with "
                   "their stated uncertainty")
    q.add_argument("--thickness", type=thickness, default=None, metavar="T[,SIGMA]",
                   help="specimen thickness in nm for the absorption correction, with its "
                   "standard deviation for the error budget, e.g. 80,20 (default: the "
                   "file's, else a thin film)")
    q.add_argument("--density", type=float, default=None, metavar="RHO",
                   help="specimen density in g/cm^3 for the absorption correction")
    q.add_argument("--exclude-elements", type=element_list, default=None, metavar="EL,...",
                   help="elements fitted but left out of the totals (grid Cu, detector Si)")
    q.add_argument("--beam-current", type=float, default=None, metavar="NA",
                   help="beam current in nA (zeta and cross-section methods)")
    q.add_argument("--live-time", type=float, default=None, metavar="S",
                   help="live time of the whole map in s (zeta and cross-section methods)")
    q.add_argument("--probe-area", type=float, default=None, metavar="NM2",
                   help="area of the whole map in nm^2 (cross-section method)")
    q.add_argument("--solid-angle", type=float, default=None, metavar="SR",
                   help="detector solid angle in sr, for the model's zeta factors or "
                   "cross-sections")
    r = p.add_argument_group(
        "priors (component indices start at 0; each option may be repeated)")
    r.add_argument("--fix-spectrum", action="append", type=_component_value, default=None,
                   metavar="J=FILE", help="fix component J's spectrum to a reference "
                   "(.hspy, .msa, or .csv with energy in keV and counts), on the data's "
                   "energy axis or one it can be interpolated from")
    r.add_argument("--forbid", action="append", type=_component_value, default=None,
                   metavar="J=EL,...", help="elements absent from component J: the "
                   "channels of their lines are zero in its spectrum")
    r.add_argument("--roi", action="append", type=_component_value, default=None,
                   metavar="J=MASK", help="start component J from the summed spectrum of a "
                   "region (.npy, .png or .tif boolean image of the map's shape)")
    r.add_argument("--mask-pixels", default=None, metavar="MASK",
                   help="pixels left out of the fit (.npy, .png or .tif, non-zero = masked "
                   "out: vacuum, contamination, damage); their maps are NaN")
    add_common(p)
    p.set_defaults(func=run)


def _component_value(text: str) -> tuple[int, str]:
    """``'J=VALUE'`` as ``(J, VALUE)``; an argparse error naming the form otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not COMPONENT=VALUE (e.g. 0=ref.msa)")
    try:
        j = int(key)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{key!r} in {text!r} is not a component index (0 is the first)") from None
    if j < 0:
        raise argparse.ArgumentTypeError(f"component {j} in {text!r} is negative")
    return j, value.strip()


def priors_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``priors`` of :func:`psnmf.pipeline.unmix` from the prior options, or None."""
    out: dict[str, Any] = {}
    for name, key in (("fix_spectrum", "fixed_spectra"), ("roi", "rois")):
        pairs = getattr(args, name, None) or []
        if pairs:
            out[key] = {}
            for j, value in pairs:
                if j in out[key]:
                    raise ValueError(f"--{name.replace('_', '-')} gives component {j} twice.")
                out[key][j] = Path(value)
    forbid = getattr(args, "forbid", None) or []
    if forbid:
        out["forbid"] = {}
        for j, value in forbid:
            out["forbid"].setdefault(j, []).extend(element_list(value))
    if getattr(args, "mask_pixels", None):
        out["pixel_mask"] = Path(args.mask_pixels)
    return out or None


def quantify_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``quantify_options`` of :func:`psnmf.pipeline.unmix` from the options given
    (``psnmf sweep --unmix`` has none of them)."""
    out: dict[str, Any] = {}
    if getattr(args, "method", "CL") != "CL":
        out["method"] = args.method
    if getattr(args, "k_factors", None):
        out["k_factors"] = Path(args.k_factors)
    if getattr(args, "thickness", None) is not None:
        out["thickness"], sigma = args.thickness
        if sigma is not None:
            out["thickness_sigma"] = sigma
    for name in ("density", "exclude_elements", "beam_current", "live_time", "probe_area",
                 "solid_angle"):
        if getattr(args, name, None) is not None:
            out[name] = getattr(args, name)
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``psnmf unmix``; returns the exit code."""
    from psnmf import pipeline
    from psnmf._validation import InsufficientMemoryError
    from psnmf.io import PsnmfIOError

    out = Path(args.output) if args.output else default_output(args.file, "psnmf")
    kwargs: dict[str, Any] = {}
    quant = quantify_options(args)
    if quant:
        kwargs["quantify_options"] = quant
    if args.max_iter is not None:
        kwargs["max_iter"] = args.max_iter
    if args.max_iter_full is not None:
        kwargs["max_iter_full"] = args.max_iter_full
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            priors = priors_from_args(args)
            if priors:
                kwargs["priors"] = priors
            result = pipeline.unmix(
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
                write_denoised=getattr(args, "write_denoised", False),  # psnmf sweep --unmix
                **kwargs,
            )
        except (PsnmfIOError, ValueError, OSError, InsufficientMemoryError) as exc:
            return report_error("psnmf unmix", exc)
    _print_other_warnings(caught, result.warnings, quiet=args.quiet, verbose=args.verbose)
    if not args.quiet:
        print(pipeline.format_summary(result))
        for line in folder_changes(out):
            print(line)
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
