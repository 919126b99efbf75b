"""User priors on the spectra of PSNMF: fixed spectra, spectral supports, start spectra.

A :class:`SpectralPriors` holds what a user knows about the component spectra, by
component index:

* ``fixed`` - spectra measured on a reference: the fitted spectrum of that component is
  the given one (rows on the simplex) in every stage. The NMF updates skip those rows (a
  partial M-step of the EM algorithm, which still never increases the loss), the vertex
  moves skip those vertices and the full-resolution stage uses them.
* ``support`` - a boolean (rows, channels) mask, False where a component has no line
  (the channels of the lines of an element forbidden in that phase). A forbidden channel
  still receives X-rays - the bremsstrahlung continuum, and the tails of the phase's other
  lines - so each contiguous run of False channels of a row (a *window*) carries a convex
  curve, which can follow those but holds no peak (:class:`ContinuumWindows`). The NMF's
  M-step fits the curves' amplitudes (an EM step of the constrained model, which never
  increases the loss); a spectrum moved by the pure-pixel correction (or a finer-scale or
  line-based move) has each window set to the closest such curve (least squares), then
  is renormalised (:meth:`SpectralPriors.constrain`).
* ``init`` - start spectra of the binned-stage NMF (e.g. the summed spectra of regions
  of interest, :func:`roi_spectra`); the NMF then runs from them.

Rows beyond a prior's components are unconstrained, so one prior serves every candidate
``k`` of a model search that is at least :meth:`SpectralPriors.min_components`.

Examples
--------
>>> import numpy as np
>>> ref = np.array([0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0])
>>> support = np.array([[True] * 8, [True, True, False, False, False, False, False, True]])
>>> priors = SpectralPriors(fixed={0: ref / ref.sum()}, support=support)
>>> rows, S_fixed, mask = priors.rows(3, 8)
>>> rows.tolist(), mask[1].astype(int).tolist(), mask[2].all()
([True, False, False], [1, 1, 0, 0, 0, 0, 0, 1], np.True_)

Component 1 may have no line in channels 2 to 6: a continuum there is kept, a peak
gives way to the closest curve without one (its excess is spread over the window):

>>> slope = np.arange(1.0, 9.0)
>>> out = priors.constrain(np.stack([slope, slope, slope]))
>>> out[0].tolist() == (ref / ref.sum()).tolist(), np.round(out[1] / out[1, 0], 6).tolist()
(True, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
>>> peak = slope + 8.0 * (np.arange(8) == 4)
>>> out = priors.constrain(np.stack([slope, peak, slope]))
>>> np.round(out[1] / out[1, 0], 2).tolist()
[1.0, 2.0, 4.6, 5.6, 6.6, 7.6, 8.6, 8.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls

__all__ = ["CURVATURES", "ContinuumWindows", "SpectralPriors", "roi_spectra"]



@dataclass(frozen=True)
class ContinuumWindows:
    """The forbidden windows of a spectral support, each carrying a continuum and no line.

    A window is a maximal run of forbidden (False) channels ``start .. stop - 1`` of one
    row of the support. Forbidding an element in a phase says that the phase emits none of
    its lines, not that no X-ray reaches those energies: the bremsstrahlung continuum is
    still there, and so are the tails of the phase's other lines beside the window. Both
    are convex across a window (a few detector resolutions wide: a smooth slope, bent
    upwards where a neighbouring line's tail rises), while a line inside it is a peak,
    concave at its top. So a window's values are a non-negative combination of convex
    shapes, ``S_i = sum_q a_q x_i^q + b_q (1 - x_i)^q`` with ``x_i = (i + 1) / (n + 1)``
    (``n`` channels) and ``q`` in :data:`CURVATURES` (``q = 1``: the straight lines, whose
    sum is the constant): every such curve is convex and can follow a continuum and a
    tail, none can hold a peak above the chord of its ends. (A window of one or two
    channels constrains nothing: any values lie on such a curve. The windows of an
    element's lines are tens of channels wide.) The curve's level is not tied to the
    neighbouring channels: where the data do hold the forbidden element's line, the fit
    can give the window a plateau carrying its counts.

    Attributes
    ----------
    shape : (int, int)
        ``(rows, channels)`` of the support.
    rows, starts, stops : ndarray (windows,) of int
        Each window's row and channel range.
    channel : ndarray of int
        Flat index ``row * channels + channel`` of every window channel, window by window.
    term : ndarray of int
        For every (term, channel) pair of every window: the term (a window's shape ``q``
        on one side), numbered window by window.
    entry : ndarray of int
        For every pair: its position in ``channel``.
    shape_value : ndarray of float
        For every pair: the term's shape at that channel, each term's shape summing to one
        over its window.
    term_row : ndarray of int
        The row of each term.
    """

    shape: tuple[int, int]
    rows: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    channel: np.ndarray
    term: np.ndarray
    entry: np.ndarray
    shape_value: np.ndarray
    term_row: np.ndarray

    @classmethod
    def from_support(cls, support: np.ndarray) -> ContinuumWindows:
        """The windows of a (rows, channels) bool support (True where lines may be).

        Raises
        ------
        ValueError
            When a row forbids every channel: nothing would be left of its spectrum but a
            continuum.
        """
        mask = np.asarray(support, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"support must be 2-D (rows, channels), got shape {mask.shape}.")
        empty = np.flatnonzero(~mask.any(axis=1))
        if empty.size:
            raise ValueError(f"support forbids every channel of row(s) {empty.tolist()}: "
                             "allow at least the channels of that component's elements.")
        k, ne = mask.shape
        edges = np.diff(np.pad(~mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
        rows, starts = np.nonzero(edges == 1)
        stops = np.nonzero(edges == -1)[1]  # row-major order: paired with starts
        channel, term, entry, value, term_row = [], [], [], [], []
        offset = 0
        for w, (r, a, b) in enumerate(zip(rows.tolist(), starts.tolist(), stops.tolist(),
                                          strict=True)):
            shapes = _shapes(b - a)
            nt = shapes.shape[1]
            channel.append(r * ne + np.arange(a, b))
            term.append(np.repeat(w * nt + np.arange(nt), b - a))
            entry.append(np.tile(offset + np.arange(b - a), nt))
            value.append(shapes.T.ravel())
            term_row.append(np.full(nt, r))
            offset += b - a

        def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return cls(shape=(k, ne), rows=rows, starts=starts, stops=stops,
                   channel=cat(channel, np.int64), term=cat(term, np.int64),
                   entry=cat(entry, np.int64), shape_value=cat(value, np.float64),
                   term_row=cat(term_row, np.int64))

    @property
    def empty(self) -> bool:
        """Whether the support forbids no channel."""
        return self.rows.size == 0

    def _check(self, S: np.ndarray) -> None:
        if S.shape != self.shape:
            raise ValueError(f"spectra of shape {S.shape} do not match the support's "
                             f"{self.shape}.")

    def amplitudes(self, S: np.ndarray, floor: float = 0.0) -> np.ndarray:
        """The non-negative term amplitudes closest to each window of ``S`` (least squares).

        ``floor`` adds that fraction of each window's mass, shared by its terms, to every
        amplitude: a start from which the multiplicative M-step can grow every term (a
        zero amplitude would stay zero).
        """
        self._check(S)
        flat = S.reshape(-1)
        out = np.zeros(int(self.term.max()) + 1 if self.term.size else 0)
        lo = 0
        for r, a, b in zip(self.rows.tolist(), self.starts.tolist(), self.stops.tolist(),
                           strict=True):
            shapes = _shapes(b - a)
            nt = shapes.shape[1]
            values = flat[r * self.shape[1] + a:r * self.shape[1] + b]
            coef = nnls(shapes, values)[0] if np.any(values > 0) else np.zeros(nt)
            out[lo:lo + nt] = coef + floor * max(float(values.sum()), 0.0) / nt
            lo += nt
        return out

    def place(self, S: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
        """``S`` (a copy) with each window set to its curve of ``amplitudes``."""
        self._check(S)
        out = np.array(S, dtype=np.float64, copy=True)
        values = np.bincount(self.entry, amplitudes[self.term] * self.shape_value,
                             minlength=self.channel.size)
        out.reshape(-1)[self.channel] = values
        return out

    def fit(self, S: np.ndarray, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(S', amplitudes)``: ``S`` with each window on the closest curve of the
        window's convex shapes (:meth:`amplitudes`), rows renormalised to sum one, and the
        curves' amplitudes on that scale.

        What a vertex move or a start spectrum put in a window beyond such a curve (a
        peak: another phase's line, a line of the forbidden element) is removed; the
        continuum and the tails of the row's other lines are kept. Spectra that obey the
        priors pass unchanged (to rounding).
        """
        amplitudes = self.amplitudes(S, floor)
        out = self.place(S, amplitudes)
        sums = out.sum(axis=1)
        good = sums > 0
        out = np.divide(out, sums[:, None], out=np.full_like(out, 1.0 / self.shape[1]),
                        where=good[:, None])
        amplitudes = np.divide(amplitudes, sums[self.term_row],
                               out=np.zeros_like(amplitudes), where=good[self.term_row])
        return out, amplitudes

    def project(self, S: np.ndarray) -> np.ndarray:
        """``S`` with each window on the closest curve, rows summing to one (:meth:`fit`)."""
        return self.fit(S)[0]

    def m_step(self, S: np.ndarray, ratio: np.ndarray,
               amplitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The M-step of the spectra: ``(S', amplitudes')``, rows of ``S'`` summing to one.

        ``ratio`` is the E-step's ``sum_p a_pj x_pe / m_pe``, so ``S * ratio`` are the
        expected counts of each component in each channel (up to a factor per row); the
        windows of ``S`` are the curves of ``amplitudes`` (:meth:`place`). A window's
        expected count in a channel is split between its terms in proportion to their
        share of the model there (a latent variable of the EM algorithm); the maximising
        amplitude of a term is then its expected counts, ``a_t' = a_t sum_i s_ti ratio_i``
        (``s_t`` the term's shape, summing to one), and its curve spreads them by the
        shape. This is the EM step of the model with these curves in the windows, so the
        Poisson loss never increases.
        """
        self._check(S)
        out = S * ratio
        r = ratio.reshape(-1)[self.channel]
        new = amplitudes * np.bincount(self.term, self.shape_value * r[self.entry],
                                       minlength=amplitudes.size)
        out = self.place(out, new)
        sums = out.sum(axis=1)
        good = sums > 0
        out = np.divide(out, sums[:, None], out=np.array(S, dtype=np.float64, copy=True),
                        where=good[:, None])
        new = np.divide(new, sums[self.term_row], out=np.array(amplitudes, copy=True),
                        where=good[self.term_row])
        return out, new


#: The powers of the convex shapes ``x^q`` and ``(1 - x)^q`` a forbidden window's
#: continuum is made of: 1 for the straight continuum, higher for the tail of a
#: neighbouring line rising more and more steeply towards an end of the window.
CURVATURES = (1, 2, 4, 8, 16)


def _shapes(n: int) -> np.ndarray:
    """(n, 2 * len(CURVATURES)) shapes of a window of ``n`` channels, columns summing to
    one: ``x^q`` and ``(1 - x)^q`` at ``x = (i + 1) / (n + 1)``."""
    x = np.arange(1, n + 1, dtype=np.float64) / (n + 1)
    cols = [f for q in CURVATURES for f in (x**q, (1 - x) ** q)]
    out = np.stack(cols, axis=1)
    return out / out.sum(axis=0, keepdims=True)


@dataclass(frozen=True)
class SpectralPriors:
    """Fixed spectra, spectral supports and start spectra of the components.

    Attributes
    ----------
    fixed : dict {component: ndarray (channels,)}
        Fixed spectra, each non-negative and summing to one.
    support : ndarray (m, channels) of bool or None
        Where the spectra of components ``0 .. m - 1`` may have lines; the False channels
        carry a continuum only (:class:`ContinuumWindows`).
    init : dict {component: ndarray (channels,)}
        Start spectra of the binned-stage NMF, each summing to one.
    """

    fixed: dict[int, np.ndarray] = field(default_factory=dict)
    support: np.ndarray | None = None
    init: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Whether no prior is set."""
        return not self.fixed and self.support is None and not self.init

    def min_components(self) -> int:
        """The fewest components the priors name (one more than the largest index)."""
        m = 0 if self.support is None else int(self.support.shape[0])
        for d in (self.fixed, self.init):
            if d:
                m = max(m, max(d) + 1)
        return m

    def rows(
        self, k: int, n_channels: int
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """``(fixed_rows, fixed_spectra, support)`` for ``k`` components.

        ``fixed_rows`` (k,) bool and ``fixed_spectra`` (k, channels) (zero rows where not
        fixed), or ``None, None`` without fixed spectra; ``support`` (k, channels) bool
        (True rows beyond the prior's), or ``None``.
        """
        if k < self.min_components():
            raise ValueError(
                f"the priors name component {self.min_components() - 1}, more than "
                f"n_components={k} has (0 .. {k - 1}): use at least "
                f"{self.min_components()} components or drop those priors."
            )
        fixed_rows = fixed = support = None
        if self.fixed:
            fixed_rows = np.zeros(k, dtype=bool)
            fixed = np.zeros((k, n_channels))
            for j, s in self.fixed.items():
                fixed_rows[j] = True
                fixed[j] = s
        if self.support is not None:
            support = np.ones((k, n_channels), dtype=bool)
            support[: self.support.shape[0]] = self.support
        return fixed_rows, fixed, support

    def constrain(self, S: np.ndarray) -> np.ndarray:
        """``S`` with the fixed rows set and each forbidden window on the continuum of its
        neighbours (:meth:`ContinuumWindows.project`), rows renormalised.

        What a spectrum move (the pure-pixel correction, a finer-scale or line-based move)
        leaves is passed through this, so that every stage's spectra obey the priors.
        """
        k, ne = S.shape
        fixed_rows, fixed, support = self.rows(k, ne)
        out = np.array(S, dtype=np.float64, copy=True)
        if support is not None:
            out = ContinuumWindows.from_support(support).project(out)
        if fixed_rows is not None:
            out[fixed_rows] = fixed[fixed_rows]
        return out

    def start(self, S: np.ndarray) -> np.ndarray:
        """Start spectra: ``S`` (an initialisation's) with the ``init`` rows replaced, then
        :meth:`constrain` (fixed rows, supports)."""
        out = np.array(S, dtype=np.float64, copy=True)
        for j, s in self.init.items():
            out[j] = s
        return self.constrain(out)


def roi_spectra(
    counts: sp.csr_matrix, rois: dict[int, np.ndarray]
) -> dict[int, np.ndarray]:
    """The summed spectrum of each region of interest, normalised to sum one.

    Parameters
    ----------
    counts : CSR (pixels, channels), pixels in row-major image order
    rois : dict {component: bool ndarray of the pixels (any shape with ``pixels`` values)}

    Returns
    -------
    dict {component: ndarray (channels,)}

    Raises
    ------
    ValueError
        When a region holds no counts (it can give no spectrum).
    """
    out = {}
    for j, roi in rois.items():
        rows = np.flatnonzero(np.asarray(roi, dtype=bool).ravel())
        summed = np.asarray(counts[rows].sum(axis=0), dtype=np.float64).ravel()
        total = summed.sum()
        if total <= 0:
            raise ValueError(
                f"the region of interest of component {j} holds no counts (its "
                f"{rows.size} pixels are empty or masked out): choose pixels with counts."
            )
        out[int(j)] = summed / total
    return out
