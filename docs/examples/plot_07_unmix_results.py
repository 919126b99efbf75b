"""
The whole job: ``unmix`` a file and open its results folder
===========================================================

``psnmf unmix FILE`` (in Python :func:`psnmf.pipeline.unmix`) reads a spectrum image,
chooses what it is not told, unmixes, scores, quantifies and writes everything into one
folder. Here it runs on a small simulated file, with ``k`` and ``b`` given and 5
bootstrap replicates to keep the page quick (the command's defaults choose both and run
20), and we open what it wrote.

The same from a terminal::

    psnmf simulate mantle --snr medium --seed 0 -o mantle.hspy
    psnmf unmix mantle.hspy -k 3 --bin 4 --bootstrap 5 -o mantle_psnmf
"""

# %%
import json
import tempfile
from pathlib import Path

import hyperspy.api as hs
import matplotlib.pyplot as plt

from psnmf.pipeline import unmix
from psnmf.simulate import mantle

work = Path(tempfile.mkdtemp())
path = mantle("medium", seed=0, shape=(48, 48)).save(work / "mantle.hspy")
res = unmix(path, n_components=3, bin_factor=4, n_boot=5, output_dir=work / "mantle_psnmf",
            progress=False)

# %%
# The results folder
# ------------------
# Written as one set: staged in a hidden sibling folder and swapped in when complete, so
# an interrupted run leaves an earlier set as it was. ``.psnmf-manifest.json`` lists
# psnmf's files; a later run with ``overwrite=True`` (``--overwrite``) replaces only those.
out = work / "mantle_psnmf"
for p in sorted(out.iterdir()):
    print(f"{p.name:28s} {p.stat().st_size / 1e3:8.1f} kB")

# %%
# * ``component_spectra.hspy``, ``component_maps.hspy``, ``count_scale.hspy``: the
#   factors as HyperSpy signals with the file's axes and metadata;
#   :func:`psnmf.hyperspy.denoised_from_factors` rebuilds the denoised cube from them.
# * ``psnmf_decomposition.hspy``, ``pca_decomposition.hspy``: the same as HyperSpy
#   decompositions; ``hs.load(p, lazy=True).get_decomposition_model()`` is the denoised
#   cube. (``write_denoised=True``, ``--write-denoised``, also writes the dense cubes.)
# * the figures (PNG) and ``report.html``, which shows them (opens offline; keep the
#   folder together);
# * ``summary.json``: every number of the run.
summary = json.loads((out / "summary.json").read_text())
print(list(summary))
print(json.dumps(summary["heldout_deviance"], indent=1))

# %%
# The held-out deviance per count of the raw counts, HyperSpy's PCA and PSNMF, each fitted
# on one half of the counts and scored on the other: the lower, the better each predicts
# counts it has not seen. Where the time went:
print({step: round(s, 1) for step, s in summary["timings_s"].items()})

# %%
# Compositions
# ------------
# Every component quantified, with its bootstrap ``±`` and 95 % interval (at.%):
comp = summary["composition"]
print(comp["method"], comp["n_boot"], "replicates")
for row in comp["rows"]:
    if row["at_percent"] is not None and row["at_percent"] >= 0.5:   # None: below the limit
        print(f"{row['component']:4s} {row['element']:3s} {row['at_percent']:6.2f} "
              f"± {row['sd']:.2f}  [{row['low']:.2f}, {row['high']:.2f}]")

# %%
# The result object
# -----------------
# ``unmix`` also returns everything in memory: the fitted estimator, the signals, the
# typed summary.
print(res.model)
print(res.spectra, res.maps, res.denoised, sep="\n")

# %%
# Open the files in HyperSpy
# --------------------------
maps = hs.load(out / "component_maps.hspy")
hs.plot.plot_images(maps, cmap="viridis", axes_decor="off", per_row=3, colorbar="single",
                    label=["#0", "#1", "#2"], suptitle="component_maps.hspy")
dec = hs.load(out / "psnmf_decomposition.hspy", lazy=True)
print(dec.get_decomposition_model().data.shape)

# %%
# And one of the figures of the report:
img = plt.imread(out / "element_maps.png")
fig, ax = plt.subplots(figsize=(9, 9 * img.shape[0] / img.shape[1]))
ax.imshow(img)
ax.set_axis_off()
