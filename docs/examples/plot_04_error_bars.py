"""
Error bars on spectra and compositions: the parametric bootstrap
================================================================

A phase composition without an error bar cannot be compared with anything. psnmf's
error bars come from a **parametric bootstrap** of the binned stage
(:func:`psnmf.uncertainty.bootstrap`): the fitted model is taken as the truth, new binned
counts are drawn from it, the binned stage (NMF, then the pure-pixel correction) is
refitted, and every replicate's spectra are quantified (Cliff-Lorimer, the k-factors of
the forward model). The spread of the replicates is the ``± sd``; the 95 % interval
(``method="bias"``) also contains the bias-corrected and the selection-debiased
estimates, so it covers the truth when either correction is about right (measured:
93.8 % of the true compositions inside the nominal 95 % interval, see the module
documentation).

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
table = boot.composition_table(names=names)
print("\n".join(line for line in table.splitlines()
                if not line.split()[2:3] == ["0.00"]))   # the elements present

# %%
# Against the true compositions
# -----------------------------
# The simulation's Table 1 compositions (at.%) and the 95 % intervals, per element of
# each phase:
rows = boot.composition_rows(names=names)
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
for ax, phase in zip(axes, data.phase_names, strict=True):
    truth = data.compositions[phase]
    mine = [r for r in rows if r["component"] == phase and r["element"] != "O"
            and (truth.get(r["element"], 0) > 0 or r["at_percent"] > 0.05)]
    x = np.arange(len(mine))
    est = np.array([r["at_percent"] for r in mine])
    lo = est - np.array([r["low"] for r in mine])
    hi = np.array([r["high"] for r in mine]) - est
    ax.errorbar(x, est, yerr=[lo, hi], fmt="o", ms=4, capsize=3, label="PSNMF, 95 %")
    ax.plot(x, [truth.get(r["element"], 0.0) for r in mine], "kx", label="truth")
    ax.set_xticks(x, [r["element"] for r in mine])
    ax.set(yscale="log", title=f"{phase} (O not shown)", ylabel="at.%")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
# Count the true values inside their interval:
inside = total = 0
for r in rows:
    t = data.compositions[r["component"]].get(r["element"], 0.0)
    inside += r["low"] <= t <= r["high"]
    total += 1
print(f"{inside} of {total} true compositions inside the 95 % interval")

# %%
# The trace elements (Nd, Sm and U at 0.1-1 at.%) come with sd of 5-10 % of their
# value at 147 counts per pixel on this small image; the counting noise, and with it the
# sd, grows about as one over the square root of the counts.
#
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
ax.plot(e[sel], data.spectra[data.phase_names.index("CaPv"), sel], "k--",
        lw=0.8, label="truth")
ax.set(xlabel="energy (keV)", title="CaPv spectrum near Ca K")
ax.legend(fontsize=8)
fig.tight_layout()
