"""
Choosing k and b from the data: held-out Poisson deviance
=========================================================

Real data have no ground truth, so psnmf chooses the number of components ``k`` and the
bin factor ``b`` (and the total-variation weight of the maps) by how well a model
predicts counts it has not seen.

Counts are Poisson, so **binomial thinning** splits them into two independent Poisson
halves with the same means up to a factor one half
(:func:`psnmf.selection.count_split`). A model fitted on one half is scored by the
Poisson deviance of the other (:func:`psnmf.selection.poisson_deviance`): the lower, the
better it predicts new counts. No truth, no noise model beyond Poisson, no tuning.

* ``k``: the binned stage scored by 5-fold count splitting of the binned counts, ``k`` in
  increasing order until the deviance rises;
* ``b``: PSNMF (the final method, without smoothing) fitted on one half, its prediction
  of the other half scored summed over 8 x 8 pixels, for ``b`` in ``4, 8, 16`` from the
  largest down until the deviance rises.

``PSNMF("auto", "auto")`` does both, as ``psnmf unmix`` does; ``psnmf sweep FILE`` prints
the same table for a file. This example uses a 64 x 64 mantle image and per-pixel maps
(``smoothing=None``) to keep it short; with the default ``smoothing="auto"`` the TV weight
is chosen the same way after ``k`` and ``b``.
"""

# %%
import matplotlib.pyplot as plt

from psnmf import PSNMF, compare_to_truth, count_split, poisson_deviance
from psnmf.simulate import mantle

data = mantle("medium", seed=0, shape=(64, 64))

# %%
# The held-out deviance by hand
# -----------------------------
# Fit on one half ``X1``, score the prediction of the other half ``X2``. The raw counts of
# ``X1`` are the "no model" prediction: every zero of a pixel predicts zero counts, which
# the other half contradicts. Predictions below a small floor count as the floor, so the
# raw data get a finite score.
X1, X2 = count_split(data.counts, 0.5, random_state=0)
fit = PSNMF(3, bin_factor=4, smoothing=None, random_state=0).fit(X1)
print(f"raw X1        {poisson_deviance(X2, X1):.4f} per count")
print(f"PSNMF on X1   {poisson_deviance(X2, fit.reconstruct()):.4f} per count")

# %%
# Both choices in one call
# ------------------------
auto = PSNMF("auto", "auto", smoothing=None, random_state=0).fit(data.counts)
print(auto.n_components_, auto.bin_factor_)
print(auto.selection_.to_text())

# %%
# The evidence as curves. The binned-stage deviance falls until the number of phases and
# rises after it; the ``b`` curve is flat near its minimum (the spectra of ``b = 2 ... 8``
# are all good here) and rises when the bins get coarser than the grains.
choice = auto.selection_
k_trials = choice.k_search.trials
b_trials = choice.sorted_b_trials()
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.2))
ax0.plot([t.candidate.n_components for t in k_trials], [t.deviance for t in k_trials], "o-")
ax0.set(xlabel="k", ylabel="held-out deviance per count",
        title=f"k (binned {choice.k_bin} x {choice.k_bin}, 5 folds)")
ax1.plot([t.candidate.bin_factor for t in b_trials], [t.deviance for t in b_trials], "o-")
ax1.set(xscale="log", xlabel="b", title=f"b (k = {auto.n_components_}, half the counts)")
ax1.set_xticks(choice.bins, [str(b) for b in choice.bins])
fig.tight_layout()

# %%
# Against the truth
# -----------------
# The simulation lets us check the choice: the spectral angles of the chosen model.
r = compare_to_truth(auto.spectra_, auto.maps_, data.spectra, data.maps)
print(", ".join(f"{p} {a:.2f} deg" for p, a in zip(data.phase_names, r["angle"], strict=True)))

# %%
# In ``psnmf unmix`` the same evidence lands in ``summary.json`` (``selection``), in
# ``deviance.png`` and ``sweep.png`` and in the report; :func:`psnmf.pipeline.sweep` is
# the Python form of ``psnmf sweep``.
