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
measured cases 6 % (in-sample); predicted from the other cases only (leave one out):
medium_64 +13 %, medium_128 -4 %, low_128 +1 %, medium_180 -1 %, medium_256 -6 %,
medium_512 +7 %, sparse_512 -28 % (the one case with so few counts). The peaks of the
small maps (0.5-0.8 GB) are mostly the libraries' own buffers, which vary from run to run
by tens of MB; :data:`PEAK_ERROR` is the largest leave-one-out error, rounded up; a 48 x 48
run not used in the fit is checked against it in ``tests/test_memory.py``. The whole-run
time, left out the same way: -21, +1, +17, -13, -23, +42 and -1 %. To refit after the
pipeline changes: measure the seven inputs again and run ``python -m psnmf.pipeline.memory
fit *.json``.
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
        "shape": [64, 64, 1980], "nnz": 296994, "baseline": 192237568,
        "n_boot": 20, "replicates": 5, "k": 3, "b": 4,
        "stages": {
            'load': [368480256, 1.15],
            'sweep': [532680704, 4.61],
            'pca': [469766144, 0.08],
            'psnmf': [536440832, 1.84],
            'heldout': [499945472, 0.3],
            'elements': [503316480, 0.21],
            'composition': [523034624, 7.88],
            'composition_maps': [523227136, 0.28],
            'save': [524632064, 2.06],
            'report': [540041216, 1.32],
        },
    },
    'medium_128': {
        "shape": [128, 128, 1980], "nnz": 1203362, "baseline": 192245760,
        "n_boot": 20, "replicates": 20, "k": 3, "b": 4,
        "stages": {
            'load': [448655360, 1.58],
            'sweep': [614158336, 7.14],
            'pca': [548319232, 0.21],
            'psnmf': [576421888, 3.04],
            'heldout': [657788928, 1.25],
            'elements': [525262848, 0.24],
            'composition': [616448000, 22.34],
            'composition_maps': [616640512, 1.2],
            'save': [618680320, 2.18],
            'report': [633643008, 1.44],
        },
    },
    'low_128': {
        "shape": [128, 128, 1980], "nnz": 254765, "baseline": 192241664,
        "n_boot": 20, "replicates": 20, "k": 3, "b": 4,
        "stages": {
            'load': [390488064, 1.38],
            'sweep': [534700032, 3.35],
            'pca': [471371776, 0.14],
            'psnmf': [471977984, 2.69],
            'heldout': [589496320, 1.28],
            'elements': [463540224, 0.21],
            'composition': [523100160, 19.75],
            'composition_maps': [526184448, 1.22],
            'save': [528252928, 2.25],
            'report': [543469568, 1.52],
        },
    },
    'medium_180': {
        "shape": [180, 180, 1980], "nnz": 2360583, "baseline": 192286720,
        "n_boot": 20, "replicates": 7, "k": 3, "b": 4,
        "stages": {
            'load': [536633344, 2.79],
            'sweep': [622243840, 8.09],
            'pca': [680730624, 0.72],
            'psnmf': [696090624, 4.07],
            'heldout': [753545216, 2.13],
            'elements': [635019264, 0.29],
            'composition': [773648384, 11.19],
            'composition_maps': [741994496, 1.07],
            'save': [744820736, 2.29],
            'report': [759427072, 1.46],
        },
    },
    'medium_256': {
        "shape": [256, 256, 1980], "nnz": 4762668, "baseline": 192241664,
        "n_boot": 20, "replicates": 6, "k": 3, "b": 4,
        "stages": {
            'load': [735707136, 4.51],
            'sweep': [888856576, 16.8],
            'pca': [941453312, 1.3],
            'psnmf': [916004864, 6.61],
            'heldout': [941420544, 3.23],
            'elements': [846336000, 0.37],
            'composition': [1107492864, 13.91],
            'composition_maps': [994918400, 1.86],
            'save': [922558464, 2.36],
            'report': [936980480, 1.53],
        },
    },
    'medium_512': {
        "shape": [512, 512, 1980], "nnz": 16529440, "baseline": 192229376,
        "n_boot": 20, "replicates": 4, "k": 3, "b": 4,
        "stages": {
            'load': [1259540480, 7.22],
            'sweep': [1474220032, 26.65],
            'pca': [1818288128, 5.29],
            'psnmf': [1649999872, 20.25],
            'heldout': [1526439936, 6.62],
            'elements': [1437921280, 0.86],
            'composition': [2440409088, 21.95],
            'composition_maps': [1407119360, 1.4],
            'save': [1029144576, 1.0],
            'report': [1196838912, 2.67],
        },
    },
    'sparse_512': {
        "shape": [512, 512, 3960], "nnz": 311675, "baseline": 192184320,
        "n_boot": 20, "replicates": 0, "k": 2, "b": 8,
        "stages": {
            'load': [580128768, 4.27],
            'sweep': [726319104, 20.44],
            'pca': [792956928, 2.42],
            'psnmf': [601415680, 4.84],
            'heldout': [718807040, 4.48],
            'elements': [640421888, 0.17],
            'composition': [902356992, 1.47],
            'composition_maps': [644673536, 0.0],
            'save': [646414336, 0.61],
            'report': [771862528, 1.96],
        },
    },
}

#: Fitted per stage: ``(a, c, d)`` of ``peak - baseline = a * cube + c * nnz + d``
#: (cube = pixels x channels x 8 bytes). See :func:`fit_model`.
MODEL: dict[str, tuple[float, float, float]] = {
    'load': (0.02337, 55.5, 1.757e+08),
    'sweep': (0.02281, 54.94, 3.267e+08),
    'pca': (0.03836, 80.47, 2.553e+08),
    'psnmf': (0.01094, 74.24, 2.928e+08),
    'heldout': (0.01931, 62.78, 3.466e+08),
    'elements': (0.01861, 59.45, 2.729e+08),
    'composition': (0.04613, 110.8, 2.919e+08),
    'composition_maps': (0.01114, 59.43, 3.389e+08),
    'save': (0.009272, 32.93, 3.631e+08),
    'report': (0.02326, 40.06, 3.69e+08),
}
#: Resident bytes of a process that has imported psnmf and HyperSpy (mean of the runs).
BASELINE = 192240000
#: Relative error of the whole-run peak the tests allow: the largest leave-one-out error
#: over :data:`MEASUREMENTS`, rounded up (see the module docstring).
PEAK_ERROR = 0.3
#: Writing the dense denoised cubes (``write_denoised``): bytes added to the save stage's
#: peak per byte of the float64 cube, and seconds per MB of it (measured at 256 x 256 x
#: 1980; the writing is chunked, so the bytes are an upper bound at larger sizes).
DENSE_WRITE: tuple[float, float] = (0.17, 0.038)
#: Fitted per stage: ``(a, c, d)`` of ``seconds = a * pixels + c * nnz + d`` (pixels and
#: non-zeros in millions) on this machine: a guide for the progress display.
TIME_MODEL: dict[str, tuple[float, float, float]] = {
    'load': (11.34, 0.2726, 1.139),
    'sweep': (54.22, 0.9384, 3.34),
    'pca': (7.934, 0.128, 0),
    'psnmf': (11.1, 0.8957, 1.745),
    'heldout': (16.98, 0.2565, 0.2322),
    'elements': (0, 0.0411, 0.183),
    'composition': (0, 0.2633, 0.988),
    'composition_maps': (0, 0.09823, 0),
    'save': (0, 0.005426, 1.018),
    'report': (2.442, 0.03538, 1.329),
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

    ================ ========= ========= ========= ========= ========= ========== =========
    stage             64² med  128² med  128² low  180² med  256² med   512² med 512² 1.2
    ================ ========= ========= ========= ========= ========= ========== =========
    load             168 (+10%) 245 (-3%) 189 (-1%) 328 (-7%) 518 (-15%) 1018 (+12%) 370 (-0%)
    sweep            325 (+1%) 402 (-5%) 327 (+1%) 410 (+9%) 664 (-12%) 1223 (+4%) 509 (-0%)
    pca              265 (+1%) 340 (+2%) 266 (+2%) 466 (-5%) 715 (-9%) 1551 (+7%) 573 (-0%)
    psnmf            328 (-8%) 366 (+0%) 267 (+12%) 480 (-6%) 690 (-9%) 1390 (+7%) 390 (-1%)
    heldout          293 (+19%) 444 (-8%) 379 (-7%) 535 (-10%) 714 (-11%) 1272 (+10%) 502 (-0%)
    elements         297 (-6%) 318 (+5%) 259 (+8%) 422 (-5%) 624 (-12%) 1188 (+7%) 427 (-0%)
    composition      315 (-1%) 405 (+3%) 316 (+0%) 554 (-1%) 873 (-5%) 2144 (+3%) 677 (-0%)
    composition_maps 316 (+8%) 405 (-3%) 318 (+7%) 524 (-12%) 765 (-21%) 1159 (+13%) 432 (-1%)
    save             317 (+12%) 407 (-5%) 320 (+11%) 527 (-19%) 696 (-27%) 798 (+13%) 433 (-1%)
    report           332 (+10%) 421 (-4%) 335 (+10%) 541 (-16%) 710 (-22%) 958 (+12%) 553 (-1%)
    ================ ========= ========= ========= ========= ========= ========== =========

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
    import numpy as np
    from scipy.optimize import nnls

    meas = MEASUREMENTS if measurements is None else measurements
    model: dict[str, tuple[float, float, float]] = {}
    for name in STAGES:
        rows, ys = [], []
        for m in meas.values():
            if name in m["stages"]:
                ny, nx, ne = m["shape"]
                rows.append([ny * nx * ne * 8, m["nnz"], 1.0])
                ys.append(m["stages"][name][0] - m["baseline"])
        if not rows:
            continue
        A, y = np.asarray(rows, float), np.asarray(ys, float)
        scale = np.maximum(np.abs(A).max(0), 1.0)
        w = 1.0 / np.maximum(y, 1.0)
        coef, _ = nnls((A / scale) * w[:, None], y * w)
        model[name] = tuple(float(v) for v in coef / scale)
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
    import numpy as np
    from scipy.optimize import nnls

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
        if not rows:
            continue
        A, y = np.asarray(rows, float), np.asarray(ys, float)
        w = 1.0 / np.maximum(y, 0.05)
        scale = np.maximum(np.abs(A).max(0), 1e-9)
        coef, _ = nnls((A / scale) * w[:, None], y * w)
        out[name] = tuple(float(v) for v in coef / scale)
    return out


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
