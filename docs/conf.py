"""Sphinx configuration for embstore (built with -W in CI).

The site follows the xarray / zarr docs: pydata-sphinx-theme, an API
reference generated from the code (``api_sections.py``: one page per public
object, tables grouped by task), a CLI reference generated from the argparse
parsers (``sphinx-argparse``) and an examples gallery (``sphinx-gallery``).
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("."))
os.environ.setdefault("MPLBACKEND", "Agg")

from api_sections import write_api_tables

import embstore

project = "embstore"
author = "embstore developers"
copyright = "2026, embstore developers"
release = embstore.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinxarg.ext",
    "sphinx_gallery.gen_gallery",
]

# ---------------------------------------------------------------- API reference
_documented = set(write_api_tables(os.path.join(os.path.dirname(__file__), "api_tables.rst")))
# pages of objects that left the API (renamed, made private) would be orphans: remove them
_generated = os.path.join(os.path.dirname(__file__), "generated")
if os.path.isdir(_generated):
    for _page in os.listdir(_generated):
        if _page.endswith(".rst") and _page[: -len(".rst")] not in _documented:
            os.remove(os.path.join(_generated, _page))
autosummary_generate = [
    "api_tables.rst"
]  # the generated tables (excluded as a page, included by api.rst)
autosummary_imported_members = True
templates_path = ["_templates"]
autodoc_typehints = "none"
autodoc_default_options = {
    # the analyzer's methods live on several mixins: show them on one page, but not
    # what every exception or container inherits from the builtins
    "inherited-members": "object,BaseException,Exception,ValueError,KeyError,TypeError,RuntimeError,"
    "ImportError,OSError,FileNotFoundError,FileExistsError,PermissionError,LookupError,dict,list,tuple,str,"
    "Module,Index,NamedTuple",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
intersphinx_mapping = {}
suppress_warnings = ["ref.python", "autosummary.import_cycle"]
nitpicky = False

# ------------------------------------------------------------------ the gallery
# Every example runs in the test suite; the docs execute only the quick ones
# (a few seconds each) so that `make docs` stays reasonable. The others are
# shown with their code. `-D plot_gallery=0` skips execution entirely.
_here = os.path.dirname(os.path.abspath(__file__))
_gallery_out = os.path.join(_here, "_gallery_out")
os.environ.setdefault("EMBSTORE_EXAMPLE_OUT", _gallery_out)
from gallery_sources import stage_examples

stage_examples(os.path.join(_here, "..", "examples"), os.path.join(_here, "_gallery_src"))
sphinx_gallery_conf = {
    "examples_dirs": "_gallery_src",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/(fairness_report|dedup_cluster)\.py$",
    "ignore_pattern": r"__init__\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 1e9,
    "write_computation_times": False,
}

# ------------------------------------------------------------------ HTML theme
exclude_patterns = [
    "_build",
    "api_tables.rst",
    "_gallery_out",
    "_gallery_src",
    "**/*.ipynb",
    "**/*.py",
    "**/*.zip",
    "**/*.md5",
    "auto_examples/*.codeobj.json",
]
html_theme = "pydata_sphinx_theme"
html_title = f"embstore {release}"
html_static_path = ["_static"]
html_css_files = ["embstore.css"]
html_js_files = ["cutoff-check.js"]
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "header_links_before_dropdown": 4,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
# the section navigation only where it helps (the API pages); elsewhere the text gets the width
html_sidebars = {"*": [], "api": ["sidebar-nav-bs"], "generated/*": ["sidebar-nav-bs"]}
html_show_sourcelink = False
