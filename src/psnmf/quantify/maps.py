"""Composition maps: per-pixel (or per-bin) atomic % of the denoised data, with sigma maps.

The PSNMF-denoised data are ``n_i (A S)_i``: count scale ``n`` (pixels), abundances ``A``
(pixels x k, on the simplex) and component spectra ``S`` (k x channels). A line family's
fitted intensity is linear in the spectrum, so the denoised pixel's intensities are
``n_i sum_q A_iq I_q`` with ``I_q`` the intensities fitted to component ``q`` (per unit
of its spectrum): the compositions of every pixel follow from the ``k`` component fits
and the maps in ``O(pixels x k x elements)``, without a line fit per pixel. (The line fit
is a Poisson maximum likelihood, linear exactly where each component's fit reproduces
its spectrum, as the forward model's spectra are; a mixture's own fit then gives the
mixture of the fits.)

The compositions are those of the component quantification (:func:`psnmf.quantify.quantify`,
Cliff-Lorimer with the same k-factors, families, thickness, density and take-off angle),
evaluated for every pixel at once: the thin-film absorption correction's fixed point
(composition <-> absorption factors, to ``tol`` at.%) is iterated on all pixels together,
each pixel stopping at the iteration where the scalar loop would, so that a pixel made
of one component gets exactly that component's composition.

The sigma of a pixel's composition holds four independent parts, added in quadrature
(each is kept as a map of its own in :attr:`CompositionMaps.parts`):

``counting``
    The Poisson noise of the pixel's own counts through its abundances: the Fisher
    information of the loadings ``w = n A_i`` given the spectra, ``F = S diag(1 / (w S))
    S^T`` (as :func:`psnmf.engine.pure_pixels.abundance_noise`), propagated to at.% by
    the delta method (absorption factors held at their converged values). It scales as
    ``1 / sqrt(counts)``: a pixel of 10 counts cannot claim a 0.1 at.% sigma. The
    information is evaluated with one count spread evenly over the components
    (``(n t + 1/k) / (n + 1)``): on the simplex boundary the information about an absent
    component is unbounded, while ``n`` counts resolve about ``1 / n`` of it. It is the
    sd of a per-pixel maximum-likelihood estimate; total-variation maps borrow strength
    from their neighbours and pure pixels sit on the simplex boundary, where the
    information ignores the constraint, so it errs on the large side there.
``bootstrap``
    The counting noise of the component spectra and the spread of the NMF solution: the
    bootstrap replicates of the spectra (:func:`psnmf.uncertainty.bootstrap`) are line
    fitted and give replicate composition maps through the same linear map (absorption
    factors held at the estimate's); their per-pixel sd.
``k_factors``
    The k-factors' relative sd (the component quantification's ``k_factor_sd``),
    propagated per pixel by the delta method, ``dC_A / d ln k_B = C_A (delta_AB - C_B)``
    (the component table uses a Monte Carlo of the same log-normal k-factors, which
    agrees for small sd: ``tests/test_error_budget.py``).
``thickness``
    With ``thickness_sigma``, or a density that is the mean of the model's phase
    densities (their spread is its sd): half the change of the pixel's corrected
    composition between ``t - sigma`` and ``t + sigma``, ``sigma`` the thickness sd
    equivalent to both (the component table's rule). With mass thicknesses estimated
    (below), between the pixel's mass thickness minus and plus its sd.

Mass thicknesses estimated from the data
----------------------------------------
Components whose film was estimated from their charge balance (``thickness_from``) have their own
mass thickness ``(rho t)_q`` (:attr:`Quantification.mass_thickness`), measured from their
spectrum. A pixel is then corrected for the abundance-weighted mass thickness
``sum_q A_iq (rho t)_q`` (held fixed in its absorption loop, as the component's is), with
the sd ``sum_q A_iq sd_q``. Why this value: the abundances are the fractions of the
pixel's counts that each component gives, and the absorption the correction undoes is,
to first order (absorption factors close to 1 are linear in ``rho t``), that of the
counts' mean path, whichever way the components share the pixel (side by side, or a
boundary inclined through the film); a pixel of one component gets that component's
mass thickness and so exactly its composition; the mass thickness, not a thickness in
nm, is what electroneutrality measures and what the correction uses, so no density
enters (a pixel's density would have to be guessed from its composition). The sds are
added linearly, as if fully correlated between the components: the stoichiometry and
valence parts of the estimates, and a thickness given as their prior, are common to
them. A pixel's own charge balance is not solved again: its counts are too few for it,
and a mixture of neutral compositions is neutral already. Components whose mass
thickness was not estimated (no anion, an element without a valence) keep the one their
quantification used, with the sd of ``thickness_sigma`` and the density's spread (``rho
sigma``); a component quantified without the correction counts as a mass thickness of 0.

Pixels with no counts, or masked (NaN abundances), get NaN. An element below the
detection limit in a component contributes nothing from that component (as in that
component's composition, which leaves it out); elements excluded from the quantification
are not mapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psnmf.physics import EDXModel
from psnmf.quantify._common import positive_or_none
from psnmf.quantify.absorption import (
    AbsorptionTables,
    absorption_tables,
    equivalent_thickness_sd,
    film_density,
    iterate_absorption,
)
from psnmf.quantify.linefit import fit_lines
from psnmf.quantify.result import Quantification

__all__ = ["CompositionMaps", "composition_maps"]

#: Parts of the sigma maps, in the order the tables show them.
MAP_PARTS = ("counting", "bootstrap", "k_factors", "thickness")
#: Floats per temporary (pixels x channels) block of the counting part: 32 MiB.
_BLOCK_VALUES = 2**22


@dataclass
class CompositionMaps:
    """Per-pixel (or per-bin) compositions and their standard deviations.

    Attributes
    ----------
    elements : list of str
        Elements mapped (those quantified in at least one component).
    composition : ndarray (elements, ny, nx)
        Atomic %; NaN where the pixel (bin) has no counts or is masked.
    sigma : ndarray (elements, ny, nx)
        One standard deviation in at.%: the parts in quadrature.
    parts : dict
        Part name (``counting``, ``bootstrap``, ``k_factors``, ``thickness``; those
        computed) -> sd map (elements, ny, nx), float32.
    counts : ndarray (ny, nx)
        Counts of the denoised data in each pixel (bin): the sum of the count scale.
    bin_factor : int
        Pixels per bin side (1: per pixel).
    n_replicates : int
        Bootstrap replicates behind the ``bootstrap`` part (0: no such part).
    absorption_corrected : bool
        Whether the thin-film absorption correction was applied.
    mass_thickness : ndarray (ny, nx) or None
        kg/m^2 each pixel (bin) was corrected for when the components' mass thicknesses
        were estimated (the abundance-weighted mean of theirs, see the module
        docstring); None when every pixel uses the thickness given.
    """

    elements: list[str]
    composition: np.ndarray
    sigma: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    counts: np.ndarray | None = None
    bin_factor: int = 1
    n_replicates: int = 0
    absorption_corrected: bool = False
    mass_thickness: np.ndarray | None = None

    def of(self, element: str) -> tuple[np.ndarray, np.ndarray]:
        """The at.% map and sigma map (ny, nx) of one element.

        Raises
        ------
        ValueError
            For an element that is not mapped (not quantified in any component, or
            excluded), naming the mapped ones.
        """
        if element not in self.elements:
            raise ValueError(
                f"{element!r} is not mapped: the composition maps hold {self.elements} (the "
                "elements quantified in at least one component); add it to the elements "
                "of the quantification")
        e = self.elements.index(element)
        return self.composition[e], self.sigma[e]

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per element: mean, 1st and 99th percentile of the map and the median sigma
        (at.%, over the pixels with a composition; None for an empty map)."""
        out: dict[str, dict[str, float | None]] = {}
        for e, el in enumerate(self.elements):
            c = self.composition[e]
            ok = np.isfinite(c)
            if not ok.any():
                out[el] = {"mean": None, "p01": None, "p99": None, "median_sigma": None}
                continue
            lo, hi = np.percentile(c[ok], [1.0, 99.0])
            out[el] = {"mean": float(c[ok].mean()), "p01": float(lo), "p99": float(hi),
                       "median_sigma": float(np.median(self.sigma[e][ok]))}
        return out


@dataclass
class _Setup:
    """What every block needs: the component intensities, k-factors and absorption data."""

    intensities: np.ndarray           # (k, E) per unit spectrum
    k: np.ndarray                     # (E,) atomic-basis k-factors
    k_sd: np.ndarray                  # (E,) relative sd of the k-factors
    thickness: float                  # nm (0: no correction)
    density: float | None             # g/cm^3 given; None: estimated per pixel
    density_sd: float                 # g/cm^3: the spread of the phases' densities
    tol: float
    max_iter: int
    tables: AbsorptionTables | None = None  # absorption data of the mapped elements
    # per component (k,), kg/m^2, when estimated: the mass thickness and its sd used,
    # and the mass thicknesses of the thickness part (one sd below and above)
    mass_thickness: np.ndarray | None = None
    mass_thickness_sd: np.ndarray | None = None
    mass_thickness_bounds: tuple[np.ndarray, np.ndarray] | None = None


def composition_maps(
    quantifications: Sequence[Quantification],
    maps: Any,
    scale: Any,
    *,
    spectra: Any = None,
    replicate_spectra: Any = None,
    density: float | None = None,
    thickness_sigma: float | None = None,
    takeoff_angle: float | None = None,
    database: str = "xraylib",
    bin_factor: int = 1,
    tol: float | None = None,
    max_absorption_iter: int = 100,
    fit_options: dict[str, Any] | None = None,
) -> CompositionMaps:
    """Compositions (at.%) of every pixel of the denoised data, and their sigma maps.

    Parameters
    ----------
    quantifications : sequence of Quantification
        One per component, from :func:`psnmf.quantify.quantify` of the component spectra
        (Cliff-Lorimer), as :func:`psnmf.uncertainty.bootstrap` makes them
        (``BootstrapResult.quantifications``): their fitted intensities, k-factors and
        their sd, families, model, thickness and detection decisions are used.
    maps : array (ny, nx, k)
        Abundances on the simplex per pixel; NaN for masked pixels.
    scale : array (ny, nx)
        Count scale ``n`` of every pixel (the denoised pixel holds ``n`` counts).
    spectra : array (k, channels), optional
        The component spectra (rows on the simplex) for the ``counting`` part; without
        them it is left out.
    replicate_spectra : array (n_boot, k, channels), optional
        Bootstrap replicates of the spectra (``BootstrapResult.replicates``) for the
        ``bootstrap`` part; at least 2, or none.
    density : float, optional
        Density (g/cm^3) of the absorption correction, as given to the component
        quantification; default the model's ``density``, then the mean of its
        ``phase_densities`` (their spread goes into the ``thickness`` part), then an
        estimate from each pixel's composition (as :func:`psnmf.quantify.quantify`
        chooses for a component whose phase is not named).
    thickness_sigma : float, optional
        Thickness sd in nm: adds to the ``thickness`` part (of the components whose mass
        thickness was not estimated, when others' was).
    takeoff_angle : float, optional
        Degrees (default the model's), as given to the component quantification.
    database : {"xraylib"}
        Attenuation coefficients of the absorption correction (the default of
        :func:`psnmf.quantify.quantify`; exspy's tables are not supported here).
    bin_factor : int
        Compositions of ``b x b`` bins of the denoised data (partial edge bins kept):
        the bin's summed intensities, for noisy data. 1: per pixel.
    tol : float, optional
        Convergence of the absorption loop in at.% (default ``1e-6``, quantify's).
    max_absorption_iter : int
        Iterations before the absorption loop gives up with an error.
    fit_options : dict, optional
        Line-fit options of the component quantification (``continuum_degree``...), for
        the replicates' fits.

    Returns
    -------
    CompositionMaps

    Examples
    --------
    >>> import numpy as np
    >>> from psnmf.physics import EDXModel
    >>> from psnmf.quantify import quantify
    >>> model = EDXModel()
    >>> S = np.stack([model.phase_spectrum(c) for c in ({"Mg": 50, "O": 50},
    ...                                                 {"Si": 33.3, "O": 66.7})])
    >>> S /= S.sum(axis=1, keepdims=True)
    >>> qs = [quantify(s, ["Mg", "Si", "O"], model=model, total_counts=1e6,
    ...                detection_sigma=None) for s in S]
    >>> A = np.array([[[1.0, 0.0], [0.5, 0.5]]])
    >>> cm = composition_maps(qs, A, np.full((1, 2), 1e4), spectra=S)
    >>> round(float(cm.composition[cm.elements.index("Mg"), 0, 0]), 3)
    50.0
    >>> bool(cm.sigma[0, 0, 0] > 0)
    True
    """
    qs = list(quantifications)
    A, n = _check_maps(maps, scale, len(qs))
    b = int(bin_factor) if isinstance(bin_factor, int | np.integer) else 0
    if b < 1:
        raise ValueError(f"bin_factor must be a positive integer, got {bin_factor!r}")
    setup, elements = _setup(qs, density, takeoff_angle, database, tol, max_absorption_iter)
    S = None if spectra is None else _check_spectra(spectra, len(qs))
    reps = _replicate_intensities(replicate_spectra, qs, elements, fit_options)
    sd_given = positive_or_none("thickness_sigma", thickness_sigma,
                                "give the thickness uncertainty in nm", allow_zero=True) or 0.0
    sigma_t = equivalent_thickness_sd(setup.thickness, sd_given, setup.density,
                                      setup.density_sd)
    if setup.mass_thickness is not None:
        _estimated_sd(qs, setup, sd_given)
        sigma_t = float(setup.mass_thickness_sd.max())  # type: ignore[union-attr]
    loadings, shape = _bin(A * n[..., None], b)   # (P, k) loadings, NaN where masked
    counts = np.nansum(loadings, axis=1)
    valid = np.isfinite(loadings).all(axis=1) & (counts > 0)
    n_el = len(elements)
    comp = np.full((loadings.shape[0], n_el), np.nan)
    names = [p for p in MAP_PARTS if (p != "counting" or S is not None)
             and (p != "bootstrap" or reps is not None)
             and (p != "thickness" or (sigma_t and _corrected(setup)))]
    parts = {p: np.full((loadings.shape[0], n_el), np.nan, dtype=np.float32) for p in names}
    rows = np.flatnonzero(valid)
    block = max(1, _BLOCK_VALUES // (S.shape[1] if S is not None else 64))
    for start in range(0, rows.size, block):
        idx = rows[start:start + block]
        c, p = _block(loadings[idx], setup, S, reps, sigma_t or 0.0)
        comp[idx] = c
        for name in names:
            parts[name][idx] = p[name]
    total = np.sqrt(sum(parts[p].astype(np.float64) ** 2 for p in names)) if names else \
        np.zeros_like(comp)
    total[~valid] = np.nan

    def image(x: np.ndarray) -> np.ndarray:
        return np.moveaxis(x.reshape(*shape, n_el), -1, 0)

    mass_thickness = None
    if setup.mass_thickness is not None:
        mt = np.full(loadings.shape[0], np.nan)
        mt[valid] = (loadings[valid] / counts[valid, None]) @ setup.mass_thickness
        mass_thickness = mt.reshape(shape)
    return CompositionMaps(
        elements=elements, composition=image(comp), sigma=image(total),
        parts={p: image(v) for p, v in parts.items()},
        counts=np.where(np.isfinite(loadings).all(axis=1), counts, np.nan).reshape(shape),
        bin_factor=b, n_replicates=0 if reps is None else int(reps.shape[0]),
        absorption_corrected=_corrected(setup), mass_thickness=mass_thickness,
    )


def _corrected(s: _Setup) -> bool:
    """Whether the pixels are absorption corrected: a thickness given, or any component's
    mass thickness > 0 when they were estimated."""
    if s.mass_thickness is not None:
        return bool(np.any(s.mass_thickness > 0))
    return s.thickness > 0


def _estimated_sd(qs: list[Quantification], s: _Setup, sd_given: float) -> None:
    """The sd of each component's mass thickness (kg/m^2) into ``s.mass_thickness_sd``,
    and the mass thicknesses of its thickness part into ``s.mass_thickness_bounds``, as
    the component table has them: an estimated film's sd
    (:attr:`Quantification.mass_thickness_sigma`) and its interval one log sd either side
    (:meth:`psnmf.quantify.electroneutrality.NeutralThickness.bounds`); a film given, the
    thickness sd given with the density's spread, times the component's density, and its
    interval one sd either side."""
    k = len(qs)
    sd, lo, hi = np.zeros(k), np.zeros(k), np.zeros(k)
    mt = np.asarray(s.mass_thickness, dtype=np.float64)
    for j, q in enumerate(qs):
        if q.thickness_estimate is not None:
            sd[j] = float(q.mass_thickness_sigma or 0.0)
            lo[j], hi[j] = q.thickness_estimate.bounds() if sd[j] > 0 else (mt[j], mt[j])
            continue
        if q.absorption is not None and q.thickness and q.density:
            sd[j] = q.density * 1e-6 * equivalent_thickness_sd(
                float(q.thickness), sd_given, s.density, s.density_sd)
        lo[j], hi[j] = max(mt[j] - sd[j], 0.0), mt[j] + sd[j]
    s.mass_thickness_sd = sd
    s.mass_thickness_bounds = (lo, hi)


def _check_maps(maps: Any, scale: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Abundances (ny, nx, k) and count scale (ny, nx) as float arrays, checked."""
    if k < 1:
        raise ValueError("quantifications: give one Quantification per component")
    A = np.asarray(getattr(maps, "data", maps), dtype=np.float64)
    n = np.asarray(getattr(scale, "data", scale), dtype=np.float64)
    if A.ndim != 3 or A.shape[2] != k:
        raise ValueError(
            f"maps must be (ny, nx, k) with k = {k} (one per quantification), got shape "
            f"{A.shape}; pass model.maps_ of the fit the quantifications come from")
    if n.shape != A.shape[:2]:
        raise ValueError(f"scale must be (ny, nx) = {A.shape[:2]} like the maps, got shape "
                         f"{n.shape}; pass model.scale_ of the same fit")
    if np.any(n[np.isfinite(n)] < 0):
        raise ValueError("scale must be >= 0 (counts per pixel); pass model.scale_")
    return A, n


def _check_spectra(spectra: Any, k: int) -> np.ndarray:
    S = np.asarray(spectra, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != k:
        raise ValueError(f"spectra must be (k, channels) with k = {k}, got shape {S.shape}; "
                         "pass model.spectra_")
    if not np.all(np.isfinite(S)) or np.any(S < 0):
        raise ValueError("spectra must be finite and non-negative; pass model.spectra_")
    return S / S.sum(axis=1, keepdims=True)


def _setup(qs: list[Quantification], density: float | None, takeoff_angle: float | None,
           database: str, tol: float | None, max_iter: int) -> tuple[_Setup, list[str]]:
    """Elements, component intensities, k-factors and absorption data from the
    component quantifications."""
    for j, q in enumerate(qs):
        if not isinstance(q, Quantification):
            raise TypeError(f"quantifications[{j}] is a {type(q).__name__}, not a "
                            "psnmf.quantify.Quantification")
        if q.method != "CL":
            raise ValueError(
                f"composition maps use Cliff-Lorimer; component {j} was quantified with "
                f"method={q.method!r}. Quantify the components with method='CL'")
    if database != "xraylib":
        raise ValueError(f"database must be 'xraylib' for composition maps, got {database!r}")
    t = tol if tol is not None else 1e-6
    if not (isinstance(t, int | float) and t > 0):
        raise ValueError(f"tol must be a positive number of at.%, got {tol!r}")
    model: EDXModel = qs[0].fit.model
    order = list(dict.fromkeys(el for q in qs for el in q.fit.elements))
    elements = [el for el in order if any(el in q.composition for q in qs)]
    if not elements:
        raise ValueError("no element is quantified in any component: nothing to map")
    families: dict[str, str] = {}
    kf: dict[str, float] = {}
    k_sd: dict[str, float] = {}
    I = np.zeros((len(qs), len(elements)))
    for j, q in enumerate(qs):
        for e, el in enumerate(elements):
            if el in q.composition:
                I[j, e] = q.fit.intensities[el] / q.fit.scale
                families.setdefault(el, q.fit.families[el])
                kf.setdefault(el, q.k_factors[el])
                k_sd.setdefault(el, q.k_factor_sd.get(el, 0.0))
    corrected = [q.absorption is not None for q in qs]
    estimated = any(q.thickness_estimate is not None for q in qs)
    thickness = float(qs[0].thickness or 0.0) if any(corrected) and not estimated else 0.0
    if any(corrected) and not all(corrected) and not estimated:
        raise ValueError("the components were quantified with and without the absorption "
                         "correction; quantify them with the same thickness")
    setup = _Setup(I, np.array([kf[el] for el in elements]),
                   np.array([k_sd[el] for el in elements]), thickness, None, 0.0, float(t),
                   int(max_iter))
    if estimated:  # each component's own mass thickness; 0 for one not corrected
        setup.mass_thickness = np.array([float(q.mass_thickness or 0.0)
                                         if q.absorption is not None else 0.0 for q in qs])
    if thickness > 0 or estimated:
        setup.density, setup.density_sd = film_density(
            model, positive_or_none("density", density, "give g/cm^3, e.g. 4.1"))
        toa = positive_or_none("takeoff_angle", takeoff_angle, "give degrees, e.g. 35")
        # factor columns in the order of the element columns
        setup.tables = absorption_tables(model, {el: families[el] for el in elements},
                                         elements, toa)
    return setup, elements


def _replicate_intensities(replicates: Any, qs: list[Quantification], elements: list[str],
                           fit_options: dict[str, Any] | None) -> np.ndarray | None:
    """Line intensities (n_boot, k, E) per unit spectrum of the replicate spectra, fitted
    as the components were (in the same film); an element left out of a component stays
    out."""
    if replicates is None:
        return None
    R = np.asarray(replicates, dtype=np.float64)
    if R.ndim != 3 or R.shape[1] != len(qs):
        raise ValueError(f"replicate_spectra must be (n_boot, k, channels) with k = {len(qs)},"
                         f" got shape {R.shape}; pass BootstrapResult.replicates")
    if R.shape[0] < 2:
        return None
    out = np.zeros((R.shape[0], len(qs), len(elements)))
    for r in range(R.shape[0]):
        for j, q in enumerate(qs):
            fit = fit_lines(R[r, j], q.fit.elements, model=q.fit.model,
                            families=q.fit.families, film=q.fit.film, **(fit_options or {}))
            for e, el in enumerate(elements):
                if el in q.composition:
                    out[r, j, e] = fit.intensities[el] / fit.scale
    return out


def _bin(w: np.ndarray, b: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Loadings (ny, nx, k) summed over ``b x b`` bins (partial edge bins kept), as
    (bins, k); a bin with a masked pixel is masked."""
    ny, nx, k = w.shape
    if b == 1:
        return w.reshape(-1, k), (ny, nx)
    my, mx = -(-ny // b), -(-nx // b)
    pad = np.zeros((my * b, mx * b, k))
    pad[:ny, :nx] = w
    out = pad.reshape(my, b, mx, b, k).sum(axis=(1, 3))
    return out.reshape(-1, k), (my, mx)


def _cl(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Cliff-Lorimer at.% of intensity rows ``x`` (P, E) with k-factors (E,) or (P, E)."""
    y = x * k
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * y / y.sum(axis=1, keepdims=True)


def _solve(x: np.ndarray, s: _Setup, t_nm: float,
           mass_thickness: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Compositions (P, E) of intensity rows ``x`` and the absorption factors used
    (ones without a correction): the fixed point of :func:`iterate_absorption`, the loop
    of the component quantification, each row stopping when its own change is below
    ``tol``. The film is ``t_nm`` thick (its mass thickness from each row's density), or
    of the rows' ``mass_thickness`` (P,) kg/m^2 when given."""
    if s.tables is None or (t_nm <= 0 if mass_thickness is None
                            else not np.any(mass_thickness > 0)):
        return _cl(x, s.k), np.ones_like(x)
    tables = s.tables

    def step(rows: np.ndarray | None, a: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        comp = _cl(x, s.k) if rows is None else _cl(x[rows], s.k / a)
        if mass_thickness is not None:
            return comp, mass_thickness if rows is None else mass_thickness[rows]
        return comp, tables.mass_thickness(comp, s.density, t_nm)

    comp, factors, _, _ = iterate_absorption(step, tables, s.tol, s.max_iter)
    return comp, factors


def _block(w: np.ndarray, s: _Setup, S: np.ndarray | None, reps: np.ndarray | None,
           sigma_t: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Compositions and sd parts of a block of pixels (loadings ``w`` (P, k), all > 0)."""
    n = w.sum(axis=1)
    t = w / n[:, None]
    x = t @ s.intensities                               # (P, E), per count
    mt = None
    if s.mass_thickness is not None:
        mt = t @ s.mass_thickness
    comp, factors = _solve(x, s, s.thickness, mt)
    kp = s.k / factors                                  # (P, E) effective k-factors
    parts: dict[str, np.ndarray] = {}
    if S is not None:
        parts["counting"] = _counting_sd(t, n, x, kp, comp, s.intensities, S)
    if reps is not None:
        acc = np.zeros_like(comp)
        acc2 = np.zeros_like(comp)
        for r in range(reps.shape[0]):
            d = _cl(t @ reps[r], kp) - comp   # deviations: no cancellation in the sums
            acc += d
            acc2 += d * d
        m = reps.shape[0]
        parts["bootstrap"] = np.sqrt(np.maximum(acc2 - acc * acc / m, 0.0) / (m - 1))
    f = comp / 100.0
    # dC_A / d ln k_B = C_A (delta_AB - C_B): sum over B of (C_A (delta - C_B) sd_B)^2
    cross = (f * f) @ (s.k_sd**2)
    parts["k_factors"] = 100.0 * np.sqrt(np.maximum(
        f * f * (s.k_sd**2 * (1 - 2 * f) + cross[:, None]), 0.0))
    if mt is not None and s.mass_thickness_bounds is not None:
        if sigma_t:  # each pixel's film: its components' bounds, abundance-weighted
            lo = _solve(x, s, 0.0, t @ s.mass_thickness_bounds[0])[0]
            hi = _solve(x, s, 0.0, t @ s.mass_thickness_bounds[1])[0]
            parts["thickness"] = np.abs(hi - lo) / 2.0
    elif sigma_t and s.thickness > 0:
        lo = _solve(x, s, max(s.thickness - sigma_t, 0.0))[0]
        hi = _solve(x, s, s.thickness + sigma_t)[0]
        parts["thickness"] = np.abs(hi - lo) / 2.0
    return comp, parts


def _counting_sd(t: np.ndarray, n: np.ndarray, x: np.ndarray, kp: np.ndarray,
                 comp: np.ndarray, I: np.ndarray, S: np.ndarray) -> np.ndarray:
    """sd (at.%) of each composition from the Poisson noise of the pixel's counts.

    The loadings ``w = n t`` of counts ``~ Poisson(w S)`` have Fisher information
    ``F / n`` with ``F = S diag(1 / (t S)) S^T``; the composition depends on ``t`` only
    (it is scale free), with Jacobian ``J`` (E, k), so its covariance is
    ``J F^-1 J^T / n``. ``F`` is evaluated at ``(n t + 1/k) / (n + 1)``, the abundances
    with one count spread evenly over the components: at ``t`` itself a pixel on the
    simplex boundary would claim an unbounded information about its absent components.
    """
    k = S.shape[0]
    # the information at abundances shrunk by one count spread over the components: on
    # the simplex boundary that of an absent component is unbounded (its lines would
    # fall where the pixel's mean has none), while n counts resolve about 1 / n of it
    shrunk = (t * n[:, None] + 1.0 / k) / (n[:, None] + 1.0)
    # every shrunk abundance is > 0, so the mean is > 0 wherever a spectrum is: channels
    # that no spectrum reaches carry no information; float32 halves the (P, C) passes
    Sc = S[:, S.sum(axis=0) > 0].astype(np.float32)
    inv = 1.0 / (shrunk.astype(np.float32) @ Sc)        # (P, C) 1 / mean per count
    pairs = (Sc[:, None, :] * Sc[None, :, :]).reshape(k * k, -1)  # (k^2, C)
    F = (inv @ pairs.T).astype(np.float64).reshape(-1, k, k)
    cov = np.linalg.pinv(F, hermitian=True)             # (P, k, k), per count
    y = x * kp                                          # (P, E)
    T = y.sum(axis=1)
    g = kp @ I.T                                        # (P, k): sum_f k'_f I_qf
    # J[p, e, q] = 100 / T (k'_e I_qe - C_e / 100 g_q)
    J = (kp[:, :, None] * I.T[None, :, :] - (comp / 100.0)[:, :, None] * g[:, None, :])
    J *= (100.0 / T)[:, None, None]
    var = np.einsum("peq,pqr,per->pe", J, cov, J) / n[:, None]
    return np.sqrt(np.maximum(var, 0.0))
