"""The PSNMF estimator: NMF-based pan-sharpening of STEM-EDX spectrum images.

PSNMF (Chen, Alexander & Hebert, arXiv 2405.14649):

1. Bin the counts ``b x b`` (sums keep the noise Poisson): the low-resolution,
   high-signal data.
2. Poisson NMF of the binned data: accurate phase spectra.
3. Poisson NMF of the full-resolution data, started from those spectra and the upsampled
   binned maps: high-resolution maps.
4. Fuse: stage-2 maps x stage-1 spectra x per-pixel counts = denoised cube.

Two options go beyond the paper and are on by default, each switched off by one
parameter:

* ``spectra='pure'`` moves every vertex of the binned-stage simplex whose top binned
  pixels form a pure cluster to that cluster (:mod:`psnmf.engine.pure_pixels`); a phase
  that is never pure keeps its NMF spectrum. ``spectra='nmf'`` keeps step 2's spectra.
* ``smoothing='auto'`` regularises the maps of step 3 by total variation, the weight chosen
  by held-out Poisson deviance (:func:`psnmf.selection.choose_smoothing`,
  :mod:`psnmf.engine.tv_maps`). ``smoothing=None`` keeps the per-pixel maps.

On the simulated mantle sample (180 x 180, 147 counts per pixel, seed 0) the two together
give spectral angles of 0.23 / 0.37 / 1.15 degrees and map MSE 0.0020 / 0.0012 / 0.0007,
against 2.00 / 0.55 / 1.59 and 0.0137 / 0.0050 / 0.0044 for the paper's method
(``psnmf demo``). The paper's method is ``PSNMF(spectra='nmf', smoothing=None)``.

The estimator validates and converts its input once (:func:`psnmf.hyperspy.as_counts`)
and passes the sparse counts down to the array functions of the engine
(:mod:`psnmf.engine.two_stage`, :mod:`psnmf.engine._dask` for lazy input).
"""

from __future__ import annotations

import warnings
from numbers import Real
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import metadata_routing
from sklearn.utils.validation import check_is_fitted

from psnmf import hyperspy as signals
from psnmf import priors as user_priors
from psnmf._validation import (
    check_has_counts,
    check_n_components,
    check_positive_int,
    check_random_state,
)
from psnmf.engine import _dask as lazy_engine
from psnmf.engine.binning import bin_counts, binned_shape, check_bin_factor
from psnmf.engine.poisson_nmf import INIT_METHODS, NMFResult, solve_abundances
from psnmf.engine.tv_maps import PENALTIES, smooth_maps
from psnmf.engine.two_stage import (
    NEVER_PURE_MODES,
    SPECTRA_MODES,
    STAGE2_MODES,
    VERTEX_SCALES,
    BinnedFit,
    binned_kwargs,
    extrapolate_never_pure,
    fit_binned,
    fit_full,
    refine_vertices,
)
from psnmf.selection import (
    DEFAULT_COMPONENTS,
    SPLIT_FRACTION,
    ModelChoice,
    candidate_fit,
    choose_model,
    choose_smoothing,
    count_split,
)

__all__ = ["PARAMETER_RULES", "PSNMF"]

#: Why lazy / Dask input gets per-pixel maps under ``smoothing='auto'`` (warned and kept in
#: ``smoothing_['note']``): the TV maps couple neighbouring pixels across chunks.
LAZY_SMOOTHING_NOTE = (
    "smoothing='auto' needs the whole image in memory (TV maps couple neighbouring pixels); "
    "this lazy / Dask input gets per-pixel maps. Load the data (signal.compute()) for TV "
    "maps, or pass smoothing=None to silence this warning."
)

#: The constructor parameters and what each accepts, checked once at the start of ``fit``.
#: ``(kind, bound)``: ``'int'`` an integer >= bound; ``'real'`` a finite number > bound
#: (``>=`` for ``tol``); ``'choice'`` one of bound; the others have their own checks.
PARAMETER_RULES: dict[str, tuple[str, Any]] = {
    "n_components": ("int_or_auto", 1),
    "bin_factor": ("int_or_auto", 1),
    "spectra": ("choice", SPECTRA_MODES),
    "smoothing": ("smoothing", None),
    "smoothing_penalty": ("choice", PENALTIES),
    "init": ("choice", INIT_METHODS),
    "stage2_spectra": ("choice", STAGE2_MODES),
    "max_iter": ("int", 1),
    "max_iter_full": ("int", 1),
    "tol": ("real_or_zero", 0.0),
    "random_state": ("seed", None),
    "image_shape": ("image_shape", None),
    "vertex_sd": ("real", 0.0),
    "min_cluster": ("int", 1),
    "max_dispersion": ("real", 0.0),
    "max_tail": ("real", 0.0),
    "vertex_scales": ("choice", VERTEX_SCALES),
    "never_pure": ("choice", NEVER_PURE_MODES),
}

#: What each choice means, appended to the error for a value outside the choices.
CHOICE_HINTS = {
    "spectra": "'pure' (pure-pixel spectra where the data show pure pixels) or 'nmf' (the "
               "binned-stage NMF spectra, the paper's method)",
    "smoothing_penalty": "'tv' (total variation, keeps phase boundaries sharp) or "
                         "'laplacian' (quadratic smoothness)",
    "init": "'nndsvda' (SVD-based), 'spa' (the purest pixels) or 'random'",
    "stage2_spectra": "'fixed' (maps solved for the binned-stage spectra) or 'free' (both "
                      "updated, the paper's step 3)",
    "vertex_scales": "'binned' (pure clusters of the binned pixels only) or 'multi' (also at "
                     "b/2, ..., full resolution for the vertices the binned stage kept)",
    "never_pure": "'keep' (a vertex without a pure cluster keeps NMF's spectrum), "
                  "'lines' (it is extrapolated until an element line reaches zero; needs "
                  "elements and an EDX model or a signal that has them) or 'auto' ('lines' "
                  "where the sample's elements and EDX model are known, else 'keep')",
}


def _check_choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if not (isinstance(value, str) and value in options):
        raise ValueError(
            f"{name}={value!r} is not one of {options}: use {CHOICE_HINTS[name]}."
        )


def _check_real(name: str, value: Any, bound: float, *, inclusive: bool) -> None:
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok:
        raise TypeError(f"{name} must be a finite number, got {value!r}.")
    if value < bound or (value == bound and not inclusive):
        op = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be {op} {bound:g}, got {value!r}.")


def smoothing_weight(value: Any) -> float | str:
    """``smoothing`` as a float >= 0 or ``'auto'``; a clear error otherwise."""
    if value is None:
        return 0.0
    if isinstance(value, str):
        if value == "auto":
            return "auto"
        raise ValueError(f"smoothing must be None, a number >= 0 or 'auto', got {value!r}.")
    if not isinstance(value, Real) or isinstance(value, bool):
        raise ValueError(f"smoothing must be None, a number >= 0 or 'auto', got {value!r}.")
    number = float(value)
    if not np.isfinite(number) or number < 0:
        raise ValueError(
            f"smoothing must be >= 0 (a weight relative to the counts per pixel, typically "
            f"0.01-0.3) or 'auto', got {value!r}."
        )
    return number


def check_parameters(params: dict[str, Any]) -> None:
    """Check every estimator parameter against :data:`PARAMETER_RULES`.

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of
    range, each naming the parameter, the value and what to pass instead.
    """
    for name, (kind, bound) in PARAMETER_RULES.items():
        value = params[name]
        if kind == "int":
            check_positive_int(value, name, minimum=bound)
        elif kind == "int_or_auto" and not _is_auto(value):
            try:
                check_positive_int(value, name, minimum=bound)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{exc} Pass an integer >= {bound} or 'auto' (chosen from "
                                "the data by held-out deviance).") from None
        elif kind == "real":
            _check_real(name, value, bound, inclusive=False)
        elif kind == "real_or_zero":
            _check_real(name, value, bound, inclusive=True)
        elif kind == "choice":
            _check_choice(name, value, bound)
        elif kind == "smoothing":
            smoothing_weight(value)
        elif kind == "seed":
            check_random_state(value, name)
        elif kind == "image_shape" and value is not None:
            if not isinstance(value, tuple | list | np.ndarray) or len(value) != 2:
                raise ValueError(
                    f"image_shape must be a pair of integers (ny, nx), got {value!r}."
                )


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def _max_bin_for(image_shape: tuple[int, int], k: int) -> int:
    """Largest bin factor that leaves at least ``k`` binned pixels."""
    for b in range(max(image_shape), 0, -1):
        if int(np.prod(binned_shape(image_shape, b))) >= k:
            return b
    return 1


def _split_seed(random_state: Any) -> int:
    """Seed of the count split of ``smoothing='auto'`` (fixed when no seed is given)."""
    return int(random_state) if isinstance(random_state, int | np.integer) else 0


class PSNMF(TransformerMixin, BaseEstimator):
    """NMF-based pan-sharpening of a spectrum image, with pure-pixel spectra and TV maps.

    Parameters
    ----------
    n_components : int or 'auto', default=3
        Number of phases ``k``. ``'auto'``: the ``k`` among
        :data:`psnmf.selection.DEFAULT_COMPONENTS` with the lowest held-out deviance of the
        binned stage (:func:`psnmf.selection.choose_model`, as ``psnmf unmix`` chooses it).
    bin_factor : int or 'auto', default=4
        Spatial bin factor ``b`` of the first stage. Partial edge bins are kept.
        ``'auto'``: the ``b`` among :data:`psnmf.selection.DEFAULT_BINS` whose fit (this
        estimator's method, no smoothing), fitted on one half of a count split, best
        predicts the other half summed over 8 x 8 pixels
        (:func:`psnmf.selection.choose_model`).
    spectra : {'pure', 'nmf'}, default='pure'
        Spectra of the binned stage. 'pure': each vertex of the NMF simplex whose top binned
        pixels form a pure cluster (at least ``min_cluster`` pixels scattering like counting
        noise, ``max_dispersion``, with few pixels just below, ``max_tail``) moves to that
        cluster's mean, and the binned maps are re-solved
        (:func:`psnmf.engine.pure_pixels.vertex_correction`); a phase that is never pure
        keeps its NMF spectrum. 'nmf': the NMF spectra, as in the paper.
    smoothing : float, 'auto' or None, default='auto'
        Spatial regularisation of the full-resolution maps
        (:func:`psnmf.engine.tv_maps.smooth_maps`): ``None`` or 0 keeps the per-pixel maps
        (the paper); a number is the penalty weight relative to the mean counts per pixel
        (typically 0.01-0.3); ``'auto'`` chooses it by held-out Poisson deviance
        (:func:`psnmf.selection.choose_smoothing`). TV maps need the whole image in
        memory: lazy / Dask input gets per-pixel maps under ``'auto'`` (with a warning, and
        ``smoothing_['note']`` says why) and is refused with a number.
    smoothing_penalty : {'tv', 'laplacian'}, default='tv'
        Total variation (keeps phase boundaries sharp) or quadratic (Laplacian) smoothness.
    init : {'nndsvda', 'spa', 'random'}, default='nndsvda'
        Initialisation of the binned-data NMF.
    stage2_spectra : {'fixed', 'free'}, default='fixed'
        In the full-resolution stage, keep the binned-stage spectra fixed and solve the
        maps only (a convex problem per pixel, so the maps are exactly consistent with the
        fused spectra), or update both as in the paper's step 3 ('free'). In both cases the
        fused result uses the binned-stage spectra, as in the paper's step 4.
    max_iter : int, default=2000
        Iteration cap of the binned stage.
    max_iter_full : int, default=500
        Iteration cap of the full-resolution stage.
    tol : float, default=1e-7
        Relative change of the loss at which each stage stops.
    random_state : int, numpy Generator, numpy RandomState or None
        Seed of the initialisation (and of the count split of ``smoothing='auto'``, which
        uses seed 0 unless an int is given).
    image_shape : (ny, nx), optional
        Layout of the pixels when ``fit`` receives a 2-D (pixels, channels) matrix, as it
        does when used as ``algorithm=`` in HyperSpy's ``decomposition()``. Needed whenever
        the fit uses the layout (``bin_factor > 1`` or smoothing); with ``bin_factor=1``
        and ``smoothing=None`` a matrix without it is taken as one column of pixels.
    vertex_sd : float, default=1.5
        Width of a pure cluster in counting-noise sd ('pure').
    min_cluster : int, default=20
        Fewest binned pixels of a cluster for its vertex to move ('pure').
    max_dispersion : float, default=1.5
        Largest scatter of a cluster, in units of the counting noise ('pure').
    max_tail : float, default=1.0
        Pixels allowed in the 4-sd band below a cluster, per member ('pure').
    vertex_scales : {'multi', 'binned'}, default='multi'
        Where the pure clusters are looked for ('pure'). 'multi': among the binned pixels,
        and a vertex the binned stage kept (a phase with almost no pure ``b x b`` pixels:
        small grains, thin layers) is also tried at ``b/2``, ``b/4``, ..., full
        resolution, coarsest first, with the same cluster tests and a cluster centre
        inside the vertex, and moved to the fitted-model spectrum of its cluster's summed
        counts (:func:`psnmf.engine.two_stage.refine_vertices`). Costs one abundance solve
        per scale tried, only when a vertex is kept; a fit whose vertices all move in the
        binned stage is the same as with 'binned'. The bootstrap and the debiased spectra
        (:mod:`psnmf.uncertainty`) replay the finer-scale moves. 'binned': among the
        binned pixels only. Lazy / Dask input keeps 'binned'.
    never_pure : {'keep', 'lines', 'auto'}, default='keep'
        The vertices without a pure cluster or a corner of their faces ('pure'): phases
        never pure (nanoparticles on a support, nanoclusters in a matrix). 'keep': NMF's
        vertex, inside the true simplex (the phase plus some of its neighbours). 'lines':
        each is moved away from the other vertices as far as all its element line-family
        intensities stay non-negative within noise
        (:func:`psnmf.engine.two_stage.extrapolate_never_pure`): a phase without the
        support's or the matrix's elements loses them, which the likelihood alone cannot
        decide. The move is kept only where it is evidence of a missing element
        (:func:`psnmf.engine.line_vertices.step_supported`: resolved beyond the lines'
        zero band, stopped by an element a neighbour holds, that element's highest line
        family at zero). A vertex whose pure pixels the finer scales find at the vertex
        itself is not moved either: the data show that phase pure, and the lines cannot
        say how far out a phase lies that holds every element of its neighbour (M23C6
        carbides in ferrite: on spectra of another physics code, espm, its Fe K and L
        both pass the line tests, and extrapolated it lost its Fe, 2.1 -> 15.7 degrees
        from the truth). Needs ``elements`` and ``edx_model`` (or a HyperSpy signal with
        ``Sample.elements`` and its energy axis). 'auto': 'lines' where those are known,
        'keep' where not (a NumPy array without ``elements`` and ``edx_model``,
        ``spectra='nmf'``, lazy data). On five samples, both presets, 96 x 96, seeds 0-1
        and three physics (the model's own, another EDX model, espm's spectra;
        ``benchmarks/never_pure_physics.py``), 'auto' made no phase more than 1 % worse
        than 'keep' and the never-pure phases better (median degrees at 'medium': Pt 28.5
        -> 8.0 on the model's data, Y2Ti2O7 13.9 -> 2.6 on the other model's and 7.5 ->
        2.2 on espm's, Au 4.6 -> 2.8 on espm's); 'keep' is the default. The
        bootstrap
        (:mod:`psnmf.uncertainty`) replays the extrapolation of the vertices it moved,
        with the same elements and model (``line_physics_``).
    elements : list of str, optional
        The sample's elements, for ``never_pure`` 'lines' or 'auto' (default: the signal's
        ``Sample.elements``).
    edx_model : psnmf.physics.EDXModel, optional
        The forward model on the data's energy axis, for ``never_pure`` 'lines' or 'auto'
        (default: :func:`psnmf.quantify.model_for_signal` of the signal).
    fixed_spectra : dict {component: array (channels,)}, optional
        Spectra measured on a reference, by component index (or a list: item j for
        component j): the fitted spectrum of that component is the given one, normalised
        to sum one, in every stage (the binned NMF does not update it, no vertex move moves
        it, the full-resolution maps are solved with it). Finite, non-negative, not all
        zero, on the data's channels.
    spectra_mask : array (m, channels) of bool, optional
        Spectral support of components ``0 .. m - 1`` (``m <= k``; the other components
        are unconstrained): False where a component may hold no line (the channels of an
        element forbidden in that phase). Each run of False channels carries a smooth
        convex curve instead (the continuum and the tails of the phase's other lines, no
        peak; :class:`psnmf.engine.priors.ContinuumWindows`), fitted in the binned NMF's EM
        step; a spectrum moved to a pure cluster (or at a finer scale, or by
        ``never_pure='lines'``) has those windows projected onto such curves and is
        renormalised. ``vertex_transform_ @ nmf_spectra_`` then differs from ``spectra_``
        in those channels only.
    init_rois : dict {component: bool array (ny, nx)}, optional
        Regions of interest, by component index (or a list): the binned NMF starts
        component j from the normalised summed spectrum of its region (the other
        components from ``init``) and runs from there, so component j is the phase of
        region j.

    With ``n_components='auto'`` the candidates are restricted to ``k`` above the largest
    component index the priors name (and the k search fits with the priors too).

    Attributes
    ----------
    spectra_ : ndarray (k, channels)
        Phase spectra of the binned stage, rows summing to one.
    components_ : ndarray (k, channels)
        Same as ``spectra_`` (scikit-learn / HyperSpy name).
    maps_ : ndarray (ny, nx, k)
        Full-resolution abundance maps, summing to one per pixel.
    scale_ : ndarray (ny, nx)
        Per-pixel count scale (total counts of the pixel, the maximum-likelihood value).
    binned_maps_ : ndarray (ceil(ny/b), ceil(nx/b), k)
        Maps of the binned stage (for ``spectra_``).
    full_spectra_ : ndarray (k, channels)
        Spectra at the end of the full-resolution stage (``spectra_`` when fixed).
    nmf_spectra_ : ndarray (k, channels)
        NMF spectra of the binned stage, before the pure-pixel correction.
    binned_nmf_ : psnmf.engine.poisson_nmf.NMFResult
        The binned stage's NMF (factors, loss history, iterations), which a fit of the same
        counts with a higher iteration cap can continue (``fit(resume_binned=...)``).
    vertex_moved_ : ndarray (k,) of bool
        Which spectra moved to a pure cluster (all False for 'nmf').
    vertex_transform_ : ndarray (k, k)
        ``spectra_ = vertex_transform_ @ nmf_spectra_`` (identity for 'nmf').
    vertex_clusters_ : list of PureCluster or None
        The pure cluster found for each component (``None`` for 'nmf').
    vertex_scale_ : ndarray (k,) of int
        The bin factor of the scale at which each spectrum moved to a pure cluster (``b``
        for the binned stage, smaller with ``vertex_scales='multi'``; 0: kept).
    vertex_steps_ : ndarray (k, k)
        ``never_pure`` 'lines' or 'auto': the step of each extrapolated vertex away from
        each other vertex (zero rows for the vertices not moved; all zero otherwise).
    line_physics_ : tuple (EDXModel, list of str) or None
        The EDX model and elements the line extrapolation ran with (given, or from the
        signal), so that the bootstrap (:func:`psnmf.uncertainty.bootstrap`) replays it
        with the same physics; None where it did not run ('keep', or 'auto' without them).
    loss_ : dict
        ``{'binned': ndarray, 'full': ndarray}`` loss (generalised KL) histories.
    n_iter_ : dict
        Iterations run by each stage.
    converged_ : dict
        Whether each stage stopped on ``tol`` before its iteration cap.
    image_shape_ : (ny, nx)
    n_components_, bin_factor_ : int
        The ``k`` and ``b`` used (chosen from the data where ``'auto'``).
    selection_ : psnmf.selection.ModelChoice or None
        The evidence of the ``'auto'`` choices (every candidate and its held-out deviance);
        ``None`` when both were given.
    n_features_in_ : int
        Number of channels.
    smoothing_ : dict
        ``{'lam': weight in counts, 'relative': weight / mean counts per pixel, ...}``
        with, for ``'auto'``, the candidate weights and their held-out deviances.
    unsmoothed_maps_ : ndarray (ny, nx, k) or None
        The per-pixel maps before smoothing (``None`` without smoothing).
    pixel_mask_ : ndarray (ny, nx) of bool or None
        The pixels masked out of the fit (``fit(pixel_mask=...)``); their ``maps_`` (and
        ``unsmoothed_maps_``) are NaN, their ``scale_`` is 0 and their denoised spectra
        (``reconstruct``) NaN: not estimated.
    spectral_priors_ : psnmf.engine.priors.SpectralPriors or None
        The checked spectral priors the fit ran with (fixed spectra normalised, region
        spectra summed).
    template_ : object or None
        The axes and metadata of a HyperSpy input (no data), from which
        :meth:`reconstruct`, :meth:`get_spectra` and :meth:`get_maps` build signals;
        ``None`` for array input.

    Examples
    --------
    >>> import numpy as np
    >>> from psnmf import PSNMF
    >>> rng = np.random.default_rng(0)
    >>> spectra = rng.dirichlet(np.ones(64), size=2)
    >>> maps = np.zeros((40, 40, 2)); maps[:, :20, 0] = 1; maps[:, 20:, 1] = 1
    >>> cube = rng.poisson(50 * maps @ spectra)
    >>> model = PSNMF(n_components=2, bin_factor=4, random_state=0).fit(cube)
    >>> model.maps_.shape, bool(np.allclose(model.maps_.sum(-1), 1))
    ((40, 40, 2), True)
    >>> model.vertex_moved_.tolist(), model.smoothing_["penalty"]
    ([True, True], 'tv')

    The paper's method:

    >>> paper = PSNMF(2, 4, spectra="nmf", smoothing=None, random_state=0).fit(cube)
    >>> paper.vertex_moved_.tolist(), paper.unsmoothed_maps_ is None
    ([False, False], True)
    """

    #: ``resume_binned`` is this estimator's own fit option, never routed by a meta-estimator
    #: (scikit-learn then adds no ``set_fit_request``).
    __metadata_request__fit = {"resume_binned": metadata_routing.UNUSED,
                               "pixel_mask": metadata_routing.UNUSED}

    def __init__(
        self,
        n_components: int = 3,
        bin_factor: int = 4,
        *,
        spectra: str = "pure",
        smoothing: float | str | None = "auto",
        smoothing_penalty: str = "tv",
        init: str = "nndsvda",
        stage2_spectra: str = "fixed",
        max_iter: int = 2000,
        max_iter_full: int = 500,
        tol: float = 1e-7,
        random_state: int | np.random.Generator | np.random.RandomState | None = None,
        image_shape: tuple[int, int] | None = None,
        vertex_sd: float = 1.5,
        min_cluster: int = 20,
        max_dispersion: float = 1.5,
        max_tail: float = 1.0,
        vertex_scales: str = "multi",
        never_pure: str = "keep",
        elements: list[str] | tuple[str, ...] | None = None,
        edx_model: Any = None,
        fixed_spectra: Any = None,
        spectra_mask: Any = None,
        init_rois: Any = None,
    ) -> None:
        self.n_components = n_components
        self.bin_factor = bin_factor
        self.spectra = spectra
        self.smoothing = smoothing
        self.smoothing_penalty = smoothing_penalty
        self.init = init
        self.stage2_spectra = stage2_spectra
        self.max_iter = max_iter
        self.max_iter_full = max_iter_full
        self.tol = tol
        self.random_state = random_state
        self.image_shape = image_shape
        self.vertex_sd = vertex_sd
        self.min_cluster = min_cluster
        self.max_dispersion = max_dispersion
        self.max_tail = max_tail
        self.vertex_scales = vertex_scales
        self.never_pure = never_pure
        self.elements = elements
        self.edx_model = edx_model
        self.fixed_spectra = fixed_spectra
        self.spectra_mask = spectra_mask
        self.init_rois = init_rois

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # counts
        tags.input_tags.sparse = True
        tags.input_tags.three_d_array = True  # (ny, nx, channels) spectrum images
        return tags

    # -- fitting -----------------------------------------------------------------------
    def _check_layout(
        self, image_shape: tuple[int, int], n_channels: int, k: Any, b: Any
    ) -> tuple[int, int]:
        """``(b, k)`` after the checks that need the data's shape."""
        b = check_bin_factor(b, image_shape)
        nb = int(np.prod(binned_shape(image_shape, b)))
        k = int(k)
        if k > nb:
            raise ValueError(
                f"n_components={k} is more than the binned image can support: bin_factor={b}"
                f" leaves {nb} binned pixels on the {image_shape[0]} x {image_shape[1]} image."
                f" Use a bin_factor of at most {_max_bin_for(image_shape, k)} or fewer "
                "components."
            )
        check_n_components(k, (nb, n_channels))
        return b, k

    def _matrix_shape(self, X: Any) -> tuple[int, int] | None:
        """``image_shape`` to convert ``X`` with: the given one, or one column of pixels for
        a matrix when the fit does not use the layout (``bin_factor=1``, no smoothing)."""
        if self.image_shape is not None or signals.is_signal(X):
            return self.image_shape
        if self.bin_factor != 1 or smoothing_weight(self.smoothing) != 0.0:
            return None  # the layout is used: a matrix needs image_shape
        try:
            shape = X.shape if sp.issparse(X) else np.asarray(X).shape
        except (TypeError, ValueError):  # not array-like: as_counts names the problem
            return None
        if len(shape) == 2:
            return (int(shape[0]), 1)
        return None

    def fit(self, X: Any, y: None = None, *, resume_binned: NMFResult | None = None,
            pixel_mask: Any = None) -> PSNMF:
        """Fit PSNMF to a spectrum image.

        Parameters
        ----------
        X : ndarray (ny, nx, channels), HyperSpy Signal1D with two navigation axes, dask
            array or lazy signal, or a (pixels, channels) matrix together with
            ``image_shape``.
        y : ignored
        resume_binned : NMFResult, optional
            ``binned_nmf_`` of an earlier fit of the same ``X`` with the same
            ``n_components``, ``bin_factor``, ``init`` and ``random_state`` and a lower
            ``max_iter`` (a candidate of a model search): the binned stage's NMF continues
            from where that one stopped instead of starting again, with the same result
            (:func:`psnmf.engine.poisson_nmf.poisson_nmf`'s ``resume``). Not for lazy
            input or ``'auto'`` parameters.
        pixel_mask : bool array (ny, nx), optional
            Pixels to leave out of the fit (True: vacuum, contamination, damage). Their
            counts are set to zero, which removes them from the likelihood (the count scale
            of a pixel is its total counts; see :mod:`psnmf.priors`), and the TV maps do not
            link pixels through them: they do not influence the spectra or the other
            pixels' maps, and their maps are NaN.

        Returns
        -------
        self
        """
        check_parameters(self.get_params(deep=False))
        if resume_binned is not None and (lazy_engine.is_lazy(X)
                                          or _is_auto(self.n_components)
                                          or _is_auto(self.bin_factor)):
            raise ValueError("resume_binned continues a binned stage of the same counts, k "
                             "and b: give n_components and bin_factor as numbers and the "
                             "data in memory, or drop resume_binned.")
        if lazy_engine.is_lazy(X):
            if self._has_priors() or pixel_mask is not None:
                raise ValueError("fixed_spectra, spectra_mask, init_rois and pixel_mask need "
                                 "the data in memory; load them (signal.compute()) or fit "
                                 "without priors.")
            return self._fit_lazy(X)
        lines = self._line_physics(X)
        counts, shape, template = signals.as_counts(X, self._matrix_shape(X))
        mask = user_priors.check_pixel_mask(pixel_mask, shape)
        counts = user_priors.apply_pixel_mask(counts, mask)
        check_has_counts(counts)
        priors = user_priors.spectral_priors(
            counts, shape, fixed_spectra=self.fixed_spectra, spectra_mask=self.spectra_mask,
            init_rois=self.init_rois)
        if priors is not None and not _is_auto(self.n_components):
            user_priors.check_coverage(counts, priors, int(self.n_components))
        k, b, selection = self._choose(counts, shape, priors, mask)
        b, k = self._check_layout(shape, counts.shape[1], k, b)
        user_priors.check_coverage(counts, priors, k)
        binned = bin_counts(counts, shape, b)
        stage1 = fit_binned(binned, k, random_state=self.random_state, resume=resume_binned,
                            priors=priors, **binned_kwargs(self.get_params()))
        if self.spectra == "pure" and self.vertex_scales == "multi":
            stage1 = refine_vertices(
                counts, shape, b, stage1, vertex_sd=self.vertex_sd,
                min_cluster=self.min_cluster, max_dispersion=self.max_dispersion,
                max_tail=self.max_tail, max_iter=self.max_iter_full, tol=self.tol,
                priors=priors,
            )
        steps = np.zeros((k, k))
        if lines is not None:
            stage1, steps = extrapolate_never_pure(binned, stage1, *lines,
                                                   max_iter=self.max_iter, priors=priors)
        stage2 = fit_full(counts, stage1.spectra, stage1.maps, shape, b,
                          stage2_spectra=self.stage2_spectra, max_iter=self.max_iter_full,
                          tol=self.tol, start=stage1.full_maps, priors=priors)
        maps, smoothing, unsmoothed = self._smooth(counts, stage2.A, stage1.spectra, shape,
                                                   mask)
        self._set_fitted(shape, b, template, stage1, stage2, maps, smoothing, unsmoothed,
                         selection, steps)
        self.line_physics_ = lines
        self.pixel_mask_ = mask
        self.spectral_priors_ = priors
        if mask is not None:  # not estimated
            self.maps_[mask] = np.nan
            if self.unsmoothed_maps_ is not None:
                self.unsmoothed_maps_[mask] = np.nan
        return self

    def _has_priors(self) -> bool:
        return any(v is not None for v in (self.fixed_spectra, self.spectra_mask,
                                           self.init_rois))

    def _line_physics(self, X: Any) -> tuple[Any, list[str]] | None:
        """``(edx_model, elements)`` for ``never_pure='lines'``, and for 'auto' where both
        are known and ``spectra='pure'``; else None.

        Both from the parameters where given, else from the signal (its energy axis and
        metadata, :func:`psnmf.quantify.model_for_signal`; ``Sample.elements``).
        """
        if self.never_pure == "keep" or (self.never_pure == "auto"
                                         and self.spectra != "pure"):
            return None
        if self.spectra != "pure":
            raise ValueError(
                "never_pure='lines' extrapolates the vertices that have no pure cluster, "
                "which needs spectra='pure'; use spectra='pure' or never_pure='keep'."
            )
        model, elements = self.edx_model, self.elements
        if signals.is_signal(X):
            if elements is None:
                elements = list(X.metadata.get_item("Sample.elements", []) or [])
            if model is None and elements:
                from psnmf.quantify import model_for_signal

                model = model_for_signal(X)
        if (model is None or not elements) and self.never_pure == "auto":
            return None
        if model is None or not elements:
            raise ValueError(
                "never_pure='lines' needs the sample's elements and the EDX model of the "
                "data's energy axis: pass elements=[...] and "
                "edx_model=EDXModel.for_axis(offset, scale, size), or fit a HyperSpy EDS "
                "signal with Sample.elements set."
            )
        return model, list(elements)

    def _fit_lazy(self, X: Any) -> PSNMF:
        """``fit`` on a dask array or lazy signal: binning and stage 2 chunk by chunk."""
        template = None
        data = X
        if signals.is_signal(X):
            signals.check_spectrum_image(X, "X")
            template, data = signals.signal_template(X), X.data
        if data.ndim != 3:
            raise ValueError(
                f"X must be a lazy spectrum image of shape (ny, nx, channels), got shape "
                f"{tuple(data.shape)}."
            )
        if self.never_pure == "lines":
            raise ValueError(
                "never_pure='lines' is not available for lazy / Dask data yet; use "
                "never_pure='keep' or load the data into memory (signal.compute())."
            )
        if self.stage2_spectra != "fixed":
            raise ValueError(
                "stage2_spectra='free' couples all pixels and cannot run chunk by chunk; use "
                "stage2_spectra='fixed' (the default) for lazy / Dask data, or load the data "
                "into memory (signal.compute())."
            )
        smoothing = {"lam": 0.0, "relative": 0.0, "penalty": None}
        weight = smoothing_weight(self.smoothing)
        if weight == "auto":
            smoothing["note"] = LAZY_SMOOTHING_NOTE
            warnings.warn(LAZY_SMOOTHING_NOTE, UserWarning, stacklevel=3)
        elif weight != 0.0:
            raise ValueError(
                f"smoothing={self.smoothing!r} couples neighbouring pixels and needs the "
                "whole image in memory; use smoothing=None for lazy / Dask data, or load the "
                "data into memory (signal.compute())."
            )
        ny, nx, ne = (int(n) for n in data.shape)
        shape = (ny, nx)
        if _is_auto(self.n_components) or _is_auto(self.bin_factor):
            raise ValueError(
                "n_components='auto' and bin_factor='auto' score candidate fits on a count "
                "split of the whole image, which needs it in memory: give both as numbers "
                "for lazy / Dask data (choose them with psnmf.pipeline.sweep on a crop or a "
                "binned copy), or load the data (signal.compute())."
            )
        b, k = self._check_layout(shape, ne, self.n_components, self.bin_factor)
        binned = lazy_engine.bin_lazy(data, b)
        check_has_counts(binned)
        stage1 = fit_binned(binned, k, random_state=self.random_state,
                            **binned_kwargs(self.get_params()))
        stage2 = lazy_engine.fit_full_lazy(data, stage1.spectra, stage1.maps, b,
                                           max_iter=self.max_iter_full, tol=self.tol)
        return self._set_fitted(shape, b, template, stage1, stage2, stage2.A, smoothing, None)

    def _choose(
        self, counts: sp.csr_matrix, shape: tuple[int, int], priors: Any = None,
        mask: np.ndarray | None = None,
    ) -> tuple[Any, Any, ModelChoice | None]:
        """``(k, b, evidence)``: the given values, or those chosen where ``'auto'``.

        One count split (seeded like the TV-weight choice) and
        :func:`psnmf.selection.choose_model`, the same search as ``psnmf unmix``: ``k`` by
        the held-out deviance of the binned stage, then ``b`` by that of this estimator's
        own method (:func:`psnmf.selection.candidate_fit`: no smoothing, the search's
        iteration caps) fitted on one half and scored on the other. With priors naming
        components up to ``m - 1``, the candidate ``k`` are those >= ``m``; the candidates
        are fitted with the priors and ``pixel_mask``.
        """
        k_auto, b_auto = _is_auto(self.n_components), _is_auto(self.bin_factor)
        if not (k_auto or b_auto):
            return self.n_components, self.bin_factor, None
        ks = (self.n_components,)
        if k_auto:
            least = 0 if priors is None else priors.min_components()
            ks = tuple(c for c in DEFAULT_COMPONENTS if c >= least)
            if not ks:
                raise ValueError(
                    f"the priors name component {least - 1}, more than any candidate of "
                    f"n_components='auto' ({list(DEFAULT_COMPONENTS)}): give n_components "
                    f">= {least}.")
        seed = _split_seed(self.random_state)
        X1, X2 = count_split(counts, SPLIT_FRACTION, random_state=seed)
        choice = choose_model(
            X1, X2, shape, candidate_fit(self, shape, pixel_mask=mask),
            bins=None if b_auto else (self.bin_factor,),
            components=None if k_auto and ks == DEFAULT_COMPONENTS else ks, seed=seed,
            priors=priors,
            n_pixels=None if mask is None else int(np.count_nonzero(~mask)),
        )
        return choice.n_components, choice.bin_factor, choice

    def _smooth(
        self, counts: sp.csr_matrix, maps: np.ndarray, spectra: np.ndarray,
        shape: tuple[int, int], mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, Any], np.ndarray | None]:
        """``(maps, smoothing_, unsmoothed_maps_)`` of the ``smoothing`` option.

        The weight is relative to the mean counts of the pixels in the fit (not masked out).
        """
        value = smoothing_weight(self.smoothing)
        if value == 0.0:
            return maps, {"lam": 0.0, "relative": 0.0, "penalty": None}, None
        unsmoothed = maps.reshape(*shape, spectra.shape[0]).copy()
        if value == "auto":
            choice = choose_smoothing(counts, spectra, shape, penalty=self.smoothing_penalty,
                                      random_state=_split_seed(self.random_state),
                                      pixel_mask=mask)
            info = choice.to_dict()
        else:
            n_fitted = counts.shape[0] if mask is None else int(np.count_nonzero(~mask))
            cpp = float(counts.sum()) / n_fitted
            info = {"lam": float(value) * cpp, "relative": float(value),
                    "penalty": self.smoothing_penalty}
        if info["lam"] == 0.0:
            return maps, info, unsmoothed
        res = smooth_maps(counts, maps, spectra, shape, info["lam"],
                          penalty=self.smoothing_penalty, pixel_mask=mask)
        info["n_iter"] = res.n_iter
        return res.maps, info, unsmoothed

    def _set_fitted(
        self,
        shape: tuple[int, int],
        b: int,
        template: Any,
        stage1: BinnedFit,
        stage2: NMFResult,
        maps: np.ndarray,
        smoothing: dict[str, Any],
        unsmoothed: np.ndarray | None,
        selection: ModelChoice | None = None,
        steps: np.ndarray | None = None,
    ) -> PSNMF:
        """Store every fitted attribute (the one place, for the in-memory and lazy paths)."""
        k = stage1.spectra.shape[0]
        self.pixel_mask_ = None
        self.spectral_priors_ = None
        self.vertex_steps_ = np.zeros((k, k)) if steps is None else steps
        self.line_physics_ = None
        self.image_shape_ = shape
        self.n_components_ = k
        self.bin_factor_ = b
        self.selection_ = selection
        self.template_ = template
        self.spectra_ = stage1.spectra
        self.components_ = stage1.spectra
        self.nmf_spectra_ = stage1.nmf.S
        self.binned_nmf_ = stage1.nmf
        self.vertex_moved_ = stage1.moved
        self.vertex_transform_ = stage1.transform
        self.vertex_clusters_ = stage1.clusters
        self.vertex_scale_ = (stage1.scales if stage1.scales is not None
                              else np.where(stage1.moved, b, 0))
        self.full_spectra_ = stage2.S
        self.maps_ = maps.reshape(*shape, k)
        self.scale_ = stage2.scale.reshape(shape)
        self.binned_maps_ = stage1.maps.reshape(*binned_shape(shape, b), k)
        self.loss_ = {"binned": stage1.nmf.loss, "full": stage2.loss}
        self.n_iter_ = {"binned": stage1.nmf.n_iter, "full": stage2.n_iter}
        self.converged_ = {"binned": stage1.nmf.converged, "full": stage2.converged}
        self.n_features_in_ = stage1.spectra.shape[1]
        self.smoothing_ = smoothing
        self.unsmoothed_maps_ = unsmoothed
        return self

    def fit_transform(self, X: Any, y: None = None) -> np.ndarray:
        """Fit, then return loadings ``scale_ * maps_`` as (pixels, k).

        ``loadings @ components_`` is the fused denoised data, which is what HyperSpy's
        ``decomposition(algorithm=PSNMF(...))`` stores as loadings and factors.
        """
        self.fit(X)
        return (self.scale_[..., None] * self.maps_).reshape(-1, self.spectra_.shape[0])

    def transform(self, X: Any) -> np.ndarray:
        """Loadings (pixels, k) of new counts with the fitted spectra held fixed."""
        self._check_fitted()
        counts, _, _ = signals.as_counts(X, None, allow_line_scan=True)
        if counts.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {counts.shape[1]} channels but the model was fitted on "
                f"{self.n_features_in_} (X has {counts.shape[1]} features, but PSNMF is "
                f"expecting {self.n_features_in_} features as input); transform data with "
                "the same energy axis (and energy_range) as in fit."
            )
        res = solve_abundances(counts, self.spectra_, max_iter=self.max_iter_full, tol=self.tol,
                               check_input=False)
        return res.scale[:, None] * res.A

    # -- results -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        check_is_fitted(self, "spectra_",
                        msg="This PSNMF is not fitted yet; call fit(X) first.")

    def reconstruct(self, lazy: bool = False) -> Any:
        """The fused denoised counts cube ``scale * maps @ spectra``, shape (ny, nx, channels).

        Parameters
        ----------
        lazy : bool, default=False
            Return the cube as a float32 dask array (or lazy signal) built band by band,
            instead of computing it: a 512 x 512 x 2048 cube is 4 GB in float64, while the
            fitted maps and spectra are a few MB.

        Returns
        -------
        A signal of the input's class with its axes and metadata when the model was fitted
        on a HyperSpy signal (lazy when ``lazy``), else an ndarray (float64) or dask array.
        """
        self._check_fitted()
        if lazy:
            cube = lazy_engine.reconstruct_lazy(self.maps_, self.scale_, self.spectra_)
        else:
            cube = self.scale_[..., None] * (self.maps_ @ self.spectra_)
        if self.template_ is None:
            return cube
        return signals.cube_signal(cube, self.template_, title="PSNMF denoised")

    def get_spectra(self) -> Any:
        """Spectra as a signal (energy axis and metadata of the input) or the ndarray."""
        self._check_fitted()
        if self.template_ is not None:
            return signals.spectra_signal(self.spectra_, self.template_)
        return self.spectra_

    def get_maps(self) -> Any:
        """Maps as a Signal2D (component | y, x) with the input's spatial axes, or ndarray."""
        self._check_fitted()
        if self.template_ is not None:
            return signals.maps_signal(self.maps_, self.template_)
        return self.maps_
