"""Error bars on PSNMF spectra and compositions by parametric bootstrap.

The fitted binned-stage model ``M = n A S`` is taken as the truth, new binned counts are
drawn from ``Poisson(M)``, and the binned stage is refitted. Only the binned stage is
resampled (it alone determines the spectra), which keeps a replicate cheap.

Every replicate runs the estimator's own binned stage
(:func:`psnmf.engine.two_stage.fit_binned` with the model's parameters and a fresh seed):
its iteration settings, its stopping rule and its pure-pixel correction. Its components
are matched to the fitted ones (:func:`psnmf.metrics.match_components`). With
``warm_start=False`` a replicate also starts as the estimator does (its ``init``), which
explores NMF's flat directions the way the estimator does; ``warm_start=True`` starts it
from the fitted NMF factors and runs it to the same convergence, which skips the
initialisation and the first few hundred iterations. Measured with
``benchmarks/coverage.py`` (60 x 60, 8 seeds, 20 replicates, 'bias' intervals), both
starts give the same coverage: mantle 'medium' 135/144 (cold) and 136/144 (warm), 'low'
132/144 and 131/144, half-widths equal, for 38-58 % less CPU per bootstrap.

Vertices moved at a finer scale
-------------------------------
With ``vertex_scales='multi'`` a vertex the binned stage kept may have moved to a pure
cluster at ``b / 2``, ..., full resolution (:func:`psnmf.engine.two_stage.refine_vertices`).
Every replicate then replays those moves (:mod:`psnmf.engine.scale_replay`): the counts of
the pixels within reach of the cluster at each finer scale are drawn from the fitted model
(the cluster's members pure in the moved vertex), their abundances solved, and the fit's
cluster tests and move applied, coarsest scale first; a replicate whose cluster fails the
tests keeps its NMF vertex, as the fit would have. The move starts from the fit's NMF
vertex plus the replicate's NMF error (see :func:`_shifted_start`). On the ODS steel's
M23C6 (96 x 96, 'medium', moved at b = 2), the replicates' sd is 3.4e-3 (norm over
channels) against 3.8e-3 for the fit over 8 noise seeds of the simulation. Only the
vertices the fit moved at a finer scale are replayed there. Measured by
``benchmarks/coverage.py`` ('bias' intervals, 12 replicates), 'multi' against 'binned' on
the same data: mantle and eutectic 'medium', 60 x 60, 4 seeds, both physics (5 of the 16
fits move a vertex at b = 2), full budget 152/152 for both, bootstrap alone 94/152 and
95/152, CPU per bootstrap 8.0-8.5 s against 5.8 s on the mantle; the ODS steel at 96 x 96,
4 seeds, full budget 31/32 and 30/32 at 'medium' (the carbide moved at b = 2 in every
seed), 30/32 for both at 'low'.

Vertices extrapolated by their element lines
--------------------------------------------
With ``never_pure`` 'lines' or 'auto' (given the sample's elements and EDX model; the
default 'keep' moves nothing), a vertex without a pure cluster may have been moved
outwards along its element lines (:func:`psnmf.engine.two_stage.extrapolate_never_pure`,
``vertex_steps_``). Every replicate then replays that extrapolation with the fit's
elements and EDX model (``line_physics_``) and the same rule
(:func:`psnmf.engine.line_vertices.extrapolate_vertices` and its tests): the vertices the
fit moved so, where the replicate's binned stage and finer scales found no pure cluster
for them, are extrapolated from the fit's NMF vertex plus the replicate's NMF error
(:func:`_shifted_start`, for the reason given there: the replicates' NMF vertex of a
never-pure phase lies deeper inside than the fit's, and extrapolated from it they ended
anywhere between the fit's NMF vertex and the phase), with the counts behind each vertex
that the fit used; where the replicate moved such a vertex to a pure cluster, it is tried
from that cluster's spectrum as a mixture plateau
(:func:`psnmf.engine.line_vertices.mixture_plateau`), as the fit tries its vertices at a
cluster (a never-pure oxide at half of every pixel, 64 x 64: tried so, all 8 replicates
lie 2.3-3.9 degrees from the estimate; not tried, 5 of 8 keep the 50/50 plateau, 47
degrees from it). A replicate whose step fails the tests keeps its vertex, as the fit
would have. The selection-debiased spectra are extrapolated the same way. A vertex the
fit kept is not tried (as for the finer scales). The replay is a few small linear
programmes per replicate, no measurable cost. Measured by ``benchmarks/coverage.py``
(``same`` physics, 96 x 96, 3 seeds, 12 replicates, full budget): on the samples whose
lines move a vertex, ODS steel (mixed_phase) and catalyst, 61/84 true compositions
covered with the vertices kept (``--never-pure keep``), 75/84 with them extrapolated and
replayed; the misses left are fits whose never-pure vertex the rule kept (mixed_phase
'medium', seed 0: Y2Ti2O7 with 27 at.% Fe), whose replicates do not describe the phase.
The replay cannot see a bias of the rule itself: the eutectic's Si lamellae at 60 x 60
(no pure cluster there) lose their 1 at.% Al to the extrapolation in the fit and in every
replicate alike (Si 100.00 +- 0.00), and the full budget covers 10/14 of its elements
where the kept vertices covered 14/14.

Where the bias comes from, and the selection-debiased spectra
-------------------------------------------------------------
Noise-free data give no error: the errors of the binned-stage spectra are caused by the
noise, and a bootstrap from the fitted model reproduces only part of that bias (its "true"
abundances already carry one draw of the noise, so its pure pixels are no longer pure).
Two mechanisms:

* vertices that the pure-pixel correction does not move keep NMF's too-wide simplex (an
  outward bias that the refits see, the bootstrap bias ``mean(replicates) - t``);
* vertices that it moves are the mean spectra of the purest binned pixels, *selected* on
  the same counts that are then averaged, so pixels whose noise points away from the other
  phases are favoured (a winner's curse). The pure clusters average every pixel within
  1.5 noise sd of their top, hundreds for a matrix, which keeps this small, but it is not
  zero for small clusters.

:func:`debiased_spectra` removes the selection by *data fission* (Poisson thinning,
Leiner, Duan, Wasserman & Ramdas, JASA 2023): the binned counts are split into two
independent Poisson halves ``X1 ~ Binomial(X, 1/2)``, ``X2 = X - X1``; the pure pixels are
selected on one half with the model's own rule
(:func:`psnmf.engine.pure_pixels.replay_vertex_correction`) and their abundances averaged
on the other (and vice versa, over ``n_splits`` random splits). The noise of the averaged
half is then independent of the selection.
A vertex moved at a finer scale is split the same way at that scale: its cluster is
selected on one half of the counts there and the fitted-model spectrum of the other half's
summed counts is taken (:func:`psnmf.engine.scale_replay.fission_rows`).

Intervals (``method=``)
-----------------------
``'bias'`` (default)
    Bias-aware: the smallest interval that contains the normal intervals
    ``c +- z sd`` of three estimates ``c`` of the composition: the estimate itself, the
    bootstrap bias-corrected estimate ``2 t - mean(replicates)``, and the
    selection-debiased estimate (:func:`debiased_spectra`, with the spread of its own
    bootstrap replicates). It covers the truth whenever one of the three is about
    unbiased, always contains the estimate, and reduces to ``t +- z sd`` when the bias
    corrections agree with the estimate. Measured by ``benchmarks/coverage.py`` (60 x 60,
    8 seeds, 20 replicates, mantle and eutectic at both presets, thin films): 93.8 % of the
    true compositions inside the nominal 95 % interval; 91.3 % on the mantle absorbed in a
    100 nm film, whose correction uses the sample's mean density for every component.
``'percentile'``
    ``[q_lo, q_hi]`` of the replicates.

The error budget
----------------
The replicates are quantified, so their spread already holds the counting noise of the
spectra and the spread of the NMF solution; it is the ``bootstrap`` sd. The estimate's
own quantification (:func:`psnmf.quantify.quantify` of each component spectrum with
the counts the component stands for, ``n @ A``) splits it: its Fisher-information sd
is the ``counting`` part and ``nmf = sqrt(max(bootstrap^2 - counting^2, 0))`` the rest.
Two parts are systematic, the same in every replicate, and are added from that
quantification: ``k_factors`` (Monte Carlo over log-normal k-factors of the stated
relative sd, :func:`psnmf.quantify.k_factor_spread`: theoretical k-factors carry
:func:`psnmf.quantify.theoretical_k_sd`, the emission part and the detector window's
spread) and ``thickness`` (when a thickness uncertainty is given, or when a component's
density is the mean of the sample's phase densities, whose spread it carries). The parts
are independent, so every interval centre's sd is
``sqrt(bootstrap^2 + k_factors^2 + thickness^2)``: a sum in quadrature rather than one
Monte Carlo over everything because the bootstrap has only 20-30 replicates, too few for
the tails of a joint distribution, while each part's sd is well determined on its own.
``systematic=False`` gives the bootstrap-only intervals, for comparison. Measured by
``benchmarks/coverage.py`` (60 x 60, 4 seeds, 12 replicates, elements >= 1 at.%, mantle
and eutectic at both presets): on data made by another physics (other ionisation
cross-sections and detector window, k-factors up to 24 % off) the bootstrap-only
intervals cover 53 of 152 true compositions, the full budget 152 of 152; on the model's
own data (exact k-factors) 144/152 and 152/152. Those numbers predate the detector
window's part of the theoretical k-factor sd, which widens O K's intervals (0.20 -> 0.45);
with it, spectra made by espm (``coverage.py --physics espm``, 60 x 60, 4 seeds) are
covered for 95/96 (thin film) and 96/96 (100 nm) of the mantle's elements.

Elements whose fitted intensity is below the detection limit in a component
(:func:`psnmf.quantify.quantify`, ``detection_sigma``) or excluded by the user get no
composition in that component; the replicates are quantified without them.

How many replicates
-------------------
Each replicate is quantified as it is drawn, and the bootstrap stops (``width_tol``, from
``min_boot`` replicates on) once another replicate would not move any interval: for every
quantified element of every component, the Monte Carlo error of the interval's edges
(:func:`edge_error`: the error of the bootstrap sd as it enters the half-width, and of the
bias-corrected centre) is at most a tenth of the half-width, or :data:`WIDTH_ATOL` at.%.
The replicates' sd enters the rule at its upper confidence bound
(:data:`SD_BOUND_CONFIDENCE`), because a sd from a few replicates may be far below the
truth. With theoretical k-factors their part dominates wherever the counts are high, and
the bootstrap part is then known well enough from a few replicates (from ``min_boot = 4``
on); where the bootstrap part dominates (low counts, or exact k-factors given), every
replicate is drawn. Measured by ``benchmarks/coverage.py --physics other`` (60 x 60, 4
seeds, at most 20 replicates, theoretical k-factors): the rule stopped at 11.0 replicates
on average on the mantle 'medium' maps and at 16.2 on the eutectic 'medium' ones, drew 20
at 'low', and the full budget covered 152 of 152 true compositions. On the 180 x 180
mantle map of ``benchmarks/unmix_scale.py`` (147 counts/pixel) it stops at 4. (A plug-in
sd with at least 8 replicates stopped at 8 on the mantle and 13-19 on the eutectic
'medium' maps, and covered 303 of 304 with both physics.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import chi2, norm

from psnmf.engine import _kernels as kernels
from psnmf.engine.binning import bin_counts
from psnmf.engine.line_vertices import (
    elements_of_lines,
    extrapolate_vertices,
    line_basis,
    step_transform,
)
from psnmf.engine.poisson_nmf import poisson_draw, solve_abundances
from psnmf.engine.priors import SpectralPriors
from psnmf.engine.pure_pixels import replay_vertex_correction
from psnmf.engine.scale_replay import (
    ScaleReach,
    fission_rows,
    replay_finer_scales,
    scale_reaches,
)
from psnmf.engine.two_stage import binned_kwargs, fit_binned
from psnmf.metrics import match_components

#: Replicates whose mean NMF spectra centre the finer-scale replays (:func:`bootstrap`,
#: :func:`_shifted_start`): the centre's error, shared by every replicate, is the
#: replicates' sd over its square root.
CENTRE_REPLICATES = 8

#: Most bootstrap replicates fitted at once (:func:`bootstrap`): each holds its own counts
#: and NMF buffers, so more would raise the run's peak memory (which the memory estimate of
#: :mod:`psnmf.pipeline.memory` was fitted with) for little gain on few cores.
BOOT_THREADS = 2

__all__ = [
    "BootstrapResult",
    "bootstrap",
    "composition_intervals",
    "coverage",
    "debiased_spectra",
    "INTERVAL_METHODS",
    "BUDGET_PARTS",
    "edge_error",
    "format_composition_rows",
    "sd_upper_factor",
    "SD_BOUND_CONFIDENCE",
    "WIDTH_ATOL",
]

INTERVAL_METHODS = ("bias", "percentile")


@dataclass
class BootstrapResult:
    """Bootstrap replicates of the component spectra (and compositions).

    Attributes
    ----------
    spectra : ndarray (k, channels)
        The fitted spectra.
    replicates : ndarray (n_boot, k, channels)
        Refitted spectra (in the order of ``spectra``).
    spectra_std : ndarray (k, channels)
        Standard deviation over replicates.
    compositions : list of dict or None
        Per component, element -> at.% of the fitted spectra.
    composition_replicates : list of list of dict or None
        Per replicate, per component.
    elements : list of str
    debiased : ndarray (k, channels) or None
        Selection-debiased spectra (:func:`debiased_spectra`); ``None`` for a model with
        ``spectra='nmf'`` (no pure-pixel correction) or non-integer counts.
    debiased_replicates : ndarray (n_boot, k, channels) or None
        The same computed on every replicate.
    debiased_compositions, debiased_composition_replicates : as for the estimate.
    quantifications : list of Quantification or None
        The estimate's quantification per component, with the counts it stands for:
        the error budget, detection limits, exclusions and overlaps.
    """

    spectra: np.ndarray
    replicates: np.ndarray
    spectra_std: np.ndarray
    compositions: list[dict[str, float]] | None = None
    composition_replicates: list[list[dict[str, float]]] | None = None
    elements: list[str] = field(default_factory=list)
    debiased: np.ndarray | None = None
    debiased_replicates: np.ndarray | None = None
    debiased_compositions: list[dict[str, float]] | None = None
    debiased_composition_replicates: list[list[dict[str, float]]] | None = None
    quantifications: list[Any] | None = None

    def composition_rows(
        self, names: list[str] | None = None, level: float = 0.95, method: str = "bias",
        systematic: bool = True,
    ) -> list[dict[str, Any]]:
        """One row per component and element, for reports.

        Parameters
        ----------
        names : component names (default ``"#0"``, ``"#1"``...).
        level, method, systematic : as in :func:`composition_intervals`.

        Returns
        -------
        list of dict
            Keys ``component``, ``element``, ``status`` (``"quantified"``,
            ``"below_detection_limit"`` or ``"excluded"``), ``at_percent`` (the
            estimate; None unless quantified), ``sd`` (total standard deviation: the
            bootstrap and the systematic parts in quadrature), ``low``, ``high`` (the
            interval), ``budget`` (part -> sd in at.%: ``counting``, ``nmf``,
            ``bootstrap``, ``k_factors``, ``thickness``), ``detection_limit`` (at.%,
            for an element below it), ``overlaps`` (elements whose fitted lines
            overlap this one's, with the correlation) and ``debiased``
            (selection-debiased at.%, or ``None``). Print as
            ``f"{at_percent:.2f} +- {sd:.2f} [{low:.2f}, {high:.2f}]"``.
        """
        if self.compositions is None:
            raise ValueError("no compositions: pass elements= to bootstrap().")
        if names is not None and len(names) != len(self.compositions):
            raise ValueError(
                f"names has {len(names)} entries for {len(self.compositions)} components."
            )
        iv = composition_intervals(self, level, method, systematic)
        budgets = self.error_budget(systematic)
        rows = []
        for j, comp in enumerate(self.compositions):
            q = None if self.quantifications is None else self.quantifications[j]
            for el in self.elements:
                row: dict[str, Any] = {
                    "component": names[j] if names else f"#{j}", "element": el,
                    "status": "quantified", "at_percent": None, "sd": None, "low": None,
                    "high": None, "budget": {}, "detection_limit": None, "overlaps": {},
                    "debiased": None,
                }
                if q is not None and el in q.excluded:
                    row["status"] = "excluded"
                elif q is not None and el in q.below_detection:
                    row["status"] = "below_detection_limit"
                    row["detection_limit"] = q.below_detection[el]
                else:
                    lo, hi, _ = iv[j][el]
                    part = budgets[j][el]
                    row.update(at_percent=float(comp.get(el, 0.0)), low=lo, high=hi,
                               budget=part, sd=_quadrature(part, systematic))
                    if self.debiased_compositions is not None:
                        row["debiased"] = float(self.debiased_compositions[j].get(el, 0.0))
                if q is not None:
                    row["overlaps"] = {b if a == el else a: r for a, b, r in q.unresolved
                                       if el in (a, b)}
                rows.append(row)
        return rows

    def error_budget(self, systematic: bool = True) -> list[dict[str, dict[str, float]]]:
        """Per component, element -> part -> sd in at.% (quantified elements only).

        Parts: ``bootstrap`` (spread of the replicates), its split into ``counting``
        (Fisher information of the component's counts) and ``nmf`` (the rest), and
        with ``systematic`` the ``k_factors`` and ``thickness`` parts of the estimate's
        quantification (see the module docstring).
        """
        if self.compositions is None or self.composition_replicates is None:
            raise ValueError("no compositions: pass elements= to bootstrap().")
        out = []
        for j, comp in enumerate(self.compositions):
            q = None if self.quantifications is None else self.quantifications[j]
            parts_q = {} if q is None else q.uncertainty_budget
            d = {}
            for el in comp:
                v = np.array([rep[j].get(el, 0.0) for rep in self.composition_replicates])
                boot = float(v.std(ddof=1))
                part = {"bootstrap": boot}
                if "counting" in parts_q:
                    c = float(parts_q["counting"].get(el, 0.0))
                    part["counting"] = c
                    part["nmf"] = float(math.sqrt(max(boot**2 - c**2, 0.0)))
                if systematic:
                    for name in ("k_factors", "thickness"):
                        if name in parts_q:
                            part[name] = float(parts_q[name].get(el, 0.0))
                d[el] = part
            out.append(d)
        return out

    def composition_table(self, names: list[str] | None = None, level: float = 0.95,
                          method: str = "bias", systematic: bool = True) -> str:
        """Plain-text table: component, element, at.% +- total sd, interval, budget."""
        rows = self.composition_rows(names, level, method, systematic)
        return format_composition_rows(rows, level, method)


def _quadrature(part: dict[str, float], systematic: bool = True) -> float:
    """Total sd of an error budget: bootstrap and the systematic parts in quadrature."""
    names = ("bootstrap", "k_factors", "thickness") if systematic else ("bootstrap",)
    return float(math.sqrt(sum(part.get(n, 0.0) ** 2 for n in names)))


#: Budget parts in the order the tables show them.
BUDGET_PARTS = ("counting", "nmf", "k_factors", "thickness")


def format_composition_rows(rows: list[dict[str, Any]], level: float = 0.95,
                            method: str = "bias") -> str:
    """Rows of :meth:`BootstrapResult.composition_rows` as a plain-text table.

    One line per component and element: at.% +- total sd, the interval and each part of
    the error budget (sd in at.%); elements below the detection limit show ``< limit``,
    excluded ones ``excluded``, overlapping families are named.
    """
    head = (f"{'component':10s} {'element':7s} {'at.%':>7s} {'+-sd':>6s}  "
            f"{round(level * 100)}% interval ({method})  "
            + " ".join(f"{p:>9s}" for p in BUDGET_PARTS))
    lines = [head]
    for r in rows:
        start = f"{r['component']:10s} {r['element']:7s}"
        if r["status"] == "excluded":
            lines.append(f"{start} {'excluded':>7s}")
            continue
        if r["status"] == "below_detection_limit":
            dl = r["detection_limit"]
            lines.append(f"{start} {'<' + format(dl, '.2f') if dl is not None else '< DL':>7s}"
                         "  (below the detection limit)")
            continue
        parts = " ".join(f"{r['budget'][p]:9.2f}" if p in r["budget"] else f"{'-':>9s}"
                         for p in BUDGET_PARTS)
        flag = ("  overlaps " + ", ".join(f"{e} ({c:+.2f})" for e, c in r["overlaps"].items())
                if r.get("overlaps") else "")
        lines.append(f"{start} {r['at_percent']:7.2f} {r['sd']:6.2f}  "
                     f"[{r['low']:6.2f}, {r['high']:6.2f}]   {parts}{flag}")
    return "\n".join(lines)


#: quantify() options that only shape the estimate's error budget or detection limits;
#: the replicates are quantified without them (the budget is added once).
_BUDGET_OPTIONS = ("thickness_sigma", "k_factor_sd", "detection_sigma", "exclude_elements",
                   "n_draws")


def _replicate_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The quantify() options of the replicates: without :data:`_BUDGET_OPTIONS`, except
    ``thickness_sigma`` when the thickness is estimated from the spectra
    (``thickness_from``): there it weighs the given thickness against each spectrum's
    estimate, so it sets the film every replicate is corrected for, as it does the
    estimate's. Without it a replicate would take the given thickness as exact and
    correct for another film than the estimate (measured: CaPv's O 2.6 at.% apart on a
    32 x 32 mantle map with 50 +- 50 nm given for a 100 nm film)."""
    opts = dict(options or {})
    estimated = opts.get("thickness_from", "auto") not in (None, "none")  # quantify's default
    return {k: v for k, v in opts.items()
            if k not in _BUDGET_OPTIONS or (estimated and k == "thickness_sigma")}


def _component_options(options: dict[str, Any], fraction: float) -> dict[str, Any]:
    """A component's share of the dose: the map's ``live_time`` and ``probe_area`` times
    the fraction of the pixels it covers (the zeta and cross-section methods)."""
    out = dict(options)
    for name in ("live_time", "probe_area"):
        if out.get(name) is not None:
            out[name] = float(out[name]) * fraction
    return out


def _quantify(spectra: np.ndarray, elements: list[str], model: Any,
              options: dict[str, Any] | None = None,
              exclude: list[list[str]] | None = None,
              counts: np.ndarray | None = None,
              fractions: np.ndarray | None = None) -> list[dict[str, float]]:
    """Compositions of component spectra, without the estimate's excluded elements."""
    from psnmf.quantify import quantify

    opts = _replicate_options(options)
    if model is not None:
        opts["model"] = model
    rows = np.asarray(spectra, dtype=float)
    out = []
    for j, row in enumerate(rows):
        n = None if counts is None or counts[j] <= 0 else float(counts[j])
        o = opts if fractions is None else _component_options(opts, float(fractions[j]))
        out.append(quantify(row, elements, k_factor_sd=0, detection_sigma=None,
                            exclude_elements=None if exclude is None else exclude[j],
                            total_counts=n, **o).composition)
    return out


def _quantify_estimate(spectra: np.ndarray, counts: np.ndarray, elements: list[str],
                       model: Any, options: dict[str, Any] | None,
                       fractions: np.ndarray) -> list[Any]:
    """The estimate's quantification per component, with the counts it stands for."""
    from psnmf.quantify import quantify

    opts = dict(options or {})
    if model is not None:
        opts["model"] = model
    return [quantify(row, elements, total_counts=float(n) if n > 0 else None,
                     **_component_options(opts, float(f)))
            for row, n, f in zip(np.asarray(spectra, dtype=float), counts, fractions,
                                 strict=True)]


def _is_integral(X: sp.csr_matrix) -> bool:
    return bool(np.all(X.data == np.round(X.data)))


def _fission_spectra(
    binned: sp.csr_matrix,
    nmf_spectra: np.ndarray,
    moved: np.ndarray,
    rng: np.random.Generator,
    n_splits: int,
    *,
    max_iter: int,
    n_sd: float,
    abundances: np.ndarray | None = None,
) -> np.ndarray:
    """A pure-pixel correction with selection and averaging on thinned halves.

    ``nmf_spectra`` is a binned-stage NMF simplex and ``moved`` its moved vertices; the
    pixels of every moved vertex are selected by :func:`replay_vertex_correction` (cluster
    width ``n_sd``) on the abundances of one half and averaged on those of the other.
    The halves' abundances start from ``abundances`` (those of ``binned`` on
    ``nmf_spectra``; solved here when not given): the problems are convex, so the warm
    start changes the answer only within the solver's tolerance.
    """
    S = np.asarray(nmf_spectra, dtype=np.float64)
    if not np.any(moved):
        return S.copy()
    if abundances is None:
        abundances = solve_abundances(binned, S, max_iter=max_iter).A
    counts = np.rint(binned.data).astype(np.int64)
    out = np.zeros_like(S)
    for _ in range(n_splits):
        half = rng.binomial(counts, 0.5)
        A, n = [], []
        for d in (half, counts - half):
            X = sp.csr_matrix((d.astype(np.float64), binned.indices, binned.indptr),
                              shape=binned.shape)
            A.append(solve_abundances(X, S, max_iter=max_iter, A_init=abundances).A)
            n.append(np.asarray(X.sum(axis=1)).ravel())
        for sel, avg in ((0, 1), (1, 0)):
            out += replay_vertex_correction(A[sel], S, moved, n[sel], n_sd=n_sd,
                                            average_on=A[avg])
    return out / (2 * n_splits)


def _has_pure_pixels(model: Any) -> bool:
    return model.get_params()["spectra"] == "pure"


def _counts_csr(counts: Any) -> sp.csr_matrix:
    """The counts as a float64 CSR (pixels, channels) matrix."""
    X = counts if sp.issparse(counts) else np.asarray(counts)
    X = X.reshape(-1, X.shape[-1]) if X.ndim == 3 else X
    return sp.csr_matrix(X, dtype=np.float64)


def _binned_counts(model: Any, counts: Any) -> sp.csr_matrix:
    return bin_counts(_counts_csr(counts), model.image_shape_, model.bin_factor_)


def debiased_spectra(
    model: Any, counts: Any, *, n_splits: int = 4, random_state: int | None = 0
) -> np.ndarray:
    """Binned-stage spectra of a fitted PSNMF without the pure-pixel selection bias.

    Redoes the pure-pixel correction of a ``PSNMF(spectra='pure')`` (same NMF simplex
    ``nmf_spectra_``, same moved vertices, same selection rule) with the pure pixels
    selected on one Poisson-thinned half of the binned counts and averaged on the other
    (see the module docstring), over ``n_splits`` random splits, both ways; a vertex moved
    at a finer scale (``vertex_scales='multi'``) is split at that scale. Vertices that
    were not moved are returned as they are.

    Parameters
    ----------
    model : fitted PSNMF with ``spectra='pure'``
    counts : the (integer) counts it was fitted to, (ny, nx, channels) or (pixels, channels)
    n_splits : int
        Random splits (each used both ways).
    random_state : int

    Returns
    -------
    ndarray (k, channels)
        Rows on the simplex, in the order of ``model.spectra_``.
    """
    if not _has_pure_pixels(model):
        raise ValueError(
            "debiased_spectra needs a PSNMF fitted with spectra='pure' (the pure-pixel "
            "correction it debiases); this model has spectra='nmf'."
        )
    if int(n_splits) < 1:
        raise ValueError(f"n_splits must be >= 1, got {n_splits!r}.")
    binned = _binned_counts(model, counts)
    if not _is_integral(binned):
        raise ValueError("debiased_spectra needs integer counts (Poisson thinning).")
    rng = np.random.default_rng(random_state)
    out = _fission_spectra(binned, model.nmf_spectra_, model.vertex_moved_, rng,
                           int(n_splits), max_iter=model.max_iter, n_sd=model.vertex_sd)
    out = _finer_fission(model, out, _finer_reaches(model, counts), rng, int(n_splits))
    lines = _line_replay(model, np.asarray(binned.sum(axis=1)).ravel())
    return out if lines is None else lines.apply(out, lines.which)


def _finer_vertices(model: Any) -> np.ndarray | None:
    """The vertices a replicate tries again at the finer scales: with
    ``vertex_scales='multi'``, those the fit moved at a finer scale; ``None`` when there
    is none.

    A vertex the binned stage moved is not tried at the finer scales in a replicate whose
    binned stage keeps it (as the bootstrap of a 'binned' fit keeps it): its reach would be
    most of the image, and such replicates are rare for a cluster that passed the tests.
    Nor is a vertex the fit kept at every scale: replicates drawn from the fitted model,
    whose phase is then NMF's too-wide vertex, can show a cluster the data did not (on
    the never-pure Y2Ti2O7 of the ODS steel, 96 x 96, 'medium', such replicates made its
    bootstrap sd 2.8 times its sd over noise seeds, where no fit moved it; kept, 0.94).
    """
    params = model.get_params()
    scales = getattr(model, "vertex_scales_", params.get("vertex_scales", "binned"))
    if params["spectra"] != "pure" or scales != "multi":
        return None
    scale_of = np.asarray(model.vertex_scale_)
    finer = (scale_of > 0) & (scale_of < int(model.bin_factor_))
    return finer if finer.any() else None


def _finer_reaches(model: Any, counts: Any) -> list[ScaleReach]:
    """The reach of every vertex the fit moved at a finer scale, at every finer scale
    (:func:`psnmf.engine.scale_replay.scale_reaches`; empty when there is none)."""
    vertices = _finer_vertices(model)
    if vertices is None:
        return []
    return scale_reaches(_counts_csr(counts), model.image_shape_, int(model.bin_factor_),
                         model.spectra_, model.binned_maps_, vertices,
                         n_sd=model.vertex_sd, max_iter=model.max_iter_full, tol=model.tol)


def _finer_fission(model: Any, spectra: np.ndarray, reaches: list[ScaleReach],
                   rng: np.random.Generator, n_splits: int) -> np.ndarray:
    """``spectra`` with the rows of the vertices the fit moved at a finer scale replaced by
    their selection-debiased spectra (:func:`psnmf.engine.scale_replay.fission_rows` on
    the data's counts, from the spectra the fit's moves at that scale started from)."""
    out = np.array(spectra, dtype=np.float64)
    scale_of = np.asarray(model.vertex_scale_)
    for reach in reaches:
        now = scale_of == reach.scale
        if not now.any():
            continue
        basis = np.where((scale_of > reach.scale)[:, None], model.spectra_,
                         model.nmf_spectra_)
        rows = fission_rows(reach.counts, basis, reach, now, rng, n_splits,
                            n_sd=model.vertex_sd, max_iter=model.max_iter_full,
                            tol=model.tol)
        for j, row in rows.items():
            out[j] = row
    return out


def bootstrap(
    model: Any,
    counts: Any,
    *,
    n_boot: int = 30,
    max_iter: int | None = None,
    tol: float | None = None,
    elements: list[str] | None = None,
    edx_model: Any = None,
    random_state: int | None = 0,
    n_splits: int = 4,
    replicate_splits: int = 1,
    warm_start: bool = True,
    quantify_options: dict[str, Any] | None = None,
    width_tol: float | None = 0.1,
    min_boot: int = 4,
    progress: Callable[[int], Any] | None = None,
) -> BootstrapResult:
    """Parametric bootstrap of a fitted :class:`psnmf.PSNMF`.

    Parameters
    ----------
    model : fitted PSNMF
        Uses ``spectra_``, ``binned_maps_``, ``bin_factor_``, ``image_shape_`` and its
        parameters (``get_params()``) to refit the binned stage.
    counts : the counts it was fitted to, (ny, nx, channels) or (pixels, channels)
    n_boot : int
        Replicates; with ``elements`` and ``width_tol``, the most replicates (see
        ``width_tol``). Each costs a full binned-stage fit (about 0.3-2.5 s on a 15 x 15
        binned image), and with vertices moved at a finer scale one abundance solve of the
        pixels within reach of their clusters per scale tried (the bootstrap of the ODS
        steel at 96 x 96, 'medium', 17 % more CPU). Vertices the fit extrapolated by
        their element lines are extrapolated again in every replicate (see the module
        docstring).
    max_iter, tol : refit settings of the binned stage; default the model's own.
    elements : list of str, optional
        Quantify every replicate (Cliff-Lorimer) for composition error bars.
    edx_model : EDXModel, optional
        Passed to :func:`psnmf.quantify.quantify_spectra` as ``model``.
    random_state : int
    n_splits : int
        Data-fission splits for the selection-debiased spectra (``spectra='pure'``).
    replicate_splits : int
        Data-fission splits on each replicate, whose debiased spectra only give the spread
        of the debiased estimate. Fewer splits than ``n_splits`` add the splits' own
        randomness to that spread, so the interval can only widen; one split costs a
        quarter of four, and the splits are about half of a replicate's cost.
    warm_start : bool
        Start each replicate's NMF from the fitted NMF factors (``nmf_spectra_`` and the
        binned maps brought back to them) rather than from the estimator's ``init``; see
        the module docstring for the measured coverage of both.
    quantify_options : dict, optional
        Passed to :func:`psnmf.quantify.quantify` (``method``, ``k_factors``,
        ``thickness``, ``thickness_sigma``, ``density``, ``exclude_elements``,
        ``k_factor_sd``, ``detection_sigma``, ``beam_current``, ``live_time``,
        ``probe_area``...). The budget options shape the estimate's error budget only;
        see the module docstring. ``live_time`` and ``probe_area`` are the whole map's:
        each component gets the share of the pixels it covers (its mean abundance).
    width_tol : float or None, default 0.1
        Stop adding replicates (from ``min_boot`` on) once more would not move any 95 %
        interval: the Monte Carlo error of each interval's edges (:func:`edge_error`) is
        at most ``width_tol`` times its half-width, or :data:`WIDTH_ATOL` at.%. Where the
        k-factor part dominates the budget (theoretical k-factors) that happens at
        ``min_boot``; where the bootstrap dominates, ``n_boot`` replicates are drawn as
        without the rule. ``None``: always ``n_boot``. Only with ``elements``.
    min_boot : int, default 4
        Fewest replicates before the rule may stop. With vertices moved at a finer scale
        or extrapolated by their lines, the binned stages of at least
        :data:`CENTRE_REPLICATES` replicates are fitted first (their mean centres the
        replays), whichever number the rule stops at.
    progress : callable, optional
        Called with 1 as each replicate is taken (a progress bar's ``update``).

    Returns
    -------
    BootstrapResult

    Examples
    --------
    >>> import numpy as np
    >>> from psnmf import PSNMF
    >>> rng = np.random.default_rng(0)
    >>> spectra = rng.dirichlet(np.ones(32), size=2)
    >>> maps = np.zeros((40, 40, 2)); maps[:, :20, 0] = 1; maps[:, 20:, 1] = 1
    >>> cube = rng.poisson(50 * maps @ spectra)
    >>> model = PSNMF(2, 4, smoothing=None, random_state=0).fit(cube)
    >>> res = bootstrap(model, cube, n_boot=3)
    >>> res.replicates.shape, res.debiased.shape
    ((3, 2, 32), (2, 32))
    """
    if int(n_boot) < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot!r}.")
    for name, value in (("n_splits", n_splits), ("replicate_splits", replicate_splits)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value!r}.")
    if int(min_boot) < 2:
        raise ValueError(f"min_boot must be >= 2, got {min_boot!r}.")
    if width_tol is not None and not (np.isfinite(width_tol) and width_tol > 0):
        raise ValueError(f"width_tol must be a positive number or None, got {width_tol!r}.")
    rng = np.random.default_rng(random_state)
    binned = _binned_counts(model, counts)
    n = np.asarray(binned.sum(axis=1)).ravel()
    k = model.spectra_.shape[0]
    A = model.binned_maps_.reshape(-1, k)
    S = model.spectra_
    mean = n[:, None] * (A @ S)
    lines = _line_replay(model, n)
    options = binned_kwargs(model.get_params())
    if max_iter is not None:
        options["max_iter"] = max_iter
    if tol is not None:
        options["tol"] = tol
    # the NMF factors of the fit: the binned maps are those of the corrected spectra
    # S = T @ nmf_spectra_, so A @ T are the abundances of the NMF's own spectra
    start = ((_nmf_abundances(A, model.vertex_transform_), model.nmf_spectra_)
             if warm_start else None)
    reps = np.empty((n_boot, *S.shape))
    priors = getattr(model, "spectral_priors_", None)
    if priors is not None:  # every replicate keeps the fit's fixed spectra and supports
        options["priors"] = SpectralPriors(fixed=priors.fixed, support=priors.support)
        if lines is not None:
            lines.priors = options["priors"]
    # the selection-debiased spectra replay the vertex moves without the priors
    debias = _has_pure_pixels(model) and priors is None
    if debias and not _is_integral(binned):
        warnings.warn("counts are not integers: no selection-debiased spectra (Poisson "
                      "thinning needs counts).", stacklevel=2)
        debias = False
    deb_reps = np.empty_like(reps) if debias else None
    out = BootstrapResult(spectra=S, replicates=reps, spectra_std=S * 0.0,
                          elements=list(elements or []))
    quantify_rep = None
    if elements:
        els = list(elements)
        qopts = dict(quantify_options or {})
        n_j = n @ A  # the counts each component stands for
        frac = np.nanmean(np.asarray(model.maps_).reshape(-1, k), axis=0)  # share of pixels
        out.quantifications = _quantify_estimate(S, n_j, els, edx_model, qopts, frac)
        drop = [q.excluded + list(q.below_detection) for q in out.quantifications]
        out.compositions = [q.composition for q in out.quantifications]
        out.composition_replicates = []
        out.debiased_composition_replicates = [] if debias else None

        def quantify_rep(spectra: np.ndarray) -> list[dict[str, float]]:
            return _quantify(spectra, els, edx_model, qopts, drop, counts=n_j, fractions=frac)

    reaches = _finer_reaches(model, counts)
    finer = {"n_sd": options["vertex_sd"], "min_pixels": options["min_cluster"],
             "max_dispersion": options["max_dispersion"], "max_tail": options["max_tail"],
             "max_iter": model.max_iter_full, "tol": model.tol}

    def binned_part(rep_rng: np.random.Generator) -> _Replicate:
        """A replicate's binned stage (and its debiased spectra), matched to ``S``."""
        Xr = poisson_draw(rep_rng, *mean.shape, lambda sl: mean[sl])
        fit = fit_binned(Xr, k, random_state=int(rep_rng.integers(2**31 - 1)),
                         solve_maps=False, start=start, **options)
        order = match_components(fit.spectra, S)
        deb = None if deb_reps is None else _fission_spectra(
            Xr, fit.nmf.S, fit.moved, rep_rng, int(replicate_splits),
            max_iter=options["max_iter"], n_sd=options["vertex_sd"], abundances=fit.nmf.A,
        )[order]
        return _Replicate(fit.spectra[order], fit.moved[order], fit.nmf.S[order], deb,
                          rep_rng)

    def finer_part(rep: _Replicate, centre: np.ndarray) -> tuple[np.ndarray, Any]:
        """The replicate's spectra and debiased spectra after the finer-scale moves and
        the line extrapolation."""
        kept = ~rep.moved
        shifted = _shifted_start(model.nmf_spectra_, rep.nmf_spectra, centre)
        if not reaches:
            return _extrapolated(lines, rep.spectra, rep.debiased, kept, shifted)
        replay = replay_finer_scales(rep.spectra, rep.moved, reaches, S, rep.rng,
                                     start_spectra=shifted, priors=options.get("priors"),
                                     **finer)
        deb = rep.debiased
        for reach, Xs, basis, now in replay.steps if deb is not None else ():
            rows = fission_rows(Xs, basis, reach, now, rep.rng, int(replicate_splits),
                                n_sd=finer["n_sd"], max_iter=finer["max_iter"],
                                tol=finer["tol"])
            for j, row in rows.items():
                deb[j] = row
        return _extrapolated(lines, replay.spectra, deb, kept & (replay.scales == 0),
                             shifted)

    # each replicate draws from its own generator, so replicates are fitted side by side
    # (kernels.map_threads) and the result does not depend on the number of cores; they
    # are taken in order, and the stopping rule discards any drawn after it stops. With
    # finer-scale moves or line extrapolations, the binned stages of the first
    # replicates come first: their mean NMF spectra centre every replicate's NMF error
    # (_shifted_start)
    rep_rngs = rng.spawn(n_boot)
    workers = min(kernels.available_cores(), BOOT_THREADS)
    replayed = bool(reaches) or lines is not None
    pilot = min(max(int(min_boot), CENTRE_REPLICATES), n_boot) if replayed else 0
    parts: list[Any] = kernels.map_threads(binned_part, rep_rngs[:pilot], workers)
    centre = (np.mean([p.nmf_spectra for p in parts], axis=0) if parts
              else model.nmf_spectra_)

    def replicate(r: int) -> tuple[np.ndarray, Any]:
        return finer_part(parts[r] if r < pilot else binned_part(rep_rngs[r]), centre)

    drawn = 0
    stop = False
    for first in range(0, n_boot, workers):
        results = kernels.map_threads(replicate, range(first, min(first + workers, n_boot)),
                                      workers)
        for r, (spectra, deb) in enumerate(results, start=first):
            reps[r] = spectra
            if deb_reps is not None:
                deb_reps[r] = deb
            drawn = r + 1
            if progress is not None:
                progress(1)
            if quantify_rep is None:
                continue
            out.composition_replicates.append(quantify_rep(reps[r]))
            if deb_reps is not None:
                out.debiased_composition_replicates.append(quantify_rep(deb_reps[r]))
            if (width_tol is not None and drawn >= min_boot and drawn < n_boot
                    and _edges_settled(out, float(width_tol))):
                stop = True
                break
        if stop:
            break
    out.replicates = reps[:drawn]
    out.spectra_std = out.replicates.std(axis=0)
    if debias:
        out.debiased = _finer_fission(
            model, _fission_spectra(binned, model.nmf_spectra_, model.vertex_moved_, rng,
                                    int(n_splits), max_iter=model.max_iter,
                                    n_sd=model.vertex_sd),
            reaches, rng, int(n_splits))
        if lines is not None:
            out.debiased = lines.apply(out.debiased, lines.which)
        out.debiased_replicates = deb_reps[:drawn]
        if quantify_rep is not None:
            out.debiased_compositions = quantify_rep(out.debiased)
    return out


@dataclass
class _Replicate:
    """A replicate's binned stage, matched to the fit: spectra, moved vertices, NMF
    spectra, debiased spectra (or None) and its generator (for the finer scales)."""

    spectra: np.ndarray
    moved: np.ndarray
    nmf_spectra: np.ndarray
    debiased: np.ndarray | None
    rng: np.random.Generator


@dataclass
class _LineReplay:
    """The fit's line extrapolation (:func:`psnmf.engine.two_stage.extrapolate_never_pure`)
    as the replicates replay it: the line basis of the fit's elements and EDX model, the
    vertices it moved (``which``), the counts behind each vertex and the priors."""

    basis: np.ndarray
    n_lines: int
    line_elements: list[str]
    counts: np.ndarray
    which: np.ndarray
    priors: SpectralPriors | None = None

    def apply(self, spectra: np.ndarray, kept: np.ndarray,
              start: np.ndarray | None = None) -> np.ndarray:
        """``spectra`` with the vertices of ``which`` extrapolated by the fit's rule: those
        ``kept`` (no pure cluster in the replicate) from their rows of ``start`` where
        given, the others (moved to a pure cluster in the replicate) from that cluster's
        spectrum and only where it is a mixture plateau
        (:func:`psnmf.engine.line_vertices.mixture_plateau`, every vertex moved in the
        replicate a possible partner), as the fit tries its vertices at a cluster. A step
        that fails its tests keeps the vertex, as the fit would have."""
        kept = np.asarray(kept, dtype=bool)
        todo, plateau = self.which & kept, self.which & ~kept
        if start is not None:
            spectra = np.where(todo[:, None], start, spectra)
        out, _, steps = extrapolate_vertices(spectra, self.counts, todo, self.basis,
                                             self.n_lines, line_elements=self.line_elements,
                                             plateau=plateau, partners=~kept)
        if self.priors is not None and steps.any():
            out = self.priors.constrain(out)
        return out


def _nmf_abundances(A: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """The abundances of the NMF's own spectra from those of the corrected spectra
    ``transform @ nmf_spectra``: ``A @ transform``, clipped at zero and renormalised where
    the transform has negative entries (a line extrapolation moves a vertex outside the
    NMF simplex, so a pixel rich in it gets small negative abundances of the others)."""
    out = A @ transform
    if np.all(transform >= 0):
        return out
    out = np.clip(out, 0.0, None)
    total = out.sum(axis=1, keepdims=True)
    k = out.shape[1]
    return np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / k)


def _line_replay(model: Any, pixel_counts: np.ndarray) -> _LineReplay | None:
    """The fit's line extrapolation for the replicates, or None where it moved nothing.

    The counts behind each vertex are those the fit extrapolated with (its binned maps
    before the extrapolation times the binned pixels' counts), recovered from the binned
    maps after it: those are the maps of ``T @ S`` for the extrapolation's transform
    ``T``, so ``A @ T`` (clipped at zero) are the maps of ``S``.
    """
    steps = np.asarray(getattr(model, "vertex_steps_", np.zeros((1, 1))), dtype=float)
    if not steps.any():
        return None
    physics = getattr(model, "line_physics_", None)
    if physics is None:
        raise ValueError(
            "the model moved vertices by their element lines but does not record the EDX "
            "model and elements it used (line_physics_): refit it with this version of "
            "psnmf, or fit it with never_pure='keep'."
        )
    edx_model, elements = physics
    basis, n_lines, names = line_basis(edx_model, elements)
    k = steps.shape[0]
    maps = model.binned_maps_.reshape(-1, k) @ step_transform(steps)
    counts = np.clip(maps, 0.0, None).T @ np.asarray(pixel_counts, dtype=float)
    return _LineReplay(basis, n_lines, elements_of_lines(names), counts,
                       steps.any(axis=1))


def _extrapolated(lines: _LineReplay | None, spectra: np.ndarray, debiased: Any,
                  kept: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, Any]:
    """A replicate's spectra and debiased spectra (or None) with the fit's line
    extrapolation replayed on the vertices ``kept`` (no pure cluster in the replicate),
    each started from its row of ``start`` (:func:`_shifted_start`)."""
    if lines is None:
        return spectra, debiased
    deb = None if debiased is None else lines.apply(debiased, kept, start)
    return lines.apply(spectra, kept, start), deb


def _shifted_start(fit_nmf: np.ndarray, rep_nmf: np.ndarray, centre: np.ndarray
                   ) -> np.ndarray:
    """The vertices a replicate's finer-scale moves start from: the fit's NMF spectra plus
    the replicate's NMF error, ``fit_nmf + rep_nmf - centre`` (clipped at zero, rows on the
    simplex), with ``centre`` the mean NMF spectra of the first replicates.

    A move projects its cluster's counts onto the simplex it starts from. On the data
    that simplex encloses the cluster (NMF's vertex of a phase without pure binned pixels
    lies outside it), and the moved vertex inherits most of the NMF vertex's noise (it is
    about ``0.94`` of it on the M23C6 of the ODS steel). The replicates' NMF, fitted to
    counts drawn from the fitted model whose phase is the moved vertex, need not enclose
    it: there its vertex lies 2 degrees from the moved one on another side, and
    replicates moved from it landed on their simplex's boundary 2.7-3.3 degrees from the
    vertex (the fit's error is 1.8). Started from the fit's NMF vertex alone they moved
    0.1-0.7 degrees from it, a spread 7 times smaller than the fit's over noise seeds. The
    replicate's NMF error about ``centre`` added to the fit's vertex keeps both: the
    fit's geometry and NMF's noise. The centre is the replicates' mean, not the NMF of the
    expected counts: that stays at the fit's NMF (it fits the expected counts exactly),
    while the replicates' NMF vertex of the carbide lies 7e-3 (twice its sd) from it.
    """
    out = np.maximum(fit_nmf + rep_nmf - centre, 0.0)
    return out / out.sum(axis=1, keepdims=True)


#: At.% below which the Monte Carlo error of an interval edge does not matter: a tenth of
#: the 0.5 at.% to which EDX compositions are read at best (see :func:`bootstrap`'s
#: ``width_tol``).
WIDTH_ATOL = 0.05


def edge_error(values: np.ndarray, systematic_sd: float, level: float = 0.95) -> float:
    """Monte Carlo standard error of the edges of a composition's interval, in at.%.

    The interval is ``c +- z sqrt(b^2 + s^2)`` with ``b`` the sd of the ``n`` replicate
    ``values`` and ``s`` the systematic sd (k-factors, thickness; exact, not sampled).
    Two parts, in quadrature: the half-width's error from the error of ``b``
    (``se(b) = b / sqrt(2 (n - 1))``, so ``z b se(b) / sqrt(b^2 + s^2)``) and the
    error of the bias-corrected centre ``2 t - mean(values)`` (``b / sqrt(n)``).
    """
    v = np.asarray(values, dtype=float)
    n = v.size
    b = float(v.std(ddof=1))
    total = math.hypot(b, systematic_sd)
    if total == 0.0:
        return 0.0
    z = float(norm.ppf(0.5 + level / 2.0))
    half = z * b * b / (total * math.sqrt(2.0 * (n - 1)))
    return float(math.hypot(half, b / math.sqrt(n)))


#: One-sided confidence of the upper bound on the bootstrap sd that the stopping rule
#: uses (:func:`sd_upper_factor`): the true sd is above it one time in five. At 0.95 the
#: rule drew 12.8 replicates on average where 0.8 draws 11.0 (mantle 'medium', 60 x 60,
#: theoretical k-factors), both covering every composition.
SD_BOUND_CONFIDENCE = 0.8


def sd_upper_factor(n: int, confidence: float = SD_BOUND_CONFIDENCE) -> float:
    """Factor from the sd of ``n`` normal draws to its one-sided upper confidence bound.

    ``sqrt((n - 1) / q)`` with ``q`` the ``1 - confidence`` quantile of chi-squared with
    ``n - 1`` degrees of freedom. At the default confidence 0.8: 1.73 at ``n = 4``, 1.35
    at 8, 1.18 at 20 (at 0.95: 2.92, 1.80, 1.37).

    >>> round(sd_upper_factor(4), 2), round(sd_upper_factor(8), 2)
    (1.73, 1.35)
    """
    return math.sqrt((n - 1) / float(chi2.ppf(1.0 - confidence, n - 1)))


def _edges_settled(res: BootstrapResult, width_tol: float, level: float = 0.95) -> bool:
    """Whether every quantified element's interval edges (estimate and debiased
    replicates) have a Monte Carlo error within ``width_tol`` of the half-width, or
    :data:`WIDTH_ATOL` at.% (the stopping rule of :func:`bootstrap`).

    The replicates' spread is taken at its upper confidence bound
    (:func:`sd_upper_factor`): from a few replicates the sd is itself uncertain (a 4-draw
    sd is below a third of the truth one time in twenty), and an underestimate would both
    shrink the edges' error and hide the bootstrap's share of the interval. The rule
    therefore stops early only where even that bound leaves the bootstrap part small
    beside the systematic one.
    """
    z = float(norm.ppf(0.5 + level / 2.0))
    sets = [res.composition_replicates or []]
    if res.debiased_composition_replicates:
        sets.append(res.debiased_composition_replicates)
    bounds = [(reps, sd_upper_factor(len(reps))) for reps in sets]  # once per set
    for j, comp in enumerate(res.compositions or []):
        q = res.quantifications[j] if res.quantifications is not None else None
        for el in comp:
            s = math.sqrt(_systematic_var(q, el))
            for reps, factor in bounds:
                v = np.array([rep[j].get(el, 0.0) for rep in reps])
                v = v.mean() + (v - v.mean()) * factor
                half = z * math.hypot(float(v.std(ddof=1)), s)
                if edge_error(v, s, level) > max(width_tol * half, WIDTH_ATOL):
                    return False
    return True


def _systematic_var(q: Any, element: str) -> float:
    """The systematic variance of an element's composition in a quantification ``q``
    (the squares of its k-factor and thickness parts; 0 without a quantification)."""
    budget = {} if q is None else q.uncertainty_budget
    return sum(float(budget[p].get(element, 0.0)) ** 2
               for p in ("k_factors", "thickness") if p in budget)


def composition_intervals(
    res: BootstrapResult, level: float = 0.95, method: str = "bias", systematic: bool = True
) -> list[dict[str, tuple[float, float, float]]]:
    """Per component, element -> (low, high, sd) at.% from the bootstrap replicates.

    Parameters
    ----------
    res : BootstrapResult with compositions
    level : float in (0, 1)
    method : {'bias', 'percentile'}
        See the module docstring. ``'bias'`` is the calibrated one.
    systematic : bool
        Widen every interval by the systematic parts of the error budget (k-factors,
        thickness), added in quadrature to each centre's sd (``'bias'``) or to the
        replicates' quantile distances (``'percentile'``). False: the bootstrap alone.

    Returns
    -------
    list of dict
        Quantified elements only (not those below the detection limit or excluded in
        that component). ``sd`` is the bootstrap standard deviation of the estimate;
        ``low`` and ``high`` are clipped to the possible range [0, 100] at.%.
    """
    if res.compositions is None or res.composition_replicates is None:
        raise ValueError("no compositions: pass elements= to bootstrap().")
    if method not in INTERVAL_METHODS:
        raise ValueError(f"method must be one of {INTERVAL_METHODS}, got {method!r}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}.")
    a = (1.0 - level) / 2.0
    z = float(norm.ppf(1.0 - a))
    deb = res.debiased_compositions
    deb_reps = res.debiased_composition_replicates
    out = []
    for j, comp in enumerate(res.compositions):
        d = {}
        q = None if res.quantifications is None else res.quantifications[j]
        for el in comp:
            v = np.array([rep[j].get(el, 0.0) for rep in res.composition_replicates])
            t = comp.get(el, 0.0)
            sd = float(v.std(ddof=1))
            sys2 = _systematic_var(q, el) if systematic else 0.0
            if method == "bias":
                centres = [(t, sd), (2 * t - v.mean(), sd)]
                if deb is not None and deb_reps is not None:
                    vd = np.array([rep[j].get(el, 0.0) for rep in deb_reps])
                    centres.append((deb[j].get(el, 0.0), float(vd.std(ddof=1))))
                lo = min(c - z * math.sqrt(s**2 + sys2) for c, s in centres)
                hi = max(c + z * math.sqrt(s**2 + sys2) for c, s in centres)
            else:
                qlo, qhi = np.quantile(v, [a, 1.0 - a])
                lo = t - math.hypot(t - qlo, z * math.sqrt(sys2))
                hi = t + math.hypot(qhi - t, z * math.sqrt(sys2))
            d[el] = (max(float(lo), 0.0), min(float(hi), 100.0), sd)  # at.% range
        out.append(d)
    return out


def coverage(
    res: BootstrapResult,
    truth: list[dict[str, float]],
    order: np.ndarray,
    *,
    level: float = 0.95,
    method: str = "bias",
    min_percent: float = 0.5,
    systematic: bool = True,
) -> tuple[int, int]:
    """How many true compositions fall inside their interval.

    An element reported below the detection limit counts as inside when its true
    at.% is at most the limit; an excluded element is not counted.

    Parameters
    ----------
    truth : per true phase, element -> at.%
    order : fitted component index per true phase
    level, method : as in :func:`composition_intervals`
    min_percent : only elements with at least this true at.% are counted (absent
        elements sit at the 0 boundary, where intervals are not meaningful).

    Returns
    -------
    (inside, total)
    """
    iv = composition_intervals(res, level, method, systematic)
    inside = total = 0
    for i, comp in enumerate(truth):
        j = int(order[i])
        q = None if res.quantifications is None else res.quantifications[j]
        for el, val in comp.items():
            if val < min_percent or el not in res.elements:
                continue
            if q is not None and el in q.excluded:
                continue
            if el in iv[j]:
                lo, hi, _ = iv[j][el]
                inside += int(lo <= val <= hi)
            else:
                limit = q.below_detection.get(el) if q is not None else None
                inside += int(limit is not None and val <= limit)
            total += 1
    return inside, total
