"""
Error bars on spectra and compositions: the bootstrap and the error budget
==========================================================================

A phase composition without an error bar cannot be compared with anything. psnmf's
error bars come from a **parametric bootstrap** of the binned stage
(:func:`psnmf.uncertainty.bootstrap`): the fitted model is taken as the truth, new binned
counts are drawn from it, the binned stage (NMF, then the pure-pixel correction) is
refitted, and every replicate's spectra are quantified (Cliff-Lorimer, the k-factors of
the forward model). The spread of the replicates is the statistical sd: the counting
noise of the spectra and the spread of the NMF solution. The 95 % interval
(``method="bias"``) also contains the bias-corrected and the selection-debiased
estimates, so it covers the truth when either correction is about right.

To that **error budget** psnmf adds the systematic parts, the same in every replicate:
the k-factors (theoretical k-factors carry a stated relative sd,
:func:`psnmf.quantify.theoretical_k_sd`: the emission part and the spread of the
detector window) and the thickness, when its uncertainty is given or the density is the
mean of the sample's phase densities. Elements below the detection limit of a component
get a limit, not a number.

This page uses a 64 x 64 mantle image and 10 replicates; ``psnmf unmix`` runs 20 by
default (``--bootstrap N``), each costing about one binned-stage fit.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

from psnmf import PSNMF, compare_to_truth
from psnmf.simulate import mantle
from psnmf.uncertainty import bootstrap

data = mantle("medium", seed=0, shape=(64, 64))
model = PSNMF(3, bin_factor=4, random_state=0).fit(data.counts)
order = compare_to_truth(model.spectra_, model.maps_, data.spectra, data.maps)["order"]
names = [data.phase_names[list(order).index(j)] for j in range(3)]  # name of component j
print(names)

# %%
# Bootstrap
# ---------
# ``elements`` asks for compositions; ``edx_model`` is the forward model whose k-factors
# quantify the spectra (for a file, :func:`psnmf.quantify.model_for_signal` builds it
# from the metadata).
boot = bootstrap(model, data.counts, n_boot=10, elements=list(data.elements),
                 edx_model=data.model, random_state=0)
print(boot.replicates.shape)          # (n_boot, k, channels)
print(boot.composition_table(names=names))

# %%
# Each line: the estimate, ``±`` the total sd, the interval, and the parts of the budget
# (sd in at.%): ``counting`` and ``nmf`` make up the bootstrap spread, ``k_factors`` and
# ``thickness`` are systematic. On real data with theoretical k-factors the k-factor part
# dominates the major elements.
#
# Against the true compositions
# -----------------------------
# A simulation is quantified with the very k-factors it was made with, so here the
# systematic part does not apply: the statistical intervals (``systematic=False``) are
# the ones to hold against the truth (the simulation's Table 1 compositions).
def coverage(rows):
    inside = [r["low"] <= data.compositions[r["component"]].get(r["element"], 0.0) <= r["high"]
              for r in rows if r["status"] == "quantified"]
    return sum(inside), len(inside)


stat = boot.composition_rows(names=names, systematic=False)
total = boot.composition_rows(names=names)
print("statistical intervals: {} of {} true compositions inside".format(*coverage(stat)))
print("with the systematic parts: {} of {}".format(*coverage(total)))

# %%
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
for ax, phase in zip(axes, data.phase_names, strict=True):
    truth = data.compositions[phase]
    for rows, label, shift in ((stat, "statistical 95 %", -0.12), (total, "total 95 %", 0.12)):
        mine = [r for r in rows if r["component"] == phase and r["status"] == "quantified"
                and r["element"] != "O"]
        x = np.arange(len(mine))
        est = np.array([r["at_percent"] for r in mine])
        yerr = [est - [r["low"] for r in mine], [r["high"] for r in mine] - est]
        ax.errorbar(x + shift, est, yerr=yerr, fmt="o", ms=3, capsize=2, label=label)
    ax.plot(x, [truth.get(r["element"], 0.0) for r in mine], "kx", label="truth")
    ax.set_xticks(x, [r["element"] for r in mine])
    ax.set(yscale="log", title=f"{phase} (O not shown)", ylabel="at.%")
axes[0].legend(fontsize=7)
fig.tight_layout()

# %%
# Spectra
# -------
# ``spectra_std`` is the replicate standard deviation, channel by channel. Around the Ca K
# lines of CaPv:
j = names.index("CaPv")
e = data.energy
sel = (e > 3.4) & (e < 4.3)
fig, ax = plt.subplots(figsize=(6, 3))
ax.fill_between(e[sel], (boot.spectra - 2 * boot.spectra_std)[j, sel],
                (boot.spectra + 2 * boot.spectra_std)[j, sel], alpha=0.3, label="± 2 sd")
ax.plot(e[sel], boot.spectra[j, sel], lw=1, label="PSNMF")
ax.plot(e[sel], data.spectra[data.phase_names.index("CaPv"), sel], "k--", lw=0.8,
        label="truth")
ax.set(xlabel="energy (keV)", title="CaPv spectrum near Ca K")
ax.legend(fontsize=8)
fig.tight_layout()
