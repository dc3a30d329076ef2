"""Calibration inputs for the pipeline: the mastercals WCS tree and the reference catalogue.

- ``<outdir>/mastercals/wcs/<layout>/wcs.history`` (``0.0 podiflow_sim_<layout>.fits``) and that file:
  QuickReduce's format (header-only ``OTAxy.SCI`` extensions, CTYPE TAN with TPV PV cards, CRVAL = the
  canned pointing offsets), from the *perturbed* model (``distortion.perturbed_models``: 32-48 mas rms per
  OTA);
- ``<outdir>/truth/wcs/<layout>/distortion_true.fits`` (the unperturbed model, CTYPE TPV) and
  ``perturbation.json`` (rms difference per OTA, mas);
- ``<outdir>/refcat/refcat.fits``: the reference catalogue (``stars.refcat_table``), table ``REFCAT``;
- ``<outdir>/truth/population.fits``: the true star population at the catalogue epoch;
- part 2: ``mastercals/crosstalk/<layout>/``, ``mastercals/nonlinearity/``, ``mastercals/bpm/<layout>/``,
  ``mastercals/fringevectors/<layout>/<filter>/`` and ``truth/detector/<layout>/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .. import instrument
from ..io.atomic import write_fits_atomic, write_text_atomic
from . import detector, distortion, effects
from .randomness import rng_for
from .stars import REFCAT_EPOCH, refcat_table

__all__ = ["write_wcs_mastercals", "write_refcat", "write_population", "distortion_filename", "write_crosstalk",
           "write_nonlinearity", "write_bpm", "write_fringevectors", "write_detector_truth",
           "nonlinearity_table_hdulist", "bpm_text"]


def distortion_filename(layout: str) -> str:
    """Name of the simulated distortion file of ``layout``."""
    return f"podiflow_sim_{layout}.fits"


def write_wcs_mastercals(outdir, layout: str, *, seed: int) -> Path:
    """Write the perturbed distortion file, its history file and the true model; return the history path."""
    outdir = Path(outdir)
    perturbed, rms = distortion.perturbed_models(layout, seed)
    folder = outdir / "mastercals" / "wcs" / layout
    name = distortion_filename(layout)
    hdul = distortion.distortion_hdulist(layout, perturbed, projection="TAN")
    for hdu in hdul[1:]:
        ota = int(hdu.header["EXTNAME"][3:5])
        hdu.header["ASTRRMS"] = (round(rms[ota] / 1000.0, 4), "[arcsec] rms error of this model (simulated)")
    write_fits_atomic(hdul, folder / name)
    history = write_text_atomic(f"0.0 {name}\n", folder / "wcs.history")
    true_dir = outdir / "truth" / "wcs" / layout
    write_fits_atomic(distortion.distortion_hdulist(layout, distortion.models(layout), projection="TPV"),
                      true_dir / "distortion_true.fits")
    text = json.dumps({"rms_mas": {f"{o:02d}": v for o, v in rms.items()},
                       "method": "random shift, rotation, scale and quadratic PV terms per OTA, scaled to an "
                                 "rms drawn uniformly in 32-48 mas over a 17x17 grid of the OTA"}, indent=1)
    write_text_atomic(text + "\n", true_dir / "perturbation.json")
    return history


def _table_hdu(table: Table, extname: str) -> fits.BinTableHDU:
    hdu = fits.table_to_hdu(table)
    hdu.header["EXTNAME"] = extname
    return hdu


def write_refcat(outdir, population, *, seed: int) -> Path:
    """Write ``<outdir>/refcat/refcat.fits`` from ``population``; return its path."""
    path = Path(outdir) / "refcat" / "refcat.fits"
    return write_fits_atomic(fits.HDUList([fits.PrimaryHDU(), _table_hdu(refcat_table(population, seed=seed),
                                                                          "REFCAT")]), path)


def write_population(outdir, population) -> Path:
    """Write the true population (``truth/population.fits``, table ``POPULATION``); return its path."""
    t = Table()
    t["id"] = population.id
    t["ra"] = population.ra
    t["dec"] = population.dec
    t["pmra"] = population.pmra
    t["pmdec"] = population.pmdec
    for b, m in population.mags.items():
        t[b] = m
    t.meta["EPOCH"] = REFCAT_EPOCH
    path = Path(outdir) / "truth" / "population.fits"
    return write_fits_atomic(fits.HDUList([fits.PrimaryHDU(), _table_hdu(t, "POPULATION")]), path)


# --------------------------------------------------------------------------------------------------
# Part 2: crosstalk, non-linearity, bad-pixel regions, fringe vectors, detector truth
# --------------------------------------------------------------------------------------------------

#: File names written into the mastercals tree.
CROSSTALK_FILE = "crosstalk_odi_5x6.fits"
NONLINEARITY_FILES = {"podi": "nonlinearity_sim_podi.fits", "odi_5x6": "nonlinearity_sim_odi_5x6.fits"}
FRINGE_FILTERS = ("odi_i", "odi_z")


def write_crosstalk(outdir, layout: str) -> Path:
    """``mastercals/crosstalk/<layout>/crosstalk.history`` + ``crosstalk_odi_5x6.fits`` (the exact FWD)."""
    from ..detrend.crosstalk import crosstalk_hdulist

    folder = Path(outdir) / "mastercals" / "crosstalk" / layout
    write_fits_atomic(crosstalk_hdulist(effects.crosstalk_fwd()), folder / CROSSTALK_FILE)
    return write_text_atomic(f"0.00 {CROSSTALK_FILE}\n", folder / "crosstalk.history")


def nonlinearity_table_hdulist(layout: str, *, seed: int) -> fits.HDUList:
    """The non-linearity table given to the pipeline for ``layout`` (QuickReduce's ``NONLINCORR`` format).

    One row per cell of every OTA position except broken cells (at the layout's first MJD); coefficients
    = true + uncertainty * U(-0.8, 0.8); ``RELATIVE_GAIN`` = GAIN / median(GAIN of the table) * (1 + N(0, 0.002));
    ``SATLEVEL`` = the true full well minus U(0, 300) ADU.
    """
    from ..detrend.nonlinearity import CellNonlinearity, nonlinearity_hdulist

    lay = instrument.layout(layout)
    rng = rng_for(seed, "nonlinearity-table", layout)
    gains = {ota: detector.cell_gains(lay.serial(ota)) for ota in lay.otas}
    median_gain = float(np.median(np.concatenate(list(gains.values()))))
    mjd0 = 0.0 if layout == "podi" else instrument.LAYOUT_SWITCH_MJD
    rows, errs = {}, {}
    for ota in sorted(lay.otas):
        serial = lay.serial(ota)
        props = effects.detector_props(serial, "full", 1)
        broken = instrument.broken_cells(serial, mjd0)
        for i, (cx, cy) in enumerate(instrument.CELL_IDS):
            if (cx, cy) in broken:
                continue
            d2, d3 = rng.uniform(-0.8, 0.8, 2)
            rows[(ota, cx, cy)] = CellNonlinearity(
                c2=float(props.c2[i] + d2 * props.c2_err[i]), c3=float(props.c3[i] + d3 * props.c3_err[i]),
                relative_gain=float(gains[ota][i] / median_gain * (1.0 + rng.normal(0.0, 0.002))),
                satlevel=float(props.satlevel[i] - rng.uniform(0.0, 300.0)), in_table=True)
            errs[(ota, cx, cy)] = (float(props.c2_err[i]), float(props.c3_err[i]))
    hdul = nonlinearity_hdulist(rows)
    table = hdul[1].data
    keys = sorted(rows)
    table["UNCERT_COEFF_X**2"] = [errs[k][0] for k in keys]
    table["UNCERT_COEFF_X**3"] = [errs[k][1] for k in keys]
    hdul[0].header["LAYOUT"] = (layout, "layout of the OTA column")
    return hdul


def write_nonlinearity(outdir, *, seed: int) -> Path:
    """``mastercals/nonlinearity/nonlinearity.history`` and one table per layout (pODI from MJD 0, 5x6 from
    MJD 57023), so the table matches the frame's layout."""
    folder = Path(outdir) / "mastercals" / "nonlinearity"
    for layout, name in NONLINEARITY_FILES.items():
        write_fits_atomic(nonlinearity_table_hdulist(layout, seed=seed), folder / name)
    text = (f"0.0 {NONLINEARITY_FILES['podi']}\n"
            f"{instrument.LAYOUT_SWITCH_MJD:.1f} {NONLINEARITY_FILES['odi_5x6']}\n")
    return write_text_atomic(text, folder / "nonlinearity.history")


def _box_line(geo, cell: int, rows, cols) -> str:
    """``box(...)`` in 1-based full-size bin1 OTA pixels covering frame pixels ``rows x cols`` of a cell."""
    cx, cy = instrument.CELL_IDS[cell]
    x1, y1 = geo.cell_origin(cx, cy)
    s = geo.scale
    xa, xb = (x1 + cols[0]) * s, (x1 + cols[1]) * s
    ya, yb = (y1 + rows[0]) * s, (y1 + rows[1]) * s
    return f"box({(xa + xb) / 2 + 0.5:g},{(ya + yb) / 2 + 0.5:g},{xb - xa:g},{yb - ya:g},0)"


def bpm_text(serial: str, geo) -> str:
    """The region file given to the pipeline for one detector: the listed defects (full-height single
    columns as ``# vector``, the rest as boxes) plus the false boxes."""
    props = effects.detector_props(serial, geo.kind, geo.binning)
    lines = ["# Region file format: DS9 version 4.1", f"# podiflow simulate: bad pixels of detector {serial}",
             "global color=green width=1", "image"]
    for d in props.defects:
        if not d.in_bpm:
            continue
        if d.shape == "column" and d.rows[0] == 0:
            cx, cy = instrument.CELL_IDS[d.cell]
            x1, y1 = geo.cell_origin(cx, cy)
            s = geo.scale
            x = (x1 + d.cols[0]) * s + s / 2 + 0.5  # 1-based centre of the column, bin1
            y = (y1 + geo.data_ny // 2) * s + 0.5
            lines.append(f"# vector({x:g},{y:g},{geo.data_ny * s / 2:g},90) vector=1")
        else:
            lines.append(_box_line(geo, d.cell, d.rows, d.cols))
    for cell, rows, cols in props.false_bpm:
        lines.append(_box_line(geo, cell, rows, cols))
    return "\n".join(lines) + "\n"


def write_bpm(outdir, layout: str, geo) -> Path:
    """``mastercals/bpm/<layout>/bpm_xyNN.reg`` for every OTA of the layout (for the night's geometry)."""
    lay = instrument.layout(layout)
    folder = Path(outdir) / "mastercals" / "bpm" / layout
    for ota in lay.otas:
        write_text_atomic(bpm_text(lay.serial(ota), geo), folder / f"bpm_xy{ota:02d}.reg")
    return folder


def write_fringevectors(outdir, layout: str) -> Path:
    """``mastercals/fringevectors/<layout>/<filter>/fringevectors__<filter>__OTAnn.reg`` (odi_i, odi_z):
    ``# vector(x, y, L, angle)`` dark -> bright pairs of the injected pattern, 1-based full-size px."""
    lay = instrument.layout(layout)
    root = Path(outdir) / "mastercals" / "fringevectors" / layout
    for ota in lay.otas:
        vectors = effects.fringe_vectors(lay.serial(ota))
        lines = ["# Region file format: DS9 version 4.1", "global color=green", "image"]
        lines += [f"# vector({x + 1:.1f},{y + 1:.1f},{length:.1f},{angle:.2f}) vector=1"
                  for x, y, length, angle in vectors]
        text = "\n".join(lines) + "\n"
        for filt in FRINGE_FILTERS:
            write_text_atomic(text, root / filt / f"fringevectors__{filt}__OTA{ota:02d}.reg")
    return root


def write_detector_truth(outdir, layout: str, geo) -> Path:
    """``truth/detector/<layout>/detector_<kind>_bin<b>.json`` (per OTA: serial, gains, true non-linearity,
    full well, bias structure, glow, defects, response steps, fringe pattern, crosstalk FWD) and, for the
    test instrument, ``flat_response_test_bin<b>.fits`` (OTAxy.RESP images of the response without defects)."""
    lay = instrument.layout(layout)
    folder = Path(outdir) / "truth" / "detector" / layout
    out = {"layout": layout, "kind": geo.kind, "binning": geo.binning,
           "crosstalk_fwd": effects.crosstalk_fwd().tolist(),
           "crosstalk_note": "FWD[cell row, source cx, target cx]; the mastercals file holds exactly this matrix",
           "read_noise_adu": detector.READ_NOISE_ADU, "dark_current_e_per_s_fullsize_px": detector.DARK_CURRENT,
           "vignetting": {"radius_arcmin": effects.VIGNETTING_RADIUS, "depth": effects.VIGNETTING_DEPTH,
                          "width_arcmin": effects.VIGNETTING_WIDTH,
                          "model": "1 - depth*max(0, (r - radius)/width)^2, floor 0.5, r = hypot(fx, fy)"},
           "flat_response": "vignetting(fx, fy) * cell_response * pixel response (uniform, sigma 1 %) * dead "
                            "defects; evaluate with podisteps.simulate.effects.flat_response(serial, geometry, "
                            "model CRPIX)",
           "fringe_amplitude_rel": effects.FRINGE_AMPLITUDE,
           "otas": {}}
    for ota in lay.otas:
        serial = lay.serial(ota)
        entry = effects.detector_props(serial, geo.kind, geo.binning).as_dict()
        entry["gains"] = detector.cell_table(detector.cell_gains(serial))
        entry["broken_cells"] = sorted(f"xy{cx}{cy}" for cx, cy in instrument.broken_cells(serial, 0.0))
        entry["fringe_pattern"] = effects.fringe_pattern(serial).as_dict()
        out["otas"][f"{ota:02d}"] = entry
    path = write_text_atomic(json.dumps(out, indent=1) + "\n", folder / f"detector_{geo.kind}_bin{geo.binning}.json")
    if geo.kind == "test":
        hdus = [fits.PrimaryHDU()]
        for ota in lay.otas:
            resp = effects.flat_response(lay.serial(ota), geo, distortion.models(layout)[ota].crpix, defects=False)
            img = np.zeros((geo.ota_size, geo.ota_size), np.float32)
            for i, (cx, cy) in enumerate(instrument.CELL_IDS):
                img[geo.target_region(cx, cy)] = resp[i]
            hdus.append(fits.ImageHDU(img, name=f"OTA{ota:02d}.RESP"))
        write_fits_atomic(fits.HDUList(hdus), folder / f"flat_response_{geo.kind}_bin{geo.binning}.fits")
    return path
