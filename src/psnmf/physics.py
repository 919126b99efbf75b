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

* **Self-absorption in the specimen**: a film of thickness ``t``, density ``rho``,
  seen by the detector at take-off angle ``alpha`` (above the film plane), emits
  uniformly through its depth; a photon of energy ``E`` generated at depth ``z``
  leaves along a path ``z / sin(alpha)``, so the detected fraction is the
  thin-film absorption factor ``A(E) = (1 - exp(-chi)) / chi`` with
  ``chi = (mu/rho)(E) rho t / sin(alpha)`` (Goldstein, Costley, Lorimer & Reed,
  SEM/1977/I p. 315; Williams & Carter 2009, eq. 35.6). ``(mu/rho)`` of the phase is
  the mass-fraction-weighted sum of the elements' total mass attenuation
  coefficients (xraylib ``CS_Total``). Every line and every continuum channel is
  multiplied by its own ``A``; ``t = 0`` (the default) is the thin-film limit
  ``A = 1``, in which the spectra are exactly those of the thin model.
  Secondary fluorescence is not modelled (below 1 % relative for films under
  ~200 nm of the oxides and alloys of the built-in samples; Nockolds et al.,
  EMAG 1979). The take-off angle follows exspy: the detector elevation for an
  untilted stage (``metadata.Acquisition_instrument.TEM.Detector.EDS.elevation_angle``),
  35 degrees by default as in exspy.

Escape and sum peaks are not modelled.

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
    "mass_fractions",
    "atomic_percent_from_mass",
    "mass_attenuation",
    "absorption_factor",
    "estimate_density",
    "DEFAULT_TAKEOFF_ANGLE",
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

#: Default X-ray take-off angle in degrees: exspy's default detector elevation
#: (``exspy.preferences.EDS.eds_detector_elevation``) with an untilted stage, so that a
#: signal without geometry metadata is corrected the same way by psnmf and exspy.
DEFAULT_TAKEOFF_ANGLE = 35.0

#: Avogadro constant (1/mol), CODATA via scipy.constants.
AVOGADRO = sc.Avogadro

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


def mass_fractions(composition: dict[str, float]) -> dict[str, float]:
    """Mass fractions (summing to 1) of a composition given in atomic %.

    ``w_A = c_A M_A / sum_B c_B M_B`` with the standard atomic weights ``M`` of xraylib.

    Examples
    --------
    >>> w = mass_fractions({"Mg": 50, "O": 50})
    >>> round(w["Mg"], 3)
    0.603
    """
    comp = normalize_composition(composition)
    mass = {el: c * atomic_weight(el) for el, c in comp.items()}
    total = sum(mass.values())
    return {el: m / total for el, m in mass.items()}


def atomic_percent_from_mass(weights: dict[str, float]) -> dict[str, float]:
    """Atomic % (summing to 100) from mass fractions or weight % (any total > 0).

    Examples
    --------
    >>> c = atomic_percent_from_mass(mass_fractions({"Mg": 50, "O": 50}))
    >>> round(c["O"], 9)
    50.0
    """
    moles = {el: float(w) / atomic_weight(el) for el, w in weights.items()}
    total = sum(moles.values())
    if not (total > 0 and math.isfinite(total)):
        raise ValueError(f"mass fractions {weights} do not describe a material (sum <= 0)")
    return {el: 100.0 * n / total for el, n in moles.items()}


@lru_cache(maxsize=65536)
def _element_attenuation(z: int, energy: float) -> float:
    """Total mass attenuation coefficient (cm^2/g) of element ``z`` at ``energy`` keV."""
    if energy < MIN_PHOTON_ENERGY:
        return 0.0
    return _xrl(xraylib.CS_Total, z, energy)


def mass_attenuation(
    composition: dict[str, float], energy: float | np.ndarray
) -> float | np.ndarray:
    """Mass attenuation coefficient ``(mu/rho)`` of a material, in cm^2/g.

    The mass-fraction-weighted sum of the elements' total attenuation coefficients
    (xraylib ``CS_Total``): the absorption of the X-rays a phase emits, on their way
    out of it.

    Parameters
    ----------
    composition : dict of str to float
        The absorbing material, element -> atomic %.
    energy : float or numpy.ndarray
        Photon energies in keV (0 below xraylib's 0.1 keV table limit).

    Returns
    -------
    float or numpy.ndarray
        ``(mu/rho)`` at each energy.

    Examples
    --------
    >>> 1000 < mass_attenuation({"Mg": 50, "O": 50}, 1.254) < 3000   # Mg Ka in MgO
    True
    """
    weights = mass_fractions(composition)
    e = np.atleast_1d(np.asarray(energy, dtype=float))
    out = np.zeros(e.shape)
    for el, w in weights.items():
        z = atomic_number(el)
        out += w * np.array([_element_attenuation(z, float(x)) for x in e.ravel()]).reshape(
            e.shape
        )
    return float(out[0]) if np.ndim(energy) == 0 else out


def absorption_factor(chi: float | np.ndarray) -> float | np.ndarray:
    """Thin-film self-absorption factor ``A = (1 - exp(-chi)) / chi`` (1 at ``chi = 0``).

    The fraction of the X-rays generated uniformly through a film that leave it,
    with ``chi = (mu/rho) rho t / sin(take-off)`` the attenuation exponent along the
    path out of the whole film. Computed as ``-expm1(-chi) / chi`` (accurate for
    small ``chi``).

    Examples
    --------
    >>> absorption_factor(0.0), round(absorption_factor(0.1), 6)
    (1.0, 0.951626)
    """
    c = np.asarray(chi, dtype=float)
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise ValueError(f"absorption exponent chi must be finite and >= 0, got {chi!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(c > 0, -np.expm1(-c) / np.where(c > 0, c, 1.0), 1.0)
    return float(a) if np.ndim(chi) == 0 else a


def estimate_density(composition: dict[str, float]) -> float:
    """Density (g/cm^3) of a material estimated from its composition alone.

    The mass-fraction-weighted mean of the elements' densities (xraylib
    ``ElementDensity``), the rule exspy applies in
    ``EDSTEMSpectrum.CL_get_mass_thickness`` (so psnmf without a density gives the
    mass thickness exspy gives). It is only a fallback: for compounds of gaseous
    elements (O, N, F, Cl) it is far too low (MgO: 1.05 against 3.58 g/cm^3),
    because oxygen enters with the density of the gas; give the density of such
    phases (``EDXModel(density=...)``, ``phase_densities``, or ``quantify(density=...)``).

    Examples
    --------
    >>> round(estimate_density({"Fe": 100}), 3)
    7.874
    """
    weights = mass_fractions(composition)
    return float(
        sum(w * _xrl(xraylib.ElementDensity, atomic_number(el)) for el, w in weights.items())
    )


def _check_nonnegative(name: str, value: Any, fix: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}; {fix}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}; {fix}")
    return v


@lru_cache(maxsize=1)
def _iupac_lines() -> tuple[tuple[str, str, int], ...]:
    """All IUPAC line macros of xraylib as (initial subshell, name, macro)."""
    out = []
    for name in dir(xraylib):
        m = _IUPAC_LINE.match(name)
        if m:
            out.append((m.group(1), name[: -len("_LINE")], int(getattr(xraylib, name))))
    return tuple(sorted(out))


def ionization_cross_section(
    z: int, shell: str, beam_energy: float, bethe_c: float = BETHE_C
) -> float:
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
        Subshell, ``"K"``, ``"L1"`` ... ``"L3"``, ``"M1"`` ... ``"M5"``.
    beam_energy : float
        Incident electron energy in keV.
    bethe_c : float
        The Bethe constant ``c_s`` (1 by default; other fits of measured
        cross-sections give 0.6-2.4, which changes the ratios of light to heavy
        elements by several per cent, an alternative physics to test against).

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
    bracket = math.log(bethe_c * t_eff / edge) - math.log(1.0 - beta2) - beta2
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
def _family_lines_cached(
    element: str, family: str, beam_energy: float, bethe_c: float = BETHE_C
) -> tuple[Line, ...]:
    z = atomic_number(element)
    shells = FAMILIES[family]
    sigma = {s: ionization_cross_section(z, s, beam_energy, bethe_c) for s in shells}
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


def family_lines(
    element: str, family: str, beam_energy: float = 200.0, bethe_c: float = BETHE_C
) -> list[Line]:
    """All lines of one family of an element with their production cross-sections.

    Parameters
    ----------
    element : str
        Chemical symbol.
    family : {"K", "L", "M"}
        Line family.
    beam_energy : float
        Beam energy in keV.
    bethe_c : float
        Bethe constant of the ionisation cross-sections (:func:`ionization_cross_section`).

    Returns
    -------
    list of Line
        Possibly empty (family not excited, or no data).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown line family {family!r}: use one of {sorted(FAMILIES)}")
    return list(_family_lines_cached(element, family, float(beam_energy), float(bethe_c)))


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
    thickness : float
        Specimen thickness in nm (0 = thin film, no self-absorption). Spectra of
        phases are absorbed in a film of this thickness (see the module docstring).
    density : float or None
        Density in g/cm^3 of every phase; None: ``phase_densities``, then
        :func:`estimate_density` of the phase's composition.
    phase_densities : mapping of str to float
        Density (g/cm^3) of named phases (e.g. ``{"Brg": 4.1}``), used by the
        simulator, which knows the phase names; stored as sorted pairs.
    takeoff_angle : float
        X-ray take-off angle in degrees (between the film plane and the direction to
        the detector; 35 by default as in exspy).
    bethe_c : float
        Bethe constant ``c_s`` of the ionisation cross-sections (1, Powell 1976); a
        different value is a different physics of the line intensities, with which
        data can be made that the default model's theoretical k-factors do not fit
        exactly (as real data).

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
    thickness: float = 0.0
    density: float | None = None
    phase_densities: tuple[tuple[str, float], ...] = ()
    takeoff_angle: float = DEFAULT_TAKEOFF_ANGLE
    bethe_c: float = BETHE_C

    def __post_init__(self) -> None:
        checks = {
            "beam_energy": self.beam_energy,
            "channel_width": self.channel_width,
            "fwhm_mn_ka": self.fwhm_mn_ka,
            "active_thickness": self.active_thickness,
            "bethe_c": self.bethe_c,
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
        object.__setattr__(
            self,
            "thickness",
            _check_nonnegative(
                "EDXModel: thickness",
                self.thickness,
                "give the specimen thickness in nm (0 = thin)",
            ),
        )
        if self.density is not None:
            d = _check_nonnegative(
                "EDXModel: density", self.density, "give g/cm^3, or None to estimate it"
            )
            if d == 0:
                raise ValueError("EDXModel: density must be > 0 g/cm^3 (or None to estimate it)")
            object.__setattr__(self, "density", d)
        pairs = self.phase_densities
        items = pairs.items() if isinstance(pairs, dict) else pairs
        clean = []
        for name, value in items:
            d = _check_nonnegative(
                f"EDXModel: density of phase {name!r}", value, "give g/cm^3, e.g. 4.1"
            )
            if d == 0:
                raise ValueError(f"EDXModel: density of phase {name!r} must be > 0 g/cm^3")
            clean.append((str(name), d))
        object.__setattr__(self, "phase_densities", tuple(sorted(clean)))
        toa = self.takeoff_angle
        if not (isinstance(toa, int | float) and math.isfinite(toa) and 0 < toa <= 90):
            raise ValueError(
                f"EDXModel: takeoff_angle must be in (0, 90] degrees, got {toa!r} "
                "(the detector elevation above the film plane, e.g. 35)"
            )
        object.__setattr__(self, "takeoff_angle", float(toa))

    # --- construction -----------------------------------------------------
    @classmethod
    def for_axis(cls, offset: float, scale: float, size: int, **kwargs: Any) -> EDXModel:
        """A model on a given energy axis (e.g. that of a measured spectrum)."""
        return cls(e_min=offset, e_max=offset + scale * size, channel_width=scale, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Parameters as a JSON-serialisable dictionary."""
        d = asdict(self)
        d["window"] = [list(w) for w in self.window]
        d["phase_densities"] = dict(self.phase_densities)
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
                ln for ln in family_lines(element, fam, self.beam_energy, self.bethe_c)
                if lo <= ln.energy <= hi
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
    def phase_spectrum(
        self,
        composition: dict[str, float],
        normalize: bool = True,
        phase: str | None = None,
        thickness: float | None = None,
        density: float | None = None,
    ) -> np.ndarray:
        """Expected spectrum of a phase, absorbed in a film of the model's thickness.

        Parameters
        ----------
        composition : dict of str to float
            Element to atomic %; rescaled to sum to 100 (see
            :func:`normalize_composition`).
        normalize : bool
            If True (default) the spectrum sums to 1 (the convention of
            :class:`~psnmf.simulate.SimulatedDataset`); otherwise it is in cm^2 per
            atom per electron per channel (lines plus continuum, after absorption).
        phase : str, optional
            Phase name, to look up its density in ``phase_densities``.
        thickness : float, optional
            Film thickness in nm (default the model's ``thickness``; 0 = thin film,
            exactly the unabsorbed spectrum).
        density : float, optional
            Density in g/cm^3 (default :meth:`density_of`).

        Returns
        -------
        numpy.ndarray
            Shape ``(axis.size,)``.
        """
        comp = normalize_composition(composition)
        rt = self.mass_thickness(comp, phase, thickness, density)
        if rt == 0:
            spec = self.continuum(comp)
            for element, pct in comp.items():
                spec = spec + pct / 100.0 * self.element_spectrum(element)
        else:
            z2 = sum(v / 100.0 * atomic_number(el) ** 2 for el, v in comp.items())
            spec = z2 * self.absorbed_continuum_shape(comp, rt)
            for element, pct in comp.items():
                for fam in self.families(element):
                    spec = spec + pct / 100.0 * self.absorbed_family_template(
                        element, fam, comp, rt
                    )
        if normalize:
            spec = spec / spec.sum()
        return spec

    # --- specimen self-absorption ---------------------------------------------
    def density_of(self, composition: dict[str, float], phase: str | None = None) -> float:
        """Density (g/cm^3) used for a phase: ``phase_densities[phase]``, else
        ``density``, else :func:`estimate_density` of its composition."""
        named = dict(self.phase_densities)
        if phase is not None and phase in named:
            return named[phase]
        if self.density is not None:
            return float(self.density)
        return estimate_density(composition)

    def mass_thickness(
        self,
        composition: dict[str, float],
        phase: str | None = None,
        thickness: float | None = None,
        density: float | None = None,
    ) -> float:
        """Mass thickness ``rho t`` in g/cm^2 of a phase (thickness in nm; default the
        model's ``thickness`` and :meth:`density_of`)."""
        t = self.thickness if thickness is None else _check_nonnegative(
            "thickness", thickness, "give the specimen thickness in nm"
        )
        rho = self.density_of(composition, phase) if density is None else density
        return float(rho) * t * 1e-7

    def absorption(
        self, composition: dict[str, float], energy: float | np.ndarray, mass_thickness: float
    ) -> np.ndarray:
        """Thin-film self-absorption factor at ``energy`` (keV) in a film of the given
        composition and mass thickness (g/cm^2), at the model's take-off angle."""
        rt = _check_nonnegative("mass_thickness", mass_thickness, "give g/cm^2")
        e = np.atleast_1d(np.asarray(energy, dtype=float))
        if rt == 0:
            return np.ones(e.shape)
        chi = mass_attenuation(composition, e) * rt / math.sin(math.radians(self.takeoff_angle))
        return np.asarray(absorption_factor(chi))

    def family_absorption(
        self,
        element: str,
        family: str,
        composition: dict[str, float],
        mass_thickness: float,
    ) -> float:
        """Absorption factor of a whole line family: the mean of its lines' factors
        weighted by their detected thin-film intensities (what a fitted family
        intensity is divided by to undo the absorption)."""
        lines = self.lines(element, family)
        if not lines or mass_thickness == 0:
            return 1.0
        energies = np.array([ln.energy for ln in lines])
        w = np.array([ln.cross_section for ln in lines]) * self.efficiency(energies)
        a = self.absorption(composition, energies, mass_thickness)
        return float(np.sum(w * a) / np.sum(w))

    def absorbed_family_template(
        self, element: str, family: str, composition: dict[str, float], mass_thickness: float
    ) -> np.ndarray:
        """:meth:`family_template` with every line multiplied by its absorption factor
        in a film of the given composition and mass thickness (g/cm^2)."""
        if mass_thickness == 0:
            return self.family_template(element, family)
        energies, weights, sigmas = _line_arrays(self, element, family)
        if energies.size == 0:
            return np.zeros(self.axis.size)
        a = self.absorption(composition, energies, mass_thickness)
        return _render(self.axis, energies, weights * a, sigmas)

    def absorbed_continuum_shape(
        self, composition: dict[str, float], mass_thickness: float
    ) -> np.ndarray:
        """:meth:`continuum_shape` times the absorption factor at each channel centre."""
        shape = self.continuum_shape()
        if mass_thickness == 0:
            return shape
        return shape * self.absorption(composition, self.energy, mass_thickness)

    # --- absolute quantification factors ------------------------------------------
    def detected_cross_section(
        self, element: str, family: str | None = None, solid_angle: float = 1.0
    ) -> float:
        """Detected X-ray cross-section of a family in barns (1e-24 cm^2) per atom:
        :meth:`line_intensity` times the detector's fraction of the sphere
        ``solid_angle / (4 pi)`` (sr); exspy's ``cross_sections`` convention."""
        omega = _check_nonnegative("solid_angle", solid_angle, "give the detector's sr")
        return self.line_intensity(element, family) * 1e24 * omega / (4.0 * math.pi)

    def cross_sections(
        self,
        elements: list[str] | tuple[str, ...],
        families: dict[str, str] | None = None,
        solid_angle: float = 1.0,
    ) -> dict[str, float]:
        """Detected cross-sections (barns) of each element's quantification family, for
        the cross-section method (exspy ``method='cross_section'``)."""
        families = families or {}
        return {
            el: self.detected_cross_section(
                el, families.get(el) or self.quant_family(el), solid_angle
            )
            for el in elements
        }

    def zeta_factors(
        self,
        elements: list[str] | tuple[str, ...],
        families: dict[str, str] | None = None,
        solid_angle: float = 1.0,
    ) -> dict[str, float]:
        """Zeta factors in kg/m^2 (exspy's unit, weight basis) implied by the model.

        ``rho t C_A = zeta_A I_A / N_e`` with ``C_A`` the mass fraction, ``I_A`` the
        detected counts, ``N_e`` the number of electrons (Watanabe & Williams, J.
        Microsc. 221 (2006) 89), so ``zeta_A = M_A / (N_Av sigma_A)`` with ``sigma_A``
        the detected cross-section (as ``exspy.utils.eds.cross_section_to_zeta``,
        with xraylib's atomic weights).
        """
        xs = self.cross_sections(elements, families, solid_angle)
        out = {}
        for el, sigma in xs.items():
            if sigma <= 0:
                raise ValueError(f"zeta_factors: {el} gives no detected intensity")
            out[el] = atomic_weight(el) * 1e-3 / (AVOGADRO * sigma * 1e-28)
        return out

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
def _line_arrays(
    model: EDXModel, element: str, family: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energies, detected thin-film weights and Gaussian sigmas of a family's lines."""
    lines = model.lines(element, family)
    energies = np.array([ln.energy for ln in lines])
    if not lines:
        return energies, energies.copy(), energies.copy()
    weights = np.array([ln.cross_section for ln in lines]) * model.efficiency(energies)
    sigmas = model.fwhm(energies) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    for arr in (energies, weights, sigmas):
        arr.flags.writeable = False
    return energies, weights, sigmas


@lru_cache(maxsize=1024)
def _template(model: EDXModel, element: str, family: str) -> np.ndarray:
    energies, weights, sigmas = _line_arrays(model, element, family)
    out = _render(model.axis, energies, weights, sigmas)
    out.flags.writeable = False
    return out


def _render(
    axis: EnergyAxis, energies: np.ndarray, weights: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Gaussian lines of the given weights integrated exactly over each channel."""
    out = np.zeros(axis.size)
    profiles = _line_profiles(axis, tuple(energies.tolist()), tuple(sigmas.tolist()))
    for (lo, hi, profile), w in zip(profiles, weights, strict=True):
        if profile is not None:
            out[lo:hi] += w * profile
    return out


@lru_cache(maxsize=4096)
def _line_profiles(axis: EnergyAxis, energies: tuple[float, ...], sigmas: tuple[float, ...],
                   ) -> tuple[tuple[int, int, np.ndarray | None], ...]:
    """Each line's unit Gaussian integrated over the channels within 8 sigma of it, as
    ``(first channel, end channel, values)`` (values None when no channel is near): the
    quantification renders the same lines with new weights (their absorption in each film
    it tries) many times."""
    edges = axis.edges
    out = []
    for e0, s in zip(energies, sigmas, strict=True):
        lo = max(axis.index(e0 - 8 * s) - 1, 0)
        hi = min(axis.index(e0 + 8 * s) + 2, axis.size)
        if hi <= lo:
            out.append((lo, hi, None))
            continue
        cdf = 0.5 * (1.0 + erf((edges[lo : hi + 1] - e0) / (math.sqrt(2.0) * s)))
        profile = np.diff(cdf)
        profile.flags.writeable = False
        out.append((lo, hi, profile))
    return tuple(out)


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
