"""Shared fixtures: a small three-phase spectrum image with known truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass
class Toy:
    counts: np.ndarray  # (ny, nx, ne) int
    spectra: np.ndarray  # (k, ne), rows sum to one
    maps: np.ndarray  # (ny, nx, k), sum to one per pixel
    noise_free: np.ndarray  # (ny, nx, ne) expected counts


def gaussian_spectra(ne: int, peaks: list[list[tuple[float, float]]], width: float = 2.5):
    """Spectra made of Gaussian peaks (position in channels, weight) on a small continuum."""
    ch = np.arange(ne)
    out = []
    for plist in peaks:
        s = 0.02 * np.exp(-ch / (0.6 * ne))
        for pos, w in plist:
            s = s + w * np.exp(-0.5 * ((ch - pos) / width) ** 2)
        out.append(s / s.sum())
    return np.array(out)


def _grain(yy, xx, cy, cx, r, edge):
    """1 inside radius r - edge, 0 outside r + edge, smooth (smoothstep) in between."""
    t = np.clip((r + edge - np.hypot(yy - cy, xx - cx)) / (2 * edge), 0, 1)
    return t * t * (3 - 2 * t)


def three_phase_maps(ny: int, nx: int, rng: np.random.Generator) -> np.ndarray:
    """A matrix phase with round grains of two other phases: pure cores, mixed rims."""
    yy, xx = np.mgrid[0:ny, 0:nx]
    scale = min(ny, nx) / 48
    g1 = np.zeros((ny, nx))
    g2 = np.zeros((ny, nx))
    for _ in range(5):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        g1 = np.maximum(g1, _grain(yy, xx, cy, cx, rng.uniform(4, 7) * scale, 2 * scale))
    for _ in range(3):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        g2 = np.maximum(g2, _grain(yy, xx, cy, cx, rng.uniform(3, 5) * scale, 1.5 * scale))
    g1 = g1 * (1 - g2)
    m = np.clip(np.stack([1 - g1 - g2, g1, g2], axis=-1), 0, None)
    return m / m.sum(axis=-1, keepdims=True)


def make_toy(
    ny: int = 48, nx: int = 48, ne: int = 200, counts: float = 60.0, seed: int = 0
) -> Toy:
    """Three phases sharing peaks (like the paper's mantle sample), Poisson-sampled."""
    rng = np.random.default_rng(seed)
    f = ne / 200
    spectra = gaussian_spectra(
        ne,
        [
            [(25 * f, 1.0), (40 * f, 0.9), (60 * f, 0.05), (90 * f, 0.05), (150 * f, 0.3)],
            [(25 * f, 1.6), (90 * f, 0.35), (150 * f, 0.3), (170 * f, 0.05)],
            [(40 * f, 0.8), (60 * f, 0.8), (90 * f, 0.05), (120 * f, 0.1), (150 * f, 0.3)],
        ],
    )
    maps = three_phase_maps(ny, nx, rng)
    noise_free = counts * maps @ spectra
    return Toy(rng.poisson(noise_free), spectra, maps, noise_free)


@pytest.fixture(scope="session")
def toy() -> Toy:
    return make_toy()
