"""Microstructure generators: phase abundance maps that sum to one per pixel.

Each generator returns a :class:`Microstructure` with ``maps`` of shape
``(ny, nx, k)`` (non-negative, summing to one in every pixel), the phase names in
the order of the last axis, and optionally a relative ``thickness`` map (mean 1)
that scales the counts of each pixel.

A map value is the fraction of the pixel's X-ray signal that comes from the
phase (see :class:`~psnmf.simulate.SimulatedDataset`). Boundaries are smooth:
a Gaussian blur of the one-hot phase labels mimics phases overlapping along the
beam where an interface is inclined, and keeps the maps summing to one (the blur
is linear). Values below :data:`PURE_THRESHOLD` are set to zero afterwards so
that grain interiors are exactly pure.

Generators
----------
grains_in_matrix
    A matrix phase with grains of other phases (blob shapes with random aspect,
    orientation and irregular outline). Used for the mantle scenario.
lamellae
    A periodic stack of lamellae (eutectic, multilayer), inclined and wavy.
voronoi_polycrystal
    A dense polycrystal of Voronoi grains, each grain one phase.
particles_on_support
    Spherical particles lying on a support film: the signal fraction follows the
    projected thickness of each phase, and the thickness map varies.
nanoparticles
    Particles a few pixels across on and in a support film (itself uniform or any
    recipe), each phase weighted by its X-ray signal per unit thickness: the
    particles are never pure.
layers
    A substrate, thin layers of given thickness in pixels, and a cap, edge-on
    (interfaces, coatings, gate stacks): a layer a few pixels thick is never pure.
dispersion
    A phase dispersed finer than the foil in any other microstructure: present only
    mixed, its abundance bounded by ``max_abundance``.

:func:`from_recipe` builds any of them from a plain dictionary (the
``"microstructure"`` section of a sample file).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "Microstructure",
    "grains_in_matrix",
    "lamellae",
    "voronoi_polycrystal",
    "particles_on_support",
    "nanoparticles",
    "layers",
    "dispersion",
    "from_recipe",
    "GENERATORS",
]

#: Abundances below this value are set to zero after blurring (exactly pure interiors).
PURE_THRESHOLD = 1e-3


@dataclass
class Microstructure:
    """Phase abundance maps.

    Attributes
    ----------
    maps : numpy.ndarray
        ``(ny, nx, k)`` non-negative, summing to one over the last axis.
    phase_names : list of str
        Names of the ``k`` phases, in map order.
    thickness : numpy.ndarray or None
        Relative thickness ``(ny, nx)`` with mean 1, or None for uniform.
    """

    maps: np.ndarray
    phase_names: list[str]
    thickness: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.maps.ndim != 3 or self.maps.shape[2] != len(self.phase_names):
            raise ValueError(
                f"maps of shape {self.maps.shape} do not match {len(self.phase_names)} phases"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """Spatial shape ``(ny, nx)``."""
        return self.maps.shape[0], self.maps.shape[1]

    def area_fractions(self) -> dict[str, float]:
        """Mean abundance of each phase."""
        return {n: float(self.maps[..., i].mean()) for i, n in enumerate(self.phase_names)}


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    try:
        ny, nx = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be two integers (ny, nx), got {shape!r}") from None
    if ny < 2 or nx < 2:
        raise ValueError(f"shape must be at least (2, 2) pixels, got {(ny, nx)}")
    return ny, nx


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _smooth_onehot(labels: np.ndarray, k: int, blur: float) -> np.ndarray:
    """One-hot labels blurred by a Gaussian of ``blur`` pixels, renormalised."""
    maps = np.zeros(labels.shape + (k,))
    for i in range(k):
        channel = (labels == i).astype(float)
        maps[..., i] = (
            ndimage.gaussian_filter(channel, blur, mode="reflect") if blur > 0 else channel
        )
    return _clean(maps)


def _clean(maps: np.ndarray) -> np.ndarray:
    maps = np.clip(maps, 0.0, None)
    maps[maps < PURE_THRESHOLD] = 0.0
    total = maps.sum(axis=2, keepdims=True)
    if np.any(total <= 0):  # pragma: no cover - cannot happen with one-hot input
        raise RuntimeError("a pixel has no phase")
    return maps / total


def _population_number(
    pop: dict[str, Any], ny: int, nx: int, radius: float, spread: float, what: str
) -> int:
    """Number of objects of a population from ``number`` or ``area_fraction``.

    ``area_fraction`` is converted with the mean area ``pi r^2 (1 + spread^2)`` of a
    disc whose radius has relative standard deviation ``spread``, so the recipe keeps
    its feature sizes in pixels and its area fractions at any image size.
    """
    if "number" in pop:
        number = int(pop["number"])
    elif "area_fraction" in pop:
        frac = float(pop["area_fraction"])
        if not 0 <= frac < 1:
            raise ValueError(f"{what} population {pop['phase']}: area_fraction must be in [0, 1)")
        mean_area = math.pi * radius**2 * (1 + spread**2)
        number = int(round(frac * ny * nx / mean_area))
    else:
        raise ValueError(f"{what} population {pop['phase']}: give 'number' or 'area_fraction'")
    if number < 0:
        raise ValueError(f"{what} population {pop['phase']}: number must be >= 0")
    return number


def _radius_bounds(
    pop: dict[str, Any], radius: float, default_min: float, default_max: float, what: str
) -> tuple[float, float]:
    """``(radius_min, radius_max)`` of a population, checked."""
    r_min = float(pop.get("radius_min", default_min))
    r_max = float(pop.get("radius_max", default_max))
    if not 0 < r_min <= radius <= r_max:
        raise ValueError(
            f"{what} population {pop['phase']}: need 0 < radius_min ({r_min:g}) <= radius "
            f"({radius:g}) <= radius_max ({r_max:g})"
        )
    return r_min, r_max


def _blob_mask(
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    radius: float,
    aspect: float,
    angle: float,
    harmonics: np.ndarray,
    phases: np.ndarray,
) -> np.ndarray:
    """Mask of an irregular ellipse (radius modulated by angular harmonics)."""
    dy, dx = yy - cy, xx - cx
    ca, sa = math.cos(angle), math.sin(angle)
    u = (dx * ca + dy * sa) / math.sqrt(aspect)
    v = (-dx * sa + dy * ca) * math.sqrt(aspect)
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    mod = np.ones_like(r)
    for m, (a, ph) in enumerate(zip(harmonics, phases, strict=True), start=2):
        mod += a * np.cos(m * theta + ph)
    return r <= radius * mod


def grains_in_matrix(
    shape: Sequence[int],
    matrix: str,
    grains: Sequence[dict[str, Any]],
    blur: float = 1.5,
    roughness: float = 0.25,
    max_aspect: float = 1.6,
    max_overlap: float = 0.15,
    seed: int | np.random.Generator | None = 0,
) -> Microstructure:
    """Grains of one or more phases embedded in a matrix phase.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels.
    matrix : str
        Name of the matrix phase (fills everything that is not a grain).
    grains : list of dict
        One entry per grain population, with keys ``phase`` (name), ``radius``
        (mean equivalent radius in pixels), optional ``radius_spread`` (relative
        standard deviation, default 0.25), optional ``radius_min`` / ``radius_max``
        (pixels; the drawn radii are clipped to them, default ``0.3 * radius`` and no
        upper bound), and either ``number`` (grain count) or ``area_fraction``
        (target fraction of the image, converted to a count so the recipe works at
        any image size). Populations are placed in order.
    blur : float
        Gaussian sigma (pixels) of the boundary transitions.
    roughness : float
        Amplitude of the outline irregularity (0 = ellipses).
    max_aspect : float
        Largest aspect ratio of a grain.
    max_overlap : float
        Largest fraction of a new grain that may cover earlier grains.
    seed : int or numpy.random.Generator
        Random seed.

    Returns
    -------
    Microstructure
        Phases ordered ``[matrix, grain phases in order of first appearance]``.

    Examples
    --------
    >>> ms = grains_in_matrix((64, 64), "A", [{"phase": "B", "radius": 6, "number": 5}])
    >>> ms.phase_names
    ['A', 'B']
    >>> bool(abs(ms.maps.sum(axis=2) - 1).max() < 1e-12)
    True
    """
    ny, nx = _check_shape(shape)
    rng = _rng(seed)
    names = [matrix]
    for g in grains:
        if not isinstance(g, dict) or "phase" not in g or "radius" not in g:
            raise ValueError(
                f"grain population {g!r}: give a dict with 'phase', 'radius' and 'number' or "
                "'area_fraction'"
            )
        if g["phase"] not in names:
            names.append(str(g["phase"]))
    labels = np.zeros((ny, nx), dtype=np.int16)
    occupied = np.zeros((ny, nx), dtype=bool)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    for g in grains:
        radius = float(g["radius"])
        spread = float(g.get("radius_spread", 0.25))
        if radius <= 0 or spread < 0:
            raise ValueError(f"grain population {g['phase']}: radius must be > 0, spread >= 0")
        r_min, r_max = _radius_bounds(g, radius, 0.3 * radius, math.inf, "grain")
        number = _population_number(g, ny, nx, radius, spread, "grain")
        idx = names.index(str(g["phase"]))
        for _ in range(number):
            for _attempt in range(60):
                r = radius * max(0.3, 1 + spread * rng.standard_normal())
                r = min(max(r, r_min), r_max)
                cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
                mask = _blob_mask(
                    yy,
                    xx,
                    cy,
                    cx,
                    r,
                    rng.uniform(1.0, max_aspect),
                    rng.uniform(0, math.pi),
                    rng.uniform(0, roughness, 3) / np.arange(2, 5) * 2,
                    rng.uniform(0, 2 * math.pi, 3),
                )
                area = mask.sum()
                if area == 0:
                    continue
                if (mask & occupied).sum() <= max_overlap * area:
                    labels[mask & ~occupied] = idx
                    occupied |= mask
                    break
    return Microstructure(_smooth_onehot(labels, len(names), blur), names)


def lamellae(
    shape: Sequence[int],
    phases: Sequence[str],
    period: float = 30.0,
    fractions: Sequence[float] | None = None,
    angle: float = 30.0,
    blur: float = 1.5,
    waviness: float = 0.0,
    wave_length: float = 80.0,
    seed: int | np.random.Generator | None = 0,
) -> Microstructure:
    """A periodic stack of lamellae.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels.
    phases : list of str
        Phases of one period, in stacking order (a phase may repeat).
    period : float
        Period in pixels.
    fractions : list of float, optional
        Relative thickness of each lamella in a period (default equal).
    angle : float
        Angle of the lamellae normal to the x axis, degrees.
    blur : float
        Gaussian sigma of the interfaces, pixels.
    waviness : float
        Amplitude of a sinusoidal undulation of the interfaces, pixels.
    wave_length : float
        Wavelength of the undulation, pixels.
    seed : int or numpy.random.Generator
        Random seed (phase of the undulation and of the stack).

    Returns
    -------
    Microstructure
    """
    ny, nx = _check_shape(shape)
    rng = _rng(seed)
    phases = [str(p) for p in phases]
    if len(phases) < 2:
        raise ValueError("lamellae: give at least two phases per period")
    if period <= 0:
        raise ValueError(f"lamellae: period must be > 0 pixels, got {period}")
    fr = np.ones(len(phases)) if fractions is None else np.asarray(fractions, dtype=float)
    if fr.shape != (len(phases),) or np.any(fr <= 0):
        raise ValueError("lamellae: fractions must be positive, one per phase")
    bounds = np.concatenate([[0.0], np.cumsum(fr / fr.sum())])
    names = list(dict.fromkeys(phases))
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    a = math.radians(angle)
    along = -xx * math.sin(a) + yy * math.cos(a)
    u = xx * math.cos(a) + yy * math.sin(a)
    u = u + waviness * np.sin(2 * math.pi * along / wave_length + rng.uniform(0, 2 * math.pi))
    s = np.mod(u / period + rng.uniform(0, 1), 1.0)
    slot = np.clip(np.searchsorted(bounds, s, side="right") - 1, 0, len(phases) - 1)
    labels = np.array([names.index(p) for p in phases], dtype=np.int16)[slot]
    return Microstructure(_smooth_onehot(labels, len(names), blur), names)


def voronoi_polycrystal(
    shape: Sequence[int],
    phases: Sequence[str],
    fractions: Sequence[float] | None = None,
    n_grains: int = 40,
    blur: float = 1.2,
    seed: int | np.random.Generator | None = 0,
) -> Microstructure:
    """A dense polycrystal of Voronoi grains, each grain of one phase.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels.
    phases : list of str
        Phase names.
    fractions : list of float, optional
        Probability of each phase per grain (default equal). Every phase gets at
        least one grain.
    n_grains : int
        Number of grains.
    blur : float
        Gaussian sigma of the grain boundaries, pixels.
    seed : int or numpy.random.Generator
        Random seed.

    Returns
    -------
    Microstructure
    """
    ny, nx = _check_shape(shape)
    rng = _rng(seed)
    phases = [str(p) for p in phases]
    k = len(phases)
    if k < 1 or len(set(phases)) != k:
        raise ValueError("voronoi_polycrystal: give distinct phase names")
    if n_grains < k:
        raise ValueError(f"voronoi_polycrystal: n_grains ({n_grains}) must be >= phases ({k})")
    p = np.ones(k) if fractions is None else np.asarray(fractions, dtype=float)
    if p.shape != (k,) or np.any(p <= 0):
        raise ValueError("voronoi_polycrystal: fractions must be positive, one per phase")
    seeds = np.column_stack([rng.uniform(0, ny, n_grains), rng.uniform(0, nx, n_grains)])
    grain_phase = np.concatenate([np.arange(k), rng.choice(k, n_grains - k, p=p / p.sum())])
    rng.shuffle(grain_phase)
    yy, xx = np.mgrid[0:ny, 0:nx]
    _, nearest = cKDTree(seeds).query(np.column_stack([yy.ravel(), xx.ravel()]))
    labels = grain_phase[nearest].reshape(ny, nx).astype(np.int16)
    return Microstructure(_smooth_onehot(labels, k, blur), phases)


def particles_on_support(
    shape: Sequence[int],
    support: str,
    particles: Sequence[dict[str, Any]],
    support_thickness: float = 10.0,
    blur: float = 0.7,
    seed: int | np.random.Generator | None = 0,
) -> Microstructure:
    """Spherical particles lying on a support film, seen in projection.

    The X-ray signal of each phase is taken proportional to its projected
    thickness, so ``maps = t_k / sum_k t_k`` and the relative thickness map is
    ``sum_k t_k`` divided by its mean (pixels on particles give more counts).
    The support is never pure where particles sit, as in a real specimen.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels.
    support : str
        Name of the support phase (uniform film).
    particles : list of dict
        Populations with keys ``phase``, ``radius`` (pixels), optional
        ``radius_spread`` (default 0.2) and ``number``.
    support_thickness : float
        Film thickness in pixel units (a sphere of radius r is 2r thick at its centre).
    blur : float
        Gaussian sigma (pixels) applied to the projected thicknesses (probe size).
    seed : int or numpy.random.Generator
        Random seed.

    Returns
    -------
    Microstructure
        With a ``thickness`` map.
    """
    ny, nx = _check_shape(shape)
    rng = _rng(seed)
    if support_thickness <= 0:
        raise ValueError(
            f"particles_on_support: support_thickness must be > 0, got {support_thickness}"
        )
    names = [support]
    for p in particles:
        if not isinstance(p, dict) or not {"phase", "radius", "number"} <= set(p):
            raise ValueError(
                f"particle population {p!r}: give a dict with 'phase', 'radius' and 'number'"
            )
        if p["phase"] not in names:
            names.append(str(p["phase"]))
    thick = np.zeros((ny, nx, len(names)))
    thick[..., 0] = support_thickness
    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    for p in particles:
        idx = names.index(str(p["phase"]))
        radius, spread = float(p["radius"]), float(p.get("radius_spread", 0.2))
        if radius <= 0 or int(p["number"]) < 0:
            raise ValueError(f"particle population {p['phase']}: radius > 0 and number >= 0")
        for _ in range(int(p["number"])):
            r = radius * max(0.3, 1 + spread * rng.standard_normal())
            cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            thick[..., idx] += 2.0 * np.sqrt(np.clip(r * r - d2, 0.0, None))
    if blur > 0:
        for i in range(len(names)):
            thick[..., i] = ndimage.gaussian_filter(thick[..., i], blur, mode="reflect")
    total = thick.sum(axis=2)
    maps = _clean(thick / total[..., None])
    return Microstructure(maps, names, thickness=total / total.mean())


def _nested(
    recipe: Any, shape: tuple[int, int], rng: np.random.Generator, what: str
) -> Microstructure:
    """A nested recipe built with a seed drawn from ``rng`` (so the outer seed decides all)."""
    if not isinstance(recipe, dict):
        raise ValueError(f"{what}: give a phase name or a microstructure recipe dict")
    return from_recipe(recipe, shape, seed=int(rng.integers(2**31 - 1)))


#: Sub-pixel samples per pixel side when projecting small particles and thin layers.
SUPERSAMPLE = 4


def _sphere_chords(
    ny: int, nx: int, cy: float, cx: float, r: float
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Mean projected thickness ``2 sqrt(r^2 - d^2)`` of a sphere over each pixel.

    Pixel ``(i, j)`` covers ``[i - 1/2, i + 1/2] x [j - 1/2, j + 1/2]``; the chord is
    averaged over ``SUPERSAMPLE^2`` sub-pixel points, so a particle of 1.5 px radius gets
    its projected volume right (the pixel-centre value would be off by tens of %).
    Returns the slices of the bounding box (clipped to the image) and the chords there.
    """
    y0, y1 = max(0, int(math.floor(cy - r - 1))), min(ny, int(math.ceil(cy + r + 2)))
    x0, x1 = max(0, int(math.floor(cx - r - 1))), min(nx, int(math.ceil(cx + r + 2)))
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    yy = (np.arange(y0, y1)[:, None] + sub[None, :]).ravel()
    xx = (np.arange(x0, x1)[:, None] + sub[None, :]).ravel()
    d2 = (yy[:, None] - cy) ** 2 + (xx[None, :] - cx) ** 2
    chord = 2.0 * np.sqrt(np.clip(r * r - d2, 0.0, None))
    chord = chord.reshape(y1 - y0, SUPERSAMPLE, x1 - x0, SUPERSAMPLE).mean(axis=(1, 3))
    return (slice(y0, y1), slice(x0, x1)), chord


def nanoparticles(
    shape: Sequence[int],
    support: str | dict[str, Any],
    particles: Sequence[dict[str, Any]],
    support_thickness: float = 40.0,
    signal_weights: dict[str, float] | None = None,
    min_gap: float = 1.0,
    blur: float = 0.7,
    seed: int | np.random.Generator | None = 0,
) -> Microstructure:
    """Small spherical particles on and in a support film, seen in projection.

    Each phase's X-ray signal is its projected thickness ``t_k`` times a relative signal
    per unit thickness ``w_k`` (``signal_weights``: atom density times X-ray
    cross-section per atom; dense heavy-metal particles give much more signal per nm
    than an oxide), so ``maps = w_k t_k / sum_k w_k t_k`` and the relative thickness map
    (the pixel's relative counts) is ``sum_k w_k t_k`` over its mean. A particle lying
    *on* the film adds its chord ``2 sqrt(r^2 - d^2)`` to the film's thickness; an
    embedded particle (*in* the film) displaces the film along its chord. Either way the
    support always contributes: the largest particle abundance is, before the probe
    blur, ``w_p 2 r_max / (w_p 2 r_max + w_s (T - 2 r_max))`` for an embedded particle
    and ``w_p 2 r_max / (w_p 2 r_max + w_s T)`` for one on the film (``T`` the film
    thickness, ``w_s`` the smallest support weight), and the blur lowers it further.
    Particles do not overlap in projection (gap ``min_gap``), so this bound holds.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels.
    support : str or dict
        Name of a uniform support phase, or a microstructure recipe (e.g. oxide grains
        in an amorphous film) giving the lateral phase make-up of the film; its phases
        share the film thickness in proportion to its maps.
    particles : list of dict
        Populations with keys ``phase``, ``radius`` (mean, pixels), optional
        ``radius_spread`` (relative sd, default 0.25), ``radius_min`` / ``radius_max``
        (clip, default ``0.5 * radius`` and ``2 * radius``), ``embedded`` (fraction of
        the population inside the film, default 0: all on it) and ``number`` or
        ``area_fraction`` (projected area fraction, so the count scales with the image).
    support_thickness : float
        Film thickness ``T`` in pixel units (> 2 ``radius_max`` of every population that
        has embedded particles).
    signal_weights : dict, optional
        Phase -> relative X-ray signal per unit thickness (> 0); default 1 for all.
    min_gap : float
        Smallest gap in pixels between the projected outlines of two particles (>= 0).
    blur : float
        Gaussian sigma (pixels) of the probe, applied to the projected signals.
    seed : int or numpy.random.Generator
        Random seed (also seeds a nested support recipe).

    Returns
    -------
    Microstructure
        Phases ``[support phases, particle phases]``, with a ``thickness`` map.

    Examples
    --------
    >>> pop = {"phase": "Au", "radius": 2.0, "radius_spread": 0.0, "number": 6}
    >>> ms = nanoparticles((48, 48), "C", [pop], support_thickness=20.0)
    >>> bool(0.1 < ms.maps[..., 1].max() < 4.0 / 24.0)  # 2 r / (T + 2 r), lowered by the blur
    True
    """
    ny, nx = _check_shape(shape)
    rng = _rng(seed)
    if not support_thickness > 0:
        raise ValueError(f"nanoparticles: support_thickness must be > 0, got {support_thickness}")
    if not min_gap >= 0 or not blur >= 0:
        raise ValueError(f"nanoparticles: min_gap and blur must be >= 0, got {min_gap}, {blur}")
    if isinstance(support, str):
        base = Microstructure(np.ones((ny, nx, 1)), [support])
    else:
        base = _nested(support, (ny, nx), rng, "nanoparticles: support")
    names = list(base.phase_names)
    pops = []
    for p in particles:
        if not isinstance(p, dict) or "phase" not in p or "radius" not in p:
            raise ValueError(
                f"particle population {p!r}: give a dict with 'phase', 'radius' and 'number' "
                "or 'area_fraction'"
            )
        phase = str(p["phase"])
        if phase in base.phase_names:
            raise ValueError(f"particle population {phase}: the phase is also a support phase")
        radius, spread = float(p["radius"]), float(p.get("radius_spread", 0.25))
        if not radius > 0 or not spread >= 0:
            raise ValueError(f"particle population {phase}: radius must be > 0, spread >= 0")
        r_min, r_max = _radius_bounds(p, radius, 0.5 * radius, 2.0 * radius, "particle")
        embedded = float(p.get("embedded", 0.0))
        if not 0 <= embedded <= 1:
            raise ValueError(f"particle population {phase}: embedded must be in [0, 1]")
        if embedded > 0 and 2 * r_max > support_thickness:
            raise ValueError(
                f"particle population {phase}: embedded particles up to radius_max = "
                f"{r_max:g} px do not fit in a film {support_thickness:g} px thick; give "
                "radius_max <= support_thickness / 2 or embedded = 0"
            )
        number = _population_number(p, ny, nx, radius, spread, "particle")
        if phase not in names:
            names.append(phase)
        pops.append((phase, radius, spread, r_min, r_max, embedded, number))
    weights = {n: 1.0 for n in names}
    for n, w in (signal_weights or {}).items():
        if n not in weights:
            raise ValueError(f"nanoparticles: signal_weights names {n!r}, not one of {names}")
        if not float(w) > 0:
            raise ValueError(f"nanoparticles: signal weight of {n!r} must be > 0, got {w!r}")
        weights[n] = float(w)
    n_sup = len(base.phase_names)
    film = np.full((ny, nx), float(support_thickness))
    thick = np.zeros((ny, nx, len(names)))
    placed: list[tuple[float, float, float]] = []
    for phase, radius, spread, r_min, r_max, embedded, number in pops:
        idx = names.index(phase)
        for _ in range(number):
            r = min(max(radius * (1 + spread * rng.standard_normal()), r_min), r_max)
            inside = rng.uniform() < embedded
            for _attempt in range(100):
                cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
                if all(math.hypot(cy - y, cx - x) >= r + q + min_gap for y, x, q in placed):
                    break
            else:
                continue  # no room left: the image is full at this gap
            placed.append((cy, cx, r))
            box, chord = _sphere_chords(ny, nx, cy, cx, r)
            thick[box + (idx,)] += chord
            if inside:
                film[box] -= chord
    thick[..., :n_sup] = film[..., None] * base.maps
    if base.thickness is not None:
        thick[..., :n_sup] *= base.thickness[..., None]
    signal = thick * np.array([weights[n] for n in names])
    if blur > 0:
        for i in range(len(names)):
            signal[..., i] = ndimage.gaussian_filter(signal[..., i], blur, mode="reflect")
    total = signal.sum(axis=2)
    maps = _clean(signal / total[..., None])
    return Microstructure(maps, names, thickness=total / total.mean())


def layers(
    shape: Sequence[int],
    phases: Sequence[str],
    thicknesses: Sequence[float],
    position: float = 0.5,
    angle: float = 0.0,
    roughness: float = 0.0,
    roughness_length: float = 40.0,
    blur: float = 1.0,
    seed: int | np.random.Generator | None = 0,
) -> Microstructure:
    """A planar stack: a substrate, thin layers of given thickness, a cap (seen edge-on).

    The first phase fills the image below the stack, the last one above it, and each
    phase between is a layer of the given thickness in pixels, measured along the layer
    normal, whatever the image size. Layer coverage is computed on a sub-pixel grid, so a
    layer of thickness ``t`` integrates to exactly ``t`` pixels along the normal before
    the blur, and the Gaussian blur (the probe, and the layer's inclination through the
    foil) preserves that integral. A layer of a few pixels is therefore never pure: its
    peak abundance is about ``erf(t / (2 sqrt(2) blur))``.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels.
    phases : list of str
        Stacking order from the substrate to the cap (at least three; a phase may
        repeat, e.g. a coating on both sides).
    thicknesses : list of float
        Thickness in pixels (> 0) of each inner layer, ``len(phases) - 2`` values.
    position : float
        Where the middle of the stack lies, as a fraction (0-1) of the image extent
        along the normal.
    angle : float
        Inclination of the layers to the x axis, degrees (0: horizontal layers, the
        normal along y).
    roughness : float
        Root-mean-square amplitude (pixels) of a conformal undulation of the stack
        (all interfaces move together, so layer thicknesses are kept).
    roughness_length : float
        Typical wavelength of the undulation, pixels.
    blur : float
        Gaussian sigma of the interfaces, pixels.
    seed : int or numpy.random.Generator
        Random seed (the undulation).

    Returns
    -------
    Microstructure

    Examples
    --------
    >>> ms = layers((40, 30), ["Si", "SiO2", "HfO2"], [3.0])
    >>> round(float(ms.maps[..., 1].sum(axis=0).mean()), 2)
    3.0
    """
    ny, nx = _check_shape(shape)
    rng = _rng(seed)
    phases = [str(p) for p in phases]
    if len(phases) < 3:
        raise ValueError("layers: give at least three phases (substrate, layer(s), cap)")
    th = np.asarray(thicknesses, dtype=float)
    if th.shape != (len(phases) - 2,) or np.any(~np.isfinite(th)) or np.any(th <= 0):
        raise ValueError(
            f"layers: thicknesses must be {len(phases) - 2} positive numbers of pixels (one "
            f"per inner layer of {phases}), got {thicknesses!r}"
        )
    if not 0 <= position <= 1:
        raise ValueError(f"layers: position must be a fraction in [0, 1], got {position}")
    if not roughness >= 0 or not roughness_length > 0 or not blur >= 0:
        raise ValueError("layers: roughness and blur must be >= 0, roughness_length > 0")
    a = math.radians(angle)
    extent = abs(ny * math.cos(a)) + abs(nx * math.sin(a))
    if th.sum() + 4 * roughness >= extent:
        raise ValueError(
            f"layers: the inner layers ({th.sum():g} px) and roughness do not fit in the "
            f"image ({extent:.0f} px along the normal)"
        )
    names = list(dict.fromkeys(phases))
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    yy = (np.arange(ny)[:, None] + sub[None, :]).ravel()[:, None]
    xx = (np.arange(nx)[:, None] + sub[None, :]).ravel()[None, :]
    normal = -xx * math.sin(a) + yy * math.cos(a)  # along the layer normal
    along = xx * math.cos(a) + yy * math.sin(a)
    centre = -(nx - 1) / 2 * math.sin(a) + (ny - 1) / 2 * math.cos(a)
    centre += (position - 0.5) * extent
    if roughness > 0:
        wave = np.zeros_like(along)
        for m in (1.0, 2.0, 3.0):  # three harmonics with random phases, amplitude ~ 1/m
            wave = wave + np.cos(2 * math.pi * m * along / roughness_length
                                 + rng.uniform(0, 2 * math.pi)) / m
        normal = normal - roughness * wave / math.sqrt(sum(1 / m**2 for m in (1, 2, 3)) / 2)
    bounds = centre - th.sum() / 2 + np.concatenate([[0.0], np.cumsum(th)])
    slot = np.searchsorted(bounds, normal, side="right")  # 0 = substrate, len(th)+1 = cap
    label_of_slot = np.array([names.index(p) for p in phases], dtype=np.int16)
    labels = label_of_slot[slot]
    maps = np.zeros((ny, nx, len(names)))
    for i in range(len(names)):
        frac = (labels == i).reshape(ny, SUPERSAMPLE, nx, SUPERSAMPLE).mean(axis=(1, 3))
        maps[..., i] = ndimage.gaussian_filter(frac, blur, mode="nearest") if blur > 0 else frac
    return Microstructure(_clean(maps), names)


def dispersion(
    shape: Sequence[int],
    base: dict[str, Any],
    phase: str,
    max_abundance: float = 0.5,
    host: str | Sequence[str] | None = None,
    coverage: float = 0.5,
    correlation_length: float = 10.0,
    seed: int | np.random.Generator | None = 0,
) -> Microstructure:
    """A phase dispersed finer than the foil thickness: present everywhere only mixed.

    Nanoscale precipitates or clusters much smaller than the foil thickness overlap the
    host along the beam in every pixel, so their abundance never reaches 1. Their local
    volume fraction varies smoothly: a Gaussian random field (white noise blurred by
    ``correlation_length``) is rank-transformed to uniform values ``u`` in (0, 1], and
    ``g = clip((u - 1 + coverage) / coverage, 0, 1)`` is non-zero on a fraction
    ``coverage`` of the image, uniform in (0, 1] there. The dispersed phase replaces a
    share ``f = max_abundance * g * h`` of every pixel (``h`` the host's abundance in the
    base microstructure): ``maps = (1 - f) * base + f * e_phase``, which keeps the sum to
    one and bounds the phase's abundance by ``max_abundance``.

    Parameters
    ----------
    shape : (int, int)
        ``(ny, nx)`` in pixels.
    base : dict
        Microstructure recipe of the other phases (its thickness map is kept).
    phase : str
        Name of the dispersed phase (not a phase of ``base``).
    max_abundance : float
        Largest abundance of the dispersed phase, in (0, 1).
    host : str or list of str, optional
        Phase(s) of ``base`` that hold the dispersion (default: all).
    coverage : float
        Fraction of the image, in (0, 1], where the dispersion is present.
    correlation_length : float
        Gaussian sigma (pixels, > 0) of the random field: the size of the zones.
    seed : int or numpy.random.Generator
        Random seed (also seeds the base recipe).

    Returns
    -------
    Microstructure
        Phases ``[base phases, phase]``.
    """
    ny, nx = _check_shape(shape)
    rng = _rng(seed)
    if not 0 < max_abundance < 1:
        raise ValueError(f"dispersion: max_abundance must be in (0, 1), got {max_abundance}")
    if not 0 < coverage <= 1:
        raise ValueError(f"dispersion: coverage must be in (0, 1], got {coverage}")
    if not correlation_length > 0:
        raise ValueError(
            f"dispersion: correlation_length must be > 0 pixels, got {correlation_length}"
        )
    ms = _nested(base, (ny, nx), rng, "dispersion: base")
    phase = str(phase)
    if phase in ms.phase_names:
        raise ValueError(f"dispersion: {phase!r} is already a phase of the base {ms.phase_names}")
    hosts = ms.phase_names if host is None else [host] if isinstance(host, str) else list(host)
    unknown = [h for h in hosts if h not in ms.phase_names]
    if unknown:
        raise ValueError(f"dispersion: host {unknown} not among the base phases {ms.phase_names}")
    h = ms.maps[..., [ms.phase_names.index(n) for n in hosts]].sum(axis=2)
    field = ndimage.gaussian_filter(rng.standard_normal((ny, nx)), correlation_length,
                                    mode="wrap")
    u = np.empty(ny * nx)
    u[np.argsort(field, axis=None)] = np.arange(1, ny * nx + 1) / (ny * nx)
    g = np.clip((u.reshape(ny, nx) - 1 + coverage) / coverage, 0.0, 1.0)
    f = max_abundance * g * h
    f[f < PURE_THRESHOLD] = 0.0
    maps = np.concatenate([ms.maps * (1 - f)[..., None], f[..., None]], axis=2)
    return Microstructure(maps, ms.phase_names + [phase], thickness=ms.thickness)


#: Generators by recipe ``type``.
GENERATORS = {
    "grains_in_matrix": grains_in_matrix,
    "lamellae": lamellae,
    "voronoi_polycrystal": voronoi_polycrystal,
    "particles_on_support": particles_on_support,
    "nanoparticles": nanoparticles,
    "layers": layers,
    "dispersion": dispersion,
}


def from_recipe(
    recipe: dict[str, Any],
    shape: Sequence[int],
    seed: int | np.random.Generator | None = None,
) -> Microstructure:
    """Build a microstructure from a recipe dictionary.

    Parameters
    ----------
    recipe : dict
        ``{"type": <generator name>, ...keyword arguments of that generator}``;
        e.g. ``{"type": "grains_in_matrix", "matrix": "Brg", "grains": [...]}``.
        A ``seed`` in the recipe is used unless ``seed`` is given here.
    shape : (int, int)
        Image shape.
    seed : int, optional
        Overrides the recipe's seed.

    Returns
    -------
    Microstructure
    """
    if not isinstance(recipe, dict) or "type" not in recipe:
        raise ValueError(
            f"microstructure recipe must be a dict with a 'type' among {sorted(GENERATORS)}"
        )
    kind = recipe["type"]
    if kind not in GENERATORS:
        raise ValueError(f"unknown microstructure type {kind!r}; use one of {sorted(GENERATORS)}")
    kwargs = {k: v for k, v in recipe.items() if k != "type"}
    if seed is not None:
        kwargs["seed"] = seed
    try:
        return GENERATORS[kind](shape, **kwargs)
    except TypeError as exc:
        raise ValueError(f"microstructure recipe of type {kind!r}: {exc}") from None
