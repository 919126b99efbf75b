"""The report of a run, made from the typed results of :mod:`psnmf.pipeline`: matplotlib
figures (:mod:`~psnmf.report.figures`), the data the page embeds for its interactive views
(:mod:`~psnmf.report.explorer`), those views in Bokeh (:mod:`~psnmf.report.interactive`) and
the self-contained HTML page rendered from a Jinja2 template (:mod:`~psnmf.report.html`),
which also renders the index page of a batch of runs."""

from psnmf.report.figures import DPI, FIGURES, save_sweep_figure, sweep_figure, write_figures
from psnmf.report.html import build_html, index_html, write_html

__all__ = ["DPI", "FIGURES", "build_html", "index_html", "save_sweep_figure", "sweep_figure",
           "write_figures", "write_html"]
