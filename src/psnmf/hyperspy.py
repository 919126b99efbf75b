"""HyperSpy signals in and out: checked counts from a signal, result signals from a template.

In
    :func:`as_counts` is the door of the estimators: it takes a HyperSpy spectrum image,
    a NumPy or Dask cube, or a (pixels, channels) matrix, checks the values once (real,
    finite, non-negative; a warning for non-integer values; masked arrays refused) and
    returns the counts in psnmf's internal form, a float64 CSR matrix (see
    :func:`psnmf._validation.counts_csr`), with the image shape. The layers below receive
    these validated counts; lazy input is converted chunk by chunk by
    :func:`psnmf.io.to_counts` and never held dense.
Out
    For a signal, :func:`as_counts` also returns a :class:`SignalTemplate`: the class,
    axes and metadata of the input without its data (a few kB instead of the cube, and
    picklable), from which :func:`spectra_signal`, :func:`maps_signal` and
    :func:`cube_signal` build the result signals with the input's calibration.

Examples
--------
>>> import numpy as np
>>> from exspy.signals import EDSTEMSpectrum
>>> s = EDSTEMSpectrum(np.ones((4, 5, 30)))
>>> s.axes_manager.signal_axes[0].scale = 0.01
>>> counts, shape, template = as_counts(s, None)
>>> counts.shape, shape, counts.dtype
((20, 30), (4, 5), dtype('float64'))
>>> spectra = spectra_signal(np.full((2, 30), 1 / 30), template)
>>> type(spectra).__name__, spectra.axes_manager.signal_axes[0].scale
('EDSTEMSpectrum', 0.01)
>>> maps_signal(np.full((4, 5, 2), 0.5), template).axes_manager.signal_shape
(5, 4)
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import scipy.sparse as sp

from psnmf._validation import (
    as_array,
    check_counts_matrix,
    check_cube,
    check_image_shape,
    counts_csr,
)

__all__ = [
    "SignalTemplate",
    "as_counts",
    "check_spectrum_image",
    "cube_signal",
    "decomposition_signal",
    "denoised_from_factors",
    "is_signal",
    "maps_signal",
    "save_decomposition",
    "scale_signal",
    "signal_template",
    "spectra_signal",
]


def is_signal(obj: Any) -> bool:
    """True for a HyperSpy signal (without importing HyperSpy when it is not one)."""
    return hasattr(obj, "axes_manager") and hasattr(obj, "data") and hasattr(obj, "metadata")


def _is_dask(data: Any) -> bool:
    return hasattr(data, "dask") and hasattr(data, "compute")


_LINE_SCAN_HINT = (
    "PSNMF bins the image spatially, so it needs a 2-D map; for a line scan or single "
    "spectrum use standard NMF instead: psnmf.standard_nmf(X, n_components) or "
    "psnmf.poisson_nmf(counts_matrix, n_components), which take any number of pixels."
)


def check_spectrum_image(signal: Any, name: str = "X", *, allow_line_scan: bool = False) -> None:
    """Raise unless ``signal`` is a 1-D signal with two navigation axes.

    With ``allow_line_scan=True``, zero or one navigation axis (a single spectrum or a line
    scan) is accepted as well.
    """
    am = signal.axes_manager
    if am.signal_dimension != 1:
        raise ValueError(
            f"{name} must be a spectrum image (a Signal1D such as EDSTEMSpectrum), got a "
            f"signal with {am.signal_dimension} signal dimensions. Use signal.as_signal1D(...)"
            " to make the energy axis the signal axis."
        )
    nav = am.navigation_dimension
    if nav == 2 or (allow_line_scan and nav in (0, 1)):
        return
    what = {0: "a single spectrum", 1: "a line scan"}.get(nav, f"{nav} navigation axes")
    if allow_line_scan:
        raise ValueError(
            f"{name} has {what} (navigation shape {am.navigation_shape}); at most two "
            "navigation axes (y, x) are supported. Sum or slice the extra axes first "
            "(e.g. signal.sum(axis=...) over frames or tilts)."
        )
    raise ValueError(
        f"{name} must have two navigation axes (y, x), got {what} (navigation shape "
        f"{am.navigation_shape}). {_LINE_SCAN_HINT}"
    )


# ---------------------------------------------------------------------------------------
# The template
# ---------------------------------------------------------------------------------------
def _is_lazy_class(cls: type) -> bool:
    from hyperspy.signals import LazySignal

    return issubclass(cls, LazySignal)


def _axis_size(axis: dict[str, Any]) -> int:
    return int(axis["size"]) if "size" in axis else len(axis["axis"])


def _without_signals(tree: dict[str, Any]) -> dict[str, Any]:
    """A metadata dictionary without the signals stored in it (``_sig_`` entries).

    Such entries (a noise variance map, for example) hold arrays of the input's size and
    describe the input's data, not a result's.
    """
    return {
        key: _without_signals(value) if isinstance(value, dict) else value
        for key, value in tree.items()
        if not str(key).startswith("_sig_")
    }


@dataclasses.dataclass(frozen=True, eq=False)
class SignalTemplate:
    """The class, axes and metadata of a spectrum image, without its data.

    Made by :func:`signal_template` (and :func:`as_counts`); used by
    :func:`spectra_signal`, :func:`maps_signal` and :func:`cube_signal`. It holds plain
    dictionaries and a class reference, so it pickles, and it is small: a fitted model
    keeps it instead of the input signal.

    Attributes
    ----------
    signal_class : type
        The HyperSpy class of the input (e.g. ``EDSTEMSpectrum`` or
        ``LazyEDSTEMSpectrum``).
    signal_type : str
        ``metadata.Signal.signal_type`` (``"EDS_TEM"``, ``"EDS_SEM"``, ``""``).
    navigation_axes : tuple of dict
        The navigation axes in array order, ``(y, x)`` for data ``(ny, nx, channels)``, as
        :meth:`hyperspy.axes.BaseDataAxis.get_axis_dictionary` gives them (non-uniform
        axes keep their ``axis`` array).
    signal_axes : tuple of dict
        The signal axis, ``(energy,)``, in the same form.
    metadata, original_metadata : dict
        ``signal.metadata.as_dictionary()`` and ``signal.original_metadata
        .as_dictionary()``, without signals stored in them (see :func:`signal_template`).
    """

    signal_class: type
    signal_type: str
    navigation_axes: tuple[dict[str, Any], ...]
    signal_axes: tuple[dict[str, Any], ...]
    metadata: dict[str, Any]
    original_metadata: dict[str, Any]

    @property
    def lazy(self) -> bool:
        """Whether the input signal was lazy (its data a Dask array)."""
        return _is_lazy_class(self.signal_class)

    @property
    def navigation_shape(self) -> tuple[int, ...]:
        """Navigation sizes in array order, ``(ny, nx)`` for a spectrum image."""
        return tuple(_axis_size(a) for a in self.navigation_axes)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of the input's data, ``(ny, nx, channels)`` for a spectrum image."""
        return (*self.navigation_shape, *(_axis_size(a) for a in self.signal_axes))

    def as_lazy(self) -> SignalTemplate:
        """The same template with the lazy class (as ``signal.as_lazy()`` for a signal)."""
        cls = _class_for(self.signal_class, self.signal_type, 1, np.dtype(np.float64), True)
        return dataclasses.replace(self, signal_class=cls)


def signal_template(signal: Any) -> SignalTemplate:
    """The :class:`SignalTemplate` of a HyperSpy signal (copies; the data are not touched).

    Signals stored in the metadata (``metadata.Signal.Noise_properties.variance`` as a
    map, for example) are left out: they are as large as the data and describe the
    input, not the results.

    Examples
    --------
    >>> import pickle
    >>> import hyperspy.api as hs
    >>> t = signal_template(hs.signals.Signal1D(np.zeros((3, 4, 10))))
    >>> t.signal_class.__name__, t.data_shape, t.lazy
    ('Signal1D', (3, 4, 10), False)
    >>> pickle.loads(pickle.dumps(t)).data_shape
    (3, 4, 10)
    """
    am = signal.axes_manager
    return SignalTemplate(
        signal_class=type(signal),
        signal_type=str(signal.metadata.get_item("Signal.signal_type", "") or ""),
        navigation_axes=copy.deepcopy(
            tuple(a.get_axis_dictionary() for a in am.navigation_axes[::-1])
        ),
        signal_axes=copy.deepcopy(tuple(a.get_axis_dictionary() for a in am.signal_axes[::-1])),
        metadata=copy.deepcopy(_without_signals(signal.metadata.as_dictionary())),
        original_metadata=copy.deepcopy(
            _without_signals(signal.original_metadata.as_dictionary())
        ),
    )


def _as_template(template: Any) -> SignalTemplate:
    if isinstance(template, SignalTemplate):
        return template
    if is_signal(template):
        return signal_template(template)
    raise TypeError(
        f"template must be a SignalTemplate (from psnmf.hyperspy.signal_template) or a "
        f"HyperSpy signal, got {type(template).__name__}."
    )


def _class_for(cls: type, signal_type: str, signal_dimension: int, dtype: np.dtype,
               lazy: bool) -> type:
    """``cls`` if its laziness is ``lazy``, else HyperSpy's class of the other laziness."""
    if _is_lazy_class(cls) == lazy:
        return cls
    from hyperspy.io import assign_signal_subclass

    return assign_signal_subclass(dtype, signal_dimension, signal_type, lazy)


def _component_axis(k: int) -> dict[str, Any]:
    return {"name": "Component", "units": "", "size": int(k), "scale": 1.0, "offset": 0.0,
            "navigate": True}


def _as_signal_axis(axis: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(axis), "navigate": False}


def _titled(metadata: dict[str, Any], title: str | None) -> dict[str, Any]:
    out = copy.deepcopy(metadata)
    if title is not None:
        out.setdefault("General", {})["title"] = title
    return out


def _check_shape(got: tuple[int, ...], want: tuple[int, ...], what: str) -> None:
    if tuple(int(n) for n in got) != tuple(want):
        raise ValueError(f"{what} has shape {tuple(got)}; the template needs {tuple(want)}.")


# ---------------------------------------------------------------------------------------
# Signals out
# ---------------------------------------------------------------------------------------
def spectra_signal(spectra: np.ndarray, template: Any, title: str = "PSNMF spectra") -> Any:
    """(k, channels) spectra as a signal of the template's class, energy axis and metadata.

    Parameters
    ----------
    spectra : ndarray (k, channels)
    template : SignalTemplate or HyperSpy signal
        From :func:`signal_template` (or the input signal itself).
    title : str

    Returns
    -------
    HyperSpy signal (k | channels)
        The input's (non-lazy) class, its energy axis (uniform or not) and metadata; the
        navigation axis is ``Component``.
    """
    t = _as_template(template)
    data = np.asarray(spectra)
    _check_shape(data.shape[1:], t.data_shape[-1:], "spectra (k, channels)")
    cls = _class_for(t.signal_class, t.signal_type, 1, data.dtype, False)
    axes = [_component_axis(data.shape[0]), *(_as_signal_axis(a) for a in t.signal_axes)]
    return cls(data, axes=axes, metadata=_titled(t.metadata, title))


def maps_signal(maps: np.ndarray, template: Any, title: str = "PSNMF maps") -> Any:
    """(ny, nx, k) maps as a Signal2D (k | ny, nx) with the template's spatial axes.

    Parameters
    ----------
    maps : ndarray (ny, nx, k)
    template : SignalTemplate or HyperSpy signal
    title : str

    Returns
    -------
    hyperspy.signals.Signal2D
        Navigation axis ``Component``; signal axes the input's navigation axes.
    """
    import hyperspy.api as hs

    t = _as_template(template)
    data = np.moveaxis(np.asarray(maps), -1, 0)
    _check_shape(data.shape[1:], t.navigation_shape, "maps (ny, nx, k)")
    axes = [_component_axis(data.shape[0]), *(_as_signal_axis(a) for a in t.navigation_axes)]
    return hs.signals.Signal2D(data, axes=axes, metadata={"General": {"title": title}})


def cube_signal(cube: Any, template: Any, title: str | None = None) -> Any:
    """A (ny, nx, channels) cube as a signal with the template's class, axes and metadata.

    Parameters
    ----------
    cube : ndarray or dask array (ny, nx, channels)
        A Dask array gives the lazy class of the template's signal type (and stays lazy),
        a NumPy array the in-memory one.
    template : SignalTemplate or HyperSpy signal
    title : str, optional
        The new ``metadata.General.title``; default the input's.

    Returns
    -------
    HyperSpy signal
        Axes, metadata and original metadata of the input.
    """
    t = _as_template(template)
    lazy = _is_dask(cube)
    data = cube if lazy else np.asarray(cube)
    _check_shape(data.shape, t.data_shape, "the cube")
    cls = _class_for(t.signal_class, t.signal_type, 1, np.dtype(data.dtype), lazy)
    axes = [copy.deepcopy(a) for a in (*t.navigation_axes, *t.signal_axes)]
    return cls(data, axes=axes, metadata=_titled(t.metadata, title),
               original_metadata=copy.deepcopy(t.original_metadata))


def scale_signal(scale: np.ndarray, template: Any, title: str = "PSNMF count scale") -> Any:
    """(ny, nx) per-pixel count scale as a Signal2D with the template's spatial axes.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> t = signal_template(hs.signals.Signal1D(np.zeros((3, 4, 10))))
    >>> scale_signal(np.ones((3, 4)), t).data.shape
    (3, 4)
    """
    import hyperspy.api as hs

    t = _as_template(template)
    data = np.asarray(scale)
    _check_shape(data.shape, t.navigation_shape, "scale (ny, nx)")
    axes = [_as_signal_axis(a) for a in t.navigation_axes]
    return hs.signals.Signal2D(data, axes=axes, metadata={"General": {"title": title}})


#: Bytes of one chunk of the placeholder data of :func:`decomposition_signal`.
_PLACEHOLDER_CHUNK_BYTES = 32 * 2**20


def decomposition_signal(
    factors: np.ndarray, loadings: np.ndarray, template: Any, *, algorithm: str,
    poissonian_noise_normalized: bool = False, explained_variance: np.ndarray | None = None,
    title: str | None = None, dtype: Any = np.float32,
) -> Any:
    """A lazy signal holding a decomposition, so that ``get_decomposition_model()`` works.

    HyperSpy rebuilds a decomposition model as ``loadings @ factors.T`` on the axes of the
    signal that holds the ``learning_results``; it needs that signal's axes, not its data.
    The returned signal has the template's class (lazy), axes and metadata, its data a
    placeholder of zeros (uint8, a Dask array never computed; :func:`save_decomposition`
    writes the file without it) and ``learning_results`` with ``factors`` (channels, k)
    and ``loadings`` (pixels, k) in ``dtype``; the original metadata is left out (it can
    weigh more than the factors). Saved and loaded again (``hs.load(path, lazy=True)``),
    ``get_decomposition_model()`` is the model, and ``get_decomposition_factors()`` /
    ``get_decomposition_loadings()`` give the factors and loadings as signals.

    The factors are stored in float32 by default: the model then equals the float64
    product to float32 precision (relative difference about 1e-7, that of the float32
    cubes ``write_denoised`` writes) at half the bytes. The bit-exact route to the PSNMF
    cube is :func:`denoised_from_factors` on the float64 spectra, maps and count scale.

    Parameters
    ----------
    factors : ndarray (channels, k)
    loadings : ndarray (pixels, k)
        Pixels in array order (``y * nx + x``).
    template : SignalTemplate or HyperSpy signal
        Axes and metadata of the spectrum image.
    algorithm : str
        ``learning_results.decomposition_algorithm``.
    poissonian_noise_normalized : bool
        Recorded in ``learning_results`` (the factors and loadings are stored with the
        normalisation undone, as HyperSpy stores them).
    explained_variance : ndarray (k,), optional
    title : str, optional
    dtype : numpy dtype, default float32
        Of the stored factors and loadings (``np.float64`` keeps them exact).

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> t = signal_template(hs.signals.Signal1D(np.zeros((2, 3, 4))))
    >>> s = decomposition_signal(np.ones((4, 1)), np.arange(6.0)[:, None], t, algorithm="x")
    >>> s.get_decomposition_model().data.compute()[1, 2]
    array([5., 5., 5., 5.], dtype=float32)
    """
    import dask.array as da

    t = _as_template(template).as_lazy()
    factors = np.asarray(factors, dtype=dtype)
    loadings = np.asarray(loadings, dtype=dtype)
    ny_nx, channels = t.navigation_shape, t.data_shape[-1]
    k = factors.shape[1] if factors.ndim == 2 else -1
    _check_shape(factors.shape, (channels, k), "factors (channels, k)")
    _check_shape(loadings.shape, (int(np.prod(ny_nx)), k), "loadings (pixels, k)")
    row_bytes = int(np.prod(ny_nx[1:])) * channels
    rows = max(1, min(ny_nx[0], _PLACEHOLDER_CHUNK_BYTES // max(row_bytes, 1)))
    placeholder = da.zeros(t.data_shape, dtype=np.uint8,
                           chunks=(rows, *t.data_shape[1:]))
    t = dataclasses.replace(t, original_metadata={})  # the raw file's, not the model's
    s = cube_signal(placeholder, t, title=title)
    lr = s.learning_results
    lr.factors, lr.loadings = factors, loadings
    lr.decomposition_algorithm = algorithm
    lr.poissonian_noise_normalized = bool(poissonian_noise_normalized)
    lr.output_dimension = int(k)
    lr.centre = None
    if explained_variance is not None:
        ev = np.asarray(explained_variance, dtype=np.float64)
        lr.explained_variance = ev
        lr.explained_variance_ratio = ev / ev.sum() if ev.sum() > 0 else ev
    return s


def save_decomposition(signal: Any, path: Any) -> Any:
    """Save a :func:`decomposition_signal` to ``.hspy`` without writing its placeholder data.

    HyperSpy writes the axes, metadata and ``learning_results`` (``write_dataset=False``);
    the ``data`` dataset is then created with the placeholder's shape, dtype and chunks but
    no chunk written. HDF5 allocates the chunks of a dataset when they are written, and
    reads unwritten ones as the fill value (0): the file holds the factors only, where
    writing the zeros cost about 1/1000 of the cube's uint8 size (0.5 MB at
    512 x 512 x 1980), the limit of gzip's compression ratio.

    Parameters
    ----------
    signal : lazy HyperSpy signal
        From :func:`decomposition_signal`.
    path : str or path-like
        The ``.hspy`` file (replaced if it exists).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile, pathlib, hyperspy.api as hs
    >>> t = signal_template(hs.signals.Signal1D(np.zeros((2, 3, 4))))
    >>> s = decomposition_signal(np.ones((4, 1)), np.arange(6.0)[:, None], t, algorithm="x")
    >>> path = save_decomposition(s, pathlib.Path(tempfile.mkdtemp()) / "d.hspy")
    >>> loaded = hs.load(path, lazy=True)
    >>> loaded.data.shape, float(loaded.get_decomposition_model().data[1, 2, 0].compute())
    ((2, 3, 4), 5.0)
    """
    from pathlib import Path

    import h5py

    path = Path(path)
    path.unlink(missing_ok=True)  # write_dataset=False appends (mode "a")
    signal.save(str(path), file_format="HSPY", write_dataset=False, overwrite=True,
                show_progressbar=False)
    data = signal.data
    with h5py.File(path, "r+") as f:
        (group,) = f["Experiments"].values()
        group.create_dataset("data", shape=data.shape, dtype=data.dtype,
                             chunks=tuple(c[0] for c in data.chunks), fillvalue=0)
    return path


def _factor_rebuild(loadings: np.ndarray, scale: np.ndarray | None,
                    spectra: np.ndarray) -> np.ndarray:
    """``scale[..., None] * (loadings @ spectra)`` of one block (scale optional)."""
    out = loadings @ spectra
    return out if scale is None else scale[..., None] * out


def denoised_from_factors(
    spectra: Any, maps: Any, scale: Any = None, *, lazy: bool = True,
    title: str = "denoised", chunk_bytes: int = 64 * 2**20,
) -> Any:
    """The denoised cube ``scale * (maps @ spectra)`` from factor signals, as a signal.

    Rebuilds the cube that ``psnmf unmix`` writes as factors: for PSNMF the component
    spectra (``component_spectra.hspy``), maps (``component_maps.hspy``) and the per-pixel
    count scale (``count_scale.hspy``), computed as :meth:`psnmf.PSNMF.reconstruct` does
    (float64, the same products in the same order); for PCA the factors and loadings of a
    decomposition (``get_decomposition_factors()`` and ``get_decomposition_loadings()``
    of ``pca_decomposition.hspy``) without a scale.

    Parameters
    ----------
    spectra : HyperSpy signal (k | channels) or ndarray (k, channels)
        Its class (EDS), energy axis and metadata are those of the result.
    maps : Signal2D (k | ny, nx)
        Its signal axes are the result's navigation axes.
    scale : Signal2D (ny, nx), ndarray (ny, nx) or None
        Per-pixel factor; ``None`` for none.
    lazy : bool, default True
        A lazy signal (Dask, row blocks of about ``chunk_bytes``): nothing is computed until
        asked (``.data[...]``, ``.compute()``, ``.save()``). ``False``: in memory.
    title : str
    chunk_bytes : int
        Size of one float64 block of the lazy cube.

    Returns
    -------
    HyperSpy signal (ny, nx | channels), float64.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> t = signal_template(hs.signals.Signal1D(np.zeros((2, 3, 4))))
    >>> S, A = np.full((1, 4), 0.25), np.ones((2, 3, 1))
    >>> cube = denoised_from_factors(spectra_signal(S, t), maps_signal(A, t),
    ...                              scale_signal(np.full((2, 3), 8.0), t))
    >>> cube.data.shape, float(cube.data.sum().compute())
    ((2, 3, 4), 48.0)
    """
    import dask.array as da

    S = np.asarray(spectra.data if is_signal(spectra) else spectra, dtype=np.float64)
    A = np.moveaxis(np.asarray(maps.data, dtype=np.float64), 0, -1)  # (ny, nx, k)
    if S.ndim != 2 or A.shape[-1] != S.shape[0]:
        raise ValueError(
            f"spectra (k, channels) {S.shape} and maps (k | ny, nx) "
            f"{np.moveaxis(A, -1, 0).shape} must have the same number of components k."
        )
    sc = None if scale is None else np.asarray(
        scale.data if is_signal(scale) else scale, dtype=np.float64)
    if sc is not None and sc.shape != A.shape[:-1]:
        raise ValueError(f"scale has shape {sc.shape}; the maps need {A.shape[:-1]}.")
    template = _factor_template(spectra, maps, lazy)
    if not lazy:
        return cube_signal(_factor_rebuild(A, sc, S), template, title=title)
    row_bytes = 8 * int(np.prod(A.shape[1:-1])) * S.shape[1]
    rows = max(1, min(A.shape[0], chunk_bytes // max(row_bytes, 1)))
    A_da = da.from_array(A, chunks=(rows, *A.shape[1:]))
    channels = ((S.shape[1],),)
    if sc is None:
        cube = da.map_blocks(lambda a: _factor_rebuild(a, None, S), A_da, dtype=np.float64,
                             chunks=(*A_da.chunks[:-1], *channels))
    else:
        # the scale with a trailing axis of one, so that its blocks align with the maps'
        sc_da = da.from_array(sc[..., None], chunks=(*A_da.chunks[:-1], (1,)))
        cube = da.map_blocks(lambda a, s_: _factor_rebuild(a, s_[..., 0], S), A_da, sc_da,
                             dtype=np.float64, chunks=(*A_da.chunks[:-1], *channels))
    return cube_signal(cube, template, title=title)


def _factor_template(spectra: Any, maps: Any, lazy: bool) -> SignalTemplate:
    """The template of the cube of :func:`denoised_from_factors`: the class, energy axis and
    metadata of ``spectra``, the navigation axes from the signal axes of ``maps``."""
    if not is_signal(maps):
        raise TypeError(f"maps must be a HyperSpy Signal2D (k | ny, nx), got "
                        f"{type(maps).__name__}.")
    nav = [{**a.get_axis_dictionary(), "navigate": True}
           for a in maps.axes_manager.signal_axes[::-1]]
    if is_signal(spectra):
        cls, sig_axes = type(spectra), [
            {**a.get_axis_dictionary(), "navigate": False}
            for a in spectra.axes_manager.signal_axes[::-1]]
        metadata = _without_signals(spectra.metadata.as_dictionary())
    else:
        import hyperspy.api as hs

        channels = int(np.shape(spectra)[-1])
        cls, sig_axes, metadata = hs.signals.Signal1D, [
            {"name": "Energy", "size": channels, "scale": 1.0, "offset": 0.0,
             "units": "", "navigate": False}], {}
    signal_type = str(metadata.get("Signal", {}).get("signal_type", "") or "")
    cls = _class_for(cls, signal_type, 1, np.dtype(np.float64), lazy)
    return SignalTemplate(
        signal_class=cls, signal_type=signal_type, navigation_axes=tuple(nav),
        signal_axes=tuple(sig_axes), metadata=copy.deepcopy(metadata), original_metadata={},
    )


# ---------------------------------------------------------------------------------------
# Counts in
# ---------------------------------------------------------------------------------------
def _lazy_counts(data: Any, source: Any, name: str) -> sp.csr_matrix:
    """Checked counts CSR of a Dask array, converted chunk by chunk (never dense).

    ``source`` is the signal (its file name goes into messages) or the array itself.
    :func:`psnmf.io.to_counts` checks the values on the way, so they are not checked again.
    """
    from psnmf.io import to_counts

    if data.ndim != 3:  # line scan / single spectrum: view as a (1, n, channels) image
        data = data.reshape((1, -1, data.shape[-1]))
        source = data
    counts, _ = to_counts(source, dtype=np.float64)
    return counts_csr(counts, name)


def _signal_counts(
    X: Any, name: str, allow_line_scan: bool
) -> tuple[sp.csr_matrix, tuple[int, ...], SignalTemplate]:
    check_spectrum_image(X, name, allow_line_scan=allow_line_scan)
    data = X.data
    shape = tuple(int(n) for n in data.shape[:-1])
    if _is_dask(data):
        counts = _lazy_counts(data, X, name)
    else:
        data = as_array(data, name)
        counts = check_counts_matrix(data.reshape(-1, data.shape[-1]), name)
    return counts, shape, signal_template(X)


def _matrix_shape(
    counts: sp.csr_matrix, image_shape: Any, name: str, allow_line_scan: bool
) -> tuple[int, ...]:
    """The navigation shape of a (pixels, channels) matrix."""
    if image_shape is not None:
        return check_image_shape(image_shape, counts.shape[0], name)
    if allow_line_scan:
        return (counts.shape[0],)
    raise ValueError(
        f"{name} is a 2-D (pixels, channels) matrix, so PSNMF needs "
        "image_shape=(ny, nx) to know how to bin it spatially (HyperSpy's "
        "decomposition passes such a matrix: set image_shape to the signal's "
        "axes_manager.navigation_shape[::-1]). If it is a line scan, " + _LINE_SCAN_HINT
    )


def _array_counts(
    X: Any, image_shape: Any, name: str, allow_line_scan: bool
) -> tuple[sp.csr_matrix, tuple[int, ...]]:
    if _is_dask(X) and getattr(X, "ndim", 0) == 3:  # a bare Dask cube: chunked path
        return _lazy_counts(X, X, name), (int(X.shape[0]), int(X.shape[1]))
    if not sp.issparse(X):
        X = as_array(X, name)
    if X.ndim == 3:
        cube = check_cube(X, name)
        ny, nx, ne = cube.shape
        return check_counts_matrix(cube.reshape(ny * nx, ne), name), (ny, nx)
    if X.ndim == 2:
        counts = check_counts_matrix(X, name)
        return counts, _matrix_shape(counts, image_shape, name, allow_line_scan)
    if X.ndim == 1 and allow_line_scan:
        return check_counts_matrix(np.asarray(X)[None, :], name), ()
    raise ValueError(
        f"{name} must be a spectrum image of shape (ny, nx, channels) or a HyperSpy "
        f"Signal1D with two navigation axes, got an array of shape {np.shape(X)}. "
        + (_LINE_SCAN_HINT if X.ndim in (0, 1) else "")
    )


def as_counts(
    X: Any,
    image_shape: tuple[int, int] | None,
    name: str = "X",
    *,
    allow_line_scan: bool = False,
) -> tuple[sp.csr_matrix, tuple[int, ...], SignalTemplate | None]:
    """Check the input once and return ``(counts, navigation shape, template)``.

    Parameters
    ----------
    X : HyperSpy Signal1D, array-like, Dask array or scipy.sparse matrix
        A spectrum image (signal with two navigation axes, or a ``(ny, nx, channels)``
        cube), or a ``(pixels, channels)`` matrix together with ``image_shape``. Lazy
        signals and Dask arrays are converted chunk by chunk with
        :func:`psnmf.io.to_counts`, never densified.
    image_shape : (int, int) or None
        ``(ny, nx)`` of a ``(pixels, channels)`` matrix (row-major pixels).
    name : str
        Name of the input in messages.
    allow_line_scan : bool, default False
        Also accept a line scan (a signal with one navigation axis, or a matrix without
        ``image_shape``: navigation shape ``(n,)``) and a single spectrum (a signal without
        navigation axes or a 1-D array: ``()``), for methods that need no image.

    Returns
    -------
    counts : scipy.sparse.csr_matrix (pixels, channels)
        Checked counts in psnmf's internal form (float64 data, no explicit zeros, int32
        indices; :func:`psnmf._validation.counts_csr`). Downstream layers receive these
        and need not check the values again.
    shape : tuple of int
        ``(ny, nx)`` (or ``(n,)`` / ``()`` with ``allow_line_scan``).
    template : SignalTemplate or None
        For a signal, its :class:`SignalTemplate`; None for arrays.

    Raises
    ------
    ValueError, TypeError
        For a wrong shape or dimension, non-real, NaN, infinite, negative or masked
        values; each message names ``name`` and the fix.

    Warns
    -----
    UserWarning
        (:class:`psnmf._validation.NonIntegerCountsWarning` for in-memory input) when the
        values are not integers.

    Examples
    --------
    >>> counts, shape, template = as_counts(np.arange(24).reshape(2, 3, 4), None)
    >>> counts.shape, shape, template is None
    ((6, 4), (2, 3), True)
    >>> as_counts(np.ma.masked_less(np.ones((2, 3, 4)), 2), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: X is a NumPy masked array with 24 masked value(s); ...
    """
    if is_signal(X):
        return _signal_counts(X, name, allow_line_scan)
    counts, shape = _array_counts(X, image_shape, name, allow_line_scan)
    return counts, shape, None
