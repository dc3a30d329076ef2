"""Source catalogue of an OTA with ``sep`` (docs/reduction-steps.md, 'Source catalogue'; replaces SExtractor).

The settings follow QuickReduce's ``config/wcsfix.sex``: ``DETECT_THRESH 6``, ``DETECT_MINAREA 3``, no
filter, ``DEBLEND_NTHRESH 32``, ``DEBLEND_MINCONT 0.1``, cleaning, ``BACK_SIZE 64``, ``BACK_FILTERSIZE 3``,
``PHOT_AUTOPARAMS 2.5, 3.5``, ``SATUR_LEVEL 60000``, ``MAG_ZEROPOINT 0``, ``GAIN`` from the header, and
apertures of 2, 3, 4, 5, 6, 8, 10, 12 arcsec **diameter**. The output has the columns of ``CAT.ODI``
(docs/formats.md, 'The final MEF'). Differences from SExtractor, by design:

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
  the header ``GAIN`` (e-/ADU). A flux <= 0 gives ``99``.
- Partial apertures: a circular aperture that holds masked or off-image pixels is measured over its
  unmasked pixels; ``MASKFRAC_Dxx`` is the fraction of its area that is masked or off the image, ``FLAGS``
  gets bit 32, and the magnitude is ``99`` only when more than :data:`MAX_MASKED_FRACTION` of the area is
  missing. Calibrations use only apertures with ``MASKFRAC`` 0.
- Deblending twins: sep's deblended children of one peak (a cosmic ray, a noise peak on a star's wing) can
  move onto the same windowed centroid; rows whose windowed centroids lie within
  :data:`MERGE_RADIUS_SIGMA` window sigmas (at least :data:`MIN_MERGE_RADIUS_PX`) of a brighter row's are
  dropped (:func:`merge_converged`). Two real stars 1" apart are 9 full-size pixels apart, far more than
  that (1.7 px at 0.8-0.9" seeing).

``FLAGS`` (SExtractor's bit meanings):

==== ======================================================================================
2    the object was deblended from a blend (sep ``OBJ_MERGED``)
4    saturated: ``FLUX_MAX + BACKGROUND >= saturation``, or SATURATED/BLEED mask bits (8, 16 of
     :data:`podisteps.maskbits.MASK_BITS`) inside the AUTO aperture
8    truncated at the image border (sep ``OBJ_TRUNC`` or the AUTO aperture leaves the frame)
16   the AUTO aperture holds masked (MASK != 0 or NaN) pixels
32   a circular aperture holds masked or off-image pixels: its magnitude is partial (``MASKFRAC_Dxx``)
==== ======================================================================================

Point sources (:func:`point_sources`) for the seeing, the PSF shape and the QA plots: clean rows (``FLAGS``
0 but for bit 32), ``S/N > 20`` in ``MAG_AUTO``, elongation below :data:`MAX_STAR_ELONGATION`, resolved
(``FWHM_IMAGE`` above the smallest FWHM of :func:`half_light_table`: hot pixels and cosmic-ray hits sit
there), and ``FWHM_IMAGE`` within :data:`STELLAR_LOCUS_HALF_WIDTH` of the stellar locus, the densest FWHM
of those rows. Cosmic rays and hot pixels are sharper than the PSF and fall outside the locus.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import sep
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from ..astrometry import header_wcs, pixel_scale
from ..maskbits import MASK_BITS
from .centroids import windowed_centroids
from .moffat import Moffat

__all__ = ["APERTURE_DIAMETERS", "CATALOG_COLUMNS", "FLAG_BITS", "MAX_MASKED_FRACTION", "PSF_BETA", "source_catalog",
           "source_positions", "half_light_radius", "half_light_table", "fwhm_from_half_light_radius",
           "merge_converged", "point_sources", "clean_rows", "windowed_centroids"]

#: Aperture diameters, arcsec (QuickReduce's ``MAG_D20 ... MAG_D120``).
APERTURE_DIAMETERS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0)

#: FLAGS bits (SExtractor meanings).
FLAG_BITS = {"BLENDED": 2, "SATURATED": 4, "TRUNCATED": 8, "MASKED": 16, "PARTIAL": 32}

#: Largest masked (or off-image) fraction of a circular aperture that still gives a magnitude.
MAX_MASKED_FRACTION = 0.5

#: Deblended children whose windowed centroids lie within this many window sigmas of a brighter one's
#: are twins of it (:func:`merge_converged`): 1.7 px at full size and 0.8-0.9" seeing.
MERGE_RADIUS_SIGMA = 0.5

#: ... and within this many pixels in any case (twins of cosmic rays, whose windows are narrow), px.
MIN_MERGE_RADIUS_PX = 1.5

#: Point sources: largest ``ELONGATION`` (a / b).
MAX_STAR_ELONGATION = 1.5

#: Point sources: largest ``MAGERR_AUTO`` (S/N 20), mag.
MAX_STAR_MAGERR = 1.0857 / 20.0

#: Point sources: half-width of the stellar locus around its densest FWHM, as a fraction of that FWHM.
STELLAR_LOCUS_HALF_WIDTH = 0.2

#: Backup gain, e-/ADU, when the header has no GAIN (docs/reduction-steps.md, 'Gain and read noise').
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

#: Rows per block of :func:`_masked_copy` (a quarter of a megabyte of float32 pixels at full size).
_BLOCK_ROWS = 64

#: What sep's error says when a frame has more pixels above the threshold at once than its pixel stack holds.
_PIXSTACK_FULL = "internal pixel buffer full"

_APER_NAMES = [f"D{int(round(d * 10))}" for d in APERTURE_DIAMETERS]
CATALOG_COLUMNS = (
    ["RA", "DEC", "X", "Y", "FWHM_IMAGE", "FWHM_WORLD", "BACKGROUND", "FLAGS", "OTA", "MAG_AUTO", "MAGERR_AUTO",
     "FLUX_MAX", "AWIN_IMAGE", "BWIN_IMAGE", "THETAWIN_IMAGE", "ELONGATION", "ELLIPTICITY"]
    + [name for d in _APER_NAMES for name in (f"MAG_{d}", f"MAGERR_{d}")]
    + [f"MASKFRAC_{d}" for d in _APER_NAMES]
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

    Noise-free stars (:class:`podisteps.catalog.moffat.Moffat`, as the simulator renders them, out to
    8 alpha) at 8 random sub-pixel phases per FWHM; ``a`` is the star's rms radius ``FWHM_eff / 2.3548`` with
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


def merge_converged(x, y, radius, flux) -> np.ndarray:
    """Which sources to keep when deblended children converged on one windowed centroid.

    A source is dropped when a brighter kept source lies within the brighter one's ``radius``.

    Parameters
    ----------
    x, y : array_like
        Windowed centroids, px, shape ``(n,)``.
    radius : array_like
        Merging radius of each source (its centroid window ``sigma``), px, shape ``(n,)``.
    flux : array_like
        Brightness order (e.g. sep's isophotal flux), ADU, shape ``(n,)``.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(n,)``: True for the sources to keep.
    """
    x, y, radius, flux = (np.asarray(v, float) for v in (x, y, radius, flux))
    keep = np.ones(x.size, bool)
    if x.size < 2:
        return keep
    xy = np.column_stack([x, y])
    pairs = cKDTree(xy).query_pairs(float(radius.max()), output_type="ndarray")
    if not len(pairs):
        return keep
    bright = np.where(flux[pairs[:, 0]] >= flux[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
    faint = pairs[:, 0] + pairs[:, 1] - bright
    close = np.hypot(*(xy[bright] - xy[faint]).T) <= radius[bright]
    bright, faint = bright[close], faint[close]
    for i in np.argsort(-flux[bright], kind="stable"):
        if keep[bright[i]]:
            keep[faint[i]] = False
    return keep


def _densest(values: np.ndarray, half_width: float) -> float:
    """Median of the values within ``half_width`` of the value with the most neighbours within
    ``half_width / 2`` (the mode of a 1-D distribution)."""
    v = np.sort(values)
    counts = np.searchsorted(v, v + half_width / 2.0, side="right") - np.searchsorted(v, v - half_width / 2.0)
    peak = v[int(np.argmax(counts))]
    return float(np.median(v[np.abs(v - peak) <= half_width]))


def clean_rows(catalog: Table, *, aperture: str | None = None) -> np.ndarray:
    """Rows whose measurements a calibration may use: ``FLAGS`` 0 but for the partial-aperture bit 32 and,
    with ``aperture`` (e.g. ``"D40"``), that aperture complete (``MASKFRAC`` 0; catalogues without the column
    count as complete). Boolean, shape ``(len(catalog),)``."""
    good = (np.asarray(catalog["FLAGS"], int) & ~FLAG_BITS["PARTIAL"]) == 0
    column = f"MASKFRAC_{aperture}"
    if aperture is not None and column in catalog.colnames:
        good &= np.asarray(catalog[column], float) == 0.0
    return good


def point_sources(catalog: Table) -> np.ndarray:
    """The point sources of a catalogue, for the seeing, the PSF shape and the QA plots.

    Clean (``FLAGS`` 0 but for the partial-aperture bit 32), ``MAGERR_AUTO`` below :data:`MAX_STAR_MAGERR`,
    ``ELONGATION`` below :data:`MAX_STAR_ELONGATION`, resolved (``FWHM_IMAGE`` above the smallest FWHM of
    :func:`half_light_table`, where hot pixels and cosmic rays sit) and within
    :data:`STELLAR_LOCUS_HALF_WIDTH` of the stellar locus (the densest ``FWHM_IMAGE`` of those rows).

    Parameters
    ----------
    catalog : astropy.table.Table
        ``CAT.ODI`` rows (:data:`CATALOG_COLUMNS`), of one OTA or a whole exposure.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(len(catalog),)``.
    """
    fwhm = np.asarray(catalog["FWHM_IMAGE"], float)
    with np.errstate(invalid="ignore"):
        good = (clean_rows(catalog) & (np.asarray(catalog["MAGERR_AUTO"], float) < MAX_STAR_MAGERR)
                & (np.asarray(catalog["ELONGATION"], float) < MAX_STAR_ELONGATION)
                & (fwhm > 1.05 * half_light_table()[0][0]))
    if not good.any():
        return good
    locus = math.exp(_densest(np.log(fwhm[good]), math.log1p(STELLAR_LOCUS_HALF_WIDTH)))
    return good & (np.abs(fwhm / locus - 1.0) <= STELLAR_LOCUS_HALF_WIDTH)


def _bits_near(mask: np.ndarray, bits: int, x, y, half) -> np.ndarray:
    """``(mask & bits) != 0`` within ``half`` px of the nearest pixels to ``(x, y)``, False elsewhere.

    A measurement that reads only pixels within those boxes (an aperture whose pixels lie within
    ``half - 1`` px of its centre) finds the same pixels set as in the full-frame test, whose integer
    and boolean full-frame temporaries cost 100 ms on a full-size OTA (6 ms here).

    Parameters
    ----------
    mask : numpy.ndarray
        Integer mask, shape ``(ny, nx)``.
    bits : int
        The bits to test.
    x, y : numpy.ndarray
        0-based centres, px, shape ``(n,)``.
    half : numpy.ndarray
        Half-widths of the boxes, px (int), shape ``(n,)``.

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(ny, nx)``.
    """
    ny, nx = mask.shape
    near = np.zeros(mask.shape, bool)
    for xc, yc, h in zip(np.rint(x).astype(int), np.rint(y).astype(int), half):
        box = np.s_[max(yc - h, 0):min(yc + h + 1, ny), max(xc - h, 0):min(xc + h + 1, nx)]
        np.not_equal(mask[box] & bits, 0, out=near[box])
    return near


def _aperture_photometry(sub, bad, good, rms, x, y, *, radius: float, gain: float, partial: np.ndarray):
    """Flux over the unmasked pixels of circles of ``radius`` px: magnitude, error, masked fraction of the
    area (0 for complete apertures); magnitude 99 above :data:`MAX_MASKED_FRACTION`.

    ``sub`` is zero at ``bad`` pixels; ``good`` is True at unmasked pixels, False at ``bad`` ones (bool, made
    once per image for all apertures; sep sums it as 1.0 and 0.0). sep scales the flux of an aperture with
    masked pixels up by its area ratio; partial apertures are measured again without the mask, as the plain
    sum of their unmasked pixels (the error then also counts the masked pixels' sky noise, a slight
    overestimate).

    ``partial`` (bool, shape ``(n,)``) holds the sources whose smaller circle was partial, and is updated with
    this circle's. The pixels sep flags in a circle (masked, or its box off the image) are those within its
    radius plus 0.71 px, so a circle holds every flagged pixel of a smaller one around the same centre: those
    sources are partial again and skip the masked measurement, whose flux would be replaced.
    """
    flux, ferr = np.empty(x.size), np.empty(x.size)
    unknown = ~partial
    if unknown.any():
        flux[unknown], ferr[unknown], fflag = sep.sum_circle(sub, x[unknown], y[unknown], radius, err=rms,
                                                             gain=gain, mask=bad, subpix=0)
        partial[unknown] = (fflag & (sep.APER_HASMASKED | sep.APER_TRUNC)) != 0
    maskfrac = np.zeros(x.size)
    if partial.any():
        xp, yp = x[partial], y[partial]
        flux[partial], ferr[partial], _ = sep.sum_circle(sub, xp, yp, radius, err=rms, gain=gain, subpix=0)
        area, _, _ = sep.sum_circle(good, xp, yp, radius, subpix=0)
        maskfrac[partial] = np.clip(1.0 - area / (math.pi * radius * radius), 0.0, 1.0)
    mag, err = _magnitudes(flux, ferr, maskfrac > MAX_MASKED_FRACTION)
    return mag, err, maskfrac


def _masked_copy(data: np.ndarray, mask: np.ndarray | None, *,
                 overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A native float32 copy of an image with its masked pixels set to 0, and its mask.

    Masked are the pixels that are not finite or nonzero in ``mask``. The work goes in blocks of
    :data:`_BLOCK_ROWS` rows, each copied, tested and zeroed while it is in the cache, without full-frame
    temporaries (42 ms instead of 52 ms for whole-frame passes on a full-size OTA). With ``overwrite`` a
    writable native float32 C-contiguous ``data`` is itself the image returned: no fresh 64 MiB frame to
    fault in (about 20 ms of system time at full size), the same values.

    Parameters
    ----------
    data : numpy.ndarray
        Image, ADU, shape ``(ny, nx)``, any real dtype and byte order.
    mask : numpy.ndarray or None
        Shape ``(ny, nx)``: nonzero pixels are masked.
    overwrite : bool, optional
        Whether ``data`` may be used as the image (only when it is writable native float32, C order).

    Returns
    -------
    image : numpy.ndarray
        float32, ADU, 0 at masked pixels, shape ``(ny, nx)``.
    bad : numpy.ndarray
        Boolean mask, shape ``(ny, nx)``.
    """
    in_place = (overwrite and data.dtype == np.float32 and data.dtype.isnative and data.flags.c_contiguous
                and data.flags.writeable)
    image = data if in_place else np.empty(data.shape, np.float32)
    bad = np.empty(data.shape, bool)
    if mask is not None and not mask.dtype.isnative:  # the same bytes are nonzero in either order: no swap
        mask = mask.view(mask.dtype.newbyteorder("="))
    for start in range(0, data.shape[0], _BLOCK_ROWS):
        rows = np.s_[start:start + _BLOCK_ROWS]
        block, masked = image[rows], bad[rows]
        if not in_place:
            block[...] = data[rows]
        np.isfinite(block, out=masked)
        np.logical_not(masked, out=masked)
        if mask is not None:
            np.logical_or(masked, mask[rows], out=masked)  # nonzero mask pixels
        np.copyto(block, 0.0, where=masked)
    return image, bad


def _extract(sub: np.ndarray, rms: np.ndarray, bad: np.ndarray, *, thresh: float, minarea: int):
    """``sep.extract`` with the settings of ``wcsfix.sex``: the objects and the segmentation map (int32).

    sep allocates and initialises its pixel stack (the pixels above the threshold being assembled into objects)
    on every call: a stack of a tenth of a full-size OTA's pixels costs 23 ms more than sep's default 300 000.
    The stack only bounds how many such pixels one frame may hold at once, never the objects found, so a frame
    runs on the stack as it is and only one that overflows it runs again on a tenth of its pixels.

    Parameters
    ----------
    sub, rms, bad : numpy.ndarray
        Background-subtracted image (ADU), background rms (ADU) and mask (bool), shape ``(ny, nx)``.
    thresh : float
        Detection threshold, in units of ``rms``.
    minarea : int
        Minimum pixels above threshold.
    """
    def extract():
        return sep.extract(sub, thresh, err=rms, mask=bad, minarea=minarea, filter_kernel=None, deblend_nthresh=32,
                           deblend_cont=0.1, clean=True, clean_param=1.0, segmentation_map=True)

    larger = sub.size // 10
    try:
        return extract()
    except Exception as exc:  # sep raises a bare Exception
        if _PIXSTACK_FULL not in str(exc) or sep.get_extract_pixstack() >= larger:
            raise
    sep.set_extract_pixstack(larger)
    return extract()


def _empty_catalog(ota: int, meta: dict) -> Table:
    dtypes = {"RA": "f8", "DEC": "f8", "FLAGS": "i2", "OTA": "i2"}
    table = Table(names=CATALOG_COLUMNS, dtype=[dtypes.get(c, "f4") for c in CATALOG_COLUMNS])
    table.meta.update({"OTA": ota, **meta})
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
    overwrite: bool = False,
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
    overwrite : bool, optional
        Whether ``data`` may be overwritten (it then ends background-subtracted, zero at masked pixels):
        a writable native float32 image is then worked on in place instead of copied. The catalogue is the
        same either way.

    Returns
    -------
    astropy.table.Table
        One row per source, columns :data:`CATALOG_COLUMNS` (``X``/``Y`` 1-based pixels, ``RA``/``DEC``
        degrees, ``FWHM_WORLD`` arcsec); ``meta`` holds ``OTA``, ``GAIN``, ``PIXSCALE`` (median local
        scale, arcsec/px), ``BACKSIZE`` and ``THRESH``.
    """
    image, bad = _masked_copy(np.asarray(data), None if mask is None else np.asarray(mask), overwrite=overwrite)
    ny, nx = image.shape
    gain = float(gain if gain is not None else header.get("GAIN", DEFAULT_GAIN))
    back_size = int(max(8, min(back_size, min(ny, nx) // 4)))
    empty_meta = {"GAIN": gain, "BACKSIZE": back_size, "THRESH": thresh}
    if bad.all():
        return _empty_catalog(ota, empty_meta)

    bkg = sep.Background(image, mask=bad, bw=back_size, bh=back_size, fw=3, fh=3)
    back, rms = bkg.back(), bkg.rms()
    sub = image  # background-subtracted in place
    sub -= back
    np.copyto(sub, 0.0, where=bad)
    objs, segmap = _extract(sub, rms, bad, thresh=thresh, minarea=minarea)
    seg_id = np.flatnonzero((objs["a"] > 0) & (objs["b"] > 0)) + 1
    objs = objs[seg_id - 1]
    if len(objs) == 0:
        return _empty_catalog(ota, empty_meta)
    x, y, a, b, theta = (np.asarray(objs[k], float) for k in ("x", "y", "a", "b", "theta"))
    theta = np.clip(theta, -math.pi / 2, math.pi / 2)  # sep may return |theta| a rounding error above pi/2

    # windowed centroids from a first half-light radius
    r_half = half_light_radius(sub, x, y, a, mask=bad)
    sig = np.maximum(2.0 * np.nan_to_num(r_half, nan=1.0) / 2.35, MIN_WINDOW_SIGMA)
    xw, yw = windowed_centroids(sub, bad, segmap, seg_id, x, y, sig)
    inside = (xw > -0.5) & (xw < nx - 0.5) & (yw > -0.5) & (yw < ny - 0.5)
    merge_radius = np.maximum(MERGE_RADIUS_SIGMA * sig[inside], MIN_MERGE_RADIUS_PX)
    inside[inside] = merge_converged(xw[inside], yw[inside], merge_radius, objs["flux"][inside])
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
        sat_mask = _bits_near(np.asarray(mask), MASK_BITS["SATURATED"] | MASK_BITS["BLEED"], xw, yw,
                              np.ceil(k * np.maximum(a, b)).astype(int) + 2)
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
    good = np.logical_not(bad)  # unmasked pixels for every aperture (sep sums True as 1.0, as a float 1.0)
    partial = np.zeros(len(xw), bool)
    for diameter, name in zip(APERTURE_DIAMETERS, _APER_NAMES):  # ascending: see _aperture_photometry
        mag, err, maskfrac = _aperture_photometry(sub, bad, good, rms, xw, yw, radius=diameter / 2.0 / nominal,
                                                  gain=gain, partial=partial)
        table[f"MAG_{name}"], table[f"MAGERR_{name}"] = mag.astype(np.float32), err.astype(np.float32)
        table[f"MASKFRAC_{name}"] = maskfrac.astype(np.float32)
        table["FLAGS"][maskfrac > 0] |= FLAG_BITS["PARTIAL"]
    table = table[CATALOG_COLUMNS]
    table.meta.update({"OTA": ota, "GAIN": gain, "PIXSCALE": float(np.median(scale)), "APERSCL": nominal,
                       "BACKSIZE": back_size,
                       "THRESH": thresh})
    return table


def source_positions(catalog: Table) -> np.ndarray:
    """0-based ``(x, y)`` pixel positions of a catalogue's sources, shape ``(n, 2)`` (for sky boxes)."""
    return np.column_stack([np.asarray(catalog["X"], float) - 1.0, np.asarray(catalog["Y"], float) - 1.0])
