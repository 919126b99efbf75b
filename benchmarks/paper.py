"""Reproduce the synthetic-data results of the PSNMF paper (arXiv 2405.14649).

Usage::

    python benchmarks/paper.py [--quick] [--out DIR] [--seed N] [--preset medium|low]

Same as ``psnmf reproduce``; the logic lives in :mod:`psnmf.reproduce`.
"""

from __future__ import annotations

import sys

from psnmf.reproduce import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
