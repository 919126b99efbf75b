"""Spectral and map quality against the oracle limits, on the built-in simulated samples.

For each sample, SNR preset and noise seed:

* the oracle limits (:func:`psnmf.metrics.oracle_limits`): spectra by maximum likelihood
  from the true maps, maps by maximum likelihood (per pixel) from the true spectra;
* NMF spectra: the paper's PSNMF (binned-stage NMF spectra, stage-2 spectra fixed), maps
  per pixel, and the same spectra with total-variation maps whose weight is chosen by
  held-out deviance (``smoothing='auto'``, :mod:`psnmf.engine.tv_maps`);
* pure-pixel spectra: the binned-stage vertices moved to the spectra of their pure-pixel
  clusters, maps per pixel and with TV maps.

Spectral angle (degrees) and map MSE per phase, each as a ratio to its oracle. The per-pixel
maps are the ``unsmoothed_maps_`` of the smoothed fits (same spectra, same seed), so each
estimator is fitted once. For the mantle sample the paper's PSNMF angles (Table 2, medium
SNR b = 12) are printed beside.

Usage::

    python benchmarks/quality.py            # 4 samples x 2 SNR x 3 seeds, 180 x 180, b = 4
    python benchmarks/quality.py --quick    # 3 samples x 2 SNR x 1 seed, 96 x 96
    python benchmarks/quality.py --json rows.json --markdown table.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from psnmf import PSNMF
from psnmf.metrics import compare_to_truth, oracle_limits
from psnmf.simulate import sample_dataset

#: The paper's PSNMF angles (degrees) on its mantle data, medium SNR, b = 12 (Table 2).
PAPER = {("mantle", "medium"): [0.25, 1.52, 1.73]}

#: Row key -> label: the spectra of the binned stage (NMF, the paper's, or pure-pixel) and
#: the maps (per pixel, or with TV maps).
LABELS = {"nmf": "nmf", "nmf_tv": "nmf+TV", "pure": "pure", "pure_tv": "pure+TV"}

LEGEND = ("nmf = the paper's PSNMF (binned-stage NMF spectra), pure = pure-pixel spectra; "
          "+TV = total-variation maps, weight chosen by held-out deviance")


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
                       "counts_per_pixel": float(ds.counts.sum() / np.prod(ds.maps.shape[:2])),
                       "oracle_angle": orc.angle.tolist(), "oracle_mse": orc.mse.tolist()}
                for label in ("nmf", "pure"):
                    t0 = time.perf_counter()
                    m = PSNMF(k, bin_factor, spectra=label, smoothing="auto",
                              random_state=0).fit(ds.counts)
                    seconds = time.perf_counter() - t0
                    for suffix, maps in (("", m.unsmoothed_maps_), ("_tv", m.maps_)):
                        maps = m.maps_ if maps is None else maps
                        sc = compare_to_truth(m.spectra_, maps, ds.spectra, ds.maps)
                        row[label + suffix] = {"angle": sc["angle"].tolist(),
                                               "mse": sc["mse"].tolist()}
                    row[label + "_tv"]["seconds"] = seconds
                    row[label + "_tv"]["smoothing"] = m.smoothing_["relative"]
                    if label == "pure":
                        row[label]["moved"] = m.vertex_moved_[sc["order"]].tolist()
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def _v(vals, fmt: str) -> str:
    return " ".join(format(v, fmt) for v in vals)


def format_row(r: dict) -> str:
    oa, om = np.array(r["oracle_angle"]), np.array(r["oracle_mse"])
    out = [f"{r['sample']:9s} {r['snr']:6s} seed {r['seed']}  phases {', '.join(r['phases'])}"
           f"  ({r['counts_per_pixel']:.0f} counts/px)",
           f"  {'oracle':13s} angle {_v(oa, '6.2f')}   mse {_v(om, '.4f')}"]
    for label, name in LABELS.items():
        a, m = np.array(r[label]["angle"]), np.array(r[label]["mse"])
        extra = ""
        if "smoothing" in r[label]:
            extra = f"  weight {r[label]['smoothing']:g}, {r[label]['seconds']:.0f} s"
        out.append(f"  {name:13s} angle {_v(a, '6.2f')}   mse {_v(m, '.4f')}"
                   f"   ratio angle {_v(a / oa, '5.2f')}  mse {_v(m / om, '5.2f')}{extra}")
    return "\n".join(out)


def _ratios(sel: list[dict], label: str, what: str) -> np.ndarray:
    return np.concatenate([np.array(r[label][what]) / np.array(r[f"oracle_{what}"])
                           for r in sel])


def summary(rows: list[dict]) -> str:
    """Median ratio to the oracle per sample and SNR, and the share of phases meeting
    the goals (angle <= 1.5x oracle, map MSE <= 1x oracle)."""
    lines = ["", "Median ratio to the oracle over phases and seeds; in brackets the share of "
             "phases x seeds meeting the goal (angle <= 1.5x, MSE <= 1.0x)",
             f"{'sample':9s} {'snr':6s} | " + " | ".join(f"{n:>25s}" for n in LABELS.values()),
             f"{'':16s} | " + " | ".join(f"{'angle':>11s} {'MSE':>13s}" for _ in LABELS)]
    keys = sorted({(r["sample"], r["snr"]) for r in rows}, key=lambda t: (t[0], t[1] != "medium"))
    for key in keys:
        sel = [r for r in rows if (r["sample"], r["snr"]) == key]
        cells = []
        for label in LABELS:
            a, m = _ratios(sel, label, "angle"), _ratios(sel, label, "mse")
            cells.append(f"{np.median(a):5.2f} ({np.mean(a <= 1.5):3.0%}) "
                         f"{np.median(m):5.2f} ({np.mean(m <= 1.0):3.0%})")
        lines.append(f"{key[0]:9s} {key[1]:6s} | " + " | ".join(cells))
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """Per sample, SNR and phase: angle and MSE of every method, mean over seeds (the
    table of quality_results.md)."""
    head = ("| sample | SNR | phase | oracle angle | paper Table 2 | nmf | pure | "
            "oracle MSE | nmf MSE | nmf+TV MSE | pure MSE | pure+TV MSE |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = sorted({(r["sample"], r["snr"]) for r in rows}, key=lambda t: (t[0], t[1] != "medium"))
    for key in keys:
        sel = [r for r in rows if (r["sample"], r["snr"]) == key]
        paper = PAPER.get(key)
        for i, phase in enumerate(sel[0]["phases"]):
            def mean(label: str, what: str, i=i, sel=sel) -> float:
                return float(np.mean([r[label][what][i] for r in sel]))

            oa = float(np.mean([r["oracle_angle"][i] for r in sel]))
            om = float(np.mean([r["oracle_mse"][i] for r in sel]))
            out.append(
                f"| {key[0]} | {key[1]} | {phase} | {oa:.2f} | "
                f"{'' if paper is None else f'{paper[i]:.2f}'} | "
                f"{mean('nmf', 'angle'):.2f} | {mean('pure', 'angle'):.2f} | {om:.4f} | "
                + " | ".join(f"{mean(lab, 'mse'):.4f}" for lab in LABELS) + " |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small images, one seed")
    p.add_argument("--samples", default=None, help="comma-separated built-in samples")
    p.add_argument("--snr", default="medium,low", help="comma-separated SNR presets")
    p.add_argument("--seeds", default=None, help="comma-separated noise seeds")
    p.add_argument("--bin", type=int, default=4, help="bin factor (default 4)")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    p.add_argument("--markdown", default=None, help="write the per-phase table here")
    a = p.parse_args(argv)
    samples = (a.samples.split(",") if a.samples else
               ["mantle", "eutectic", "ceramic"] + ([] if a.quick else ["catalyst"]))
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else ([0] if a.quick else [0, 1, 2])
    shape = (96, 96) if a.quick else None
    print(LEGEND, flush=True)
    rows = run(samples, a.snr.split(","), seeds, shape, a.bin)
    print(summary(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.markdown:
        Path(a.markdown).write_text(markdown(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
