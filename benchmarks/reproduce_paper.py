"""Reproduction of the synthetic-data results of the PSNMF paper (arXiv 2405.14649).

Runs the paper's two mantle datasets (medium SNR, 147 counts/pixel; low SNR, 18
counts/pixel; 180 x 180 pixels) through standard NMF, PSNMF at several bin factors and
PCA denoising, and compares everything with the ground truth, with the paper's numbers
and with the oracles of :mod:`psnmf.metrics` (what is possible from these counts):

* oracle spectra: maximum-likelihood spectra given the **true maps** - the best spectral
  angle any method can expect from this noise;
* oracle maps: maximum-likelihood maps given the **true spectra** - the map MSE of a
  method that knew the spectra exactly (per-pixel ML, no spatial prior).

Every error is also given as a ratio to its oracle. PSNMF here is the paper's method
(binned-stage NMF spectra, per-pixel maps).

The three outputs of the paper are reproduced:

1. spectral angle and map MSE per phase (Figures 2 and 3 legends);
2. the compositions of the PSNMF components by Cliff-Lorimer quantification (Table 1);
3. the error of the Nd L-alpha elemental map of the raw, PCA-denoised and
   PSNMF-denoised data against the noise-free map (Figures 2 and 3, bottom rows).

Elemental maps integrate the counts in exspy's integration window of the line
(``EDSSpectrum.estimate_integration_windows(windows_width=2)``: the line energy +- one
detector FWHM at that energy), exactly the window ``get_lines_intensity`` sums over, with
no background subtraction. The sums are taken on the factors (``scale * maps @
spectra[:, window].sum(1)``) where possible, so no extra dense cube is built.

Entry points: :func:`run_reproduction` (both presets), :func:`run_preset` (one),
:func:`format_report` (the printed tables), :func:`figure` (Figure 2 / 3 equivalents)
and :func:`main` (``python benchmarks/paper.py``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from psnmf.simulate.scenarios import MANTLE_PHASES

__all__ = [
    "PAPER",
    "TABLE1",
    "FULL_SETTINGS",
    "QUICK_SETTINGS",
    "MethodResult",
    "CompositionResult",
    "PresetResult",
    "Reproduction",
    "nd_window",
    "line_window",
    "window_map",
    "run_preset",
    "run_reproduction",
    "format_preset",
    "format_report",
    "figure",
    "save_outputs",
    "main",
]

#: Table 1 of the paper (atomic %), the compositions the simulation was built from.
#: (Brg and CaPv sum to 100.4 and 100.2 at.%; the simulation rescales them to 100.)
TABLE1: dict[str, dict[str, float]] = MANTLE_PHASES

#: Numbers reported in the paper for its synthetic datasets.
PAPER: dict[str, dict[str, Any]] = {
    "medium": {
        "counts_per_pixel": 147,
        "reference_b": 12,
        "bin_factors": (2, 4, 12, 15, 30),
        # Spectral angles in degrees, Brg, Fp, CaPv (text of section 3.1).
        "psnmf_angle": (0.25, 1.52, 1.73),
        "nmf_angle": (5.81, 4.30, 64.15),
        # Table 1, PSNMF1-3 at b = 12 (atomic %; '-' entries omitted).
        "psnmf_composition": {
            "Brg": {
                "Mg": 18.49, "Si": 18.10, "Al": 1.47, "Ca": 1.01, "Fe": 0.99,
                "Nd": 0.10, "Sm": 0.10, "O": 59.72,
            },
            "Fp": {"Mg": 39.53, "Fe": 10.46, "O": 48.84, "Cu": 1.16},
            "CaPv": {
                "Si": 17.42, "Al": 2.20, "Ca": 16.57, "Fe": 0.98, "Nd": 0.99,
                "Sm": 0.96, "U": 0.99, "O": 59.81,
            },
        },
    },
    "low": {
        "counts_per_pixel": 18,
        "reference_b": 15,
        "bin_factors": (6, 10, 15, 20, 30),
        # The paper gives only the range over the three phases for the low-SNR data.
        "psnmf_angle_range": (0.64, 5.04),
        "nmf_angle_range": (29.69, 75.41),
        "psnmf_composition": {
            "Brg": {
                "Mg": 18.47, "Si": 18.29, "Al": 1.43, "Ca": 1.01, "Fe": 0.99,
                "Nd": 0.10, "Sm": 0.12, "O": 59.55,
            },
            "Fp": {"Mg": 39.65, "Fe": 10.36, "O": 48.63, "Cu": 1.26},
            "CaPv": {
                "Si": 17.43, "Al": 2.41, "Ca": 15.47, "Fe": 1.05, "Nd": 0.99,
                "Sm": 0.91, "U": 1.08, "O": 60.25,
            },
        },
    },
}

#: Settings of the full reproduction (the paper's datasets and bin factors).
FULL_SETTINGS: dict[str, Any] = {
    "shape": (180, 180),
    "presets": {
        "medium": {"bin_factors": (2, 4, 12, 15, 30), "reference_b": 12},
        "low": {"bin_factors": (6, 10, 15, 20, 30), "reference_b": 15},
    },
    "converged_check": True,
}

#: Settings of ``--quick`` (a smaller image, fewer bin factors; for tests and smoke runs).
QUICK_SETTINGS: dict[str, Any] = {
    "shape": (72, 72),
    "presets": {
        "medium": {"bin_factors": (4, 12), "reference_b": 12},
        "low": {"bin_factors": (8, 12), "reference_b": 12},
    },
    "converged_check": False,
}

#: Elemental map of the paper's Figures 2 and 3.
ND_LINE = "Nd_La"

#: Number of principal components of the PCA denoising (as in the paper).
PCA_COMPONENTS = 3

#: Stopping rule of the oracle fits (convex problems; run them to convergence).
ORACLE_MAX_ITER = 3000
ORACLE_TOL = 1e-10

#: Stage-1 stopping rule of the "converged" diagnostic PSNMF run (the default is
#: ``max_iter=2000, tol=1e-7``).
CONVERGED_PSNMF = {"max_iter": 20000, "tol": 1e-10}


# -----------------------------------------------------------------------------------------
# Result containers
# -----------------------------------------------------------------------------------------
@dataclass
class MethodResult:
    """Errors of one decomposition against the ground truth.

    Attributes
    ----------
    name : str
        ``"NMF"``, ``"PSNMF b=12"``, ``"oracle spectra"`` ...
    angle : list of float or None
        Spectral angle (degrees) per true phase, after optimal matching.
    mse : list of float or None
        Map MSE per true phase.
    seconds : float
        Wall time of the fit.
    bin_factor : int or None
        PSNMF bin factor.
    order : list of int or None
        Found component matched to each true phase.
    n_iter : dict or int or None
        Iterations run.
    """

    name: str
    angle: list[float] | None
    mse: list[float] | None
    seconds: float
    bin_factor: int | None = None
    order: list[int] | None = None
    n_iter: Any = None


@dataclass
class CompositionResult:
    """Quantification of one phase's component spectrum.

    Attributes
    ----------
    phase : str
    truth : dict
        Element -> at.% of the simulation (Table 1 rescaled to 100).
    table1 : dict
        Element -> at.% as printed in Table 1.
    paper : dict
        Element -> at.% of the paper's PSNMF component.
    ours : dict
        Element -> at.% of our PSNMF component.
    sigma : dict or None
        Element -> one-sigma counting uncertainty of ``ours``.
    oracle : dict
        Element -> at.% of the oracle spectrum (ML spectrum given the true maps).
    total_counts : float
        Counts attributed to the component (sum of ``scale * map``).
    """

    phase: str
    truth: dict[str, float]
    table1: dict[str, float]
    paper: dict[str, float]
    ours: dict[str, float]
    sigma: dict[str, float] | None
    oracle: dict[str, float]
    total_counts: float


@dataclass
class PresetResult:
    """Everything measured on one dataset (one SNR preset).

    The array fields (``arrays``) feed the figures and are not written to JSON.
    """

    snr: str
    shape: tuple[int, int]
    seed: int
    counts_per_pixel: float
    phase_names: list[str]
    reference_b: int
    methods: list[MethodResult]
    compositions: list[CompositionResult]
    nd_error: dict[str, float]
    nd_window_kev: tuple[float, float]
    seconds: dict[str, float]
    purity: dict[int, list[float]] = field(default_factory=dict)
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)

    def method(self, name: str) -> MethodResult:
        """The :class:`MethodResult` called ``name``."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"no method {name!r}; have {[m.name for m in self.methods]}")

    def psnmf(self, b: int | None = None) -> MethodResult:
        """The PSNMF result at bin factor ``b`` (default: the reference ``b``)."""
        return self.method(f"PSNMF b={self.reference_b if b is None else b}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        d = {k: v for k, v in asdict(self).items() if k != "arrays"}
        d["oracle_ratio"] = self.oracle_ratios()
        return d

    def oracle_ratios(self) -> dict[str, dict[str, list[float] | None]]:
        """Per method, angle / oracle angle and MSE / oracle MSE per phase."""
        oa = np.asarray(self.method("oracle spectra").angle, dtype=float)
        om = np.asarray(self.method("oracle maps").mse, dtype=float)
        out: dict[str, dict[str, list[float] | None]] = {}
        for m in self.methods:
            if m.name.startswith("oracle"):
                continue
            out[m.name] = {
                "angle": _ratio(m.angle, oa),
                "mse": _ratio(m.mse, om),
            }
        return out


@dataclass
class Reproduction:
    """Both presets, with the settings used."""

    presets: dict[str, PresetResult]
    settings: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "paper": PAPER,
            "table1": TABLE1,
            "settings": self.settings,
            "seconds": self.seconds,
            "presets": {k: v.to_dict() for k, v in self.presets.items()},
        }


def _ratio(values: Sequence[float] | None, oracle: np.ndarray) -> list[float] | None:
    if values is None:
        return None
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(oracle > 0, v / oracle, np.nan)
    return [float(x) for x in r]


# -----------------------------------------------------------------------------------------
# Elemental maps
# -----------------------------------------------------------------------------------------
def line_window(dataset: Any, line: str = ND_LINE, width: float = 2.0) -> tuple[float, float]:
    """exspy's integration window of an X-ray line for a simulated dataset, in keV.

    Uses ``EDSSpectrum.estimate_integration_windows(windows_width=width)`` on a one-pixel
    signal with the dataset's calibration (line energy +- ``width / 2`` detector FWHM), the
    window ``get_lines_intensity(integration_windows=width)`` integrates over.
    """
    from exspy.signals import EDSTEMSpectrum

    s = EDSTEMSpectrum(np.zeros(dataset.energy_axis.size))
    ax = s.axes_manager.signal_axes[0]
    ax.name, ax.units = "Energy", "keV"
    ax.offset, ax.scale = dataset.energy_axis.offset, dataset.energy_axis.scale
    s.set_microscope_parameters(
        beam_energy=dataset.beam_energy,
        energy_resolution_MnKa=dataset.model.fwhm_mn_ka * 1e3,
    )
    lo, hi = s.estimate_integration_windows(windows_width=width, xray_lines=[line])[0]
    return float(lo), float(hi)


def nd_window(dataset: Any) -> tuple[float, float]:
    """Integration window (keV) of the Nd L-alpha line (see :func:`line_window`)."""
    return line_window(dataset, ND_LINE)


def _channel_slice(dataset: Any, window: tuple[float, float]) -> slice:
    """Channels of a keV window, with HyperSpy's ``isig[lo:hi]`` rounding."""
    off, sc, n = dataset.energy_axis.offset, dataset.energy_axis.scale, dataset.energy_axis.size
    i0 = int(np.clip(round((window[0] - off) / sc), 0, n))
    i1 = int(np.clip(round((window[1] - off) / sc), 0, n))
    return slice(i0, i1)


def window_map(
    dataset: Any,
    window: tuple[float, float],
    *,
    cube: np.ndarray | None = None,
    maps: np.ndarray | None = None,
    spectra: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """Counts summed over an energy window, from a cube or from factors.

    Give either ``cube`` (ny, nx, channels), or ``maps`` (ny, nx, k), ``spectra`` (k,
    channels) and ``scale`` (ny, nx) of a factorisation ``scale * maps @ spectra``.
    """
    sl = _channel_slice(dataset, window)
    if cube is not None:
        return np.asarray(cube[..., sl], dtype=float).sum(axis=-1)
    if maps is None or spectra is None or scale is None:
        raise ValueError("window_map: give cube=, or maps=, spectra= and scale=.")
    return np.asarray(scale, dtype=float) * (maps @ np.asarray(spectra)[:, sl].sum(axis=1))


# -----------------------------------------------------------------------------------------
# One preset
# -----------------------------------------------------------------------------------------
def _compare(
    name: str,
    spectra: np.ndarray,
    maps: np.ndarray,
    dataset: Any,
    seconds: float,
    **extra: Any,
) -> MethodResult:
    from psnmf.metrics import compare_to_truth

    c = compare_to_truth(spectra, maps, dataset.spectra, dataset.maps)
    return MethodResult(
        name=name,
        angle=[float(a) for a in c["angle"]],
        mse=[float(m) for m in c["mse"]],
        seconds=seconds,
        order=[int(o) for o in c["order"]],
        **extra,
    )


def _quantify_rows(
    spectra: np.ndarray, totals: Sequence[float], dataset: Any
) -> list[Any]:
    from psnmf.quantify import quantify_spectra

    return quantify_spectra(spectra, list(dataset.elements), total_counts=list(totals),
                            model=dataset.model)


def run_preset(
    snr: str,
    *,
    bin_factors: Sequence[int] | None = None,
    reference_b: int | None = None,
    shape: tuple[int, int] = (180, 180),
    seed: int = 0,
    random_state: int = 0,
    pca: bool = True,
    converged_check: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PresetResult:
    """Run the paper's comparison on one mantle dataset.

    Parameters
    ----------
    snr : {'medium', 'low'}
        Count preset (147 or 18 counts per pixel).
    bin_factors : sequence of int, optional
        PSNMF bin factors (default: the paper's for the preset).
    reference_b : int, optional
        Bin factor whose components are quantified and whose reconstruction gives the
        denoised Nd map (default: the paper's, 12 or 15). Added to ``bin_factors`` if
        missing.
    shape : (ny, nx)
        Image size (the paper's is 180 x 180).
    seed : int
        Seed of the Poisson noise of the simulation.
    random_state : int
        Seed of the NMF initialisations.
    pca : bool
        Run the PCA denoising baseline (about 20 s at 180 x 180).
    converged_check : bool
        Also fit PSNMF at ``reference_b`` with the binned stage run much further
        (:data:`CONVERGED_PSNMF`), to separate stopping-rule effects from the estimator's.
    progress : callable, optional
        Called with a short message after each step.

    Returns
    -------
    PresetResult
    """
    from psnmf import simulate
    from psnmf.baselines import pca_denoise, standard_nmf
    from psnmf.estimator import PSNMF
    from psnmf.metrics import oracle_maps, oracle_spectra, relative_error

    if snr not in PAPER:
        raise ValueError(f"snr={snr!r}: choose 'medium' or 'low'.")
    say = progress or (lambda _msg: None)
    paper = PAPER[snr]
    bins = list(paper["bin_factors"] if bin_factors is None else bin_factors)
    ref_b = int(paper["reference_b"] if reference_b is None else reference_b)
    if ref_b not in bins:
        bins.append(ref_b)
    bins = sorted(set(int(b) for b in bins))
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    ds = simulate.mantle(snr, seed=seed, shape=tuple(shape))
    seconds["simulate"] = time.perf_counter() - t0
    counts = ds.counts
    k = ds.n_phases
    say(f"[{snr}] simulated {shape[0]}x{shape[1]}, {counts.sum() / np.prod(shape):.1f} "
        f"counts/pixel ({seconds['simulate']:.1f} s)")
    window = nd_window(ds)
    nd_true = window_map(ds, window, maps=ds.maps, spectra=ds.spectra,
                         scale=ds.expected_counts_per_pixel)
    nd_maps: dict[str, np.ndarray] = {"truth": nd_true,
                                      "raw": window_map(ds, window, cube=counts)}
    methods: list[MethodResult] = []
    arrays: dict[str, Any] = {
        "true_spectra": ds.spectra,
        "true_maps": ds.maps,
        "energy": ds.energy,
        "phase_names": list(ds.phase_names),
    }

    t0 = time.perf_counter()
    nmf = standard_nmf(counts, k, random_state=random_state)
    dt = time.perf_counter() - t0
    methods.append(_compare("NMF", nmf.spectra, nmf.maps, ds, dt, n_iter=nmf.n_iter))
    nd_maps["NMF"] = window_map(ds, window, maps=nmf.maps, spectra=nmf.spectra,
                                scale=nmf.scale)
    arrays["NMF"] = _aligned(nmf.spectra, nmf.maps, methods[-1].order)
    say(f"[{snr}] NMF {dt:.1f} s")

    ref_model = None
    for b in bins:
        t0 = time.perf_counter()
        model = PSNMF(k, b, spectra="nmf", smoothing=None,
                      random_state=random_state).fit(counts)
        dt = time.perf_counter() - t0
        methods.append(_compare(f"PSNMF b={b}", model.spectra_, model.maps_, ds, dt,
                                bin_factor=b, n_iter=dict(model.n_iter_)))
        say(f"[{snr}] PSNMF b={b} {dt:.1f} s")
        if b == ref_b:
            ref_model = model
            arrays["PSNMF"] = _aligned(model.spectra_, model.maps_, methods[-1].order)
    assert ref_model is not None
    ref = methods[[m.name for m in methods].index(f"PSNMF b={ref_b}")]
    if converged_check:
        t0 = time.perf_counter()
        conv = PSNMF(k, ref_b, spectra="nmf", smoothing=None, random_state=random_state,
                     **CONVERGED_PSNMF).fit(counts)
        dt = time.perf_counter() - t0
        methods.append(_compare(f"PSNMF b={ref_b} stage1 conv", conv.spectra_, conv.maps_,
                                ds, dt, n_iter=dict(conv.n_iter_)))
        say(f"[{snr}] PSNMF b={ref_b}, binned stage to tol "
            f"{CONVERGED_PSNMF['tol']:g} {dt:.1f} s")
    nd_maps["PSNMF"] = window_map(ds, window, maps=ref_model.maps_,
                                  spectra=ref_model.spectra_, scale=ref_model.scale_)

    t0 = time.perf_counter()
    o_s = oracle_spectra(counts, ds.maps, max_iter=ORACLE_MAX_ITER, tol=ORACLE_TOL)
    dt = time.perf_counter() - t0
    oracle_s = _compare("oracle spectra", o_s.S, ds.maps, ds, dt, n_iter=o_s.n_iter)
    oracle_s.mse = None  # the maps are the truth: no map error to report
    t0 = time.perf_counter()
    o_m = oracle_maps(counts, ds.spectra, max_iter=ORACLE_MAX_ITER, tol=ORACLE_TOL)
    dt = time.perf_counter() - t0
    oracle_m = _compare("oracle maps", ds.spectra, o_m.A.reshape(ds.maps.shape), ds, dt,
                        n_iter=o_m.n_iter)
    oracle_m.angle = None  # the spectra are the truth
    methods += [oracle_s, oracle_m]
    nd_maps["oracle"] = window_map(ds, window, maps=o_m.A.reshape(ds.maps.shape),
                                   spectra=ds.spectra, scale=o_m.scale.reshape(shape))
    say(f"[{snr}] oracles {oracle_s.seconds + oracle_m.seconds:.1f} s")

    if pca:
        t0 = time.perf_counter()
        recon = pca_denoise(counts, PCA_COMPONENTS)
        nd_maps["PCA"] = window_map(ds, window, cube=recon)
        del recon
        seconds["pca"] = time.perf_counter() - t0
        say(f"[{snr}] PCA k={PCA_COMPONENTS} {seconds['pca']:.1f} s")

    # Compositions of the reference PSNMF components and of the oracle spectra.
    order = np.asarray(ref.order)
    totals = [float((ref_model.scale_ * ref_model.maps_[..., o]).sum()) for o in order]
    q_ours = _quantify_rows(ref_model.spectra_[order], totals, ds)
    o_tot = [float((o_s.scale[:, None] * o_s.A)[:, i].sum()) for i in range(k)]
    q_oracle = _quantify_rows(o_s.S, o_tot, ds)
    compositions = []
    for i, phase in enumerate(ds.phase_names):
        compositions.append(CompositionResult(
            phase=phase,
            truth=dict(ds.compositions[phase]),
            table1=dict(TABLE1.get(phase, {})),
            paper=dict(paper["psnmf_composition"].get(phase, {})),
            ours=dict(q_ours[i].composition),
            sigma=dict(q_ours[i].uncertainty) if q_ours[i].uncertainty else None,
            oracle=dict(q_oracle[i].composition),
            total_counts=totals[i],
        ))

    order_names = ["raw", "PCA", "NMF", "PSNMF", "oracle"]
    nd_error = {name: relative_error(nd_maps[name], nd_true)
                for name in order_names if name in nd_maps}
    arrays["nd_maps"] = nd_maps
    return PresetResult(
        snr=snr,
        shape=(int(shape[0]), int(shape[1])),
        seed=int(seed),
        counts_per_pixel=float(counts.sum() / np.prod(shape)),
        phase_names=list(ds.phase_names),
        reference_b=ref_b,
        methods=methods,
        compositions=compositions,
        nd_error=nd_error,
        nd_window_kev=window,
        seconds=seconds,
        purity={b: binned_purity(ds, b) for b in bins},
        arrays=arrays,
    )


def binned_purity(dataset: Any, b: int) -> list[float]:
    """Largest abundance of each phase among the ``b x b``-binned pixels (the truth).

    NMF can only pin a phase's spectrum down if some (binned) pixel is nearly pure in it;
    binning coarser than the grains of a phase removes its pure pixels.
    """
    from psnmf.engine.binning import binning_matrix

    shape = dataset.shape
    k = dataset.n_phases
    weighted = (dataset.expected_counts_per_pixel[..., None] * dataset.maps).reshape(-1, k)
    binned = binning_matrix(shape, b) @ weighted
    tot = binned.sum(axis=1, keepdims=True)
    frac = np.divide(binned, tot, out=np.zeros_like(binned), where=tot > 0)
    return [float(v) for v in frac.max(axis=0)]


def _aligned(spectra: np.ndarray, maps: np.ndarray, order: Sequence[int] | None
             ) -> dict[str, np.ndarray]:
    o = np.asarray(order)
    return {"spectra": spectra[o], "maps": maps[..., o]}


def run_reproduction(
    *,
    quick: bool = False,
    seed: int = 0,
    random_state: int = 0,
    shape: tuple[int, int] | None = None,
    presets: Sequence[str] = ("medium", "low"),
    pca: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Reproduction:
    """Run the reproduction of both synthetic datasets.

    Parameters
    ----------
    quick : bool
        Use :data:`QUICK_SETTINGS` (72 x 72 pixels, two bin factors per preset) instead of
        :data:`FULL_SETTINGS` (the paper's 180 x 180 and bin factors).
    seed : int
        Poisson-noise seed of the simulations.
    random_state : int
        Seed of the NMF initialisations.
    shape : (ny, nx), optional
        Override the image size.
    presets : sequence of {'medium', 'low'}
    pca : bool
        Run the PCA baseline.
    progress : callable, optional
        Progress messages.
    """
    settings = QUICK_SETTINGS if quick else FULL_SETTINGS
    shp = tuple(shape) if shape is not None else tuple(settings["shape"])
    t0 = time.perf_counter()
    results = {}
    for snr in presets:
        p = settings["presets"][snr]
        results[snr] = run_preset(
            snr,
            bin_factors=p["bin_factors"],
            reference_b=p["reference_b"],
            shape=shp,
            seed=seed,
            random_state=random_state,
            pca=pca,
            converged_check=bool(settings.get("converged_check", False)),
            progress=progress,
        )
    used = {
        "quick": quick,
        "shape": list(shp),
        "seed": seed,
        "random_state": random_state,
        "presets": {s: {"bin_factors": list(settings["presets"][s]["bin_factors"]),
                        "reference_b": settings["presets"][s]["reference_b"]}
                    for s in presets},
        "pca_components": PCA_COMPONENTS,
        "nd_line": ND_LINE,
        "oracle": {"max_iter": ORACLE_MAX_ITER, "tol": ORACLE_TOL},
        "converged_check": CONVERGED_PSNMF if settings.get("converged_check") else None,
        "python": platform.python_version(),
    }
    return Reproduction(presets=results, settings=used, seconds=time.perf_counter() - t0)


# -----------------------------------------------------------------------------------------
# Text report
# -----------------------------------------------------------------------------------------
def _fmt_vals(vals: Sequence[float] | None, fmt: str, width: int, k: int) -> str:
    if vals is None:
        return " ".join(f"{'-':>{width}s}" for _ in range(k))
    return " ".join(f"{v:{width}{fmt}}" for v in vals)


def _fmt_ratio(vals: Sequence[float] | None, ratios: Sequence[float] | None,
               fmt: str, k: int) -> str:
    cells = []
    for i in range(k):
        if vals is None:
            cells.append(f"{'-':>15s}")
            continue
        r = ratios[i] if ratios is not None else float("nan")
        rtxt = f"({r:.1f}x)" if np.isfinite(r) else ""
        cells.append(f"{vals[i]:{fmt}} {rtxt:>7s}")
    return " ".join(cells)


def format_preset(res: PresetResult) -> str:
    """Plain-text tables of one preset (angles, MSE, oracle ratios, compositions, Nd map)."""
    paper = PAPER[res.snr]
    k = len(res.phase_names)
    names = res.phase_names
    ratios = res.oracle_ratios()
    lines: list[str] = []
    title = (f"== {res.snr} SNR: mantle {res.shape[0]}x{res.shape[1]} px, "
             f"{res.counts_per_pixel:.1f} counts/pixel (paper {paper['counts_per_pixel']}), "
             f"noise seed {res.seed} ==")
    lines += [title, ""]
    head = "".join(f"{n:>16s}" for n in names)
    lines.append("Spectral angle (deg) per phase, (ratio to the oracle-spectra angle)")
    lines.append(f"{'method':24s}{head}   time")
    if "psnmf_angle" in paper:
        lines.append(f"{'paper NMF':24s}" + "".join(f"{v:16.2f}" for v in paper["nmf_angle"]))
        lines.append(f"{'paper PSNMF b=' + str(paper['reference_b']):24s}"
                     + "".join(f"{v:16.2f}" for v in paper["psnmf_angle"]))
    else:
        lo, hi = paper["nmf_angle_range"]
        lines.append(f"{'paper NMF':24s}  range {lo:.2f} to {hi:.2f} (per phase not given)")
        lo, hi = paper["psnmf_angle_range"]
        lines.append(f"{'paper PSNMF b=' + str(paper['reference_b']):24s}"
                     f"  range {lo:.2f} to {hi:.2f} (per phase not given)")
    for m in res.methods:
        if m.angle is None:
            continue
        r = ratios.get(m.name, {}).get("angle")
        mark = " *" if m.name == f"PSNMF b={res.reference_b}" else ""
        lines.append(f"{m.name + mark:24s}" + _fmt_ratio(m.angle, r, "8.2f", k)
                     + f" {m.seconds:6.1f}s")
    lines.append("")
    lines.append("Map MSE per phase, (ratio to the oracle-maps MSE)")
    lines.append(f"{'method':24s}{head}")
    for m in res.methods:
        if m.mse is None:
            continue
        r = ratios.get(m.name, {}).get("mse")
        mark = " *" if m.name == f"PSNMF b={res.reference_b}" else ""
        lines.append(f"{m.name + mark:24s}" + _fmt_ratio(m.mse, r, "8.4f", k))
    lines.append("(* reference bin factor of the paper; oracle spectra = ML spectra given the "
                 "true maps, oracle maps = ML maps given the true spectra)")
    if any("conv" in m.name for m in res.methods):
        lines.append(f"('stage1 conv' = the same PSNMF with the binned stage run to tol "
                     f"{CONVERGED_PSNMF['tol']:g}, max_iter {CONVERGED_PSNMF['max_iter']}; "
                     "default tol 1e-7, max_iter 2000)")
    if res.purity:
        cells = "  ".join(f"b={b}: " + "/".join(f"{v:.2f}" for v in vals)
                          for b, vals in res.purity.items())
        lines.append(f"purest binned pixel per phase ({'/'.join(names)}), truth: {cells}")
    lines.append("")
    lines += _angle_verdict(res)
    lines.append("")
    lines += _composition_table(res)
    lines.append("")
    lo, hi = res.nd_window_kev
    lines.append(f"Nd La map ({lo:.3f}-{hi:.3f} keV window, no background): relative squared "
                 "error |map - truth|^2 / |truth|^2 vs the noise-free map")
    for name, err in res.nd_error.items():
        label = {
            "raw": "raw counts",
            "PCA": f"PCA k={PCA_COMPONENTS} (HyperSpy, Poisson-normalised)",
            "NMF": "standard NMF reconstruction",
            "PSNMF": f"PSNMF b={res.reference_b} reconstruction",
            "oracle": "oracle (true spectra, ML maps)",
        }[name]
        ratio = err / res.nd_error["oracle"] if res.nd_error.get("oracle") else float("nan")
        lines.append(f"  {label:44s} {err:10.5f}   ({ratio:.2f}x oracle)")
    return "\n".join(lines)


def _angle_verdict(res: PresetResult) -> list[str]:
    """Lines comparing our reference PSNMF angles with the paper's."""
    paper = PAPER[res.snr]
    ref = res.psnmf()
    out = []
    if "psnmf_angle" in paper:
        diffs = [f"{n} {a:.2f} vs {p:.2f} ({a - p:+.2f})"
                 for n, a, p in zip(res.phase_names, ref.angle, paper["psnmf_angle"],
                                    strict=True)]
        ok = all(a <= p for a, p in zip(ref.angle, paper["psnmf_angle"], strict=True))
        out.append(f"PSNMF b={res.reference_b} vs paper: " + "; ".join(diffs)
                   + (" -> at or below the paper" if ok else " -> above the paper"))
    else:
        lo, hi = paper["psnmf_angle_range"]
        a = np.asarray(ref.angle)
        ok = a.max() <= hi
        out.append(f"PSNMF b={res.reference_b} angle range {a.min():.2f} to {a.max():.2f} vs "
                   f"paper {lo:.2f} to {hi:.2f}"
                   + (" -> at or below the paper" if ok else " -> above the paper"))
    conv = [m for m in res.methods if "conv" in m.name]
    if conv:
        out.append("with the binned stage converged further: "
                   + ", ".join(f"{n} {a:.2f}" for n, a in zip(res.phase_names, conv[0].angle,
                                                               strict=True)))
    psn = [m for m in res.methods if m.bin_factor is not None]
    best = min(psn, key=lambda m: float(np.mean(m.angle)))
    out.append(f"best bin factor by mean angle: {best.name} "
               f"(mean {np.mean(best.angle):.2f} deg; NMF mean "
               f"{np.mean(res.method('NMF').angle):.2f} deg)")
    return out


def _composition_table(res: PresetResult) -> list[str]:
    """Table 1 next to ours: truth, paper PSNMF, ours +- sigma, difference, oracle."""
    out = [f"Compositions (at.%) of the PSNMF b={res.reference_b} components, Cliff-Lorimer "
           "with the simulation's k-factors",
           "  truth = Table 1 rescaled to 100 at.% (as simulated); diff = ours - truth; "
           "! = |diff| > 0.5 for an element above 1 at.%"]
    out.append(f"  {'phase':6s}{'el':4s}{'Table1':>8s}{'truth':>8s}{'paper':>8s}"
               f"{'ours':>9s}{'+-':>6s}{'diff':>8s}{'oracle':>8s}")
    n_fail = 0
    worst: tuple[float, str] = (0.0, "")
    elements = sorted({el for c in res.compositions for el in c.ours},
                      key=lambda e: _EL_ORDER.index(e) if e in _EL_ORDER else 99)
    for c in res.compositions:
        for el in elements:
            t = c.truth.get(el, 0.0)
            ours = c.ours.get(el, 0.0)
            if t == 0.0 and ours < 0.05 and el not in c.paper:
                continue  # absent and not found: keep the table short
            sig = c.sigma.get(el) if c.sigma else None
            diff = ours - t
            flag = ""
            if t > 1.0 and abs(diff) > 0.5:
                flag = " !"
                n_fail += 1
            if t > 1.0 and abs(diff) > worst[0]:
                worst = (abs(diff), f"{c.phase} {el} {diff:+.2f}")
            out.append(
                f"  {c.phase:6s}{el:4s}{_num(c.table1.get(el)):>8s}{_num(t):>8s}"
                f"{_num(c.paper.get(el)):>8s}{ours:9.2f}"
                f"{(f'{sig:.2f}' if sig is not None else '-'):>6s}{diff:+8.2f}"
                f"{c.oracle.get(el, 0.0):8.2f}{flag}"
            )
    out.append(f"  elements above 1 at.% off by more than 0.5 at.%: {n_fail}"
               + (f" (worst {worst[1]})" if worst[1] else ""))
    return out


_EL_ORDER = ["Mg", "Si", "Al", "Ca", "Fe", "Nd", "Sm", "U", "O", "Cu"]


def _num(v: float | None) -> str:
    return "-" if v is None or v == 0.0 else f"{v:.2f}"


def format_report(rep: Reproduction) -> str:
    """The full printed report of :func:`run_reproduction`."""
    parts = [
        "PSNMF reproduction of Chen, Alexander & Hebert (arXiv 2405.14649), synthetic "
        "mantle datasets",
        f"settings: {json.dumps({k: rep.settings[k] for k in ('quick', 'shape', 'seed')})}",
        "",
    ]
    for res in rep.presets.values():
        parts += [format_preset(res), ""]
    parts.append(f"total time {rep.seconds:.1f} s")
    return "\n".join(parts)


# -----------------------------------------------------------------------------------------
# Figures
# -----------------------------------------------------------------------------------------
def figure(res: PresetResult, emax: float = 8.0) -> Any:
    """Figure 2 (medium) / Figure 3 (low) equivalent of one preset.

    Rows: one per phase with the ground-truth, NMF and PSNMF maps (MSE in the titles) and
    the three spectra overlaid (angles in the legend); bottom row: Nd L-alpha maps of the
    ground truth, raw data, PCA and PSNMF reconstructions (relative errors in the titles).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    a = res.arrays
    names = a["phase_names"]
    k = len(names)
    nmf, psn = res.method("NMF"), res.psnmf()
    fig = Figure(figsize=(15, 3.0 * (k + 1)), layout="constrained")
    gs = fig.add_gridspec(k + 1, 5, width_ratios=[1, 1, 1, 0.15, 2.6])
    energy = a["energy"]
    sel = energy <= emax
    for i, name in enumerate(names):
        panels = [
            ("ground truth", a["true_maps"][..., i], None),
            ("NMF", a["NMF"]["maps"][..., i], nmf.mse[i]),
            (f"PSNMF b={res.reference_b}", a["PSNMF"]["maps"][..., i], psn.mse[i]),
        ]
        for j, (label, img, mse) in enumerate(panels):
            ax = fig.add_subplot(gs[i, j])
            ax.imshow(img, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}: {name}" + ("" if mse is None else f"\nMSE {mse:.4f}"),
                         fontsize=9)
        ax = fig.add_subplot(gs[i, 4])
        ax.plot(energy[sel], a["true_spectra"][i][sel], color="k", lw=1.6,
                label=f"truth {name}")
        ax.plot(energy[sel], a["NMF"]["spectra"][i][sel], color="tab:orange", lw=0.9,
                label=f"NMF ({nmf.angle[i]:.2f}°)")
        ax.plot(energy[sel], a["PSNMF"]["spectra"][i][sel], color="tab:blue", lw=0.9,
                ls="--", label=f"PSNMF ({psn.angle[i]:.2f}°)")
        ax.set_xlim(0, emax)
        ax.set_ylabel("fraction of counts")
        ax.legend(fontsize=8, loc="upper right")
        if i == k - 1:
            ax.set_xlabel("energy (keV)")
    nd = a["nd_maps"]
    vmax = float(np.percentile(nd["truth"], 99.5)) * 1.2 or None
    keys = [("truth", "ground truth"), ("raw", "raw"), ("PCA", f"PCA k={PCA_COMPONENTS}"),
            ("PSNMF", f"PSNMF b={res.reference_b}")]
    sub = gs[k, :].subgridspec(1, 4)
    for j, (key, label) in enumerate(keys):
        ax = fig.add_subplot(sub[0, j])
        if key not in nd:
            ax.axis("off")
            continue
        ax.imshow(nd[key], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        err = "" if key == "truth" else f"\nrel. error {res.nd_error[key]:.4f}"
        ax.set_title(f"Nd La, {label}{err}", fontsize=9)
    n_fig = 2 if res.snr == "medium" else 3
    fig.suptitle(
        f"Figure {n_fig} equivalent: {res.snr} SNR ({res.counts_per_pixel:.0f} counts/pixel), "
        f"NMF vs PSNMF b={res.reference_b} vs ground truth; Nd maps", fontsize=11)
    return fig


def sweep_figure(rep: Reproduction) -> Any:
    """Spectral angle and map MSE against the bin factor, both presets, with oracles."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2 * len(rep.presets)), layout="constrained")
    axes = fig.subplots(len(rep.presets), 2, squeeze=False)
    for row, res in zip(axes, rep.presets.values(), strict=True):
        psn = [m for m in res.methods if m.bin_factor is not None]
        bs = [m.bin_factor for m in psn]
        for i, name in enumerate(res.phase_names):
            c = f"C{i}"
            row[0].plot(bs, [m.angle[i] for m in psn], "o-", color=c, label=f"PSNMF {name}")
            row[0].axhline(res.method("NMF").angle[i], color=c, ls=":", lw=1)
            row[0].axhline(res.method("oracle spectra").angle[i], color=c, ls="--", lw=1)
            row[1].plot(bs, [m.mse[i] for m in psn], "o-", color=c, label=f"PSNMF {name}")
            row[1].axhline(res.method("NMF").mse[i], color=c, ls=":", lw=1)
            row[1].axhline(res.method("oracle maps").mse[i], color=c, ls="--", lw=1)
        row[0].set_yscale("log")
        row[1].set_yscale("log")
        row[0].set_ylabel("spectral angle (deg)")
        row[1].set_ylabel("map MSE")
        for ax in row:
            ax.set_xlabel("bin factor b")
            ax.set_title(f"{res.snr} SNR (dotted: NMF, dashed: oracle)", fontsize=10)
            ax.legend(fontsize=8)
    return fig


def save_outputs(rep: Reproduction, out: str | Path, report: str | None = None
                 ) -> dict[str, Path]:
    """Write the figures (PNG), ``results.json`` and ``report.txt`` into ``out``.

    Returns
    -------
    dict
        Name -> path written.
    """
    from psnmf.io import savefig, write_json, write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for snr, res in rep.presets.items():
        n_fig = 2 if snr == "medium" else 3
        fig = figure(res)
        paths[f"figure{n_fig}"] = savefig(fig, out / f"figure{n_fig}_{snr}.png", dpi=110)
    paths["sweep"] = savefig(sweep_figure(rep), out / "bin_factor_sweep.png", dpi=110)
    paths["results"] = write_json(rep.to_dict(), out / "results.json")
    if report is not None:
        paths["report"] = write_text(report + "\n", out / "report.txt")
    return paths


# -----------------------------------------------------------------------------------------
# Command line
# -----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``benchmarks/paper.py``."""
    parser.add_argument("--quick", action="store_true",
                        help="small version: 72x72 px, two bin factors per preset (~1 min)")
    parser.add_argument("--out", default="reproduction", metavar="DIR",
                        help="output folder for figures, results.json, report.txt "
                             "(default ./reproduction)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--random-state", type=int, default=0,
                        help="seed of the NMF initialisations (default 0)")
    parser.add_argument("--preset", choices=["medium", "low"], action="append",
                        help="run only this preset (repeatable; default both)")
    parser.add_argument("--no-pca", action="store_true", help="skip the PCA baseline")


def run_from_args(args: argparse.Namespace) -> int:
    """Run the reproduction from parsed arguments; print the report; return exit code."""
    import sys

    rep = run_reproduction(
        quick=args.quick,
        seed=args.seed,
        random_state=args.random_state,
        presets=tuple(args.preset or ("medium", "low")),
        pca=not args.no_pca,
        progress=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    text = format_report(rep)
    print(text)
    paths = save_outputs(rep, args.out, report=text)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/paper.py``: parse the arguments, run, print and save."""
    parser = argparse.ArgumentParser(
        prog="paper.py",
        description="Reproduce the synthetic-data results of the PSNMF paper "
                    "(Figures 2 and 3, Table 1) with oracle limits.",
    )
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
