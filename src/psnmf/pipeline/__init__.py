"""From a microscope file to unmixed, denoised results, ``summary.json`` and a report.

:func:`unmix` is what ``psnmf unmix FILE`` runs, :func:`sweep` what ``psnmf sweep FILE``
runs. Both accept a file path (anything :func:`psnmf.io.load_spectrum_image` reads) or a
HyperSpy EDS spectrum image. ``unmix`` is a short sequence of steps
(:mod:`psnmf.pipeline.steps`), each with a typed result; the run is described by a typed
:class:`Summary` from which ``summary.json`` and the report are made.

Modules: :mod:`~psnmf.pipeline.load` (reading and the energy range),
:mod:`~psnmf.pipeline.steps`, :mod:`~psnmf.pipeline.summary` (the typed results),
:mod:`~psnmf.pipeline.progress`, :mod:`~psnmf.pipeline.priors` (the user priors),
:mod:`~psnmf.pipeline.unmix`, :mod:`~psnmf.pipeline.sweep`,
:mod:`~psnmf.pipeline.config` (the TOML configuration of a run, ``config.toml``) and
:mod:`~psnmf.pipeline.batch` (:func:`unmix_files`: several files, one index page).

Examples
--------
>>> from psnmf.pipeline import unmix                                       # doctest: +SKIP
>>> res = unmix("../shared/data/real/test_TEM.bcf", output_dir="tem_out")  # doctest: +SKIP
>>> res.deviance.psnmf < res.deviance.raw                                  # doctest: +SKIP
True
"""

from psnmf.pipeline.batch import BatchResult, unmix_files
from psnmf.pipeline.config import ConfigError, RunConfig
from psnmf.pipeline.priors import Priors
from psnmf.pipeline.progress import Progress
from psnmf.pipeline.steps import DEFAULT_BOOTSTRAP, FINAL_ITERATIONS, make_estimator
from psnmf.pipeline.summary import HeldoutDeviance, Summary, UnmixResult
from psnmf.pipeline.sweep import SweepResult, sweep
from psnmf.pipeline.unmix import format_summary, unmix
from psnmf.selection import DEFAULT_BINS, DEFAULT_COMPONENTS, ModelChoice

__all__ = [
    "BatchResult",
    "ConfigError",
    "RunConfig",
    "DEFAULT_BINS",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_COMPONENTS",
    "FINAL_ITERATIONS",
    "HeldoutDeviance",
    "ModelChoice",
    "Priors",
    "Progress",
    "Summary",
    "SweepResult",
    "UnmixResult",
    "format_summary",
    "make_estimator",
    "sweep",
    "unmix",
    "unmix_files",
]
