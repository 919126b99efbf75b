"""Named scenarios and user-defined samples.

A *sample* is a plain dictionary (or a JSON / TOML file) describing phases,
their compositions and a microstructure recipe; no code is needed to define a
new one::

    {
      "name": "my_sample",
      "phases": {"A": {"Mg": 50, "O": 50}, "B": {"Fe": 40, "O": 60}},
      "microstructure": {"type": "grains_in_matrix", "matrix": "A",
                         "grains": [{"phase": "B", "radius": 6, "area_fraction": 0.2}],
                         "blur": 1.5, "seed": 0},
      "shape": [128, 128],          # optional (default 180 x 180)
      "counts_per_pixel": 147,      # optional (default: the "medium" preset)
      "model": {"beam_energy": 200} # optional EDXModel parameters
    }

``microstructure.type`` is one of :data:`psnmf.simulate.maps.GENERATORS`
(``grains_in_matrix``, ``lamellae``, ``voronoi_polycrystal``,
``particles_on_support``, ``nanoparticles``, ``layers``, ``dispersion``); the other
keys are that generator's arguments (``nanoparticles`` and ``dispersion`` take a
nested recipe for the support or the base microstructure).

Built-in samples (``src/psnmf/simulate/data/*.json``, found automatically): ``mantle``
(the paper's synthetic dataset), ``eutectic`` (lamellae), ``ceramic`` (Voronoi
polycrystal) and ``catalyst`` (particles on a support film), and four samples whose
hardest phase is never or rarely pure:

* ``nanoparticles`` -- Au particles of radius 1.5-4 px on and in a TiO2-SiO2 support
  film (Au at most about 0.7 of any pixel's signal);
* ``small_grains`` -- Cr-spinel grains of radius 3-8 px with Opx grains in an olivine
  matrix (pure Spl cores at full resolution, almost none after 4 x 4 binning);
* ``thin_layer`` -- Si / 3 px SiO2 / 12 px HfO2 / TiN gate stack (SiO2 never pure);
* ``mixed_phase`` -- ODS steel: ferrite, M23C6 carbides and Y2Ti2O7 nanoclusters
  present only mixed (at most 0.5 of any pixel).

Count presets (:data:`SNR_PRESETS`): ``medium`` = 147 and ``low`` = 18 mean
counts per pixel, the two synthetic datasets of the paper.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from psnmf.physics import EDXModel, normalize_composition
from psnmf.simulate.dataset import SimulatedDataset, simulate
from psnmf.simulate.maps import from_recipe

__all__ = [
    "SNR_PRESETS",
    "MANTLE_PHASES",
    "builtin_samples",
    "load_sample",
    "sample_dataset",
    "mantle",
]

#: Mean counts per pixel of the paper's two synthetic datasets.
SNR_PRESETS: dict[str, float] = {"medium": 147.0, "low": 18.0}

#: Table 1 of Chen, Alexander & Hebert (arXiv 2405.14649), atomic %.
MANTLE_PHASES: dict[str, dict[str, float]] = {
    "Brg": {
        "Mg": 18.5,
        "Si": 18.2,
        "Al": 1.5,
        "Ca": 1.0,
        "Fe": 1.0,
        "Nd": 0.1,
        "Sm": 0.1,
        "O": 60.0,
    },
    "Fp": {"Mg": 39.0, "Fe": 10.0, "O": 50.0, "Cu": 1.0},
    "CaPv": {
        "Si": 17.5,
        "Al": 2.5,
        "Ca": 16.2,
        "Fe": 1.0,
        "Nd": 1.0,
        "Sm": 1.0,
        "U": 1.0,
        "O": 60.0,
    },
}

DEFAULT_SHAPE = (180, 180)


def _data_dir() -> Any:
    """The folder of built-in sample files (inside the installed package)."""
    return resources.files("psnmf.simulate").joinpath("data")


def builtin_samples() -> list[str]:
    """Names of the built-in samples."""
    return sorted(Path(p.name).stem for p in _data_dir().iterdir() if p.name.endswith(".json"))


def load_sample(source: str | os.PathLike[str] | dict[str, Any]) -> dict[str, Any]:
    """Load and validate a sample description.

    Parameters
    ----------
    source : str, path-like or dict
        A built-in sample name (see :func:`builtin_samples`), a path to a
        ``.json`` or ``.toml`` file, or the dictionary itself.

    Returns
    -------
    dict
        The validated sample (a copy), with keys ``name``, ``phases``,
        ``microstructure`` and optionally ``shape``, ``counts_per_pixel``, ``model``,
        ``description``.
    """
    if isinstance(source, dict):
        sample = copy.deepcopy(source)
        origin = "sample dict"
    else:
        text_source = str(source)
        path = Path(text_source)
        if path.suffix.lower() in (".json", ".toml") or path.exists():
            if not path.exists():
                raise FileNotFoundError(f"sample file {text_source!r} does not exist")
            origin = f"sample file {text_source!r}"
            raw = path.read_bytes()
            try:
                if path.suffix.lower() == ".toml":
                    sample = tomllib.loads(raw.decode("utf-8"))
                else:
                    sample = json.loads(raw)
            except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"{origin} is not valid {path.suffix[1:].upper()}: {exc}"
                ) from None
            sample.setdefault("name", path.stem)
        else:
            names = builtin_samples()
            if text_source not in names:
                raise ValueError(
                    f"unknown sample {text_source!r}: use one of {names} or a path to a .json / "
                    ".toml sample file"
                )
            origin = f"built-in sample {text_source!r}"
            sample = json.loads(_data_dir().joinpath(f"{text_source}.json").read_text())
    return _validate_sample(sample, origin)


def _validate_sample(sample: Any, origin: str) -> dict[str, Any]:
    if not isinstance(sample, dict):
        raise ValueError(f"{origin}: the top level must be an object/table")
    allowed = {
        "name",
        "description",
        "phases",
        "microstructure",
        "shape",
        "counts_per_pixel",
        "model",
    }
    unknown = set(sample) - allowed
    if unknown:
        raise ValueError(f"{origin}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    for key in ("phases", "microstructure"):
        if key not in sample:
            raise ValueError(f"{origin}: missing {key!r} (see psnmf.simulate.scenarios docs)")
    phases = sample["phases"]
    if not isinstance(phases, dict) or not phases:
        raise ValueError(f"{origin}: 'phases' must map phase names to compositions (atomic %)")
    for name, comp in phases.items():
        normalize_composition(comp, name=f"{origin}, phase {name!r}")
    if not isinstance(sample["microstructure"], dict):
        raise ValueError(f"{origin}: 'microstructure' must be an object with a 'type'")
    if "shape" in sample:
        shape = sample["shape"]
        if (
            not isinstance(shape, list | tuple)
            or len(shape) != 2
            or not all(isinstance(v, int) and v >= 2 for v in shape)
        ):
            raise ValueError(f"{origin}: 'shape' must be [ny, nx] integers >= 2, got {shape!r}")
    if "counts_per_pixel" in sample:
        c = sample["counts_per_pixel"]
        if not isinstance(c, int | float) or c <= 0:
            raise ValueError(f"{origin}: 'counts_per_pixel' must be > 0, got {c!r}")
    if "model" in sample:
        EDXModel.from_dict(sample["model"])
    sample.setdefault("name", "sample")
    return sample


def resolve_counts(snr: str | None, counts_per_pixel: float | None, default: float) -> float:
    """Counts per pixel from an explicit value, a preset name, or a default."""
    if counts_per_pixel is not None:
        c = float(counts_per_pixel)
        if not np.isfinite(c) or c <= 0:
            raise ValueError(f"counts per pixel must be > 0, got {counts_per_pixel!r}")
        return c
    if snr is not None:
        if snr not in SNR_PRESETS:
            raise ValueError(f"unknown snr preset {snr!r}: use one of {sorted(SNR_PRESETS)}")
        return SNR_PRESETS[snr]
    return float(default)


def sample_dataset(
    sample: str | os.PathLike[str] | dict[str, Any],
    snr: str | None = None,
    counts_per_pixel: float | None = None,
    shape: tuple[int, int] | None = None,
    seed: int | np.random.Generator | None = 0,
    map_seed: int | None = None,
    model: EDXModel | None = None,
) -> SimulatedDataset:
    """Simulate a dataset of a built-in or user-defined sample.

    Parameters
    ----------
    sample : str, path-like or dict
        See :func:`load_sample`.
    snr : {"medium", "low"}, optional
        Count preset (147 or 18 counts per pixel).
    counts_per_pixel : float, optional
        Mean counts per pixel; overrides ``snr`` and the sample's value.
    shape : (int, int), optional
        Image shape; default the sample's (180 x 180 if it gives none).
    seed : int or numpy.random.Generator
        Seed of the Poisson noise.
    map_seed : int, optional
        Seed of the microstructure; default the recipe's ``seed`` (so the same
        sample has the same ground truth whatever the noise seed).
    model : EDXModel, optional
        Forward model; default built from the sample's ``model`` section.

    Returns
    -------
    SimulatedDataset
    """
    spec = load_sample(sample)
    shape = tuple(shape) if shape is not None else tuple(spec.get("shape", DEFAULT_SHAPE))
    counts = resolve_counts(
        snr, counts_per_pixel, spec.get("counts_per_pixel", SNR_PRESETS["medium"])
    )
    if model is None:
        model = EDXModel.from_dict(spec.get("model", {}))
    recipe = dict(spec["microstructure"])
    recipe.setdefault("seed", 0)
    micro = from_recipe(recipe, shape, seed=map_seed)
    record = dict(spec, shape=list(shape), counts_per_pixel=counts)
    record["microstructure"] = dict(recipe, seed=recipe["seed"] if map_seed is None else map_seed)
    return simulate(spec["phases"], micro, counts, seed=seed, model=model, sample=record)


def mantle(
    snr: str = "medium",
    seed: int | np.random.Generator | None = 0,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    counts_per_pixel: float | None = None,
    map_seed: int | None = None,
    model: EDXModel | None = None,
) -> SimulatedDataset:
    """The paper's synthetic lower-mantle dataset (Brg matrix, Fp and CaPv grains).

    Parameters
    ----------
    snr : {"medium", "low"}
        147 or 18 mean counts per pixel.
    seed : int or numpy.random.Generator
        Seed of the Poisson noise.
    shape : (int, int)
        Image shape (180 x 180 as in the paper).
    counts_per_pixel : float, optional
        Overrides ``snr``.
    map_seed : int, optional
        Seed of the microstructure (default 0, fixed).
    model : EDXModel, optional
        Forward model (default 200 kV, 0.2-20 keV, 10 eV channels, 130 eV at Mn Ka).

    Returns
    -------
    SimulatedDataset
        Phases ``["Brg", "Fp", "CaPv"]`` with the compositions of Table 1
        (Brg and CaPv, which sum to 100.4 and 100.2 at.% there, rescaled to 100).

    Examples
    --------
    >>> ds = mantle("low", seed=1, shape=(32, 32))
    >>> ds.phase_names
    ['Brg', 'Fp', 'CaPv']
    """
    return sample_dataset(
        "mantle",
        snr=snr,
        counts_per_pixel=counts_per_pixel,
        shape=shape,
        seed=seed,
        map_seed=map_seed,
        model=model,
    )
