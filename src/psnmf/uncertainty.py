"""Error bars on PSNMF spectra and compositions by parametric bootstrap (issue 7).

The fitted binned-stage model ``M = n A S`` is taken as the truth, new binned counts are
drawn from ``Poisson(M)``, and the binned stage is refitted from the fitted factors (warm
start, same component order, so no matching is needed). The spread of the refitted
spectra - and of their Cliff-Lorimer compositions - gives the error bars. Only the binned
stage is resampled (it alone determines the spectra), which keeps a replicate cheap.

Intervals are *basic* bootstrap intervals ``[2 t - q_hi, 2 t - q_lo]`` by default: the
refits share the estimator's bias (NMF's drift towards a wider simplex), and the basic
interval removes it to first order; ``'percentile'`` gives ``[q_lo, q_hi]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from psnmf.binning import bin_counts
from psnmf.improve import vertex_abundances
from psnmf.nmf import poisson_nmf

__all__ = ["BootstrapResult", "bootstrap", "composition_intervals", "coverage"]


@dataclass
class BootstrapResult:
    """Bootstrap replicates of the component spectra (and compositions).

    Attributes
    ----------
    spectra : ndarray (k, channels)
        The fitted spectra.
    replicates : ndarray (n_boot, k, channels)
        Refitted spectra.
    spectra_std : ndarray (k, channels)
        Standard deviation over replicates.
    compositions : list of dict or None
        Per component, element -> at.% of the fitted spectra.
    composition_replicates : list of list of dict or None
        Per replicate, per component.
    """

    spectra: np.ndarray
    replicates: np.ndarray
    spectra_std: np.ndarray
    compositions: list[dict[str, float]] | None = None
    composition_replicates: list[list[dict[str, float]]] | None = None
    elements: list[str] = field(default_factory=list)

    def composition_table(self, names: list[str] | None = None, level: float = 0.95,
                          method: str = "basic") -> str:
        """Plain-text table: component, element, at.% +- bootstrap sd, interval."""
        if self.compositions is None:
            raise ValueError("no compositions: pass elements= to bootstrap().")
        iv = composition_intervals(self, level, method)
        lines = [f"{'component':10s} {'element':7s} {'at.%':>7s} {'+-sd':>6s}  "
                 f"{int(level * 100)}% interval"]
        for j, comp in enumerate(self.compositions):
            name = names[j] if names else f"#{j}"
            for el in self.elements:
                lo, hi, sd = iv[j][el]
                lines.append(f"{name:10s} {el:7s} {comp.get(el, 0.0):7.2f} {sd:6.2f}  "
                             f"[{lo:6.2f}, {hi:6.2f}]")
        return "\n".join(lines)


def _quantify(spectra: np.ndarray, elements: list[str], model: Any) -> list[dict[str, float]]:
    from psnmf.quantify import quantify_spectra

    opts = {"model": model} if model is not None else {}
    return [q.composition for q in quantify_spectra(spectra, elements, **opts)]


def bootstrap(
    model: Any,
    counts: Any,
    *,
    n_boot: int = 30,
    max_iter: int = 300,
    tol: float = 1e-6,
    elements: list[str] | None = None,
    edx_model: Any = None,
    random_state: int | None = 0,
) -> BootstrapResult:
    """Parametric bootstrap of a fitted :class:`psnmf.PSNMF` (or ``PSNMFPlus``).

    Parameters
    ----------
    model : fitted PSNMF
        Uses ``spectra_``, ``binned_maps_``, ``bin_factor_`` and ``image_shape_``.
    counts : the counts it was fitted to, (ny, nx, channels) or (pixels, channels)
    n_boot : int
        Replicates.
    max_iter, tol : refit settings of the binned stage (warm start).
    elements : list of str, optional
        Quantify every replicate (Cliff-Lorimer) for composition error bars.
    edx_model : EDXModel, optional
        Passed to :func:`psnmf.quantify.quantify_spectra` as ``model``.
    random_state : int

    Returns
    -------
    BootstrapResult
    """
    rng = np.random.default_rng(random_state)
    X = np.asarray(counts)
    X = X.reshape(-1, X.shape[-1]) if X.ndim == 3 else X
    binned = bin_counts(X, model.image_shape_, model.bin_factor_)
    n = np.asarray(binned.sum(axis=1)).ravel()
    k = model.spectra_.shape[0]
    A = model.binned_maps_.reshape(-1, k)
    S = model.spectra_
    mean = n[:, None] * (A @ S)
    reps = np.empty((n_boot, *S.shape))
    moved = getattr(model, "vertex_moved_", None)
    for r in range(n_boot):
        Xr = rng.poisson(mean).astype(np.float64)
        fit = poisson_nmf(Xr, k, A_init=A, S_init=S, max_iter=max_iter, tol=tol)
        reps[r] = fit.S
        if moved is not None and moved.any():  # replay the vertex correction of PSNMFPlus
            T = vertex_abundances(fit.A, model.vertex_frac)
            reps[r] = np.where(moved[:, None], T, np.eye(k)) @ fit.S
    out = BootstrapResult(spectra=S, replicates=reps, spectra_std=reps.std(axis=0),
                          elements=list(elements or []))
    if elements:
        out.compositions = _quantify(S, list(elements), edx_model)
        out.composition_replicates = [_quantify(rep, list(elements), edx_model)
                                      for rep in reps]
    return out


def composition_intervals(
    res: BootstrapResult, level: float = 0.95, method: str = "basic"
) -> list[dict[str, tuple[float, float, float]]]:
    """Per component, element -> (low, high, sd) at.% from the bootstrap replicates."""
    if res.compositions is None or res.composition_replicates is None:
        raise ValueError("no compositions: pass elements= to bootstrap().")
    if method not in ("basic", "percentile"):
        raise ValueError(f"method must be 'basic' or 'percentile', got {method!r}.")
    a = (1.0 - level) / 2.0
    out = []
    for j, comp in enumerate(res.compositions):
        d = {}
        for el in res.elements:
            v = np.array([rep[j].get(el, 0.0) for rep in res.composition_replicates])
            lo, hi = np.quantile(v, [a, 1.0 - a])
            t = comp.get(el, 0.0)
            if method == "basic":
                lo, hi = 2 * t - hi, 2 * t - lo
            d[el] = (float(lo), float(hi), float(v.std()))
        out.append(d)
    return out


def coverage(
    res: BootstrapResult,
    truth: list[dict[str, float]],
    order: np.ndarray,
    *,
    level: float = 0.95,
    method: str = "basic",
    min_percent: float = 0.5,
) -> tuple[int, int]:
    """How many true compositions fall inside their interval.

    Parameters
    ----------
    truth : per true phase, element -> at.%
    order : fitted component index per true phase
    min_percent : only elements with at least this true at.% are counted (absent
        elements sit at the 0 boundary, where intervals are not meaningful).

    Returns
    -------
    (inside, total)
    """
    iv = composition_intervals(res, level, method)
    inside = total = 0
    for i, comp in enumerate(truth):
        for el, val in comp.items():
            if val < min_percent or el not in res.elements:
                continue
            lo, hi, _ = iv[int(order[i])][el]
            inside += int(lo <= val <= hi)
            total += 1
    return inside, total
