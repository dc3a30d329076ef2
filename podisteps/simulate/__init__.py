"""Raw-exposure simulator for ODI (pODI and ODI 5x6): nights of raw frames, calibration inputs and truth.

Modules
-------
nightspec   read a night spec (TOML) and expand it into exposures
photometry  filter facts, zero points, colour terms
stars       the seeded star population and the reference catalogue drawn from it
distortion  the TPV distortion model per OTA, true per-exposure WCS, perturbed mastercal copy
psf         the Moffat PSF: enclosed energy and pixel-integrated stamps
sky         sky background and dome-flat illumination models
detector    gains, bias pedestals, dark current, noise and digitisation
headers     raw primary and cell headers (ZPX WCS included)
render      one exposure: cells and truth
mastercals  the mastercals tree (WCS) and the reference catalogue files
truth       truth files per exposure
night       a whole night: ``simulate_night``
cli         ``podiflow simulate NIGHTSPEC OUTDIR``

See ``docs/simulator.md`` for the night-spec schema and the truth format.
"""

from .night import simulate_night
from .nightspec import Night, load_night
from .render import render_exposure

__all__ = ["simulate_night", "render_exposure", "load_night", "Night"]
