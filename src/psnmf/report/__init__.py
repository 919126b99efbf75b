"""The report of a run: matplotlib figures (:mod:`~psnmf.report.figures`) and the
self-contained HTML page (:mod:`~psnmf.report.html`), made from the typed results of
:mod:`psnmf.pipeline`."""

from psnmf.report.figures import DPI, FIGURES, save_sweep_figure, sweep_figure, write_figures
from psnmf.report.html import build_html, write_html

__all__ = ["DPI", "FIGURES", "build_html", "save_sweep_figure", "sweep_figure",
           "write_figures", "write_html"]
