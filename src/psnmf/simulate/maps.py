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
        standard deviation, default 0.25), and either ``number`` (grain count) or
        ``area_fraction`` (target fraction of the image, converted to a count so
        the recipe works at any image size). Populations are placed in order.
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
        if "number" in g:
            number = int(g["number"])
        elif "area_fraction" in g:
            frac = float(g["area_fraction"])
            if not 0 <= frac < 1:
                raise ValueError(f"grain population {g['phase']}: area_fraction must be in [0, 1)")
            mean_area = math.pi * radius**2 * (1 + spread**2)
            number = int(round(frac * ny * nx / mean_area))
        else:
            raise ValueError(f"grain population {g['phase']}: give 'number' or 'area_fraction'")
        if number < 0:
            raise ValueError(f"grain population {g['phase']}: number must be >= 0")
        idx = names.index(str(g["phase"]))
        for _ in range(number):
            for _attempt in range(60):
                r = radius * max(0.3, 1 + spread * rng.standard_normal())
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


#: Generators by recipe ``type``.
GENERATORS = {
    "grains_in_matrix": grains_in_matrix,
    "lamellae": lamellae,
    "voronoi_polycrystal": voronoi_polycrystal,
    "particles_on_support": particles_on_support,
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
