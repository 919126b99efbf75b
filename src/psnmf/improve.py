"""Temporary alias: ``PSNMFPlus(...)`` is ``PSNMF(spectra='pure', smoothing=None, ...)``.

Deleted once the pipeline, the demo and the benchmarks build :class:`psnmf.PSNMF` with
options. Pure-pixel functions: :mod:`psnmf.engine.pure_pixels`; oracles and scores:
:mod:`psnmf.metrics`.
"""

from __future__ import annotations

from typing import Any

from psnmf.estimator import PSNMF

__all__ = ["PSNMFPlus"]


def PSNMFPlus(  # noqa: N802 - stands in for the former class name
    n_components: int = 3,
    bin_factor: int = 4,
    *,
    vertex: bool = True,
    smoothing: float | str | None = None,
    **params: Any,
) -> PSNMF:
    """``PSNMF(spectra='pure' if vertex else 'nmf', smoothing=smoothing, **params)``."""
    return PSNMF(n_components, bin_factor, spectra="pure" if vertex else "nmf",
                 smoothing=smoothing, **params)
