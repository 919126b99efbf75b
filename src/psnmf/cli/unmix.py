"""``psnmf unmix``: read an EDX file, unmix and denoise it, write results and a report."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from psnmf.cli._args import (
    PIPELINE_MODULES,
    add_bins,
    add_common,
    auto_int,
    default_output,
    element_list,
    folder_changes,
    replicates,
    report_error,
    smoothing,
    thickness,
    valence,
)

EXAMPLES = """\
examples:
  psnmf unmix sample.bcf                          # everything automatic -> sample_psnmf/
  psnmf unmix sample.emd -k 3 --bin 8 -o results  # given k and b
  psnmf unmix sample.bcf --bin auto --bins 2,4,8  # b chosen by held-out deviance
  psnmf unmix sample.pts --energy-range 0.3,12 --elements Fe,Cr,Ni,O
  psnmf unmix sample.spd --seed 1 --overwrite --quiet
  psnmf unmix sample.bcf --write-denoised         # also the dense denoised cubes
  psnmf unmix sample.bcf --thickness 80,20 --exclude-elements Cu --k-factors k.csv
  psnmf unmix oxide.bcf --thickness 80,40 --valence Fe=3 \
      --detector-window-known   # 80 +- 40 nm refined by the charge balance (default)
  psnmf unmix sample.bcf -k 3 --fix-spectrum 0=olivine.msa --forbid 1=Fe,Mg \
      --roi 2=grain.png --mask-pixels vacuum.npy   # priors (component 0 is the first)
  psnmf unmix a.bcf b.emd c.hspy -o OUT           # OUT/a/, OUT/b/, OUT/c/, OUT/index.html
  psnmf unmix --config run.toml                   # every option from a TOML file
  psnmf unmix --config run.toml -k 4 x.bcf        # ... with -k and the file overridden
  psnmf unmix --config sample_psnmf/config.toml   # the same run again

Reads every EDX spectrum image RosettaSciIO reads (Bruker .bcf, Velox .emd, JEOL
.pts, EDAX .spd, .hspy, ...) and plain .npz. Writes to the output folder the
factorisation: component_spectra.hspy, component_maps.hspy, count_scale.hspy (the
PSNMF-denoised cube is psnmf.hyperspy.denoised_from_factors(spectra, maps, scale)),
psnmf_decomposition.hspy and pca_decomposition.hspy (in HyperSpy:
hs.load(path, lazy=True).get_decomposition_model() is the denoised cube); with
--write-denoised also denoised.hspy and pca_denoised.hspy (float32, compressed). And
component_spectra/maps.png, element_maps.png (raw vs PCA vs PSNMF), scree.png,
deviance.png, sweep.png, config.toml (every parameter of the run), summary.json and
report.html (opens offline; shows the PNG files beside it).

Several files: one results folder each in OUT (-o, required), named by the file's
stem (files sharing a stem: <stem>_<extension>, then numbered), and OUT/index.html
and OUT/index.json listing each file's status, k, b, held-out deviances, time and
links. A failing file does not stop the others; the exit code is 1 when any failed.

--config FILE: a TOML file with any of the keys below (those of
psnmf.pipeline.unmix; the quantification's in a [quantify] table). Options given
on the command line override it; FILEs given replace its 'files'. Paths in the file
are relative to its folder. Unknown keys and bad values are refused. Keys:
  files = ["a.bcf"]   n_components = "auto"   bin_factor = "auto"   bins = [4, 8, 16]
  components = [2, 3, 4, 5, 6]   energy_range = "auto" (or [0.2, 15.0])
  elements = "auto" (or ["Fe", "O"])   seed = 0   max_iter = 1000   max_iter_full = 200
  smoothing = "auto"   vertex = true   never_pure = "keep"   n_boot = 20
  write_denoised = false
  report = true   output = "auto"   overwrite = false   quiet = false   verbose = false
  [quantify] method = "CL"   k_factors = "theoretical"   thickness = "auto"
  thickness_sigma = "none"   density = "auto"   thickness_from = "auto"
  valences = {} (or { Fe = 3, C = -4 })   charge_balance_sd = 0.01
  exclude_elements = []   detection_sigma = 3.0   detector_window_known = false
  beam_current, live_time, probe_area, solid_angle = "none"   takeoff_angle = "auto"
(psnmf.pipeline.config.describe() says what each is.) The same in Python:
psnmf.pipeline.unmix(path, output_dir=...), psnmf.pipeline.unmix_files(files, OUT).
"""

#: The options of ``psnmf unmix`` (argparse destinations) and the configuration key each
#: sets (``--thickness T,SIGMA`` sets two and the repeated ``--valence EL=V`` one table:
#: both are handled apart).
OPTION_KEYS = {
    "files": "files", "components": "n_components", "bin_factor": "bin_factor",
    "bins": "bins", "max_iter": "max_iter", "max_iter_full": "max_iter_full",
    "smoothing": "smoothing", "vertex": "vertex", "never_pure": "never_pure",
    "write_denoised": "write_denoised",
    "bootstrap": "n_boot", "energy_range": "energy_range", "elements": "elements",
    "output": "output", "seed": "seed", "overwrite": "overwrite", "quiet": "quiet",
    "verbose": "verbose", "method": "quantify.method", "k_factors": "quantify.k_factors",
    "density": "quantify.density", "exclude_elements": "quantify.exclude_elements",
    "thickness_from": "quantify.thickness_from",
    "charge_balance_sd": "quantify.charge_balance_sd",
    "detector_window_known": "quantify.detector_window_known",
    "beam_current": "quantify.beam_current", "live_time": "quantify.live_time",
    "probe_area": "quantify.probe_area", "solid_angle": "quantify.solid_angle",
    "mask_pixels": "priors.pixel_mask",
}
#: The repeatable prior options (``J=VALUE``), by their key in the ``[priors]`` table.
PRIOR_OPTIONS = {"fix_spectrum": "fixed_spectra", "forbid": "forbid", "roi": "rois"}


#: The value of an option left out (``None`` is a value: ``--smoothing none``).
NOT_GIVEN: Any = type("NotGiven", (), {"__repr__": lambda self: "NOT_GIVEN"})()


def register(subparsers: Any) -> None:
    """Add the ``unmix`` subcommand."""
    p = subparsers.add_parser(
        "unmix",
        help="unmix and denoise EDX spectrum images; results and an HTML report",
        description=(
            "Read an EDX spectrum image, choose the number of components and the bin "
            "factor by held-out Poisson deviance (unless given), run PSNMF, compare it with "
            "HyperSpy's PCA denoising, and write the denoised data, component spectra and "
            "maps, elemental maps, config.toml, summary.json and an HTML report "
            "(report.html, with the PNG figures beside it). Several files: one results "
            "folder each and an index page."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="TOML", default=None,
                   help="start from a configuration file (e.g. a run's config.toml); the "
                   "options given here override it")
    p.add_argument(
        "-k", "--components", type=auto_int, metavar="K",
        help="number of components, or 'auto' (default: the best of 2-6 by held-out deviance)",
    )
    p.add_argument(
        "-b", "--bin", dest="bin_factor", type=auto_int, metavar="B",
        help="bin factor, or 'auto' (default: the best of --bins by held-out deviance)",
    )
    add_bins(p, "candidate bin factors for --bin auto")
    p.add_argument("--max-iter", type=int, metavar="N",
                   help="iteration cap of the binned stage (default 1000)")
    p.add_argument("--max-iter-full", type=int, metavar="N",
                   help="iteration cap of the full-resolution stage (default 200)")
    p.add_argument("--smoothing", type=smoothing, metavar="W",
                   help="total-variation weight of the maps relative to the counts per "
                   "pixel, 'auto' (default: chosen by held-out deviance) or 'none'")
    p.add_argument("--vertex", action=argparse.BooleanOptionalAction, default=None,
                   help="move each binned-stage spectrum to its pure-pixel cluster (default); "
                   "--no-vertex keeps the binned-stage NMF spectra (the paper's PSNMF)")
    p.add_argument("--never-pure", choices=["keep", "lines"], default=None,
                   help="spectra of phases without pure pixels (particles on a support, "
                   "nanoclusters in a matrix): 'keep' NMF's (default) or 'lines', "
                   "extrapolated along the element lines of the file's (or --elements') "
                   "elements where that is evidence of a missing element")
    p.add_argument("--write-denoised", action=argparse.BooleanOptionalAction, default=None,
                   help="also write the dense denoised cubes denoised.hspy and "
                   "pca_denoised.hspy (float32, chunked, compressed); by default only the "
                   "factors they are rebuilt from")
    p.add_argument("--bootstrap", type=replicates, metavar="N",
                   help="bootstrap replicates for the ± of the compositions (0: none; "
                   "default 20)")
    q = p.add_argument_group("quantification of the components")
    q.add_argument("--method", choices=("CL", "zeta", "cross_section"),
                   help="Cliff-Lorimer (default), zeta factors or cross-sections; the last "
                   "two need --beam-current and --live-time (the whole map's)")
    q.add_argument("--k-factors", metavar="FILE",
                   help="k-factor file (CSV element,k[,sigma] or JSON, see "
                   "psnmf.quantify.read_k_factors); default: theoretical k-factors with "
                   "their stated uncertainty")
    q.add_argument("--thickness", type=thickness, metavar="T[,SIGMA]",
                   help="specimen thickness in nm for the absorption correction, with its "
                   "standard deviation for the error budget, e.g. 80,20 (default: the "
                   "file's, else a thin film)")
    q.add_argument("--density", type=float, metavar="RHO",
                   help="specimen density in g/cm^3 for the absorption correction")
    q.add_argument("--thickness-from", choices=("auto", "electroneutrality", "none"),
                   help="'auto' (default): where a thickness is in effect, each ionic "
                   "component's film mass thickness is refined by the one its own spectrum "
                   "gives where the absorption-corrected composition is neutral (oxides, "
                   "nitrides, halides; Van Cappellen 1990), by inverse variance in log mass "
                   "thickness with the thickness given and its sd as a log-normal prior "
                   "(SIGMA of --thickness T,SIGMA, and the spread of the sample's densities "
                   "unless --density is given); with no sd, or where the two disagree by "
                   "over 3 sd of log mass thickness, the thickness given is used (the "
                   "estimate noted). 'electroneutrality': the estimate also without an sd "
                   "(it replaces T) or without a thickness. 'none': the thickness given alone")
    q.add_argument("--valence", action="append", type=valence, default=None,
                   metavar="EL=V", help="valence of an element for --thickness-from "
                   "(anions negative, e.g. Fe=3, C=-4); repeat for several (default: the "
                   "common ones, psnmf.quantify.electroneutrality.VALENCES, multivalent "
                   "elements with half their range as an sd)")
    q.add_argument("--charge-balance-sd", type=float, metavar="SD",
                   help="relative sd of a phase's charge balance for --thickness-from "
                   "(default 0.01; 0 for an exactly stoichiometric phase)")
    q.add_argument("--exclude-elements", type=element_list, metavar="EL,...",
                   help="elements fitted but left out of the totals (grid Cu, detector Si)")
    q.add_argument("--beam-current", type=float, metavar="NA",
                   help="beam current in nA (zeta and cross-section methods)")
    q.add_argument("--live-time", type=float, metavar="S",
                   help="live time of the whole map in s (zeta and cross-section methods)")
    q.add_argument("--probe-area", type=float, metavar="NM2",
                   help="area of the whole map in nm^2 (cross-section method)")
    q.add_argument("--solid-angle", type=float, metavar="SR",
                   help="detector solid angle in sr, for the model's zeta factors or "
                   "cross-sections")
    q.add_argument("--detector-window-known", action=argparse.BooleanOptionalAction,
                   default=None,
                   help="the model's detector window (the file's metadata) is the "
                   "detector's: the theoretical k-factor sd leaves out the spread over "
                   "the windows a detector may have (O K: 45%% -> 15%%); default off")
    r = p.add_argument_group(
        "priors (component indices start at 0; each option may be repeated)")
    r.add_argument("--fix-spectrum", action="append", type=_component_value, default=None,
                   metavar="J=FILE", help="fix component J's spectrum to a reference "
                   "(.hspy, .msa, or .csv with energy in keV and counts), on the data's "
                   "energy axis or one it can be interpolated from")
    r.add_argument("--forbid", action="append", type=_component_value, default=None,
                   metavar="J=EL,...", help="elements absent from component J: its "
                   "spectrum holds none of their lines (a smooth continuum in their "
                   "windows)")
    r.add_argument("--roi", action="append", type=_component_value, default=None,
                   metavar="J=MASK", help="start component J from the summed spectrum of a "
                   "region (.npy, .png or .tif boolean image of the map's shape)")
    r.add_argument("--mask-pixels", metavar="MASK",
                   help="pixels left out of the fit (.npy, .png or .tif, non-zero = masked "
                   "out: vacuum, contamination, damage); their maps are NaN")
    add_common(p, several=True)
    # not given: the value then comes from --config, else the default
    p.set_defaults(func=run, preload=PIPELINE_MODULES,
                   **{dest: NOT_GIVEN for dest in OPTION_KEYS if dest != "files"})


def _component_value(text: str) -> tuple[int, str]:
    """``'J=VALUE'`` as ``(J, VALUE)``; an argparse error naming the form otherwise."""
    key, sep, value = text.partition("=")
    if not sep or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not COMPONENT=VALUE (e.g. 0=ref.msa)")
    try:
        j = int(key)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{key!r} in {text!r} is not a component index (0 is the first)") from None
    if j < 0:
        raise argparse.ArgumentTypeError(f"component {j} in {text!r} is negative")
    return j, value.strip()


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys set by the options given (dotted key -> value as
    :func:`psnmf.pipeline.unmix` takes it); options left out are absent."""
    out = {key: getattr(args, dest) for dest, key in OPTION_KEYS.items()
           if getattr(args, dest, NOT_GIVEN) is not NOT_GIVEN}
    if not out.get("files"):
        out.pop("files", None)
    if getattr(args, "thickness", NOT_GIVEN) not in (None, NOT_GIVEN):
        out["quantify.thickness"], sigma = args.thickness
        if sigma is not None:
            out["quantify.thickness_sigma"] = sigma
    given = getattr(args, "valence", None) or []
    if given:
        valences: dict[str, float] = {}
        for el, v in given:
            if el in valences and valences[el] != v:
                raise ValueError(f"--valence gives {el} twice ({valences[el]:g} and {v:g}); "
                                 "give each element once.")
            valences[el] = v
        out["quantify.valences"] = valences
    for dest, key in PRIOR_OPTIONS.items():
        pairs = getattr(args, dest, None) or []
        if pairs:
            out[f"priors.{key}"] = _by_component(dest, pairs)
    return out


def _by_component(dest: str, pairs: list[tuple[int, str]]) -> dict[int, Any]:
    """``{J: value}`` of a repeated ``J=VALUE`` option (``--forbid``: element lists, which
    may repeat a component; the others: one value per component)."""
    out: dict[int, Any] = {}
    for j, value in pairs:
        if dest == "forbid":
            out.setdefault(j, []).extend(element_list(value))
        elif j in out:
            raise ValueError(f"--{dest.replace('_', '-')} gives component {j} twice; give "
                             "each component once.")
        else:
            out[j] = value
    return out


def configuration(args: argparse.Namespace) -> Any:
    """The :class:`psnmf.pipeline.config.RunConfig` of a command line: the defaults, the
    ``--config`` file, then the options given."""
    from psnmf.pipeline.config import RunConfig

    cfg = RunConfig.from_file(args.config) if getattr(args, "config", None) else RunConfig()
    return cfg.updated(cli_overrides(args))


def quantify_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``quantify_options`` of :func:`psnmf.pipeline.unmix` that the options given set
    (empty when none; ``psnmf sweep --unmix`` has none of them)."""
    from psnmf.pipeline.config import RunConfig

    given = {k: v for k, v in cli_overrides(args).items() if k.startswith("quantify.")}
    quant = RunConfig().updated(given).unmix_kwargs()["quantify_options"]
    return quant if "quantify.method" in given else {
        k: v for k, v in quant.items() if k != "method"}


def run(args: argparse.Namespace) -> int:
    """Run ``psnmf unmix``; returns the exit code (0; 1 when a file of several failed; 2
    for an error before any work, or a single file's)."""
    from psnmf import __version__
    from psnmf.pipeline.config import ConfigError

    try:
        cfg = configuration(args)
    except (ConfigError, ValueError, argparse.ArgumentTypeError) as exc:
        return report_error("psnmf unmix", exc)
    if cfg["psnmf_version"] != __version__ and args.config:
        print(f"psnmf: note: {args.config} was written by psnmf {cfg['psnmf_version']}; this "
              f"is psnmf {__version__} (results may differ).", file=sys.stderr)
    files = cfg["files"]
    if not files:
        return report_error("psnmf unmix", ValueError(
            "no input file: give FILE(s) on the command line, or files = [...] in the "
            "--config file"))
    if len(files) > 1:
        return _run_batch(files, cfg)
    out = Path(cfg["output"]) if cfg["output"] != "auto" else default_output(files[0], "psnmf")
    return _run_one(files[0], out, cfg)


def _run_one(file: str, out: Path, cfg: Any) -> int:
    from psnmf import pipeline
    from psnmf._validation import InsufficientMemoryError
    from psnmf.io import PsnmfIOError

    quiet, verbose = cfg["quiet"], cfg["verbose"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            result = pipeline.unmix(file, output_dir=out, progress=not quiet,
                                    **cfg.unmix_kwargs())
        except (PsnmfIOError, ValueError, OSError, InsufficientMemoryError) as exc:
            return report_error("psnmf unmix", exc)
    _print_other_warnings(caught, result.warnings, quiet=quiet, verbose=verbose)
    if not quiet:
        print(pipeline.format_summary(result))
        for line in folder_changes(out):
            print(line)
    return 0


def _run_batch(files: list[str], cfg: Any) -> int:
    from psnmf import pipeline
    from psnmf.io import PsnmfIOError

    if cfg["output"] == "auto":
        return report_error("psnmf unmix", ValueError(
            f"{len(files)} files need an output folder for their results folders and "
            "index.html: give -o OUT (or output = \"OUT\" in the --config file)"))
    quiet, verbose = cfg["quiet"], cfg["verbose"]
    kwargs = cfg.unmix_kwargs()
    overwrite = kwargs.pop("overwrite")

    def done(entry: Any, result: Any) -> None:
        if result is not None:
            _print_other_warnings(caught, result.warnings, quiet=quiet, verbose=verbose)
            if not quiet:
                print(pipeline.format_summary(result) + "\n")
        else:
            print(f"psnmf unmix: {entry.file}: failed: {entry.error}\n", file=sys.stderr)
        caught.clear()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            batch = pipeline.unmix_files(files, cfg["output"], overwrite=overwrite,
                                         progress=not quiet, on_done=done, **kwargs)
        except (PsnmfIOError, ValueError, OSError) as exc:
            return report_error("psnmf unmix", exc)
    lines = batch.summary_lines()
    if not quiet or batch.failed:
        print("\n".join(lines), file=sys.stdout if not batch.failed else sys.stderr)
    return 1 if batch.failed else 0


def _print_other_warnings(caught: list[Any], shown: list[str], *, quiet: bool,
                          verbose: bool) -> None:
    """Warnings not already in the summary go to stderr (in quiet mode: ours only)."""
    seen = set(shown) if not quiet else set()
    for w in caught:
        text = str(w.message)
        if text in seen:
            continue
        seen.add(text)
        if verbose or issubclass(w.category, UserWarning):
            print(f"psnmf: warning: {text}", file=sys.stderr)
