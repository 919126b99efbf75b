"""``psnmf reproduce``: reproduce the paper's synthetic-data results (Figures 2, 3, Table 1)."""

from __future__ import annotations

import argparse
from typing import Any

EXAMPLES = """\
examples:
  psnmf reproduce                     # both presets, 180x180 px, the paper's bin factors
  psnmf reproduce --quick --out /tmp/rep
  psnmf reproduce --preset low --seed 1 --out rep_low

Prints, per preset, spectral angles and map MSEs per phase for standard NMF, PSNMF at each
bin factor and the oracles (with the paper's numbers beside and ratios to the oracle), the
compositions of the PSNMF components next to Table 1, and the Nd La map errors of raw, PCA
and PSNMF data. Writes figure2_medium.png, figure3_low.png, bin_factor_sweep.png,
results.json and report.txt into --out. Same as python benchmarks/paper.py.
"""


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` subcommand."""
    from psnmf.reproduce import add_arguments

    p = subparsers.add_parser(
        "reproduce",
        help="reproduce the paper's synthetic-data results (Figures 2, 3, Table 1)",
        description=(
            "Simulate the paper's medium- and low-SNR mantle datasets, run standard NMF, "
            "PSNMF at several bin factors, PCA and the oracles, and print the comparison "
            "with the paper's numbers; save the Figure 2 / 3 equivalents."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``psnmf reproduce``; returns the exit code."""
    from psnmf.reproduce import run_from_args

    return run_from_args(args)
