"""The TV-map solver: plain red-black sweeps against SQUAREM-accelerated sweeps, one run.

Run ``python benchmarks/tv_solver.py`` (about 6 minutes on 2 cores; ``--quick``: one case,
about 2; ``--sizes 180,512`` for other image sides).

For mantle-like counts (simulated directly as CSR, :func:`speed.sparse_mantle`) at 147
and 18 counts per pixel, the spectra of a PSNMF fit (``bin_factor=4``, no smoothing) are
held fixed and :func:`psnmf.engine.tv_maps.smooth_maps` runs from the per-pixel maps at
the weights of the automatic search's grid (times the mean counts per pixel), once with
``accelerate=False`` and once with ``accelerate=True``, both with their default stopping
rule. A reference minimum comes from the accelerated solver run to ``tol=1e-11``. Printed
per weight: process CPU time (all threads; on a shared machine compare CPU seconds and
sweeps, not wall time), sweeps, the objective's relative gap to the reference, the RMS and
largest map difference to the reference maps, and the CPU ratio plain / accelerated.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import sparse_mantle  # noqa: E402

from psnmf import PSNMF  # noqa: E402
from psnmf.engine import _kernels as kernels  # noqa: E402
from psnmf.engine.tv_maps import smooth_maps, smoothing_objective  # noqa: E402

WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0)


def case(side: int, cpp: float, weights: tuple[float, ...]) -> None:
    X = sparse_mantle((side, side), cpp, n_channels=2048, seed=0)
    shape = (side, side)
    S = PSNMF(n_components=3, bin_factor=4, smoothing=None, image_shape=shape,
              random_state=0).fit(X).spectra_
    A0 = np.full((X.shape[0], 3), 1 / 3)
    kernels.solve_fixed_spectra(X, A0, np.ascontiguousarray(S), simplex=True, max_iter=1000,
                                tol=1e-7)
    mean = float(X.sum()) / X.shape[0]
    print(f"\n{side}x{side}x2048, {mean:.0f} counts/px, k = 3")
    print(f"  {'weight':>7}  {'plain':>24}  {'SQUAREM':>24}  {'ratio':>6}  "
          "gap (plain, SQUAREM)  map RMS / max diff (plain, SQUAREM)")
    for rel in weights:
        lam = rel * mean
        ref = smooth_maps(X, A0, S, shape, lam, tol=1e-11, max_iter=20000)
        f_ref = ref.objective[-1]
        row = {}
        for name, acc in (("plain", False), ("squarem", True)):
            t0 = time.process_time()
            res = smooth_maps(X, A0, S, shape, lam, accelerate=acc)
            dt = time.process_time() - t0
            gap = (smoothing_objective(X, res.maps, S, shape, lam) - f_ref) / abs(f_ref)
            diff = res.maps - ref.maps
            row[name] = (dt, res.n_iter, gap, float(np.sqrt(np.mean(diff**2))),
                         float(np.abs(diff).max()))
        p, q = row["plain"], row["squarem"]
        print(f"  {rel:7.2f}  {p[0]:6.2f} CPU s {p[1]:6d} sweeps  {q[0]:6.2f} CPU s {q[1]:6d} "
              f"sweeps  {p[0] / q[0]:5.1f}x  {p[2]:9.1e} {q[2]:9.1e}   "
              f"{p[3]:.4f}/{p[4]:.3f} {q[3]:.4f}/{q[4]:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one case (128 x 128, 147 counts/px)")
    ap.add_argument("--sizes", default="180", help="image sides, comma-separated")
    args = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores")
    smooth_maps(sp.csr_matrix(np.ones((4, 3))), np.full((4, 2), 0.5), np.full((2, 3), 1 / 3),
                (2, 2), 1.0)  # compile the kernels before timing
    if args.quick:
        case(128, 147.0, WEIGHTS)
        return 0
    for side in (int(s) for s in args.sizes.split(",")):
        for cpp in (147.0, 18.0):
            case(side, cpp, WEIGHTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
