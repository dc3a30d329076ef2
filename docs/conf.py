"""Sphinx configuration of podiflow's documentation (``make docs``; warnings are errors)."""

import podisteps

project = "podiflow"
author = "the podiflow developers"
release = podisteps.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path = ["_templates"]

# API reference: one page per module, generated from the numpydoc docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False

# The user guide is Markdown; headings become link targets.
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"podiflow {release}"
autodoc_inherit_docstrings = False
suppress_warnings = ["ref.python"]  # re-exported names (a subpackage __init__ naming its public API) have two targets
