"""psnmf: NMF-based pan-sharpening (PSNMF) of STEM-EDX spectrum images.

Quick start
-----------
>>> from psnmf import PSNMF
>>> from psnmf.simulate import mantle
>>> data = mantle("medium", seed=0, shape=(48, 48))
>>> model = PSNMF(n_components=3, bin_factor=4, random_state=0).fit(data.counts)
>>> model.spectra_.shape, model.maps_.shape, model.reconstruct().shape
((3, 1980), (48, 48, 3), (48, 48, 1980))
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
