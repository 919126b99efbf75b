"""Calibration of the bootstrap error bars on compositions (issue 7).

For several noise seeds of a simulated sample: fit PSNMFPlus, bootstrap the binned stage
(:func:`psnmf.uncertainty.bootstrap`), quantify every replicate, and count how often the
true composition (elements >= 0.5 at.%) falls inside the nominal 95% interval.

Usage::

    python benchmarks/coverage.py                      # mantle, both SNR, 8 seeds, 60 x 60
    python benchmarks/coverage.py --samples mantle,eutectic --seeds 4 --size 90
"""

from __future__ import annotations

import argparse

from psnmf.improve import PSNMFPlus, score
from psnmf.simulate import sample_dataset
from psnmf.uncertainty import bootstrap, coverage


def run(sample: str, snr: str, n_seeds: int, size: int, n_boot: int, b: int) -> dict:
    tot = {"basic": [0, 0], "percentile": [0, 0]}
    for seed in range(n_seeds):
        ds = sample_dataset(sample, snr=snr, seed=100 + seed, shape=(size, size))
        k = ds.maps.shape[-1]
        m = PSNMFPlus(k, b, random_state=0).fit(ds.counts)
        order = score(m.spectra_, m.maps_, ds)["order"]
        res = bootstrap(m, ds.counts, n_boot=n_boot, elements=list(ds.elements),
                        edx_model=ds.model, random_state=seed)
        truth = [ds.compositions[p] for p in ds.phase_names]
        for meth in tot:
            i, n = coverage(res, truth, order, method=meth)
            tot[meth][0] += i
            tot[meth][1] += n
    return tot


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default="mantle")
    p.add_argument("--snr", default="medium,low")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--size", type=int, default=60)
    p.add_argument("--boot", type=int, default=20)
    p.add_argument("--bin", type=int, default=4)
    a = p.parse_args(argv)
    print(f"{'sample':9s} {'snr':6s} {'basic 95%':>16s} {'percentile 95%':>16s}")
    for sample in a.samples.split(","):
        for snr in a.snr.split(","):
            t = run(sample, snr, a.seeds, a.size, a.boot, a.bin)
            cells = [f"{v[0]:3d}/{v[1]:3d} {v[0] / max(v[1], 1):5.1%}" for v in t.values()]
            print(f"{sample:9s} {snr:6s} {cells[0]:>16s} {cells[1]:>16s}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
