"""psnmf: NMF-based pan-sharpening (PSNMF) of STEM-EDX spectrum images.

Quick start
-----------
>>> from psnmf import PSNMF                                  # doctest: +SKIP
>>> model = PSNMF(n_components=3, bin_factor=12).fit(cube)   # doctest: +SKIP
>>> model.spectra_, model.maps_, model.reconstruct()         # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("psnmf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from psnmf.baselines import pca_denoise, standard_nmf
from psnmf.engine.binning import bin_counts, bin_cube, upsample_maps
from psnmf.engine.poisson_nmf import poisson_nmf
from psnmf.estimator import PSNMF
from psnmf.metrics import compare_to_truth, map_mse, match_components, spectral_angle
from psnmf.selection import count_split, poisson_deviance

__all__ = [
    "PSNMF",
    "__version__",
    "bin_counts",
    "bin_cube",
    "compare_to_truth",
    "count_split",
    "map_mse",
    "match_components",
    "pca_denoise",
    "poisson_deviance",
    "poisson_nmf",
    "spectral_angle",
    "standard_nmf",
    "upsample_maps",
]
