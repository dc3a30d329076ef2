"""Simulate a whole night: raw frames, mastercals, reference catalogue and truth under one folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..io.rawio import ota_filename
from ..io.rawwrite import write_raw_ota
from . import mastercals, truth
from .nightspec import Night, load_night
from .render import render_exposure

__all__ = ["simulate_night", "write_exposure", "raw_dir"]


def raw_dir(outdir, exposure) -> Path:
    """``<outdir>/raw/<night>/<obsid with prefix>/``."""
    return Path(outdir) / "raw" / exposure.night / exposure.dirname


def write_exposure(render, outdir, *, fz: bool = False) -> Path:
    """Write the raw OTA files and the truth of a rendered exposure; return the exposure folder."""
    folder = raw_dir(outdir, render.exposure)
    for ota, o in render.otas.items():
        write_raw_ota(folder / ota_filename(render.exposure.dirname, ota, fz=fz), o.primary, o.cells,
                      o.cell_headers, fz=fz)
    truth.write_exposure_truth(render, outdir)
    return folder


def simulate_night(spec: str | os.PathLike | dict | Night, outdir, *, seed: int | None = None, fz: bool = False,
                   only=None, progress=None) -> list[Path]:
    """Simulate the night ``spec`` into ``outdir``.

    Writes ``raw/<night>/<obsid>/``, ``mastercals/wcs/<layout>/``, ``refcat/refcat.fits`` and ``truth/``.

    Parameters
    ----------
    spec : path-like, dict or Night
        Night spec (TOML file or parsed dict) or an expanded ``Night``.
    outdir : path-like
        Output folder (created).
    seed : int, optional
        Overrides the spec's seed (ignored for a ``Night``).
    fz : bool, optional
        Write Rice-compressed ``.fits.fz`` files.
    only : iterable of str, optional
        Simulate only these exposures (OBSID with or without the prefix letter); the calibration inputs
        are always written. The files are identical to those of a full run.
    progress : callable, optional
        Called with one line of text per exposure.

    Returns
    -------
    list of pathlib.Path
        The exposure folders written, in time order.
    """
    night = spec if isinstance(spec, Night) else load_night(spec, seed=seed)
    outdir = Path(outdir)
    exposures = night.exposures
    if only:
        wanted = {o[1:] if o[:1].isalpha() else o for o in only}
        unknown = wanted - {e.obsid for e in exposures}
        if unknown:
            raise ValueError(f"--only: no exposure(s) {', '.join(sorted(unknown))} in night {night.name}")
        exposures = [e for e in exposures if e.obsid in wanted]
    geo = night.exposures[0].geometry if night.exposures else None
    for layout in night.layouts:
        mastercals.write_wcs_mastercals(outdir, layout, seed=night.seed)
        mastercals.write_crosstalk(outdir, layout)
        mastercals.write_bpm(outdir, layout, geo)
        mastercals.write_fringevectors(outdir, layout)
        mastercals.write_detector_truth(outdir, layout, geo)
    if night.layouts:
        mastercals.write_nonlinearity(outdir, seed=night.seed)
    if any(e.field is not None for e in night.exposures):
        mastercals.write_refcat(outdir, night.population, seed=night.seed)
        mastercals.write_population(outdir, night.population)
    written = []
    for i, exposure in enumerate(exposures):
        t0 = time.perf_counter()
        folder = write_exposure(render_exposure(exposure, night), outdir, fz=fz)
        written.append(folder)
        if progress is not None:
            progress(f"[{i + 1}/{len(exposures)}] {exposure.dirname} {exposure.obstype:<6} {exposure.filter:<5} "
                     f"{exposure.exptime:6.1f}s {len(exposure.otas)} OTAs -> {folder} "
                     f"({time.perf_counter() - t0:.1f} s)")
    return written
