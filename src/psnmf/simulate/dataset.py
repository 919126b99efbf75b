"""Simulated spectrum images with their ground truth, and their files.

Convention (the estimators rely on it)
--------------------------------------
The expected counts of pixel ``i`` in channel ``e`` are::

    noise_free[i, e] = N_i * sum_k maps[i, k] * spectra[k, e]

where every row of ``spectra`` sums to 1 and ``N_i = counts_per_pixel *
thickness[i]`` (``thickness`` has mean 1; uniform by default). So ``maps[i, k]``
is *the fraction of pixel i's X-ray signal that comes from phase k*, the maps sum
to one in every pixel, and ``counts`` is a Poisson sample of ``noise_free``.

Specimen thickness
------------------
The phase spectra are those of a film of ``model.thickness`` nm seen at
``model.takeoff_angle`` degrees, each phase with its own density
(``model.phase_densities``, else ``model.density``, else estimated from its
composition): every line and continuum channel is multiplied by its thin-film
self-absorption factor (:mod:`psnmf.physics`). The compositions of the ground truth
are those of the phases, not of the absorbed spectra; ``k_factors`` are the
thin-film (unabsorbed) ones, so quantifying these spectra needs the absorption
correction (:func:`psnmf.quantify.quantify` with the thickness). Thickness 0 gives the
thin-film spectra exactly. The relative ``thickness`` map scales the counts of each
pixel only: the absorption is that of the nominal film everywhere, which keeps every
pixel a linear mixture of the same phase spectra.

File layout
-----------
:meth:`SimulatedDataset.save` writes a HyperSpy ``.hspy`` file holding an exspy
``EDSTEMSpectrum`` of the counts (navigation axes ``x``, ``y``; signal axis
``Energy`` in keV; elements, X-ray lines, beam energy and energy resolution in
the standard metadata; the specimen thickness as HyperSpy's ``Sample.thickness``
in metres and the take-off angle as exspy's detector ``elevation_angle`` with an
untilted stage and azimuth 0, so ``s.get_take_off_angle()`` returns it). The
ground truth is stored under ``metadata.Simulation``:

=====================  ======================================================
``convention``         the sentence above
``phase_names``        list of str, ``k`` names
``spectra``            ``(k, n_channels)`` float array, rows sum to 1
``maps``               ``(ny, nx, k)`` float array, sums to 1 per pixel
``thickness``          ``(ny, nx)`` relative thickness (mean 1)
``film_thickness``     specimen thickness in nm used for self-absorption
``densities``          ``(k,)`` density of each phase in g/cm^3 (as absorbed)
``takeoff_angle``      X-ray take-off angle in degrees
``composition_elements`` list of element symbols (columns of ``compositions``)
``compositions``       ``(k, n_elements)`` atomic % (rows sum to 100)
``k_factors``          ``(n_elements,)`` Cliff-Lorimer k-factors (atomic basis)
``k_factor_lines``     lines the k-factors refer to, e.g. ``"Fe_Ka"``
``counts_per_pixel``   mean counts per pixel asked for
``seed``               seed of the Poisson sampling (-1 if none)
``model``              JSON string of the :class:`~psnmf.physics.EDXModel`
``sample``             JSON string of the sample description (if any)
=====================  ======================================================

The noise-free cube is not stored: it is recomputed from ``maps``, ``spectra``,
``counts_per_pixel`` and ``thickness`` (:attr:`SimulatedDataset.noise_free`).
Only lists and arrays are stored (no phase names as keys), so any phase name
round-trips.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psnmf.physics import EDXModel, EnergyAxis, normalize_composition

__all__ = ["SimulatedDataset", "simulate", "load_simulated", "CONVENTION"]

CONVENTION = (
    "expected counts of pixel i = counts_per_pixel * thickness[i] * sum_k maps[i, k] * "
    "spectra[k]; spectra rows sum to 1; maps sum to 1 per pixel (fraction of the pixel's "
    "X-ray signal from each phase); counts ~ Poisson(expected counts)"
)

#: Elements whose element density (xraylib) is that of a gas.
_GASEOUS = frozenset({"H", "He", "N", "O", "F", "Ne", "Cl", "Ar", "Kr", "Xe", "Rn"})

#: Pixels per chunk when sampling, to bound memory (about 100 MB of float64).
_CHUNK_PIXELS = 4096


@dataclass
class SimulatedDataset:
    """A simulated EDX spectrum image and its ground truth.

    Attributes
    ----------
    counts : numpy.ndarray
        ``(ny, nx, n_channels)`` int32 Poisson counts.
    spectra : numpy.ndarray
        ``(k, n_channels)`` phase spectra, each row summing to 1.
    maps : numpy.ndarray
        ``(ny, nx, k)`` abundances (fraction of each pixel's signal), summing to 1.
    phase_names : list of str
        Phase names, in the order of ``spectra`` rows and ``maps`` last axis.
    compositions : dict
        Phase name -> {element: atomic %} (each summing to 100).
    k_factors : dict
        Element -> Cliff-Lorimer k-factor (atomic basis, see
        :meth:`EDXModel.k_factors`) for the line in ``quant_lines``.
    quant_lines : dict
        Element -> line the k-factor refers to, e.g. ``{"Fe": "Fe_Ka"}``.
    energy_axis : EnergyAxis
        ``offset``, ``scale`` (keV) and ``size``.
    elements : list of str
        All elements, sorted.
    beam_energy : float
        keV.
    counts_per_pixel : float
        Mean expected counts per pixel.
    thickness : numpy.ndarray
        ``(ny, nx)`` relative thickness, mean 1.
    seed : int or None
        Seed of the Poisson sampling.
    model : EDXModel
        The forward model used.
    sample : dict or None
        The sample description the data came from (if any).
    """

    counts: np.ndarray
    spectra: np.ndarray
    maps: np.ndarray
    phase_names: list[str]
    compositions: dict[str, dict[str, float]]
    k_factors: dict[str, float]
    quant_lines: dict[str, str]
    energy_axis: EnergyAxis
    elements: list[str]
    beam_energy: float
    counts_per_pixel: float
    thickness: np.ndarray
    seed: int | None = None
    model: EDXModel = field(default_factory=EDXModel)
    sample: dict[str, Any] | None = None

    # --- derived quantities ---------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """Spatial shape ``(ny, nx)``."""
        return self.counts.shape[0], self.counts.shape[1]

    @property
    def n_phases(self) -> int:
        """Number of phases ``k``."""
        return len(self.phase_names)

    @property
    def energy(self) -> np.ndarray:
        """Channel centres in keV."""
        return self.energy_axis.values

    @property
    def expected_counts_per_pixel(self) -> np.ndarray:
        """``N_i = counts_per_pixel * thickness``, shape ``(ny, nx)``."""
        return self.counts_per_pixel * self.thickness

    @property
    def noise_free(self) -> np.ndarray:
        """Expected counts ``(ny, nx, n_channels)`` (float64; computed on each access)."""
        return self.expected_counts_per_pixel[..., None] * (self.maps @ self.spectra)

    @property
    def film_thickness(self) -> float:
        """Specimen thickness in nm used for the self-absorption of the spectra."""
        return float(self.model.thickness)

    @property
    def densities(self) -> dict[str, float]:
        """Phase name -> density in g/cm^3 used for the self-absorption."""
        return {n: self.model.density_of(self.compositions[n], n) for n in self.phase_names}

    def phase_spectrum_counts(self, phase: str | int, n_counts: float) -> np.ndarray:
        """Truth spectrum of a phase scaled to ``n_counts`` total counts."""
        k = self.phase_names.index(phase) if isinstance(phase, str) else int(phase)
        return self.spectra[k] * float(n_counts)

    # --- HyperSpy -------------------------------------------------------------
    def to_signal(self) -> Any:
        """The counts as an exspy ``EDSTEMSpectrum`` carrying the ground truth.

        Returns
        -------
        exspy.signals.EDSTEMSpectrum
        """
        from exspy.signals import EDSTEMSpectrum

        s = EDSTEMSpectrum(self.counts)
        ax = s.axes_manager.signal_axes[0]
        ax.name, ax.units = "Energy", "keV"
        ax.offset, ax.scale = self.energy_axis.offset, self.energy_axis.scale
        for axis, name in zip(s.axes_manager.navigation_axes, ("x", "y"), strict=True):
            axis.name, axis.units = name, "px"
        s.metadata.General.title = (
            self.sample.get("name", "simulated") if self.sample else "simulated"
        ) + " (psnmf simulation)"
        s.set_microscope_parameters(
            beam_energy=self.beam_energy,
            energy_resolution_MnKa=self.model.fwhm_mn_ka * 1e3,
            tilt_stage=0.0,
            azimuth_angle=0.0,
            elevation_angle=self.model.takeoff_angle,
        )
        s.metadata.set_item("Sample.thickness", self.film_thickness * 1e-9)
        s.add_elements(self.elements)
        lines = [ln for ln in self.quant_lines.values() if _known_line(ln)]
        if lines:
            s.add_lines(lines)
        s.metadata.set_item("Signal.quantity", "X-rays (Counts)")
        sim = {
            "convention": CONVENTION,
            "phase_names": list(self.phase_names),
            "spectra": np.asarray(self.spectra, dtype=float),
            "maps": np.asarray(self.maps, dtype=float),
            "thickness": np.asarray(self.thickness, dtype=float),
            "composition_elements": list(self.elements),
            "compositions": np.array(
                [
                    [self.compositions[p].get(el, 0.0) for el in self.elements]
                    for p in self.phase_names
                ]
            ),
            "k_factors": np.array([self.k_factors[el] for el in self.elements]),
            "k_factor_lines": [self.quant_lines[el] for el in self.elements],
            "film_thickness": self.film_thickness,
            "densities": np.array([self.densities[n] for n in self.phase_names]),
            "takeoff_angle": float(self.model.takeoff_angle),
            "counts_per_pixel": float(self.counts_per_pixel),
            "seed": -1 if self.seed is None else int(self.seed),
            "model": json.dumps(self.model.to_dict()),
            "sample": json.dumps(self.sample) if self.sample is not None else "",
        }
        s.metadata.set_item("Simulation", sim)
        return s

    def save(self, path: str | os.PathLike[str], overwrite: bool = True) -> Path:
        """Write a ``.hspy`` file atomically (temporary file then rename).

        Parameters
        ----------
        path : str or path-like
            Destination, ending in ``.hspy``.
        overwrite : bool
            Replace an existing file (default True).

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        if path.suffix.lower() != ".hspy":
            raise ValueError(f"output {str(path)!r}: give a file name ending in .hspy")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True or choose another name")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise FileNotFoundError(f"output folder {str(folder)!r} does not exist")
        tmp = str(folder / f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.hspy")
        try:
            self.to_signal().save(tmp, overwrite=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return path


def _known_line(line: str) -> bool:
    """Whether exspy's database knows an X-ray line name such as ``"U_La"``."""
    from exspy.material import elements as db

    element, name = line.split("_", 1)
    try:
        return name in db[element]["Atomic_properties"]["Xray_lines"].keys()
    except (KeyError, AttributeError):
        return False


def _validate_maps(maps: np.ndarray, k: int) -> np.ndarray:
    maps = np.asarray(maps, dtype=float)
    if maps.ndim != 3 or maps.shape[2] != k:
        raise ValueError(f"maps must have shape (ny, nx, {k}) for {k} phases, got {maps.shape}")
    if not np.all(np.isfinite(maps)) or np.any(maps < 0):
        raise ValueError("maps must be finite and non-negative")
    sums = maps.sum(axis=2)
    if np.any(np.abs(sums - 1) > 1e-6):
        raise ValueError(
            "maps must sum to 1 in every pixel (fraction of the signal from each phase); "
            f"found sums between {sums.min():.4g} and {sums.max():.4g}: divide by maps.sum(-1)"
        )
    return maps / sums[..., None]


def simulate(
    phases: dict[str, dict[str, float]],
    maps: Any,
    counts_per_pixel: float,
    seed: int | np.random.Generator | None = 0,
    model: EDXModel | None = None,
    thickness: np.ndarray | None = None,
    sample: dict[str, Any] | None = None,
) -> SimulatedDataset:
    """Simulate a Poisson-noisy EDX spectrum image with its ground truth.

    Parameters
    ----------
    phases : dict
        Phase name -> composition {element: atomic %} (sums to ~100; rescaled).
    maps : numpy.ndarray or Microstructure
        ``(ny, nx, k)`` abundances summing to 1, in the order of ``phases``; or a
        :class:`~psnmf.simulate.maps.Microstructure` whose phase names match the
        keys of ``phases`` (its thickness map is used unless ``thickness`` is given).
    counts_per_pixel : float
        Mean expected counts per pixel (> 0), e.g. 147 or 18.
    seed : int, numpy.random.Generator or None
        Seed of the Poisson sampling.
    model : EDXModel, optional
        Forward model (default ``EDXModel()``: 200 kV, 0.2-20 keV, 10 eV channels,
        thin film). Its ``thickness``, ``takeoff_angle`` and densities set the
        self-absorption of the phase spectra (the built-in samples state theirs).
    thickness : numpy.ndarray, optional
        ``(ny, nx)`` relative thickness (rescaled to mean 1), scaling the counts of
        each pixel. Default uniform. (The film thickness for absorption is
        ``model.thickness`` in nm.)
    sample : dict, optional
        Sample description stored with the data.

    Returns
    -------
    SimulatedDataset

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.full((4, 5, 1), 1.0)
    >>> ds = simulate({"MgO": {"Mg": 50, "O": 50}}, maps, counts_per_pixel=100, seed=1)
    >>> ds.counts.shape
    (4, 5, 1980)
    """
    from psnmf.simulate.maps import Microstructure

    model = model or EDXModel()
    if not isinstance(phases, dict) or not phases:
        raise ValueError("phases: give a dict phase name -> {element: atomic %}")
    names = [str(n) for n in phases]
    comps = {n: normalize_composition(phases[n], name=f"phase {n!r}") for n in names}
    if isinstance(maps, Microstructure):
        missing = set(names) ^ set(maps.phase_names)
        if missing:
            raise ValueError(
                f"microstructure phases {maps.phase_names} do not match the phases {names}"
            )
        order = [maps.phase_names.index(n) for n in names]
        if thickness is None:
            thickness = maps.thickness
        maps = maps.maps[..., order]
    maps = _validate_maps(maps, len(names))
    ny, nx, _ = maps.shape
    try:
        n_mean = float(counts_per_pixel)
    except (TypeError, ValueError):
        raise ValueError(f"counts_per_pixel must be a number, got {counts_per_pixel!r}") from None
    if not np.isfinite(n_mean) or n_mean <= 0:
        raise ValueError(f"counts_per_pixel must be > 0, got {counts_per_pixel!r}")
    if thickness is None:
        thick = np.ones((ny, nx))
    else:
        thick = np.asarray(thickness, dtype=float)
        if thick.shape != (ny, nx) or np.any(~np.isfinite(thick)) or np.any(thick < 0):
            raise ValueError(f"thickness must be a non-negative (ny, nx)={ny, nx} array")
        if thick.mean() <= 0:
            raise ValueError("thickness must not be all zero")
        thick = thick / thick.mean()
    if model.thickness > 0 and model.density is None:
        named = dict(model.phase_densities)
        guessed = [n for n in names if n not in named and set(comps[n]) & _GASEOUS]
        if guessed:
            warnings.warn(
                f"phases {guessed} have no density: it is estimated from the element "
                "densities, far too low for oxides and nitrides (their O, N enter as "
                "gases), so their absorption is underestimated; give "
                "model=EDXModel(phase_densities={...}) or a 'model' section in the sample",
                stacklevel=2,
            )
    spectra = np.stack([model.phase_spectrum(comps[n], phase=n) for n in names])
    elements = sorted({el for c in comps.values() for el in c})
    families = {el: model.quant_family(el) for el in elements}
    k_factors = model.k_factors(elements, families)
    quant_lines = {el: model.line_label(el, families[el]) for el in elements}
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    counts = _poisson_cube(maps, spectra, n_mean * thick, rng)
    return SimulatedDataset(
        counts=counts,
        spectra=spectra,
        maps=maps,
        phase_names=names,
        compositions=comps,
        k_factors=k_factors,
        quant_lines=quant_lines,
        energy_axis=model.axis,
        elements=elements,
        beam_energy=float(model.beam_energy),
        counts_per_pixel=n_mean,
        thickness=thick,
        seed=None if isinstance(seed, np.random.Generator) or seed is None else int(seed),
        model=model,
        sample=sample,
    )


def _poisson_cube(
    maps: np.ndarray, spectra: np.ndarray, n_pixel: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Poisson sample of ``n_pixel * maps @ spectra``, in pixel chunks (bounded memory)."""
    ny, nx, k = maps.shape
    flat_maps = maps.reshape(-1, k)
    flat_n = n_pixel.reshape(-1)
    out = np.empty((ny * nx, spectra.shape[1]), dtype=np.int32)
    for start in range(0, ny * nx, _CHUNK_PIXELS):
        stop = min(start + _CHUNK_PIXELS, ny * nx)
        lam = (flat_maps[start:stop] @ spectra) * flat_n[start:stop, None]
        out[start:stop] = rng.poisson(lam)
    return out.reshape(ny, nx, spectra.shape[1])


def load_simulated(source: str | os.PathLike[str] | Any) -> SimulatedDataset:
    """Read a simulated dataset (counts and ground truth) back.

    Parameters
    ----------
    source : str, path-like or HyperSpy signal
        A file written by :meth:`SimulatedDataset.save` (or ``psnmf simulate``),
        or a signal returned by :meth:`SimulatedDataset.to_signal`.

    Returns
    -------
    SimulatedDataset

    Examples
    --------
    >>> from psnmf.simulate import mantle
    >>> ds = mantle("low", seed=0, shape=(4, 4))
    >>> back = load_simulated(ds.to_signal())
    >>> bool((back.counts == ds.counts).all()), back.phase_names, back.model == ds.model
    (True, ['Brg', 'Fp', 'CaPv'], True)
    """
    if isinstance(source, str | os.PathLike):
        import hyperspy.api as hs

        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {str(path)!r}")
        s = hs.load(str(path))
    else:
        s = source
    if not s.metadata.has_item("Simulation"):
        raise ValueError(
            "this file has no metadata.Simulation: it was not written by psnmf.simulate "
            "(use psnmf's io to read measured data)"
        )
    sim = s.metadata.Simulation
    names = [str(n) for n in sim.phase_names]
    elements = [str(e) for e in sim.composition_elements]
    comp = np.asarray(sim.compositions, dtype=float)
    compositions = {
        n: {el: float(v) for el, v in zip(elements, comp[i], strict=True) if v > 0}
        for i, n in enumerate(names)
    }
    kf = np.asarray(sim.k_factors, dtype=float)
    lines = [str(x) for x in sim.k_factor_lines]
    model = EDXModel.from_dict(json.loads(sim.model))
    ax = s.axes_manager.signal_axes[0]
    axis = EnergyAxis(float(ax.offset), float(ax.scale), int(ax.size))
    sample = json.loads(sim.sample) if sim.has_item("sample") and sim.sample else None
    seed = int(sim.seed)
    return SimulatedDataset(
        counts=np.asarray(s.data, dtype=np.int32),
        spectra=np.asarray(sim.spectra, dtype=float),
        maps=np.asarray(sim.maps, dtype=float),
        phase_names=names,
        compositions=compositions,
        k_factors={el: float(k) for el, k in zip(elements, kf, strict=True)},
        quant_lines=dict(zip(elements, lines, strict=True)),
        energy_axis=axis,
        elements=elements,
        beam_energy=float(s.metadata.Acquisition_instrument.TEM.beam_energy),
        counts_per_pixel=float(sim.counts_per_pixel),
        thickness=np.asarray(sim.thickness, dtype=float),
        seed=None if seed < 0 else seed,
        model=model,
        sample=sample,
    )
