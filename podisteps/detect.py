"""Source catalogue of an OTA with ``sep`` (QUICKREDUCE_SPEC.md section 3 step 20; replaces SExtractor).

The settings follow QuickReduce's ``config/wcsfix.sex``: ``DETECT_THRESH 6``, ``DETECT_MINAREA 3``, no
filter, ``DEBLEND_NTHRESH 32``, ``DEBLEND_MINCONT 0.1``, cleaning, ``BACK_SIZE 64``, ``BACK_FILTERSIZE 3``,
``PHOT_AUTOPARAMS 2.5, 3.5``, ``SATUR_LEVEL 60000``, ``MAG_ZEROPOINT 0``, ``GAIN`` from the header, and
apertures of 2, 3, 4, 5, 6, 8, 10, 12 arcsec **diameter**. The output has the columns of ``CAT.ODI``
(spec section 4.10). Differences from SExtractor, by design:

- ``X``, ``Y`` (1-based) are windowed centroids (``sep.winpos``, Gaussian window of
  ``sigma = 2 r_half / 2.35``, at least :data:`MIN_WINDOW_SIGMA`); ``RA``, ``DEC`` come from them
  through the header's full WCS (TPV distortion included) with ``all_pix2world``.
- ``FWHM_IMAGE`` is the FWHM of the PSF before pixel integration, from the half-light radius
  (``sep.flux_radius``) under a Moffat profile of exponent :data:`PSF_BETA` = 3 (ODI's and the
  simulator's PSF): :func:`fwhm_from_half_light_radius` inverts a table of the half-light radius that
  this module measures on pixel-integrated Moffat stars (:func:`half_light_table`), so it holds for
  undersampled stars too (the test instrument's 1.1 px); for well-sampled stars it is
  ``2 sqrt(2^(1/beta) - 1) / sqrt(2^(1/(beta-1)) - 1) r_half = 1.584 r_half`` (2 r_half, the Gaussian
  relation, would be 26 % high). ``FWHM_WORLD`` uses the local pixel scale of the WCS at the source
  (``sqrt |det J|``), not the nominal 0.11"/px.
- The aperture radii are ``d / 2`` divided by the *nominal* pixel scale, ``sqrt |det CD|`` (the linear
  part of the WCS, without the distortion terms), as QuickReduce's SExtractor apertures were fixed in
  pixels: a star's image keeps its size in pixels across the focal plane, so apertures sized with the
  local (distorted) scale would hold less of its light on the outer OTAs (1-2 % measured on the
  simulator). They are exact-overlap circles (``subpix=0``). ``MAG_AUTO`` is a Kron ellipse ``max(2.5 r_Kron, 3.5)`` x ``(a, b)``.
- ``AWIN_IMAGE``, ``BWIN_IMAGE``, ``THETAWIN_IMAGE`` are the isophotal second-moment shape of
  ``sep.extract`` (``THETA`` in degrees, counter-clockwise from +x); sep has no windowed moments.
- Magnitudes are ``-2.5 log10(flux / ADU)``; errors include the background rms and the Poisson noise with
  the header ``GAIN`` (e-/ADU). A flux <= 0 gives ``99``, as does an aperture that holds masked or
  off-image pixels (its flux would be incomplete).

``FLAGS`` (SExtractor's bit meanings):

==== ======================================================================================
2    the object was deblended from a blend (sep ``OBJ_MERGED``)
4    saturated: ``FLUX_MAX + BACKGROUND >= saturation``, or SATURATED/BLEED mask bits (8, 16 of
     :data:`podisteps.assemble.MASK_BITS`) inside the AUTO aperture
8    truncated at the image border (sep ``OBJ_TRUNC`` or the AUTO aperture leaves the frame)
16   the AUTO aperture holds masked (MASK != 0 or NaN) pixels
==== ======================================================================================
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sep
from astropy.io import fits
from astropy.table import Table

from .assemble import MASK_BITS
from .astrometry import header_wcs, pixel_scale
from .simulate.psf import Moffat

__all__ = ["APERTURE_DIAMETERS", "CATALOG_COLUMNS", "FLAG_BITS", "PSF_BETA", "source_catalog", "source_positions",
           "half_light_radius", "half_light_table", "fwhm_from_half_light_radius"]

#: Aperture diameters, arcsec (QuickReduce's ``MAG_D20 ... MAG_D120``).
APERTURE_DIAMETERS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)

#: FLAGS bits (SExtractor meanings).
FLAG_BITS = {"BLENDED": 2, "SATURATED": 4, "TRUNCATED": 8, "MASKED": 16}

#: Backup gain, e-/ADU, when the header has no GAIN (QUICKREDUCE_SPEC.md section 10).
DEFAULT_GAIN = 1.3

#: Magnitude given to undefined fluxes.
BAD_MAG = 99.0

#: Smallest Gaussian window of the centroids, px: narrower windows pull undersampled stars towards pixel
#: centres (up to 0.07 px at FWHM 1.2 px with SExtractor's ``2 r_half / 2.35``, 0.04 px with 1.2 px).
MIN_WINDOW_SIGMA = 1.2

#: Moffat exponent of the PSF model behind ``FWHM_IMAGE``.
PSF_BETA = 3.0

#: Largest radius the half-light radius is integrated over, px: ``6 a`` of a star with a 3" FWHM at full
#: size is about 70 px; beyond that are saturated stars, galaxies and artefacts whose ``a`` reaches 1000 px
#: and whose integration would cost ten times the rest of the catalogue.
MAX_FLUX_RADIUS_PX = 100.0

_APER_NAMES = [f"D{int(round(d * 10))}" for d in APERTURE_DIAMETERS]
CATALOG_COLUMNS = (
    ["RA", "DEC", "X", "Y", "FWHM_IMAGE", "FWHM_WORLD", "BACKGROUND", "FLAGS", "OTA", "MAG_AUTO", "MAGERR_AUTO",
     "FLUX_MAX", "AWIN_IMAGE", "BWIN_IMAGE", "THETAWIN_IMAGE", "ELONGATION", "ELLIPTICITY"]
    + [name for d in _APER_NAMES for name in (f"MAG_{d}", f"MAGERR_{d}")]
)


def _magnitudes(flux, fluxerr, bad) -> tuple[np.ndarray, np.ndarray]:
    """``-2.5 log10(flux)`` and ``1.0857 err/flux``; 99 where the flux is <= 0 or ``bad``."""
    flux = np.asarray(flux, float)
    good = (flux > 0) & ~bad & np.isfinite(flux)
    mag = np.full(flux.shape, BAD_MAG)
    err = np.full(flux.shape, BAD_MAG)
    mag[good] = -2.5 * np.log10(flux[good])
    err[good] = 2.5 / math.log(10.0) * np.asarray(fluxerr, float)[good] / flux[good]
    return mag, err


def half_light_radius(sub: np.ndarray, x, y, a, *, mask=None) -> np.ndarray:
    """Half-light radius (px) within ``6 a`` px of 0-based ``(x, y)``, at least 3 and at most
    :data:`MAX_FLUX_RADIUS_PX` (``sep.flux_radius``)."""
    rmax = np.clip(6.0 * np.asarray(a, float), 3.0, MAX_FLUX_RADIUS_PX)
    r_half, _ = sep.flux_radius(sub, x, y, rmax, 0.5, mask=mask, subpix=5)
    return r_half


@functools.cache
def half_light_table(beta: float = PSF_BETA) -> tuple[np.ndarray, np.ndarray]:
    """The half-light radius :func:`half_light_radius` measures on pixel-integrated Moffat stars.

    Noise-free stars (``simulate.psf.Moffat``, the simulator's renderer, out to 8 alpha) at 8 random
    sub-pixel phases per FWHM; ``a`` is the star's rms radius ``FWHM_eff / 2.3548`` with
    ``FWHM_eff^2 = FWHM^2 + 1`` px^2. Beyond 10 px the ratio FWHM / r_half is constant to 0.3 %.

    Returns
    -------
    fwhm, r_half : numpy.ndarray
        FWHM of the PSF before pixel integration (0.6-10 px, 24 values) and the median measured
        half-light radius, px.
    """
    rng = np.random.default_rng(0)
    fwhm = np.geomspace(0.6, 10.0, 24)
    r_half = []
    for f in fwhm:
        psf = Moffat(f, beta)
        half = int(math.ceil(8.0 * psf.alpha)) + 3
        a = math.sqrt(f * f + 1.0) / 2.3548
        values = []
        for dx, dy in rng.uniform(-0.5, 0.5, (8, 2)):
            stamp = np.zeros((2 * half + 1, 2 * half + 1))
            psf.render(stamp, half + dx, half + dy, 1.0, floor=1.0)  # stamp radius 8 alpha
            values.append(half_light_radius(stamp, [half + dx], [half + dy], [a])[0])
        r_half.append(float(np.median(values)))
    return fwhm, np.maximum.accumulate(np.array(r_half))


def fwhm_from_half_light_radius(r_half) -> np.ndarray:
    """FWHM (px) of the Moffat PSF (:data:`PSF_BETA`) whose pixel-integrated image has half-light radius
    ``r_half`` (px): :func:`half_light_table` inverted, its end ratio beyond it; NaN stays NaN."""
    fwhm, table = half_light_table()
    r = np.asarray(r_half, float)
    return np.where(r > table[-1], r * fwhm[-1] / table[-1], np.interp(r, table, fwhm))


def _empty_catalog(ota: int) -> Table:
    dtypes = {"RA": "f8", "DEC": "f8", "FLAGS": "i2", "OTA": "i2"}
    table = Table(names=CATALOG_COLUMNS, dtype=[dtypes.get(c, "f4") for c in CATALOG_COLUMNS])
    table.meta["OTA"] = ota
    return table


def source_catalog(
    data: np.ndarray,
    header: fits.Header,
    *,
    ota: int,
    mask: np.ndarray | None = None,
    thresh: float = 6.0,
    minarea: int = 3,
    back_size: int = 64,
    saturation: float = 60000.0,
    gain: float | None = None,
) -> Table:
    """Detect and measure the sources of one OTA frame (``CAT.ODI`` columns).

    Parameters
    ----------
    data : numpy.ndarray
        OTA image, shape ``(ny, nx)``, ADU, any float/int dtype and byte order; NaN where undefined.
    header : astropy.io.fits.Header
        The OTA header: its WCS (TAN/TPV) gives ``RA``/``DEC`` and the pixel scale, ``GAIN`` the gain.
    ota : int
        OTA number for the ``OTA`` column.
    mask : numpy.ndarray, optional
        Shape ``(ny, nx)``; nonzero pixels are ignored (the MASK plane of the per-OTA products, or bool).
        SATURATED and BLEED bits of an integer mask also set ``FLAGS`` 4.
    thresh : float, optional
        Detection threshold, in units of the background rms.
    minarea : int, optional
        Minimum pixels above threshold.
    back_size : int, optional
        Background mesh, pixels; reduced to a quarter of the smaller frame side for small frames.
    saturation : float, optional
        Saturation level, ADU (background included).
    gain : float, optional
        e-/ADU for the Poisson term of the errors; default the header's ``GAIN`` (else 1.3).

    Returns
    -------
    astropy.table.Table
        One row per source, columns :data:`CATALOG_COLUMNS` (``X``/``Y`` 1-based pixels, ``RA``/``DEC``
        degrees, ``FWHM_WORLD`` arcsec); ``meta`` holds ``OTA``, ``GAIN``, ``PIXSCALE`` (median local
        scale, arcsec/px), ``BACKSIZE`` and ``THRESH``.
    """
    image = np.array(data, dtype=np.float32)  # native byte order, a copy we may edit
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= np.asarray(mask) != 0
    image[bad] = 0.0
    ny, nx = image.shape
    gain = float(gain if gain is not None else header.get("GAIN", DEFAULT_GAIN))
    back_size = int(max(8, min(back_size, min(ny, nx) // 4)))
    table = _empty_catalog(ota)
    table.meta.update({"GAIN": gain, "BACKSIZE": back_size, "THRESH": thresh})
    if bad.all():
        return table

    bkg = sep.Background(image, mask=bad, bw=back_size, bh=back_size, fw=3, fh=3)
    back, rms = bkg.back(), bkg.rms()
    sub = image  # background-subtracted in place
    sub -= back
    sub[bad] = 0.0
    sep.set_extract_pixstack(max(sep.get_extract_pixstack(), image.size // 10))
    objs = sep.extract(sub, thresh, err=rms, mask=bad, minarea=minarea, filter_kernel=None, deblend_nthresh=32,
                       deblend_cont=0.1, clean=True, clean_param=1.0)
    objs = objs[(objs["a"] > 0) & (objs["b"] > 0)]
    if len(objs) == 0:
        return table
    x, y, a, b, theta = (np.asarray(objs[k], float) for k in ("x", "y", "a", "b", "theta"))
    theta = np.clip(theta, -math.pi / 2, math.pi / 2)  # sep may return |theta| a rounding error above pi/2

    # windowed centroids from a first half-light radius
    r_half = half_light_radius(sub, x, y, a, mask=bad)
    sig = np.maximum(2.0 * np.nan_to_num(r_half, nan=1.0) / 2.35, MIN_WINDOW_SIGMA)
    xw, yw, wflag = sep.winpos(sub, x, y, sig, mask=bad)
    moved = (wflag != 0) | ~np.isfinite(xw) | ~np.isfinite(yw) | (np.hypot(xw - x, yw - y) > 2.0 * sig + 1.0)
    xw, yw = np.where(moved, x, xw), np.where(moved, y, yw)
    inside = (xw > -0.5) & (xw < nx - 0.5) & (yw > -0.5) & (yw < ny - 0.5)
    objs, x, y, a, b, theta, xw, yw = (v[inside] for v in (objs, x, y, a, b, theta, xw, yw))
    r_half = half_light_radius(sub, xw, yw, a, mask=bad)

    wcs = header_wcs(header)
    ra, dec = wcs.all_pix2world(xw, yw, 0)
    scale = pixel_scale(wcs, xw + 1.0, yw + 1.0)

    # AUTO: Kron ellipse, PHOT_AUTOPARAMS 2.5, 3.5
    kron, _ = sep.kron_radius(sub, xw, yw, a, b, theta, 6.0, mask=bad)
    k = np.maximum(2.5 * np.nan_to_num(kron, nan=0.0), 3.5)
    f_auto, e_auto, flag_auto = sep.sum_ellipse(sub, xw, yw, a, b, theta, k, err=rms, gain=gain, mask=bad,
                                                subpix=1)
    mag_auto, err_auto = _magnitudes(f_auto, e_auto, np.zeros(len(xw), bool))

    iy = np.clip(np.rint(yw).astype(int), 0, ny - 1)
    ix = np.clip(np.rint(xw).astype(int), 0, nx - 1)
    background = back[iy, ix]
    flags = np.zeros(len(xw), np.int16)
    flags[(objs["flag"] & sep.OBJ_MERGED) != 0] |= FLAG_BITS["BLENDED"]
    saturated = objs["peak"] + background >= saturation
    if mask is not None and np.issubdtype(np.asarray(mask).dtype, np.integer):
        sat_mask = (np.asarray(mask) & (MASK_BITS["SATURATED"] | MASK_BITS["BLEED"])) != 0
        _, _, flag_sat = sep.sum_ellipse(sub, xw, yw, a, b, theta, k, mask=sat_mask, subpix=1)
        saturated |= (flag_sat & sep.APER_HASMASKED) != 0
    flags[saturated] |= FLAG_BITS["SATURATED"]
    flags[((objs["flag"] & sep.OBJ_TRUNC) != 0) | ((flag_auto & sep.APER_TRUNC) != 0)] |= FLAG_BITS["TRUNCATED"]
    flags[(flag_auto & sep.APER_HASMASKED) != 0] |= FLAG_BITS["MASKED"]

    fwhm = fwhm_from_half_light_radius(r_half)
    table = Table()
    table["RA"], table["DEC"] = ra, dec
    table["X"], table["Y"] = (xw + 1.0).astype(np.float32), (yw + 1.0).astype(np.float32)
    table["FWHM_IMAGE"] = fwhm.astype(np.float32)
    table["FWHM_WORLD"] = (fwhm * scale).astype(np.float32)
    table["BACKGROUND"] = background.astype(np.float32)
    table["FLAGS"] = flags
    table["OTA"] = np.full(len(xw), ota, np.int16)
    table["MAG_AUTO"], table["MAGERR_AUTO"] = mag_auto.astype(np.float32), err_auto.astype(np.float32)
    table["FLUX_MAX"] = np.asarray(objs["peak"], np.float32)
    table["AWIN_IMAGE"], table["BWIN_IMAGE"] = a.astype(np.float32), b.astype(np.float32)
    table["THETAWIN_IMAGE"] = np.degrees(theta).astype(np.float32)
    table["ELONGATION"] = (a / b).astype(np.float32)
    table["ELLIPTICITY"] = (1.0 - b / a).astype(np.float32)
    nominal = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
    for diameter, name in zip(APERTURE_DIAMETERS, _APER_NAMES):
        radius = diameter / 2.0 / nominal
        flux, ferr, fflag = sep.sum_circle(sub, xw, yw, radius, err=rms, gain=gain, mask=bad, subpix=0)
        incomplete = (fflag & (sep.APER_HASMASKED | sep.APER_TRUNC)) != 0
        mag, err = _magnitudes(flux, ferr, incomplete)
        table[f"MAG_{name}"], table[f"MAGERR_{name}"] = mag.astype(np.float32), err.astype(np.float32)
    table.meta.update({"OTA": ota, "GAIN": gain, "PIXSCALE": float(np.median(scale)), "APERSCL": nominal,
                       "BACKSIZE": back_size,
                       "THRESH": thresh})
    return table


def source_positions(catalog: Table) -> np.ndarray:
    """0-based ``(x, y)`` pixel positions of a catalogue's sources, shape ``(n, 2)`` (for sky boxes)."""
    return np.column_stack([np.asarray(catalog["X"], float) - 1.0, np.asarray(catalog["Y"], float) - 1.0])
