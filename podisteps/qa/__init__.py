"""QA plots of one exposure (docs/formats.md, 'QA plots'): pure functions, arrays and paths in, files out.

``exposure_qa`` gathers the plot inputs from the tables and headers of a final MEF (with ``-autophotflat``
also from the photometric flat, sampled by ``photflat_blocks``), ``plan_plots`` says which plots (and files)
the exposure gets under the QA options, and ``draw`` makes one. Every plot function also
takes plain arrays, returns a :class:`PlotResult` (files, title, counts of what it drew) and draws with
matplotlib's object API on the Agg canvas.

Modules: ``common`` (identity, figures, saving), ``focalplane`` (focal-plane panels), ``exposure`` (inputs
from a MEF), ``astrometry`` (wcs1, wcs2), ``psf`` (psf, psfshape, seeing), ``photometry`` (photZP,
photZP_map, their ``_init`` versions, autophotflat), ``sky`` (skylevel), ``plan`` (names, which plots, drawing),
``nightsummary`` (the night's summary table and HTML page; imported by module).
"""

import importlib

#: Where each public name lives. The submodules are imported on first use (PEP 562), so that importing
#: :mod:`podisteps.qa.nightsummary` (every podiflow process does, for its failure lines) does not import
#: matplotlib: about 0.3 s at the start of every run that makes no plot.
_EXPORTS = {"ExposureId": "common", "PlotResult": "common", "ExposureQA": "exposure", "exposure_qa": "exposure",
            "photflat_blocks": "exposure", "PLOTS": "plan", "PLOT_OPTIONS": "plan", "PlannedPlot": "plan",
            "draw": "plan", "output_stem": "plan", "plan_plots": "plan", "qa_filename": "plan"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    """The public name ``name``, imported from its submodule on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
