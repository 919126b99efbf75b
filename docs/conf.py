"""Sphinx configuration of the psnmf documentation.

Build: ``make docs`` (or ``sphinx-build -W --keep-going -b html docs docs/_build/html``).
The build is offline: no intersphinx, no downloads, no MathJax (the pages open offline). The gallery examples under
``docs/examples/`` run during the build on simulated data.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import psnmf  # noqa: E402

project = "psnmf"
author = "psnmf developers"
copyright = "psnmf developers"  # noqa: A001
release = psnmf.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_gallery.gen_gallery",
    "psnmf_sphinx",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "examples"]
root_doc = "index"
default_role = "code"

# -- autodoc / autosummary / napoleon ------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"           # the numpydoc sections give the types, in words
autodoc_class_signature = "separated"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = False
napoleon_use_rtype = False
napoleon_preprocess_types = False

# -- sphinx-gallery ------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "min_reported_time": 0,
    "abort_on_example_error": False,   # run them all, then fail the build on any error
    "only_warn_on_example_error": False,
}

# HyperSpy and its plugins warn about their own deprecations at import (examples run in
# this process); those are not the documentation's
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=PendingDeprecationWarning)

# -- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"psnmf {release}"
html_static_path = []
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
