"""``psnmf simulate``: write a simulated EDX spectrum image with its ground truth."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from psnmf.cli._args import image_shape, seed

EXAMPLES = """\
examples:
  psnmf simulate mantle --snr medium --seed 0 -o mantle.hspy
  psnmf simulate mantle --snr low --seed 1 -o mantle_low.hspy
  psnmf simulate ceramic --counts 60 --shape 128x128 -o ceramic.hspy
  psnmf simulate --sample my_sample.json -o mine.hspy
  psnmf simulate --list

The file is an exspy EDSTEMSpectrum (.hspy) readable by hyperspy.api.load; the ground
truth (phase spectra, maps, compositions, k-factors) is under metadata.Simulation and
psnmf.simulate.load_simulated(path) returns it with the counts.
"""


def register(subparsers: Any) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate a STEM-EDX spectrum image with known ground truth",
        description=(
            "Simulate a Poisson-noisy STEM-EDX spectrum image (200 kV, 0.2-20 keV, 10 eV "
            "channels) from phase compositions and a microstructure, and write it as a "
            "HyperSpy file carrying its ground truth."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "name",
        nargs="?",
        help="built-in sample: mantle (the paper's), eutectic, ceramic, catalyst",
    )
    p.add_argument("--sample", metavar="FILE", help="user sample file (.json or .toml)")
    p.add_argument(
        "--snr",
        choices=["medium", "low"],
        help="count preset: medium = 147, low = 18 mean counts per pixel",
    )
    p.add_argument(
        "--counts", type=float, metavar="N", help="mean counts per pixel (overrides --snr)"
    )
    p.add_argument("--shape", type=image_shape, metavar="NYxNX", help="image size, e.g. 180x180")
    p.add_argument("--seed", type=seed, default=0, help="seed of the Poisson noise (default 0)")
    p.add_argument(
        "--map-seed",
        type=int,
        default=None,
        help="seed of the microstructure (default: the sample's)",
    )
    p.add_argument("-o", "--output", metavar="FILE.hspy", help="output file (.hspy)")
    p.add_argument("--no-overwrite", action="store_true", help="fail if the output exists")
    p.add_argument("--list", action="store_true", help="list the built-in samples and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``psnmf simulate``; returns the exit code."""
    from psnmf.simulate import builtin_samples, load_sample, sample_dataset

    if args.list:
        for name in builtin_samples():
            spec = load_sample(name)
            print(f"{name:10s} {', '.join(spec['phases'])}: {spec.get('description', '')}")
        return 0
    if (args.name is None) == (args.sample is None):
        print(
            "psnmf simulate: give either a built-in sample name (e.g. 'mantle') or "
            "--sample FILE, not both; see 'psnmf simulate --list'",
            file=sys.stderr,
        )
        return 2
    if not args.output:
        print("psnmf simulate: give the output file with -o FILE.hspy", file=sys.stderr)
        return 2
    if args.counts is not None and args.counts <= 0:
        print(f"psnmf simulate: --counts must be > 0, got {args.counts:g}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        ds = sample_dataset(
            args.sample or args.name,
            snr=args.snr,
            counts_per_pixel=args.counts,
            shape=args.shape,
            seed=args.seed,
            map_seed=args.map_seed,
        )
        path = ds.save(args.output, overwrite=not args.no_overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"psnmf simulate: {exc}", file=sys.stderr)
        return 2
    ny, nx = ds.shape
    print(
        f"wrote {path}: {ds.sample['name'] if ds.sample else 'sample'} {ny}x{nx} pixels x "
        f"{ds.energy_axis.size} channels, phases {', '.join(ds.phase_names)}, "
        f"{ds.counts.sum() / (ny * nx):.1f} counts/pixel (asked {ds.counts_per_pixel:g}), "
        f"seed {args.seed}, {time.perf_counter() - t0:.1f} s"
    )
    return 0
