"""``psnmf sweep``: score bin factors / numbers of components by held-out deviance."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from psnmf.cli._args import (
    PIPELINE_MODULES,
    add_bins,
    add_common,
    default_output,
    folder_changes,
    int_list,
    report_error,
)

EXAMPLES = """\
examples:
  psnmf sweep sample.bcf --bins 2,4,8,16 -k 4        # b sweep at 4 components
  psnmf sweep sample.bcf --components 2,3,4,5,6 --bins 4
  psnmf sweep sample.bcf                             # k in 2-6, then b in 4,8,16
  psnmf sweep sample.bcf --bins 2,4,8 -k 3 --unmix   # then unmix with the best b

Scores are held-out Poisson deviances per count (binomial thinning, --seed; lower is
better). k is chosen on the binned stage (the counts binned to about 3000 counts per binned
pixel, at least 100 binned pixels, 5-fold count splitting); each b is scored by PSNMF fitted
on one half of the counts and scored on the other half at full resolution. Writes
sweep.txt, sweep.json and sweep.png into the output folder. 'psnmf unmix FILE --bin auto'
runs the same search before unmixing; in Python: psnmf.pipeline.sweep(path, bins=...,
components=...).
"""


def _components(text: str) -> tuple[int, ...] | None:
    return None if text.strip().lower() == "auto" else int_list(text)


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
        "sweep",
        help="choose the bin factor b and number of components k by held-out deviance",
        description=(
            "Score PSNMF bin factors and numbers of components by held-out Poisson "
            "deviance (count splitting), print the table, plot the curve, and optionally "
            "unmix with the best choice."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bins(p, "bin factors to try")
    p.add_argument(
        "-k", "--components", type=_components, default=None, metavar="K,K",
        help="numbers of components to try, or 'auto' (default: k in 2-6 chosen on the binned "
        "stage, then the bins at that k); several k with several --bins: the full grid is "
        "scored too, the best b at the chosen k wins",
    )
    p.add_argument("--unmix", action="store_true",
                   help="then run 'psnmf unmix' with the best b and k (into OUTPUT/unmix)")
    add_common(p)
    p.set_defaults(func=run, preload=PIPELINE_MODULES)


def run(args: argparse.Namespace) -> int:
    """Run ``psnmf sweep``; returns the exit code."""
    from psnmf import pipeline
    from psnmf._validation import InsufficientMemoryError
    from psnmf.io import PsnmfIOError

    out = Path(args.output) if args.output else default_output(args.file, "sweep")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            result = pipeline.sweep(
                args.file, bins=args.bins, components=args.components, seed=args.seed,
                energy_range=args.energy_range, elements=args.elements, output_dir=out,
                overwrite=args.overwrite, progress=not args.quiet, verbose=args.verbose,
            )
        except (PsnmfIOError, ValueError, OSError, InsufficientMemoryError) as exc:
            return report_error("psnmf sweep", exc)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"psnmf: warning: {w.message}", file=sys.stderr)
    if not args.quiet:
        print(f"psnmf sweep: {args.file} (held-out Poisson deviance per count, seed "
              f"{args.seed}, lower is better)")
        print(result.to_text())
        print(f"table: {result.paths['table']}  figure: {result.paths['figure']}")
        for line in folder_changes(out):
            print(line)
    if args.unmix:
        from psnmf.cli import unmix as unmix_cmd

        uargs = argparse.Namespace(**vars(args))
        uargs.components = result.selection.n_components
        uargs.bin_factor = result.selection.bin_factor
        uargs.output = str(out / "unmix")
        uargs.files, uargs.config = [args.file], None  # unmix's defaults for the rest
        if not args.quiet:
            print(f"\nunmixing with b = {uargs.bin_factor}, k = {uargs.components} ...")
        return unmix_cmd.run(uargs)
    return 0
