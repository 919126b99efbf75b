"""``psnmf demo``: the main job on the built-in default dataset.

Simulates the paper's mantle sample (bridgmanite, ferropericlase, Ca-perovskite; 180 x 180
pixels, 147 counts per pixel) with known truth, runs on the same counts standard NMF, PCA,
the paper's PSNMF (NMF spectra of the binned data, per-pixel maps) at each bin factor and
PSNMF with its default configuration (pure-pixel spectra, total-variation maps) at the first
bin factor, and prints one table.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from psnmf.cli._args import PIPELINE_MODULES, image_shape, int_list, seed

EXAMPLES = """examples:
  psnmf demo                      # mantle sample, medium SNR, PSNMF with b = 4 and 12
  psnmf demo --snr low --bins 15  # the paper's low-SNR case (18 counts per pixel)
  psnmf demo --shape 90x90        # a quicker, smaller run
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="simulate the mantle sample and compare standard NMF, PCA and PSNMF",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--snr", choices=("medium", "low"), default="medium",
                   help="counting-statistics preset: medium = 147, low = 18 counts/pixel")
    p.add_argument("--bins", type=int_list, default=(4, 12), metavar="B,B",
                   help="comma-separated PSNMF bin factors to run (default: 4,12)")
    p.add_argument("--shape", type=image_shape, default=(180, 180), metavar="NYxNX",
                   help="image size NYxNX (default 180x180)")
    p.add_argument("--seed", type=seed, default=0, help="noise and initialisation seed")
    p.add_argument("--paper-only", action="store_true",
                   help="run only the paper's PSNMF, not the default configuration "
                        "(pure-pixel spectra, TV maps)")
    p.set_defaults(func=run, preload=PIPELINE_MODULES)


def run_demo(
    snr: str = "medium",
    bins: tuple[int, ...] = (4, 12),
    shape: tuple[int, int] = (180, 180),
    seed: int = 0,
    log: Any = print,
    pure_tv: bool = True,
) -> dict[str, Any]:
    """Run the demo comparison and return its numbers.

    Parameters
    ----------
    snr : {'medium', 'low'}
        Counting-statistics preset of :func:`psnmf.simulate.mantle`.
    bins : tuple of int
        Bin factors of the paper's PSNMF; the first one also for the default configuration.
    shape : (ny, nx)
        Image size.
    seed : int
        Seed of the noise and of the initialisations.
    log : callable
        Called with one progress line per step.
    pure_tv : bool
        Also fit PSNMF with pure-pixel spectra and TV maps (weight by held-out deviance).

    Returns
    -------
    dict
        ``phases``; ``nmf`` and ``psnmf`` (per bin factor) with ``angle``/``mse`` arrays;
        ``pure_tv`` (pure-pixel spectra and TV maps at the first bin factor, when
        ``pure_tv``); ``denoise``, the relative errors of the raw, PCA and PSNMF cubes
        against the noise-free cube; ``timings`` in seconds.
    """
    from psnmf import PSNMF, compare_to_truth, pca_denoise, standard_nmf
    from psnmf.metrics import relative_error
    from psnmf.simulate import mantle

    t0 = time.perf_counter()
    data = mantle(snr, seed=seed, shape=shape)
    truth_cube = data.noise_free
    k = data.spectra.shape[0]
    log(f"simulated mantle sample ({snr} SNR): {shape[0]} x {shape[1]} pixels x "
        f"{data.counts.shape[2]} channels, {data.counts.sum(-1).mean():.1f} counts/pixel "
        f"({time.perf_counter() - t0:.1f} s)")

    out: dict[str, Any] = {"phases": list(data.phase_names), "psnmf": {}, "timings": {}}
    t = time.perf_counter()
    nmf = standard_nmf(data.counts, k, random_state=seed)
    out["timings"]["nmf"] = time.perf_counter() - t
    out["nmf"] = compare_to_truth(nmf.spectra, nmf.maps, data.spectra, data.maps)
    log(f"standard NMF: {out['timings']['nmf']:.1f} s")

    best_err, best_b = None, None
    for b in bins:
        t = time.perf_counter()
        model = PSNMF(n_components=k, bin_factor=b, spectra="nmf", smoothing=None,
                      random_state=seed).fit(data.counts)
        out["timings"][f"psnmf_b{b}"] = time.perf_counter() - t
        out["psnmf"][b] = compare_to_truth(model.spectra_, model.maps_, data.spectra, data.maps)
        err = relative_error(model.reconstruct(), truth_cube)
        out["psnmf"][b]["denoise"] = err
        if best_err is None or err < best_err:
            best_err, best_b = err, b
        log(f"PSNMF b={b}: {out['timings'][f'psnmf_b{b}']:.1f} s")

    if pure_tv:
        # pure-pixel spectra and TV maps, weight chosen by held-out deviance
        b = bins[0]
        t = time.perf_counter()
        pt = PSNMF(n_components=k, bin_factor=b, spectra="pure", smoothing="auto",
                   random_state=seed).fit(data.counts)
        out["timings"]["pure_tv"] = time.perf_counter() - t
        out["pure_tv"] = compare_to_truth(pt.spectra_, pt.maps_, data.spectra, data.maps)
        out["pure_tv"].update(bin_factor=b, weight=pt.smoothing_["relative"],
                              denoise=relative_error(pt.reconstruct(), truth_cube))
        log(f"PSNMF pure+TV b={b}: {out['timings']['pure_tv']:.1f} s")

    t = time.perf_counter()
    pca = pca_denoise(data.counts, k)
    out["timings"]["pca"] = time.perf_counter() - t
    log(f"PCA (HyperSpy, Poisson-normalised SVD): {out['timings']['pca']:.1f} s")
    out["denoise"] = {
        "raw": relative_error(data.counts, truth_cube),
        "PCA": relative_error(pca, truth_cube),
        f"PSNMF b={best_b}": best_err,
    }
    if "pure_tv" in out:
        out["denoise"][f"pure+TV b={out['pure_tv']['bin_factor']}"] = out["pure_tv"]["denoise"]
    out["timings"]["total"] = time.perf_counter() - t0
    return out


def format_table(res: dict[str, Any]) -> str:
    """The demo's result table as text."""
    phases = res["phases"]
    w = max(12, *(len(p) + 2 for p in phases))
    lines = ["", "Phase recovery vs ground truth (spectral angle in degrees, map MSE)", ""]
    head = f"{'method':<14}" + "".join(f"{p + ' angle':>{w + 6}}" for p in phases)
    head += "".join(f"{p + ' MSE':>{w + 4}}" for p in phases)
    lines += [head, "-" * len(head)]

    def row(name: str, r: dict[str, Any]) -> str:
        return (f"{name:<14}" + "".join(f"{a:>{w + 6}.2f}" for a in r["angle"])
                + "".join(f"{m:>{w + 4}.4f}" for m in r["mse"]))

    lines.append(row("standard NMF", res["nmf"]))
    for b, r in res["psnmf"].items():
        lines.append(row(f"PSNMF b={b}", r))
    if "pure_tv" in res:
        lines.append(row(f"pure+TV b={res['pure_tv']['bin_factor']}", res["pure_tv"]))
    lines.append("  (PSNMF b = the paper's method: NMF spectra of the b x b binned data, "
                 "per-pixel maps)")
    if "pure_tv" in res:
        lines.append(f"  (pure+TV = PSNMF's defaults: pure-pixel spectra; total-variation maps, "
                     f"weight {res['pure_tv']['weight']:.2g} x counts/pixel chosen by held-out "
                     "deviance)")
    lines += ["", "Denoising error vs the noise-free cube (|estimate - truth|^2 / |truth|^2)", ""]
    for name, err in res["denoise"].items():
        lines.append(f"  {name:<14}{err:>10.5f}")
    lines.append("")
    lines.append(f"total time {res['timings']['total']:.1f} s")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``psnmf demo``."""
    too_big = [b for b in args.bins if b > min(args.shape)]
    if too_big:
        print(f"psnmf demo: --bins {','.join(map(str, too_big))} larger than the image "
              f"({args.shape[0]} x {args.shape[1]} pixels); give bin factors up to "
              f"{min(args.shape)}, or a larger --shape", file=sys.stderr)
        return 2
    try:
        res = run_demo(args.snr, tuple(args.bins), tuple(args.shape), args.seed,
                       pure_tv=not args.paper_only)
    except ValueError as exc:
        print(f"psnmf demo: {exc}", file=sys.stderr)
        return 2
    print(format_table(res))
    return 0
