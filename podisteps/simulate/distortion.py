"""The simulator's optical model: a TPV WCS per OTA in full-size bin1 pixels, for pODI and ODI 5x6.

Model (per layout, identical every night; drawn once from ``INSTRUMENT_SEED``):

- every OTA shares one reference point, the optical axis: ``CRPIX`` is the axis in the OTA's own pixel
  frame, ``CRPIX = 2048 - (OTA centre - axis)`` with the centre offsets of docs/instrument.md, 'The focal plane on the
  sky' (pODI: the 3x3 at 8' pitch around an axis near the centre of OTA33, the outliers 00/16/55/61 where QuickReduce's
  canned file puts them; 5x6: the table of docs/instrument.md, 'The focal plane on the sky', axis at the common corner
  of 33/34/43/44);
- ``CD = 3.125e-5 deg/px`` (0.1125"/px) times a per-OTA rotation (sigma 0.02 deg) and scale (sigma 1e-4),
  East = +x, North = +y (``CD1_1 > 0``, ``CD2_2 > 0``);
- a radial cubic ``xi' = xi (1 + K r^2)``, ``K = 0.12 deg^-2`` (0.3" at 5.5' from the axis, 50-77" at the 5x6 corners),
  plus per-OTA quadratic terms (sigma 3e-4 deg^-1), as TPV ``PV1_0..10``/``PV2_0..10`` (PV2 has xi and
  eta swapped: ``PV2_1`` multiplies eta, ``PV2_7`` eta^3, ``PV2_9`` eta xi^2).

The true WCS of an OTA in an exposure is this model with ``CRVAL`` = pointing + canned offset (as the
pipeline computes it) + the exposure's pointing error, ``CD`` rotated by the rotator offset, and for a
binned or test-instrument frame ``CRPIX / scale`` and ``CD * scale`` (QuickReduce's binning convention).

The mastercal copy given to the pipeline is perturbed (``perturbed_models``): per OTA a random shift of
CRPIX, rotation, scale and quadratic PV terms, scaled so that the rms sky offset over a 17x17 grid
covering the OTA is a value drawn uniformly in 32-48 mas.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .. import instrument
from .randomness import rng_for

__all__ = [
    "OTAModel",
    "PIXEL_SCALE_DEG",
    "RADIAL_K",
    "CRVAL_OFFSETS",
    "INSTRUMENT_SEED",
    "models",
    "perturbed_models",
    "axis_position",
    "true_header",
    "distortion_hdulist",
    "field_radius",
    "rms_difference_mas",
]

#: Nominal pixel scale, deg/px (0.1125"/px).
PIXEL_SCALE_DEG = 3.125e-5
#: Radial cubic distortion coefficient, deg^-2.
RADIAL_K = 0.12
#: Offset of the optical axis from the telescope pointing (canned WCS files' CRVAL): (RA, Dec) deg.
#: The RA offset is divided by cos(Dec) when applied (docs/instrument.md, 'The focal plane on the sky').
CRVAL_OFFSETS = {"podi": (0.06517, 0.06454), "odi_5x6": (0.0, 0.0)}
#: Seed of the instrument's own small per-OTA terms (the same every night).
INSTRUMENT_SEED = 2012
#: Number of PV coefficients per axis (TPV up to third order).
N_PV = 11

_PX_PER_ARCMIN = 60.0 / (PIXEL_SCALE_DEG * 3600.0)

# OTA centre minus optical axis, arcmin (x = East, y = North), docs/instrument.md, 'The focal plane on the sky'.
_PODI_AXIS_IN_33 = (-19.0 / _PX_PER_ARCMIN, -40.0 / _PX_PER_ARCMIN)
_CENTRES = {
    "podi": {
        **{10 * ox + oy: ((ox - 3) * 8.0 + _PODI_AXIS_IN_33[0], (oy - 3) * 8.0 + _PODI_AXIS_IN_33[1])
           for ox in (2, 3, 4) for oy in (2, 3, 4)},
        55: (15.9, 16.2), 61: (24.1, -16.4), 16: (-16.1, 24.6), 0: (-24.5, -25.0),
    },
    "odi_5x6": {
        11: (-20.0, -20.1), 12: (-19.5, -12.2), 13: (-19.7, -4.2), 14: (-19.7, 4.0), 15: (-19.7, 12.0),
        16: (-19.8, 20.6), 21: (-11.8, -19.9), 22: (-11.9, -12.2), 23: (-11.9, -4.0), 24: (-11.9, 4.1),
        25: (-11.9, 12.2), 26: (-11.9, 20.6), 31: (-4.4, -19.8), 32: (-4.0, -12.1), 33: (-4.0, -4.1),
        34: (-4.0, 4.1), 35: (-3.9, 12.2), 36: (-3.9, 20.3), 41: (4.0, -20.7), 42: (4.0, -12.2),
        43: (4.0, -4.0), 44: (4.0, 4.1), 45: (4.0, 12.1), 46: (4.0, 20.5), 51: (12.0, -20.2),
        52: (11.7, -12.2), 53: (11.9, -4.1), 54: (11.9, 4.0), 55: (11.9, 12.1), 56: (11.9, 20.7),
    },
}


def _rotation(angle_rad: float) -> np.ndarray:
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


@dataclass(frozen=True)
class OTAModel:
    """The WCS model of one OTA in full-size bin1 pixels.

    Attributes
    ----------
    ota : int
        OTA position.
    crpix : tuple of float
        Optical axis in the OTA frame (1-based FITS pixels).
    cd : numpy.ndarray
        CD matrix, deg/px, shape (2, 2).
    pv1, pv2 : numpy.ndarray
        TPV coefficients ``PV1_0..10`` and ``PV2_0..10``, shape (11,).
    """

    ota: int
    crpix: tuple[float, float]
    cd: np.ndarray
    pv1: np.ndarray
    pv2: np.ndarray

    def header(self, *, crval: tuple[float, float], scale: int = 1, rotation_deg: float = 0.0,
               projection: str = "TPV", extname: bool = True) -> fits.Header:
        """Return the FITS WCS cards of this OTA.

        Parameters
        ----------
        crval : tuple of float
            ``(CRVAL1, CRVAL2)``, deg.
        scale : int, optional
            Pixel size in full-size bin1 pixels: ``CRPIX / scale``, ``CD * scale``.
        rotation_deg : float, optional
            Rotate the CD matrix counter-clockwise by this angle (``CD <- R CD``), deg.
        projection : str, optional
            ``"TPV"`` (truth) or ``"TAN"`` (as QuickReduce's canned files have it; PV cards kept).
        extname : bool, optional
            Add ``EXTNAME = 'OTAxy.SCI'``.

        Returns
        -------
        astropy.io.fits.Header
        """
        cd = _rotation(math.radians(rotation_deg)) @ self.cd * scale
        h = fits.Header()
        if extname:
            h["EXTNAME"] = (f"OTA{self.ota:02d}.SCI", "OTA position")
        h["CTYPE1"] = (f"RA---{projection}", "TPV distortion around the optical axis")
        h["CTYPE2"] = f"DEC--{projection}"
        h["CUNIT1"] = "deg"
        h["CUNIT2"] = "deg"
        h["CRPIX1"] = (self.crpix[0] / scale, "optical axis in this OTA's pixels")
        h["CRPIX2"] = self.crpix[1] / scale
        h["CRVAL1"] = float(crval[0])
        h["CRVAL2"] = float(crval[1])
        for i in range(2):
            for j in range(2):
                h[f"CD{i + 1}_{j + 1}"] = float(cd[i, j])
        h["EQUINOX"] = 2000.0
        h["RADESYS"] = "ICRS"
        for axis, pv in ((1, self.pv1), (2, self.pv2)):
            for m, value in enumerate(pv):
                h[f"PV{axis}_{m}"] = float(value)
        return h


@functools.cache
def models(layout: str) -> dict[int, OTAModel]:
    """Return the true optical model of every OTA position of ``layout`` (``"podi"`` or ``"odi_5x6"``)."""
    otas = instrument.layout(layout).otas
    out = {}
    for ota in sorted(otas):
        rng = rng_for(INSTRUMENT_SEED, "ota-model", layout, ota)
        cx, cy = _CENTRES[layout][ota]
        crpix = (2048.0 - cx * _PX_PER_ARCMIN, 2048.0 - cy * _PX_PER_ARCMIN)
        rot = math.radians(rng.normal(0.0, 0.02))
        cd = _rotation(rot) * PIXEL_SCALE_DEG * (1.0 + rng.normal(0.0, 1e-4))
        quad = rng.normal(0.0, 3e-4, 6)
        pv1 = np.zeros(N_PV)
        pv2 = np.zeros(N_PV)
        for pv, q in ((pv1, quad[:3]), (pv2, quad[3:])):
            pv[1] = 1.0
            pv[4:7] = q
            pv[7] = RADIAL_K
            pv[9] = RADIAL_K
        out[ota] = OTAModel(ota=ota, crpix=crpix, cd=cd, pv1=pv1, pv2=pv2)
    return out


def _grid(n: int = 17, size: int = 4096) -> np.ndarray:
    g = np.linspace(1.0, float(size), n)
    xx, yy = np.meshgrid(g, g)
    return np.column_stack([xx.ravel(), yy.ravel()])


def rms_difference_mas(a: fits.Header, b: fits.Header, *, size: int = 4096, n: int = 17) -> float:
    """Rms sky separation between two WCS headers over an ``n x n`` grid of an OTA, mas.

    Parameters
    ----------
    a, b : astropy.io.fits.Header
        WCS headers (TAN projections are read as TPV).
    size : int, optional
        Side of the OTA frame the grid spans, pixels.
    n : int, optional
        Grid points per axis.
    """
    pix = _grid(n, size)
    radec = []
    for h in (a, b):
        h = h.copy()
        for k in ("CTYPE1", "CTYPE2"):
            h[k] = h[k].replace("TAN", "TPV")
        radec.append(WCS(h).all_pix2world(pix, 1))
    (ra1, de1), (ra2, de2) = radec[0].T, radec[1].T
    dra = ((ra1 - ra2 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(de1))
    return float(np.sqrt(np.mean(dra**2 + (de1 - de2) ** 2)) * 3.6e6)


def _perturb(model: OTAModel, p: np.ndarray) -> OTAModel:
    cd = _rotation(p[2]) @ model.cd * (1.0 + p[3])
    pv1, pv2 = model.pv1.copy(), model.pv2.copy()
    pv1[4:7] += p[4:7]
    pv2[4:7] += p[7:10]
    return replace(model, crpix=(model.crpix[0] + p[0], model.crpix[1] + p[1]), cd=cd, pv1=pv1, pv2=pv2)


def perturbed_models(layout: str, seed: int) -> tuple[dict[int, OTAModel], dict[int, float]]:
    """Return a mastercal copy of the model of ``layout``, perturbed by 32-48 mas rms per OTA.

    Parameters
    ----------
    layout : str
        ``"podi"`` or ``"odi_5x6"``.
    seed : int
        Night seed.

    Returns
    -------
    models : dict
        OTA -> perturbed OTAModel.
    rms_mas : dict
        OTA -> rms difference from the truth over the OTA, mas.
    """
    out, rms = {}, {}
    crval = CRVAL_OFFSETS[layout]
    # typical sizes: 0.3 px shift, 1e-5 rad rotation and scale, 2e-5 deg^-1 quadratic terms
    sizes = np.array([0.3, 0.3, 1e-5, 1e-5] + [2e-5] * 6)
    for ota, model in models(layout).items():
        rng = rng_for(seed, "mastercal-wcs", layout, ota)
        p = rng.normal(0.0, 1.0, sizes.size) * sizes
        target = rng.uniform(32.0, 48.0)
        truth = model.header(crval=crval)
        got = rms_difference_mas(truth, _perturb(model, p).header(crval=crval))
        perturbed = _perturb(model, p * (target / got))
        out[ota] = perturbed
        rms[ota] = rms_difference_mas(truth, perturbed.header(crval=crval))
    return out, rms


def axis_position(layout: str, ra: float, dec: float, pointing_error=(0.0, 0.0)) -> tuple[float, float]:
    """Sky position of the optical axis (the CRVAL of every OTA), deg.

    ``CRVAL2 = dec + dDec``, ``CRVAL1 = ra + dRA / cos(CRVAL2)`` with the canned offsets of ``layout``,
    as QuickReduce computes it, then the pointing error ``(dalpha cos(delta), ddelta)`` in arcsec added.
    """
    off_ra, off_dec = CRVAL_OFFSETS[layout]
    dec_axis = dec + off_dec
    ra_axis = ra + ((off_ra + 180.0) % 360.0 - 180.0) / math.cos(math.radians(dec_axis))
    dec_true = dec_axis + pointing_error[1] / 3600.0
    ra_true = ra_axis + pointing_error[0] / 3600.0 / math.cos(math.radians(dec_true))
    return ra_true % 360.0, dec_true


def true_header(exposure, ota: int) -> fits.Header:
    """The true TPV WCS of ``ota`` in ``exposure`` (an ``ExposureSpec``), at the exposure's pixel scale."""
    crval = axis_position(exposure.layout, exposure.ra, exposure.dec, exposure.pointing_error)
    return models(exposure.layout)[ota].header(crval=crval, scale=exposure.geometry.scale,
                                               rotation_deg=exposure.rotator_offset)


def distortion_hdulist(layout: str, ota_models: dict[int, OTAModel], *, projection: str = "TAN") -> fits.HDUList:
    """A distortion file in QuickReduce's format: header-only ``OTAxy.SCI`` extensions, CRVAL = offsets.

    Parameters
    ----------
    layout : str
        Layout whose canned CRVAL offsets go into CRVAL1/2.
    ota_models : dict
        OTA -> OTAModel.
    projection : str, optional
        ``"TAN"`` as QuickReduce's files (the pipeline renames it TPV), or ``"TPV"``.
    """
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["LAYOUT"] = (layout, "focal-plane layout")
    order = instrument.layout(layout).otas
    for ota in order:
        hdr = ota_models[ota].header(crval=CRVAL_OFFSETS[layout], projection=projection)
        hdus.append(fits.ImageHDU(header=hdr))
    return fits.HDUList(hdus)


@functools.cache
def field_radius(layout: str) -> float:
    """Largest distance of any OTA corner from the optical axis, deg (distortion included)."""
    worst = 0.0
    for model in models(layout).values():
        corners = np.array([[1, 1], [1, 4096], [4096, 1], [4096, 4096]], dtype=float) - np.array(model.crpix)
        r = np.hypot(*(model.cd @ corners.T))
        worst = max(worst, float(np.max(r * (1.0 + RADIAL_K * r**2))))
    return worst
