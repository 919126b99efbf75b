"""k-factors: the :class:`KFactors` table, k-factor files, and the uncertainty of
theoretical k-factors (:data:`THEORETICAL_K_SD`) propagated to compositions."""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from psnmf.physics import (
    FAMILIES,
    EDXModel,
    atomic_number,
    atomic_weight,
)

__all__ = ["KFactors", "read_k_factors", "THEORETICAL_K_SD", "DETECTOR_WINDOWS", "theoretical_k_sd",
           "window_sd", "k_factor_spread"]


@dataclass
class KFactors:
    """A table of Cliff-Lorimer k-factors.

    Attributes
    ----------
    values : dict
        Element -> k-factor.
    lines : dict
        Element -> line label (e.g. ``"Nd_La"``) where the file named one; the
        element is then quantified with that line's family.
    basis : {"atomic", "weight"}
        Whether ``C_A / C_B = (k_A / k_B) (I_A / I_B)`` holds for atomic or weight
        fractions (HyperSpy and most vendors use weight fractions).
    relative_sd : dict
        Element -> relative standard deviation of its k-factor (0.05 = 5 %), where the
        file or the calibration gave one; it becomes the ``"k_factors"`` part of the
        uncertainty of :func:`quantify`. Elements without one add no k-factor part
        (and :attr:`Quantification.notes` says so).
    """

    values: dict[str, float]
    lines: dict[str, str] = field(default_factory=dict)
    basis: str = "atomic"
    relative_sd: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.basis not in ("atomic", "weight"):
            raise ValueError(f"k-factor basis must be 'atomic' or 'weight', got {self.basis!r}")
        clean: dict[str, float] = {}
        for key, value in self.values.items():
            element, line = _split_key(str(key))
            try:
                k = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"k-factor of {key} is {value!r}, not a number") from None
            if not math.isfinite(k) or k <= 0:
                raise ValueError(f"k-factor of {key} must be a positive number, got {value!r}")
            clean[element] = k
            if line:
                self.lines[element] = f"{element}_{line}"
        self.values = clean
        sds: dict[str, float] = {}
        for key, value in self.relative_sd.items():
            element, _ = _split_key(str(key))
            try:
                r = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"k-factor uncertainty of {key} is {value!r}, not a number"
                ) from None
            if not math.isfinite(r) or r < 0:
                raise ValueError(
                    f"k-factor uncertainty of {key} must be a relative sd >= 0 (0.05 = 5 %), "
                    f"got {value!r}"
                )
            if element not in clean:
                raise ValueError(f"k-factor uncertainty given for {key} but no k-factor")
            sds[element] = r
        self.relative_sd = sds

    def atomic(self) -> dict[str, float]:
        """k-factors for atomic fractions (weight-basis ones divided by atomic weight)."""
        if self.basis == "atomic":
            return dict(self.values)
        return {el: k / atomic_weight(el) for el, k in self.values.items()}

    def families(self) -> dict[str, str]:
        """Element -> family implied by the line labels (``"Nd_La"`` -> ``"L"``)."""
        return {el: line.split("_", 1)[1][0].upper() for el, line in self.lines.items()}


def _split_key(key: str) -> tuple[str, str]:
    """``"Fe"`` -> ``("Fe", "")``; ``"Fe_Ka"`` -> ``("Fe", "Ka")``; validated."""
    element, _, line = key.strip().partition("_")
    atomic_number(element)
    if line and line[0].upper() not in FAMILIES:
        raise ValueError(
            f"k-factor key {key!r}: the line must start with K, L or M (e.g. {element}_Ka)"
        )
    return element, line


def read_k_factors(path: str | os.PathLike[str], basis: str | None = None) -> KFactors:
    """Read k-factors from a CSV or JSON file.

    CSV: one ``element,k`` pair per line, or ``element,k,sigma`` with the k-factor's
    standard deviation in the units of ``k`` (an element may be a line label such as
    ``Nd_La``; a header line ``element,k[,sigma]`` and ``#`` comments are allowed; a
    comment ``# basis: weight`` sets the basis). JSON: ``{"Fe": 1.2, "Nd_La": 2.9}`` or
    ``{"basis": "weight", "k_factors": {...}, "sigma": {...}}`` (``sigma`` optional, in
    the units of ``k``). The standard deviations are kept relative
    (:attr:`KFactors.relative_sd`) and enter the error budget of :func:`quantify`.

    Parameters
    ----------
    path : str or path-like
        The file.
    basis : {"atomic", "weight"}, optional
        Overrides the basis stated in the file (default atomic).

    Returns
    -------
    KFactors
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"k-factor file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    file_basis = None
    sigmas: dict[str, Any] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"k-factor file {str(path)!r} is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "k_factors" in data:
            file_basis = data.get("basis")
            sigmas = dict(data.get("sigma") or {})
            data = data["k_factors"]
        if not isinstance(data, dict) or not data:
            raise ValueError(
                f'k-factor file {str(path)!r}: expected an object such as {{"Fe": 1.2}}'
            )
        values = data
    else:
        values = {}
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or not "".join(row).strip():
                continue
            first = row[0].strip()
            if first.startswith("#"):
                body = ",".join(row).lstrip("#").strip().lower()
                if body.startswith("basis:"):
                    file_basis = body.split(":", 1)[1].strip()
                continue
            if len(row) not in (2, 3):
                raise ValueError(
                    f"k-factor file {str(path)!r}, line {lineno}: expected 'element,k' or "
                    f"'element,k,sigma', got {row}"
                )
            if first.lower() in ("element", "line", "xray_line") and lineno == 1:
                continue
            values[first] = row[1].strip()
            if len(row) == 3 and row[2].strip():
                sigmas[first] = row[2].strip()
        if not values:
            raise ValueError(f"k-factor file {str(path)!r} holds no 'element,k' rows")
    relative: dict[str, float] = {}
    for key, sd in sigmas.items():
        if key not in values:
            raise ValueError(f"k-factor file {str(path)!r}: sigma given for {key} but no k")
        try:
            relative[key] = float(sd) / float(values[key])
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(
                f"k-factor file {str(path)!r}: k = {values[key]!r}, sigma = {sd!r} of {key} "
                "must be numbers, k > 0"
            ) from None
    return KFactors(values=dict(values), basis=basis or file_basis or "atomic",
                    relative_sd=relative)


# --- k-factor uncertainty ------------------------------------------------------------------------
#: Relative standard deviation (1 sigma) of a theoretical detected intensity per atom
#: (and so of a theoretical k-, zeta- or cross-section factor) from the physics of the
#: emission, by family and line energy: ``(family, upper energy in keV, relative sd)``,
#: the first row that matches. The detector's window adds its own part
#: (:func:`window_sd`). Literature on the accuracy of calculated k-factors (Williams &
#: Carter, *Transmission Electron Microscopy*, 2nd ed. 2009, ch. 35: calculated k-factors
#: good to about 10-20 %, worse for light elements; Sheridan, J. Electron Microsc. Tech.
#: 11 (1989) 41 and Wood et al., J. Microsc. 133 (1984) 255: calculated and measured
#: k_ASi agree within about 5-10 % for K lines of Z = 14-30, with larger errors below
#: Si), and what drives the errors: fluorescence yields of the light elements (K lines
#: below 1 keV) that differ by 10-20 % between compilations; K lines of 1-2 keV (Na, Mg,
#: Al, Si) on the efficiency edge; L and M lines on fluorescence yields and Coster-Kronig
#: rates uncertain by 10-30 % (Campbell, At. Data Nucl. Data Tables 85 (2003) 291).
#: Errors of different elements are taken as independent, so the error of a ratio
#: ``k_A / k_B`` is ``sqrt(sd_A^2 + sd_B^2)``.
THEORETICAL_K_SD: tuple[tuple[str, float, float], ...] = (
    ("K", 1.0, 0.15),
    ("K", 2.0, 0.10),
    ("K", math.inf, 0.05),
    ("L", 2.0, 0.25),
    ("L", math.inf, 0.15),
    ("M", math.inf, 0.25),
)

#: Detector windows of TEM EDX detectors, any of which a theoretical k-factor may face:
#: windowless, and Si3N4 windows of 40, 100 (the model's default), 150 and 300 nm
#: (``EDXModel.window`` entries: material, thickness in um, density in g/cm^3). Below
#: 1 keV their transmissions differ by factors of 2-3 (O K: 0.92 to 0.31 of Si K's), so
#: a k-factor computed for one of them is that uncertain for data from another.
DETECTOR_WINDOWS: tuple[tuple[tuple[str, float, float], ...], ...] = (
    (),
    (("Si3N4", 0.04, 3.44),),
    (("Si3N4", 0.10, 3.44),),
    (("Si3N4", 0.15, 3.44),),
    (("Si3N4", 0.30, 3.44),),
)


def window_sd(energy: float, model: EDXModel | None = None) -> float:
    """Relative sd of a detected intensity at ``energy`` (keV) from the detector's window.

    The standard deviation over :data:`DETECTOR_WINDOWS` of the log of the detector
    efficiency at ``energy`` relative to that at Si K-alpha (the usual k-factor
    reference; a factor common to every line cancels in the compositions), with the
    model's dead layer and crystal: 0.43 for O K (0.525 keV), 0.09 at 0.93 keV, under
    0.05 above 1.2 keV.

    Parameters
    ----------
    energy : float
        Line energy in keV.
    model : EDXModel, optional
        Dead layer, crystal and Si K-alpha energy (default ``EDXModel()``).

    Returns
    -------
    float
    """
    return _window_sd(float(energy), model or EDXModel())


@functools.lru_cache(maxsize=4096)
def _window_sd(energy: float, model: EDXModel) -> float:
    """:func:`window_sd`, remembered: every quantification asks it for each element."""
    ref = model.main_line("Si", "K").energy
    logs = []
    for window in DETECTOR_WINDOWS:
        eff = replace(model, window=window).efficiency(np.array([energy, ref]))
        logs.append(math.log(eff[0] / eff[1]))
    return float(np.std(logs, ddof=1))


def theoretical_k_sd(element: str, family: str, model: EDXModel | None = None,
                     window_known: bool = False) -> float:
    """Relative standard deviation of a theoretical k-factor.

    The emission part (:data:`THEORETICAL_K_SD`) and the window part (:func:`window_sd`)
    at the family's principal line, in quadrature: the model's k-factors assume one
    window, and data from another differ most below 1 keV. With ``window_known`` the
    model's window (``EDXModel.window``) is the detector's, stated by the user (from the
    detector's data sheet), so the window part is left out and the emission part remains.

    Parameters
    ----------
    element : str
        Chemical symbol.
    family : {"K", "L", "M"}
        The line family quantified.
    model : EDXModel, optional
        Gives the family's principal line energy and the detector (default ``EDXModel()``).
    window_known : bool
        The model's detector window is the real one: no window part.

    Returns
    -------
    float
        e.g. 0.45 for O K (0.15 with the window known), 0.10 for Mg K, 0.05 for Fe K,
        0.15 for Nd L.

    Examples
    --------
    >>> round(theoretical_k_sd("O", "K"), 2), round(theoretical_k_sd("Fe", "K"), 2)
    (0.45, 0.05)
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown line family {family!r}: use one of {sorted(FAMILIES)}")
    m = model or EDXModel()
    energy = m.main_line(element, family).energy
    for fam, upper, sd in THEORETICAL_K_SD:
        if fam == family and energy < upper:
            return sd if window_known else math.hypot(sd, window_sd(energy, m))
    raise AssertionError("THEORETICAL_K_SD covers every family")  # pragma: no cover


def k_factor_draws(relative_sd: np.ndarray, n_draws: int = 4000,
                   random_state: int | None = 0) -> np.ndarray:
    """Log-normal multipliers (n_draws, elements) of mean 1 and relative sd ``relative_sd``.

    The draws of :func:`k_factor_spread`, shared with the k-factor part of an estimated
    thickness (:mod:`psnmf.quantify.electroneutrality`), so both see the same errors.
    """
    if int(n_draws) < 2:
        raise ValueError(f"n_draws must be >= 2, got {n_draws!r}")
    sd = np.asarray(relative_sd, dtype=np.float64)
    rng = np.random.default_rng(random_state)
    sigma_log = np.sqrt(np.log1p(sd**2))
    return np.exp(rng.standard_normal((int(n_draws), sd.size)) * sigma_log
                  - sigma_log**2 / 2)


def k_factor_spread(
    intensities: dict[str, float],
    k_factors: dict[str, float],
    relative_sd: dict[str, float],
    n_draws: int = 4000,
    random_state: int | None = 0,
) -> dict[str, float]:
    """Standard deviation (at.%) of a composition caused by uncertain k-factors.

    Monte Carlo: every k-factor is multiplied by an independent log-normal factor of
    mean 1 and relative sd ``relative_sd[element]``, and ``C_A = k_A I_A / sum_B k_B I_B``
    is recomputed with the intensities held fixed. Monte Carlo rather than the delta
    method because the errors are not small (45 % for O K), where the composition is
    visibly non-linear in the k-factors; 4000 draws give the sd to about 1 %.

    Parameters
    ----------
    intensities : dict
        Element -> intensity (already divided by its absorption factor, if any).
    k_factors : dict
        Element -> atomic-basis k-factor.
    relative_sd : dict
        Element -> relative sd of its k-factor (missing: 0).
    n_draws : int
        Monte Carlo draws.
    random_state : int, optional
        Seed (fixed by default, so the same input gives the same budget).

    Returns
    -------
    dict
        Element -> sd in atomic %.
    """
    elements = list(intensities)
    i = np.array([intensities[el] for el in elements], dtype=float)
    k = np.array([k_factors[el] for el in elements], dtype=float)
    sd = np.array([float(relative_sd.get(el, 0.0)) for el in elements])
    if not np.any(sd > 0):
        return {el: 0.0 for el in elements}
    x = k_factor_draws(sd, n_draws, random_state) * (k * i)
    c = 100.0 * x / x.sum(axis=1, keepdims=True)
    return {el: float(v) for el, v in zip(elements, c.std(axis=0, ddof=1), strict=True)}
