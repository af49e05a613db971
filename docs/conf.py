"""Sphinx configuration for embstore (built with -W in CI)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "embstore"
author = "embstore developers"
copyright = "2026, embstore developers"
import embstore  # noqa: E402

release = embstore.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
]
autosummary_generate = False
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
intersphinx_mapping = {}
exclude_patterns = ["_build"]
html_theme = "alabaster"
suppress_warnings = ["ref.python"]
nitpicky = False
