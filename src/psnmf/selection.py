"""Held-out scores by count splitting, and the one search that chooses k, b and the TV weight.

Counts are Poisson, so binomial thinning splits them into independent parts with the same
means up to a factor (:func:`count_split`, :func:`count_folds`). A model fitted on one part
is scored by the Poisson deviance of the other (:func:`poisson_deviance`,
:func:`heldout_deviance`, :func:`heldout_deviance_maps`): a score of the prediction of new
counts that needs no ground truth. Predicted means below :data:`DEVIANCE_FLOOR` count as
the floor, so that zeros of a raw prediction and negative PCA values give a finite score.

Every choice of psnmf is one :func:`grid_search` over candidates scored that way, with one
evidence type (:class:`SearchResult`, a :class:`Trial` per candidate):

* the number of components ``k``: :func:`choose_components`, the binned stage scored by
  5-fold count splitting of the binned counts;
* the bin factor ``b``: :func:`choose_bin_factor`, PSNMF fitted on one half of the counts
  (a ``fit`` callable, so this module needs no estimator) and scored on the other half;
  :func:`choose_model` runs both and returns the evidence as a :class:`ModelChoice`;
* the total-variation weight of the maps: :func:`choose_smoothing`, warm-started along the
  increasing weights and stopped early (``patience``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np
import scipy.sparse as sp

from psnmf._validation import (
    check_counts_values,
    check_finite_array,
    check_has_counts,
    check_random_state,
    counts_csr,
)
from psnmf.engine import _kernels as kernels
from psnmf.engine.binning import bin_counts, binned_shape, binning_matrix
from psnmf.engine.priors import SpectralPriors
from psnmf.engine.tv_maps import SMOOTHING_GRID, check_penalty, smooth_maps
from psnmf.engine.two_stage import fit_binned

logger = logging.getLogger(__name__)

#: Smallest predicted mean (counts) in every held-out deviance.
DEVIANCE_FLOOR = 1e-6
#: Fraction of the counts in the fitting half of the count split.
SPLIT_FRACTION = 0.5
#: Bin factors tried by default (``bin_factor="auto"``, ``psnmf sweep``). Not 2: at
#: ``b = 2`` the spectra of the small grains at 147 counts/pixel were 3.9-13x the best b's
#: and the count-split score prefers 2 there; with 2 among the candidates the choice was
#: within 1.10x of the best b no more often (49 against 48 of 64 simulated datasets,
#: ``benchmarks/choose_b.py``) and b = 2 is the slowest fit. Phases finer than ``b = 4``
#: are reached per vertex by ``vertex_scales='multi'``.
DEFAULT_BINS: tuple[int, ...] = (4, 8, 16)
#: Bin factors where the number of components may be scored (:func:`components_bin_factor`).
COMPONENT_BINS: tuple[int, ...] = (2, 4, 8, 16)
#: The b search scores a candidate's prediction of the held-out half after summing both over
#: ``SCORE_SCALE x SCORE_SCALE`` pixels (:func:`binned_heldout_deviance`).
SCORE_SCALE = 8
#: Numbers of components tried by default (``n_components=None``).
DEFAULT_COMPONENTS: tuple[int, ...] = (2, 3, 4, 5, 6)
#: Counts per binned pixel wanted where the number of components is scored
#: (:func:`components_bin_factor`).
TARGET_BINNED_COUNTS = 3000.0
#: Fewest binned pixels where the number of components is scored.
MIN_BINNED_PIXELS = 100
#: Folds of the count split that scores the number of components: each candidate is
#: fitted on all folds but one and scored on that one, for every fold.
COMPONENT_FOLDS = 5
#: The k search stops once the deviance has risen above its minimum this many times in a
#: row (:func:`choose_components`): the binned-stage held-out deviance falls until the
#: number of phases and rises after it.
COMPONENT_PATIENCE = 1
#: Most binned pixels the number of components is scored on (:func:`choose_components`).
MAX_COMPONENT_PIXELS = 1024
#: The b search at one ``k`` scores every candidate (``None``; an integer would stop once
#: the deviance has risen above its minimum that many times in a row): with the 8 x 8
#: score the curve over ``b`` had a second dip in 2 of 47 simulated datasets, where
#: stopping at the first rise chose ``b = 16`` with spectra up to 1.8x worse.
BIN_PATIENCE: int | None = None
#: Iteration caps of the candidate fits of a search (binned stage, full stage).
SWEEP_ITERATIONS = (200, 50)

C = TypeVar("C")


# ---------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """What a scoring function returns for one candidate.

    Attributes
    ----------
    deviance : float or None
        Held-out deviance per count (lower is better); ``None`` when the candidate could
        not be scored.
    n_iter : str
        Iterations of the fit(s) behind the score, as shown in the tables.
    """

    deviance: float | None
    n_iter: str = "-"


@dataclass
class Trial(Generic[C]):
    """One scored candidate of a :func:`grid_search`.

    Attributes
    ----------
    candidate : the parameter value(s) tried
    deviance : float or None
        Held-out deviance per count; ``None`` when the candidate failed or gave a
        non-finite score.
    n_iter : str
        Iterations of the fit(s) behind the score.
    time_s : float
        Seconds spent scoring it.
    stage : str
        Which search it belongs to (``'k'``, ``'b'``, ``'grid'``, ``'smoothing'``).
    """

    candidate: C
    deviance: float | None
    n_iter: str = "-"
    time_s: float = 0.0
    stage: str = ""


@dataclass
class SearchResult(Generic[C]):
    """Evidence of one :func:`grid_search`: every trial in the order run, and the best.

    Attributes
    ----------
    trials : list of Trial
    best : Trial
        The trial with the lowest deviance (ties: see ``prefer`` of :func:`grid_search`).
    """

    trials: list[Trial[C]]
    best: Trial[C]

    @property
    def candidates(self) -> list[C]:
        """The candidates tried, in the order run."""
        return [t.candidate for t in self.trials]

    @property
    def deviances(self) -> list[float | None]:
        """Their held-out deviances per count (``None``: not scored)."""
        return [t.deviance for t in self.trials]


def best_trial(
    trials: Sequence[Trial[C]],
    prefer: Callable[[C], Any] | None = None,
    *,
    error: str = "no candidate could be scored.",
) -> Trial[C]:
    """The scored trial with the lowest deviance.

    Ties go to the smallest ``prefer(candidate)``, then to the earliest trial. Raises
    ``ValueError(error)`` when no trial was scored.
    """
    scored = [(t.deviance, i, t) for i, t in enumerate(trials) if t.deviance is not None]
    if not scored:
        raise ValueError(error)
    key = prefer if prefer is not None else (lambda c: 0)
    return min(scored, key=lambda s: (s[0], key(s[2].candidate), s[1]))[2]


def grid_search(
    candidates: Iterable[C],
    score: Callable[[C], Score | float | None],
    *,
    patience: int | None = None,
    prefer: Callable[[C], Any] | None = None,
    failures: tuple[type[BaseException], ...] = (),
    stage: str = "",
    progress: Callable[[list[C]], Iterable[C]] | None = None,
    error: str = "no candidate could be scored.",
) -> SearchResult[C]:
    """Score candidates in order and keep the one with the lowest held-out deviance.

    Parameters
    ----------
    candidates : iterable
        Parameter values, scored in this order (a warm-started path needs it).
    score : callable
        ``score(candidate)`` returns a :class:`Score` or just the deviance (a float, or
        ``None`` when the candidate cannot be scored). Non-finite deviances count as not
        scored.
    patience : int, optional
        Stop once the deviance has risen above its minimum this many times in a row
        (for scores that are unimodal in an ordered parameter); ``None`` scores all.
    prefer : callable, optional
        Tie-break among equal deviances: the smallest ``prefer(candidate)`` wins, then the
        earliest.
    failures : tuple of exception types
        Exceptions of ``score`` recorded as a failed candidate instead of raised.
    stage : str
        Recorded in every trial.
    progress : callable, optional
        Wraps the list of candidates for iteration (a progress bar).
    error : str
        Message of the ``ValueError`` raised when no candidate could be scored.

    Returns
    -------
    SearchResult

    Examples
    --------
    >>> res = grid_search([1, 2, 3, 4, 5], lambda x: (x - 2) ** 2 + 0.5, patience=2)
    >>> res.best.candidate, res.candidates, res.deviances
    (2, [1, 2, 3, 4], [1.5, 0.5, 1.5, 4.5])
    """
    todo = list(candidates)
    trials: list[Trial[C]] = []
    for cand in progress(todo) if progress is not None else todo:
        t0 = time.perf_counter()
        try:
            result = score(cand)
        except failures as exc:
            logger.info("candidate %r failed: %s", cand, exc)
            result = Score(None)
        if not isinstance(result, Score):
            result = Score(None if result is None else float(result))
        dev = result.deviance
        dev = None if dev is None or not math.isfinite(dev) else float(dev)
        trials.append(Trial(cand, dev, result.n_iter, time.perf_counter() - t0, stage))
        scored = [(t.deviance, i) for i, t in enumerate(trials) if t.deviance is not None]
        if patience is not None and scored and len(trials) - 1 - min(scored)[1] >= patience:
            break
    return SearchResult(trials, best_trial(trials, prefer, error=error))


# ---------------------------------------------------------------------------------------
# k and b
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelCandidate:
    """One ``(b, k)`` candidate of the model search."""

    bin_factor: int
    n_components: int


def _prefer_simple(c: ModelCandidate) -> tuple[int, int]:
    """Ties go to fewer components, then to the larger bin factor."""
    return (c.n_components, -c.bin_factor)


NO_SCORE = ("every candidate fit failed, so no bin factor / number of components could be "
            "scored; try smaller bin factors or fewer components.")


@dataclass
class ModelChoice:
    """Evidence for the number of components ``k`` and the bin factor ``b``.

    Attributes
    ----------
    b_search : SearchResult of ModelCandidate
        PSNMF fitted on one half of the counts and scored on the other at full
        resolution, one trial per ``(b, k)`` in the order run. Its ``best`` is the chosen
        ``(b, k)``: the lowest deviance among the trials at the chosen ``k``.
    k_search : SearchResult of ModelCandidate or None
        How ``k`` was chosen when there were several candidates: the binned stage at
        ``k_bin``, ``k_folds``-fold count splitting (:func:`choose_components`).
    k_bin, k_folds : bin factor and number of folds of the k search.
    k_pixels : (scored, binned) pixels of the k search: a random subset of ``scored`` of
        the ``binned`` pixels when there are more than :data:`MAX_COMPONENT_PIXELS`.
    fraction, floor, seed : the count split of ``b_search`` and the deviance settings.
    """

    b_search: SearchResult[ModelCandidate]
    k_search: SearchResult[ModelCandidate] | None = None
    k_bin: int | None = None
    k_folds: int = COMPONENT_FOLDS
    k_pixels: tuple[int, int] | None = None
    fraction: float = SPLIT_FRACTION
    floor: float = DEVIANCE_FLOOR
    seed: int | None = 0

    @property
    def best(self) -> Trial[ModelCandidate]:
        """The chosen ``(b, k)`` trial."""
        return self.b_search.best

    @property
    def n_components(self) -> int:
        """The chosen ``k``."""
        return self.best.candidate.n_components

    @property
    def bin_factor(self) -> int:
        """The chosen ``b``."""
        return self.best.candidate.bin_factor

    @property
    def trials(self) -> list[Trial[ModelCandidate]]:
        """Every trial: the k search (if any), then the b search."""
        return [*(self.k_search.trials if self.k_search else []), *self.b_search.trials]

    @property
    def bins(self) -> list[int]:
        """The bin factors tried with full PSNMF fits."""
        return sorted({t.candidate.bin_factor for t in self.b_search.trials})

    @property
    def components(self) -> list[int]:
        """The numbers of components tried."""
        return sorted({t.candidate.n_components for t in self.trials})

    def to_text(self) -> str:
        """The tables as aligned text (chosen rows marked with ``*``)."""
        lines = []
        k_best = self.n_components
        if self.k_search is not None:
            lines += [
                f"k: binned stage on the counts binned {self.k_bin} x {self.k_bin}"
                f"{self._k_subset()}, {self.k_folds}-fold count splitting, k in increasing "
                "order until the deviance rises",
                "       k   held-out deviance/count   iterations   time",
                "       --  -----------------------   ----------   ------",
            ]
            for t in self.k_search.trials:
                mark = "*" if t.candidate.n_components == k_best else " "
                lines.append(f"{mark}      {t.candidate.n_components:<3d} {_dev(t):>23s}   "
                             f"{t.n_iter:>10s}   {t.time_s:5.1f} s")
            lines.append("b: PSNMF on half of the counts, scored on the other half summed "
                         f"over {SCORE_SCALE} x {SCORE_SCALE} pixels (k = {k_best})")
        lines += [
            "  b    k   held-out deviance/count   iterations (binned+full)   time",
            "  --   --  -----------------------   ------------------------   ------",
        ]
        for t in self.sorted_b_trials():
            mark = "*" if t is self.best else " "
            c = t.candidate
            lines.append(f"{mark} {c.bin_factor:<4d} {c.n_components:<3d} {_dev(t):>23s}   "
                         f"{t.n_iter:>24s}   {t.time_s:5.1f} s")
        lines.append(f"best: bin factor {self.bin_factor}, {k_best} components (* above)")
        return "\n".join(lines)

    def _k_subset(self) -> str:
        if self.k_pixels is None or self.k_pixels[0] >= self.k_pixels[1]:
            return ""
        return f" (a random {self.k_pixels[0]} of its {self.k_pixels[1]} pixels)"

    def sorted_b_trials(self) -> list[Trial[ModelCandidate]]:
        """The b search's trials by ``(k, b)``."""
        return sorted(self.b_search.trials,
                      key=lambda t: (t.candidate.n_components, t.candidate.bin_factor))

    def to_dict(self, files: dict[str, Any] | None = None) -> dict[str, Any]:
        """JSON-ready form; ``files``: files written for this search, by role."""
        return {
            "rows": [trial_row(t) for t in self.b_search.trials],
            "best": {"bin_factor": self.bin_factor, "n_components": self.n_components,
                     "deviance": self.best.deviance},
            "k_stage": {"bin_factor": self.k_bin, "folds": self.k_folds,
                        "pixels": None if self.k_pixels is None else list(self.k_pixels),
                        "patience": COMPONENT_PATIENCE,
                        "rows": [trial_row(t) for t in self.k_search.trials]}
            if self.k_search is not None else None,
            "split_fraction": self.fraction,
            "deviance_floor": self.floor,
            "seed": self.seed,
            "files": {k: str(v) for k, v in (files or {}).items()},
        }


def _dev(t: Trial[Any]) -> str:
    return "failed" if t.deviance is None else f"{t.deviance:.5f}"


def trial_row(t: Trial[ModelCandidate]) -> dict[str, Any]:
    """One model trial as a JSON row (``bin_factor``, ``n_components``, ``deviance``,
    ``stage``, ``n_iter``, ``time_s``)."""
    return {"bin_factor": t.candidate.bin_factor, "n_components": t.candidate.n_components,
            "deviance": t.deviance, "stage": t.stage, "n_iter": t.n_iter, "time_s": t.time_s}


def parse_choices(values: Any, name: str) -> tuple[int, ...] | None:
    """Candidate integers from a sequence, an int or ``'2,4,8'``; ``None``/``'auto'`` -> None.

    >>> parse_choices("8, 2,4", "bins"), parse_choices("auto", "components")
    ((2, 4, 8), None)
    """
    if values is None or (isinstance(values, str) and values.strip().lower() == "auto"):
        return None
    if isinstance(values, str):
        values = [v for v in values.replace(" ", "").split(",") if v]
    if isinstance(values, int | np.integer):
        values = [values]
    try:
        out = tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be integers such as 2,4,8 (or 'auto'), got {values!r}."
        ) from None
    if not out or min(out) < 1:
        raise ValueError(f"{name} must be positive integers, got {values!r}.")
    return out


def usable_bin_factors(bins: Sequence[int], image_shape: tuple[int, int], k: int) -> list[int]:
    """The bin factors of ``bins`` that leave at least ``max(k, 4)`` binned pixels.

    >>> usable_bin_factors([2, 4, 8, 16], (32, 32), 5)   # 16 leaves 2 x 2 binned pixels
    [2, 4, 8]
    """
    out = []
    for b in bins:
        b = int(b)
        if b < 1:
            raise ValueError(f"bin factors must be >= 1, got {b}.")
        if b <= min(image_shape) and int(np.prod(binned_shape(image_shape, b))) >= max(k, 4):
            out.append(b)
    return out


def components_bin_factor(bins: Sequence[int], counts_per_pixel: float,
                          image_shape: tuple[int, int] | None = None) -> int:
    """Bin factor on which the number of components is scored.

    The smallest of ``bins`` giving :data:`TARGET_BINNED_COUNTS` counts per binned pixel
    among those leaving at least :data:`MIN_BINNED_PIXELS` binned pixels on
    ``image_shape`` (the largest of those if none gives that many counts; the smallest of
    ``bins`` if none leaves that many pixels).

    Why: the phases are told apart by the binned stage, so ``k`` is scored there, where
    every binned pixel holds enough counts for its mixture to be determined. Too few
    counts and a small or rare phase is not resolved, so ``k`` comes out too low (the
    catalyst's Pt, 1 % of the counts at 18 counts/pixel, won at about 1150 counts per
    binned pixel and lost at about 290). Many more than needed slow the multiplicative
    updates (at about 37,000 counts per binned pixel the 200-iteration fits of the true
    ``k`` had not converged and ``k + 1`` scored better; at 9,400 they were fine),
    dilute small phases in mixed binned pixels and leave fewer pixels to score on.
    :data:`TARGET_BINNED_COUNTS` lies between those measurements.

    >>> components_bin_factor([2, 4, 8, 16], 147.0, (180, 180))   # 147 * 64 >= 3000
    8
    """
    ordered = sorted(int(b) for b in bins)
    if image_shape is not None:
        roomy = [b for b in ordered
                 if int(np.prod(binned_shape(image_shape, b))) >= MIN_BINNED_PIXELS]
        if not roomy:
            return ordered[0]
        ordered = roomy
    for b in ordered:
        if b * b * counts_per_pixel >= TARGET_BINNED_COUNTS:
            return b
    return ordered[-1]


def binned_stage_score(
    binned: sp.csr_matrix, folds: Sequence[sp.csr_matrix], k: int, *, seed: int | None,
    max_iter: int = SWEEP_ITERATIONS[0], priors: SpectralPriors | None = None,
) -> Score:
    """Held-out deviance per count of the binned stage with ``k`` components.

    For each fold, the binned stage of PSNMF (:func:`psnmf.engine.two_stage.fit_binned`
    with the paper's spectra and the estimator's defaults) is fitted on the other folds
    and its prediction, scaled to one fold, is scored on that fold. The deviances are
    summed over the folds and divided by the total counts, so every count is held out
    once and each fit sees ``(folds - 1) / folds`` of them. ``folds`` partition
    ``binned`` (:func:`count_folds`). ``priors`` (fixed spectra, supports, start spectra)
    constrain every fit as they do the final one.
    """
    total = float(binned.sum())
    n_folds = len(folds)

    def fold_score(test: sp.csr_matrix) -> tuple[float, int]:
        train = binned - test
        train.eliminate_zeros()
        check_has_counts(train)
        fit = fit_binned(counts_csr(train), k, spectra="nmf", max_iter=max_iter,
                         random_state=check_random_state(seed), priors=priors).nmf
        pred = fit.scale[:, None] * (fit.A @ fit.S) / (n_folds - 1)
        return poisson_deviance(test, pred, floor=DEVIANCE_FLOOR, per_count=False), int(
            fit.n_iter)

    try:  # the folds are independent fits: side by side on the cores, summed in order
        scores = kernels.map_threads(fold_score, folds)
    except ValueError as exc:  # e.g. more components than binned pixels
        logger.info("k stage k=%d failed: %s", k, exc)
        return Score(None, "-")
    dev = 0.0
    for fold_dev, _ in scores:
        dev += fold_dev
    value = None if total <= 0 else dev / total
    return Score(value, str(max(n for _, n in scores)))


def choose_components(
    counts: sp.csr_matrix,
    image_shape: tuple[int, int],
    bin_factor: int,
    components: Sequence[int],
    *,
    seed: int | None,
    max_iter: int = SWEEP_ITERATIONS[0],
    n_folds: int = COMPONENT_FOLDS,
    patience: int | None = COMPONENT_PATIENCE,
    max_pixels: int = MAX_COMPONENT_PIXELS,
    progress: Callable[[list[ModelCandidate]], Iterable[ModelCandidate]] | None = None,
    priors: SpectralPriors | None = None,
) -> SearchResult[ModelCandidate]:
    """Choose ``k`` by the held-out deviance of the binned stage (:func:`binned_stage_score`).

    The counts are binned by ``bin_factor`` and split into ``n_folds`` folds
    (:func:`count_folds`, seeded); every ``k`` is scored on the same folds, in increasing
    order, until the deviance has risen above its minimum ``patience`` times in a row
    (``None`` scores all). Ties go to fewer components. A ``k`` that cannot be fitted (more
    components than binned pixels) is recorded as failed.

    Why the early stop: the binned-stage deviance falls until the number of phases and
    rises after it. Measured on the eight built-in samples (128 x 128, both count presets,
    seeds 0-2, k = 2..6) every curve fell strictly to its minimum and rose strictly after
    it, so the first rise ends the search; the larger ``k`` are also the slowest fits.

    Why at most ``max_pixels`` binned pixels (a seeded random subset of them, the same for
    every ``k`` and fold): the cost of the search grows with the binned pixels, its power
    does not need more: the k of every sample above is found on 256 of them, and on the
    eight samples at 256 x 256 (b = 8, 1024 binned pixels, 'medium', seed 0) a random
    quarter or half of the binned pixels chose the true k wherever all of them did (seven
    samples; the thin layer's four phases were missed by all, k = 6, and by the subsets,
    6 and 5). A random subset keeps every phase in proportion to its area; at 512 x 512
    and ``b = 8`` it quarters the work.
    """
    binned = subsample_rows(bin_counts(counts, image_shape, bin_factor), max_pixels, seed)
    folds = count_folds(binned, n_folds, seed)
    return grid_search(
        [ModelCandidate(int(bin_factor), int(k)) for k in sorted(components)],
        lambda c: binned_stage_score(binned, folds, c.n_components, seed=seed,
                                     max_iter=max_iter, priors=priors),
        patience=patience, prefer=_prefer_simple, stage="k", progress=progress,
        error=NO_SCORE,
    )


def subsample_rows(X: sp.csr_matrix, max_rows: int, seed: int | None) -> sp.csr_matrix:
    """At most ``max_rows`` rows of ``X``: all of them, or a seeded random subset in order.

    >>> X = sp.csr_matrix(np.arange(12.0).reshape(6, 2))
    >>> subsample_rows(X, 10, 0).shape, subsample_rows(X, 4, 0).shape
    ((6, 2), (4, 2))
    """
    n = X.shape[0]
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}.")
    if n <= max_rows:
        return X
    rows = np.sort(np.random.default_rng(seed).choice(n, size=int(max_rows), replace=False))
    return X[rows]


def fitted_factors(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Factors of the predicted means of a fitted PSNMF: ``(scale_ * maps_, spectra_)``."""
    S = model.spectra_
    L = model.maps_.reshape(-1, S.shape[0]) * model.scale_.reshape(-1, 1)
    if getattr(model, "pixel_mask_", None) is not None:  # masked pixels: no counts, no mean
        L = np.where(np.isnan(L), 0.0, L)
    return L, S


def candidate_fit(
    template: Any, image_shape: tuple[int, int], *, pixel_mask: np.ndarray | None = None,
    fits: dict[tuple[int, int], Any] | None = None, record: sp.csr_matrix | None = None,
) -> Callable[[sp.csr_matrix, int, int], Any]:
    """The ``fit`` of :func:`choose_model`: the estimator ``template`` at ``(b, k)``.

    Each candidate is a clone of ``template`` (a :class:`psnmf.PSNMF` configured as the
    final fit: its spectra method, priors and options) with ``(k, b)`` set, no smoothing
    (the TV weight is chosen after ``k`` and ``b``; it changes the maps, not the spectra)
    and the iteration caps :data:`SWEEP_ITERATIONS`. So ``b`` is scored for the spectra the
    final fit will have, not for another method's. ``fits``, when given, receives every
    candidate (the fitted model) fitted to ``record`` (the fitting half), by ``(b, k)``:
    the chosen one also gives the run's held-out score
    (:func:`psnmf.pipeline.steps.score`), so that half is not fitted twice.
    """
    from sklearn.base import clone

    def fit(X: sp.csr_matrix, bin_factor: int, n_components: int) -> Any:
        model = clone(template).set_params(
            n_components=n_components, bin_factor=bin_factor, smoothing=None,
            image_shape=image_shape, max_iter=SWEEP_ITERATIONS[0],
            max_iter_full=SWEEP_ITERATIONS[1],
        ).fit(X, pixel_mask=pixel_mask)
        if fits is not None and X is record:
            fits[(bin_factor, n_components)] = model
        return model

    return fit


def binned_heldout_deviance(
    X2: sp.csr_matrix, factors: tuple[np.ndarray, np.ndarray],
    image_shape: tuple[int, int] | None, scale: int,
) -> float:
    """:func:`heldout_deviance` of ``X2`` and the prediction ``factors``, both first summed
    over ``scale x scale`` pixels (``scale=1`` or no ``image_shape``: as they are).

    Why a coarser scale for choosing ``b``: at full resolution the deviance of a
    prediction is dominated by the noise of its per-pixel abundances, which a coarse ``b``
    shrinks by pulling the vertices together, so the full-resolution score preferred
    ``b = 16`` at 18 counts/pixel where the spectra were 1.4-2.8x worse than at ``b = 4``.
    Summed over blocks the abundance noise averages out and what is left is how well the
    spectra and the mean maps predict the counts.
    """
    return binned_scorer(X2, image_shape, scale)(factors)


def binned_scorer(
    X2: sp.csr_matrix, image_shape: tuple[int, int] | None, scale: int,
) -> Callable[[tuple[np.ndarray, np.ndarray]], float]:
    """:func:`binned_heldout_deviance` of ``X2`` as a function of the prediction's factors.

    ``X2`` is summed over the blocks here, once for all the candidates a search scores.
    """
    if scale <= 1 or image_shape is None:
        return lambda factors: heldout_deviance(X2, factors)
    B = binning_matrix(image_shape, scale)
    X2_binned = counts_csr(sp.csr_matrix(B @ X2))
    return lambda factors: heldout_deviance(X2_binned, (np.asarray(B @ factors[0]), factors[1]))


def choose_bin_factor(
    X1: sp.csr_matrix,
    X2: sp.csr_matrix,
    candidates: Sequence[ModelCandidate],
    fit: Callable[[sp.csr_matrix, int, int], Any],
    *,
    stage: str = "b",
    n_components: int | None = None,
    patience: int | None = None,
    progress: Callable[[list[ModelCandidate]], Iterable[ModelCandidate]] | None = None,
    image_shape: tuple[int, int] | None = None,
    score_scale: int = 1,
) -> SearchResult[ModelCandidate]:
    """Choose ``b`` by fitting PSNMF on ``X1`` and scoring its prediction of ``X2``.

    Parameters
    ----------
    X1, X2 : CSR (pixels, channels)
        The two halves of a count split (:func:`count_split`).
    candidates : sequence of ModelCandidate
        ``(b, k)`` pairs, scored in order (duplicates once).
    fit : callable
        ``fit(X1, bin_factor, n_components)`` returns a fitted model with ``maps_``,
        ``scale_``, ``spectra_`` and ``n_iter_`` (a :class:`psnmf.PSNMF`); a
        ``ValueError`` marks the candidate as failed.
    stage : str
        Recorded in the trials.
    n_components : int, optional
        Choose the best ``b`` among the candidates with this ``k`` only.
    patience : int, optional
        Stop once the deviance has risen above its minimum this many times in a row
        (:func:`grid_search`); ``None`` scores every candidate.
    image_shape : (int, int), optional
        The image shape of the rows of ``X1`` and ``X2``, for ``score_scale``.
    score_scale : int
        Both halves' counts and predictions are summed over ``score_scale x score_scale``
        pixels before scoring (:func:`binned_heldout_deviance`).
    """

    scorer = binned_scorer(X2, image_shape, score_scale)

    def score(c: ModelCandidate) -> Score:
        model = fit(X1, c.bin_factor, c.n_components)
        dev = scorer(fitted_factors(model))
        return Score(dev, f"{model.n_iter_['binned']}+{model.n_iter_['full']}")

    search = grid_search(list(dict.fromkeys(candidates)), score, patience=patience,
                         prefer=_prefer_simple, failures=(ValueError,), stage=stage,
                         progress=progress, error=NO_SCORE)
    if n_components is None:
        return search
    at_k = [t for t in search.trials if t.candidate.n_components == n_components]
    return replace(search, best=best_trial(at_k, _prefer_simple, error=NO_SCORE))


def choose_model(
    X1: sp.csr_matrix,
    X2: sp.csr_matrix,
    image_shape: tuple[int, int],
    fit: Callable[[sp.csr_matrix, int, int], Any],
    *,
    bins: Sequence[int] | None = None,
    components: Sequence[int] | None = None,
    auto_components: Sequence[int] = DEFAULT_COMPONENTS,
    seed: int | None = 0,
    max_iter: int = SWEEP_ITERATIONS[0],
    progress: Callable[[list[Any], str], Iterable[Any]] | None = None,
    priors: SpectralPriors | None = None,
    n_pixels: int | None = None,
) -> ModelChoice:
    """Choose ``k`` (when several are candidates), then ``b``, by held-out deviance.

    ``components=None`` means ``auto_components``. With several candidates, ``k`` is
    chosen first by :func:`choose_components` on the counts ``X1 + X2`` binned by
    :func:`components_bin_factor` (of ``bins`` and :data:`COMPONENT_BINS`): the held-out
    deviance of the binned stage, where the spectra are estimated. Then
    :func:`choose_bin_factor` fits the candidate (``fit``, :func:`candidate_fit`) on ``X1``
    and scores its prediction of ``X2``, both summed over :data:`SCORE_SCALE` pixels a
    side, for every ``b`` in ``bins`` at that ``k`` (for every ``(b, k)`` when
    ``components`` were given), and ``b`` is the best one at the chosen ``k``.

    Why not the full-resolution deviance for ``k`` as well: it also charges every
    component for the noise of its per-pixel abundances, which at low counts outweighs
    what a small phase adds. Scored that way at about 50 counts per binned pixel it chose
    k = 2 for all four simulated three-phase samples at 18 counts/pixel (96 x 96 and
    180 x 180, seeds 0-2); on 180 x 180 even fitted on 80 % of the counts, at each k's own
    best ``b``, it still chose 2 for the catalyst (Pt, 1 % of the counts) and left the
    ceramic a tie, while the binned stage chooses 3 for all.

    Why the final method and the 8 x 8 score for ``b``: ``b`` is chosen for the spectra
    the final fit will have. Scored at full resolution, the prediction's error is mostly
    the noise of the per-pixel abundances, which a coarse ``b`` shrinks by pulling the
    vertices together; and the paper's PSNMF is not the method whose spectra are kept.
    ``benchmarks/choose_b.py`` measures the choice against the ``b`` with the best spectra
    on the simulated samples. At one ``k`` the bin factors are scored from the largest
    down (:data:`BIN_PATIENCE`).

    ``max_iter`` caps the binned-stage fits of the k search; ``progress(items, label)``
    wraps each list of candidates (a progress bar). ``priors`` constrain the k search's
    fits (``fit`` applies them to the b search's); ``n_pixels``, the pixels in the fit
    (those not masked out), sets the counts per pixel that choose the k search's bin
    factor (default: every pixel of ``image_shape``).
    """

    def bar(label: str) -> Callable[[list[Any]], Iterable[Any]] | None:
        return None if progress is None else (lambda items: progress(items, label))

    cpp = float(X1.sum() + X2.sum()) / (n_pixels or image_shape[0] * image_shape[1])
    all_bins = tuple(bins) if bins is not None else DEFAULT_BINS
    ks = tuple(auto_components if components is None else components)
    k_search, k_bin, k_pixels = None, None, None
    if len(ks) > 1:
        pool = usable_bin_factors(sorted({*all_bins, *COMPONENT_BINS}), image_shape, max(ks))
        if not pool:
            raise ValueError(
                f"no bin factor leaves at least {max(*ks, 4)} binned pixels on the "
                f"{image_shape[0]} x {image_shape[1]} image; use fewer components."
            )
        k_bin = components_bin_factor(pool, cpp, image_shape)
        k_search = choose_components(X1 + X2, image_shape, k_bin, ks, seed=seed,
                                     max_iter=max_iter, progress=bar(f"choosing k (b={k_bin})"),
                                     priors=priors)
        k_best = k_search.best.candidate.n_components
        n_binned = int(np.prod(binned_shape(image_shape, k_bin)))
        k_pixels = (min(n_binned, MAX_COMPONENT_PIXELS), n_binned)
    else:
        k_best = int(ks[0])
    grid = components is not None and len(ks) > 1
    ks_b = ks if grid else (k_best,)
    ok = usable_bin_factors(all_bins, image_shape, max(ks_b))
    if not ok:
        raise ValueError(
            f"none of the bin factors {list(all_bins)} leaves at least {max(*ks_b, 4)} binned "
            f"pixels on the {image_shape[0]} x {image_shape[1]} image; use smaller ones."
        )
    stage = ("grid" if len(ok) > 1 else "k") if grid else "b"
    order = ok if grid else sorted(ok, reverse=True)
    b_search = choose_bin_factor(
        X1, X2, [ModelCandidate(b, k) for k in ks_b for b in order], fit, stage=stage,
        n_components=k_best, patience=None if grid else BIN_PATIENCE,
        progress=bar("sweep" if grid else f"choosing b (k={k_best})"),
        image_shape=image_shape, score_scale=SCORE_SCALE,
    )
    return ModelChoice(b_search=b_search, k_search=k_search, k_bin=k_bin,
                       k_pixels=k_pixels, seed=seed)


# ---------------------------------------------------------------------------------------
# Count splitting, deviances and the TV weight
# ---------------------------------------------------------------------------------------
@dataclass
class SmoothingChoice:
    """Evidence for the smoothing weight chosen by :func:`choose_smoothing`.

    Attributes
    ----------
    lam : float
        Chosen weight (counts units), for the full data.
    relative : float
        Chosen weight divided by the mean counts per pixel of the full data.
    grid : list of float
        Candidate weights (counts units).
    deviance : list of float
        Held-out Poisson deviance per count of each candidate (lower is better).
    penalty : str
    """

    lam: float
    relative: float
    grid: list[float] = field(default_factory=list)
    deviance: list[float] = field(default_factory=list)
    penalty: str = "tv"

    def to_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "relative": self.relative, "grid": list(self.grid),
                "deviance": list(self.deviance), "penalty": self.penalty}


def heldout_deviance_maps(
    X2: sp.csr_matrix, A: np.ndarray, S: np.ndarray, *, floor: float = DEVIANCE_FLOOR
) -> float:
    """Deviance per count of held-out counts ``X2`` over the channels, given each pixel's total.

    ``2 sum_ij X2_ij log(X2_ij / M_ij)`` with ``M_ij = t_i (a_i S)_j``, ``t_i`` the pixel's
    held-out total: the Poisson deviance with every pixel's count scale at its
    maximum-likelihood value, so it scores only what the maps and spectra predict (how a
    pixel's counts spread over the channels). Predicted means below ``floor`` count as
    ``floor``, as in :func:`heldout_deviance`: fitted spectra can be exactly
    zero in a channel, and one held-out count there would otherwise weigh more than all the
    rest. Computed from the non-zeros only.
    """
    t = np.asarray(X2.sum(axis=1)).ravel()
    total = float(t.sum())
    if total <= 0:
        return float("nan")
    M = np.ascontiguousarray(t[:, None] * A, dtype=np.float64)  # rows scaled to the totals
    _, _, xlogm = kernels.ratio_numerators(X2, M, S, want_A=False, want_S=False,
                                           floor=floor)
    return 2.0 * (kernels.xlogx_sum(X2.data) - xlogm) / total


def central_window(
    X: sp.csr_matrix, image_shape: tuple[int, int], max_pixels: int
) -> tuple[sp.csr_matrix, tuple[int, int]]:
    """The rows of ``X`` in the central window of at most ``max_pixels`` pixels."""
    ny, nx = image_shape
    if ny * nx <= max_pixels:
        return X, image_shape
    side = max(int(math.isqrt(int(max_pixels))), 2)
    wy, wx = min(ny, side), min(nx, side)
    if wy < side:  # thin image: use the spare budget along x
        wx = min(nx, max_pixels // wy)
    elif wx < side:
        wy = min(ny, max_pixels // wx)
    y0, x0 = (ny - wy) // 2, (nx - wx) // 2
    rows = ((np.arange(y0, y0 + wy)[:, None] * nx) + np.arange(x0, x0 + wx)).ravel()
    return X[rows], (wy, wx)


def choose_smoothing(
    X: Any,
    S: np.ndarray,
    image_shape: tuple[int, int],
    *,
    penalty: str = "tv",
    grid: tuple[float, ...] = SMOOTHING_GRID,
    fraction: float = 0.5,
    random_state: int | None = 0,
    max_iter: int = 1000,
    tol: float = 1e-5,
    patience: int = 1,
    max_pixels: int = 128 * 128,
    pixel_mask: np.ndarray | None = None,
) -> SmoothingChoice:
    """Choose the smoothing weight by held-out Poisson deviance (count splitting).

    The counts are thinned into ``X1`` (``fraction``) and ``X2``; for each candidate
    weight (``grid`` times the mean counts per pixel of the full data, in increasing order,
    starting from the per-pixel maps of ``X1`` and each warm-started from the previous;
    nothing of ``X2`` enters a fit) the maps are fitted to ``X1`` with the spectra
    ``S`` fixed and scored by the deviance of ``X2`` (:func:`heldout_deviance_maps`). The
    weight with the lowest deviance is returned.

    Parameters
    ----------
    X : CSR (pixels, channels) counts
    S : ndarray (k, channels) fixed spectra
    image_shape : (ny, nx)
    penalty, max_iter, tol : as in :func:`smooth_maps`
    grid : tuple of float
        Candidate weights relative to the mean counts per pixel.
    fraction : float
        Share of the counts used for fitting.
    random_state : int or None
        Seed of the count split.
    max_pixels : int
        The choice is made on the central window of at most this many pixels (the weight
        depends on the counts per pixel and the size of the features, which a window of
        ~128 x 128 pixels shows as well as the whole map, at a fraction of the time).
    patience : int
        Stop trying larger weights once the deviance has risen above its minimum this many
        times in a row (the held-out deviance is unimodal in the weight in practice; larger
        weights are also the slowest to solve).
    pixel_mask : ndarray (ny, nx) of bool, optional
        Pixels masked out (True, their counts zero): left out of the counts per pixel and
        of the TV maps (:func:`psnmf.engine.tv_maps.smooth_maps`).

    Returns
    -------
    SmoothingChoice
    """
    check_penalty(penalty)
    if not grid or min(grid) < 0:
        raise ValueError(f"grid must be non-negative weights, got {grid!r}.")
    X = sp.csr_matrix(X, dtype=np.float64)
    k = S.shape[0]
    n_fitted = X.shape[0]
    if pixel_mask is not None:
        pixel_mask = np.asarray(pixel_mask, dtype=bool).reshape(image_shape)
        n_fitted = max(int(np.count_nonzero(~pixel_mask)), 1)
        pixel_mask = central_window(pixel_mask.reshape(-1, 1), image_shape,
                                    max_pixels)[0].ravel()
    cpp = float(X.sum()) / n_fitted
    X, image_shape = central_window(X, image_shape, max_pixels)
    n = X.shape[0]
    X1, X2 = count_split(X, fraction, random_state=random_state)
    # per-pixel maps of the fitted half (each pixel to convergence): the start of the path
    A = np.full((n, k), 1.0 / k)
    kernels.solve_fixed_spectra(X1, A, np.ascontiguousarray(S, dtype=np.float64),
                                simplex=True, max_iter=1000, tol=1e-7)
    state = {"A": A}

    def score(lam: float) -> float:
        if lam > 0:
            state["A"] = smooth_maps(X1, state["A"], S, image_shape, lam, penalty=penalty,
                                     max_iter=max_iter, tol=tol, pixel_mask=pixel_mask).maps
        dev = heldout_deviance_maps(X2, state["A"], S)
        logger.debug("smoothing %.4g: held-out deviance %.6f", lam, dev)
        return dev

    search = grid_search(sorted(float(g) * cpp for g in grid), score, patience=patience,
                         stage="smoothing",
                         error="no smoothing weight could be scored (no held-out counts).")
    lam = search.best.candidate
    return SmoothingChoice(
        lam=lam, relative=lam / cpp if cpp > 0 else 0.0, grid=search.candidates,
        deviance=[float("nan") if d is None else d for d in search.deviances],
        penalty=penalty,
    )


def count_split(
    X, fraction: float = 0.5, random_state: int | np.random.Generator | None = None
):
    """Binomial thinning: split counts into two independent Poisson parts.

    If ``X ~ Poisson(M)``, then ``X1 ~ Binomial(X, fraction)`` and ``X2 = X - X1`` are
    independent with ``X1 ~ Poisson(fraction * M)`` and ``X2 ~ Poisson((1 - fraction) * M)``.

    Parameters
    ----------
    X : ndarray or scipy.sparse matrix of non-negative integer counts
    fraction : float in (0, 1)
    random_state : seed or Generator

    Returns
    -------
    X1, X2 : same type as ``X``
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), e.g. 0.5, got {fraction}.")
    check_counts_values(X, "X")
    rng = random_state if isinstance(random_state, np.random.Generator) else (
        np.random.default_rng(random_state)
    )
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        n = np.rint(X.data).astype(np.int64)
        d1 = rng.binomial(n, fraction)
        idx, ptr = X.indices.copy(), X.indptr.copy()
        X1 = sp.csr_matrix((d1.astype(np.float64), idx, ptr), shape=X.shape)
        X2 = sp.csr_matrix(((n - d1).astype(np.float64), idx.copy(), ptr.copy()), shape=X.shape)
        X1.eliminate_zeros()
        X2.eliminate_zeros()
        return X1, X2
    arr = np.asarray(X)
    n = np.rint(arr).astype(np.int64)
    X1 = rng.binomial(n, fraction)
    return X1, n - X1


def poisson_deviance(X, M, *, floor: float = DEVIANCE_FLOOR, per_count: bool = True) -> float:
    """Poisson deviance ``2 sum [X log(X / M) - (X - M)]`` of counts ``X`` under means ``M``.

    Parameters
    ----------
    X : counts, ndarray or sparse (any shape matching ``M``)
    M : predicted means (ndarray); values below ``floor`` (e.g. zeros of a raw, undenoised
        prediction, or negative values of PCA) are raised to ``floor`` so the deviance stays
        finite. The floor is part of the score: report it with the numbers.
    floor : float
    per_count : bool
        Divide by the total counts of ``X`` (comparable across datasets).
    """
    M = np.maximum(check_finite_array(M, "M"), floor)
    check_counts_values(X, "X")
    if int(np.prod(X.shape if sp.issparse(X) else np.shape(X))) != M.size:
        raise ValueError(
            f"X (shape {X.shape if sp.issparse(X) else np.shape(X)}) and M (shape {M.shape}) "
            "must hold the same number of values: M predicts the mean of every count of X."
        )
    if sp.issparse(X):
        Xc = sp.coo_matrix(X)
        Mf = M.reshape(Xc.shape)
        x = Xc.data.astype(float)
        m_nz = Mf[Xc.row, Xc.col]
        dev = 2.0 * (np.sum(x * np.log(x / m_nz)) - x.sum() + Mf.sum())
        total = x.sum()
    else:
        x = np.asarray(X, dtype=float).reshape(M.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(x > 0, x * np.log(x / M), 0.0)
        dev = 2.0 * (t.sum() - x.sum() + M.sum())
        total = x.sum()
    return float(dev / total) if per_count and total > 0 else float(dev)


def heldout_deviance(
    X2: sp.csr_matrix, predict: Any, *, floor: float = DEVIANCE_FLOOR, chunk: int = 2048
) -> float:
    """Poisson deviance per count of held-out counts under a prediction.

    The same number as ``poisson_deviance(X2, M, floor=floor)`` with ``M`` the full
    prediction, without holding ``M`` in memory at once.

    Parameters
    ----------
    X2 : CSR (pixels, channels) held-out counts
    predict : factors ``(L, S)``, sparse counts, callable or array
        * ``(L, S)``: the means are ``L @ S`` (loadings (pixels, k), spectra (k, channels);
          :func:`fitted_factors` of a fitted PSNMF), evaluated entry by entry in one pass
          (:func:`psnmf.engine._kernels.factor_deviance`);
        * a sparse matrix of counts (``X1`` of the split, the raw prediction): from the
          non-zeros (:func:`psnmf.engine._kernels.raw_deviance`);
        * a callable ``slice -> ndarray (rows, channels)`` or an array (pixels, channels):
          dense blocks of ``chunk`` rows (any other prediction).
    floor : float
        Predicted means below it count as ``floor`` (so zeros of a raw prediction and
        negative PCA values give a finite score).
    """
    X2 = counts_csr(X2)
    total = float(X2.data.sum())
    if total <= 0:
        return float("nan")
    if isinstance(predict, tuple):
        L, S = predict
        return kernels.factor_deviance(X2, L, S, floor) / total
    if sp.issparse(predict):
        return kernels.raw_deviance(X2, counts_csr(predict), floor) / total
    n = X2.shape[0]
    dev = 0.0
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        block = predict(sl) if callable(predict) else np.asarray(predict[sl])
        dev += poisson_deviance(X2[sl], block, floor=floor, per_count=False)
    return dev / total


def count_folds(X: sp.csr_matrix, n_folds: int, seed: int | None) -> list[sp.csr_matrix]:
    """Split counts into ``n_folds`` independent Poisson parts of equal mean (seeded).

    Repeated binomial thinning (:func:`count_split`): fold ``j`` takes a
    fraction ``1 / (n_folds - j)`` of what the earlier folds left.
    """
    rng = np.random.default_rng(seed)
    folds, rest = [], sp.csr_matrix(X)
    for j in range(n_folds - 1):
        part, rest = count_split(rest, 1.0 / (n_folds - j), random_state=rng)
        folds.append(part)
    folds.append(rest)
    return folds
