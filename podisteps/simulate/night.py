"""Simulate a whole night: raw frames, mastercals, reference catalogue and truth under one folder."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..io.rawio import ota_filename
from ..io.rawwrite import write_raw_ota
from . import mastercals, truth
from .nightspec import Night, load_night
from .render import persistence_window, render_exposure

__all__ = ["simulate_night", "write_exposure", "raw_dir", "persistence_groups"]


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
                   only=None, progress=None, jobs: int = 1) -> list[Path]:
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
        Called with one line of text per exposure, in time order.
    jobs : int, optional
        Processes rendering at once (forked, so the night's star population is drawn once). Exposures linked by
        persistence are rendered in one process (:func:`persistence_groups`). Every exposure has its own random
        streams, so the files do not depend on ``jobs``.

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
    for i, (exposure, (folder, seconds)) in enumerate(zip(exposures, _simulated(exposures, night, outdir, fz=fz,
                                                                                   jobs=jobs))):
        written.append(folder)
        if progress is not None:
            progress(f"[{i + 1}/{len(exposures)}] {exposure.dirname} {exposure.obstype:<6} {exposure.filter:<5} "
                     f"{exposure.exptime:6.1f}s {len(exposure.otas)} OTAs -> {folder} ({seconds:.1f} s)")
    return written


def _simulate_one(exposure, night, outdir, fz: bool) -> tuple[Path, float]:
    """Render and write one exposure; return its folder and the seconds it took."""
    t0 = time.perf_counter()
    folder = write_exposure(render_exposure(exposure, night), outdir, fz=fz)
    return folder, time.perf_counter() - t0


#: A simulating process's job, ``(exposures, night, outdir, fz)``: inherited through the fork, never pickled.
_JOB: tuple = ()


def _set_job(*job) -> None:
    global _JOB
    _JOB = job


def _simulate_group(indices: tuple) -> list:
    """Simulate exposures ``indices`` of the job in turn (one process, so the persistence cache is shared)."""
    exposures, night, outdir, fz = _JOB
    return [_simulate_one(exposures[i], night, outdir, fz) for i in indices]


def persistence_groups(exposures, night) -> list[list[int]]:
    """Positions in ``exposures`` grouped so that an exposure shares a group with every listed exposure whose
    saturation persists into it (:func:`render.persistence_window`); each group in time order.

    A group is simulated in one process: a later exposure takes its persistence from the earlier one's render
    instead of rendering it again.
    """
    group = list(range(len(exposures)))

    def root(i):
        while group[i] != i:
            i = group[i]
        return i

    position = {e.obsid: i for i, e in enumerate(exposures)}
    for i, e in enumerate(exposures):
        for p, _ in persistence_window(night, e):
            if p.obsid in position:
                group[root(i)] = root(position[p.obsid])
    members = {}
    for i in range(len(exposures)):
        members.setdefault(root(i), []).append(i)
    return list(members.values())


def _simulated(exposures, night, outdir, *, fz: bool, jobs: int):
    """Yield ``(folder, seconds)`` for each exposure, in order, simulating up to ``jobs`` groups at once."""
    # a group longer than its share is cut: the first exposure of a piece renders what persists into it again
    share = -(-len(exposures) // max(jobs, 1))
    groups = [g[k:k + share] for g in persistence_groups(exposures, night) for k in range(0, len(g), share)]
    if jobs <= 1 or len(groups) <= 1:
        yield from (_simulate_one(e, night, outdir, fz) for e in exposures)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(groups)), mp_context=multiprocessing.get_context("fork"),
                             initializer=_set_job, initargs=(exposures, night, outdir, fz)) as pool:
        # the longest groups first, so that the processes end together
        futures = {tuple(g): pool.submit(_simulate_group, tuple(g)) for g in sorted(groups, key=len, reverse=True)}
        where = {i: (g, k) for g in futures for k, i in enumerate(g)}
        for i in range(len(exposures)):
            g, k = where[i]
            yield futures[g].result()[k]
