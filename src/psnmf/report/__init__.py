"""The report of a run, made from the typed results of :mod:`psnmf.pipeline`: matplotlib
figures (:mod:`~psnmf.report.figures`), the data the page embeds for its interactive views
(:mod:`~psnmf.report.explorer`), those views in Bokeh (:mod:`~psnmf.report.interactive`) and
the HTML page rendered from a Jinja2 template (:mod:`~psnmf.report.html`: it opens offline,
showing the PNG figures written beside it), which also renders the index page of a batch of
runs. The figures can be drawn in forked
processes while the page is built (:mod:`~psnmf.report.background`)."""

from psnmf.report.background import FigureJob, PendingFigures, draw_in_background
from psnmf.report.figures import (
    DPI,
    FIGURES,
    figure_jobs,
    save_sweep_figure,
    sweep_figure,
    write_figures,
)
from psnmf.report.html import build_html, index_html, prepare_html, write_html

__all__ = ["DPI", "FIGURES", "FigureJob", "PendingFigures", "build_html",
           "draw_in_background", "figure_jobs", "index_html", "prepare_html",
           "save_sweep_figure", "sweep_figure", "write_figures", "write_html"]
