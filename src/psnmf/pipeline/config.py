"""The configuration of a ``psnmf unmix`` run: one schema for the TOML file, the command
line and :func:`psnmf.pipeline.unmix`.

:data:`KEYS` lists every key: its TOML name, type, default and meaning. A
:class:`RunConfig` holds one value per key in its TOML form ("canonical" values: ``"auto"``
or ``"none"`` stand for what Python writes as ``None``). It is built from a TOML file
(:meth:`RunConfig.from_file`), from the keyword arguments of a call of
:func:`~psnmf.pipeline.unmix` (:meth:`RunConfig.from_unmix_call`), or updated with the
options given on the command line (:meth:`RunConfig.updated`), and gives back the keyword
arguments of :func:`~psnmf.pipeline.unmix` (:meth:`RunConfig.unmix_kwargs`) and the text of
``config.toml`` (:meth:`RunConfig.to_toml`), which every run writes beside its results.

The file
--------
Top-level keys are the parameters of :func:`~psnmf.pipeline.unmix` (``n_components``,
``bin_factor``, ...) and ``files``; the table ``[quantify]`` holds the
``quantify_options``. ``output``, ``overwrite``, ``quiet`` and ``verbose`` say where and how
a run writes; they may be set in a file but a run does not write them. Paths in a file
(``files``, ``output``, ``quantify.k_factors``) are relative to the file's folder. Unknown
keys, wrong types and bad values are refused with :class:`ConfigError`, naming the key, the
file and the fix.

Adding a key is one :class:`Key` in :data:`KEYS` (and, for the command line, its option).

Examples
--------
>>> cfg = RunConfig.from_text('n_components = 3\\nbin_factor = 4\\n[quantify]\\nthickness = 80')
>>> kw = cfg.unmix_kwargs()
>>> kw["n_components"], kw["bin_factor"], kw["smoothing"], kw["quantify_options"]
(3, 4, 'auto', {'method': 'CL', 'thickness': 80.0})
>>> RunConfig.from_text("bin = 4")
Traceback (most recent call last):
...
psnmf.pipeline.config.ConfigError: <text>: unknown key 'bin'. Did you mean 'bin_factor'? \
The keys are listed by psnmf.pipeline.config.describe() (and in 'psnmf unmix \
--help').
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from psnmf import __version__
from psnmf.selection import DEFAULT_BINS

__all__ = ["CONFIG_NAME", "KEYS", "ConfigError", "Key", "RunConfig", "describe"]

#: The name of the configuration a run writes into its results folder.
CONFIG_NAME = "config.toml"


class ConfigError(ValueError):
    """A configuration that cannot be used: the message names the key, the source and the fix."""


class _Bad(Exception):
    """A value refused by a kind: what was wrong and an example of a good value."""

    def __init__(self, expected: str, example: str) -> None:
        super().__init__(expected)
        self.expected = expected
        self.example = example


# ---------------------------------------------------------------------------------------
# Kinds: each checks a TOML value (returning it in canonical form) and turns it into the
# Python value of unmix's keyword argument, and back.
# ---------------------------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _python(v: Any) -> Any:
    """NumPy scalars and tuples as plain Python values (what TOML can hold)."""
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", None) == 0:
        return v.item()
    if isinstance(v, tuple) or (hasattr(v, "tolist") and not isinstance(v, str)):
        return list(v.tolist() if hasattr(v, "tolist") else v)
    return v


@dataclass(frozen=True)
class Kind:
    """The type of a key.

    ``check`` takes a TOML value and returns it in canonical form (or raises ``_Bad``);
    ``to_python`` gives the keyword argument of :func:`~psnmf.pipeline.unmix` from a
    canonical value; ``from_python`` the canonical value of a keyword argument (before
    ``check``); ``path`` marks values that are paths (made relative to a file's folder).
    """

    check: Callable[[Any], Any]
    to_python: Callable[[Any], Any] = lambda v: v
    from_python: Callable[[Any], Any] = _python
    path: bool = False


def _int(lo: int, hi: float = math.inf, *, auto: bool = False, zero: bool = True,
         example: str = "4") -> Kind:
    """An integer in ``[lo, hi)``; with ``auto`` also ``"auto"``; ``zero=False`` refuses 1
    next to 0 (0 or >= 2)."""
    words = f"an integer >= {lo}" if hi == math.inf else f"an integer from {lo} to {hi:.0f}"
    if not zero:
        words = "0 or an integer >= 2"
    if auto:
        words += ' or "auto"'

    def check(v: Any) -> Any:
        if auto and isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        if not _is_int(v) or not lo <= v < hi or (not zero and v == 1):
            raise _Bad(words, example)
        return v

    return Kind(check, from_python=lambda v: "auto" if v is None else _python(v))


def _int_list(example: str) -> Kind:
    def check(v: Any) -> Any:
        if not isinstance(v, list) or not v or not all(_is_int(x) and x >= 1 for x in v):
            raise _Bad("a non-empty list of positive integers", example)
        return v

    return Kind(check, to_python=tuple)


def _number(lo: float = 0.0, *, none: str | None = None, strict: bool = False,
            example: str = "1.0") -> Kind:
    """A finite number ``>= lo`` (``> lo`` when ``strict``), as float; with ``none`` the
    word that stands for ``None`` (not set)."""
    words = f"a number {'>' if strict else '>='} {lo:g}" + (f' or "{none}"' if none else "")

    def check(v: Any) -> Any:
        if none is not None and isinstance(v, str) and v.strip().lower() == none:
            return none
        if not _is_number(v) or v < lo or (strict and v == lo):
            raise _Bad(words, example)
        return float(v)

    return Kind(check, to_python=lambda v: None if v == none else v,
                from_python=lambda v: none if v is None else _python(v))


def _boolean() -> Kind:
    def check(v: Any) -> Any:
        if not isinstance(v, bool):
            raise _Bad("true or false", "true")
        return v

    return Kind(check, from_python=lambda v: bool(v) if isinstance(v, bool | int) else v)


def _choice(*values: str, none: str | None = None, example: str | None = None) -> Kind:
    """One of ``values``; with ``none`` the one of them that stands for ``None``;
    ``example`` the value a refusal suggests (default the first)."""
    def check(v: Any) -> Any:
        if v not in values:
            raise _Bad("one of " + ", ".join(f'"{x}"' for x in values),
                       f'"{example or values[0]}"')
        return v

    if none is None:
        return Kind(check)
    return Kind(check, to_python=lambda v: None if v == none else v,
                from_python=lambda v: none if v is None else v)


def _text() -> Kind:
    def check(v: Any) -> Any:
        if not isinstance(v, str):
            raise _Bad("a string", '"1.0"')
        return v

    return Kind(check)


def _str_list(*, auto: bool, example: str) -> Kind:
    words = "a list of chemical symbols" + (' or "auto"' if auto else "")

    def check(v: Any) -> Any:
        if auto and v == "auto":
            return v
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise _Bad(words, example)
        return [x.strip() for x in v]

    def to_python(v: Any) -> Any:
        return None if v == "auto" else list(v)

    def from_python(v: Any) -> Any:
        if v is None:
            return "auto" if auto else []
        return [str(x) for x in v] if isinstance(v, list | tuple) else v

    return Kind(check, to_python, from_python)


def _paths(example: str) -> Kind:
    def check(v: Any) -> Any:
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise _Bad("a list of file names", example)
        return v

    return Kind(check, from_python=lambda v: [str(x) for x in v], path=True)


def _optional_path(word: str) -> Kind:
    def check(v: Any) -> Any:
        if not isinstance(v, str) or not v:
            raise _Bad(f'a folder name or "{word}"', '"results"')
        return v

    return Kind(check, to_python=lambda v: None if v == word else v,
                from_python=lambda v: word if v is None else str(v), path=True)


def _energy_range() -> Kind:
    words = 'two numbers LO, HI in keV (either may be "auto" for an open end) or "auto"'

    def end(x: Any) -> Any:
        if x == "auto" or x is None:
            return "auto"
        if not _is_number(x) or x < 0:
            raise _Bad(words, "[0.2, 15.0]")
        return float(x)

    def check(v: Any) -> Any:
        if v == "auto":
            return v
        if not isinstance(v, list) or len(v) != 2:
            raise _Bad(words, "[0.2, 15.0]")
        lo, hi = end(v[0]), end(v[1])
        if lo != "auto" and hi != "auto" and lo >= hi:
            raise _Bad(words + ", LO below HI", "[0.2, 15.0]")
        return [lo, hi] if [lo, hi] != ["auto", "auto"] else "auto"

    def to_python(v: Any) -> Any:
        return None if v == "auto" else tuple(None if x == "auto" else x for x in v)

    def from_python(v: Any) -> Any:
        return "auto" if v is None else ["auto" if x is None else _python(x) for x in v]

    return Kind(check, to_python, from_python)


def _seed() -> Kind:
    base = _int(0, 2**32, example="0")

    def check(v: Any) -> Any:
        if v == "none":
            return v
        try:
            return base.check(v)
        except _Bad:
            raise _Bad('an integer from 0 to 2**32 - 1 (or "none": not reproducible)',
                       "0") from None

    return Kind(check, to_python=lambda v: None if v == "none" else v,
                from_python=lambda v: "none" if v is None else _python(v))


def _smoothing() -> Kind:
    def check(v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("auto", "none"):
            return v.strip().lower()
        if not _is_number(v) or v < 0:
            raise _Bad('a weight >= 0 (relative to the counts per pixel), "auto" or "none"',
                       '"auto"')
        return float(v)

    return Kind(check, to_python=lambda v: None if v == "none" else v,
                from_python=lambda v: "none" if v is None else _python(v))


def _k_factors() -> Kind:
    """``"theoretical"``, a file (CSV or JSON, :func:`psnmf.quantify.read_k_factors`), or a
    table: element -> k, or the fields of :class:`psnmf.quantify.KFactors`."""
    words = ('"theoretical", a k-factor file (CSV or JSON) or a table of element = k, e.g. '
             '{ Fe = 1.0, O = 2.1 }')

    def check(v: Any) -> Any:
        if isinstance(v, str) and v:
            return v
        if isinstance(v, dict) and v:
            if "values" in v:
                if not isinstance(v["values"], dict) or set(v) - {"values", "lines", "basis",
                                                                  "relative_sd"}:
                    raise _Bad(words + " (or values, lines, basis, relative_sd)", '"k.csv"')
                return v
            if all(_is_number(x) and x > 0 for x in v.values()):
                return {str(el): float(x) for el, x in v.items()}
        raise _Bad(words, '"k.csv"')

    def to_python(v: Any) -> Any:
        if v == "theoretical":
            return None
        if isinstance(v, str):
            return Path(v)
        if "values" in v:
            from psnmf.quantify import KFactors

            return KFactors(**v)
        return dict(v)

    def from_python(v: Any) -> Any:
        if v is None:
            return "theoretical"
        if isinstance(v, str | Path):
            return str(v)
        if is_dataclass(v) and not isinstance(v, type):
            return {name: dict(x) if isinstance(x, dict) else x
                    for name, x in asdict(v).items() if x or name == "values"}
        return {str(el): _python(x) for el, x in dict(v).items()} if isinstance(v, Mapping) else v

    return Kind(check, to_python, from_python, path=True)


def _by_component(item: Callable[[Any], Any], words: str, example: str, *,
                  path: bool = False) -> Kind:
    """A table ``component index -> item`` (TOML keys are strings: ``{ 0 = "ref.msa" }``
    is ``{"0": "ref.msa"}``); ``item`` checks a value (raising ``_Bad``) and returns it."""
    full = f"a table of component index = {words}"

    def check(v: Any) -> Any:
        if not isinstance(v, dict):
            raise _Bad(full, example)
        out = {}
        for j, x in v.items():
            if not (isinstance(j, str) and j.strip().isdigit()):
                raise _Bad(full + " (component 0 is the first)", example)
            out[str(int(j))] = item(x)
        return dict(sorted(out.items(), key=lambda kv: int(kv[0])))

    def from_python(v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        return {str(j): ([str(e) for e in x] if isinstance(x, list | tuple) else str(x))
                for j, x in v.items()}

    return Kind(check, to_python=lambda v: {int(j): x for j, x in v.items()},
                from_python=from_python, path=path)


def _valences() -> Kind:
    """A table of element = valence, e.g. ``{ Fe = 3, Ti = 4 }`` (anions negative, ``{ C =
    -4 }`` in a carbide): the charges :func:`psnmf.quantify.quantify` balances with
    ``thickness_from = "electroneutrality"``, overriding its table of common ones."""
    words = ("a table of element = valence (anions negative), e.g. { Fe = 3 } or "
             "{ Fe = 3, C = -4 }")

    def check(v: Any) -> Any:
        from psnmf.physics import atomic_number

        if not isinstance(v, dict):
            raise _Bad(words, "{ Fe = 3 }")
        out = {}
        for el, x in v.items():
            try:
                atomic_number(str(el))
            except ValueError:
                raise _Bad(words + f"; {el!r} is not a chemical symbol (capital first "
                           "letter, e.g. Fe)", "{ Fe = 3 }") from None
            if not _is_number(x):
                raise _Bad(words + f"; {el}'s valence {x!r} is not a number",
                           f"{{ {el} = 3 }}")
            out[str(el)] = float(x)
        return out

    def from_python(v: Any) -> Any:
        if v is None:
            return {}
        if isinstance(v, Mapping):
            return {str(el): _python(x) for el, x in v.items()}
        return v

    return Kind(check, to_python=lambda v: dict(v) or None, from_python=from_python)


def _file_name(v: Any) -> Any:
    if not isinstance(v, str) or not v:
        raise _Bad("a file name", '"ref.msa"')
    return v


def _symbols(v: Any) -> Any:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip()
                                                  for x in v):
        raise _Bad("a list of chemical symbols", '["Fe", "Mg"]')
    return [x.strip() for x in v]


def _mask_file() -> Kind:
    def check(v: Any) -> Any:
        if not isinstance(v, str) or not v:
            raise _Bad('a mask file (.npy, .png, .tif) or "none"', '"vacuum.npy"')
        return v

    return Kind(check, to_python=lambda v: None if v == "none" else Path(v),
                from_python=lambda v: "none" if v is None else str(v), path=True)


# ---------------------------------------------------------------------------------------
# The schema
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    """One configuration key.

    Attributes
    ----------
    name : str
        The TOML key (in ``table`` when given).
    kind : Kind
        Its type (check and conversions).
    default : Any
        The default, in canonical (TOML) form.
    doc : str
        What it sets (one line).
    table : str or None
        ``"quantify"`` for the options of the quantification (``quantify_options`` of
        :func:`~psnmf.pipeline.unmix`), None for a top-level key.
    written : bool
        Whether a run writes it into ``config.toml`` (False for where and how a run writes:
        ``output``, ``overwrite``, ``quiet``, ``verbose``).
    run : bool
        Whether it is a keyword argument of :func:`~psnmf.pipeline.unmix` (False for
        ``files``, ``output``, ``quiet`` and the version).
    hint : str
        Added to the message refusing a bad value.
    """

    name: str
    kind: Kind
    default: Any
    doc: str
    table: str | None = None
    written: bool = True
    run: bool = True
    hint: str = ""

    @property
    def path(self) -> str:
        """The dotted name, e.g. ``quantify.thickness``."""
        return f"{self.table}.{self.name}" if self.table else self.name


def _keys(*keys: Key) -> dict[str, Key]:
    return {k.path: k for k in keys}


_Q = "quantify"
_P = "priors"
#: Every key of a configuration, by dotted name. Defaults are those of
#: :func:`psnmf.pipeline.unmix` (a test checks them against its signature).
KEYS: dict[str, Key] = _keys(
    Key("psnmf_version", _text(), __version__, "the psnmf that wrote the file (informational)",
        run=False),
    Key("files", _paths('["a.bcf", "b.emd"]'), [], "the input files", run=False),
    Key("n_components", _int(1, auto=True, example="3"), "auto",
        "number of components k, or \"auto\""),
    Key("bin_factor", _int(1, auto=True), "auto", "bin factor b, or \"auto\""),
    Key("bins", _int_list("[4, 8, 16]"), list(DEFAULT_BINS), "candidate b for bin_factor auto"),
    Key("components", _int_list("[2, 3, 4, 5, 6]"), [2, 3, 4, 5, 6],
        "candidate k for n_components auto",
        hint=" (The number of components itself, -k on the command line, is n_components.)"),
    Key("energy_range", _energy_range(), "auto", "channels used, [LO, HI] in keV"),
    Key("elements", _str_list(auto=True, example='["Fe", "Cr", "O"]'), "auto",
        "elements of the elemental maps (\"auto\": the file's)"),
    Key("seed", _seed(), 0, "seed of the count split and the initialisation"),
    Key("max_iter", _int(1, example="1000"), 1000, "iteration cap of the binned stage"),
    Key("max_iter_full", _int(1, example="200"), 200,
        "iteration cap of the full-resolution stage"),
    Key("smoothing", _smoothing(), "auto", "total-variation weight of the maps"),
    Key("vertex", _boolean(), True, "pure-pixel spectra (false: the paper's PSNMF)"),
    Key("never_pure", _choice("keep", "lines"), "keep",
        "spectra of phases without pure pixels: NMF's (keep) or extrapolated by the "
        "element lines (lines)"),
    Key("n_boot", _int(0, zero=False, example="20"), 20, "bootstrap replicates (0: none)"),
    Key("write_denoised", _boolean(), False, "also write the dense denoised cubes"),
    Key("report", _boolean(), True, "write the figures and report.html"),
    Key("output", _optional_path("auto"), "auto",
        "output folder (\"auto\": <stem>_psnmf; several files: the folder of their folders)",
        written=False, run=False),
    Key("overwrite", _boolean(), False, "write into a non-empty output folder", written=False),
    Key("quiet", _boolean(), False, "no progress bars or summary", written=False, run=False),
    Key("verbose", _boolean(), False, "step timings and library messages", written=False),
    Key("method", _choice("CL", "zeta", "cross_section"), "CL", "quantification method",
        table=_Q),
    Key("k_factors", _k_factors(), "theoretical", "k-factors: \"theoretical\", a file or a table",
        table=_Q),
    Key("thickness", _number(none="auto", example="80.0"), "auto",
        "thickness in nm (\"auto\": the file's, else a thin film)", table=_Q),
    Key("thickness_sigma", _number(none="none", example="20.0"), "none",
        "standard deviation of the thickness in nm", table=_Q),
    Key("density", _number(strict=True, none="auto", example="4.1"), "auto",
        "density in g/cm^3 (\"auto\": from the composition)", table=_Q),
    Key("thickness_from", _choice("auto", "electroneutrality", "none", none="none",
                                      example="electroneutrality"), "auto",
        "\"auto\": a thickness in effect refined by each ionic component's charge balance, "
        "weighed in log mass thickness by its sd (a log-normal prior: thickness_sigma, the "
        "densities' spread unless density is given); "
        "\"electroneutrality\": the film from the charge balance also without an sd or a "
        "thickness; \"none\": the thickness given", table=_Q),
    Key("valences", _valences(), {},
        "element = valence for thickness_from (anions negative; default the common ones)",
        table=_Q),
    Key("charge_balance_sd", _number(example="0.01"), 0.01,
        "relative sd of a phase's charge balance for thickness_from (0: stoichiometric)",
        table=_Q),
    Key("exclude_elements", _str_list(auto=False, example='["Cu"]'), [],
        "elements fitted but left out of the totals", table=_Q),
    Key("detection_sigma", _number(strict=True, example="3.0"), 3.0,
        "detection limit in standard deviations", table=_Q),
    Key("detector_window_known", _boolean(), False,
        "the model's detector window is the detector's: no window part in the theoretical "
        "k-factor sd", table=_Q),
    Key("beam_current", _number(strict=True, none="none", example="0.5"), "none",
        "beam current in nA", table=_Q),
    Key("live_time", _number(strict=True, none="none", example="60.0"), "none",
        "live time of the whole map in s", table=_Q),
    Key("probe_area", _number(strict=True, none="none", example="1e4"), "none",
        "area of the whole map in nm^2", table=_Q),
    Key("solid_angle", _number(strict=True, none="none", example="0.7"), "none",
        "detector solid angle in sr", table=_Q),
    Key("takeoff_angle", _number(none="auto", example="18.0"), "auto",
        "take-off angle in degrees (\"auto\": the file's)", table=_Q),
    Key("fixed_spectra", _by_component(_file_name, "reference spectrum file",
                                       '{ 0 = "olivine.msa" }', path=True), {},
        "components whose spectrum is fixed to a reference (.hspy, .msa, .csv)", table=_P),
    Key("forbid", _by_component(_symbols, "list of elements", '{ 1 = ["Fe", "Mg"] }'), {},
        "elements absent from a component", table=_P),
    Key("rois", _by_component(_file_name, "mask file", '{ 2 = "grain.png" }', path=True), {},
        "components started from a region of interest (.npy, .png, .tif)", table=_P),
    Key("pixel_mask", _mask_file(), "none",
        "pixels left out of the fit (.npy, .png, .tif; non-zero = masked)", table=_P),
)
#: The tables of a configuration file.
TABLES = {k.table for k in KEYS.values() if k.table}
#: The fields of :class:`psnmf.pipeline.Priors`, keys of the ``[priors]`` table.
PRIOR_FIELDS = ("fixed_spectra", "forbid", "rois", "pixel_mask")
#: Keys of ``unmix``'s ``quantify_options`` always passed (the others only when set).
_ALWAYS = {"quantify.method"}


def describe() -> str:
    """The keys of a configuration file, one per line: name, default and meaning.

    Examples
    --------
    >>> print(describe().splitlines()[2])
    n_components = "auto"  # number of components k, or "auto"
    """
    import json

    lines, table = [], None
    for key in KEYS.values():
        if key.table != table:
            table = key.table
            lines.append(f"[{table}]")
        lines.append(f"{key.name} = {json.dumps(key.default)}  # {key.doc}")
    return "\n".join(lines)


def _where(key: str, source: str) -> str:
    return f"{source}: key '{key}'"


#: Names of the command line's options that are keys of another name in a file.
_OPTION_NAMES = {"bin": "bin_factor", "k": "n_components", "bootstrap": "n_boot",
                 "no_vertex": "vertex", "output_dir": "output", "file": "files",
                 "config": "files"}


def _unknown(name: str, source: str, table: str | None) -> ConfigError:
    known = [k.name for k in KEYS.values() if k.table == table]
    if table is None:
        known += sorted(TABLES)
    alias = name.replace("-", "_")
    alias = alias if table is not None else _OPTION_NAMES.get(alias, alias)
    if alias in known:
        close = [alias]
    else:
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        if table is None and not close:  # a quantification option at the top level
            close = [f"[{t}] {name}" for t in sorted(TABLES) if f"{t}.{name}" in KEYS]
    hint = (" Did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close else ""
    full = f"{table}.{name}" if table else name
    return ConfigError(
        f"{source}: unknown key '{full}'.{hint} The keys are listed by "
        "psnmf.pipeline.config.describe() (and in 'psnmf unmix --help')."
    )


def _refuse(key: Key, value: Any, bad: _Bad, source: str) -> ConfigError:
    got = type(value).__name__ if not isinstance(value, str) else "string"
    return ConfigError(
        f"{_where(key.path, source)}: expected {bad.expected}, got {value!r} ({got}). "
        f"Fix: e.g. {key.name} = {bad.example}"
        + (f" in the [{key.table}] table" if key.table else "") + "." + key.hint
    )


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The dotted keys of parsed TOML (``{"quantify": {"thickness": 80}}`` ->
    ``{"quantify.thickness": 80}``); unknown keys and tables refused."""
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{name}' must be a table ([{name}]), got "
                                  f"{value!r}. Fix: put its keys under a line [{name}].")
            for sub, v in value.items():
                if f"{name}.{sub}" not in KEYS:
                    raise _unknown(sub, source, name)
                out[f"{name}.{sub}"] = v
        elif name in KEYS and KEYS[name].table is None:
            out[name] = value
        else:
            raise _unknown(name, source, None)
    return out


def _relative_to(value: Any, folder: Path | None) -> Any:
    """Relative paths of a file made relative to ``folder`` (the file's folder)."""
    if folder is None:
        return value
    if isinstance(value, list):
        return [_relative_to(v, folder) for v in value]
    if isinstance(value, dict):
        return {k: _relative_to(v, folder) for k, v in value.items()}
    if isinstance(value, str) and value not in ("auto", "theoretical", "none"):
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else folder / path)
    return value


@dataclass
class RunConfig:
    """A complete configuration of ``psnmf unmix``: one canonical value per key of
    :data:`KEYS`.

    Attributes
    ----------
    values : dict
        Dotted key -> canonical (TOML) value, every key present.
    sources : dict
        Dotted key -> where its value came from (``'default'``, a file, ``'the command
        line'``).
    not_written : list of str
        Priors given as arrays or signals in memory (e.g. ``priors.rois[2]``), which a
        file cannot hold: a run says so in its ``config.toml``.
    """

    values: dict[str, Any] = field(default_factory=lambda: {
        p: k.default for p, k in KEYS.items()})
    sources: dict[str, str] = field(default_factory=dict)
    not_written: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def python(self, key: str) -> Any:
        """The value of ``key`` as Python (``None`` for "auto"/"none")."""
        return KEYS[key].kind.to_python(self.values[key])

    # -- building -----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """Read a TOML configuration file; relative paths in it are taken from its folder."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Cannot read the configuration file '{path}' "
                              f"({exc.strerror or exc}). Check the name given to "
                              "--config.") from None
        return cls.from_text(text, source=str(path), folder=path.parent)

    @classmethod
    def from_text(cls, text: str, *, source: str = "<text>",
                  folder: Path | None = None) -> RunConfig:
        """Parse TOML ``text`` (``source`` names it in errors; relative paths are taken
        from ``folder`` when given)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source} is not valid TOML ({exc}). Fix the line it names "
                              "(see https://toml.io).") from None
        return cls().updated_toml(data, source=source, folder=folder)

    def updated_toml(self, data: Mapping[str, Any], *, source: str,
                     folder: Path | None = None) -> RunConfig:
        """A copy with the values of parsed TOML ``data`` (nested tables) checked and set."""
        new = RunConfig(dict(self.values), dict(self.sources))
        for path, value in _flatten(data, source).items():
            key = KEYS[path]
            if key.kind.path:
                value = _relative_to(value, folder)
            try:
                new.values[path] = key.kind.check(value)
            except _Bad as bad:
                raise _refuse(key, value, bad, source) from None
            new.sources[path] = source
        return new

    def updated(self, values: Mapping[str, Any], *,
                source: str = "the command line") -> RunConfig:
        """A copy with the Python values ``values`` (dotted key -> value as
        :func:`~psnmf.pipeline.unmix` takes it) checked and set; paths are kept as given."""
        new = RunConfig(dict(self.values), dict(self.sources))
        for path, value in values.items():
            if path not in KEYS:
                table, _, name = path.rpartition(".")
                raise _unknown(name, source, table or None)
            key = KEYS[path]
            canonical = key.kind.from_python(value)
            try:
                new.values[path] = key.kind.check(canonical)
            except _Bad as bad:
                raise _refuse(key, canonical, bad, source) from None
            new.sources[path] = source
        return new

    @classmethod
    def from_unmix_call(cls, call: Mapping[str, Any]) -> RunConfig:
        """The configuration of a call of :func:`~psnmf.pipeline.unmix` from its arguments
        (``call`` maps its parameter names to their values; ``quantify_options`` is a dict;
        ``path_or_signal`` a path gives ``files``). A keyword the schema does not know
        raises :class:`ConfigError` (a ``ValueError``) naming it."""
        values: dict[str, Any] = {}
        in_memory: list[str] = []
        for name, value in call.items():
            if name == "quantify_options":
                for sub, v in (value or {}).items():
                    values[f"{_Q}.{sub}"] = v
            elif name == "priors":
                values.update(_prior_values(value, in_memory))
            elif name == "path_or_signal":
                if isinstance(value, str | Path):
                    values["files"] = [str(Path(value).expanduser().resolve())]
            elif name in KEYS and KEYS[name].run:
                values[name] = value
        cfg = cls().updated(values, source="the arguments of psnmf.pipeline.unmix")
        cfg.not_written = in_memory
        kf = cfg.values["quantify.k_factors"]  # files named in the call: absolute
        if isinstance(kf, str):
            cfg.values["quantify.k_factors"] = _absolute(kf)
        for name in ("fixed_spectra", "rois", "pixel_mask"):
            cfg.values[f"{_P}.{name}"] = _absolute(cfg.values[f"{_P}.{name}"])
        return cfg

    # -- using ------------------------------------------------------------------------------
    def unmix_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~psnmf.pipeline.unmix` (but the input,
        ``output_dir`` and ``progress``): every run parameter, ``quantify_options`` holding
        the method and the quantification options that are set."""
        kwargs: dict[str, Any] = {}
        quantify: dict[str, Any] = {}
        priors: dict[str, Any] = {}
        for path, key in KEYS.items():
            if not key.run:
                continue
            value = self.python(path)
            if key.table is None:
                kwargs[key.name] = value
            elif key.table == _P:
                if self.values[path] != key.default:
                    priors[key.name] = value
            elif path in _ALWAYS or self.values[path] != key.default:
                quantify[key.name] = value
        kwargs["quantify_options"] = quantify
        kwargs["priors"] = priors or None
        return kwargs

    def to_toml(self, *, header: Iterable[str] = ()) -> str:
        """The text of ``config.toml``: every written key with its value (defaults filled in),
        the version of this psnmf, and ``header`` lines as comments on top."""
        import tomli_w

        top: dict[str, Any] = {}
        tables: dict[str, dict[str, Any]] = {t: {} for t in sorted(TABLES)}
        for path, key in KEYS.items():
            if not key.written:
                continue
            value = __version__ if path == "psnmf_version" else self.values[path]
            (tables[key.table] if key.table else top)[key.name] = value
        comments = "".join(f"# {line}\n" if line else "#\n" for line in header)
        return comments + tomli_w.dumps({**top, **tables})

    def write(self, path: str | Path, *, header: Sequence[str] = ()) -> Path:
        """Write :meth:`to_toml` to ``path`` (atomically); the path."""
        from psnmf.io import write_text

        return write_text(self.to_toml(header=header), path)


def _absolute(value: Any) -> Any:
    """File names in a canonical value (a string or a table of them) made absolute; the
    words ("theoretical", "none", "auto") and tables of numbers kept."""
    if isinstance(value, dict):
        return {k: _absolute(v) for k, v in value.items()}
    if isinstance(value, str) and value not in ("auto", "theoretical", "none"):
        return str(Path(value).expanduser().resolve())
    return value


def _prior_values(priors: Any, in_memory: list[str]) -> dict[str, Any]:
    """The ``[priors]`` keys of the ``priors`` argument of :func:`~psnmf.pipeline.unmix`
    (a :class:`psnmf.pipeline.Priors`, a dict of its fields or None): the files and
    element lists; what was given in memory (arrays, signals) is named in ``in_memory``
    instead. Anything else is left to ``unmix``'s own checks."""
    if priors is None:
        return {}
    fields = ({f: getattr(priors, f, None) for f in PRIOR_FIELDS} if not isinstance(
        priors, Mapping) else {f: priors.get(f) for f in PRIOR_FIELDS})
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None or (isinstance(value, Mapping) and not value):
            continue
        if name == "pixel_mask":
            if isinstance(value, str | Path):
                out[f"{_P}.pixel_mask"] = value
            else:
                in_memory.append(f"{_P}.pixel_mask")
            continue
        if not isinstance(value, Mapping):
            continue
        table = {}
        for j, v in value.items():
            if name == "forbid" or isinstance(v, str | Path):
                table[j] = list(v) if name == "forbid" and not isinstance(v, str) else v
            else:
                in_memory.append(f"{_P}.{name}[{j}]")
        if table:
            out[f"{_P}.{name}"] = table
    return out


def run_header(files: Sequence[str], not_written: Sequence[str] = ()) -> list[str]:
    """The comment lines on top of a run's ``config.toml``."""
    lines = [f"The configuration of a psnmf unmix run (psnmf {__version__}), every parameter",
             "with its value. Run it again: psnmf unmix --config config.toml [-o DIR]"]
    if not files:
        lines.append("The input was a signal in memory: give its file, psnmf unmix --config "
                     "config.toml FILE")
    if not_written:
        lines.append("Priors given in memory are not in this file (save them and name the "
                     "files in [priors]): " + ", ".join(not_written))
    return lines
