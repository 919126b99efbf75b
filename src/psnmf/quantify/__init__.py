"""Quantification of EDX spectra: line intensities by fitting, then composition.

Two steps:

1. :func:`fit_lines` -- the spectrum is fitted as a non-negative combination of
   line-family templates (one per element and family, with the line energies,
   relative weights and detector resolution of the forward model
   :class:`psnmf.physics.EDXModel`, the model the simulator uses) plus a smooth
   non-negative continuum basis (the model's Kramers continuum shape times Bernstein
   polynomials of the energy, so the model continuum is exactly representable and real
   continua are approximated smoothly). Overlapping lines (Nd L / Sm L, Y L / Zr L, ...) are
   separated by the fit. The fit maximises the Poisson likelihood (iteratively
   reweighted non-negative least squares with weights ``1 / mu``, whose fixed point
   satisfies the Poisson score equations). Families much weaker than the element's
   strongest one (relative detected intensity below ``min_family_fraction``) are
   tied to the quantification family with the model's ratio.
   In a film of finite thickness the templates are those of the film (:class:`Film`):
   each line and each continuum channel absorbed by its own factor, so that a family
   whose lines straddle an absorption edge of the film (Ti L across the N K edge in
   TiN) and the continuum's drops at the edges keep their true shapes.
2. Compositions from the intensities by one of exspy's three methods
   (``EDSTEMSpectrum.quantification``), chosen with ``quantify(method=...)``:

   * ``"CL"`` -- :func:`cliff_lorimer`, ``C_A = k_A I_A / sum_B k_B I_B`` (atomic
     fractions; Cliff & Lorimer, J. Microsc. 103 (1975) 203), with k-factors from the
     same forward model (:meth:`EDXModel.k_factors`) or from a user file
     (:func:`read_k_factors`);
   * ``"zeta"`` -- :func:`zeta_factor`, ``rho t C_A = zeta_A I_A / N_e`` (Watanabe &
     Williams, J. Microsc. 221 (2006) 89) from the beam current and live time: mass
     fractions and the mass thickness;
   * ``"cross_section"`` -- :func:`cross_section`, ``N_A = I_A / (sigma_A D)`` with
     ``D`` the electron dose per area: atomic fractions and the number of atoms.

   With a specimen thickness (CL) or always (zeta, cross-section, whose mass
   thickness comes out of the data), the thin-film self-absorption is corrected by
   iteration (:func:`absorption_factors`): the intensities are divided by the
   absorption factor ``A = (1 - exp(-chi)) / chi`` of their line family in a film of
   the current composition, and the composition is recomputed until it changes by
   less than ``tol`` at.%, as exspy does (``absorption_correction=True``).
   :func:`quantify` then fits the spectrum again with the templates of the film just
   found, until the composition is that of the film the fit assumed.

Modules
-------
:mod:`~psnmf.quantify.kfactors` (k-factor tables and files, the uncertainty of theoretical
k-factors), :mod:`~psnmf.quantify.linefit` (the line fit), :mod:`~psnmf.quantify.methods`
(CL, zeta, cross-section formulas), :mod:`~psnmf.quantify.absorption` (thin-film
absorption), :mod:`~psnmf.quantify.electroneutrality` (the film's mass thickness from
the charge balance of an ionic phase, ``quantify(thickness_from=...)``),
:mod:`~psnmf.quantify.calibration` (k-factors from an internal standard),
:mod:`~psnmf.quantify.result` (:class:`Quantification`), :mod:`~psnmf.quantify.core`
(:func:`quantify`, which puts them together) and :mod:`~psnmf.quantify.maps`
(:func:`composition_maps`: per-pixel compositions of the denoised data from the component
quantifications, with sigma maps); every public name is imported here.

Where psnmf follows exspy and where not
---------------------------------------
The three formulas, the fixed-point absorption loop and the units (zeta factors in
kg/m^2 on the weight basis, cross-sections in barns, doses from nA and s, mass
thickness in kg/m^2) are exspy's; ``tests/test_quant_methods.py`` checks that the
same intensities give exspy's compositions. psnmf evaluates them itself instead of
calling ``exspy._misc.eds.utils`` because (i) those functions are private to exspy,
(ii) exspy's Cliff-Lorimer sets to zero every intensity below 0.1, which zeroes
normalised component spectra, (iii) it propagates no uncertainty, and (iv) exspy's
absorption correction has three choices psnmf does not share by default: the mass
thickness from the mass-weighted mean of *element* densities (a third of the real
density of an oxide, whose oxygen counts as a gas), FFAST attenuation coefficients
at the principal line's energy only, and a stop when the composition changes by
less than 0.5 wt%. psnmf takes the density given (or the model's), uses xraylib's
coefficients (those of its forward model and simulator) averaged over all lines of
the fitted family with their detected weights (the fitted intensity is the whole
family), and iterates to ``tol``. ``database="exspy"`` with ``density=None``
reproduces exspy's choices.

A thickness given can be far off (a log-ratio EELS thickness, a guessed one). For an ionic
phase (oxide, nitride, halide) the spectrum itself measures the absorbing mass thickness
(Van Cappellen 1990): the one at which the corrected composition is neutral with the
elements' valences. By default (``thickness_from="auto"``) it refines a thickness given
with its sd, a log-normal prior on the mass thickness (a thickness and a density are
known to within a factor): combined by inverse variance in log mass thickness, unless
they disagree there by more than 3 sd;
``thickness_from="electroneutrality"`` uses it also without an sd or without a thickness,
``"none"`` never (exspy's correction takes the thickness given).

Uncertainties come from counting statistics: the covariance of the fitted
coefficients is the inverse Fisher information of the Poisson likelihood,
``(A^T diag(1/mu) A)^-1``, propagated to intensities and (with the correlations)
to atomic percentages by the delta method (absorption factors held at their
converged values). They are reported when the spectrum is in counts (integer values)
or when ``total_counts`` is given (the spectrum is then rescaled to that many counts).
The k-factors (and zeta factors, cross-sections) add a part of their own: theoretical
ones carry a stated relative standard deviation (:func:`theoretical_k_sd`): that of the
emission physics by family and line energy (:data:`THEORETICAL_K_SD`, from the literature
on the accuracy of calculated k-factors: 15 % for K lines below 1 keV, 10 % for 1-2 keV,
5 % above, 15-25 % for L and M lines) and that of the detector's unknown window
(:func:`window_sd`, the spread of the efficiency over :data:`DETECTOR_WINDOWS`: 43 % at
O K, under 5 % above 1.2 keV) in quadrature; a
k-factor file may give its own (:func:`read_k_factors`), and calibrated ones carry the
error of their standard (:func:`calibrate_k_factors`); the part is propagated to at.% by
Monte Carlo (:func:`k_factor_spread`). A thickness uncertainty (``thickness_sigma``)
adds a part of its own, the change of the corrected composition between
``t - sigma`` and ``t + sigma`` (linearised: one solve each side, because every solve
iterates the absorption correction). Every part is kept in
:attr:`Quantification.uncertainty_budget` and ``uncertainty`` is their quadrature sum
(the parts are independent).

Detection limits, exclusions and overlaps
-----------------------------------------
An element whose fitted intensity is below ``detection_sigma`` (3) times its counting
standard deviation gets no composition; it is reported in
:attr:`Quantification.below_detection` with its detection limit in at.% (the
composition its ``3 sigma`` intensity would give). Elements in ``exclude_elements`` are
fitted (their lines are in the spectrum) but left out of the totals. A secondary family
whose free fit overlaps another element's lines (Hf M on Si K, Mo L on S K) is tied to
its element's quantification family with the model's ratio, so that the element's other
lines decide; quantified elements whose intensities stay correlated beyond
``overlap_threshold`` (Ti K / Ba L at 200 kV below 20 keV) are listed in
:attr:`Quantification.unresolved`.

Examples
--------
>>> from psnmf.physics import EDXModel
>>> model = EDXModel()
>>> spectrum = model.phase_spectrum({"Mg": 40, "Fe": 10, "O": 50})
>>> q = quantify(spectrum, ["Mg", "Fe", "O"], model=model)
>>> round(q.composition["Fe"], 3)
10.0
"""

from __future__ import annotations

from psnmf.quantify.absorption import absorption_factors
from psnmf.quantify.calibration import calibrate_k_factors
from psnmf.quantify.core import quantify, quantify_spectra
from psnmf.quantify.kfactors import (
    DETECTOR_WINDOWS,
    THEORETICAL_K_SD,
    KFactors,
    k_factor_spread,
    read_k_factors,
    theoretical_k_sd,
    window_sd,
)
from psnmf.quantify.linefit import Film, LineFit, fit_lines, model_for_signal
from psnmf.quantify.maps import CompositionMaps, composition_maps
from psnmf.quantify.methods import METHODS, cliff_lorimer, cross_section, electron_dose, zeta_factor
from psnmf.quantify.result import Quantification

__all__ = [
    "KFactors",
    "Film",
    "LineFit",
    "Quantification",
    "METHODS",
    "read_k_factors",
    "THEORETICAL_K_SD",
    "theoretical_k_sd",
    "DETECTOR_WINDOWS",
    "window_sd",
    "k_factor_spread",
    "calibrate_k_factors",
    "fit_lines",
    "cliff_lorimer",
    "zeta_factor",
    "cross_section",
    "electron_dose",
    "absorption_factors",
    "quantify",
    "quantify_spectra",
    "model_for_signal",
    "CompositionMaps",
    "composition_maps",
]
