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

from .common import ExposureId, PlotResult
from .exposure import ExposureQA, exposure_qa, photflat_blocks
from .plan import PLOT_OPTIONS, PLOTS, PlannedPlot, draw, output_stem, plan_plots, qa_filename

__all__ = ["ExposureId", "PlotResult", "ExposureQA", "exposure_qa", "photflat_blocks", "PLOTS", "PLOT_OPTIONS",
           "PlannedPlot", "draw", "output_stem", "plan_plots", "qa_filename"]
