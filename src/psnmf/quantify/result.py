"""The result of a quantification: :class:`Quantification`."""

from __future__ import annotations

from dataclasses import dataclass, field

from psnmf.quantify.electroneutrality import NeutralThickness
from psnmf.quantify.linefit import LineFit

__all__ = ["Quantification"]


@dataclass
class Quantification:
    """Result of :func:`quantify`.

    Attributes
    ----------
    composition : dict
        Element -> atomic %.
    uncertainty : dict or None
        Element -> one standard deviation in atomic %: the quadrature sum of the parts
        in ``uncertainty_budget`` (counting statistics, and the thickness when its
        uncertainty was given).
    lines : dict
        Element -> line label of the family used, e.g. ``"Nd_La"``.
    k_factors : dict
        Element -> atomic-basis factor used: the k-factor (CL), ``zeta / M`` (zeta) or
        ``1 / sigma`` (cross-section), before absorption.
    intensities : dict
        Element -> fitted family intensity (counts, as detected: absorbed).
    intensity_sigma : dict or None
        Element -> its standard deviation.
    fit : LineFit
        The full fit.
    method : {"CL", "zeta", "cross_section"}
        The quantification method.
    absorption : dict or None
        Element -> absorption factor ``A`` its intensity was divided by (None when no
        absorption correction was made).
    thickness : float or None
        Specimen thickness in nm used (CL) or implied by the mass thickness and the
        density (zeta, cross-section, when the density is known).
    density : float or None
        Density in g/cm^3 used for the mass thickness (CL with absorption).
    mass_thickness : float or None
        ``rho t`` in kg/m^2: measured (zeta, cross-section) or ``density x thickness``
        (CL with absorption).
    mass_thickness_sigma : float or None
        Its standard deviation: counting (zeta), or that of the mass thickness used
        when it is estimated (CL with ``thickness_from``).
    atoms : dict or None
        Element -> number of atoms under the probe (cross-section).
    absorption_iterations : int
        Iterations of the absorption loop (0 without absorption).
    uncertainty_budget : dict
        Part name -> element -> standard deviation in atomic %: ``"counting"`` (the
        Poisson noise of the spectrum, when it is in counts), ``"k_factors"`` (the
        k-factor uncertainty, :func:`k_factor_spread`), ``"thickness"`` (when a
        thickness uncertainty was given, or the mass thickness estimated).
    k_factor_sd : dict
        Element -> relative sd of its k-factor used for the ``"k_factors"`` part.
    excluded : list of str
        Elements fitted but left out of the composition (``exclude_elements``).
    below_detection : dict
        Element -> detection limit in at.% (``detection_sigma`` times the counting sd
        of its intensity, as a composition; None without a k-factor) of the elements
        whose fitted intensity is not significant; they have no composition.
    significance : dict or None
        Element -> fitted intensity / its counting sd.
    unresolved : list of tuple
        ``(element, element, correlation)`` of quantified elements whose fitted
        intensities correlate beyond the fit's ``overlap_threshold``: overlapping
        families the fit separates only partly (their split rests on the model's
        line ratios).
    notes : list of str
        What the numbers leave out (e.g. k-factors given without an uncertainty).
    thickness_estimate : NeutralThickness or None
        The mass thickness estimated from electroneutrality (CL with
        ``thickness_from="electroneutrality"``): the estimate, its sd parts, and how
        it was combined with the thickness given; None when not estimated.
    """

    composition: dict[str, float]
    uncertainty: dict[str, float] | None
    lines: dict[str, str]
    k_factors: dict[str, float]
    intensities: dict[str, float]
    intensity_sigma: dict[str, float] | None
    fit: LineFit
    method: str = "CL"
    absorption: dict[str, float] | None = None
    thickness: float | None = None
    density: float | None = None
    mass_thickness: float | None = None
    mass_thickness_sigma: float | None = None
    atoms: dict[str, float] | None = None
    absorption_iterations: int = 0
    uncertainty_budget: dict[str, dict[str, float]] = field(default_factory=dict)
    k_factor_sd: dict[str, float] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    below_detection: dict[str, float | None] = field(default_factory=dict)
    significance: dict[str, float] | None = None
    unresolved: list[tuple[str, str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thickness_estimate: NeutralThickness | None = None

    def table(self) -> str:
        """A plain-text table: element, line, intensity, k-factor, A, at.% (+- sigma)."""
        rows = [
            f"{'element':8s} {'line':7s} {'intensity':>12s} {'k':>8s} {'A':>6s} "
            f"{'at.%':>8s} {'+-':>6s}"
        ]
        for el, c in self.composition.items():
            err = f"{self.uncertainty[el]:6.2f}" if self.uncertainty else "     -"
            a = f"{self.absorption[el]:6.3f}" if self.absorption else "     -"
            rows.append(
                f"{el:8s} {self.lines[el]:7s} {self.intensities[el]:12.5g} "
                f"{self.k_factors[el]:8.4f} {a} {c:8.2f} {err}"
            )
        for el, limit in self.below_detection.items():
            dl = f"< {limit:.2f}" if limit is not None else "< DL"
            rows.append(f"{el:8s} {self.lines[el]:7s} {self.intensities[el]:12.5g} "
                        f"{'':8s} {'':6s} {dl:>8s} (below the detection limit)")
        for el in self.excluded:
            rows.append(f"{el:8s} {self.lines[el]:7s} {self.intensities[el]:12.5g} "
                        "excluded from the totals")
        for a, b, r in self.unresolved:
            rows.append(f"{a}/{b}: overlapping lines, intensities correlated {r:+.2f}")
        if self.mass_thickness is not None:
            sd = (f" +- {self.mass_thickness_sigma:.2g}"
                  if self.mass_thickness_sigma is not None else "")
            how = " from electroneutrality" if self.thickness_estimate is not None else ""
            rows.append(f"mass thickness{how} {self.mass_thickness:.4g}{sd} kg/m^2"
                        + (f" (thickness {self.thickness:.4g} nm)" if self.thickness else ""))
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()
