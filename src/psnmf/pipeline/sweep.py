"""``sweep``: score bin factors and numbers of components by held-out Poisson deviance."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psnmf import __version__, io
from psnmf.pipeline import steps
from psnmf.pipeline.load import Loaded, load
from psnmf.pipeline.progress import Progress, quiet_libraries
from psnmf.selection import DEFAULT_BINS, ModelChoice, parse_choices


@dataclass
class SweepResult:
    """What :func:`sweep` found and wrote.

    Attributes
    ----------
    selection : ModelChoice
        The evidence: ``k_search`` (binned stage, per ``k``), ``b_search`` (full
        resolution, per ``(b, k)``), the chosen ``best``.
    loaded : Loaded
        The input as loaded (source and energy range).
    paths : dict
        ``json``, ``table`` and ``figure`` when an ``output_dir`` was given.
    """

    selection: ModelChoice
    loaded: Loaded
    paths: dict[str, Path] = field(default_factory=dict)

    def to_text(self) -> str:
        """The tables as aligned text (:meth:`ModelChoice.to_text`)."""
        return self.selection.to_text()


def sweep(
    path_or_signal: Any,
    bins: Sequence[int] | str | None = DEFAULT_BINS,
    components: Sequence[int] | int | str | None = None,
    *,
    seed: int | None = 0,
    energy_range: tuple[float | None, float | None] | None = None,
    elements: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = False,
) -> SweepResult:
    """Score bin factors and numbers of components by held-out Poisson deviance.

    Counts are split by binomial thinning (``seed``) into parts with independent Poisson
    noise; a model is fitted on one part and its prediction of the other scored by the
    Poisson deviance per count (lower is better).

    * ``k`` (when there are several candidates) is scored where the spectra are
      estimated, on the binned stage: the counts are binned by one bin factor giving
      about 3000 counts per binned pixel while leaving at least 100 binned pixels
      (:func:`psnmf.selection.components_bin_factor`; at most 2048 of them, a random
      subset), split into 5 folds, and for every fold and ``k`` the binned stage is fitted
      on the other four and scored on it, ``k`` in increasing order until the total rises.
      The ``k`` with the lowest total wins (``selection.k_search``).
    * ``b``: PSNMF (both stages) is fitted on one half of the counts at that ``k`` and
      scored on the other half at full resolution, from the largest ``b`` down until the
      score rises (``selection.b_search``). Binning helps
      until it blurs the phases: the curve over ``b`` has its minimum where the spectra
      are best estimated without losing the maps.

    The full-resolution score is not used for ``k``: it also charges each component for
    the noise of its per-pixel abundances, and at low counts that favours too few
    components (see :func:`psnmf.selection.choose_model`).

    Parameters
    ----------
    path_or_signal : path or HyperSpy EDS spectrum image
    bins : sequence of int or str, default (4, 8, 16)
        Bin factors to try (too large ones for the image are skipped).
    components : sequence of int, int, 'auto' or None
        Numbers of components. ``None``/``'auto'``: ``k`` in 2..6 chosen on the binned
        stage, then ``bins`` at that ``k``. Several given: the same choice of ``k`` among
        them, and the b search covers the full grid ``bins x components`` (the chosen
        ``(b, k)`` is the best ``b`` at the chosen ``k``, which need not be the lowest
        row). One given: only ``b`` is chosen.
    seed : int
        Seed of the count split and of the NMF initialisations.
    energy_range, elements : as in :func:`psnmf.pipeline.unmix`.
    output_dir : path, optional
        Write ``sweep.json``, ``sweep.txt`` and ``sweep.png`` there, as one set with a
        manifest (:class:`psnmf.io.ResultsFolder`: locked for the run, swapped in whole).
    overwrite : bool
        Accept a non-empty ``output_dir``: psnmf's files of an earlier run are replaced,
        the user's own files (and an ``unmix/`` results folder) kept.
    progress, verbose : bool
        Progress bars and step timings on stderr.

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> res = sweep("../shared/data/real/test_TEM.bcf", bins=(2, 4, 8, 16))  # doctest: +SKIP
    >>> print(res.to_text())                                                # doctest: +SKIP
    """
    bins_t = parse_choices(bins, "bins")
    comps_t = parse_choices(components, "components")
    prog = Progress(progress, verbose)
    notes: list[str] = []
    with steps.results_folder(output_dir, overwrite=overwrite,
                              path_or_signal=path_or_signal, names=SWEEP_FILES,
                              command="psnmf sweep") as results:
        if results is not None:
            results.check_space(SWEEP_BYTES)
        with quiet_libraries(verbose):
            loaded = load(path_or_signal, energy_range, elements, notes)
            for note in notes:
                warnings.warn(note, UserWarning, stacklevel=2)
            data = steps.split(loaded, seed)
            selection = steps.choose(data, k=None, b=None, bins=bins_t, components=comps_t,
                                     seed=seed, progress=prog)
        result = SweepResult(selection, loaded)
        if results is not None:
            with results.writing():
                _write(result, results.path)
    if results is not None:  # committed: the paths of the final folder
        result.paths = {key: results.final / p.name for key, p in result.paths.items()}
    return result


#: Room kept for ``sweep.json``, ``sweep.txt`` and ``sweep.png``, in bytes.
SWEEP_BYTES = 2**20
#: The files :func:`sweep` writes.
SWEEP_FILES = ("sweep.json", "sweep.txt", "sweep.png")


def _write(result: SweepResult, out: Path) -> None:
    """``sweep.json``, ``sweep.txt`` and ``sweep.png``."""
    from psnmf import report

    ld = result.loaded
    info = {"source": ld.source, "energy_range_keV": ld.energy_range_keV,
            "energy_range_reason": ld.energy_range_reason,
            "full_energy_range_keV": ld.full_energy_range_keV,
            "beam_energy_keV": ld.beam_energy_keV, "signal_type": ld.signal_type}
    result.paths["json"] = io.write_json(
        {**result.selection.to_dict(), "input": info, "psnmf_version": __version__},
        out / "sweep.json",
    )
    result.paths["table"] = io.write_text(result.to_text() + "\n", out / "sweep.txt")
    result.paths["figure"] = report.save_sweep_figure(result.selection, out / "sweep.png")
