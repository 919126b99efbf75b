"""``unmix_files``: :func:`psnmf.pipeline.unmix` on several files, one results folder each,
with an index page.

For files ``a.bcf b.emd c.hspy`` and an output folder ``OUT``, each file's results go to
``OUT/<stem>/`` (written as one set, :class:`psnmf.io.ResultsFolder`), and
``OUT/index.html`` (self-contained: inline style, no scripts, no CDN; rendered from a
template by :func:`psnmf.report.index_html`) and ``OUT/index.json``
list every file: its status (``done``, ``failed`` with the error message, ``interrupted``,
``not run``), k, b, the held-out deviance of raw, PCA and PSNMF, the time, and the paths
of its report, ``summary.json`` and ``config.toml``. The index is rewritten after each file
(atomically: a reader sees the previous index or the new one), so it shows how far a long
batch got. A file that fails does not stop the others.

``OUT`` is locked for the whole batch (:func:`psnmf.io.results.folder_lock`, the lock
:class:`psnmf.io.ResultsFolder` takes for one run): a second batch into ``OUT``, or a single
run whose output folder is ``OUT``, stops at once, naming the PID of the running batch, so
two runs never interleave their results or their index files.

Folder names (:func:`folder_names`): the file's stem; files sharing a stem (compared
ignoring case) get ``<stem>_<extension>`` (``x_bcf``, ``x_emd``); names still shared
(the same name in different folders) are numbered in the order given (``x_bcf_1``,
``x_bcf_2``).
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psnmf import __version__, io
from psnmf.io.results import folder_lock

__all__ = ["INDEX_HTML", "INDEX_JSON", "BatchEntry", "BatchResult", "folder_names",
           "unmix_files"]

INDEX_HTML = "index.html"
INDEX_JSON = "index.json"


def folder_names(files: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The results folder name of each file (see the module): unique, ignoring case.

    Examples
    --------
    >>> folder_names(["a/x.bcf", "b/x.emd", "y.hspy", "c/z.hspy", "d/z.hspy", "Y.bcf"])
    ['x_bcf', 'x_emd', 'y_hspy', 'z_hspy_1', 'z_hspy_2', 'Y_bcf']
    """
    paths = [Path(f) for f in files]
    stems = [p.stem or p.name for p in paths]
    count = _counts(stems)
    names = [f"{s}_{p.suffix.lstrip('.')}" if count[s.casefold()] > 1 and p.suffix else s
             for s, p in zip(stems, paths, strict=True)]
    taken = {INDEX_HTML, INDEX_JSON}
    count = _counts(names)
    seen: dict[str, int] = {}
    out = []
    for name in names:
        key = name.casefold()
        if count[key] > 1 or key in taken:
            number = seen.get(key, 0)
            candidate = name
            while candidate.casefold() in taken or candidate == name:
                number += 1
                candidate = f"{name}_{number}"
            seen[key] = number
            name = candidate
        taken.add(name.casefold())
        out.append(name)
    return out


def _counts(names: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n.casefold()] = out.get(n.casefold(), 0) + 1
    return out


@dataclass
class BatchEntry:
    """One file of a batch.

    Attributes
    ----------
    file : str
        The input, as given.
    folder : str
        Its results folder's name inside the batch's output folder.
    status : {"pending", "done", "failed", "interrupted", "not run"}
    error : str or None
        Why it failed (the error's message).
    n_components, bin_factor : int or None
        The k and b of the run.
    heldout_deviance : dict or None
        ``raw``, ``pca``, ``psnmf`` held-out deviances per count.
    residuals_structured : bool or None
        Whether the residuals show structure the model did not explain
        (:class:`psnmf.residuals.Residuals`).
    time_s : float or None
        Wall time of the file's run.
    files : dict
        Role (``report``, ``summary``, ``config``) -> path relative to the output folder.
    """

    file: str
    folder: str
    status: str = "pending"
    error: str | None = None
    n_components: int | None = None
    bin_factor: int | None = None
    heldout_deviance: dict[str, float | None] | None = None
    residuals_structured: bool | None = None
    time_s: float | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return io.jsonable(dict(self.__dict__))


@dataclass
class BatchResult:
    """The outcome of :func:`unmix_files`: one :class:`BatchEntry` per file, in order, and
    the paths of the index."""

    output_dir: Path
    entries: list[BatchEntry]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> list[BatchEntry]:
        """The entries that did not finish (failed, interrupted or not run)."""
        return [e for e in self.entries if e.status != "done"]

    def to_dict(self) -> dict[str, Any]:
        """The content of ``index.json``."""
        counts = {s: sum(e.status == s for e in self.entries)
                  for s in ("done", "failed", "interrupted", "not run", "pending")}
        return {"written_by": "psnmf unmix", "psnmf_version": __version__,
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "output_dir": str(self.output_dir), "n_files": len(self.entries),
                "status": {s: n for s, n in counts.items() if n},
                "files": [e.to_dict() for e in self.entries]}

    def summary_lines(self) -> list[str]:
        """The closing lines printed by ``psnmf unmix`` for a batch."""
        done = sum(e.status == "done" for e in self.entries)
        lines = [f"psnmf unmix: {len(self.entries)} files, {done} done, "
                 f"{len(self.failed)} not: index {self.paths.get('index', self.output_dir)}"]
        for e in self.entries:
            why = f": {e.error}" if e.error else ""
            lines.append(f"  {e.status:<11} {e.file} -> {self.output_dir / e.folder}{why}")
        return lines


def unmix_files(
    files: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    on_done: Callable[[BatchEntry, Any], None] | None = None,
    **unmix_kwargs: Any,
) -> BatchResult:
    """Run :func:`psnmf.pipeline.unmix` on each file into ``output_dir/<name>/``, with
    ``index.html`` and ``index.json`` in ``output_dir`` (see the module).

    Parameters
    ----------
    files : sequence of path
        The inputs; the same file twice is refused.
    output_dir : path
        The folder of the results folders and the index.
    overwrite : bool
        Replace psnmf's results of an earlier batch there (each folder as
        :func:`~psnmf.pipeline.unmix` does). Without it, an earlier index or a non-empty
        results folder of one of the files is refused before anything runs.
    on_done : callable, optional
        Called as ``on_done(entry, result)`` after each file (``result`` the
        :class:`~psnmf.pipeline.UnmixResult`, or None when the file failed).
    **unmix_kwargs
        Passed to :func:`~psnmf.pipeline.unmix` for every file.

    Raises
    ------
    psnmf.io.OutputLockedError
        When another psnmf run holds ``output_dir`` (it names its PID), before any work.

    Returns
    -------
    BatchResult
        A failed file is an entry with status ``"failed"`` and its error; the others run.
        An interrupt (Ctrl-C) stops the batch after writing the index (the file being run
        ``"interrupted"``, the rest ``"not run"``) and is raised again.
    """
    from psnmf.pipeline.unmix import unmix

    out = Path(output_dir).expanduser()
    resolved = [Path(f).expanduser().resolve() for f in files]
    twice = sorted({str(f) for f in files
                    if resolved.count(Path(f).expanduser().resolve()) > 1})
    if twice:
        raise ValueError(f"The same file is given more than once: {', '.join(twice)}. Give "
                         "each file once.")
    names = folder_names(files)
    with folder_lock(out):  # the whole batch: its folders and its index are one run's
        _check_output(out, names, overwrite)
        result = BatchResult(out, [BatchEntry(str(f), n) for f, n in zip(files, names,
                                                                         strict=True)])
        out.mkdir(parents=True, exist_ok=True)
        _write_index(result)
        _run_all(result, unmix, overwrite, on_done, unmix_kwargs)
    return result


def _run_all(result: BatchResult, unmix: Callable[..., Any], overwrite: bool,
             on_done: Callable[[BatchEntry, Any], None] | None,
             unmix_kwargs: dict[str, Any]) -> None:
    """Run every entry of ``result`` in turn, rewriting the index after each."""
    out = result.output_dir
    for i, entry in enumerate(result.entries):
        t0 = time.perf_counter()
        res = None
        try:
            res = unmix(entry.file, output_dir=out / entry.folder, overwrite=overwrite,
                        **unmix_kwargs)
        except KeyboardInterrupt:
            entry.status = "interrupted"
            for later in result.entries[i + 1:]:
                later.status = "not run"
            _write_index(result)
            raise
        except Exception as exc:  # one file's failure, whatever it is, leaves the others
            entry.status = "failed"
            entry.error = f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, ValueError | OSError) else str(exc)
            if unmix_kwargs.get("verbose"):
                entry.error += "\n" + "".join(traceback.format_exception(exc))
        else:
            _record(entry, res, out)
        entry.time_s = time.perf_counter() - t0
        _write_index(result)
        if on_done is not None:
            on_done(entry, res)


def _check_output(out: Path, names: Sequence[str], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise io.OutputExistsError(f"The output folder '{out}' is a file. Choose another "
                                   "folder with -o.")
    if overwrite or not out.is_dir():
        return
    busy = [n for n in (INDEX_HTML, INDEX_JSON) if (out / n).exists()]
    busy += [n + "/" for n in names if (out / n).is_dir() and any((out / n).iterdir())]
    if busy:
        raise io.OutputExistsError(
            f"The output folder '{out}' holds results of an earlier run: {', '.join(busy)}. "
            "Use --overwrite (overwrite=True) to replace psnmf's results there (your own "
            "files are kept), or choose another folder with -o.")


def _record(entry: BatchEntry, res: Any, out: Path) -> None:
    par = res.summary.parameters
    dev = res.deviance
    entry.status = "done"
    entry.n_components, entry.bin_factor = int(par.n_components), int(par.bin_factor)
    entry.heldout_deviance = {"raw": dev.raw, "pca": dev.pca, "psnmf": dev.psnmf}
    if res.residuals is not None:
        entry.residuals_structured = bool(res.residuals.structured)
    entry.files = {role: f"{entry.folder}/{Path(res.paths[role]).name}"
                   for role in ("report", "summary", "config") if role in res.paths}


def _write_index(result: BatchResult) -> None:
    out = result.output_dir
    from psnmf.report import index_html

    data = result.to_dict()
    result.paths["index"] = io.write_text(index_html(data), out / INDEX_HTML)
    result.paths["index_json"] = io.write_json(data, out / INDEX_JSON)
