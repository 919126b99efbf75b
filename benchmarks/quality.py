"""Spectral and map quality against the oracle limits (issue 7).

For each built-in sample, SNR preset and noise seed: the oracle limits (spectra by ML from
the true maps, maps by ML from the true spectra), plain PSNMF and PSNMF with the
pure-pixel vertex correction (:class:`psnmf.improve.PSNMFPlus`): spectral angle (degrees)
and map MSE per phase, and each as a ratio to its oracle.

Usage::

    python benchmarks/quality.py            # 4 samples x 2 SNR x 3 seeds, 180 x 180
    python benchmarks/quality.py --quick    # 3 samples x 2 SNR x 1 seed, 96 x 96
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from psnmf import PSNMF
from psnmf.improve import PSNMFPlus, oracle_limits, score
from psnmf.simulate import sample_dataset


def run(samples: list[str], snrs: list[str], seeds: list[int], shape: tuple[int, int] | None,
        bin_factor: int) -> list[dict]:
    rows = []
    for name in samples:
        for snr in snrs:
            for seed in seeds:
                ds = sample_dataset(name, snr=snr, seed=seed, shape=shape)
                k = ds.maps.shape[-1]
                orc = oracle_limits(ds)
                row = {"sample": name, "snr": snr, "seed": seed, "phases": ds.phase_names,
                       "oracle_angle": orc.angle.tolist(), "oracle_mse": orc.mse.tolist()}
                for label, est in (("psnmf", PSNMF), ("plus", PSNMFPlus)):
                    t0 = time.perf_counter()
                    m = est(k, bin_factor, random_state=0).fit(ds.counts)
                    sc = score(m.spectra_, m.maps_, ds)
                    row[label] = {"angle": sc["angle"].tolist(), "mse": sc["mse"].tolist(),
                                  "seconds": time.perf_counter() - t0}
                    if label == "plus":
                        row[label]["moved"] = m.vertex_moved_[sc["order"]].tolist()
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def _v(vals, fmt: str) -> str:
    return " ".join(format(v, fmt) for v in vals)


def format_row(r: dict) -> str:
    oa, om = np.array(r["oracle_angle"]), np.array(r["oracle_mse"])
    out = [f"{r['sample']:9s} {r['snr']:6s} seed {r['seed']}  phases {', '.join(r['phases'])}",
           f"  oracle      angle {_v(oa, '6.2f')}   mse {_v(om, '.4f')}"]
    for label in ("psnmf", "plus"):
        a, m = np.array(r[label]["angle"]), np.array(r[label]["mse"])
        out.append(f"  {label:10s}  angle {_v(a, '6.2f')}   mse {_v(m, '.4f')}"
                   f"   ratio angle {_v(a / oa, '5.1f')}  mse {_v(m / om, '5.1f')}")
    return "\n".join(out)


def summary(rows: list[dict]) -> str:
    lines = ["", "Median ratio to oracle over phases and seeds (and share of phases within 1.5x "
             "angle / 1.0x MSE)",
             f"{'sample':9s} {'snr':6s} | {'psnmf angle':>11s} {'psnmf mse':>9s} | "
             f"{'plus angle':>10s} {'plus mse':>9s} | {'plus<=1.5x':>10s} {'mse<=1x':>7s}"]
    keys = sorted({(r["sample"], r["snr"]) for r in rows}, key=lambda t: (t[0], t[1] != "medium"))
    for key in keys:
        sel = [r for r in rows if (r["sample"], r["snr"]) == key]

        def ratios(label: str, what: str, sel=sel) -> np.ndarray:
            return np.concatenate([np.array(r[label][what]) / np.array(r[f"oracle_{what}"])
                                   for r in sel])

        pa, pm, qa, qm = (ratios("psnmf", "angle"), ratios("psnmf", "mse"),
                          ratios("plus", "angle"), ratios("plus", "mse"))
        lines.append(f"{key[0]:9s} {key[1]:6s} | {np.median(pa):11.2f} {np.median(pm):9.2f} | "
                     f"{np.median(qa):10.2f} {np.median(qm):9.2f} | "
                     f"{np.mean(qa <= 1.5):10.0%} {np.mean(qm <= 1.0):7.0%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small images, one seed")
    p.add_argument("--samples", default=None, help="comma-separated built-in samples")
    p.add_argument("--seeds", default=None, help="comma-separated noise seeds")
    p.add_argument("--bin", type=int, default=4, help="bin factor (default 4)")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    a = p.parse_args(argv)
    samples = (a.samples.split(",") if a.samples else
               ["mantle", "eutectic", "ceramic"] + ([] if a.quick else ["catalyst"]))
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else ([0] if a.quick else [0, 1, 2])
    shape = (96, 96) if a.quick else None
    rows = run(samples, ["medium", "low"], seeds, shape, a.bin)
    print(summary(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
