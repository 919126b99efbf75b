"""
A larger run: sparse counts, the lazy denoised cube and the Dask path
=====================================================================

An EDX pixel holds tens to hundreds of counts over ~2000 channels, so a spectrum image is
mostly zeros. psnmf keeps the counts as a sparse matrix (CSR) from the start, never a
dense float64 cube, and its kernels visit only the non-zero counts: one iteration costs
O(non-zeros x k), the memory follows the counts, not the cube.

This page runs a 128 x 128 image to keep the documentation build short.
**What 512 x 512 costs**, measured on the 2-core machine this documentation is built on
(shared with other jobs, so the times are inflated): a 512 x 512 x 2048 mantle image at
120 counts per pixel (16.5 million non-zeros, simulated directly as a sparse matrix by
``benchmarks/speed.py``'s generator) fits in **23 s with the defaults**
(``PSNMF(3, 4)``: pure-pixel spectra, TV maps with the weight chosen by held-out
deviance) and in 8 s with the paper's configuration, with a peak resident memory of
1.5 GB for the whole process (interpreter, libraries, the simulated counts and both
fits). The dense float64 cube of the same image would be 4.3 GB by itself.
``benchmarks/speed.py`` and ``benchmarks/unmix_scale.py`` measure the scaling and the
whole ``psnmf unmix`` job at that size.
"""

# %%
# The counts, sparse
# ------------------
import time

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

from psnmf import PSNMF, compare_to_truth, io
from psnmf.pipeline import memory
from psnmf.simulate import mantle

data = mantle("medium", seed=0, shape=(128, 128))
X, image_shape = io.to_counts(data.counts)       # CSR (pixels, channels), int32
dense_gb = np.prod(data.counts.shape) * 8 / 1e9
sparse_mb = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1e6
print(f"{X.shape} counts, {X.nnz:,} non-zeros: {sparse_mb:.0f} MB as CSR, "
      f"{dense_gb:.2f} GB as a dense float64 cube")

# %%
# Fit, with all defaults
# ----------------------
# A 2-D (pixels, channels) matrix needs ``image_shape`` (the estimator bins it and
# smooths its maps on the image grid).
t0 = time.perf_counter()
model = PSNMF(3, bin_factor=4, random_state=0, image_shape=image_shape).fit(X)
print(f"fit: {time.perf_counter() - t0:.1f} s, iterations {model.n_iter_}")
r = compare_to_truth(model.spectra_, model.maps_, data.spectra, data.maps)
print("angles", r["angle"].round(2), "map MSE", r["mse"].round(4))

# %%
# The denoised cube, lazily
# -------------------------
# The fitted factors are small (maps ``ny x nx x k``, spectra ``k x channels``);
# ``reconstruct(lazy=True)`` returns the denoised cube as a float32 Dask array built band
# by band, so that only the part asked for is ever computed.
cube = model.reconstruct(lazy=True)
print(type(cube).__name__, cube.shape, cube.dtype, f"{cube.nbytes / 1e9:.2f} GB if computed")
region = cube[60:90, 80:110].sum(axis=(0, 1)).compute()   # a 30 x 30 pixel region
raw = np.asarray(X[[i * 128 + j for i in range(60, 90) for j in range(80, 110)]].sum(0))
fig, ax = plt.subplots(figsize=(7, 3))
ax.plot(data.energy, raw.ravel(), lw=0.5, label="raw, 30 x 30 px")
ax.plot(data.energy, region, lw=0.8, label="PSNMF denoised")
ax.set(xlim=(0.2, 8), xlabel="energy (keV)", ylabel="counts", yscale="log")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# Dask arrays and lazy signals
# ----------------------------
# A cube that does not fit in memory goes through Dask: a lazy HyperSpy signal
# (``hs.load(path, lazy=True)``) or a Dask array. Binning is a block-wise reduction, the
# binned NMF runs in memory (it is small), and the full-resolution stage, independent per
# pixel with the spectra fixed, runs band by band on the workers (or threads). TV maps
# couple neighbouring pixels across bands, so lazy input gets per-pixel maps
# (``smoothing=None``; ``"auto"`` warns and falls back). With a ``dask.distributed``
# client open, the same call runs on a cluster.
lazy = da.from_array(data.counts, chunks=(32, -1, -1))     # 4 bands of 32 image rows
t0 = time.perf_counter()
on_dask = PSNMF(3, bin_factor=4, smoothing=None, random_state=0).fit(lazy)
print(f"Dask fit: {time.perf_counter() - t0:.1f} s")
in_memory = PSNMF(3, bin_factor=4, smoothing=None, random_state=0,
                  image_shape=image_shape).fit(X)
print("same maps as in memory:", np.allclose(on_dask.maps_, in_memory.maps_, atol=1e-10))

# %%
# How much ``psnmf unmix`` needs
# ------------------------------
# ``psnmf unmix`` checks, before the heavy work, that the run fits in the memory
# available and refuses it otherwise with the fix. The estimate comes from a model fitted
# to measured runs (:mod:`psnmf.pipeline.memory`); for 512 x 512 x 2048 at 120 counts per
# pixel:
est = memory.estimate_peak((512, 512), 2048, 16_500_000, write_denoised=False)
print(est.describe())
print(f"peak {est.peak / 2**30:.2f} GiB, in the {est.largest!r} stage")
