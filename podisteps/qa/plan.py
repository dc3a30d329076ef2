"""Which QA plots an exposure gets, what their files are called, and drawing them.

File names (docs/formats.md, 'QA plots', ``create_qa_filename``), for an output ``<dir>/<stem>.fits``:

- default: ``<dir>/<stem>.<name>.<fmt>``, per OTA ``<dir>/<stem>.<name>_OTAnn.<fmt>``;
- ``-qasubdirs``: ``<dir>/<QA>/<name>.<fmt>``, per OTA ``<dir>/<QA>/<name>/OTAnn.<fmt>`` (``QA`` or
  ``-qasubdirname``). That is QuickReduce's layout when the output sits in a folder of its own, as in
  podiflow's ``<out>/<night>/<obsid>/<obsid>.fits``. When it does not (the folder is not named after the
  output), the tree gets a level ``<dir>/<QA>/<stem>/`` so that two outputs in one folder never overwrite each
  other's plots (QuickReduce's do).

Some plots come only with a reduction option (:attr:`PlotKind.option`): ``photZP_init``, ``photZP_map_init``
and ``autophotflat`` with ``-autophotflat``. Without it they are not planned (nor listed as skipped).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from astropy.table import Table

from .astrometry import wcs_quiver, wcs_scatter
from .common import PlotResult
from .exposure import ExposureQA
from .photometry import photflat_map, zp_magnitude, zp_map
from .psf import fwhm_distribution, psf_shape, seeing_map
from .sky import sky_levels

__all__ = ["PlotKind", "PLOTS", "PLOT_OPTIONS", "PlannedPlot", "qa_filename", "plan_plots", "draw", "output_stem"]

#: Title note of the plots of the first calibration of ``-autophotflat``.
_INIT = "first (init) calibration, before the photometric flat"


def _select(table: Table, ota: int | None) -> Table:
    return table if ota is None else table[table["OTA"] == ota]


def _scope(ota: int | None) -> str:
    return "focal plane" if ota is None else f"OTA {ota:02d}"


def _psf(qa: ExposureQA, paths, ota):
    return fwhm_distribution(paths, qa.ident, fwhm=qa.stars["FWHM"], ota=qa.stars["OTA"], otas=qa.otas)


def _wcs1(qa: ExposureQA, paths, ota):
    m = _select(qa.matches, ota)
    return wcs_scatter(paths, qa.ident, dra=m["DRA"], ddec=m["DDEC"], scope=_scope(ota))


def _wcs2(qa: ExposureQA, paths, ota):
    m = _select(qa.matches, ota)
    return wcs_quiver(paths, qa.ident, xi=m["XI"], eta=m["ETA"], dra=m["DRA"], ddec=m["DDEC"],
                      outlines=qa.outlines, ota=ota)


def _psfshape(qa: ExposureQA, paths, ota):
    s = _select(qa.stars, ota)
    return psf_shape(paths, qa.ident, xi=s["XI"], eta=s["ETA"], ell=s["ELL"], pa=s["PA"], fwhm=s["FWHM"],
                     outlines=qa.outlines, ota=ota)


def _seeing(qa: ExposureQA, paths, ota):
    s = _select(qa.stars, ota)
    return seeing_map(paths, qa.ident, xi=s["XI"], eta=s["ETA"], fwhm=s["FWHM"], outlines=qa.outlines, ota=ota)


def _calibration(qa: ExposureQA, init: bool):
    """``(calibration, plot-name suffix, title note)``: the final one, or with ``init`` the first of -autophotflat."""
    return (qa.photcal_init, "_init", _INIT) if init else (qa.photcal, "", "")


def _photzp(qa: ExposureQA, paths, ota, *, init: bool = False):
    cal, suffix, note = _calibration(qa, init)
    p = cal.stars
    return zp_magnitude(paths, qa.ident, refmag=p["REFMAG"], zp=p["ZP"], zp_err=p["ZP_ERR"], used=p["USED"],
                        level=cal.level, refmag_label=cal.refmag_label, name=f"photZP{suffix}", calibration=note)


def _photzp_map(qa: ExposureQA, paths, ota, *, init: bool = False):
    cal, suffix, note = _calibration(qa, init)
    p = _select(cal.stars, ota)
    return zp_map(paths, qa.ident, xi=p["XI"], eta=p["ETA"], zp=p["ZP"], used=p["USED"], zp_median=cal.level[0],
                  outlines=qa.outlines, ota=ota, name=f"photZP_map{suffix}", calibration=note)


def _autophotflat(qa: ExposureQA, paths, ota):
    f = qa.photflat
    return photflat_map(paths, qa.ident, xi=f.xi, eta=f.eta, pf=f.pf, stars=f.stars, outlines=qa.outlines)


def _sky(qa: ExposureQA, paths, ota):
    return sky_levels(paths, qa.ident, ota=qa.sky["OTA"], intensity=qa.sky["INTENSITY"], otas=qa.otas)


def _needs_wcs(qa: ExposureQA) -> str:
    return "" if qa.wcs_valid else "no valid WCS"


def _needs_photcal(qa: ExposureQA, *, init: bool = False) -> str:
    cal = _calibration(qa, init)[0]
    return _needs_wcs(qa) or ("" if cal is not None else "no first (init) photometric zero point" if init
                              else "no photometric zero point")


def _needs_photflat(qa: ExposureQA) -> str:
    return _needs_wcs(qa) or ("" if qa.photflat is not None else "no photometric flat")


@dataclass(frozen=True)
class PlotKind:
    """One kind of QA plot.

    Attributes
    ----------
    name : str
        File-name part (``wcs1``).
    per_ota : bool
        Whether there is a version per OTA as well as the focal-plane one.
    missing : callable
        ``missing(qa) -> str``: why the exposure cannot have this plot ("" if it can).
    draw : callable
        ``draw(qa, paths, ota) -> PlotResult``.
    option : str
        The reduction switch the plot comes with (``autophotflat``): planned only when it is on; "" for
        every exposure.
    """

    name: str
    per_ota: bool
    missing: Callable
    draw: Callable
    option: str = ""


#: Every QA plot, in drawing order.
PLOTS: tuple[PlotKind, ...] = (
    PlotKind("psf", False, _needs_wcs, _psf),
    PlotKind("wcs1", True, _needs_wcs, _wcs1),
    PlotKind("wcs2", True, _needs_wcs, _wcs2),
    PlotKind("psfshape", True, _needs_wcs, _psfshape),
    PlotKind("seeing", True, _needs_wcs, _seeing),
    PlotKind("photZP", False, _needs_photcal, _photzp),
    PlotKind("photZP_map", True, _needs_photcal, _photzp_map),
    PlotKind("photZP_init", False, partial(_needs_photcal, init=True), partial(_photzp, init=True), "autophotflat"),
    PlotKind("photZP_map_init", True, partial(_needs_photcal, init=True), partial(_photzp_map, init=True),
             "autophotflat"),
    PlotKind("autophotflat", False, _needs_photflat, _autophotflat, "autophotflat"),
    PlotKind("skylevel", False, lambda qa: "", _sky),
)

#: The reduction switches some plots come with (:attr:`PlotKind.option`).
PLOT_OPTIONS = frozenset(kind.option for kind in PLOTS if kind.option)

_BY_NAME = {kind.name: kind for kind in PLOTS}


def output_stem(mef_path: str | os.PathLike) -> str:
    """The output's name without ``.fits`` or ``.fits.fz``."""
    name = Path(mef_path).name
    for suffix in (".fits.fz", ".fits"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def qa_filename(mef_path: str | os.PathLike, name: str, fmt: str, *, ota: int | None = None,
                subdir: str | None = None) -> Path:
    """The file of QA plot ``name`` in format ``fmt`` for the output ``mef_path`` (module docstring).

    Parameters
    ----------
    mef_path : path-like
        The final MEF.
    name : str
        Plot name (``wcs1``).
    fmt : str
        File format and suffix (``png``, ``pdf``...).
    ota : int, optional
        The per-OTA version of this OTA.
    subdir : str, optional
        QA folder name (``-qasubdirs``/``-qasubdirname``); None for plots beside the output.
    """
    mef = Path(mef_path)
    stem = output_stem(mef)
    if subdir is None:
        return mef.parent / (f"{stem}.{name}" + ("" if ota is None else f"_OTA{ota:02d}") + f".{fmt}")
    base = mef.parent / subdir if stem == mef.parent.name else mef.parent / subdir / stem
    return base / f"{name}.{fmt}" if ota is None else base / name / f"OTA{ota:02d}.{fmt}"


@dataclass(frozen=True)
class PlannedPlot:
    """One plot to draw: its kind, the OTA of a per-OTA version (None for the focal plane), its files."""

    name: str
    ota: int | None
    paths: tuple


def plan_plots(qa: ExposureQA, mef_path, *, formats, ota_level: bool, subdir: str | None,
               switches: Collection[str] = ()) -> tuple[list, dict]:
    """The plots an exposure gets.

    Parameters
    ----------
    qa : ExposureQA
        The exposure.
    mef_path : path-like
        Its final MEF (file names follow it).
    formats : sequence of str
        ``-plotformat`` (``png``, ``pdf``...).
    ota_level : bool
        Also the per-OTA versions (not ``-nootalevelplots``), one per OTA of the MEF.
    subdir : str or None
        QA folder (``-qasubdirs``), or None.
    switches : collection of str, optional
        The reduction switches of :data:`PLOT_OPTIONS` that are on (``{"autophotflat"}``); plots coming with
        another one are left out.

    Returns
    -------
    planned : list of PlannedPlot
    skipped : dict
        Plot name -> why the exposure does not get it (e.g. "no valid WCS").
    """
    planned, skipped = [], {}
    for kind in PLOTS:
        if kind.option and kind.option not in switches:
            continue
        reason = kind.missing(qa)
        if reason:
            skipped[kind.name] = reason
            continue
        for ota in (None, *qa.otas) if kind.per_ota and ota_level else (None,):
            paths = tuple(qa_filename(mef_path, kind.name, fmt, ota=ota, subdir=subdir) for fmt in formats)
            planned.append(PlannedPlot(kind.name, ota, paths))
    return planned, skipped


def draw(qa: ExposureQA, plot: PlannedPlot) -> PlotResult:
    """Draw one planned plot and write its files."""
    return _BY_NAME[plot.name].draw(qa, list(plot.paths), plot.ota)
