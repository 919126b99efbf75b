"""espm's side of ``benchmarks/peers.py``: runs inside the espm virtual environment.

This script imports espm (and never psnmf) and talks to the driver through ``.npz`` files, so
that espm's pinned dependencies (HyperSpy 2.2.0, exspy 0.3.1) never meet psnmf's. The driver
(``benchmarks/peers.py``) creates the environment and calls it; it can also be run by hand::

    benchmarks/.espm-venv/bin/python benchmarks/peer_espm_run.py version
    benchmarks/.espm-venv/bin/python benchmarks/peer_espm_run.py generate \\
        --recipe paper --counts 293 --seed 42 --out paper293.npz
    benchmarks/.espm-venv/bin/python benchmarks/peer_espm_run.py fit \\
        --data paper293.npz --settings paper-293 --max-iter-cap 600 --out fit.npz

Subcommands
-----------
``version``
    Prints espm's version as JSON.
``generate``
    Simulates a dataset with espm's own generators and writes counts, ground truth and the
    metadata espm needs to build its G matrix:

    * ``--recipe paper``: the synthetic benchmark of espm's paper (Teurtrie et al.), exactly as
      in the authors' notebook ``notebooks/papers_figures.ipynb`` of github.com/adriente/espm:
      128 x 128 pixels, a pseudo-bridgmanite matrix with two spherical particles of radius
      25 px (pseudo-ferropericlase and pseudo-Ca-perovskite; ``generate_weights("sphere",
      [128, 128], 3, 6549, radius=25.0)``), ``generate_modular_phases(..., seed=0)``,
      densities ``[1.0, 0.8, 1.2]``, N = 293 or 18 counts per pixel, noise seed 42 (the first
      sample of ``generate_dataset(..., base_seed=42)``).
    * ``--recipe particles``: espm's built-in particles dataset (two particles of radius 20 px
      in a matrix, 80 x 80, N = 500), built from ``espm.datasets.built_in_EDXS_datasets``'
      ``particles_phases_dict`` and ``particles_misc_dict`` as
      ``generate_built_in_datasets`` does (noise seed 91 + sample), but in memory instead of
      under espm's install folder.
``fit``
    Reads counts and metadata, builds espm's EDXS model and G matrix (``EDSespm.build_G()``,
    the defaults: characteristic lines of the given elements plus a two-column
    bremsstrahlung), runs ``SmoothNMF`` with one of the authors' published settings
    (:data:`SETTINGS`) and writes ``D = G @ W`` (channels, k), ``H`` (k, pixels), ``W``, the
    iteration count, espm's stopping message and the wall time of ``build_G`` plus
    ``fit_transform`` (imports and file I/O excluded).

Input ``.npz`` of ``fit`` (what ``generate`` writes, and what the driver writes for psnmf's
samples): ``counts`` (ny, nx, channels), ``energy_offset`` and ``energy_scale`` (keV),
``beam_energy`` (keV), ``elements`` (symbols or atomic numbers as strings),
``thickness_cm``, ``density`` (g/cm^3), ``take_off_angle`` (degrees), ``width_slope``,
``width_intercept``, ``xray_db``, ``detector``. ``generate`` adds the ground truth:
``phases`` (k, channels, rows summing to 1), ``weights`` (ny, nx, k, espm's abundances
summing to 1 per pixel), ``densities`` (k,) and ``N``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: The authors' published SmoothNMF settings. ``G`` is ``"model"`` for espm's EDXS model
#: object (the bremsstrahlung columns of G are updated with the absorption every 3
#: iterations) or ``"matrix"`` for the fixed G matrix, as in each source.
SETTINGS: dict[str, dict[str, Any]] = {
    "paper-293": {
        "source": "github.com/adriente/espm notebooks/papers_figures.ipynb, 'Analysis of the "
                  "low noise data' (spheres_paper_N293)",
        "G": "model", "shape_2d": True,
        "params": {"max_iter": 100000, "simplex_W": True, "tol": 1e-8, "init": "nndsvdar",
                   "random_state": 42, "mu": 0.004, "epsilon_reg": 0.01, "lambda_L": 1.0,
                   "normalize": True},
    },
    "paper-18": {
        "source": "github.com/adriente/espm notebooks/papers_figures.ipynb, 'Analysis of the "
                  "high noise data' (spheres_paper_N18)",
        "G": "matrix", "shape_2d": True,
        "params": {"max_iter": 10000, "tol": 1e-8, "init": "random", "random_state": 294,
                   "mu": 0.0, "epsilon_reg": 1.0, "lambda_L": 0.0, "normalize": True},
    },
    "api": {
        "source": "github.com/adriente/espm notebooks/api.ipynb (the documentation's "
                  "'Analysis of simulated EDX data' on the built-in particles dataset)",
        "G": "model", "shape_2d": False,
        "params": {"tol": 1e-6, "max_iter": 200},
    },
}

#: The paper recipe (notebooks/papers_figures.ipynb of the espm repository).
PAPER_ELTS = [
    {"Mg": 0.245, "Fe": 0.035, "Ca": 0.031, "Si": 0.219, "Al": 0.024, "O": 0.436, "Cu": 0.05,
     "Hf": 0.01},
    {"Mg": 0.522, "Fe": 0.104, "O": 0.374, "Cu": 0.05},
    {"Mg": 0.020, "Fe": 0.018, "Ca": 0.188, "Si": 0.173, "Al": 0.010, "O": 0.572, "Ti": 0.004,
     "Cu": 0.05, "Sm": 0.007, "Lu": 0.006, "Nd": 0.006},
]
PAPER_BRSTLG = [{"b0": 0.0003458, "b1": 0.0006268}, {"b0": 0.0001629, "b1": 0.0009812},
                {"b0": 0.0007853, "b1": 0.0003658}]
PAPER_MODEL = {"e_offset": 0.3, "e_size": 1980, "e_scale": 0.01, "width_slope": 0.01,
               "width_intercept": 0.065, "db_name": "200keV_xrays.json", "E0": 200,
               "params_dict": {"Abs": {"thickness": 100.0e-7, "toa": 35, "density": 4.5,
                                       "atomic_fraction": False},
                               "Det": "SDD_efficiency.txt"}}
PAPER_ELEMENTS = ["O", "Ca", "Si", "Fe", "Mg", "Al", "Cu", "Hf", "Ti", "Sm", "Lu", "Nd"]
PAPER_PHASES = ["pseudo-Brg", "pseudo-Fp", "pseudo-CaPv"]


def espm_version() -> str:
    """espm's installed version."""
    from importlib.metadata import version

    return version("espm")


def _metadata(model_params: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """The fit inputs of an espm model-parameters dictionary."""
    absd = model_params["params_dict"]["Abs"]
    return {"energy_offset": float(model_params["e_offset"]),
            "energy_scale": float(model_params["e_scale"]),
            "beam_energy": float(model_params["E0"]),
            "elements": np.array([str(e) for e in elements]),
            "thickness_cm": float(absd["thickness"]),
            "density": float(absd["density"]) if absd["density"] is not None else np.nan,
            "take_off_angle": float(absd["toa"]),
            "width_slope": float(model_params["width_slope"]),
            "width_intercept": float(model_params["width_intercept"]),
            "xray_db": str(model_params["db_name"]),
            "detector": str(model_params["params_dict"]["Det"])}


def generate(recipe: str, counts: float, seed: int | None, sample: int) -> dict[str, Any]:
    """Simulate espm's paper recipe or its built-in particles dataset with espm.

    Parameters
    ----------
    recipe : {"paper", "particles"}
    counts : float
        N, mean counts per pixel (paper recipe only; the particles dataset has N = 500).
    seed : int or None
        Noise seed (default 42 for the paper, 91 + ``sample`` for the particles).
    sample : int
        Sample index of the particles dataset.

    Returns
    -------
    dict
        Arrays and scalars for ``np.savez``.
    """
    from espm.datasets import base as gen
    from espm.models import generate_EDXS_phases as edx
    from espm.weights import generate_weights as gw

    if recipe == "paper":
        weights = gw.generate_weights("sphere", [128, 128], 3, 6549, radius=25.0)
        model_params = copy.deepcopy(PAPER_MODEL)
        phases = edx.generate_modular_phases(elts_dicts=PAPER_ELTS, brstlg_pars=PAPER_BRSTLG,
                                             scales=[1, 1, 1], model_params=model_params,
                                             seed=0)
        misc = {"data_folder": f"spheres_paper_N{counts:g}", "shape_2d": (128, 128),
                "N": counts, "densities": [1.0, 0.8, 1.2], "model": "EDXS", "seed": 42}
        noise_seed = 42 if seed is None else seed
        elements, names = PAPER_ELEMENTS, PAPER_PHASES
    elif recipe == "particles":
        from espm.datasets import built_in_EDXS_datasets as bi
        from espm.models.EDXS_function import elts_list_from_dict_list

        pd = copy.deepcopy(bi.particles_phases_dict)
        misc = copy.deepcopy(bi.particles_misc_dict)
        model_params = pd["model_params"]
        phases = edx.generate_modular_phases(**pd)
        weights = gw.generate_weights("sphere", misc["shape_2d"], n_phases=3,
                                      seed=misc["seed"], radius=20)
        elements = [str(e) for e in elts_list_from_dict_list(pd["elts_dicts"])]
        noise_seed = misc["seed"] + sample if seed is None else seed
        names = ["matrix", "particle 1", "particle 2"]
    else:
        raise ValueError(f"unknown recipe {recipe!r}: use 'paper' or 'particles'")
    s = gen.generate_spim_sample(phases, weights, model_params, misc, seed=noise_seed)
    out = _metadata(model_params, elements)
    phases = np.asarray(phases, dtype=float)
    out.update(counts=np.asarray(s["X"]).astype(np.int32),
               phases=phases / phases.sum(axis=1, keepdims=True),
               weights=np.asarray(weights, dtype=float),
               densities=np.asarray(misc["densities"], dtype=float),
               N=float(misc["N"]), noise_seed=int(noise_seed),
               phase_names=np.array(names), espm_version=espm_version())
    return out


def _signal(data: dict[str, Any]) -> Any:
    """An ``EDSespm`` signal of the counts with the metadata ``build_G`` needs."""
    import hyperspy.api as hs

    s = hs.signals.Signal1D(np.asarray(data["counts"], dtype=np.float64))
    s.set_signal_type("EDS_espm")
    ax = s.axes_manager[-1]
    ax.offset = float(data["energy_offset"])
    ax.scale = float(data["energy_scale"])
    ax.units = "keV"
    s.set_microscope_parameters(beam_energy=float(data["beam_energy"]))
    md = s.metadata
    md.set_item("Sample.thickness", float(data["thickness_cm"]))
    density = float(data["density"])
    md.set_item("Sample.density", None if np.isnan(density) else density)  # None: espm's own
    md.set_item("Sample.elements", [str(e) for e in data["elements"]])
    md.set_item("Acquisition_instrument.TEM.Detector.EDS.type", str(data["detector"]))
    md.set_item("Acquisition_instrument.TEM.Detector.EDS.take_off_angle",
                float(data["take_off_angle"]))
    md.set_item("Acquisition_instrument.TEM.Detector.EDS.width_slope",
                float(data["width_slope"]))
    md.set_item("Acquisition_instrument.TEM.Detector.EDS.width_intercept",
                float(data["width_intercept"]))
    md.set_item("xray_db", str(data["xray_db"]))
    return s


def fit(data: dict[str, Any], settings: str, k: int, max_iter_cap: int | None) -> dict[str, Any]:
    """Run espm's SmoothNMF with published settings on the counts of ``data``.

    Parameters
    ----------
    data : dict
        The input ``.npz`` contents (see the module docstring).
    settings : str
        A key of :data:`SETTINGS`.
    k : int
        Number of components.
    max_iter_cap : int or None
        If given, ``max_iter = min(published max_iter, max_iter_cap)``.

    Returns
    -------
    dict
        ``D`` (channels, k), ``H`` (k, pixels), ``W``, ``n_iter``, ``max_iter``,
        ``seconds``, ``stop`` (espm's last message) and ``settings_json``.
    """
    from espm.estimators import SmoothNMF

    spec = SETTINGS[settings]
    params = dict(spec["params"])
    if max_iter_cap is not None:
        params["max_iter"] = min(int(params["max_iter"]), int(max_iter_cap))
    ny, nx = data["counts"].shape[:2]
    if spec["shape_2d"]:
        params["shape_2d"] = (ny, nx)
    s = _signal(data)
    X = s.X                                      # (channels, pixels), float64
    log = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(log):
        s.build_G()
        G = s.model if spec["G"] == "model" else s.G
        est = SmoothNMF(n_components=k, G=G, hspy_comp=False, **params)
        D = est.fit_transform(X)
    seconds = time.perf_counter() - t0
    lines = [ln for ln in log.getvalue().splitlines() if ln.strip()]
    stop = next((ln for ln in reversed(lines) if ln.startswith("exit")), "")
    used = {key: (list(v) if isinstance(v, tuple) else v) for key, v in params.items()}
    used.update(n_components=k, G=spec["G"], source=spec["source"])
    return {"D": np.asarray(D, dtype=float), "H": np.asarray(est.H_, dtype=float),
            "W": np.asarray(est.W_, dtype=float), "n_iter": int(est.n_iter_),
            "max_iter": int(params["max_iter"]), "seconds": float(seconds), "stop": stop,
            "settings_json": json.dumps(used), "espm_version": espm_version()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("version", help="print espm's version as JSON")
    g = sub.add_parser("generate", help="simulate a dataset with espm")
    g.add_argument("--recipe", choices=["paper", "particles"], required=True)
    g.add_argument("--counts", type=float, default=293.0, help="N (paper recipe)")
    g.add_argument("--seed", type=int, default=None, help="noise seed")
    g.add_argument("--sample", type=int, default=0, help="particles sample index")
    g.add_argument("--out", required=True)
    f = sub.add_parser("fit", help="run SmoothNMF with published settings")
    f.add_argument("--data", required=True)
    f.add_argument("--settings", choices=sorted(SETTINGS), required=True)
    f.add_argument("-k", type=int, default=3, help="number of components")
    f.add_argument("--max-iter-cap", type=int, default=None)
    f.add_argument("--out", required=True)
    a = p.parse_args(argv)
    if a.cmd == "version":
        print(json.dumps({"espm": espm_version(), "python": sys.version.split()[0]}))
        return 0
    if a.cmd == "generate":
        with contextlib.redirect_stdout(io.StringIO()):
            out = generate(a.recipe, a.counts, a.seed, a.sample)
    else:
        with np.load(a.data, allow_pickle=False) as z:
            data = {key: z[key] for key in z.files}
        out = fit(data, a.settings, a.k, a.max_iter_cap)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, **out)
    print(json.dumps({key: v for key, v in out.items()
                      if isinstance(v, (int, float, str))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
