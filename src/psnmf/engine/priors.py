"""User priors on the spectra of PSNMF: fixed spectra, spectral supports, start spectra.

A :class:`SpectralPriors` holds what a user knows about the component spectra, by
component index:

* ``fixed`` - spectra measured on a reference: the fitted spectrum of that component is
  the given one (rows on the simplex) in every stage. The NMF updates skip those rows (a
  partial M-step of the EM algorithm, which still never increases the loss), the vertex
  moves skip those vertices and the full-resolution stage uses them.
* ``support`` - a boolean (rows, channels) mask, True where a component's spectrum may be
  non-zero (an element forbidden in a phase: the channels of its lines are False). The
  NMF starts from zeros there and multiplicative updates keep them; a spectrum moved by
  the pure-pixel correction (or a finer-scale or line-based move) has its forbidden
  channels set to zero and is renormalised (:meth:`SpectralPriors.constrain`).
* ``init`` - start spectra of the binned-stage NMF (e.g. the summed spectra of regions
  of interest, :func:`roi_spectra`); the NMF then runs from them.

Rows beyond a prior's components are unconstrained, so one prior serves every candidate
``k`` of a model search that is at least :meth:`SpectralPriors.min_components`.

Examples
--------
>>> import numpy as np
>>> ref = np.array([0.0, 2.0, 2.0, 0.0])
>>> support = np.array([[True, True, True, True], [True, True, False, False]])
>>> priors = SpectralPriors(fixed={0: ref / ref.sum()}, support=support)
>>> rows, S_fixed, mask = priors.rows(3, 4)
>>> rows.tolist(), mask[1].tolist(), mask[2].tolist()
([True, False, False], [True, True, False, False], [True, True, True, True])
>>> priors.constrain(np.full((3, 4), 0.25))[:2].tolist()
[[0.0, 0.5, 0.5, 0.0], [0.5, 0.5, 0.0, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["SpectralPriors", "roi_spectra"]


@dataclass(frozen=True)
class SpectralPriors:
    """Fixed spectra, spectral supports and start spectra of the components.

    Attributes
    ----------
    fixed : dict {component: ndarray (channels,)}
        Fixed spectra, each non-negative and summing to one.
    support : ndarray (m, channels) of bool or None
        Where the spectra of components ``0 .. m - 1`` may be non-zero.
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
        """``S`` with the fixed rows set and the forbidden channels zeroed, rows renormalised.

        What a spectrum move (the pure-pixel correction, a finer-scale or line-based move)
        leaves is passed through this, so that every stage's spectra obey the priors.
        """
        k, ne = S.shape
        fixed_rows, fixed, support = self.rows(k, ne)
        out = np.array(S, dtype=np.float64, copy=True)
        if support is not None:
            out = np.where(support, out, 0.0)
            sums = out.sum(axis=1, keepdims=True)
            flat = support / np.maximum(support.sum(axis=1, keepdims=True), 1)
            out = np.divide(out, sums, out=flat, where=sums > 0)
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
