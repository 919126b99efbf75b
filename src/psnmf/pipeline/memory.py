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
(:data:`BASELINE`, about 175 MiB).

The measurements (:data:`MEASUREMENTS`, ``python -m psnmf.pipeline.memory measure FILE
'{"n_boot": 3, "output_dir": "out"}'``): simulated mantle maps
(:func:`psnmf.simulate.mantle`) of 64 x 64, 128 x 128, 180 x 180 and 256 x 256 pixels x
1980 channels at 147 counts per pixel and 128 x 128 at 18, all defaults (k and b chosen, TV
maps, factors and report written, no dense cubes) but 3 bootstrap replicates, the pipeline
that reads a file lazily into sparse counts and never holds its dense cube, this 2-core
machine. Whole-run peak: largest relative error over the measured cases 15 % (in-sample);
predicted from the other cases only (leave one out): medium_64 +17 %, medium_128 -17 %,
low_128 -4 %, medium_180 -12 %, medium_256 +21 %. At these sizes the peaks (0.47-0.88 GB)
are mostly the libraries' own buffers, which vary from run to run by tens of MB, so the
model is rough; :data:`PEAK_ERROR` is the largest leave-one-out error, rounded up; a
48 x 48 run not used in the fit is checked against it in ``tests/test_memory.py``. To
refit after the pipeline changes: measure the five files again and run
``python -m psnmf.pipeline.memory fit *.json``.

For comparison, on the 64², 128², 128² low and 180² inputs, the pipeline that held the
dense cube (commit af4da9f) peaked at 0.50, 0.70, 0.65 and 0.98 GB, and the one before it
(commit 5c5be89: dense PCA, dense denoised cubes written) at 0.95, 2.72, 1.87 and 5.15 GB,
always in the held-out deviance step, 6.5 to 12 times the float64 cube above the baseline.
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
STAGES = ("load", "sweep", "pca", "psnmf", "heldout", "elements", "composition", "save",
          "report")

STAGE_LABELS = {
    "load": "loading", "sweep": "choosing k and b", "pca": "PCA (HyperSpy)",
    "psnmf": "the PSNMF fit", "heldout": "the held-out deviance and residual map", "elements":
    "the elemental maps", "composition": "the bootstrap compositions", "save":
    "writing the signals", "report": "the figures and report",
}

#: Per-stage measurements of ``unmix`` (defaults but ``n_boot=3``, written to a folder),
#: simulated mantle maps with 1980 channels, this 2-core machine: ``{case: {"shape":
#: [ny, nx, ne], "nnz": non-zeros, "baseline": bytes, "stages": {stage: [peak bytes,
#: seconds]}}}``, one fresh process per case.
MEASUREMENTS: dict[str, dict[str, Any]] = {
    'medium_64': {
        "shape": [64, 64, 1980], "nnz": 296994, "baseline": 182366208,
        "n_boot": 3, "k": 3, "b": 4, "stages": {
            'load': [362745856, 1.57],
            'sweep': [430616576, 15.93],
            'pca': [423862272, 1.64],
            'psnmf': [429895680, 6.24],
            'heldout': [429924352, 3.88],
            'elements': [433512448, 0.23],
            'composition': [446361600, 2.09],
            'save': [445186048, 2.04],
            'report': [474722304, 3.19],
        },
    },
    'medium_128': {
        "shape": [128, 128, 1980], "nnz": 1203362, "baseline": 182153216,
        "n_boot": 3, "k": 3, "b": 8, "stages": {
            'load': [441352192, 1.64],
            'sweep': [514449408, 20.66],
            'pca': [526213120, 1.54],
            'psnmf': [576274432, 20.38],
            'heldout': [576434176, 12.8],
            'elements': [576536576, 0.53],
            'composition': [579043328, 3.24],
            'save': [643743744, 2.66],
            'report': [612323328, 7.16],
        },
    },
    'low_128': {
        "shape": [128, 128, 1980], "nnz": 254765, "baseline": 182226944,
        "n_boot": 3, "k": 3, "b": 16, "stages": {
            'load': [390373376, 2.55],
            'sweep': [439717888, 18.69],
            'pca': [447283200, 3.41],
            'psnmf': [448589824, 19.05],
            'heldout': [456380416, 6.35],
            'elements': [459943936, 0.45],
            'composition': [463941632, 1.82],
            'save': [529162240, 2.71],
            'report': [508977152, 7.2],
        },
    },
    'medium_180': {
        "shape": [180, 180, 1980], "nnz": 2360583, "baseline": 182280192,
        "n_boot": 3, "k": 3, "b": 4, "stages": {
            'load': [539037696, 4.61],
            'sweep': [639426560, 54.7],
            'pca': [663973888, 4.26],
            'psnmf': [674971648, 27.87],
            'heldout': [634417152, 18.36],
            'elements': [638132224, 0.67],
            'composition': [726454272, 10.34],
            'save': [605851648, 3.41],
            'report': [592064512, 8.16],
        },
    },
    'medium_256': {
        "shape": [256, 256, 1980], "nnz": 4762668, "baseline": 182206464,
        "n_boot": 3, "k": 3, "b": 8, "stages": {
            'load': [670236672, 2.97],
            'sweep': [821559296, 48.95],
            'pca': [879026176, 3.41],
            'psnmf': [816132096, 13.23],
            'heldout': [805842944, 12.72],
            'elements': [752099328, 0.55],
            'composition': [787832832, 5.51],
            'save': [669757440, 3.55],
            'report': [617033728, 5.85],
        },
    },
}

#: Fitted per stage: ``(a, c, d)`` of ``peak - baseline = a * cube + c * nnz + d``
#: (cube = pixels x channels x 8 bytes). See :func:`fit_model`.
MODEL: dict[str, tuple[float, float, float]] = {
    'load': (0.1224, 46.11, 1.645e+08),
    'sweep': (0.05058, 79.68, 2.24e+08),
    'pca': (0.1184, 79.9, 2.139e+08),
    'psnmf': (0.01878, 89.21, 2.384e+08),
    'heldout': (0.06217, 73.9, 2.388e+08),
    'elements': (0.03706, 67.73, 2.504e+08),
    'composition': (0, 85.64, 2.603e+08),
    'save': (0.2346, 0, 2.834e+08),
    'report': (0.003148, 29.49, 3.177e+08),
}
#: Resident bytes of a process that has imported psnmf and HyperSpy (mean of the runs).
BASELINE = 182246604
#: Relative error of the whole-run peak the tests allow: the largest leave-one-out error
#: over :data:`MEASUREMENTS`, rounded up (see the module docstring).
PEAK_ERROR = 0.25
#: Fitted per stage: ``(a, d)`` of ``seconds = a * cube_mb + d`` (cube_mb: the float64 cube
#: in MB); this machine, so a rough guide for the progress display.
TIME_MODEL: dict[str, tuple[float, float]] = {
    'load': (0.001657, 1.96),
    'sweep': (0.03919, 15.05),
    'pca': (0.001809, 2.08),
    'psnmf': (0.002852, 16.14),
    'heldout': (0.008346, 7.258),
    'elements': (0.0002576, 0.376),
    'composition': (0.001557, 0.8685),
    'save': (0.001452, 2.254),
    'report': (0.001262, 5.773),
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
    write_denoised: bool = True, choose: bool = True, output: bool = True,
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
        ``k <= 8`` over ``b`` in (2, 4, 8) and chose ``k = 3``; the model has no term in
        them (the search holds binned data and ``pixels x k`` maps, small beside the cube).
    n_boot : int
        Bootstrap replicates; 0 leaves out the composition stage (its measured peak does
        not grow with the replicates, which run one after the other).
    write_denoised : bool
        Whether the dense denoised cubes are written. The save stage was measured writing
        them; without them its estimate is kept (an upper bound).
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
    Measured peak of each stage (:data:`MEASUREMENTS`, n_boot = 3) above the baseline, in
    multiples of the float64 cube (pixels x channels x 8 bytes), with the error of the
    fitted model in percent of the measured peak, and the fitted constants (``a`` per cube
    byte, ``c`` in bytes per non-zero, ``d`` in MiB):

    =========== ============ ============ ============ ============ ============ ==============
    stage            64² med     128² med     128² low     180² med     256² med a, c, d
    =========== ============ ============ ============ ============ ============ ==============
    load         2.78 ( +3%)  1.00 ( -3%)  0.80 ( -0%)  0.70 ( -6%)  0.47 ( +5%) 0.12, 46, 157
    sweep        3.83 ( +1%)  1.28 ( +0%)  0.99 ( -0%)  0.89 ( -4%)  0.62 ( +3%) 0.05, 80, 214
    pca          3.72 ( +2%)  1.33 ( -1%)  1.02 ( -0%)  0.94 ( -4%)  0.67 ( +3%) 0.12, 80, 204
    psnmf        3.82 ( +8%)  1.52 (-11%)  1.03 ( -0%)  0.96 ( -7%)  0.61 ( +8%) 0.02, 89, 227
    heldout      3.82 ( +7%)  1.52 (-13%)  1.06 ( -0%)  0.88 ( -2%)  0.60 ( +5%) 0.06, 74, 228
    elements     3.87 ( +9%)  1.52 (-13%)  1.07 ( -0%)  0.89 ( -6%)  0.55 ( +7%) 0.04, 68, 239
    composition  4.07 ( +8%)  1.53 ( -8%)  1.09 ( +0%)  1.06 (-15%)  0.58 (+10%) 0.00, 86, 248
    save         4.05 (+14%)  1.78 (-25%)  1.34 ( -1%)  0.83 ( -5%)  0.47 ( +8%) 0.23, 0, 270
    report       4.51 (+12%)  1.66 (-18%)  1.26 ( -0%)  0.80 ( -5%)  0.42 ( +6%) 0.00, 29, 303
    =========== ============ ============ ============ ============ ============ ==============

    Examples
    --------
    >>> est = estimate_peak((128, 128), 1980, 1_200_000)
    >>> est.largest, round(est.need / (128 * 128 * 1980 * 8), 1)
    ('composition', 1.4)
    """
    ny, nx = (int(v) for v in image_shape)
    cube = ny * nx * int(n_channels) * 8
    base = BASELINE if baseline is None else int(baseline)
    skip = {name for name, on in (("sweep", choose), ("composition", n_boot > 0),
                                  ("save", output), ("report", output and report)) if not on}
    stages = {}
    for name in STAGES:
        if name in skip or name not in MODEL:
            continue
        a, c, d = MODEL[name]
        stages[name] = int(base + a * cube + c * int(nnz) + d)
    return MemoryEstimate(stages, base, (ny, nx, int(n_channels)), int(nnz))


def estimate_time(image_shape: tuple[int, int], n_channels: int, *, n_boot: int = 20,
                  ) -> dict[str, float]:
    """Expected seconds of each stage on this 2-core machine (:data:`TIME_MODEL`).

    Scaled linearly in the size of the cube; the composition stage scales with
    ``n_boot`` (the model was fitted per replicate). A guide for the progress display,
    not a promise: other machines, other data and other counts differ.
    """
    ny, nx = (int(v) for v in image_shape)
    mb = ny * nx * int(n_channels) * 8 / 1e6
    out = {}
    for name, (a, d) in TIME_MODEL.items():
        seconds = max(a * mb + d, 0.0)
        out[name] = seconds * n_boot if name == "composition" else seconds
    return out


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
    ...                    available=2**31)  # doctest: +ELLIPSIS
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
                   ) -> dict[str, tuple[float, float]]:
    """Fit :data:`TIME_MODEL`: per stage, ``seconds = a * cube_mb + d`` (least squares,
    ``a, d >= 0``); the composition stage per bootstrap replicate."""
    import numpy as np
    from scipy.optimize import nnls

    meas = MEASUREMENTS if measurements is None else measurements
    out = {}
    for name in STAGES:
        rows, ys = [], []
        for m in meas.values():
            if name in m["stages"]:
                ny, nx, ne = m["shape"]
                rows.append([ny * nx * ne * 8 / 1e6, 1.0])
                per = m.get("n_boot", 1) if name == "composition" else 1
                ys.append(m["stages"][name][1] / per)
        if rows:
            coef, _ = nnls(np.asarray(rows), np.asarray(ys))
            out[name] = (float(coef[0]), float(coef[1]))
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
                          "leave_one_out": leave_one_out_error(meas)}))
        return 0
    print("usage: python -m psnmf.pipeline.memory measure FILE [JSON kwargs]\n"
          "       python -m psnmf.pipeline.memory fit MEASUREMENT.json ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
