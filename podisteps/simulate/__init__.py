"""Raw-exposure simulator for ODI (pODI and ODI 5x6): nights of raw frames, calibration inputs and truth.

Modules::

    nightspec   read a night spec (TOML) and expand it into exposures
    photometry  filter facts, zero points, colour terms
    stars       the seeded star population and the reference catalogue drawn from it
    distortion  the TPV distortion model per OTA, true per-exposure WCS, perturbed mastercal copy
    sky         sky background and dome-flat illumination models
    detector    gains, bias pedestals, dark current, noise and digitisation
    effects     part 2: crosstalk, non-linearity, full well and bleeding, persistence, cells, defects, bias
                structure, glow, flat response, cosmic rays, pupil ghost, fringes
    headers     raw primary and cell headers (ZPX WCS included)
    render      one exposure: cells and truth (stars with :class:`podisteps.catalog.moffat.Moffat`)
    mastercals  the mastercals tree (WCS) and the reference catalogue files
    truth       truth files per exposure
    night       a whole night: ``simulate_night``
    cli         ``podiflow simulate NIGHTSPEC OUTDIR``

See ``docs/simulator.md`` for the night-spec schema and the truth format.
"""

import importlib

__all__ = ["simulate_night", "render_exposure", "load_night", "Night"]

_HOME = {"simulate_night": "night", "render_exposure": "render", "load_night": "nightspec", "Night": "nightspec"}


def __getattr__(name):
    """Import the public functions lazily (``podisteps.simulate.simulate_night`` etc.)."""
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
