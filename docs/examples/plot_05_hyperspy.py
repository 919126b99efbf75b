"""
PSNMF in HyperSpy: signals in and out, and as a decomposition algorithm
=======================================================================

``PSNMF.fit`` accepts an exspy ``EDSTEMSpectrum`` (or any HyperSpy signal with two
navigation axes) as well as an array. A model fitted on a signal keeps a light template
of its axes and metadata (not the data), so its results come back as signals with the
energy axis and the spatial calibration of the input.

The estimator also follows scikit-learn's conventions, so it can be HyperSpy's own
decomposition algorithm: ``s.decomposition(algorithm=PSNMF(...))`` fills
``s.learning_results`` and everything built on it (``plot_decomposition_results``,
``get_decomposition_model``) works as with HyperSpy's NMF.
"""

# %%
# A simulated file
# ----------------
# :meth:`psnmf.simulate.SimulatedDataset.to_signal` gives the counts as an exspy signal
# with the microscope parameters, the elements and lines, and the ground truth under
# ``metadata.Simulation``; ``save("sample.hspy")`` writes it as a file that plain
# HyperSpy opens.
import hyperspy.api as hs
import matplotlib.pyplot as plt
import numpy as np

from psnmf import PSNMF
from psnmf.simulate import mantle

s = mantle("medium", seed=0, shape=(64, 64)).to_signal()
s.axes_manager["x"].scale = s.axes_manager["y"].scale = 2.5
s.axes_manager["x"].units = s.axes_manager["y"].units = "nm"
print(s)
print(s.metadata.Sample.elements)

# %%
# Fit a signal
# ------------
model = PSNMF(n_components=3, bin_factor=4, random_state=0).fit(s)
spectra = model.get_spectra()     # EDSTEMSpectrum (3 | 1980): energy axis kept
maps = model.get_maps()           # Signal2D (3 | 64, 64): spatial calibration kept
denoised = model.reconstruct()    # EDSTEMSpectrum (64, 64 | 1980), axes and metadata kept
print(spectra, maps, denoised, sep="\n")
print(maps.axes_manager["x"].scale, maps.axes_manager["x"].units)

# %%
# HyperSpy's plotting functions take them as they are.
hs.plot.plot_images(maps, cmap="viridis", axes_decor="off", label=["#0", "#1", "#2"],
                    colorbar="single", per_row=3, suptitle="PSNMF maps")

# %%
# The denoised data are an EDS signal like the raw data, so exspy's tools apply, for
# example the line intensities (here Fe Ka, which is in ferropericlase):
raw_fe = s.get_lines_intensity(["Fe_Ka"])[0]
psnmf_fe = denoised.get_lines_intensity(["Fe_Ka"])[0]
fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
for ax, img, title in zip(axes, (raw_fe, psnmf_fe), ("raw Fe Ka", "PSNMF Fe Ka"),
                          strict=True):
    ax.imshow(img.data, cmap="inferno")
    ax.set_title(title)
    ax.set_axis_off()
fig.tight_layout()

# %%
# As HyperSpy's decomposition algorithm
# -------------------------------------
# Two things to know. HyperSpy hands the algorithm a 2-D (pixels, channels) matrix, so
# the estimator needs ``image_shape`` to bin it. And exspy's EDS defaults mask the
# pixels whose largest channel holds one count or less (nearly every pixel of sparse
# STEM-EDX data) and normalise the noise: PSNMF needs the raw counts of every pixel, so
# switch both off.
s.change_dtype("float64")
est = PSNMF(3, 4, random_state=0, image_shape=s.axes_manager.navigation_shape[::-1])
s.decomposition(algorithm=est, output_dimension=3, navigation_mask=None,
                normalize_poissonian_noise=False)
print(s.learning_results.factors.shape, s.learning_results.loadings.shape)

# %%
# HyperSpy's loadings are the maps times the per-pixel count scale (so that
# ``loadings @ factors.T`` is the denoised cube); ``est`` keeps the maps on the simplex.
lr = s.learning_results
print(np.allclose(lr.factors.T, est.spectra_),
      np.allclose(lr.loadings, (est.maps_ * est.scale_[..., None]).reshape(-1, 3)))
s.plot_decomposition_loadings(3, axes_decor="off", cmap="viridis", per_row=3)

# %%
# The decomposition model is the fused, denoised cube:
dm = s.get_decomposition_model(3)
print(float(np.abs(dm.data - denoised.data).max()))
