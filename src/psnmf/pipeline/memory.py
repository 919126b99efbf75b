"""Peak memory of :func:`psnmf.pipeline.unmix`, estimated before the heavy work, and its guard.

:func:`estimate_peak` predicts the peak resident memory of a run, stage by stage, from
the size of the input (pixels, channels, non-zero counts); :func:`check_unmix_memory`
refuses a run whose estimate does not fit in :func:`psnmf._validation.available_memory`
(RAM, rlimits and cgroup limits) with a message a command-line user can act on;
:func:`estimate_time` gives the expected duration of each stage for the progress display.

The model is measured: :func:`measure_unmix` runs ``unmix`` in a fresh process and
records the peak resident size (``VmHWM``, reset at the start of each stage, see
:class:`psnmf.pipeline.progress.Progress`) of every stage, and :func:`fit_model` fits,
per stage, ::

    peak - baseline = a * cube + c * nnz + d

by non-negative least squares in relative error, where ``cube = pixels * channels * 8``
(the bytes of the float64 cube), ``nnz`` the non-zero entries of the counts and
``baseline`` the resident size of a process that has imported psnmf and HyperSpy
(:data:`BASELINE`, about 183 MiB). :func:`fit_time_model` fits the seconds of each stage
the same way, on pixels and non-zeros (:data:`TIME_MODEL`).

The measurements (:data:`MEASUREMENTS`, ``python -m psnmf.pipeline.memory measure FILE
'{"output_dir": "out"}'``), all defaults (k and b chosen, TV maps, up to 20 bootstrap
replicates, factors and report written, no dense cubes), one fresh process each, the
pipeline that reads a file lazily into sparse counts and never holds its dense cube, this
2-core machine (AMD EPYC, 24 GB): simulated mantle maps (:func:`psnmf.simulate.mantle`, 10
elements, a 100 nm film) of 64 x 64, 128 x 128, 180 x 180 and 256 x 256 pixels x 1980
channels at 147 counts per pixel and 128 x 128 at 18; and the inputs of
``benchmarks/unmix_scale.py`` at 512 x 512 x 2048, 120 counts per pixel, and 512 x 512 x
4096, 1.2 counts per pixel (sparse). Whole-run peak: largest relative error over the
measured cases 10 % (in-sample); predicted from the other cases only (leave one out):
medium_64 +14 %, medium_128 -4 %, low_128 -0 %, medium_180 -1 %, medium_256 -13 %,
medium_512 +17 %, sparse_512 -9 %. The peaks of the small maps (0.5-0.8 GB) are mostly the
libraries' own buffers, which vary from run to run by tens of MB; :data:`PEAK_ERROR` is the
largest leave-one-out error, rounded up; a 48 x 48 run not used in the fit is checked
against it in ``tests/test_memory.py``. The whole-run time, left out the same way: -16, -4,
-13, -9, -24, +37 and +34 %. To refit after the pipeline changes: measure the seven inputs
again and run ``python -m psnmf.pipeline.memory fit *.json``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psnmf import _validation
from psnmf._validation import MEMORY_FRACTION, InsufficientMemoryError

#: The stages of ``unmix`` in their order (the names of its progress steps).
STAGES = ("load", "sweep", "pca", "psnmf", "heldout", "elements", "composition",
          "composition_maps", "save", "report")

STAGE_LABELS = {
    "load": "loading", "sweep": "choosing k and b", "pca": "PCA (HyperSpy)",
    "psnmf": "the PSNMF fit", "heldout": "the held-out deviance and residual map", "elements":
    "the elemental maps", "composition": "the bootstrap compositions",
    "composition_maps": "the composition maps", "save":
    "writing the signals", "report": "the figures and report",
}

#: Per-stage measurements of ``unmix`` (defaults but ``n_boot=3``, written to a folder),
#: simulated mantle maps with 1980 channels, this 2-core machine: ``{case: {"shape":
#: [ny, nx, ne], "nnz": non-zeros, "baseline": bytes, "stages": {stage: [peak bytes,
#: seconds]}}}``, one fresh process per case.
MEASUREMENTS: dict[str, dict[str, Any]] = {
    'medium_64': {
        "shape": [64, 64, 1980], "nnz": 296994, "baseline": 192159744,
        "n_boot": 20, "replicates": 5, "k": 3, "b": 4,
        "stages": {
            'load': [370614272, 1.14],
            'sweep': [539152384, 4.96],
            'pca': [476504064, 0.07],
            'psnmf': [545660928, 1.83],
            'heldout': [506675200, 0.32],
            'elements': [509763584, 0.21],
            'composition': [529584128, 6.58],
            'composition_maps': [529780736, 0.3],
            'save': [531234816, 2.11],
            'report': [546893824, 1.33],
        },
    },
    'medium_128': {
        "shape": [128, 128, 1980], "nnz": 1203362, "baseline": 192323584,
        "n_boot": 20, "replicates": 20, "k": 3, "b": 4,
        "stages": {
            'load': [474816512, 1.45],
            'sweep': [633872384, 5.98],
            'pca': [566411264, 0.25],
            'psnmf': [594501632, 3.57],
            'heldout': [677634048, 0.89],
            'elements': [544591872, 0.23],
            'composition': [629846016, 19.39],
            'composition_maps': [630042624, 1.16],
            'save': [632000512, 2.17],
            'report': [647000064, 1.38],
        },
    },
    'low_128': {
        "shape": [128, 128, 1980], "nnz": 254765, "baseline": 192368640,
        "n_boot": 20, "replicates": 20, "k": 3, "b": 4,
        "stages": {
            'load': [398905344, 1.41],
            'sweep': [552431616, 3.56],
            'pca': [489771008, 0.27],
            'psnmf': [490467328, 2.71],
            'heldout': [606789632, 1.32],
            'elements': [480935936, 0.21],
            'composition': [543350784, 16.6],
            'composition_maps': [546549760, 1.12],
            'save': [548622336, 2.15],
            'report': [563236864, 1.34],
        },
    },
    'medium_180': {
        "shape": [180, 180, 1980], "nnz": 2360583, "baseline": 192479232,
        "n_boot": 20, "replicates": 7, "k": 3, "b": 4,
        "stages": {
            'load': [533184512, 2.74],
            'sweep': [626024448, 7.9],
            'pca': [667312128, 0.53],
            'psnmf': [692027392, 4.17],
            'heldout': [761700352, 1.95],
            'elements': [682614784, 0.27],
            'composition': [793812992, 9.61],
            'composition_maps': [762224640, 1.25],
            'save': [764850176, 2.36],
            'report': [780156928, 1.55],
        },
    },
    'medium_256': {
        "shape": [256, 256, 1980], "nnz": 4762668, "baseline": 192311296,
        "n_boot": 20, "replicates": 6, "k": 3, "b": 4,
        "stages": {
            'load': [758939648, 5.23],
            'sweep': [887492608, 17.12],
            'pca': [941035520, 1.53],
            'psnmf': [900976640, 7.37],
            'heldout': [937070592, 3.24],
            'elements': [940621824, 0.36],
            'composition': [1205731328, 13.13],
            'composition_maps': [1031233536, 1.76],
            'save': [958730240, 2.5],
            'report': [973275136, 1.76],
        },
    },
    'medium_512': {
        "shape": [512, 512, 1980], "nnz": 16529440, "baseline": 192282624,
        "n_boot": 20, "replicates": 4, "k": 3, "b": 4,
        "stages": {
            'load': [1259950080, 8.54],
            'sweep': [1472548864, 26.86],
            'pca': [1816600576, 6.32],
            'psnmf': [1647931392, 23.35],
            'heldout': [1524158464, 8.56],
            'elements': [1435824128, 0.82],
            'composition': [2412138496, 20.87],
            'composition_maps': [1443663872, 1.26],
            'save': [1065558016, 1.07],
            'report': [1233113088, 2.54],
        },
    },
    'sparse_512': {
        "shape": [512, 512, 3960], "nnz": 313189, "baseline": 192602112,
        "n_boot": 20, "replicates": 17, "k": 2, "b": 8,
        "stages": {
            'load': [589414400, 3.32],
            'sweep': [728363008, 18.07],
            'pca': [790532096, 1.48],
            'psnmf': [594993152, 4.53],
            'heldout': [716734464, 3.77],
            'elements': [637976576, 0.18],
            'composition': [900124672, 9.81],
            'composition_maps': [717373440, 1.26],
            'save': [720740352, 1.08],
            'report': [851492864, 2.71],
        },
    },
}

#: Fitted per stage: ``(a, c, d)`` of ``peak - baseline = a * cube + c * nnz + d``
#: (cube = pixels x channels x 8 bytes). See :func:`fit_model`.
MODEL: dict[str, tuple[float, float, float]] = {
    'load': (0.02352, 55.54, 1.832e+08),
    'sweep': (0.02159, 53.83, 3.392e+08),
    'pca': (0.03667, 78.58, 2.679e+08),
    'psnmf': (0.008362, 72.08, 3.086e+08),
    'heldout': (0.01761, 61.85, 3.586e+08),
    'elements': (0.01581, 61.76, 2.922e+08),
    'composition': (0.04395, 113.4, 3.065e+08),
    'composition_maps': (0.01824, 59.5, 3.519e+08),
    'save': (0.01651, 32.88, 3.761e+08),
    'report': (0.03114, 39.9, 3.82e+08),
}
#: Resident bytes of a process that has imported psnmf and HyperSpy (mean of the runs).
BASELINE = 192360000
#: Relative error of the whole-run peak the tests allow: the largest leave-one-out error
#: over :data:`MEASUREMENTS`, rounded up (see the module docstring).
PEAK_ERROR = 0.2
#: Writing the dense denoised cubes (``write_denoised``): bytes added to the save stage's
#: peak per byte of the float64 cube, and seconds per MB of it (measured at 256 x 256 x
#: 1980; the writing is chunked, so the bytes are an upper bound at larger sizes).
DENSE_WRITE: tuple[float, float] = (0.18, 0.025)
#: Fitted per stage: ``(a, c, d)`` of ``seconds = a * pixels + c * nnz + d`` (pixels and
#: non-zeros in millions) on this machine: a guide for the progress display.
TIME_MODEL: dict[str, tuple[float, float, float]] = {
    'load': (8.169, 0.4058, 1.057),
    'sweep': (48.2, 0.975, 3.516),
    'pca': (6.224, 0.1669, 0),
    'psnmf': (9.72, 1.079, 1.726),
    'heldout': (14.21, 0.3727, 0.2073),
    'elements': (0, 0.03757, 0.1857),
    'composition': (0, 0.2904, 0.6512),
    'composition_maps': (3.17, 0.01694, 0.4258),
    'save': (0, 0, 1.5),
    'report': (5.076, 0, 1.32),
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak resident memory of an ``unmix`` run.

    Attributes
    ----------
    stages : dict
        Peak resident bytes of the process in each stage that runs.
    baseline : int
        Resident bytes of the process before the run (imports).
    shape : (ny, nx, channels)
    nnz : int
    """

    stages: dict[str, int]
    baseline: int
    shape: tuple[int, int, int]
    nnz: int
    available: int | None = field(default=None, compare=False)

    @property
    def peak(self) -> int:
        """Peak resident bytes of the whole run (the largest stage)."""
        return max(self.stages.values())

    @property
    def largest(self) -> str:
        """The stage with the largest peak."""
        return max(self.stages, key=self.stages.__getitem__)

    @property
    def need(self) -> int:
        """Bytes the run needs beyond what the process holds before it."""
        return max(self.peak - self.baseline, 0)

    def describe(self) -> str:
        """One line per stage: ``stage  1.23 GiB``."""
        return "\n".join(f"{STAGE_LABELS.get(s, s):28s} {_gib(v)}"
                         for s, v in self.stages.items())


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def estimate_peak(
    image_shape: tuple[int, int], n_channels: int, nnz: int, *,
    k_max: int = 8, bin_factors: Sequence[int] = (2, 4, 8), n_boot: int = 20,
    write_denoised: bool = False, choose: bool = True, output: bool = True,
    report: bool = True, baseline: int | None = None,
) -> MemoryEstimate:
    """Estimated peak resident memory of ``unmix`` on an input of this size, by stage.

    Parameters
    ----------
    image_shape : (ny, nx)
        Pixels of the map after loading (and cropping).
    n_channels : int
        Channels after the energy crop.
    nnz : int
        Non-zero entries of the counts (pixels x channels with at least one count).
    k_max, bin_factors :
        Largest ``k`` and the ``b`` of the search. The measured runs searched
        ``k <= 8`` over ``b`` in (2, 4, 8) and chose ``k = 3`` (2 on the sparse map); the
        model has no term in them (the search holds binned data and ``pixels x k`` maps,
        small beside the cube).
    n_boot : int
        Bootstrap replicates; 0 leaves out the composition stage (its measured peak does
        not grow with the replicates, which run one after the other).
    write_denoised : bool
        Whether the dense denoised cubes are written: adds ``DENSE_WRITE[0]`` times the
        cube to the save stage (:data:`DENSE_WRITE`).
    choose, output, report : bool
        Whether k or b is searched, results are written, the report is made: the stages
        left out do not count.
    baseline : int, optional
        Resident bytes of the process before the run (default :data:`BASELINE`).

    Returns
    -------
    MemoryEstimate

    Notes
    -----
    Measured peak of each stage above the baseline (:data:`MEASUREMENTS`), MiB, with the
    error of the fitted model (:data:`MODEL`) in percent of it:

    ================ ========== ========== ========== ========== ========== =========== ==========
    stage               64² med   128² med   128² low   180² med   256² med    512² med   512² 1.2
    ================ ========== ========== ========== ========== ========== =========== ==========
    load             170 (+13%)  269 (-9%)  197 (-2%)  325 (-4%) 540 (-17%) 1018 (+12%)  378 (-0%)
    sweep             331 (+3%)  421 (-7%)  343 (-0%) 413 (+10%) 663 (-11%)  1221 (+3%)  511 (-0%)
    pca               271 (+3%)  357 (-1%)  284 (+0%)  453 (-1%)  714 (-9%)  1549 (+6%)  570 (-0%)
    psnmf             337 (-7%)  384 (-1%) 284 (+10%)  476 (-3%)  676 (-7%)  1388 (+5%)  384 (-0%)
    heldout          300 (+20%) 463 (-10%)  395 (-9%) 543 (-10%) 710 (-10%)  1270 (+9%)  500 (+0%)
    elements          303 (-2%)  336 (+5%)  275 (+8%)  467 (-9%) 714 (-19%) 1186 (+11%)  425 (-1%)
    composition       322 (+2%)  417 (+4%)  335 (-1%)  573 (-1%) 966 (-12%)  2117 (+6%)  675 (-0%)
    composition_maps 322 (+10%)  417 (-2%)  338 (+5%) 543 (-12%) 800 (-22%) 1193 (+13%)  500 (-1%)
    save             323 (+14%)  419 (-4%)  340 (+9%) 546 (-19%) 731 (-28%)  833 (+13%)  504 (-1%)
    report           338 (+12%)  434 (-4%)  354 (+8%) 560 (-16%) 745 (-23%)  993 (+12%)  628 (-1%)
    ================ ========== ========== ========== ========== ========== =========== ==========

    Examples
    --------
    >>> est = estimate_peak((128, 128), 1980, 1_200_000)
    >>> est.largest, round(est.need / (128 * 128 * 1980 * 8), 1)
    ('composition', 1.7)
    """
    ny, nx = (int(v) for v in image_shape)
    cube = ny * nx * int(n_channels) * 8
    base = BASELINE if baseline is None else int(baseline)
    stages = {}
    for name in STAGES:
        if name in _skipped(choose, n_boot, output, report) or name not in MODEL:
            continue
        a, c, d = MODEL[name]
        stages[name] = int(base + a * cube + c * int(nnz) + d)
    if write_denoised and "save" in stages:
        stages["save"] += int(DENSE_WRITE[0] * cube)
    return MemoryEstimate(stages, base, (ny, nx, int(n_channels)), int(nnz))


def estimate_time(image_shape: tuple[int, int], n_channels: int, nnz: int, *,
                  n_boot: int = 20, choose: bool = True, output: bool = True,
                  report: bool = True, write_denoised: bool = False) -> dict[str, float]:
    """Expected seconds of each stage that will run, on the machine of :data:`TIME_MODEL`.

    ``seconds = a * pixels_millions + c * nnz_millions + d`` per stage: the work follows
    the pixels (maps, binning, TV) and the counts (the sparse kernels), not the dense
    cube. The composition stage scales with ``n_boot`` (fitted per replicate: an upper
    bound when the bootstrap's stopping rule ends it early, and the stage the model
    predicts worst, since its cost depends on the elements and the absorption correction).
    Writing the dense cubes adds :data:`DENSE_WRITE` seconds per MB of the float64 cube to
    the save stage. The flags leave out the stages a run skips, as in
    :func:`estimate_peak`. A guide for the progress display, which rescales it by how fast
    the run goes (:meth:`psnmf.pipeline.progress.Progress.speed`), not a promise.

    Examples
    --------
    >>> est = estimate_time((128, 128), 2048, 1_500_000, choose=False)
    >>> "sweep" in est, est["psnmf"] > 0
    (False, True)
    """
    ny, nx = (int(v) for v in image_shape)
    x = _time_features(ny * nx, int(nnz))
    out = {}
    for name, coef in TIME_MODEL.items():
        if name in _skipped(choose, n_boot, output, report):
            continue
        seconds = _stage_seconds(coef, x)
        out[name] = (seconds * min(n_boot, typical_replicates()) if name == "composition"
                     else seconds)
    if write_denoised and "save" in out:
        out["save"] += DENSE_WRITE[1] * ny * nx * int(n_channels) * 8 / 1e6
    return out


def _skipped(choose: bool, n_boot: int, output: bool, report: bool) -> set[str]:
    """The stages a run with these settings leaves out."""
    return {name for name, on in (("sweep", choose), ("composition", n_boot > 0),
                                  ("composition_maps", n_boot > 0), ("save", output),
                                  ("report", output and report)) if not on}


def check_unmix_memory(
    image_shape: tuple[int, int], n_channels: int, nnz: int, *, what: str = "the input",
    available: int | None = None, **options: Any,
) -> MemoryEstimate:
    """Refuse, before the heavy work, an ``unmix`` run that would not fit in memory.

    Call it right after loading. ``options`` go to :func:`estimate_peak`. The run is
    refused when the memory it needs beyond the current process (the estimated peak minus
    the baseline) exceeds :data:`psnmf._validation.MEMORY_FRACTION` of ``available``
    (default :func:`psnmf._validation.available_memory`, which honours RAM, ``ulimit -v``,
    ``RLIMIT_DATA`` and cgroup limits).

    Returns
    -------
    MemoryEstimate
        The estimate, when the run fits.

    Raises
    ------
    psnmf._validation.InsufficientMemoryError
        Naming the input size, the memory needed (and the stage that needs most), the
        memory available (and what limits it), and the fixes with their command-line
        options and how much each would need.

    Examples
    --------
    >>> check_unmix_memory((64, 64), 1980, 300_000, available=2**40).largest
    'report'
    >>> check_unmix_memory((512, 512), 4096, 10**6, what="'scan.bcf'",
    ...                    available=2**29)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    psnmf._validation.InsufficientMemoryError: 'scan.bcf' (512 x 512 pixels x 4096 channels...
    """
    limits = _validation.memory_limits() if available is None else {"given": int(available)}
    have = _validation.available_memory() if available is None else int(available)
    est = estimate_peak(image_shape, n_channels, nnz, **options)
    if est.need <= MEMORY_FRACTION * have:
        return est
    raise InsufficientMemoryError(_message(est, have, limits, what, options))


_LIMIT_NAMES = {
    "ram": "free RAM", "rlimit_as": "the address-space limit (ulimit -v)",
    "rlimit_data": "the data-size limit (ulimit -d)", "cgroup": "the container's memory limit",
    "given": "the memory given",
}


def _message(est: MemoryEstimate, have: int, limits: dict[str, int], what: str,
             options: dict[str, Any]) -> str:
    ny, nx, ne = est.shape
    density = est.nnz / max(ny * nx * ne, 1)
    limit = min(limits, key=limits.__getitem__) if limits else "ram"
    budget = MEMORY_FRACTION * have

    def need(shape: tuple[int, int], channels: int, nnz: float, **kw: Any) -> int:
        return estimate_peak(shape, channels, int(nnz), **{**options, **kw}).need

    fixes = []
    # channels: the smallest count that fits, as a fraction of the range
    for frac in (0.5, 0.25):
        n = need((ny, nx), max(int(ne * frac), 1), est.nnz * frac)
        if n <= budget or frac == 0.25:
            fixes.append(f"a smaller energy range with --energy-range LO,HI (about "
                         f"{_gib(n)} for {int(ne * frac)} of the {ne} channels)")
            break
    for b in (2, 4):
        if ny // b >= 1 and nx // b >= 1:
            n = need((ny // b, nx // b), ne, min(est.nnz, (ny // b) * (nx // b) * ne))
            if n <= budget or b == 4:
                fixes.append(f"a map cropped or binned before unmixing, e.g. {b} x {b} to "
                             f"{ny // b} x {nx // b} pixels (about {_gib(n)}; in HyperSpy "
                             f"s.rebin(scale=({b}, {b}, 1)) or s.inav[...], then "
                             "s.save('smaller.hspy'))")
                break
    if options.get("write_denoised"):
        n = need((ny, nx), ne, est.nnz, write_denoised=False)
        fixes.append(f"no dense denoised cubes, without --write-denoised (about {_gib(n)}; "
                     "the factor files rebuild them)")
    if "composition" in est.stages and est.largest == "composition":
        n = need((ny, nx), ne, est.nnz, n_boot=0)
        fixes.append(f"no bootstrap error bars with --bootstrap 0 (about {_gib(n)})")
    fixes.append("from Python, the lazy route that never holds the dense cube: "
                 "psnmf.PSNMF(...).fit(psnmf.io.load_spectrum_image(path, lazy=True))")
    return (
        f"{what} ({ny} x {nx} pixels x {ne} channels, {est.nnz:,} non-zero counts, "
        f"{100 * density:.2g} % of the cube) needs about {_gib(est.need)} of memory for "
        f"psnmf unmix (most in {STAGE_LABELS.get(est.largest, est.largest)}), but only "
        f"{_gib(have)} is available (limited by {_LIMIT_NAMES.get(limit, limit)}); "
        f"nothing was computed. To make it fit, use " + "; or ".join(fixes) + "."
    )


def fit_model(measurements: dict[str, dict[str, Any]] | None = None,
              ) -> tuple[dict[str, tuple[float, float, float]], float]:
    """Fit :data:`MODEL` to measurements; returns ``(model, largest relative peak error)``.

    Per stage, non-negative least squares of ``peak - baseline`` on ``(cube, nnz, 1)``
    (cube = pixels x channels x 8), each row weighted by ``1 / (peak - baseline)`` so that
    the fit is in relative error.
    """
    meas = MEASUREMENTS if measurements is None else measurements
    model: dict[str, tuple[float, float, float]] = {}
    for name in STAGES:
        rows, ys = [], []
        for m in meas.values():
            if name in m["stages"]:
                ny, nx, ne = m["shape"]
                rows.append([ny * nx * ne * 8, m["nnz"], 1.0])
                ys.append(m["stages"][name][0] - m["baseline"])
        if rows:
            model[name] = _fit_relative(rows, ys, floor=1.0)
    err = max(abs(_predicted_peak(model, m) / _measured_peak(m) - 1) for m in meas.values())
    return model, float(err)


def _measured_peak(m: dict[str, Any]) -> int:
    return max(v[0] for v in m["stages"].values())


def _predicted_peak(model: dict[str, tuple[float, float, float]], m: dict[str, Any]) -> float:
    """The whole-run peak ``model`` predicts for the stages and size of measurement ``m``."""
    ny, nx, ne = m["shape"]
    x = (ny * nx * ne * 8, m["nnz"], 1.0)
    return max(m["baseline"] + sum(c * v for c, v in zip(model[s], x, strict=True))
               for s in m["stages"] if s in model)


def leave_one_out_error(measurements: dict[str, dict[str, Any]] | None = None,
                        ) -> dict[str, float]:
    """Relative error of the whole-run peak of each case predicted by the model fitted to
    the other cases (:func:`fit_model`): the error to expect on a new input."""
    meas = MEASUREMENTS if measurements is None else measurements
    out = {}
    for name, m in meas.items():
        model, _ = fit_model({k: v for k, v in meas.items() if k != name})
        out[name] = float(_predicted_peak(model, m) / _measured_peak(m) - 1)
    return out


def fit_time_model(measurements: dict[str, dict[str, Any]] | None = None,
                   ) -> dict[str, tuple[float, float, float]]:
    """Fit :data:`TIME_MODEL`: per stage, ``seconds = a * pixels_millions + c *
    nnz_millions + d`` (non-negative least squares in relative error, as
    :func:`fit_model`); the composition stage per bootstrap replicate.
    """
    meas = MEASUREMENTS if measurements is None else measurements
    out = {}
    for name in STAGES:
        rows, ys = [], []
        for m in meas.values():
            if name in m["stages"]:
                ny, nx, _ = m["shape"]
                per = _replicates(m) if name == "composition" else 1
                if per > 0:
                    rows.append(list(_time_features(ny * nx, m["nnz"])))
                    ys.append(m["stages"][name][1] / per)
        if rows:
            out[name] = _fit_relative(rows, ys, floor=0.05)
    return out


def _fit_relative(rows: list[list[float]], ys: list[float],
                  floor: float) -> tuple[float, float, float]:
    """Non-negative least squares of ``ys`` on ``rows`` in relative error: each row weighted
    by ``1 / max(y, floor)``, the columns scaled to a maximum of 1 for the solver."""
    import numpy as np
    from scipy.optimize import nnls

    A, y = np.asarray(rows, float), np.asarray(ys, float)
    scale = np.maximum(np.abs(A).max(0), 1e-9)
    w = 1.0 / np.maximum(y, floor)
    coef, _ = nnls((A / scale) * w[:, None], y * w)
    return tuple(float(v) for v in coef / scale)


def _replicates(m: dict[str, Any]) -> int:
    """The bootstrap replicates measurement ``m`` drew (its ``n_boot`` when not recorded)."""
    return int(m.get("replicates", m.get("n_boot", 1)))


def typical_replicates(measurements: dict[str, dict[str, Any]] | None = None) -> int:
    """The median number of replicates the bootstrap's stopping rule drew in the measured
    runs that quantified (rounded up): what :func:`estimate_time` expects of a run."""
    import numpy as np

    meas = MEASUREMENTS if measurements is None else measurements
    drawn = [_replicates(m) for m in meas.values() if _replicates(m) > 0]
    return int(np.ceil(np.median(drawn))) if drawn else 20


def _stage_seconds(coef: Sequence[float], x: Sequence[float]) -> float:
    """Seconds of one stage under :data:`TIME_MODEL` coefficients ``coef`` (never < 0)."""
    return max(sum(c * v for c, v in zip(coef, x, strict=True)), 0.0)


def _time_features(pixels: int, nnz: int) -> tuple[float, float, float]:
    """The terms of :data:`TIME_MODEL`: pixels and non-zeros in millions, and 1."""
    return pixels / 1e6, nnz / 1e6, 1.0


def time_error(measurements: dict[str, dict[str, Any]] | None = None,
               ) -> dict[str, float]:
    """Relative error of each case's whole-run time (the sum of its stages) predicted by
    the time model fitted to the other cases (:func:`fit_time_model`)."""
    meas = MEASUREMENTS if measurements is None else measurements
    out = {}
    for name, m in meas.items():
        model = fit_time_model({k: v for k, v in meas.items() if k != name})
        ny, nx, _ = m["shape"]
        x = _time_features(ny * nx, m["nnz"])
        pred = sum(_stage_seconds(model[s], x) * (_replicates(m) if s == "composition" else 1)
                   for s in m["stages"] if s in model)
        out[name] = float(pred / sum(v[1] for v in m["stages"].values()) - 1)
    return out


def measure_unmix(path: str | Path, output_dir: str | Path | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """Run :func:`psnmf.pipeline.unmix` on ``path`` in this process and measure each stage.

    Returns ``{"shape": [ny, nx, ne], "nnz": int, "baseline": bytes, "stages": {stage:
    [peak bytes, seconds]}, "peak": bytes}``, the form of :data:`MEASUREMENTS`. A stage's
    peak is the process's ``VmHWM`` during the stage (reset at its start, Linux). Run it in
    a fresh process (``python -m psnmf.pipeline.memory measure FILE '{"n_boot": 3}'``):
    memory held by earlier work of the process would count.
    """
    import importlib

    import hyperspy.api  # noqa: F401  (imported before the baseline: part of every run)

    progress_mod = importlib.import_module("psnmf.pipeline.progress")
    unmix_mod = importlib.import_module("psnmf.pipeline.unmix")
    recorders: list[Any] = []

    class Recording(progress_mod.Progress):
        track_memory = True

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            recorders.append(self)

    baseline = progress_mod.reset_peak()
    old = unmix_mod.Progress
    unmix_mod.Progress = Recording
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = unmix_mod.unmix(path, output_dir=output_dir, progress=False, **kwargs)
    finally:
        unmix_mod.Progress = old
    prog = recorders[0]
    return {
        "shape": [int(v) for v in res.summary.input.shape],
        "nnz": int((res.signal.data > 0).sum()),
        "baseline": baseline, "n_boot": int(kwargs.get("n_boot", 20)),
        "replicates": (0 if res.summary.composition is None
                       else int(res.summary.composition.n_boot)),
        "k": int(res.n_components), "b": int(res.summary.parameters.bin_factor),
        "stages": {name: [prog.peaks[name], round(prog.timings[name], 2)]
                   for name in prog.peaks},
        "peak": max(prog.peaks.values()), "total_s": round(time.perf_counter() - t0, 2),
    }


def _main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "measure":
        kwargs = json.loads(argv[2]) if len(argv) > 2 else {}
        out = kwargs.pop("output_dir", None)
        print(json.dumps(measure_unmix(argv[1], output_dir=out, **kwargs)))
        return 0
    if argv and argv[0] == "fit":
        meas = {Path(p).stem: json.loads(Path(p).read_text()) for p in argv[1:]}
        model, err = fit_model(meas)
        print(json.dumps({"model": model, "error": err, "time": fit_time_model(meas),
                          "leave_one_out": leave_one_out_error(meas),
                          "time_leave_one_out": time_error(meas)}))
        return 0
    print("usage: python -m psnmf.pipeline.memory measure FILE [JSON kwargs]\n"
          "       python -m psnmf.pipeline.memory fit MEASUREMENT.json ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
