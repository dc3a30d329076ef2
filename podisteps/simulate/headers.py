"""Raw primary and cell headers (docs/formats.md, 'Raw primary header', 'Raw cell headers' and 'Raw exposures').

The primary carries the identity, filter, timing, pointing and instrument cards the reducer reads and an
IRAF ZPX WCS (``CTYPE RA---ZPX``, ``CRVAL`` = the telescope pointing, the OTA's nominal CD at the frame's
pixel scale, ``WAT0_001``, ``WAT1_001..005``, ``WAT2_001..005`` with the radial term of the optical model
and placeholder correction coefficients). The cells carry ``CRPIX1/2 = CRPIX(OTA) - cell origin``, so
``xy07`` holds the OTA's nominal ``CRPIX`` (the model's axis, not the truth), and ``LTV = -origin``.
"""

from __future__ import annotations

import math

from astropy.io import fits

from .. import instrument
from . import distortion, photometry
from .detector import READ_NOISE_ADU

__all__ = ["primary_header", "cell_headers", "sexagesimal", "FILTER_ARMS"]

#: The nine filter-arm cards.
FILTER_ARMS = tuple(f"{a}{s}" for a in "123" for s in "ABC")
_WAT_CARD = 68


def sexagesimal(value_deg: float, *, hours: bool) -> str:
    """``hh:mm:ss.ss`` (RA, from degrees) or ``+dd:mm:ss.s`` (Dec)."""
    v = value_deg / 15.0 if hours else value_deg
    sign = "-" if v < 0 else "+"
    v = abs(v)
    digits = 2 if hours else 1
    total = round(v * 3600.0, digits)
    d, rem = divmod(total, 3600.0)
    m, s = divmod(rem, 60.0)
    text = f"{int(d):02d}:{int(m):02d}:{s:0{3 + digits}.{digits}f}"
    return text if hours else sign + text


def _wat_cards(axis: int, model: distortion.OTAModel) -> list[str]:
    """Five WAT<axis>_00n strings of a ZPX description of ``model`` (68 characters each but the last)."""
    axtype = "ra" if axis == 1 else "dec"
    k_rad = distortion.RADIAL_K * (180.0 / math.pi) ** 2
    pv = model.pv1 if axis == 1 else model.pv2
    head = f"wtype=zpx axtype={axtype} projp0=0. projp1=1. projp2=0. projp3={k_rad:.6g} projp4=0. projp5=0. "
    coeffs = [f"{c:.6g}" for c in (*pv[4:7], *pv[7:11])]
    body = head + ("lngcor" if axis == 1 else "latcor") + ' = "3. 3. 3. 2. -0.4 0.4 -0.4 0.4 ' + " ".join(coeffs)
    while len(body) < 4 * _WAT_CARD + 2:
        body += " 0."
    body = body[: 5 * _WAT_CARD - 1] + '"'
    return [body[i: i + _WAT_CARD] for i in range(0, len(body), _WAT_CARD)]


def primary_header(exposure, ota: int, *, filename: str, seed: int) -> fits.Header:
    """The raw primary header of ``ota`` in ``exposure`` (an ``ExposureSpec``).

    Parameters
    ----------
    exposure : ExposureSpec
        The exposure.
    ota : int
        OTA position.
    filename : str
        Value of ``FILENAME`` (the OTA file name).
    seed : int
        Night seed (recorded as ``SIMSEED``).
    """
    geo = exposure.geometry
    lay = instrument.layout(exposure.layout)
    info = photometry.filter_info(exposure.filter)
    model = distortion.models(exposure.layout)[ota]
    h = fits.Header()
    h["OBSID"] = (exposure.obsid, "observation ID")
    h["FILENAME"] = (filename, "file name")
    h["OBSTYPE"] = (exposure.obstype, "observation type")
    h["OBJECT"] = (exposure.object, "object name")
    h["TELESCOP"] = "WIYN"
    h["INSTRUME"] = ("ODI", "One Degree Imager")
    h["LAYOUT"] = (lay.label, "focal-plane layout (simulator)")
    h["FILTER"] = (exposure.filter, "filter name")
    h["FILTERID"] = (info.filterid, "filter ID")
    for arm in FILTER_ARMS:
        h[f"FLTARM{arm}"] = ("IN" if arm == info.arm else "OUT", f"filter arm {arm}")
    h["EXPTIME"] = (float(exposure.exptime), "[s] exposure time")
    h["EXPMEAS"] = (float(exposure.exptime), "[s] measured exposure time")
    h["TIMESYS"] = "UTC"
    h["DATE-OBS"] = (exposure.date_obs, "UT start of the exposure")
    h["MJD-OBS"] = (round(exposure.mjd, 8), "MJD at the start of the exposure")
    h["RA"] = (sexagesimal(exposure.ra, hours=True), "telescope RA (hours)")
    h["DEC"] = (sexagesimal(exposure.dec, hours=False), "telescope Dec (deg)")
    h["AIRMASS"] = (round(float(exposure.airmass), 4), "airmass at the start")
    h["ROTSTART"] = (float(exposure.rotator), "[deg] rotator angle at the start")
    h["ROTEND"] = (float(exposure.rotator), "[deg] rotator angle at the end")
    h["FPPOS"] = (f"xy{ota:02d}", "focal-plane position of this OTA")
    h["OTA_ID"] = (lay.serial(ota), "detector serial")
    h["CELLMODE"] = "S" * 64  # S science, V video, D dead, F floated (no room for a comment)
    h["CCDBIN1"] = (geo.binning, "binning in x")
    h["CCDBIN2"] = (geo.binning, "binning in y")
    h["CCDSUM"] = (f"{geo.binning} {geo.binning}", "on-chip summation")
    h["CELLGAP1"] = (int(geo.pitch_x - geo.data_nx), "[px] gap between cells in x")
    h["CELLGAP2"] = (int(round(geo.pitch_y - geo.data_ny)), "[px] gap between cells in y")
    h["CNAXIS1"] = (geo.raw_nx, "cell width")
    h["CNAXIS2"] = (geo.raw_ny, "cell height")
    h["PRESCAN1"] = (0, "serial prescan columns stored")
    h["PRESCAN2"] = (0, "parallel prescan rows stored")
    h["OVRSCAN1"] = (geo.raw_nx - geo.data_nx, "serial overscan columns")
    h["OVRSCAN2"] = (geo.raw_ny - geo.data_ny, "parallel overscan rows")
    h["IMNAXIS1"] = (geo.cell_origin(7, 0)[0] + geo.data_nx, "width of the assembled cells")
    h["IMNAXIS2"] = (geo.cell_origin(0, 0)[1] + geo.data_ny, "height of the assembled cells")
    h["NAMPS"] = (64, "number of amplifiers (cells)")
    h["RDNOISE"] = (READ_NOISE_ADU, "[ADU] nominal read noise")
    cd = model.cd * geo.scale
    h["EQUINOX"] = 2000.0
    h["RADESYS"] = "ICRS"
    h["CTYPE1"] = ("RA---ZPX", "IRAF ZPX projection")
    h["CTYPE2"] = "DEC--ZPX"
    h["CRVAL1"] = (round(exposure.ra, 7), "telescope RA in dec degrees")
    h["CRVAL2"] = (round(exposure.dec, 7), "telescope Dec in degrees")
    for i in range(2):
        for j in range(2):
            h[f"CD{i + 1}_{j + 1}"] = float(cd[i, j])
    h["WAT0_001"] = "system=image"
    for axis in (1, 2):
        for n, text in enumerate(_wat_cards(axis, model), start=1):
            h[f"WAT{axis}_{n:03d}"] = text
    h["SIMULATE"] = (True, "simulated by podiflow simulate")
    h["SIMSEED"] = (int(seed), "simulator seed of the night")
    return h


def cell_headers(exposure, ota: int, gains) -> dict:
    """The headers of the 64 cells of ``ota`` in ``exposure``.

    Cards: ``EXTNAME``, ``WN_CELLX/Y``, ``WN_OTAX/Y``, ``GAIN``, ``CCDSUM``, ``CCDBIN1/2``, ``CRPIX1/2``
    (``CRPIX(OTA) - cell origin``) and ``LTV1/2`` (``-cell origin``).

    Parameters
    ----------
    exposure : ExposureSpec
        The exposure.
    ota : int
        OTA position.
    gains : sequence of float
        Cell gains in ``instrument.CELL_IDS`` order, e-/ADU.

    Returns
    -------
    dict
        ``(cx, cy)`` -> astropy.io.fits.Header.
    """
    geo = exposure.geometry
    crpix = distortion.models(exposure.layout)[ota].crpix
    binning = f"{geo.binning} {geo.binning}"
    template = fits.Header([
        ("EXTNAME", "xy00"),
        ("WN_CELLX", 0, "cell column"),
        ("WN_CELLY", 0, "cell row (top-down)"),
        ("WN_OTAX", ota // 10, "OTA column"),
        ("WN_OTAY", ota % 10, "OTA row"),
        ("GAIN", 1.3, "[e-/ADU] gain"),
        ("CCDSUM", binning, "on-chip summation"),
        ("CCDBIN1", geo.binning, "binning in x"),
        ("CCDBIN2", geo.binning, "binning in y"),
        ("CRPIX1", 0.0, "optical axis relative to this cell"),
        ("CRPIX2", 0.0, "optical axis relative to this cell"),
        ("LTV1", 0.0, "cell origin in the OTA frame"),
        ("LTV2", 0.0, "cell origin in the OTA frame"),
    ])
    out = {}
    for (cx, cy), gain in zip(instrument.CELL_IDS, gains):
        x1, y1 = geo.cell_origin(cx, cy)
        h = template.copy()
        h["EXTNAME"] = f"xy{cx}{cy}"
        h["WN_CELLX"] = cx
        h["WN_CELLY"] = cy
        h["GAIN"] = round(float(gain), 5)
        h["CRPIX1"] = crpix[0] / geo.scale - x1
        h["CRPIX2"] = crpix[1] / geo.scale - y1
        h["LTV1"] = float(-x1)
        h["LTV2"] = float(-y1)
        out[(cx, cy)] = h
    return out
