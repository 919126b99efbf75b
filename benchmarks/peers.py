"""psnmf beside espm's SmoothNMF on the same data, in the same run (issue 16, item 4).

espm (Teurtrie et al.; https://github.com/adriente/espm, on PyPI as ``espm``) is the library
the PSNMF paper used for its simulations. Its estimator ``SmoothNMF`` is a physics-guided
Poisson NMF: the spectra are ``G @ W``, with ``G`` holding the characteristic lines of the
given elements and a bremsstrahlung model, plus optional Laplacian smoothing (``lambda_L``)
and log-sparsity (``mu``) of the abundances. espm pins HyperSpy 2.2.0 and exspy 0.3.1 (psnmf
needs newer ones), so it lives in its own virtual environment, ``benchmarks/.espm-venv``
(git-ignored), which this script creates when it is missing (``python -m venv`` and
``pip install espm==1.1.3``: about 1 GB, a minute with a warm pip cache). espm runs in a
subprocess (``benchmarks/peer_espm_run.py``) that exchanges ``.npz`` files with this driver.

Datasets
--------
(a) psnmf's never-pure scenarios (``nanoparticles``, ``small_grains``, ``thin_layer``,
    ``mixed_phase``, as in ``scenarios_oracle.py``) and the ``mantle`` sample, both count
    presets (147 and 18 counts per pixel), at one image size, simulated by psnmf.
(b) espm's own data, simulated by espm: the benchmark of its paper (128 x 128, a
    pseudo-bridgmanite matrix with two spheres of radius 25 px, N = 293 and 18 counts per
    pixel; the authors' notebook ``notebooks/papers_figures.ipynb``) and its built-in
    particles dataset (80 x 80, N = 500, sample 0).

Methods, all on the same counts
-------------------------------
* ``oracle``: ``psnmf.metrics.oracle_limits`` (spectra by maximum likelihood from the true
  maps, maps per pixel from the true spectra): the floor set by the counting noise.
* ``espm``: ``SmoothNMF`` with its authors' published settings (``peer_espm_run.SETTINGS``):
  on the paper's N = 293 data and psnmf's medium preset the paper's low-noise settings
  (``mu=0.004, epsilon_reg=0.01, lambda_L=1.0, init='nndsvdar', random_state=42,
  normalize=True, tol=1e-8``, G = espm's EDXS model), on N = 18 and psnmf's low preset its
  high-noise settings (``lambda_L=0, mu=0, init='random', random_state=294, normalize=True,
  tol=1e-8``, the G matrix), on the particles dataset those of the documentation's notebook
  ``api.ipynb`` (``tol=1e-6, max_iter=200``). espm is told the elements of the sample (its
  G needs them; psnmf does not), the beam energy and the energy axis; thickness, density
  and take-off angle are those of the simulation (psnmf's samples: the sample's thickness,
  its mean phase density and psnmf's 35 degrees; espm's datasets: the recipe's), the
  detector resolution espm's default (``width_slope=0.01, width_intercept=0.065``). The
  published ``max_iter`` (100000 and 10000 with ``tol=1e-8``) would run for hours here, so
  it is capped (``--espm-max-iter``); the table gives the iterations run and espm's
  stopping message (``cap`` when the cap stopped it).
* ``PSNMF default``: ``PSNMF(k, 4, random_state=0)`` (pure-pixel spectra, TV maps with the
  weight chosen by held-out deviance).
* ``PSNMF auto``: ``PSNMF(k, 4, never_pure='auto', random_state=0)``, given the elements
  espm is told and ``EDXModel.for_axis`` of the data's energy axis and beam energy (psnmf's
  samples: the sample's own model): the vertices of phases without pure pixels are
  extrapolated along their element lines. Without ``elements`` and ``edx_model`` 'auto'
  on a NumPy array is 'keep', i.e. ``PSNMF default``.
* ``PSNMF paper``: ``PSNMF(k, 4, spectra='nmf', smoothing=None, random_state=0)``.

Scoring
-------
Everything is scored by psnmf (``compare_to_truth``: components matched to the truth by
spectral angle) in psnmf's convention: spectra normalised to sum to one, maps = the fraction
of each pixel's counts from each phase. espm's factors are converted without any truth:
spectra = columns of ``G @ W`` normalised, maps = ``|D_k| H_k / sum_j |D_j| H_j``. espm's
ground truth is converted the same way: its phases normalised, its weights ``w`` (which sum
to one per pixel) turned into signal fractions ``d_k w_k / sum_j d_j w_j`` with the phase
densities ``d`` of the recipe. For espm's data a second MSE is also given in espm's own
convention (its weights): each method's per-pixel phase counts ``C`` rescaled by the
least-squares ``s`` with ``C s = 1`` (espm's ``rescaled_DH``), which needs no densities.
Wall times: psnmf's ``fit`` (Numba kernels warmed first) and espm's ``build_G`` +
``fit_transform``, one after the other in this process and its child, on the same machine;
the load average is printed (a shared machine inflates every time).

Usage::

    .venv/bin/python benchmarks/peers.py                  # ~1-1.5 h on 2 shared cores (est.)
    .venv/bin/python benchmarks/peers.py --quick          # 48 x 48, 1 seed, 13 min at load ~10
    .venv/bin/python benchmarks/peers.py --samples mantle --snr medium --size 96 \\
        --espm-datasets paper293 --espm-max-iter 2000 --json rows.json --markdown t.md

Measured (espm datasets, cap 200, 2 shared AMD EPYC cores at load 2-4, commit be0084f;
full tables, machine and load in the ``peers.py`` section of ``benchmarks/README.md``): angle
(degrees) oracle / espm / PSNMF default / PSNMF auto / PSNMF paper, paper recipe N = 293:
pseudo-Brg 0.29 / 3.56 / 0.36 / 0.36 / 23.11, pseudo-Fp 2.11 / 8.86 / 18.78 / 3.69 / 18.78,
pseudo-CaPv 1.79 / 23.64 / 7.57 / 7.33 / 7.57; wall time espm 220 s (200 iterations, not
converged), PSNMF default 18 s, auto 14 s, paper 6 s. At N = 18 espm's pseudo-CaPv (6.55)
beats psnmf's (19.96).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import xraylib
from speed import machine  # benchmarks/ is on the path of a script run from it

import psnmf
from psnmf.metrics import compare_to_truth, map_mse, oracle_limits
from psnmf.physics import EDXModel
from psnmf.simulate import sample_dataset

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "peer_espm_run.py"
DEFAULT_VENV = HERE / ".espm-venv"
#: The espm release this benchmark was written and measured with.
ESPM_REQUIREMENT = "espm==1.1.3"

SAMPLES = ["nanoparticles", "small_grains", "thin_layer", "mixed_phase", "mantle"]
#: espm datasets: name -> (runner generate arguments, espm settings).
ESPM_DATASETS: dict[str, tuple[list[str], str]] = {
    "paper293": (["--recipe", "paper", "--counts", "293"], "paper-293"),
    "paper18": (["--recipe", "paper", "--counts", "18"], "paper-18"),
    "particles": (["--recipe", "particles", "--sample", "0"], "api"),
}
#: espm settings for psnmf's count presets (the paper's low- and high-noise settings).
PRESET_SETTINGS = {"medium": "paper-293", "low": "paper-18"}
METHODS = ["oracle", "espm", "default", "auto", "paper"]
#: The psnmf configurations, in the order of the tables.
PSNMF_METHODS = ["default", "auto", "paper"]
TITLES = {"oracle": "oracle", "espm": "espm SmoothNMF", "default": "PSNMF default",
          "auto": "PSNMF auto", "paper": "PSNMF paper"}
#: espm's detector defaults (every recipe of its paper and datasets uses them).
ESPM_WIDTH = {"width_slope": 0.01, "width_intercept": 0.065}


# -----------------------------------------------------------------------------------------
# The espm environment
# -----------------------------------------------------------------------------------------
def venv_python(venv: Path) -> Path:
    """The interpreter of a virtual environment."""
    return venv / "bin" / "python"


def ensure_espm(venv: Path, install: bool = True) -> str:
    """Create the espm virtual environment if it is missing; return espm's version.

    Parameters
    ----------
    venv : Path
        Environment folder (``benchmarks/.espm-venv`` by default, git-ignored).
    install : bool
        Create and install when missing; if False, a missing environment is an error.

    Returns
    -------
    str
        The installed espm version.
    """
    py = venv_python(venv)
    if not py.exists():
        if not install:
            raise SystemExit(f"{py} is missing; run without --no-install to create it")
        print(f"creating {venv} and installing {ESPM_REQUIREMENT} (about 1 GB) ...",
              flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                       check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", ESPM_REQUIREMENT],
                       check=True)
    out = _runner(venv, ["version"])
    return str(out["espm"])


def _runner(venv: Path, args: list[str]) -> dict[str, Any]:
    """Run ``peer_espm_run.py`` in the espm environment; return its JSON summary line."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)
    res = subprocess.run([str(venv_python(venv)), str(RUNNER), *args], env=env,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"peer_espm_run.py {' '.join(args)} failed "
                           f"(exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# -----------------------------------------------------------------------------------------
# Datasets
# -----------------------------------------------------------------------------------------
def psnmf_dataset(name: str, snr: str, size: int, seed: int, work: Path) -> dict[str, Any]:
    """A psnmf sample: the dataset, its espm input file and espm's settings."""
    ds = sample_dataset(name, snr=snr, seed=seed, shape=(size, size))
    model = ds.model
    dens = dict(model.phase_densities)
    if model.density is not None:
        mean_density = float(model.density)
    elif dens:
        frac = ds.maps.reshape(-1, ds.n_phases).mean(axis=0)
        mean_density = float(sum(f * dens.get(p, 3.0) for f, p in zip(frac, ds.phase_names,
                                                                       strict=True)))
    else:
        mean_density = 3.0
    thickness_nm = float(model.thickness) if model.thickness > 0 else 100.0
    path = work / f"{name}_{snr}_{size}_{seed}.npz"
    np.savez(path, counts=ds.counts, energy_offset=ds.energy_axis.offset,
             energy_scale=ds.energy_axis.scale, beam_energy=ds.beam_energy,
             elements=np.array(ds.elements), thickness_cm=thickness_nm * 1e-7,
             density=mean_density, take_off_angle=float(model.takeoff_angle),
             xray_db="200keV_xrays.json", detector="SDD_efficiency.txt", **ESPM_WIDTH)
    return {"label": f"{name} {snr} {size}x{size} seed {seed}", "source": "psnmf",
            "counts": ds.counts, "spectra": ds.spectra, "maps": ds.maps,
            "phases": list(ds.phase_names), "weights": None, "espm_input": path,
            "espm_settings": PRESET_SETTINGS[snr], "seed": seed,
            "physics": (model, [str(e) for e in ds.elements])}


def element_symbol(element: str) -> str:
    """A chemical symbol from espm's element name (a symbol or an atomic number)."""
    return xraylib.AtomicNumberToSymbol(int(element)) if element.isdigit() else element


def espm_dataset(key: str, venv: Path, work: Path) -> dict[str, Any]:
    """An espm-simulated dataset with its truth in psnmf's convention."""
    gen_args, settings = ESPM_DATASETS[key]
    path = work / f"espm_{key}.npz"
    _runner(venv, ["generate", *gen_args, "--out", str(path)])
    with np.load(path) as z:
        counts = z["counts"]
        phases = z["phases"]
        weights = z["weights"]
        dens = z["densities"]
        names = [str(n) for n in z["phase_names"]]
        n_counts = float(z["N"])
        seed = int(z["noise_seed"])
        model = EDXModel.for_axis(float(z["energy_offset"]), float(z["energy_scale"]),
                                  counts.shape[-1], beam_energy=float(z["beam_energy"]))
        elements = [element_symbol(str(e)) for e in z["elements"]]
    signal = weights * dens                     # expected counts of each phase / N
    fractions = signal / signal.sum(axis=-1, keepdims=True)
    ny, nx = counts.shape[:2]
    label = (f"espm paper N={n_counts:g} {ny}x{nx}" if key.startswith("paper")
             else f"espm particles N={n_counts:g} {ny}x{nx}")
    return {"label": label, "source": "espm", "counts": counts, "spectra": phases,
            "maps": fractions, "phases": names, "weights": weights, "espm_input": path,
            "espm_settings": settings, "seed": seed, "physics": (model, elements)}


# -----------------------------------------------------------------------------------------
# Methods
# -----------------------------------------------------------------------------------------
def warm_jit() -> None:
    """Compile (or load from Numba's cache) psnmf's kernels before any timing."""
    ds = sample_dataset("mantle", snr="medium", seed=0, shape=(24, 24))
    physics = (ds.model, [str(e) for e in ds.elements])
    for which in PSNMF_METHODS:
        psnmf_estimator(3, which, physics).fit(ds.counts)


def psnmf_estimator(k: int, which: str,
                    physics: tuple[EDXModel, list[str]] | None = None) -> psnmf.PSNMF:
    """One psnmf configuration: 'default', 'auto' or 'paper'.

    Parameters
    ----------
    k : int
        Number of phases.
    which : {'default', 'auto', 'paper'}
        The configuration (see the module docstring).
    physics : tuple of (EDXModel, list of str), optional
        ``(edx_model, elements)`` for 'auto' (without them 'auto' is 'keep' on an array).

    Returns
    -------
    psnmf.PSNMF
        The unfitted estimator.
    """
    if which == "default":
        return psnmf.PSNMF(k, 4, random_state=0)
    if which == "auto":
        model, elements = physics if physics is not None else (None, None)
        return psnmf.PSNMF(k, 4, never_pure="auto", elements=elements, edx_model=model,
                           random_state=0)
    return psnmf.PSNMF(k, 4, spectra="nmf", smoothing=None, random_state=0)


def run_psnmf(counts: np.ndarray, k: int, which: str,
              physics: tuple[EDXModel, list[str]] | None = None) -> dict[str, Any]:
    """Fit one psnmf configuration; spectra, maps, per-pixel scale and wall time."""
    est = psnmf_estimator(k, which, physics)
    t0 = time.perf_counter()
    est.fit(counts)
    seconds = time.perf_counter() - t0
    return {"spectra": est.spectra_, "maps": est.maps_, "scale": np.asarray(est.scale_),
            "seconds": seconds}


def run_espm(d: dict[str, Any], venv: Path, k: int, cap: int | None,
             work: Path) -> dict[str, Any]:
    """espm's SmoothNMF in its environment; factors converted to psnmf's convention."""
    out = work / (Path(d["espm_input"]).stem + "_fit.npz")
    args = ["fit", "--data", str(d["espm_input"]), "--settings", d["espm_settings"],
            "-k", str(k), "--out", str(out)]
    if cap is not None:
        args += ["--max-iter-cap", str(cap)]
    t0 = time.perf_counter()
    _runner(venv, args)
    wall = time.perf_counter() - t0
    with np.load(out) as z:
        D, H = z["D"], z["H"]
        info = {"n_iter": int(z["n_iter"]), "max_iter": int(z["max_iter"]),
                "seconds": float(z["seconds"]), "stop": str(z["stop"]),
                "settings": json.loads(str(z["settings_json"])), "process_seconds": wall}
    ny, nx = d["counts"].shape[:2]
    norms = D.sum(axis=0)                        # counts per unit of H, per component
    contrib = (norms[:, None] * H).T             # (pixels, k) phase counts per pixel
    total = contrib.sum(axis=1, keepdims=True)
    maps = np.divide(contrib, total, out=np.full_like(contrib, 1.0 / k), where=total > 0)
    info.update(spectra=(D / norms).T, maps=maps.reshape(ny, nx, k),
                scale=total.reshape(ny, nx))
    if not info["stop"]:
        info["stop"] = "cap" if info["n_iter"] >= info["max_iter"] else "?"
    return info


def weights_mse(maps: np.ndarray, scale: np.ndarray, order: np.ndarray,
                true_weights: np.ndarray) -> list[float]:
    """MSE against espm's weights: phase counts rescaled so that they sum to ~1 per pixel.

    ``C = maps * scale`` (per-pixel counts of each component) times the least-squares ``s``
    of ``C s = 1`` (espm's ``rescaled_DH``), so that no density is needed.
    """
    k = maps.shape[-1]
    C = (maps * scale[..., None]).reshape(-1, k)
    s = np.linalg.lstsq(C, np.ones(C.shape[0]), rcond=None)[0]
    w = (C * s).reshape(maps.shape)
    return [map_mse(w[..., o], true_weights[..., i]) for i, o in enumerate(order)]


def evaluate(d: dict[str, Any], venv: Path, cap: int | None, work: Path,
             with_espm: bool = True) -> dict[str, Any]:
    """All methods on one dataset, scored against its truth."""
    k = d["maps"].shape[-1]
    truth = SimpleNamespace(counts=d["counts"], spectra=d["spectra"], maps=d["maps"])
    ny, nx = d["counts"].shape[:2]
    row: dict[str, Any] = {"dataset": d["label"], "source": d["source"], "phases": d["phases"],
                           "counts_per_pixel": float(d["counts"].sum() / (ny * nx)),
                           "seed": d["seed"], "espm_settings": d["espm_settings"],
                           "load_before": os.getloadavg()[0]}
    t0 = time.perf_counter()
    orc = oracle_limits(truth)
    row["oracle"] = {"angle": orc.angle.tolist(), "mse": orc.mse.tolist(),
                     "seconds": time.perf_counter() - t0}
    fits: dict[str, dict[str, Any]] = {}
    if with_espm:
        fits["espm"] = run_espm(d, venv, k, cap, work)
    for which in PSNMF_METHODS:
        fits[which] = run_psnmf(d["counts"], k, which, d["physics"])
    for label, f in fits.items():
        sc = compare_to_truth(f["spectra"], f["maps"], d["spectra"], d["maps"])
        entry = {"angle": sc["angle"].tolist(), "mse": sc["mse"].tolist(),
                 "seconds": f["seconds"]}
        if d["weights"] is not None:
            entry["mse_weights"] = weights_mse(f["maps"], f["scale"], sc["order"],
                                               d["weights"])
        for key in ("n_iter", "max_iter", "stop", "settings", "process_seconds"):
            if key in f:
                entry[key] = f[key]
        row[label] = entry
    if d["weights"] is not None:
        scale = d["counts"].sum(axis=-1).astype(float)
        row["oracle"]["mse_weights"] = weights_mse(orc.maps, scale, np.arange(k), d["weights"])
    row["load_after"] = os.getloadavg()[0]
    return row


# -----------------------------------------------------------------------------------------
# Output
# -----------------------------------------------------------------------------------------
def _cell(row: dict[str, Any], method: str, what: str, i: int, fmt: str) -> str:
    entry = row.get(method)
    if entry is None or what not in entry:
        return "-"
    return format(entry[what][i], fmt)


def markdown(rows: list[dict[str, Any]]) -> str:
    """The side-by-side tables: per phase angle and MSE, per dataset the wall times."""
    titles = ["oracle", "espm"] + [TITLES[m] for m in PSNMF_METHODS]
    head = ("| dataset | phase | " + " | ".join(f"{t} angle" for t in titles) + " | "
            + " | ".join(f"{t} MSE" for t in titles) + " |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        for i, phase in enumerate(r["phases"]):
            cells = [_cell(r, m, "angle", i, ".2f") for m in METHODS]
            cells += [_cell(r, m, "mse", i, ".4f") for m in METHODS]
            out.append(f"| {r['dataset']} | {phase} | " + " | ".join(cells) + " |")
    if any("mse_weights" in r["oracle"] for r in rows):
        out += ["", "MSE against espm's own ground truth (its weights, see the docstring):", "",
                "| dataset | phase | " + " | ".join(titles) + " |",
                "|" + "---|" * (len(titles) + 2)]
        for r in rows:
            if "mse_weights" not in r["oracle"]:
                continue
            for i, phase in enumerate(r["phases"]):
                cells = [_cell(r, m, "mse_weights", i, ".4f") for m in METHODS]
                out.append(f"| {r['dataset']} | {phase} | " + " | ".join(cells) + " |")
    out += ["", "Wall time (s; load average before / after the dataset) and espm's "
            "iterations:", "",
            "| dataset | counts/px | espm settings | espm s | espm iterations (cap) | "
            "espm stop | " + " | ".join(f"{TITLES[m]} s" for m in PSNMF_METHODS)
            + " | oracle s | load |",
            "|" + "---|" * (8 + len(PSNMF_METHODS))]
    for r in rows:
        e = r.get("espm")
        if e is not None:
            stop = "cap" if e["n_iter"] >= e["max_iter"] else e["stop"].replace("|", "/")[:60]
            espm_cells = (f"{e['seconds']:.1f} | {e['n_iter']} ({e['max_iter']}) | {stop}")
        else:
            espm_cells = "- | - | -"
        psnmf_cells = " | ".join(f"{r[m]['seconds']:.1f}" for m in PSNMF_METHODS)
        out.append(f"| {r['dataset']} | {r['counts_per_pixel']:.0f} | {r['espm_settings']} | "
                   f"{espm_cells} | {psnmf_cells} | {r['oracle']['seconds']:.1f} | "
                   f"{r['load_before']:.1f} / {r['load_after']:.1f} |")
    return "\n".join(out)


def summary(rows: list[dict[str, Any]]) -> str:
    """Median ratio to the oracle angle and MSE per method, and the total times."""
    lines = ["", "Median ratio to the oracle over all phases (angle, map MSE) and total wall "
             "time:"]
    for m in METHODS[1:]:
        a = [r[m]["angle"][i] / r["oracle"]["angle"][i] for r in rows if m in r
             for i in range(len(r["phases"]))]
        q = [r[m]["mse"][i] / r["oracle"]["mse"][i] for r in rows if m in r
             for i in range(len(r["phases"]))]
        t = sum(r[m]["seconds"] for r in rows if m in r)
        if a:
            lines.append(f"  {TITLES[m]:15s} angle x{np.median(a):6.2f}   MSE x{np.median(q):6.2f}"
                         f"   {t:8.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="48 x 48, 1 seed, 2 samples, 2 espm datasets, espm cap 40")
    p.add_argument("--samples", default=None, help="comma-separated psnmf samples")
    p.add_argument("--snr", default="medium,low", help="comma-separated count presets")
    p.add_argument("--size", type=int, default=None, help="image side of psnmf's samples")
    p.add_argument("--seeds", default="0", help="comma-separated noise seeds (psnmf samples)")
    p.add_argument("--espm-datasets", default=None,
                   help="comma-separated espm datasets (paper293, paper18, particles; "
                        "'none' for none; default all, --quick paper293,particles)")
    p.add_argument("--espm-max-iter", type=int, default=None,
                   help="cap on espm's max_iter (default 200, --quick 40; 0 = the published "
                        "values, hours)")
    p.add_argument("--no-espm", action="store_true", help="psnmf and the oracle only")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help="espm's virtual environment")
    p.add_argument("--no-install", action="store_true",
                   help="fail instead of creating a missing espm environment")
    p.add_argument("--keep", default=None, help="keep the .npz exchange files in this folder")
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    p.add_argument("--markdown", default=None, help="write the tables to this file")
    a = p.parse_args(argv)

    samples = (a.samples.split(",") if a.samples else
               (["nanoparticles", "mantle"] if a.quick else SAMPLES))
    samples = [s for s in samples if s and s != "none"]
    size = a.size or (48 if a.quick else 64)
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.quick:
        seeds = seeds[:1]
    cap = a.espm_max_iter if a.espm_max_iter is not None else (40 if a.quick else 200)
    cap_arg = None if cap == 0 else cap
    espm_arg = a.espm_datasets or ("paper293,particles" if a.quick else ",".join(ESPM_DATASETS))
    espm_sets = [] if espm_arg == "none" else espm_arg.split(",")
    with_espm = not a.no_espm
    venv = Path(a.venv)

    print(f"machine: {machine()}", flush=True)
    version = ensure_espm(venv, install=not a.no_install) if with_espm else "not run"
    print(f"espm {version} in {venv}; psnmf {psnmf.__version__}; espm max_iter cap "
          f"{cap_arg or 'none (published values)'}", flush=True)
    if not with_espm:
        espm_sets = []
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="psnmf-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    warm_jit()
    t_start = time.perf_counter()
    rows = []
    try:
        jobs: list[tuple[str, Any]] = [("espm", key) for key in espm_sets]
        jobs += [("psnmf", (n, snr, seed)) for n in samples for snr in a.snr.split(",")
                 for seed in seeds]
        for kind, spec in jobs:
            if kind == "espm":
                d = espm_dataset(spec, venv, work)
            else:
                d = psnmf_dataset(spec[0], spec[1], size, spec[2], work)
            row = evaluate(d, venv, cap_arg, work, with_espm=with_espm)
            rows.append(row)
            msg = [f"{row['dataset']}: {', '.join(row['phases'])}"]
            for m in METHODS:
                if m in row:
                    msg.append(f"  {TITLES[m]:15s} angle "
                               + " ".join(f"{v:6.2f}" for v in row[m]["angle"])
                               + "  mse " + " ".join(f"{v:.4f}" for v in row[m]["mse"])
                               + f"  {row[m]['seconds']:.1f} s"
                               + (f" ({row[m]['n_iter']} it)" if "n_iter" in row[m] else ""))
            print("\n".join(msg), flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    table = markdown(rows)
    print()
    print(table)
    print(summary(rows))
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; machine at the end: {machine()}")
    header = (f"Machine: {machine()}. espm {version}, psnmf {psnmf.__version__}, espm "
              f"max_iter cap {cap_arg or 'none'}.\n\n")
    if a.markdown:
        Path(a.markdown).write_text(header + table + "\n" + summary(rows) + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(), "espm": version,
                                            "cap": cap_arg, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
