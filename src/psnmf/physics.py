"""Physical forward model of a thin-specimen STEM-EDX spectrum.

The model produces, for a phase of given composition (atomic %), the expected
X-ray spectrum on a fixed energy axis: characteristic lines of every element
(K, L and M families) plus a bremsstrahlung continuum, seen through a
silicon-drift detector (energy-dependent resolution and efficiency).

Every number comes from a named source:

* **Atomic data** (line energies, radiative rates, fluorescence yields,
  Coster-Kronig transition probabilities, edge energies, subshell occupancies,
  mass attenuation coefficients) come from ``xraylib`` (Schoonjans et al.,
  Spectrochim. Acta B 66 (2011) 776; data of Elam, Ravel & Sieber, Radiat.
  Phys. Chem. 63 (2002) 121 and Krause, J. Phys. Chem. Ref. Data 8 (1979)
  307). Nothing is typed in by hand.
* **Inner-shell ionisation cross-sections** (K, L1-L3, M1-M5): the relativistic
  Bethe formula (Bethe, Ann. Phys. 5 (1930) 325; relativistic form of Fano,
  Phys. Rev. 95 (1954) 1198 and Inokuti, Rev. Mod. Phys. 43 (1971) 297, as used
  for TEM-EDX by Zaluzec (1984) and Williams & Carter, *Transmission Electron
  Microscopy*, 2nd ed. (2009), ch. 35), with the Bethe constants
  ``b_s = 0.35``, ``c_s = 1`` per subshell electron (Powell, Rev. Mod. Phys. 48
  (1976) 33, as tabulated by Goldstein et al., *Scanning Electron Microscopy and
  X-ray Microanalysis*, 3rd ed. (2003), eq. 3.7). Powell's constants were fitted
  to K-shell data; applying them per electron to the L and M subshells is the
  usual "scaled Bethe" approximation, accurate to a few tens of percent for L and
  M shells. Since quantification uses k-factors from this same model, simulated
  data are quantified without bias.
* **Vacancy cascades** within the L and M shells use the Coster-Kronig
  probabilities of xraylib; the transfer of K vacancies to the L shell is
  neglected (K ionisation of the heavy elements concerned is <1 % of their L
  ionisation at 200 kV).
* **Detector resolution**: ``FWHM(E)^2 = FWHM_MnKa^2 + 2.5 (E - E_MnKa)`` with
  energies in eV (Fiori & Newbury, SEM/1978/I p. 401; Goldstein et al. 2003,
  p. 315; the same law as ``exspy``'s ``get_FWHM_at_Energy``). Lines are Gaussian,
  integrated exactly over each channel.
* **Detector efficiency**: transmission through a window and the silicon dead
  layer times absorption in the active silicon, ``exp(-sum mu_i rho_i t_i) *
  (1 - exp(-tau_Si rho_Si t_active))``, with total attenuation and
  photo-absorption coefficients from xraylib (``CS_Total_CP`` / ``CS_Photo_CP``).
* **Continuum**: Kramers' thin-target bremsstrahlung cross-section,
  ``d sigma / dE = (16 pi / (3 sqrt 3)) alpha r_e^2 Z^2 / (beta^2 E)`` per atom
  (Kramers, Phil. Mag. 46 (1923) 836; thin-target form as in Koch & Motz,
  Rev. Mod. Phys. 31 (1959) 920, formula 3BN(a) with Kramers' Gaunt factor
  ``pi / sqrt 3``). For a thin film the continuum per atom scales as ``Z^2``
  (not ``Z`` as in Kramers' thick-target law; see Chapman, Nicholson & Crozier,
  J. Microsc. 136 (1984) 179). Emission is taken as isotropic; ``continuum_scale``
  rescales it.
* **Physical constants** (Bohr radius, Rydberg energy, electron rest energy,
  classical electron radius, fine-structure constant): CODATA values of
  :mod:`scipy.constants`.

The specimen is treated as thin: no absorption or secondary fluorescence in the
specimen (the Cliff-Lorimer thin-film criterion; Cliff & Lorimer, J. Microsc. 103
(1975) 203). Escape and sum peaks are not modelled.

Units: energies in keV, cross-sections in cm^2 per atom per incident electron.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.constants as sc
import xraylib
from scipy.special import erf

__all__ = [
    "EDXModel",
    "EnergyAxis",
    "Line",
    "FAMILIES",
    "atomic_number",
    "atomic_weight",
    "normalize_composition",
    "ionization_cross_section",
    "family_lines",
]

#: Line families handled by the model, with their subshells (IUPAC names).
FAMILIES: dict[str, tuple[str, ...]] = {
    "K": ("K",),
    "L": ("L1", "L2", "L3"),
    "M": ("M1", "M2", "M3", "M4", "M5"),
}

#: HyperSpy/exspy name of the principal line of each family (used for labels).
HYPERSPY_LINE = {"K": "Ka", "L": "La", "M": "Ma"}

# --- physical constants (CODATA via scipy.constants) -------------------------
_BOHR_CM = sc.physical_constants["Bohr radius"][0] * 100.0
_RYDBERG_KEV = sc.physical_constants["Rydberg constant times hc in eV"][0] * 1e-3
#: pi e^4 = 4 pi a0^2 R^2 in cm^2 keV^2 (6.514e-20; the "6.51e-20" of Powell 1976).
PI_E4 = 4.0 * math.pi * _BOHR_CM**2 * _RYDBERG_KEV**2
#: electron rest energy in keV.
M0C2_KEV = sc.physical_constants["electron mass energy equivalent in MeV"][0] * 1e3
_RE_CM = sc.physical_constants["classical electron radius"][0] * 100.0
#: Kramers' thin-target constant (16 pi / 3 sqrt 3) alpha r_e^2, in cm^2.
KRAMERS_CONSTANT = 16.0 * math.pi / (3.0 * math.sqrt(3.0)) * sc.fine_structure * _RE_CM**2

#: Lowest photon energy (keV) of xraylib's attenuation tables; softer lines are ignored.
MIN_PHOTON_ENERGY = 0.1

#: Bethe constants per subshell electron (Powell 1976 via Goldstein et al. 2003).
BETHE_B = 0.35
BETHE_C = 1.0

_IUPAC_LINE = re.compile(r"^(K|L[1-3]|M[1-5])(L[1-3]|M[1-5]|N[1-7]|O[1-7]|P[1-5]|Q[1-3])_LINE$")


def atomic_number(element: str) -> int:
    """Atomic number of a chemical symbol, with a clear error for unknown ones.

    Parameters
    ----------
    element : str
        Chemical symbol, e.g. ``"Fe"`` (case as in the periodic table).

    Returns
    -------
    int
        The atomic number.

    Examples
    --------
    >>> atomic_number("Fe")
    26
    """
    if not isinstance(element, str) or not re.fullmatch(r"[A-Z][a-z]?", element):
        raise ValueError(
            f"unknown element {element!r}: give a chemical symbol such as 'Fe' or 'Mg' "
            "(capital first letter)"
        )
    try:
        z = int(xraylib.SymbolToAtomicNumber(element))
    except ValueError:
        z = 0
    if z <= 0:
        raise ValueError(f"unknown element {element!r}: not a chemical symbol known to xraylib")
    return z


def atomic_weight(element: str) -> float:
    """Standard atomic weight (g/mol) of a chemical symbol, from xraylib.

    Examples
    --------
    >>> round(atomic_weight("Fe"), 2)
    55.85
    """
    return float(xraylib.AtomicWeight(atomic_number(element)))


def normalize_composition(
    composition: dict[str, float], name: str = "composition", tolerance: float = 2.0
) -> dict[str, float]:
    """Validate a composition in atomic % and rescale it to sum exactly 100.

    Parameters
    ----------
    composition : dict of str to float
        Element symbol to atomic percent.
    name : str
        Name used in error messages (e.g. the phase name).
    tolerance : float
        Accepted deviation of the sum from 100 at.% before rescaling.

    Returns
    -------
    dict of str to float
        The composition rescaled to sum to 100, zero entries removed.
    """
    if not isinstance(composition, dict) or not composition:
        raise ValueError(
            f"{name}: give a non-empty mapping element -> atomic %, e.g. {{'Mg': 50, 'O': 50}}"
        )
    out: dict[str, float] = {}
    for element, value in composition.items():
        atomic_number(element)
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: atomic % of {element} is {value!r}, not a number") from None
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}: atomic % of {element} is {v}; it must be finite and >= 0")
        if v > 0:
            out[element] = v
    total = sum(out.values())
    if abs(total - 100.0) > tolerance:
        hint = " (it looks like fractions: multiply by 100)" if abs(total - 1.0) < 0.05 else ""
        raise ValueError(
            f"{name}: atomic percentages sum to {total:.3g}, expected 100 (within "
            f"{tolerance:g}){hint}"
        )
    return {el: 100.0 * v / total for el, v in out.items()}


def _xrl(func: Any, *args: Any) -> float:
    """Call an xraylib function, returning 0.0 where the database has no value."""
    try:
        return float(func(*args))
    except ValueError:
        return 0.0


@lru_cache(maxsize=1)
def _iupac_lines() -> tuple[tuple[str, str, int], ...]:
    """All IUPAC line macros of xraylib as (initial subshell, name, macro)."""
    out = []
    for name in dir(xraylib):
        m = _IUPAC_LINE.match(name)
        if m:
            out.append((m.group(1), name[: -len("_LINE")], int(getattr(xraylib, name))))
    return tuple(sorted(out))


def ionization_cross_section(z: int, shell: str, beam_energy: float) -> float:
    """Electron-impact ionisation cross-section of one subshell (relativistic Bethe).

    ``sigma = pi e^4 n_s b_s / (T' E_s) [ln(c_s T'/E_s) - ln(1 - beta^2) - beta^2]``
    with ``T' = m0 v^2 / 2``, ``n_s`` the subshell occupancy and ``E_s`` its edge
    energy (xraylib), ``b_s = 0.35``, ``c_s = 1`` (Powell 1976). Bethe (1930),
    relativistic form of Fano (1954) / Inokuti (1971).

    Parameters
    ----------
    z : int
        Atomic number.
    shell : str
        Subshell, ``"K"``, ``"L1"``...``"L3"``, ``"M1"``...``"M5"``.
    beam_energy : float
        Incident electron energy in keV.

    Returns
    -------
    float
        Cross-section in cm^2 (0 below the edge or where data are missing).
    """
    macro = getattr(xraylib, f"{shell}_SHELL")
    edge = _xrl(xraylib.EdgeEnergy, z, macro)
    n_s = _xrl(xraylib.ElectronConfig, z, macro)
    if edge <= 0 or n_s <= 0 or beam_energy <= edge:
        return 0.0
    gamma = 1.0 + beam_energy / M0C2_KEV
    beta2 = 1.0 - 1.0 / gamma**2
    t_eff = 0.5 * M0C2_KEV * beta2  # m0 v^2 / 2 in keV
    bracket = math.log(BETHE_C * t_eff / edge) - math.log(1.0 - beta2) - beta2
    if bracket <= 0:
        return 0.0
    return PI_E4 * n_s * BETHE_B / (t_eff * edge) * bracket


@dataclass(frozen=True)
class Line:
    """One characteristic X-ray line.

    Attributes
    ----------
    element : str
        Chemical symbol.
    family : str
        ``"K"``, ``"L"`` or ``"M"``.
    name : str
        IUPAC transition, e.g. ``"KL3"`` (Ka1) or ``"L3M5"`` (La1).
    energy : float
        Line energy in keV (xraylib ``LineEnergy``).
    cross_section : float
        X-ray production cross-section in cm^2 per atom per electron: vacancies
        in the initial subshell (ionisation plus Coster-Kronig transfers) times
        fluorescence yield times radiative rate.
    """

    element: str
    family: str
    name: str
    energy: float
    cross_section: float


@lru_cache(maxsize=512)
def _family_lines_cached(element: str, family: str, beam_energy: float) -> tuple[Line, ...]:
    z = atomic_number(element)
    shells = FAMILIES[family]
    sigma = {s: ionization_cross_section(z, s, beam_energy) for s in shells}
    # Vacancy distribution after Coster-Kronig transitions (xraylib probabilities).
    vac: dict[str, float] = {}
    for i, s in enumerate(shells):
        n = sigma[s]
        for j in range(i):
            src = shells[j]
            macro = getattr(xraylib, f"F{family}{src[1:]}{s[1:]}_TRANS", None)
            if macro is not None:
                n += _xrl(xraylib.CosKronTransProb, z, macro) * vac[src]
        vac[s] = n
    lines = []
    for shell, name, macro in _iupac_lines():
        if shell not in shells or vac.get(shell, 0.0) <= 0:
            continue
        rate = _xrl(xraylib.RadRate, z, macro)
        energy = _xrl(xraylib.LineEnergy, z, macro)
        if rate <= 0 or energy <= 0:
            continue
        omega = _xrl(xraylib.FluorYield, z, getattr(xraylib, f"{shell}_SHELL"))
        xs = vac[shell] * omega * rate
        if xs > 0:
            lines.append(Line(element, family, name, energy, xs))
    return tuple(lines)


def family_lines(element: str, family: str, beam_energy: float = 200.0) -> list[Line]:
    """All lines of one family of an element with their production cross-sections.

    Parameters
    ----------
    element : str
        Chemical symbol.
    family : {"K", "L", "M"}
        Line family.
    beam_energy : float
        Beam energy in keV.

    Returns
    -------
    list of Line
        Possibly empty (family not excited, or no data).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown line family {family!r}: use one of {sorted(FAMILIES)}")
    return list(_family_lines_cached(element, family, float(beam_energy)))


@dataclass(frozen=True)
class EnergyAxis:
    """A uniform energy axis: channel ``i`` is centred on ``offset + i * scale`` keV."""

    offset: float
    scale: float
    size: int

    @property
    def values(self) -> np.ndarray:
        """Channel centres in keV."""
        return self.offset + self.scale * np.arange(self.size)

    @property
    def edges(self) -> np.ndarray:
        """Channel boundaries in keV (``size + 1`` values)."""
        return self.offset + self.scale * (np.arange(self.size + 1) - 0.5)

    def index(self, energy: float) -> int:
        """Index of the channel containing ``energy`` (keV)."""
        return int(round((energy - self.offset) / self.scale))


#: Default detector window: ultra-thin silicon nitride, 0.1 um (a typical TEM
#: SDD window; density of Si3N4 3.44 g/cm^3). Entries are (formula, um, g/cm^3).
DEFAULT_WINDOW: tuple[tuple[str, float, float], ...] = (("Si3N4", 0.10, 3.44),)


@dataclass(frozen=True)
class EDXModel:
    """Forward model of thin-specimen EDX spectra (see the module docstring).

    Parameters
    ----------
    beam_energy : float
        Beam energy in keV (200 kV).
    e_min, e_max : float
        Energy range in keV; channel ``i`` is centred on ``e_min + i * channel_width``.
    channel_width : float
        Channel width in keV (10 eV).
    fwhm_mn_ka : float
        Detector FWHM at Mn Ka in keV (130 eV).
    fano_slope : float
        Slope of FWHM^2 versus energy in eV (2.5, Fiori & Newbury 1978).
    window : tuple of (formula, thickness um, density g/cm^3)
        Absorbing layers in front of the detector (default 0.1 um Si3N4).
    dead_layer : float
        Silicon dead layer in um (0.05 um).
    active_thickness : float
        Active silicon thickness in um (450 um, typical SDD).
    continuum_scale : float
        Multiplier of the Kramers continuum (1 = Kramers' cross-section).

    Examples
    --------
    >>> model = EDXModel()
    >>> model.axis.size
    1980
    >>> spectrum = model.phase_spectrum({"Mg": 50, "O": 50})
    >>> round(float(spectrum.sum()), 6)
    1.0
    """

    beam_energy: float = 200.0
    e_min: float = 0.2
    e_max: float = 20.0
    channel_width: float = 0.01
    fwhm_mn_ka: float = 0.130
    fano_slope: float = 2.5
    window: tuple[tuple[str, float, float], ...] = field(default=DEFAULT_WINDOW)
    dead_layer: float = 0.05
    active_thickness: float = 450.0
    continuum_scale: float = 1.0

    def __post_init__(self) -> None:
        checks = {
            "beam_energy": self.beam_energy,
            "channel_width": self.channel_width,
            "fwhm_mn_ka": self.fwhm_mn_ka,
            "active_thickness": self.active_thickness,
        }
        for key, value in checks.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"EDXModel: {key} must be a positive number, got {value!r}")
        if not (0 <= self.e_min < self.e_max):
            raise ValueError(
                f"EDXModel: need 0 <= e_min < e_max (keV), got e_min={self.e_min}, "
                f"e_max={self.e_max}"
            )
        if self.dead_layer < 0 or self.continuum_scale < 0:
            raise ValueError("EDXModel: dead_layer and continuum_scale must be >= 0")
        if self.fwhm_mn_ka > 1.0:
            raise ValueError(
                f"EDXModel: fwhm_mn_ka={self.fwhm_mn_ka} looks like eV; give it in keV (0.130)"
            )
        # Normalise the window to a tuple of tuples (hashable, JSON-friendly).
        object.__setattr__(
            self, "window", tuple((str(f), float(t), float(d)) for f, t, d in self.window)
        )
        for formula, _, _ in self.window:
            if xraylib.CompoundParser(formula) is None:  # pragma: no cover - raises instead
                raise ValueError(f"EDXModel: cannot parse window material {formula!r}")

    # --- construction -----------------------------------------------------
    @classmethod
    def for_axis(cls, offset: float, scale: float, size: int, **kwargs: Any) -> EDXModel:
        """A model on a given energy axis (e.g. that of a measured spectrum)."""
        return cls(e_min=offset, e_max=offset + scale * size, channel_width=scale, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Parameters as a JSON-serialisable dictionary."""
        d = asdict(self)
        d["window"] = [list(w) for w in self.window]
        return d

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> EDXModel:
        """Inverse of :meth:`to_dict`; unknown keys raise a clear error."""
        known = set(cls.__dataclass_fields__)
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"unknown EDX model parameter(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        params = dict(params)
        if "window" in params:
            params["window"] = tuple(tuple(w) for w in params["window"])
        return cls(**params)

    # --- axis and detector --------------------------------------------------
    @property
    def axis(self) -> EnergyAxis:
        """The energy axis (channel centres from ``e_min`` in steps of ``channel_width``)."""
        size = int(round((self.e_max - self.e_min) / self.channel_width))
        return EnergyAxis(float(self.e_min), float(self.channel_width), size)

    @property
    def energy(self) -> np.ndarray:
        """Channel centres in keV."""
        return self.axis.values

    def fwhm(self, energy: float | np.ndarray) -> np.ndarray:
        """Detector FWHM in keV at ``energy`` (keV), Fiori & Newbury (1978) law."""
        e_mn = _xrl(xraylib.LineEnergy, 25, xraylib.KL3_LINE)  # Mn Ka1, xraylib
        e = np.asarray(energy, dtype=float)
        f2 = (self.fwhm_mn_ka * 1e3) ** 2 + self.fano_slope * (e - e_mn) * 1e3
        return np.sqrt(np.maximum(f2, 1.0)) * 1e-3

    def efficiency(self, energy: float | np.ndarray) -> np.ndarray:
        """Detector efficiency (0..1): window and dead layer transmission, Si absorption."""
        e = np.atleast_1d(np.asarray(energy, dtype=float))
        out = np.empty_like(e)
        for i, ei in enumerate(e):
            out[i] = _efficiency(ei, self.window, self.dead_layer, self.active_thickness)
        return out.reshape(np.shape(energy))

    # --- lines ----------------------------------------------------------------
    def lines(self, element: str, family: str | None = None) -> list[Line]:
        """Lines of an element (one family or all) that fall in the energy range."""
        fams = FAMILIES if family is None else [family]
        lo = max(self.e_min - 3 * float(self.fwhm(self.e_min)), MIN_PHOTON_ENERGY)
        hi = self.e_max + 3 * float(self.fwhm(self.e_max))
        out = []
        for fam in fams:
            out.extend(
                ln for ln in family_lines(element, fam, self.beam_energy) if lo <= ln.energy <= hi
            )
        return out

    def families(self, element: str) -> list[str]:
        """Families of ``element`` with at least one line in the energy range."""
        return [fam for fam in FAMILIES if self.lines(element, fam)]

    def main_line(self, element: str, family: str) -> Line:
        """The strongest line of a family (in the range)."""
        lines = self.lines(element, family)
        if not lines:
            raise ValueError(
                f"{element} has no {family} lines between {self.e_min} and {self.e_max} keV "
                f"at {self.beam_energy} kV; choose another family among {self.families(element)}"
            )
        return max(lines, key=lambda ln: ln.cross_section)

    def quant_family(self, element: str) -> str:
        """Default family used to quantify ``element``.

        The highest-energy family (K, then L, then M) whose strongest line lies in
        ``[e_min + 0.05, e_max - 0.5]`` keV: e.g. Fe K, Nd L, U L, Pt L at 200 kV.
        """
        for fam in FAMILIES:
            lines = self.lines(element, fam)
            if lines:
                main = max(lines, key=lambda ln: ln.cross_section)
                if self.e_min + 0.05 <= main.energy <= self.e_max - 0.5:
                    return fam
        raise ValueError(
            f"{element} has no X-ray line usable for quantification between {self.e_min} and "
            f"{self.e_max} keV; remove it from the elements or widen the energy range"
        )

    def line_label(self, element: str, family: str) -> str:
        """HyperSpy/exspy name of the family's principal line, e.g. ``"Fe_Ka"``."""
        return f"{element}_{HYPERSPY_LINE[family]}"

    def line_intensity(self, element: str, family: str | None = None) -> float:
        """Detected intensity of a family per atom per electron (cm^2).

        Sum over the family's lines in range of production cross-section times
        detector efficiency. ``family`` defaults to :meth:`quant_family`.
        """
        family = family or self.quant_family(element)
        lines = self.lines(element, family)
        if not lines:
            return 0.0
        energies = np.array([ln.energy for ln in lines])
        xs = np.array([ln.cross_section for ln in lines])
        return float(np.sum(xs * self.efficiency(energies)))

    def family_template(self, element: str, family: str) -> np.ndarray:
        """Expected detected spectrum of one family, per atom per electron (cm^2 per channel).

        Each line is a Gaussian of FWHM :meth:`fwhm`, integrated over the channels;
        intensity beyond the axis ends is lost (as on a real detector).
        """
        return _template(self, element, family).copy()

    def element_spectrum(self, element: str) -> np.ndarray:
        """All families of ``element`` (per atom per electron, cm^2 per channel)."""
        out = np.zeros(self.axis.size)
        for fam in self.families(element):
            out += _template(self, element, fam)
        return out

    # --- continuum -------------------------------------------------------------
    def continuum_shape(self) -> np.ndarray:
        """Detected continuum per unit ``Z^2`` per atom per electron (cm^2 per channel).

        Kramers' thin-target cross-section integrated over each channel,
        ``K Z^2 / beta^2 ln(E_hi / E_lo)``, times detector efficiency.
        """
        return _continuum_shape(self).copy()

    def continuum(self, composition: dict[str, float]) -> np.ndarray:
        """Detected continuum of a phase (per atom per electron, cm^2 per channel)."""
        comp = normalize_composition(composition)
        z2 = sum(v / 100.0 * atomic_number(el) ** 2 for el, v in comp.items())
        return z2 * _continuum_shape(self)

    # --- phases -----------------------------------------------------------------
    def phase_spectrum(self, composition: dict[str, float], normalize: bool = True) -> np.ndarray:
        """Expected spectrum of a phase.

        Parameters
        ----------
        composition : dict of str to float
            Element to atomic %; rescaled to sum to 100 (see
            :func:`normalize_composition`).
        normalize : bool
            If True (default) the spectrum sums to 1 (the convention of
            :class:`~psnmf.simulate.SimulatedDataset`); otherwise it is in cm^2 per
            atom per electron per channel (lines plus continuum).

        Returns
        -------
        numpy.ndarray
            Shape ``(axis.size,)``.
        """
        comp = normalize_composition(composition)
        spec = self.continuum(comp)
        for element, pct in comp.items():
            spec = spec + pct / 100.0 * self.element_spectrum(element)
        if normalize:
            spec = spec / spec.sum()
        return spec

    def k_factors(
        self,
        elements: list[str] | tuple[str, ...],
        families: dict[str, str] | None = None,
        reference: str | None = None,
    ) -> dict[str, float]:
        """Cliff-Lorimer k-factors (atomic-fraction basis) implied by the model.

        With ``I_A`` the detected counts in element A's quantification family,
        ``C_A / C_B = (k_A / k_B) (I_A / I_B)`` in atomic fractions, so
        ``C_A = k_A I_A / sum_B k_B I_B``. ``k_A = S_ref / S_A`` with ``S`` the
        detected intensity per atom (:meth:`line_intensity`).

        Parameters
        ----------
        elements : sequence of str
            Elements to quantify.
        families : dict, optional
            Element to family overriding :meth:`quant_family`.
        reference : str, optional
            Element whose k-factor is 1; default Si if present, else the first element.

        Returns
        -------
        dict of str to float
        """
        families = families or {}
        if not elements:
            raise ValueError("k_factors: give at least one element")
        if reference is None:
            reference = "Si" if "Si" in elements else elements[0]
        if reference not in elements:
            raise ValueError(f"k_factors: reference {reference!r} is not among {list(elements)}")
        s = {
            el: self.line_intensity(el, families.get(el) or self.quant_family(el))
            for el in elements
        }
        for el, v in s.items():
            if v <= 0:
                raise ValueError(f"k_factors: {el} gives no detected intensity in its family")
        return {el: s[reference] / s[el] for el in elements}


@lru_cache(maxsize=4096)
def _efficiency(
    energy: float,
    window: tuple[tuple[str, float, float], ...],
    dead_layer: float,
    active: float,
) -> float:
    if energy < MIN_PHOTON_ENERGY:
        return 0.0
    mu_t = 0.0
    for formula, t_um, rho in window:
        mu_t += xraylib.CS_Total_CP(formula, energy) * rho * t_um * 1e-4
    rho_si = xraylib.ElementDensity(14)
    mu_t += xraylib.CS_Total(14, energy) * rho_si * dead_layer * 1e-4
    absorbed = 1.0 - math.exp(-xraylib.CS_Photo(14, energy) * rho_si * active * 1e-4)
    return math.exp(-mu_t) * absorbed


@lru_cache(maxsize=1024)
def _template(model: EDXModel, element: str, family: str) -> np.ndarray:
    axis = model.axis
    edges = axis.edges
    out = np.zeros(axis.size)
    lines = model.lines(element, family)
    if not lines:
        return out
    energies = np.array([ln.energy for ln in lines])
    weights = np.array([ln.cross_section for ln in lines]) * model.efficiency(energies)
    sigmas = model.fwhm(energies) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    for e0, w, s in zip(energies, weights, sigmas, strict=True):
        lo = max(axis.index(e0 - 8 * s) - 1, 0)
        hi = min(axis.index(e0 + 8 * s) + 2, axis.size)
        if hi <= lo:
            continue
        cdf = 0.5 * (1.0 + erf((edges[lo : hi + 1] - e0) / (math.sqrt(2.0) * s)))
        out[lo:hi] += w * np.diff(cdf)
    out.flags.writeable = False
    return out


@lru_cache(maxsize=64)
def _continuum_shape(model: EDXModel) -> np.ndarray:
    axis = model.axis
    edges = np.clip(axis.edges, 1e-3, None)
    gamma = 1.0 + model.beam_energy / M0C2_KEV
    beta2 = 1.0 - 1.0 / gamma**2
    per_channel = KRAMERS_CONSTANT / beta2 * np.log(edges[1:] / edges[:-1])
    per_channel[axis.values >= model.beam_energy] = 0.0
    out = model.continuum_scale * per_channel * model.efficiency(axis.values)
    out.flags.writeable = False
    return out
