"""Render one exposure: the 64 raw cells of every OTA, plus the truth behind them.

Signal model (electrons per pixel, before noise):

- BIAS: nothing; DARK: dark current; DFLAT: dome illumination (``sky.IlluminationModel``) + dark current;
- OBJECT: sky (``sky.SkyModel``) + stars + dark current. Stars are Moffat PSFs (``psf.Moffat``) of FWHM =
  the exposure's seeing, placed at ``WCS(true header).all_world2pix(ra, dec, 0)`` of their position at the
  exposure epoch, with total flux ``10^(-0.4 (m_odi - ZP)) * EXPTIME`` ADU at the nominal gain,
  ``ZP = zp0 - k (airmass - 1)``. Light falling between cells is lost.

ADU at the nominal gain are turned into electrons with ``detector.NOMINAL_GAIN``; each cell then records
``electrons / GAIN(cell)`` plus its bias pedestal and noise (``detector.digitise``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .. import instrument
from . import detector, distortion, headers, photometry, sky
from .psf import Moffat
from .randomness import rng_for

__all__ = ["OTARender", "ExposureRender", "render_exposure", "cell_of_pixels"]

#: Flat-field fall-off from the axis to 30' (fraction), and sigma of the sky and flat tilts (per arcmin).
FLAT_FALLOFF = 0.04
SKY_GRADIENT_SIGMA = 4e-4
FLAT_TILT_SIGMA = 2e-4


@dataclass
class OTARender:
    """One rendered OTA.

    Attributes
    ----------
    ota : int
        OTA position.
    primary : astropy.io.fits.Header
        Raw primary header.
    cells : dict
        ``(cx, cy)`` -> uint16 array of shape ``(raw_ny, raw_nx)``.
    cell_headers : dict
        ``(cx, cy)`` -> cell header.
    wcs_header : astropy.io.fits.Header
        The true TPV WCS of this OTA in this exposure.
    gains, pedestals : numpy.ndarray
        Per-cell gain (e-/ADU) and bias pedestal (ADU) in ``instrument.CELL_IDS`` order, shape (64,).
    background_mean : float
        Mean sky or flat signal over the OTA's data pixels, ADU at the nominal gain (0 if none).
    stars : dict
        Truth of the stars whose centre lies in the OTA frame: arrays ``id, ra, dec, x, y, flux_adu,
        m_odi, on_cell`` and the SDSS magnitudes ``u..z`` (``x, y`` 0-based OTA-frame pixels).
    """

    ota: int
    primary: fits.Header
    cells: dict
    cell_headers: dict
    wcs_header: fits.Header
    gains: np.ndarray
    pedestals: np.ndarray
    background_mean: float
    stars: dict = field(default_factory=dict)


@dataclass
class ExposureRender:
    """One rendered exposure: the exposure, its models and its OTAs (in processing order)."""

    exposure: object
    seed: int
    zeropoint: float | None
    psf: Moffat | None
    sky: sky.SkyModel | None
    illumination: sky.IlluminationModel | None
    dark_electrons: float
    otas: dict


def cell_of_pixels(geo: instrument.CellGeometry, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index into ``instrument.CELL_IDS`` of the cell holding 0-based OTA pixel ``(x, y)``, or -1 (gap).

    Parameters
    ----------
    geo : CellGeometry
        Geometry.
    x, y : numpy.ndarray
        Pixel coordinates (pixel centres at integers), shape ``(n,)``.
    """
    xi = np.floor(np.asarray(x) + 0.5).astype(int)
    yi = np.floor(np.asarray(y) + 0.5).astype(int)
    out = np.full(xi.shape, -1)
    for i, (cx, cy) in enumerate(instrument.CELL_IDS):
        rows, cols = geo.target_region(cx, cy)
        inside = (xi >= cols.start) & (xi < cols.stop) & (yi >= rows.start) & (yi < rows.stop)
        out[inside] = i
    return out


def _background_models(exposure, seed: int):
    """Sky model (OBJECT) and dome illumination (DFLAT) of an exposure, or None."""
    info = photometry.filter_info(exposure.filter)
    scale = exposure.geometry.scale
    sky_model = illum = None
    if exposure.obstype == "OBJECT":
        mu = info.sky_mag if exposure.sky_mag is None else exposure.sky_mag
        level = sky.sky_rate(mu, info.zp0, scale) * exposure.exptime
        gx, gy = rng_for(seed, "sky-gradient", exposure.obsid).normal(0.0, SKY_GRADIENT_SIGMA, 2)
        sky_model = sky.SkyModel(level=level, gx=float(gx), gy=float(gy))
    elif exposure.obstype == "DFLAT":
        tx, ty = rng_for(seed, "flat-tilt", exposure.night).normal(0.0, FLAT_TILT_SIGMA, 2)
        illum = sky.IlluminationModel(level=info.dome_flat_adu, q=FLAT_FALLOFF, tx=float(tx), ty=float(ty))
    return sky_model, illum


def _ota_stars(exposure, wcs_header, ra, dec, flux, psf: Moffat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and 0-based pixel positions of the stars whose stamp may touch the OTA frame."""
    geo = exposure.geometry
    size = geo.ota_size
    w = WCS(wcs_header)
    c_ra, c_dec = w.all_pix2world([[size / 2.0, size / 2.0]], 0)[0]
    half_diag = size * geo.scale * distortion.PIXEL_SCALE_DEG / math.sqrt(2.0)
    max_stamp = 40.0 * psf.alpha * geo.scale * distortion.PIXEL_SCALE_DEG
    cos_d = math.cos(math.radians(c_dec))
    near = np.hypot(((ra - c_ra + 180.0) % 360.0 - 180.0) * cos_d, dec - c_dec) < 1.1 * half_diag + max_stamp + 0.01
    idx = np.nonzero(near)[0]
    if idx.size == 0:
        return idx, np.zeros(0), np.zeros(0)
    xy = w.all_world2pix(np.column_stack([ra[idx], dec[idx]]), 0, tolerance=1e-6, maxiter=50, quiet=True)
    x, y = xy[:, 0], xy[:, 1]
    margin = np.array([psf.stamp_radius(f) for f in flux[idx]])
    keep = (x > -margin) & (x < size + margin) & (y > -margin) & (y < size + margin) & np.isfinite(x)
    return idx[keep], x[keep], y[keep]


def render_exposure(exposure, night, *, noise: bool = True, sky_light: bool = True, bias: bool = True,
                    dark: bool = True, stars: bool = True, otas=None) -> ExposureRender:
    """Render the raw cells of ``exposure`` and the truth behind them.

    Parameters
    ----------
    exposure : ExposureSpec
        One of ``night.exposures``.
    night : Night
        The night (seed, star population).
    noise : bool, optional
        Photon and read noise (off: the expected ADU, rounded).
    sky_light : bool, optional
        Sky background of science frames and illumination of dome flats.
    bias : bool, optional
        Bias pedestals (off: 0).
    dark : bool, optional
        Dark current.
    stars : bool, optional
        Stars in science frames.
    otas : iterable of int, optional
        Render only these OTAs (default: all OTAs of the layout at the exposure's MJD).

    Returns
    -------
    ExposureRender
    """
    seed = night.seed
    geo = exposure.geometry
    lay = instrument.layout(exposure.layout)
    sky_model, illum = _background_models(exposure, seed)
    background = (sky_model or illum) if sky_light else None
    dark_e = detector.DARK_CURRENT * geo.scale**2 * exposure.exptime if dark else 0.0
    zp = psf = None
    star_ra = star_dec = star_flux = m_odi = None
    pop = None
    if exposure.obstype == "OBJECT":
        zp = photometry.frame_zeropoint(exposure.filter, exposure.airmass, exposure.exptime)
        psf = Moffat(fwhm=exposure.seeing / (distortion.PIXEL_SCALE_DEG * 3600.0 * geo.scale))
        if stars:
            pop = night.population
            star_ra, star_dec = pop.at_epoch(exposure.epoch)
            m_odi = photometry.odi_magnitude(exposure.filter, pop.mags)
            star_flux = 10.0 ** (-0.4 * (m_odi - zp))
    result = ExposureRender(exposure, seed, zp, psf, sky_model, illum, dark_e, {})
    model_crpix = {o: m.crpix for o, m in distortion.models(exposure.layout).items()}
    for ota in exposure.otas if otas is None else otas:
        serial = lay.serial(ota)
        gains = detector.cell_gains(serial)
        pedestals = (detector.bias_pedestals(serial, seed=seed, night=exposure.night, obsid=exposure.obsid)
                     if bias else np.zeros(64))
        wcs_header = distortion.true_header(exposure, ota)
        electrons = np.zeros((64, geo.raw_ny, geo.raw_nx), np.float32)
        frame = None
        truth_stars = {}
        if star_flux is not None:
            idx, x, y = _ota_stars(exposure, wcs_header, star_ra, star_dec, star_flux, psf)
            frame = np.zeros((geo.ota_size, geo.ota_size), np.float32)
            for i, xs, ys in zip(idx, x, y):
                psf.render(frame, xs, ys, star_flux[i])
            inside = (x >= -0.5) & (x < geo.ota_size - 0.5) & (y >= -0.5) & (y < geo.ota_size - 0.5)
            sel = idx[inside]
            truth_stars = {"id": pop.id[sel], "ra": star_ra[sel], "dec": star_dec[sel], "x": x[inside],
                           "y": y[inside], "flux_adu": star_flux[sel], "m_odi": m_odi[sel],
                           "on_cell": cell_of_pixels(geo, x[inside], y[inside]) >= 0,
                           **{b: pop.mags[b][sel] for b in pop.mags}}
        bg_sum = 0.0
        for i, (cx, cy) in enumerate(instrument.CELL_IDS):
            rows, cols = geo.target_region(cx, cy)
            data = electrons[i, : geo.data_ny, : geo.data_nx]
            if background is not None:
                fx, fy = sky.focal_plane_axes(model_crpix[ota], np.arange(cols.start, cols.stop),
                                              np.arange(rows.start, rows.stop), geo.scale)
                signal = background.evaluate(fx, fy)
                bg_sum += float(signal.sum(dtype=np.float64))
                data += signal
            if frame is not None:
                data += frame[rows, cols]
        electrons[:, : geo.data_ny, : geo.data_nx] *= np.float32(detector.NOMINAL_GAIN)
        if dark_e:
            electrons[:, : geo.data_ny, : geo.data_nx] += np.float32(dark_e)
        rng = rng_for(seed, "noise", exposure.obsid, ota) if noise else None
        raw = detector.digitise(electrons, gains, pedestals, rng)
        del electrons, frame
        name = f"{exposure.dirname}.{ota:02d}.fits"
        result.otas[ota] = OTARender(
            ota=ota,
            primary=headers.primary_header(exposure, ota, filename=name, seed=seed),
            cells={cid: raw[i] for i, cid in enumerate(instrument.CELL_IDS)},
            cell_headers=headers.cell_headers(exposure, ota, gains),
            wcs_header=wcs_header,
            gains=gains,
            pedestals=pedestals,
            background_mean=bg_sum / (64 * geo.data_ny * geo.data_nx),
            stars=truth_stars,
        )
    return result
