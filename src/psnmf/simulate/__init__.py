"""Realistic STEM-EDX simulation with ground truth.

The spectra come from the forward model of :mod:`psnmf.physics`
(:class:`~psnmf.physics.EDXModel`: lines from xraylib, relativistic Bethe cross-sections,
detector resolution and efficiency, Kramers continuum, k-factors), the same model that
:mod:`psnmf.quantify` fits, so simulated data are quantified without model bias.

* :mod:`~psnmf.simulate.maps` -- microstructure generators (abundance maps).
* :mod:`~psnmf.simulate.dataset` -- :class:`SimulatedDataset`, :func:`simulate`,
  HyperSpy files and :func:`load_simulated`.
* :mod:`~psnmf.simulate.scenarios` -- the paper's :func:`mantle` scenario and
  sample files (:func:`sample_dataset`).

Convention: expected counts of pixel ``i`` = ``N_i * sum_k maps[i, k] *
spectra[k]`` with spectra rows summing to 1, maps summing to 1 per pixel and
``N_i`` the mean counts per pixel (times a relative thickness, uniform by default).

Examples
--------
>>> from psnmf import simulate
>>> ds = simulate.mantle("medium", seed=0, shape=(24, 24))
>>> ds.counts.shape
(24, 24, 1980)
"""

from psnmf.simulate.dataset import CONVENTION, SimulatedDataset, load_simulated, simulate
from psnmf.simulate.maps import (
    GENERATORS,
    Microstructure,
    from_recipe,
    grains_in_matrix,
    lamellae,
    particles_on_support,
    voronoi_polycrystal,
)
from psnmf.simulate.scenarios import (
    MANTLE_PHASES,
    SNR_PRESETS,
    builtin_samples,
    load_sample,
    mantle,
    sample_dataset,
)

__all__ = [
    "CONVENTION",
    "GENERATORS",
    "MANTLE_PHASES",
    "Microstructure",
    "SNR_PRESETS",
    "SimulatedDataset",
    "builtin_samples",
    "from_recipe",
    "grains_in_matrix",
    "lamellae",
    "load_sample",
    "load_simulated",
    "mantle",
    "particles_on_support",
    "sample_dataset",
    "simulate",
    "voronoi_polycrystal",
]
