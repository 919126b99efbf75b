"""Reproduce the synthetic-data results of the PSNMF paper (arXiv 2405.14649).

Usage::

    python benchmarks/paper.py [--quick] [--out DIR] [--seed N] [--preset medium|low]

Prints, per preset, spectral angles and map MSEs per phase for standard NMF, PSNMF at each
bin factor and the oracles (with the paper's numbers beside and ratios to the oracle), the
compositions of the PSNMF components next to Table 1, and the Nd La map errors of raw, PCA
and PSNMF data. Writes figure2_medium.png, figure3_low.png, bin_factor_sweep.png,
results.json and report.txt into --out (about 3 minutes on 2 cores; ``--quick``: 72 x 72
pixels, two bin factors per preset, about 1 minute). The code is in ``reproduce_paper.py``
beside this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reproduce_paper import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
