"""The canned distortion WCS of an OTA around the telescope pointing (docs/reduction-steps.md, 'Distortion WCS').

A canned WCS file holds one header-only ``OTAxy.SCI`` extension per OTA with CRPIX (the optical axis in
that OTA's full-size bin1 pixel frame), CD, TPV ``PV1_*``/``PV2_*`` terms and CRVAL1/2 = the offset of
the optical axis from the telescope pointing. The raw header's RA/DEC is the pointing; the axis is at
``CRVAL2 = DEC + off2`` and ``CRVAL1 = RA + off1 / cos(CRVAL2)``.

The raw IRAF ZPX WCS (``RA---ZPX`` and its ``WAT*`` cards) is always dropped: astropy/wcslib cannot
parse it (docs/formats.md, 'Raw primary header').
"""

from __future__ import annotations

import math
import re

from astropy.coordinates import Angle
from astropy.io import fits

from ..errors import PodiflowError

__all__ = [
    "WCSKeywordError",
    "pointing_from_header",
    "offset_pointing",
    "strip_raw_wcs",
    "canned_wcs_cards",
    "plain_wcs_cards",
    "nominal_wcs_cards",
    "apply_wcs",
    "WCS_CARD_RE",
]

#: Cards a canned WCS extension contributes (everything except CRVAL1/2).
WCS_CARD_RE = re.compile(
    r"^(CRPIX[12]|CD[12]_[12]|CTYPE[12]|CUNIT[12]|EQUINOX|PV[12]_\d+|RADECSYS|RADESYS|ASTIRMS[12]|ASTRRMS[12])$"
)
_RAW_WCS_RE = re.compile(r"^(WAT\d_\d{3}|WCSDIM|LTM\d_\d|WAXMAP\d\d|PV[12]_\d+|RADECSYS)$")


class WCSKeywordError(PodiflowError, ValueError):
    """A header lacks the pointing or holds one that cannot be parsed."""


def offset_pointing(ra: float, dec: float, offset) -> tuple[float, float]:
    """Add ``-wcsoffset=dra,ddec`` (degrees) to a pointing.

    The RA offset is an offset on the sky, divided by ``cos(dec)`` (QuickReduce added it to CRVAL1 as it
    is, docs/quickreduce.md, 'Pointing offsets').

    Parameters
    ----------
    ra, dec : float
        Pointing, degrees.
    offset : (float, float)
        ``(dra, ddec)``, degrees on the sky.

    Returns
    -------
    (float, float)
        The new pointing, degrees (RA in [0, 360)).
    """
    dra, ddec = (float(v) for v in offset)
    return (ra + dra / math.cos(math.radians(dec))) % 360.0, dec + ddec


def pointing_from_header(primary: fits.Header, *, target: str | None = None) -> tuple[float, float]:
    """Return the telescope pointing (RA, Dec) in degrees.

    Parameters
    ----------
    primary : astropy.io.fits.Header
        Raw primary header with sexagesimal ``RA`` (hours) and ``DEC`` (degrees) strings.
    target : str, optional
        ``"ra,dec"`` replacing the header pointing (``-target``): sexagesimal hours/degrees, or decimal
        degrees for both.

    Raises
    ------
    WCSKeywordError
        If RA/DEC are missing or unparsable.
    """
    if target:
        ra_text, _, dec_text = target.partition(",")
        ra_unit = "hourangle" if ":" in ra_text or "h" in ra_text else "deg"
    else:
        if "RA" not in primary or "DEC" not in primary:
            raise WCSKeywordError("primary header lacks RA/DEC (the telescope pointing)")
        ra_text, dec_text, ra_unit = str(primary["RA"]), str(primary["DEC"]), "hourangle"
    try:
        ra = Angle(ra_text.strip(), unit=ra_unit).degree
        dec = Angle(dec_text.strip(), unit="deg").degree
    except (ValueError, TypeError) as exc:
        raise WCSKeywordError(f"cannot parse the pointing RA={ra_text!r} DEC={dec_text!r} ({exc})") from None
    return float(ra) % 360.0, float(dec)


def strip_raw_wcs(header: fits.Header) -> None:
    """Remove the raw ZPX WCS (WAT*, PV*, RADECSYS, ZPX CTYPEs) from ``header`` in place."""
    for key in [k for k in header if _RAW_WCS_RE.match(k)]:
        del header[key]
    for key in ("CTYPE1", "CTYPE2"):
        if key in header and "ZPX" in str(header[key]):
            del header[key]


def _offset_axis(ra: float, dec: float, off_ra: float, off_dec: float) -> tuple[float, float]:
    """Add an (RA, Dec) offset in degrees; the RA offset is a great-circle offset, divided by cos(Dec)."""
    off_ra = (off_ra + 180.0) % 360.0 - 180.0
    dec_new = dec + off_dec
    return (ra + off_ra / math.cos(math.radians(dec_new))) % 360.0, dec_new


def canned_wcs_cards(
    canned: fits.Header,
    *,
    ra: float,
    dec: float,
    scale: int = 1,
    tanwcs: bool = False,
    simple: bool = False,
) -> fits.Header:
    """Build an OTA's WCS from a canned distortion extension and the pointing.

    Parameters
    ----------
    canned : astropy.io.fits.Header
        The ``OTAxy.SCI`` header of the canned WCS file (full-size bin1 pixels).
    ra, dec : float
        Telescope pointing, degrees (offsets such as ``-wcsoffset`` already applied).
    scale : int, optional
        Pixel size in full-size bin1 pixels (binning x detector scale): ``CRPIX /= scale``, ``CD *= scale``
        (QuickReduce's binning convention; the simulator uses the same, and fixwcs absorbs the
        sub-pixel difference from the exact ``(CRPIX - 0.5)/scale + 0.5`` on real binned data).
    tanwcs : bool, optional
        Label CTYPE ``TAN`` instead of ``TPV`` (PV cards stay; ``-tanwcs``).
    simple : bool, optional
        Drop the PV distortion terms: a plain ``RA---TAN`` with the canned CRPIX/CD (``-simplewcs``).

    Returns
    -------
    astropy.io.fits.Header
        CTYPE, CUNIT, CRPIX, CRVAL, CD, PV, RADESYS, EQUINOX and ASTIRMS/ASTRRMS cards.
    """
    out = fits.Header()
    for card in canned.cards:
        if WCS_CARD_RE.match(card.keyword) and not (simple and card.keyword.startswith("PV")):
            out[card.keyword] = card.value
    for i in (1, 2):
        out[f"CRPIX{i}"] = float(canned[f"CRPIX{i}"]) / scale
        for j in (1, 2):
            out[f"CD{i}_{j}"] = float(canned.get(f"CD{i}_{j}", 0.0)) * scale
    crval1, crval2 = _offset_axis(ra, dec, float(canned.get("CRVAL1", 0.0)), float(canned.get("CRVAL2", 0.0)))
    out["CRVAL1"], out["CRVAL2"] = crval1, crval2
    proj = "TAN" if (tanwcs or simple) else "TPV"
    out["CTYPE1"], out["CTYPE2"] = f"RA---{proj}", f"DEC--{proj}"
    out["CUNIT1"], out["CUNIT2"] = "deg", "deg"
    if "RADECSYS" in out:
        del out["RADECSYS"]
    out["RADESYS"] = "ICRS"
    out["EQUINOX"] = 2000.0
    return out


def plain_wcs_cards(ota: int, *, ra: float, dec: float, cd, scale: int = 1) -> fits.Header:
    """The ``-wcs=plain`` WCS: TAN at the pointing, ``CRPIX = (4 - ox)*4500, (4 - oy)*4500`` (bin1), given CD.

    Parameters
    ----------
    ota : int
        OTA number (``10*ox + oy``).
    ra, dec : float
        Pointing, degrees.
    cd : array-like, shape (2, 2)
        CD matrix at full-size bin1, degrees/pixel.
    scale : int, optional
        Pixel size in full-size bin1 pixels.
    """
    ox, oy = divmod(ota, 10)
    out = fits.Header()
    out["CTYPE1"], out["CTYPE2"] = "RA---TAN", "DEC--TAN"
    out["CUNIT1"], out["CUNIT2"] = "deg", "deg"
    out["CRPIX1"] = (4 - ox) * 4500.0 / scale
    out["CRPIX2"] = (4 - oy) * 4500.0 / scale
    out["CRVAL1"], out["CRVAL2"] = ra, dec
    for i in (1, 2):
        for j in (1, 2):
            out[f"CD{i}_{j}"] = float(cd[i - 1][j - 1]) * scale
    out["RADESYS"] = "ICRS"
    out["EQUINOX"] = 2000.0
    return out


def nominal_wcs_cards(ota: int, plane, *, ra: float, dec: float, frame_px: int = 4096, scale: int = 1,
                      simple: bool = False) -> fits.Header:
    """The WCS of ``ota`` from the nominal optical model, for when no canned distortion file exists.

    The optical axis is at the pointing plus the layout's axis offset (as for a canned file); the OTA's
    ``CRPIX`` is the axis in its own pixels, ``frame_px / 2 - centre``; the nominal pixel scale with no
    rotation (East = +x, North = +y) and the model's radial cubic as TPV terms. Per-OTA rotations and
    the non-radial distortion are left to ``-fixwcs``; ``ASTRRMS1/2`` carry the model's error so that
    the per-OTA refinement weighs it accordingly.

    Parameters
    ----------
    ota : int
        OTA position.
    plane : podisteps.instrument.FocalPlane
        The layout's nominal optical model.
    ra, dec : float
        Telescope pointing, degrees (offsets such as ``-wcsoffset`` already applied).
    frame_px : int, optional
        Side of the OTA frame in full-size bin1 pixels.
    scale : int, optional
        Pixel size in full-size bin1 pixels: ``CRPIX /= scale``, ``CD *= scale``.
    simple : bool, optional
        A plain ``RA---TAN`` without the distortion terms (``-simplewcs``).

    Returns
    -------
    astropy.io.fits.Header
        CTYPE, CUNIT, CRPIX, CRVAL, CD, PV (unless ``simple``), ASTRRMS1/2, RADESYS and EQUINOX cards.
    """
    px_per_arcmin = 60.0 / plane.pixel_scale_arcsec
    centre = plane.centre_arcmin(ota)
    crval1, crval2 = _offset_axis(ra, dec, *plane.axis_offset_deg)
    proj = "TAN" if simple else "TPV"
    out = fits.Header()
    out["CTYPE1"], out["CTYPE2"] = f"RA---{proj}", f"DEC--{proj}"
    out["CUNIT1"], out["CUNIT2"] = "deg", "deg"
    for i in (1, 2):
        out[f"CRPIX{i}"] = (frame_px / 2.0 - centre[i - 1] * px_per_arcmin) / scale
    out["CRVAL1"], out["CRVAL2"] = crval1, crval2
    cd = plane.pixel_scale_arcsec / 3600.0 * scale
    out["CD1_1"], out["CD1_2"], out["CD2_1"], out["CD2_2"] = cd, 0.0, 0.0, cd
    if not simple:  # TPV: PV1_7 xi^3, PV1_9 xi eta^2; PV2_7 eta^3, PV2_9 eta xi^2
        for axis in (1, 2):
            out[f"PV{axis}_1"] = 1.0
            out[f"PV{axis}_7"] = out[f"PV{axis}_9"] = plane.radial_k_per_deg2
    out["ASTRRMS1"] = out["ASTRRMS2"] = plane.model_error_arcsec / 3600.0
    out["RADESYS"] = "ICRS"
    out["EQUINOX"] = 2000.0
    return out


def apply_wcs(header: fits.Header, cards: fits.Header) -> None:
    """Replace the WCS of ``header`` (in place) by ``cards``, dropping the raw ZPX WCS first."""
    strip_raw_wcs(header)
    header.update(cards)
