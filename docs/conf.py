"""Sphinx configuration of the softmax_xp documentation (``nox -s docs`` builds it with -W)."""

from __future__ import annotations

import os
from pathlib import Path

import softmax_xp

ROOT = Path(__file__).resolve().parent.parent

project = "softmax_xp"
author = "the softmax_xp developers"
copyright = "the softmax_xp developers"
release = softmax_xp.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "gallery/*.ipynb", "gallery/*.py", "gallery/*.zip", "gallery/*.json"]

# The API reference: one page per public name, from its numpydoc docstring.
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

# Markdown pages link each other by file name, as they do on a code host.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# Doctests: the ``>>>`` examples of the docstrings the API reference pulls in.
doctest_test_doctest_blocks = "default"
doctest_global_setup = "import numpy as np\nimport softmax_xp as sx\n"

intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

# The gallery: examples/ holds scripts that are real clients; each also runs as a test.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "gallery",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py|_common\.py",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": os.environ.get("SOFTMAX_XP_DOCS_GALLERY", "True"),
    "matplotlib_animations": False,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "min_reported_time": 0,
}

html_theme = "pydata_sphinx_theme"
html_title = f"softmax_xp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_static_path: list[str] = []
templates_path = ["_templates"]
html_show_sourcelink = False
