"""``unmix``: from a microscope file to unmixed, denoised results, ``summary.json`` and a report.

The steps (:mod:`psnmf.pipeline.steps`)
---------------------------------------
1. load: read the EDS spectrum image and crop its energy axis (default: from 0.2 keV,
   above the zero-energy noise peak, to the beam energy; above 20 keV only if an
   element's main line needs it).
2. split: the counts into two independent halves ``X1``, ``X2`` by binomial thinning.
3. choose ``k`` and/or ``b`` when asked (``n_components=None``, ``bin_factor="auto"``) by
   held-out Poisson deviance (:func:`psnmf.selection.choose_model`).
4. PCA of the full data as HyperSpy users run it (computed on the sparse counts,
   :func:`psnmf.baselines.pca_factors`): scree and the PCA-denoised baseline.
5. fit: PSNMF of the full data: component spectra, maps, count scale (the denoised cube
   is their product, built lazily).
6. score: held-out deviance of raw, PCA and PSNMF (fitted on ``X1`` with the final fit's
   TV weight), one floor.
7. residuals: each pixel's standardised deviance under the fit, and the worst-fitted
   region (:mod:`psnmf.residuals`).
8. elemental maps of the raw, PCA and PSNMF data; 9. quantify: component compositions
   with bootstrap ±; composition maps: per-pixel compositions of the denoised data with
   sigma maps (:func:`psnmf.quantify.composition_maps`).
10. write (with ``output_dir``): the factors as ``.hspy`` signals (the dense cubes only
   with ``write_denoised``), figures, ``report.html`` and ``summary.json``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from psnmf import __version__, io
from psnmf.baselines import PCA_DIMENSION
from psnmf.pipeline import memory, steps
from psnmf.pipeline.config import CONFIG_NAME, RunConfig, run_header
from psnmf.pipeline.load import INTEGRATION_WINDOWS, load
from psnmf.pipeline.priors import Priors, ResolvedPriors
from psnmf.pipeline.priors import resolve as resolve_priors
from psnmf.pipeline.progress import Progress, quiet_libraries
from psnmf.pipeline.steps import DEFAULT_BOOTSTRAP, FINAL_ITERATIONS
from psnmf.pipeline.summary import (
    FitInfo,
    InputInfo,
    Parameters,
    SmoothingInfo,
    Summary,
    UnmixResult,
    versions,
)
from psnmf.selection import DEFAULT_BINS, DEFAULT_COMPONENTS, ModelChoice

if TYPE_CHECKING:  # pragma: no cover
    from psnmf.report.background import PendingFigures

AUTO = "auto (held-out deviance)"


def unmix(
    path_or_signal: Any,
    *,
    n_components: int | str | None = None,
    bin_factor: int | str = "auto",
    energy_range: tuple[float | None, float | None] | None = None,
    elements: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    seed: int | None = 0,
    overwrite: bool = False,
    progress: bool = True,
    verbose: bool = False,
    bins: Sequence[int] = DEFAULT_BINS,
    components: Sequence[int] = DEFAULT_COMPONENTS,
    max_iter: int = FINAL_ITERATIONS[0],
    max_iter_full: int = FINAL_ITERATIONS[1],
    report: bool = True,
    smoothing: float | str | None = "auto",
    vertex: bool = True,
    never_pure: str = "keep",
    n_boot: int = DEFAULT_BOOTSTRAP,
    write_denoised: bool = False,
    quantify_options: dict[str, Any] | None = None,
    priors: Priors | dict[str, Any] | None = None,
) -> UnmixResult:
    """Read, unmix and denoise an EDX spectrum image; write results and a report.

    Parameters
    ----------
    path_or_signal : path or HyperSpy EDS spectrum image
        Any file :func:`psnmf.io.load_spectrum_image` reads (Bruker .bcf, Velox .emd, JEOL
        .pts, EDAX .spd, .hspy, .npz, ...), or a signal with two navigation axes.
    n_components : int, 'auto' or None (default)
        Number of phases ``k``. ``None``/``'auto'``: the ``k`` in ``components`` with the
        lowest held-out Poisson deviance of the binned stage (see :func:`psnmf.pipeline.sweep`).
    bin_factor : int or 'auto' (default)
        Spatial bin factor ``b`` of PSNMF's first stage. ``'auto'``: the ``b`` in ``bins``
        with the lowest held-out deviance of PSNMF (the final fit's method, no smoothing)
        fitted on half of the counts, scored summed over 8 x 8 pixels.
    energy_range : (lo, hi) in keV, optional
        Channels used. Default: from 0.2 keV (drops the zero-energy noise peak) to the
        beam energy (to 20 keV, or further if an element's main line needs it). If that
        range holds almost no counts (a file with only the noise peak) the full range is
        used and a warning says so.
    elements : list of str, optional
        Elements for the elemental maps and line markers. Default: the file's metadata.
    output_dir : path, optional
        Where to write the results (see Notes). ``None`` writes nothing.
    seed : int
        Seed of the count split and of the NMF initialisation (results are reproducible).
    overwrite : bool
        Accept a non-empty ``output_dir``: psnmf's files of the earlier run there are
        replaced (or removed when this run does not write them); the user's own files are
        kept (see Notes).
    progress, verbose : bool
        Progress bars, and step timings, on stderr.
    bins, components : sequences of int
        Candidates for ``'auto'``.
    max_iter, max_iter_full : int
        Iteration caps of the final PSNMF fit (binned stage, full-resolution stage).
    report : bool
        Write the figures and ``report.html`` (needs ``output_dir``).
    smoothing : float, 'auto' (default) or None
        Total-variation regularisation of the maps: ``'auto'`` chooses the weight by
        held-out deviance (0, i.e. none, is a candidate), a number is the weight relative
        to the counts per pixel, ``None`` keeps per-pixel maps.
    vertex : bool
        Pure-pixel spectra (``PSNMF(spectra='pure')``): move each binned-stage spectrum to
        its pure-pixel cluster when the data show one. ``False`` gives the paper's spectra.
    never_pure : {'keep', 'lines'}
        The spectra of the phases without pure pixels (``PSNMF(never_pure=...)``): NMF's
        vertex ('keep'), or extrapolated along the element lines of the signal's elements
        and EDX model ('lines', with ``vertex``; kept, with a note, where the file names
        no element or no model fits its energy axis). ``summary.json`` says which
        vertices the lines moved.
    n_boot : int
        Bootstrap replicates for the ± of the component compositions
        (:func:`psnmf.uncertainty.bootstrap`); 0 skips the composition table.
    write_denoised : bool
        Also write the dense denoised cubes ``denoised.hspy`` and ``pca_denoised.hspy``
        (float32, chunked, gzip-compressed; 4 bytes per pixel and channel before
        compression). By default only the factors are written, from which they are rebuilt.
    quantify_options : dict, optional
        Settings of the component quantification, passed to :func:`psnmf.quantify.quantify`
        (through :func:`psnmf.uncertainty.bootstrap`): ``method``, ``k_factors`` (a dict,
        :class:`psnmf.quantify.KFactors` or a file), ``thickness`` and ``thickness_sigma``
        (nm), ``density`` (g/cm^3), ``exclude_elements`` (fitted, left out of the totals),
        ``detection_sigma``, ``beam_current``, ``live_time``...
    priors : psnmf.pipeline.Priors or dict, optional
        What is known about the sample (:mod:`psnmf.pipeline.priors`), by component index:
        ``fixed_spectra`` ``{j: spectrum}`` (an array on the data's channels, a signal, or
        a .hspy / .msa / .csv file, interpolated onto the data's axis when it covers the
        energy range), ``forbid`` ``{j: [elements]}`` (component j holds none of their
        lines; their windows keep a continuum), ``rois`` ``{j: mask}`` (component j
        starts from the summed spectrum of the region; a bool array or .npy / .png /
        .tif image) and
        ``pixel_mask`` (pixels left out of the fit; their maps are NaN). Checked once the
        data are loaded, before any fit; recorded in ``summary.json`` (``priors``) and the
        report. With ``n_components`` 'auto', only candidates ``k`` with every component
        the priors name are tried.

    Returns
    -------
    UnmixResult

    Notes
    -----
    Files written to ``output_dir``: the factorisation, as HyperSpy signals with the
    input's axes and metadata: ``component_spectra.hspy`` (k | channels),
    ``component_maps.hspy`` (k | y, x) and ``count_scale.hspy`` (y, x), from which
    :func:`psnmf.hyperspy.denoised_from_factors` rebuilds the PSNMF-denoised cube (lazily);
    ``residual_map.hspy`` (y, x), each pixel's standardised deviance under the fit;
    ``composition_maps.hspy`` and ``composition_sigma_maps.hspy`` (element | y, x), the
    denoised data's at.% per pixel and one standard deviation (with the composition table,
    ``n_boot > 0``; the elements in ``metadata.Sample.elements``), and
    ``composition_maps.png``;
    ``psnmf_decomposition.hspy`` and ``pca_decomposition.hspy``, HyperSpy decompositions
    whose ``get_decomposition_model()`` is the PSNMF- and the PCA-denoised cube
    (``hs.load(path, lazy=True)``; their data are a compressed placeholder of zeros);
    ``denoised.hspy`` and ``pca_denoised.hspy`` (float32) only with ``write_denoised``;
    ``component_spectra.png``, ``component_maps.png``,
    ``element_maps.png`` (raw vs PCA vs PSNMF), ``scree.png``, ``deviance.png``,
    ``loss.png``, ``residuals.png``, ``sum_spectrum.png``, ``smoothing.png`` (when the
    TV weight was chosen), ``sweep.png`` (when b or k was chosen), ``config.toml`` (every
    parameter of the run, from which ``psnmf unmix --config config.toml`` runs it again, see
    :mod:`psnmf.pipeline.config`), ``summary.json`` and
    ``report.html`` (it shows the PNG files beside it), listed with their sizes and
    checksums in ``.psnmf-manifest.json``.

    The results appear as one set (:class:`psnmf.io.ResultsFolder`): the folder is locked
    for the run (a second run into it stops at once), the files are written into a hidden
    sibling folder that is swapped into place when all are written, and an interrupted or
    failed run (Ctrl-C, a full disk) leaves the earlier results byte-identical. The free
    space is checked before writing, and an input that the results would replace is
    refused.

    The held-out deviance: the counts are split in two halves ``X1``, ``X2``; raw
    predicts ``X2`` by ``X1``, PCA and PSNMF by their fits to ``X1`` (same ``k`` and
    ``b``); the Poisson deviance per count of ``X2`` is reported with predicted means
    floored at ``1e-6``, over the central 256 x 256 pixels of a larger map. Lower is
    better; raw is the no-denoising reference.

    Examples
    --------
    A small simulated map with given ``k`` and ``b`` (nothing written):

    >>> import warnings
    >>> from psnmf.simulate import mantle
    >>> signal = mantle("medium", seed=0, shape=(24, 24)).to_signal()
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     res = unmix(signal, n_components=3, bin_factor=4, n_boot=0, progress=False)
    >>> res.maps.data.shape, res.deviance.psnmf < res.deviance.raw
    ((3, 24, 24), True)
    >>> res.summary.to_dict()["parameters"]["n_components_choice"]
    'given'

    A file, everything automatic, results and ``report.html`` in ``out/``:

    >>> res = unmix("../shared/data/real/test_TEM.bcf", output_dir="out")   # doctest: +SKIP
    >>> res.paths["report"]                                                 # doctest: +SKIP
    PosixPath('out/report.html')
    """
    run_config = RunConfig.from_unmix_call(dict(locals()))
    t_start = time.perf_counter()
    k = None if n_components is None or _is_auto(n_components) else _positive_int(
        n_components, "n_components")
    b = None if _is_auto(bin_factor) else _positive_int(bin_factor, "bin_factor")
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0 or n_boot == 1:
        raise ValueError(f"n_boot must be 0 (no composition table) or an integer >= 2, got "
                         f"{n_boot!r}.")
    prog = Progress(progress, verbose)
    notes: list[str] = []
    with steps.results_folder(
            output_dir, overwrite=overwrite, path_or_signal=path_or_signal,
            names=steps.output_names(write_denoised=bool(write_denoised)),
            command="psnmf unmix") as results:
        if results is not None:  # the report at least: refused now, not after the work
            results.check_space(steps.REPORT_BYTES if report else steps.HSPY_OVERHEAD)
        prog.start(7 + int(k is None or b is None) + int(n_boot > 0)
                   + int(results is not None) * 2,
                   "psnmf unmix")
        try:
            with quiet_libraries(verbose):
                result = _run(
                    path_or_signal, prog, notes, k=k, b=b, energy_range=energy_range,
                    elements=elements, seed=seed, bins=tuple(bins),
                    components=tuple(components),
                    iterations=(int(max_iter), int(max_iter_full)), smoothing=smoothing,
                    vertex=bool(vertex), never_pure=str(never_pure), n_boot=int(n_boot),
                    quantify_options=quantify_options, priors=Priors.from_any(priors),
                    writes={"output": results is not None, "report": bool(report),
                            "write_denoised": bool(write_denoised)},
                )
                if results is not None:
                    _write(result, results, prog, report=report, t_start=t_start,
                           write_denoised=bool(write_denoised), run_config=run_config)
                else:
                    result.summary.timings_s["total"] = time.perf_counter() - t_start
        finally:
            prog.close()
    if results is not None:  # committed: the paths of the final folder
        result.paths = {key: results.final / p.name for key, p in result.paths.items()}
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return result


def _run(path_or_signal: Any, prog: Progress, notes: list[str], *, k: int | None,
         b: int | None, energy_range: Any, elements: Any, seed: int | None,
         bins: tuple[int, ...], components: tuple[int, ...], iterations: tuple[int, int],
         smoothing: float | str | None, vertex: bool, n_boot: int,
         never_pure: str = "keep",
         quantify_options: dict[str, Any] | None = None,
         priors: Priors | None = None,
         writes: dict[str, bool] | None = None) -> UnmixResult:
    """The steps from the input to the result, nothing written (``writes``: what the caller
    will write, ``output``, ``report`` and ``write_denoised`` flags, for the memory guard
    and the expected durations)."""
    with prog.step("load", "loading"):
        loaded = load(path_or_signal, energy_range, elements, notes)
        resolved = resolve_priors(priors, loaded.signal, loaded.counts, loaded.image_shape)
        data = steps.split(loaded, seed, None if resolved is None else resolved.pixel_mask)
        estimator_priors = _check_priors(resolved, data, k)
        lines = (steps.line_physics(loaded.signal, notes)
                 if vertex and never_pure == "lines" else {})
        memory.check_unmix_memory(
            data.image_shape, data.counts.shape[1], data.counts.nnz,
            what=f"'{loaded.source.get('file') or 'the signal'}'",
            choose=k is None or b is None, n_boot=n_boot, **(writes or {}),
        )
        prog.expect(memory.estimate_time(
            data.image_shape, data.counts.shape[1], data.counts.nnz, n_boot=n_boot,
            choose=k is None or b is None, **(writes or {})))
    selection = None
    fits: dict[tuple[int, int], Any] = {}  # the search's fits of X1, by (b, k)
    if k is None or b is None:
        what = " and ".join(x for x, auto in (("k", k is None), ("b", b is None)) if auto)
        with prog.step("sweep", "choosing " + what):
            selection = steps.choose(data, k=k, b=b, bins=bins, components=None,
                                     auto_components=components, seed=seed, progress=prog,
                                     fits=fits, priors=estimator_priors,
                                     pure_spectra=vertex, lines=lines)
        k = k if k is not None else selection.n_components
        b = b if b is not None else selection.bin_factor
    config = {"seed": seed, "iterations": iterations, "smoothing": smoothing,
              "pure_spectra": vertex, "priors": estimator_priors, "lines": lines}
    with prog.step("pca", "PCA (HyperSpy)"):
        baseline = steps.pca(loaded.signal, k, seed, notes, data)
    with prog.step("psnmf", f"PSNMF k={k} b={b}"):
        fitted = steps.fit(loaded.signal, data, k, b, **config)
    with prog.step("heldout", "held-out deviance, residual map"):
        deviance = steps.score(loaded.signal, data, k, b, seed=seed, notes=notes,
                               smoothing_lam=fitted.model.smoothing_["lam"],
                               pure_spectra=vertex, candidate=fits.get((b, k)),
                               priors=estimator_priors, lines=lines)
        resid = steps.residual_map(loaded.signal, data, fitted)
    with prog.step("elements", "elemental maps"):
        elmaps = steps.element_maps(loaded, baseline, fitted, notes)
    composition = comp_maps = None
    if not elmaps.lines:
        prog.skip("composition", "composition_maps")
    if n_boot > 0 and elmaps.lines:
        with (prog.step("composition", f"compositions (bootstrap, up to {n_boot} replicates)"),
              prog.counter(n_boot, "bootstrap replicates") as advance):
            quantified = steps.quantify(fitted.model, data, loaded.signal, elmaps.lines,
                                        n_boot, seed, notes, options=quantify_options,
                                        progress=advance)
            composition = quantified.table
        with prog.step("composition_maps", "composition maps"):
            comp_maps = steps.composition_maps(fitted.model, quantified, notes)
    summary = Summary(
        psnmf_version=__version__, versions=versions(),
        input=_input_info(loaded, data, elmaps.lines),
        parameters=_parameters(fitted.model, k, b, selection, seed, iterations, smoothing,
                               n_boot),
        heldout_deviance=deviance, fit=_fit_info(fitted.model),
        smoothing=SmoothingInfo.from_model(fitted.model.smoothing_), composition=composition,
        pca_explained_variance_ratio=baseline.scree, selection=selection,
        warnings=list(notes), timings_s=dict(prog.timings), residuals=resid.to_dict(),
        priors=_priors_record(resolved, quantify_options),
        composition_maps=None if comp_maps is None else comp_maps.summary(),
    )
    return UnmixResult(
        model=fitted.model, signal=loaded.signal, denoised=fitted.denoised,
        pca_denoised=baseline.denoised, spectra=fitted.spectra, maps=fitted.maps,
        element_maps=elmaps.maps, deviance=deviance, scree=baseline.scree,
        selection=selection, summary=summary, warnings=notes, scale=fitted.scale,
        pca=baseline.factors, residuals=resid, composition_maps=comp_maps,
        raw_sum=np.asarray(loaded.counts.sum(axis=0), dtype=np.float64).ravel(),
        counts=loaded.counts,
    )


def _check_priors(resolved: ResolvedPriors | None, data: steps.Split,
                  k: int | None) -> dict[str, Any] | None:
    """The estimator's prior options, checked on the data before any fit (with ``k`` when
    given), or None."""
    if resolved is None:
        return None
    from psnmf import priors as checks

    engine = checks.spectral_priors(data.counts, data.image_shape, **resolved.estimator)
    if k is not None:
        checks.check_coverage(data.counts, engine, k)
    return resolved.estimator if engine is not None else None


def _priors_record(resolved: ResolvedPriors | None,
                   quantify_options: dict[str, Any] | None) -> dict[str, Any]:
    """The ``priors`` entry of ``summary.json``: the spectral and pixel priors given and
    the elements excluded from the quantification."""
    record = {} if resolved is None else dict(resolved.record)
    excluded = list((quantify_options or {}).get("exclude_elements") or [])
    if excluded:
        record["exclude_elements"] = excluded
    return record


def _write(result: UnmixResult, results: io.ResultsFolder, prog: Progress, *, report: bool,
           t_start: float, write_denoised: bool, run_config: RunConfig) -> None:
    """Signals, figures, ``config.toml``, ``report.html`` and ``summary.json`` into the
    staging folder of
    ``results`` (swapped into place as one set when the run ends); the free space is
    checked first, and a write error becomes one :class:`psnmf.io.OutputWriteError`."""
    out = results.path
    results.check_space(steps.result_bytes(
        result.signal.data.shape, result.n_components, write_denoised=write_denoised,
        report=report, n_lines=len(result.summary.input.xray_lines_mapped or ())))
    with results.writing():
        # the figures are drawn in forked processes while the signals are written and
        # the page's interactive part is built
        figures = steps.start_figures(result, out) if report else None
        try:
            _write_files(result, out, prog, figures, t_start=t_start,
                         write_denoised=write_denoised, run_config=run_config)
        finally:
            if figures is not None:
                figures.cancel()  # nothing left to stop unless a write failed


def _write_files(result: UnmixResult, out: Path, prog: Progress,
                 figures: PendingFigures | None, *, t_start: float, write_denoised: bool,
                 run_config: RunConfig) -> None:
    """The files of :func:`_write`, the figures taken from ``figures`` (None: no report)."""
    from psnmf import report as report_pkg

    with prog.step("save", "writing signals"):
        result.paths.update(steps.write_signals(result, out, write_denoised=write_denoised))
    page = None
    with prog.step("report", "figures and report"):
        if figures is not None:
            page = report_pkg.prepare_html(result)
            result.paths.update(figures.result())
    if result.summary.composition is not None:
        result.paths["composition"] = result.summary.composition.write_csv(
            out / "composition.csv")
    result.paths["config"] = run_config.write(
        out / CONFIG_NAME, header=run_header(run_config["files"], run_config.not_written))
    summary = result.summary
    summary.timings_s = {**prog.timings, "total": time.perf_counter() - t_start}
    summary.files = {key: p.name for key, p in result.paths.items()}
    summary.files["summary"] = "summary.json"
    if figures is not None:
        summary.files["report"] = "report.html"
        result.paths["report"] = report_pkg.write_html(result, out / "report.html",
                                                       prepared=page)
    result.paths["summary"] = io.write_json(summary.to_dict(), out / "summary.json")


def _input_info(loaded: Any, data: steps.Split, lines: list[str]) -> InputInfo:
    signal = loaded.signal
    return InputInfo(
        source=loaded.source, energy_range_keV=loaded.energy_range_keV,
        energy_range_reason=loaded.energy_range_reason,
        full_energy_range_keV=loaded.full_energy_range_keV,
        beam_energy_keV=loaded.beam_energy_keV, signal_type=loaded.signal_type,
        shape=[*data.image_shape, int(signal.axes_manager.signal_axes[0].size)],
        total_counts=data.total, counts_per_pixel=data.counts_per_pixel,
        elements=list(signal.metadata.get_item("Sample.elements", []) or []),
        xray_lines_mapped=lines,
    )


def _parameters(model: Any, k: int, b: int, selection: ModelChoice | None, seed: int | None,
                iterations: tuple[int, int], smoothing: Any, n_boot: int) -> Parameters:
    return Parameters(
        n_components=k,
        n_components_choice=AUTO if selection and len(selection.components) > 1 else "given",
        bin_factor=b,
        bin_factor_choice=AUTO if selection and len(selection.bins) > 1 else "given",
        seed=seed, init=model.init, stage2_spectra=model.stage2_spectra,
        max_iter=iterations[0], max_iter_full=iterations[1], tol=model.tol,
        estimator=type(model).__name__,
        vertex_moved=model.vertex_moved_.tolist() if model.spectra == "pure" else None,
        vertex_lines=(model.vertex_steps_.any(axis=1).tolist()
                      if model.line_physics_ is not None else None),
        line_elements=None if model.line_physics_ is None else list(model.line_physics_[1]),
        smoothing=smoothing, n_boot=n_boot, integration_windows_fwhm=INTEGRATION_WINDOWS,
        pca="HyperSpy decomposition(normalize_poissonian_noise=True, algorithm='SVD', "
        f"svd_solver='randomized', output_dimension={PCA_DIMENSION}, navigation_mask=None)"
        f", get_decomposition_model({k}), computed on the sparse counts "
        "(psnmf.baselines.pca_factors)",
    )


def _fit_info(model: Any) -> FitInfo:
    k = int(model.spectra_.shape[0])
    return FitInfo(
        n_iter=dict(model.n_iter_), converged=dict(model.converged_),
        loss={key: np.asarray(v, dtype=float) for key, v in model.loss_.items()},
        component_pixel_fraction=np.nanmean(model.maps_.reshape(-1, k), axis=0),
    )


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "auto"


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1; the error names ``name`` and the 'auto' alternative."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer or 'auto', got {value!r}.") from None
    if number < 1:
        raise ValueError(f"{name} must be >= 1, got {number}.")
    return number


def format_summary(result: UnmixResult) -> str:
    """The closing summary printed by ``psnmf unmix``."""
    s = result.summary
    inp, par, dev = s.input, s.parameters, result.deviance
    src = inp.source.get("file") or "signal"
    lo, hi = inp.energy_range_keV
    lines = [
        f"psnmf unmix: {src}",
        f"  data        {inp.shape[0]} x {inp.shape[1]} pixels x {inp.shape[2]} "
        f"channels ({lo:.3g} to {hi:.3g} keV), {inp.counts_per_pixel:.3g} counts/pixel, "
        f"elements {', '.join(inp.elements) or 'none'}",
        f"  model       k = {par.n_components} components ({par.n_components_choice}), "
        f"bin factor b = {par.bin_factor} ({par.bin_factor_choice}), seed {par.seed}",
        "  components  mean abundance " + ", ".join(
            f"#{i}: {f:.2f}" for i, f in enumerate(s.fit.component_pixel_fraction)),
    ]
    if par.vertex_moved is not None:
        lines.append("  spectra     pure-pixel vertex moved for " + (
            ", ".join(f"#{i}" for i, m in enumerate(par.vertex_moved) if m)
            or "none (no pure cluster)"))
    if par.vertex_lines is not None:
        lines.append("  spectra     extrapolated by element lines for " + (
            ", ".join(f"#{i}" for i, m in enumerate(par.vertex_lines) if m)
            or "none (no never-pure vertex with a supported step)"))
    if s.smoothing.penalty:
        how = AUTO if s.smoothing.chosen else "given"
        lines.append(f"  maps        total-variation weight {s.smoothing.relative:.3g} x "
                     f"counts/pixel ({how})")
    if s.composition:
        lines.append(s.composition.to_text(indent="  "))
    pca = "n/a" if dev.pca is None else f"{dev.pca:.4f}"
    lines.append(f"  held-out Poisson deviance per count (lower is better): raw {dev.raw:.4f} "
                 f"| PCA {pca} | PSNMF {dev.psnmf:.4f}")
    if s.residuals is not None:
        lines.append(f"  residuals   {s.residuals['message']}")
    if result.selection is not None:
        lines.append("  search      " + _search_line(result.selection))
    lines.append(f"  time        {s.timings_s.get('total', float('nan')):.1f} s")
    lines += [f"  warning     {note}" for note in result.warnings]
    if result.paths:
        lines.append(f"  results     {Path(result.paths['summary']).parent}/")
        if "report" in result.paths:
            lines.append(f"  report      {result.paths['report']}")
        lines.append("  files       " + ", ".join(
            sorted(p.name for key, p in result.paths.items() if key != "report")))
    return "\n".join(lines)


def _search_line(choice: ModelChoice) -> str:
    """``N candidates (n_k for k, n_b for b), best b, k``."""
    n_k = len(choice.k_search.trials) if choice.k_search is not None else 0
    n_b = len(choice.b_search.trials)
    parts = f" ({n_k} for k, {n_b} for b)" if n_k else ""
    return (f"{n_k + n_b} candidates{parts}, best b = {choice.bin_factor}, "
            f"k = {choice.n_components} (deviance {choice.best.deviance:.4f})")
