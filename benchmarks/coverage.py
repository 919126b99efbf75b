"""Coverage of the composition intervals on simulated samples, with the full error budget.

For several noise seeds of a simulated sample: fit PSNMF with pure-pixel spectra, bootstrap
the binned stage (:func:`psnmf.uncertainty.bootstrap`), quantify the estimate and every
replicate, and count how often the true composition (elements >= ``--min-percent`` at.%)
falls inside the nominal 95 % interval, two ways:

* ``bootstrap``: counting noise and NMF spread only (``systematic=False``, the intervals
  psnmf reported before the error budget);
* ``full``: the bootstrap with the k-factor and thickness parts added in quadrature (what
  ``psnmf unmix`` reports now).

An element reported below the detection limit counts as covered when its truth is at most
the limit. Also printed: the median half-width and the median |error| in at.%.

Physics of the simulated data (``--physics``):

``same``
    Simulated and quantified with the sample's own model: the theoretical k-factors are
    exact, so the k-factor sd (the error of theoretical k-factors against real ones) is
    not an error of these data: ``--k-factor-sd`` defaults to 0 here (k-factors known
    exactly, as from a calibration) and the coverage measures the rest of the budget
    (bootstrap, thickness). ``--k-factor-sd`` given (e.g. 0.1) adds it anyway.
``other``
    Simulated with another model (:func:`other_model`): Bethe constant ``c_s = 2`` instead
    of 1 (another fit of ionisation cross-sections) and a 0.15 um instead of 0.1 um
    Si3N4 detector window (a window thickness known to +-50 %); quantified with the
    sample's own model. Its k-factors differ from the quantifying model's by +24 % (O),
    +2 % (Mg), 0 (Si, the reference), -6 % (Fe), -14 % (U): the case of real data, whose
    k-factors are never those of the model.

Usage::

    python benchmarks/coverage.py                                   # mantle, both physics
    python benchmarks/coverage.py --samples mantle,eutectic --seeds 4 --size 60
    python benchmarks/coverage.py --physics other --thickness-factor 1.5 --thickness-sigma 0.5
    python benchmarks/coverage.py --table                  # each seed's tables, truth beside result
    python benchmarks/coverage.py --boot 20 --width-tol none   # every replicate, no stopping rule
    python benchmarks/coverage.py --physics espm --film-thickness 0  # espm's spectra, thin film
    python benchmarks/coverage.py --samples ceramic --physics same   # exact k (the default)
    python benchmarks/coverage.py --physics same --thickness-factor 0.5 --thickness-sigma 0.5
        # a wrong thickness with its sd, refined by the charge balance (the default 'auto')
    python benchmarks/coverage.py --thickness-from none     # the thickness given alone
    python benchmarks/coverage.py --no-thickness --thickness-from electroneutrality
        # a film quantified without a thickness, the charge balance alone
    python benchmarks/coverage.py --physics same --k-factor-file /tmp/k.csv  # a vendor file

Runs one process; set NUMBA_NUM_THREADS / OMP_NUM_THREADS to share a machine.

The film from the charge balance by default
-------------------------------------------
``quantify(thickness_from="auto")`` (the default) refines a thickness given with an sd by
each ionic component's electroneutral mass thickness; a component whose phase is not
named carries the spread of the sample's phase densities as that sd, so on these samples
the sample's thickness (given without an sd) is refined. The thickness given is a
log-normal prior on the mass thickness (median ``t rho``, log sd ``sigma_t / t`` and
``sigma_rho / rho`` in quadrature; :mod:`psnmf.quantify.electroneutrality`), combined
with the estimate and tested against it (3 sd) in log mass thickness; before, it was a
Gaussian in ``rho t``. ``same`` physics, medium, 96 x 96, 2 seeds, elements >= 1 at.%,
the full budget's 95 % coverage and the max |error| (at.%), ``--thickness-from none``,
then the default with the Gaussian prior and with the log-normal one::

    sample        true thickness                        thickness 0.5 x, sd 0.5 x
                  none        Gaussian    log-normal    none        Gaussian    log-normal
    mantle        24/24 0.24  24/24 0.19  24/24 0.19    24/24 3.22  24/24 0.50  24/24 0.38
    small_grains  26/26 0.42  26/26 0.42  26/26 0.42    26/26 0.87  26/26 0.85  26/26 0.82
    ceramic       16/16 2.70  16/16 0.21  16/16 0.22    16/16 7.59  16/16 0.16  16/16 0.15
    thin_layer    13/14 3.88  13/14 3.55  13/14 0.65    10/14 5.52  12/14 5.52  13/14 0.68

    thickness 1.5 x, sd 0.5 x:  Gaussian / log-normal
    mantle 24/24 0.45 / 24/24 0.49, small_grains 26/26 0.51 / 26/26 0.51,
    ceramic 16/16 0.19 / 16/16 0.24, thin_layer 11/14 0.61 / 11/14 0.68

The thin layer's HfO2 (seed 1) is what the Gaussian set aside: its estimate, 5.6-5.7e-4
kg/m^2 (9.68 g/cm^3 x 57-59 nm, the film 50 nm), is 4.6-4.7 x the prior's median at 0.5 x
(25 nm x the mean density 4.86), 3.1 sd of the Gaussian (1.2e-4 +- 1.4e-4) but 1.3 sd in
log mass thickness (log sd 1.18: a thickness given to a factor ``e`` and the density's
spread, 2.2-9.68 g/cm^3): Hf 38.85 -> 33.36 at.%. At the true thickness the Gaussian set
the seed-1 SiO2 estimate aside (3.5 sd; O 63.12, 3.55 at.% low); the log-normal uses it
(1.9 sd) and its Si is 0.65 at.% low. That component is not SiO2 alone: as a
non-negative mix of the true phase spectra it is 78 % SiO2, 10 % substrate Si and 12 %
HfO2 (fractions of its counts), so its charge-balance film is 7.3 x SiO2's (8.1e-4
kg/m^2 for 1.1e-4; cations in excess look like absorption); no test on a prior this wide
sets it aside (1.6 sd at 0.5 x), and none separates it from HfO2's correct 4.6 x. Used,
the charge balance makes it neutral: Si 32.65, Hf 0.71 (truth 0), O 66.64, and Si's
interval, [32.04, 33.27] at 0.5 x, misses by 0.06 at.%: the thin layer's one miss at
0.5 x and at the true thickness is this component's HfO2 share, which the bootstrap does
not see (its NMF part is 0.00: every replicate holds the same mixture). At 1.5 x the same
miss and two more, the substrate's Si at 99.67 (N 0.33, truth 0, over-corrected: Si has
no charge balance, so 75 nm x 4.86 g/cm^3 is used for a 50 nm film of 2.33), the same
with the Gaussian.

The model's k-factors written to a vendor-style file (``--k-factor-file``: weight basis,
line labels) gave the same rows as the model's (true thickness, Gaussian prior). On the
``other`` physics (theoretical k-factors, medium, 96 x 96, 2 seeds; Gaussian /
log-normal): mantle 24/24 5.98 / 24/24 5.98, small_grains 26/26 5.90 / 26/26 5.85,
ceramic 16/16 11.11 / 16/16 11.11, thin_layer 14/14 11.43 / 14/14 3.06 (median |err|
5.32 -> 0.08, half-width 21.3 -> 23.7), pooled 80/80 both: the thin layer's estimates,
which the Gaussian set aside, now refine its films.

Bootstrap-only coverage at the true thickness (Gaussian prior): 63/80 -> 74/80 against
``none``; the full budget's median half-width: ceramic 1.08 -> 0.45, thin layer 3.36 ->
0.69 at.% (the density's spread no longer needed where the charge balance measures the
mass thickness). The thin layer's TiN gains from the nitride valences (Ti +3; the oxide
table's +4 left Ti 0.61 at.% off with the estimate).

Without a thickness (``--no-thickness``: the 100 nm films quantified as thin films), the
charge balance alone (``--thickness-from electroneutrality``) against a thin film
(``none``)::

    sample        none           electroneutrality
    mantle         2/24  6.67    24/24  0.40
    small_grains   4/26  1.70    26/26  0.26
    ceramic        2/16 13.33    16/16  0.15
    thin_layer     6/14  7.24    14/14  0.49
    espm mantle   24/24  6.68    24/24  6.68   (no film neutral: espm's O K, the thin film)
    espm ceramic  16/16  6.54    16/16  6.54

``"auto"`` does not do this: alone the estimate rests on the valence table and on a
component being one stoichiometric phase, and where either fails nothing checks it
(noise-free at 50 nm: Cu2O, whose Cu the table takes as +2, 17 at.% off; a component
mixing Pd metal with TiO2, 12 at.% off; both exact without it).

Coverage per configuration
--------------------------
Which parts of the budget a configuration needs follows from how its data were made: on
the model's own data (``same``) the k-factors are exact, so the full budget without the
k-factor part should cover near 95 %; on data of another physics (``other``, ``espm``)
the k-factor part is the real error of theoretical k-factors and must be there (>= 90 %).
Mantle, 60 x 60, 4 seeds, elements >= 1 at.%, the sample's thickness given::

    physics  k-factor sd       snr     full 95%           hw
    same     0 (exact)         medium  45/48  93.8 %      0.29
    same     0 (exact)         low     45/48  93.8 %      0.66
    same     theoretical       medium  48/48  100 %       9.40   (conservative: k exact)
    other    theoretical       medium  48/48  100 %       9.51
    other    theoretical       low     48/48  100 %       9.79
    espm     theoretical       medium  48/48  100 %       8.21
    espm     theoretical       low     48/48  100 %       8.51

A thickness given 50 % off (0.5 x true, sd 0.5 x true; ``same``, k-factors exact, mantle
medium, 4 seeds), alone and with the electroneutral estimate (``--thickness-from
electroneutrality``, the thickness given its prior)::

    thickness                   bootstrap 95%     full 95%    hw  |err|   max
    given only                  15/48  31.2 %   48/48 100 %  1.05  0.51  3.55
    given + electroneutrality   42/48  87.5 %   48/48 100 %  0.88  0.21  1.25

The ``same``/exact rows are the only ones near 95 %: with any k-factor sd on exact
k-factors, or with the window part on another physics' data, the intervals are as wide
as a theoretical k-factor's error (O K 45 %), which the data cannot narrow. Where the
detector window is known, ``quantify(detector_window_known=True)`` leaves its part out.

Measured with the k-factor sd of the emission and the detector window
(:func:`psnmf.quantify.theoretical_k_sd`: O K 45 %, Mg, Al, Si K 10 %, Ca, Fe K 5 %);
mantle, 60 x 60, 4 seeds, at most 12 replicates with the stopping rule, 'bias'
intervals, elements >= 1 at.% (12 per seed), the film thickness given (``--film-thickness
0``: a thin film; 100: the sample's); hw the median half-width, |err| the median and max
error of the estimate, at.%::

    film    snr    physics   bootstrap 95%   hw      full 95%    hw  |err|   max
    0       medium espm       0/48   0.0 %  0.25   48/48 100 %    8.39  3.54  8.72
    0       low    espm       2/48   4.2 %  0.65   47/48  97.9 %  8.65  3.68 10.72
    100 nm  medium espm       0/48   0.0 %  0.19   48/48 100 %    8.21  4.18 11.24
    100 nm  low    espm       0/48   0.0 %  0.62   48/48 100 %    8.51  3.85 12.35
    100 nm  medium other      0/48   0.0 %  0.22   48/48 100 %    9.51  2.32  6.06
    100 nm  low    other      7/48  14.6 %  0.78   48/48 100 %    9.79  2.08  5.98
    100 nm  medium same      45/48  93.8 %  0.23   48/48 100 %    9.40  0.09  0.63
    100 nm  low    same      44/48  91.7 %  0.66   48/48 100 %    9.61  0.22  2.07

Other samples, espm's spectra, medium, 4 seeds (the sample's thickness), full 95 %: before
the window part and the density spread / after: eutectic 26/28 / 26/28 (92.9 %),
small_grains 41/52 (78.8 %) / 48/52 (92.3 %), ceramic 18/32 (56.2 %) / 31/32 (96.9 %);
pooled 85/112 (75.9 %) / 105/112 (93.8 %).

The espm rows again after ``vertex_scales='multi'`` became the default (f1da908): the same
coverage (48, 47, 48, 48 of 48), max |err| 8.76 instead of 8.72 (thin film, medium).

With the emission part alone (O K 20 %, no window part) the espm rows were 43/48 (89.6 %),
35/48 (72.9 %), 29/48 (60.4 %) and 32/48 (66.7 %), hw 4.3-4.6: espm's detector is about
windowless (O K efficiency 0.92 against the model's 0.63 behind 100 nm of Si3N4), so its
O K k-factor is 33 % below the model's, 1.95 sd of the 20 % but 0.9 sd of the 45 %; every
other major element missed through O's share of the normalisation. The window part is
the spread of the efficiency over the windows a detector may have
(:data:`psnmf.quantify.DETECTOR_WINDOWS`), not fitted to espm.

The absorption of a component (no phase name) uses the mean of the sample's phase
densities; their spread is the density's sd, in the thickness part. With exact k-factors
(``--physics same --k-factor-sd 0``, the model's k-factors as from a calibration), so that
the thickness part is the only systematic one (medium / low, 4 seeds; bootstrap-only the
same before and after)::

    sample      snr     full 95% before      after       hw before  after  max |err|
    ceramic     medium  11/32  34.4 %   23/32  71.9 %   0.54       1.09   3.95
    ceramic     low     19/32  59.4 %   29/32  90.6 %   0.78       1.23   4.35
    thin_layer  medium   8/28  28.6 %   20/28  71.4 %   2.12       2.52  30.43
    thin_layer  low      6/28  21.4 %   18/28  64.3 %   2.44       2.89  29.30

What still misses there is not the density: the thin layer's components are mixed by the
unmixing (errors up to 30 at.%, outside any bootstrap), the ceramic's are off by up to 4.

Measured before the window part (same settings, the sample's thickness given unless said,
elements >= 1 at.% of mantle and eutectic)::

    sample    snr    physics   bootstrap 95%   hw     full 95%   hw  |err|   max
    mantle    medium same      42/48  87.5 %  0.21   48/48 100 %  5.11  0.09  0.63
    mantle    low    same      46/48  95.8 %  0.68   48/48 100 %  5.28  0.22  2.07
    mantle    medium other      0/48   0.0 %  0.22   48/48 100 %  5.29  2.32  6.06
    mantle    low    other      6/48  12.5 %  0.79   48/48 100 %  5.53  2.08  5.98
    eutectic  medium same      28/28 100.0 %  0.29   28/28 100 %  0.53  0.07  0.79
    eutectic  low    same      28/28 100.0 %  0.65   28/28 100 %  0.82  0.23  0.67
    eutectic  medium other     23/28  82.1 %  0.23   28/28 100 %  0.54  0.11  2.69
    eutectic  low    other     24/28  85.7 %  0.60   28/28 100 %  0.74  0.13  3.30
    pooled                    197/304 64.8 %        304/304 100 %
    thickness 1.5 x true, sigma 0.5 x true (mantle medium):
              same             18/48  37.5 %  0.20   48/48 100 %  5.17  0.39  2.38
              other             0/48   0.0 %  0.22   48/48 100 %  5.44  1.38  4.67
    thickness 0.5 x true, sigma 0.5 x true (mantle medium):
              same             12/48  25.0 %  0.21   48/48 100 %  5.31  0.51  3.55
              other             0/48   0.0 %  0.23   47/48  97.9 % 5.59  3.03  9.23

The bootstrap's stopping rule (``--width-tol``, the library's default 0.1; ``none`` draws
every replicate), at most 20 replicates, the same seeds (``reps`` the mean number drawn,
CPU seconds per bootstrap)::

    sample    snr    physics   every replicate       stopping rule
                               full 95%   s  reps    full 95%   s  reps
    mantle    medium same      48/48   11.4  20      48/48    4.7   8
    mantle    low    same      48/48    3.2  20      48/48    3.3  20
    mantle    medium other     48/48    9.5  20      47/48    4.0   8
    mantle    low    other     48/48    3.1  20      48/48    3.2  20
    eutectic  medium same      28/28   29.5  20      28/28   28.0  19
    eutectic  low    same      28/28    1.9  20      28/28    2.0  20
    eutectic  medium other     28/28   28.0  20      28/28   18.3  13
    eutectic  low    other     28/28    1.9  20      28/28    1.9  20
    pooled                    304/304  88.5         303/304  65.4
    (bootstrap-only intervals: 197/304 and 193/304)

The full budget covers the other physics (and wrong thicknesses given with their
uncertainty) where the bootstrap alone covers almost nothing; on the model's own data,
whose k-factors are exact, the k-factor part makes it conservative (100 %). Its width is
that of the stated k-factor uncertainty (O K 45 % now, 20 % in these tables; Mg and Si K
10 %: +-19 at.% on the O of an oxide at 95 %, +-10 before), not fitted to these data.

Never-pure vertices extrapolated by their lines (``--never-pure``)
------------------------------------------------------------------
The fits are given the sample's elements and the quantifying model, as ``psnmf unmix``
gives them, and ``--never-pure auto`` (the default here; the estimator's own default is
'keep') extrapolates the vertices of never-pure phases by their element lines and the
bootstrap replays that
(:mod:`psnmf.uncertainty`); ``--never-pure keep`` fits as before. ``same`` physics,
'medium' and 'low', 96 x 96, 3 seeds, 12 replicates, elements >= 1 at.%, covered / total
(bootstrap only, full budget), |err| median / max in at.%::

    sample       snr     keep: boot   full    |err|        auto: boot   full    |err|
    mixed_phase  medium  15/24  16/24  0.35 21.42          15/24  21/24  0.35 21.42
    mixed_phase  low     15/24  15/24  1.21 19.61          19/24  20/24  1.21  5.51
    catalyst     medium   0/18  15/18  0.49 91.83           3/18  18/18  0.45 33.25
    catalyst     low      6/18  15/18  0.37 98.96           7/18  16/18  0.35 88.76
    pooled               36/84  61/84                      44/84  75/84

The CPU per bootstrap is the same (18.6, 11.4, 26.8, 8.2 s against 20.5, 11.1, 24.6, 6.8
s). On mixed_phase 'medium' the misses left are seed 0, whose Y2Ti2O7 vertex the lines'
rule kept (27 at.% Fe); where it moved (seeds 1, 2) every element is covered. Where the
lines move nothing the two agree exactly (mantle 24/24, small_grains 24/26, 60 x 60,
'medium', 2 seeds). The eutectic at 60 x 60 ('medium', 2 seeds) is the exception: its Si
lamellae have no pure cluster there, the lines take their 1 at.% Al out (Si 100.00, every
replicate alike), and the full budget covers 10/14 instead of 14/14.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import replace

import numpy as np

from psnmf import PSNMF
from psnmf.metrics import compare_to_truth
from psnmf.physics import EDXModel, normalize_composition
from psnmf.simulate import load_sample, sample_dataset
from psnmf.uncertainty import bootstrap, composition_intervals, coverage

PHYSICS = ("same", "other", "espm")
BUDGETS = {"bootstrap": False, "full": True}
#: espm's bremsstrahlung parameters of its paper's pseudo-bridgmanite (b0, b1).
ESPM_BREMSSTRAHLUNG = (0.0003458, 0.0006268)
#: Runs in espm's environment: argv[1] a JSON request, prints one JSON line of spectra.
ESPM_SCRIPT = """
import json, sys
import numpy as np
from espm.models import EDXS
r = json.loads(sys.argv[1])
out = {}
for name, comp in r["phases"].items():
    absorption = {"thickness": r["thickness_nm"] * 1e-7, "toa": r["toa"],
                  "density": r["densities"][name], "atomic_fraction": True}
    model = EDXS(e_offset=r["e_offset"], e_size=r["e_size"], e_scale=r["e_scale"],
                 width_slope=0.01, width_intercept=0.065, db_name="200keV_xrays.json",
                 E0=r["E0"], params_dict={"Abs": absorption, "Det": "SDD_efficiency.txt"})
    s = model.generate_spectrum(b0=r["b0"], b1=r["b1"],
                                elements_dict={el: c / 100 for el, c in comp.items()})
    out[name] = (np.asarray(s) / np.sum(s)).tolist()
print(json.dumps(out))
"""


def other_model(model: EDXModel) -> EDXModel:
    """The model that makes the ``other`` data (see the module docstring)."""
    return replace(model, bethe_c=2.0, window=(("Si3N4", 0.15, 3.44),))


def espm_spectra(compositions: dict[str, dict[str, float]], model: EDXModel,
                 densities: dict[str, float]) -> dict[str, np.ndarray]:
    """Phase spectra (rows summing to 1) made by espm on ``model``'s energy axis, with its
    beam energy, take-off angle and thickness and the phases' densities (g/cm^3)."""
    from peers import DEFAULT_VENV, ensure_espm, venv_python

    ensure_espm(DEFAULT_VENV)
    e = model.energy
    request = {"phases": compositions, "densities": densities,
               "thickness_nm": float(model.thickness), "toa": float(model.takeoff_angle),
               "e_offset": float(e[0]), "e_scale": float(e[1] - e[0]), "e_size": int(e.size),
               "E0": float(model.beam_energy), "b0": ESPM_BREMSSTRAHLUNG[0],
               "b1": ESPM_BREMSSTRAHLUNG[1]}
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    res = subprocess.run([str(venv_python(DEFAULT_VENV)), "-c", ESPM_SCRIPT,
                          json.dumps(request)], env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"espm failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {name: np.asarray(v) for name, v in out.items()}


def dataset(sample: str, snr: str, seed: int, size: int, physics: str, base: EDXModel,
            espm: dict[str, np.ndarray] | None):
    """The sample's simulated dataset under ``physics``: for ``espm`` the sample's maps
    with espm's phase spectra, drawn again (same seed)."""
    model = other_model(base) if physics == "other" else base
    ds = sample_dataset(sample, snr=snr, seed=100 + seed, shape=(size, size), model=model)
    if physics == "espm":
        ds.spectra = np.stack([espm[name] for name in ds.phase_names])
        lam = (ds.maps @ ds.spectra) * (ds.counts_per_pixel * ds.thickness)[..., None]
        ds.counts = np.random.default_rng(100 + seed).poisson(lam).astype(np.int32)
    return ds


def run(sample: str, snr: str, physics: str, n_seeds: int, size: int, n_boot: int, b: int,
        level: float = 0.95, min_percent: float = 1.0, thickness_factor: float = 1.0,
        thickness_sigma: float | None = None, table: bool = False,
        width_tol: float | None = 0.1, film_thickness: float | None = None,
        k_factor_sd: float | None = None, thickness_from: str | None = "auto",
        no_thickness: bool = False, k_factor_file: str | None = None,
        never_pure: str = "auto") -> dict:
    """Coverage counts, half-widths, errors and timings over ``n_seeds`` noise seeds.

    ``thickness_from`` is passed to the quantification (``"none"``: None, the thickness
    given alone); ``no_thickness`` quantifies the film's data as a thin film (thickness 0
    given, as for a file without one); ``k_factor_file`` writes the model's k-factors to
    that CSV (weight basis, line labels, as a vendor's file) and quantifies with it;
    ``never_pure`` is the estimator's (``'auto'``: given the sample's elements and the
    quantifying model, as ``psnmf unmix`` gives them, so its line extrapolation runs)."""
    base = EDXModel.from_dict(load_sample(sample).get("model", {}))
    if film_thickness is not None:
        base = replace(base, thickness=float(film_thickness))
    espm = None
    if physics == "espm":
        phases = {n: normalize_composition(c) for n, c in load_sample(sample)["phases"].items()}
        dens = {n: float(dict(base.phase_densities).get(n, base.density or 4.0)) for n in phases}
        espm = espm_spectra(phases, base, dens)
    if k_factor_sd is None and physics == "same":
        k_factor_sd = 0.0                  # the model's own data: its k-factors are exact
    options: dict = {} if k_factor_sd is None else {"k_factor_sd": k_factor_sd}
    # always explicit: the bootstrap's replicates keep thickness_sigma only when it is set
    options["thickness_from"] = None if thickness_from in (None, "none") else thickness_from
    if base.thickness > 0 and (thickness_factor != 1.0 or thickness_sigma is not None):
        options["thickness"] = base.thickness * thickness_factor
        if thickness_sigma is not None:
            options["thickness_sigma"] = base.thickness * thickness_sigma
    if no_thickness:
        options["thickness"] = 0.0
        options.pop("thickness_sigma", None)
    if k_factor_file is not None:
        phases = load_sample(sample)["phases"].values()
        write_k_factor_file(k_factor_file, base, list(dict.fromkeys(
            el for comp in phases for el in comp)))
        options["k_factors"] = k_factor_file
    tot = {name: [0, 0] for name in BUDGETS}
    half: dict[str, list[float]] = {name: [] for name in BUDGETS}
    errors: list[float] = []
    seconds = []
    drawn = []
    for seed in range(n_seeds):
        ds = dataset(sample, snr, seed, size, physics, base, espm)
        k = ds.maps.shape[-1]
        lines = ({"elements": list(ds.elements), "edx_model": base}
                 if never_pure != "keep" else {})
        m = PSNMF(k, b, spectra="pure", smoothing=None, random_state=0,
                  never_pure=never_pure, **lines).fit(ds.counts)
        order = compare_to_truth(m.spectra_, m.maps_, ds.spectra, ds.maps)["order"]
        t0 = time.process_time()  # CPU seconds: robust to a shared machine
        res = bootstrap(m, ds.counts, n_boot=n_boot, elements=list(ds.elements),
                        edx_model=base, random_state=seed, quantify_options=options,
                        width_tol=width_tol)
        seconds.append(time.process_time() - t0)
        drawn.append(res.replicates.shape[0])
        truth = [ds.compositions[p] for p in ds.phase_names]
        for name, systematic in BUDGETS.items():
            i, n = coverage(res, truth, order, level=level, min_percent=min_percent,
                            systematic=systematic)
            tot[name][0] += i
            tot[name][1] += n
            iv = composition_intervals(res, level, "bias", systematic)
            for ph, comp in enumerate(truth):
                for el, val in comp.items():
                    if val >= min_percent and el in iv[int(order[ph])]:
                        lo, hi, _ = iv[int(order[ph])][el]
                        half[name].append((hi - lo) / 2)
        for ph, comp in enumerate(truth):
            est = res.compositions[int(order[ph])]
            errors += [abs(est[el] - val) for el, val in comp.items()
                       if val >= min_percent and el in est]
        if table:
            print(f"\n  {sample}, seed {seed}:")
            print_table(res, ds, order, level)
    return {"coverage": tot, "half_width": {n: float(np.median(v)) for n, v in half.items()},
            "error": float(np.median(errors)), "max_error": float(np.max(errors)),
            "seconds": float(np.mean(seconds)), "replicates": float(np.mean(drawn))}


def write_k_factor_file(path: str, model: EDXModel, elements: list[str]) -> None:
    """The model's k-factors of ``elements`` as a vendor's CSV: weight basis, the line
    label of each element's quantification family (a header ``element,k``, then
    ``# basis: weight``)."""
    from psnmf.physics import atomic_weight

    fams = {el: model.quant_family(el) for el in elements}
    k = model.k_factors(elements, fams)
    rows = [f"{model.line_label(el, fams[el])},{k[el] * atomic_weight(el):.10g}"
            for el in elements]
    with open(path, "w", encoding="utf-8") as f:
        f.write("element,k\n# basis: weight\n" + "\n".join(rows) + "\n")


def print_table(res, ds, order, level: float) -> None:
    """Truth beside the result for every phase (elements >= 0.5 at.% or quantified)."""
    rows = res.composition_rows(level=level)
    print(f"\n  {'phase':7s} {'el':3s} {'truth':>6s} {'at.%':>7s} {'+-sd':>5s}  "
          f"{'interval':>16s}  {'count':>5s} {'nmf':>5s} {'k':>5s} {'t':>5s}  in")
    for ph, name in enumerate(ds.phase_names):
        comp = ds.compositions[name]
        for r in rows:
            if r["component"] != f"#{int(order[ph])}":
                continue
            el, val = r["element"], comp.get(r["element"], 0.0)
            if r["status"] != "quantified":
                dl = r["detection_limit"]
                print(f"  {name:7s} {el:3s} {val:6.2f}  < {dl if dl is not None else 0:.2f} "
                      f"(below the detection limit)")
                continue
            b = r["budget"]
            inside = "yes" if r["low"] <= val <= r["high"] else "NO"
            print(f"  {name:7s} {el:3s} {val:6.2f} {r['at_percent']:7.2f} {r['sd']:5.2f}  "
                  f"[{r['low']:6.2f}, {r['high']:6.2f}]  {b.get('counting', 0):5.2f} "
                  f"{b.get('nmf', 0):5.2f} {b.get('k_factors', 0):5.2f} "
                  f"{b.get('thickness', 0):5.2f}  {inside}")
    print()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default="mantle")
    p.add_argument("--snr", default="medium,low")
    p.add_argument("--physics", default="same,other",
                   help="comma-separated: 'same', 'other', 'espm' (see the docstring)")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--size", type=int, default=60)
    p.add_argument("--boot", type=int, default=12)
    p.add_argument("--bin", type=int, default=4)
    p.add_argument("--min-percent", type=float, default=1.0)
    p.add_argument("--thickness-factor", type=float, default=1.0,
                   help="quantify with the true thickness times this (e.g. 1.5: 50 %% off)")
    p.add_argument("--thickness-sigma", type=float, default=None,
                   help="thickness uncertainty given, as a fraction of the true thickness")
    p.add_argument("--film-thickness", type=float, default=None,
                   help="film thickness in nm of the simulation and the quantification "
                        "(default the sample's; 0: a thin film)")
    p.add_argument("--k-factor-sd", type=float, default=None,
                   help="relative sd of the k-factors (default: 0 with --physics same, "
                        "whose k-factors are exact; the theoretical one otherwise)")
    p.add_argument("--thickness-from", default="auto",
                   choices=["auto", "electroneutrality", "none"],
                   help="quantify(thickness_from=...): 'auto' (the default) refines a "
                        "thickness given with its sd (here the density spread, or "
                        "--thickness-sigma) by an ionic phase's charge balance; "
                        "'electroneutrality' also without an sd or a thickness; 'none' "
                        "takes the thickness given")
    p.add_argument("--no-thickness", action="store_true",
                   help="quantify the film's data as a thin film (no thickness given, as "
                        "a file without one)")
    p.add_argument("--k-factor-file", default=None, metavar="CSV",
                   help="write the model's k-factors to this CSV (weight basis, line "
                        "labels) and quantify with the file")
    p.add_argument("--table", action="store_true",
                   help="print every seed's composition tables, truth beside result")
    p.add_argument("--width-tol", default="0.1",
                   help="the bootstrap's stopping rule (psnmf.uncertainty.bootstrap); 'none' "
                        "draws every replicate")
    p.add_argument("--never-pure", default="auto", choices=["auto", "keep", "lines"],
                   help="the estimator's never_pure, given the sample's elements and the "
                        "quantifying model ('keep': the never-pure vertices kept, as "
                        "before the line extrapolation)")
    a = p.parse_args(argv)
    width_tol = None if a.width_tol.lower() == "none" else float(a.width_tol)
    cells = "".join(f" {name + ' 95%':>18s} {'hw':>5s}" for name in BUDGETS)
    print(f"{'sample':9s} {'snr':6s} {'physics':7s}{cells} {'|err|':>6s} {'max':>5s} "
          f"{'s/boot':>7s} {'reps':>5s}")
    pooled = {name: [0, 0] for name in BUDGETS}
    for sample in a.samples.split(","):
        for physics in a.physics.split(","):
            if physics not in PHYSICS:
                p.error(f"--physics: {physics!r} is not one of {PHYSICS}")
            for snr in a.snr.split(","):
                r = run(sample, snr, physics, a.seeds, a.size, a.boot, a.bin,
                        min_percent=a.min_percent, thickness_factor=a.thickness_factor,
                        thickness_sigma=a.thickness_sigma, table=a.table,
                        width_tol=width_tol, film_thickness=a.film_thickness,
                        k_factor_sd=a.k_factor_sd, thickness_from=a.thickness_from,
                        no_thickness=a.no_thickness, k_factor_file=a.k_factor_file,
                        never_pure=a.never_pure)
                row = ""
                for name, (i, n) in r["coverage"].items():
                    pooled[name][0] += i
                    pooled[name][1] += n
                    row += f" {i:4d}/{n:4d} {i / max(n, 1):7.1%} {r['half_width'][name]:5.2f}"
                print(f"{sample:9s} {snr:6s} {physics:7s}{row} {r['error']:6.2f} "
                      f"{r['max_error']:5.2f} {r['seconds']:7.1f} {r['replicates']:5.1f}",
                      flush=True)
    row = "".join(f" {i:4d}/{n:4d} {i / max(n, 1):7.1%} {'':5s}" for i, n in pooled.values())
    print(f"{'pooled':9s} {'':6s} {'':7s}{row}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
