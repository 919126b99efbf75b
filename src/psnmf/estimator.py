"""The PSNMF estimator: NMF-based pan-sharpening (Chen, Alexander & Hebert, arXiv 2405.14649).

1. Bin the counts ``b x b`` (sums keep the noise Poisson): the low-resolution,
   high-signal data (LR-HS).
2. Poisson NMF of the binned data: accurate phase spectra.
3. Poisson NMF of the full-resolution data (HR-LS), started from those spectra and the
   upsampled binned maps: high-resolution maps.
4. Fuse: stage-2 maps x stage-1 spectra x per-pixel counts = denoised cube (HR-HS).

Optionally (``smoothing``, not in the paper), the maps of step 3 are spatially regularised
by a total-variation prior whose weight is chosen by held-out deviance
(:mod:`psnmf.engine.tv_maps`).

Abundances sum to one per pixel throughout (see :mod:`psnmf.engine.poisson_nmf`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from psnmf import hyperspy as _signals
from psnmf._validation import (
    check_has_counts,
    check_n_components,
    check_positive_int,
    check_random_state,
)
from psnmf.engine.binning import bin_counts, binned_shape, check_bin_factor, upsample_maps
from psnmf.engine.poisson_nmf import INIT_METHODS, NMFResult, poisson_nmf, solve_abundances
from psnmf.engine.tv_maps import PENALTIES, smooth_maps
from psnmf.selection import choose_smoothing

STAGE2_MODES = ("fixed", "free")
#: Weight of the uniform map mixed into the upsampled stage-1 maps that start stage 2.
START_MIX = 0.01


def stage2_start(upsampled_maps: np.ndarray) -> np.ndarray:
    """Starting maps of the full-resolution stage from the upsampled stage-1 maps.

    Multiplicative updates cannot lift an abundance from zero, and stage 1 drives the
    abundances of absent phases to ~0 in whole bins, while a full-resolution pixel inside
    such a bin may still hold that phase. Every phase therefore starts at >= START_MIX / k.
    """
    k = upsampled_maps.shape[-1]
    return (1.0 - START_MIX) * upsampled_maps + START_MIX / k


class PSNMF(TransformerMixin, BaseEstimator):
    """NMF-based pan-sharpening of a spectrum image.

    Parameters
    ----------
    n_components : int, default=3
        Number of phases ``k``.
    bin_factor : int, default=4
        Spatial bin factor ``b`` of the first stage. Partial edge bins are kept.
    init : {'nndsvda', 'spa', 'random'}, default='nndsvda'
        Initialisation of the binned-data NMF.
    stage2_spectra : {'fixed', 'free'}, default='fixed'
        In the full-resolution stage, keep the stage-1 spectra fixed and solve the maps only
        (a convex problem per pixel, so the maps are exactly consistent with the fused
        spectra), or update both as in the paper's step 3 ('free'). In both cases the fused
        result uses the stage-1 spectra, as in the paper's step 4.
    max_iter : int, default=2000
        Iteration cap of the binned stage.
    max_iter_full : int, default=500
        Iteration cap of the full-resolution stage.
    tol : float, default=1e-7
        Relative change of the loss at which each stage stops.
    random_state : int or None
        Seed of the initialisation.
    image_shape : (ny, nx), optional
        Needed only when ``fit`` receives a 2-D (pixels, channels) matrix, as it does when
        used as ``algorithm=`` in HyperSpy's ``decomposition()``.
    smoothing : float, 'auto' or None, default=None
        Spatial regularisation of the full-resolution maps
        (:func:`psnmf.engine.tv_maps.smooth_maps`,
        not in the paper): ``None`` or 0 keeps the per-pixel maps; a number is the penalty
        weight relative to the mean counts per pixel (typically 0.01-0.3); ``'auto'``
        chooses it by held-out Poisson deviance (:func:`psnmf.selection.choose_smoothing`).
        Needs the whole image in memory (not for lazy / Dask input).
    smoothing_penalty : {'tv', 'laplacian'}, default='tv'
        Total variation (keeps phase boundaries sharp) or quadratic (Laplacian) smoothness.

    Attributes
    ----------
    spectra_ : ndarray (k, channels)
        Phase spectra from the binned data, rows summing to one.
    components_ : ndarray (k, channels)
        Same as ``spectra_`` (scikit-learn / HyperSpy name).
    maps_ : ndarray (ny, nx, k)
        Full-resolution abundance maps, summing to one per pixel.
    scale_ : ndarray (ny, nx)
        Per-pixel count scale (total counts of the pixel, the maximum-likelihood value).
    binned_maps_ : ndarray (ceil(ny/b), ceil(nx/b), k)
        Maps of the binned stage.
    full_spectra_ : ndarray (k, channels)
        Spectra at the end of the full-resolution stage (equal to ``spectra_`` when fixed).
    loss_ : dict
        ``{'binned': ndarray, 'full': ndarray}`` loss (generalised KL) histories.
    n_iter_ : dict
        Iterations run by each stage.
    image_shape_ : (ny, nx)
    smoothing_ : dict
        ``{'lam': weight in counts, 'relative': weight / mean counts per pixel, ...}``
        with, for ``'auto'``, the candidate weights and their held-out deviances.
    unsmoothed_maps_ : ndarray (ny, nx, k) or None
        The per-pixel maps before smoothing (``None`` without smoothing).

    Examples
    --------
    >>> import numpy as np
    >>> from psnmf import PSNMF
    >>> rng = np.random.default_rng(0)
    >>> spectra = rng.dirichlet(np.ones(64), size=2)
    >>> maps = np.zeros((24, 24, 2)); maps[:, :12, 0] = 1; maps[:, 12:, 1] = 1
    >>> cube = rng.poisson(50 * maps @ spectra)
    >>> model = PSNMF(n_components=2, bin_factor=4, random_state=0).fit(cube)
    >>> model.maps_.shape, bool(np.allclose(model.maps_.sum(-1), 1))
    ((24, 24, 2), True)
    """

    def __init__(
        self,
        n_components: int = 3,
        bin_factor: int = 4,
        *,
        init: str = "nndsvda",
        stage2_spectra: str = "fixed",
        max_iter: int = 2000,
        max_iter_full: int = 500,
        tol: float = 1e-7,
        random_state: int | None = None,
        image_shape: tuple[int, int] | None = None,
        smoothing: float | str | None = None,
        smoothing_penalty: str = "tv",
    ) -> None:
        self.n_components = n_components
        self.bin_factor = bin_factor
        self.init = init
        self.stage2_spectra = stage2_spectra
        self.max_iter = max_iter
        self.max_iter_full = max_iter_full
        self.tol = tol
        self.random_state = random_state
        self.image_shape = image_shape
        self.smoothing = smoothing
        self.smoothing_penalty = smoothing_penalty

    # -- fitting -----------------------------------------------------------------------
    def _check_params(self, image_shape: tuple[int, int], n_channels: int) -> tuple[int, int]:
        b = check_bin_factor(self.bin_factor, image_shape)
        nb = int(np.prod(binned_shape(image_shape, b)))
        k = check_positive_int(self.n_components, "n_components")
        if k > nb:
            raise ValueError(
                f"n_components={k} is more than the binned image can support: bin_factor={b}"
                f" leaves {nb} binned pixels on the {image_shape[0]} x {image_shape[1]} image."
                f" Use a bin_factor of at most {_max_bin_for(image_shape, k)} or fewer "
                "components."
            )
        check_n_components(k, (nb, n_channels))
        if self.init not in INIT_METHODS:
            raise ValueError(f"init={self.init!r} is not one of {INIT_METHODS}.")
        if self.stage2_spectra not in STAGE2_MODES:
            raise ValueError(
                f"stage2_spectra={self.stage2_spectra!r} is not one of {STAGE2_MODES}."
            )
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.max_iter_full, "max_iter_full")
        _smoothing_value(self.smoothing)
        if self.smoothing_penalty not in PENALTIES:
            raise ValueError(
                f"smoothing_penalty={self.smoothing_penalty!r} is not one of {PENALTIES}."
            )
        return b, k

    def fit(self, X: Any, y: None = None) -> PSNMF:
        """Fit PSNMF to a spectrum image.

        Parameters
        ----------
        X : ndarray (ny, nx, channels), HyperSpy Signal1D with two navigation axes, or a
            (pixels, channels) matrix together with ``image_shape``.
        y : ignored

        Returns
        -------
        self
        """
        from psnmf.engine import _dask as daskpath
        if daskpath.is_lazy(X):  # dask array / lazy signal: chunked, distributed path
            return daskpath.fit_lazy(self, X)
        counts, shape, signal = _signals.as_counts(X, self.image_shape)
        check_has_counts(counts)
        b, k = self._check_params(shape, counts.shape[1])
        stage1, S1, A1 = self._fit_binned(bin_counts(counts, shape, b), k)
        A0 = stage2_start(upsample_maps(A1, shape, b).reshape(-1, k))
        stage2 = poisson_nmf(
            counts,
            k,
            simplex=True,
            A_init=A0,
            S_init=S1,
            update_S=self.stage2_spectra == "free",
            max_iter=self.max_iter_full,
            tol=self.tol,
        )
        ny, nx = shape
        maps = self._smooth(counts, stage2.A, S1, shape)
        return self._set_fitted(
            shape, b, stage1, S1, A1,
            full_spectra=stage2.S,
            maps=maps.reshape(ny, nx, k),
            scale=stage2.scale.reshape(ny, nx),
            full_loss=stage2.loss,
            full_n_iter=stage2.n_iter,
            full_converged=stage2.converged,
            signal=signal,
        )

    def _smooth(self, counts: Any, maps: np.ndarray, spectra: np.ndarray,
                shape: tuple[int, int]) -> np.ndarray:
        """Spatial regularisation of the full-resolution maps (``smoothing``)."""
        value = _smoothing_value(self.smoothing)
        k = spectra.shape[0]
        self.unsmoothed_maps_ = None
        self.smoothing_ = {"lam": 0.0, "relative": 0.0, "penalty": None}
        if value == 0.0:
            return maps
        self.unsmoothed_maps_ = maps.reshape(*shape, k).copy()
        cpp = float(counts.sum()) / counts.shape[0]
        if value == "auto":
            choice = choose_smoothing(
                counts, spectra, shape, penalty=self.smoothing_penalty,
                random_state=_split_seed(self.random_state),
            )
            self.smoothing_ = choice.to_dict()
            lam = choice.lam
        else:
            lam = float(value) * cpp
            self.smoothing_ = {"lam": lam, "relative": float(value),
                               "penalty": self.smoothing_penalty}
        if lam == 0.0:
            return maps
        res = smooth_maps(counts, maps, spectra, shape, lam, penalty=self.smoothing_penalty)
        self.smoothing_["n_iter"] = res.n_iter
        return res.maps

    def _fit_binned(self, binned: Any, k: int) -> tuple[NMFResult, np.ndarray, np.ndarray]:
        """Stage 1 on the binned counts, then :meth:`_refine_stage1`.

        Shared by the in-memory and the Dask path. Returns ``(stage1 result, spectra,
        binned maps)``.
        """
        check_has_counts(binned)
        stage1 = poisson_nmf(
            binned,
            k,
            simplex=True,
            init=self.init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=check_random_state(self.random_state),
        )
        spectra, binned_maps = self._refine_stage1(binned, stage1.S, stage1.A)
        return stage1, spectra, binned_maps

    def _set_fitted(
        self,
        shape: tuple[int, int],
        b: int,
        stage1: NMFResult,
        spectra: np.ndarray,
        binned_maps: np.ndarray,
        *,
        full_spectra: np.ndarray,
        maps: np.ndarray,
        scale: np.ndarray,
        full_loss: np.ndarray,
        full_n_iter: int,
        full_converged: bool,
        signal: Any,
    ) -> PSNMF:
        """Store the fitted attributes (one place for the in-memory and the Dask path)."""
        k = spectra.shape[0]
        self.image_shape_ = shape
        self.bin_factor_ = b
        self.spectra_ = spectra
        self.components_ = spectra
        self.full_spectra_ = full_spectra
        self.maps_ = maps
        self.binned_maps_ = binned_maps.reshape(*binned_shape(shape, b), k)
        self.scale_ = scale
        self.loss_ = {"binned": stage1.loss, "full": full_loss}
        self.n_iter_ = {"binned": stage1.n_iter, "full": full_n_iter}
        self.converged_ = {"binned": stage1.converged, "full": full_converged}
        self.n_features_in_ = spectra.shape[1]
        self._signal = signal
        return self

    def _refine_stage1(
        self, binned: Any, spectra: np.ndarray, binned_maps: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hook between the stages: refine the binned-stage ``(spectra, maps)``.

        PSNMF keeps them as they are; subclasses (e.g. :class:`psnmf.improve.PSNMFPlus`)
        correct them here, and both the in-memory and the Dask path use the result.
        """
        return spectra, binned_maps

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
        counts, _, _ = _signals.as_counts(X, None, allow_line_scan=True)
        res = solve_abundances(
            counts, self.spectra_, max_iter=self.max_iter_full, tol=self.tol
        )
        return res.scale[:, None] * res.A

    # -- results -----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "spectra_"):
            raise AttributeError("This PSNMF is not fitted yet; call fit(X) first.")

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
            from psnmf.engine._dask import reconstruct_lazy

            cube = reconstruct_lazy(self)
            if self._signal is None:
                return cube
            template = self._signal if self._signal._lazy else self._signal.as_lazy()
            return _signals.cube_signal(cube, template, title="PSNMF denoised")
        cube = self.scale_[..., None] * (self.maps_ @ self.spectra_)
        if self._signal is not None:
            return _signals.cube_signal(cube, self._signal, title="PSNMF denoised")
        return cube

    def get_spectra(self) -> Any:
        """Spectra as a signal (energy axis and metadata of the input) or the ndarray."""
        self._check_fitted()
        if self._signal is not None:
            return _signals.spectra_signal(self.spectra_, self._signal)
        return self.spectra_

    def get_maps(self) -> Any:
        """Maps as a Signal2D (component | y, x) with the input's spatial axes, or ndarray."""
        self._check_fitted()
        if self._signal is not None:
            return _signals.maps_signal(self.maps_, self._signal)
        return self.maps_


def _smoothing_value(value: Any) -> float | str:
    """``smoothing`` as a float >= 0 or ``'auto'``; a clear error otherwise."""
    if value is None:
        return 0.0
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        raise ValueError(
            f"smoothing must be None, a number >= 0 or 'auto', got {value!r}."
        )
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"smoothing must be None, a number >= 0 or 'auto', got {value!r}."
        ) from None
    if not np.isfinite(number) or number < 0:
        raise ValueError(
            f"smoothing must be >= 0 (a weight relative to the counts per pixel, typically "
            f"0.01-0.3) or 'auto', got {value!r}."
        )
    return number


def _split_seed(random_state: Any) -> int:
    """Seed of the count split of ``smoothing='auto'`` (fixed when no seed is given)."""
    return int(random_state) if isinstance(random_state, int | np.integer) else 0


def _max_bin_for(image_shape: tuple[int, int], k: int) -> int:
    """Largest bin factor that leaves at least ``k`` binned pixels."""
    for b in range(max(image_shape), 0, -1):
        if int(np.prod(binned_shape(image_shape, b))) >= k:
            return b
    return 1
