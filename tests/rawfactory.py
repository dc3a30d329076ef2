"""Minimal raw OTA files for the I/O tests (the simulator writes the realistic ones)."""

from __future__ import annotations

import io

import numpy as np
from astropy.io import fits

from podisteps import instrument
from podisteps.io import rawio, rawwrite

OBSID = "o20130301T040000.0"


def primary_header(*, ota: int = 33, mjd: float = 56352.1666667, obsid: str = OBSID, binning: int = 1) -> fits.Header:
    """A primary header with every keyword the reader requires."""
    hdr = fits.Header()
    hdr["OBSID"] = obsid[1:]
    hdr["FILENAME"] = rawio.ota_filename(obsid, ota)
    hdr["OBSTYPE"] = "OBJECT"
    hdr["OBJECT"] = "test field"
    hdr["FILTER"] = "odi_r"
    hdr["FILTERID"] = "w105"
    for arm in "123":
        for slot in "ABC":
            hdr[f"FLTARM{arm}{slot}"] = "IN" if (arm, slot) == ("2", "A") else "OUT"
    hdr["EXPTIME"] = 30.0
    hdr["EXPMEAS"] = 30.02
    hdr["DATE-OBS"] = "2013-03-01T04:00:00.000"
    hdr["MJD-OBS"] = mjd
    hdr["RA"] = "10:00:00.00"
    hdr["DEC"] = "+20:00:00.0"
    hdr["FPPOS"] = f"xy{ota:02d}"
    hdr["OTA_ID"] = instrument.layout_for_mjd(mjd).serial(ota)
    hdr["CELLMODE"] = "S" * 64
    hdr["CCDBIN1"] = binning
    hdr["CCDBIN2"] = binning
    hdr["CCDSUM"] = f"{binning} {binning}"
    return hdr


def cells(geo: instrument.CellGeometry, *, seed: int = 0) -> dict:
    """Random uint16 cells of the geometry's raw shape."""
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, 65536, (geo.raw_ny, geo.raw_nx), dtype=np.uint16) for c in instrument.CELL_IDS}


def cell_headers(binning: int = 1) -> dict:
    """Cell headers with WN_CELLX/Y and CCDSUM."""
    return {
        (cx, cy): fits.Header({"WN_CELLX": cx, "WN_CELLY": cy, "CCDSUM": f"{binning} {binning}"})
        for cx, cy in instrument.CELL_IDS
    }


def write_ota(directory, *, ota: int = 33, obsid: str = OBSID, kind: str = "test", binning: int = 1,
              fz: bool = False, seed: int = 0, mjd: float = 56352.1666667):
    """Write one raw OTA file into ``directory`` and return (path, cells)."""
    geo = instrument.geometry(kind, binning)
    data = cells(geo, seed=seed)
    path = directory / rawio.ota_filename(obsid, ota, fz=fz)
    rawwrite.write_raw_ota(path, primary_header(ota=ota, obsid=obsid, binning=binning, mjd=mjd), data,
                        cell_headers(binning), fz=fz)
    return path, data


def clone_exposure(source, night_dir, obsid: str, *, mjd: float, edit=None, otas=None):
    """Copy a simulated exposure folder under another name and start time, editing its OTA files.

    Parameters
    ----------
    source : pathlib.Path
        A raw exposure folder (plain ``.fits`` files).
    night_dir : pathlib.Path
        The night folder to put the clone in.
    obsid : str
        The clone's name, e.g. ``o20131005T030010.0``.
    mjd : float
        Its MJD-OBS.
    edit : callable, optional
        ``edit(ota, hdulist)`` changes one OTA file's HDUs in place before it is written.
    otas : collection of int, optional
        Clone only these OTA files (default: all).

    Returns
    -------
    pathlib.Path
        The clone's folder.
    """
    folder = night_dir / obsid
    folder.mkdir(parents=True)
    for path in sorted(source.glob("*.fits")):
        ota = int(path.name.split(".")[-2])
        if otas is not None and ota not in otas:
            continue
        with fits.open(path) as hdul:
            hdul = fits.HDUList([h.copy() for h in hdul])
        primary = hdul[0].header
        primary["OBSID"] = obsid[1:]
        primary["FILENAME"] = rawio.ota_filename(obsid, ota)
        primary["MJD-OBS"] = mjd
        primary["DATE-OBS"] = f"{obsid[1:5]}-{obsid[5:7]}-{obsid[7:9]}T{obsid[10:12]}:{obsid[12:14]}:{obsid[14:16]}.000"
        if edit is not None:
            edit(ota, hdul)
        hdul.writeto(folder / rawio.ota_filename(obsid, ota))
    return folder


def shrink_first_cell_in_place(source, target) -> None:
    """Overwrite ``target`` in place with ``source`` whose first cell kept only 10x10 pixels.

    The folder looks unchanged, so a night index built before keeps the file: it is found broken only when a
    task reads it (the task-failure path; the index itself leaves out files whose layout is wrong).
    """
    with fits.open(source) as hdul:
        hdul[1].data = hdul[1].data[:10, :10]
        blob = io.BytesIO()
        hdul.writeto(blob)
    with open(target, "r+b") as fh:
        fh.write(blob.getvalue())
        fh.truncate()
