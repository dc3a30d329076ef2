"""Truth files of an exposure, under ``<outdir>/truth/<night>/<obsid>/`` (format: ``docs/simulator.md``).

- ``wcs.fits``: header-only ``OTAxy.SCI`` extensions with the true TPV WCS at the frame's pixel scale;
- ``stars.fits``: the injected stars whose centre lies in an OTA frame (table ``STARS``);
- ``exposure.json``: zero points, PSF, sky/illumination model (analytic; no sky maps), pointing error,
  rotator offset, gains and bias pedestals per cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .. import instrument
from ..io.atomic import write_fits_atomic, write_text_atomic
from . import detector, distortion, effects, photometry

__all__ = ["exposure_truth", "write_exposure_truth", "stars_table", "truth_dir"]


def truth_dir(outdir, exposure) -> Path:
    """``<outdir>/truth/<night>/<obsid with prefix>/``."""
    return Path(outdir) / "truth" / exposure.night / exposure.dirname


def stars_table(render) -> Table:
    """The injected stars of an ``ExposureRender`` as one table (column ``ota`` added); empty if none."""
    cols = ("id", "ra", "dec", "ota", "x", "y", "flux_adu", "m_odi", "on_cell", "u", "g", "r", "i", "z")
    parts = {c: [] for c in cols}
    for ota, o in render.otas.items():
        if not o.stars:
            continue
        n = len(o.stars["id"])
        for c in cols:
            parts[c].append(np.full(n, ota, np.int16) if c == "ota" else np.asarray(o.stars[c]))
    dtypes = {"id": np.int64, "ota": np.int16, "on_cell": bool}
    table = Table()
    for c in cols:
        table[c] = np.concatenate(parts[c]) if parts[c] else np.zeros(0, dtypes.get(c, float))
    for c, unit in (("ra", "deg"), ("dec", "deg"), ("x", "pix"), ("y", "pix"), ("flux_adu", "adu"),
                    ("m_odi", "mag")):
        table[c].unit = unit
    table.meta["EXTNAME"] = "STARS"
    return table


def exposure_truth(render) -> dict:
    """The JSON-ready truth of an ``ExposureRender``."""
    e = render.exposure
    geo = e.geometry
    pixscale = distortion.PIXEL_SCALE_DEG * 3600.0 * geo.scale
    axis = distortion.axis_position(e.layout, e.ra, e.dec, e.pointing_error)
    out = {
        "obsid": e.obsid, "dirname": e.dirname, "night": e.night, "obstype": e.obstype, "object": e.object,
        "filter": e.filter, "exptime": e.exptime, "date_obs": e.date_obs, "mjd": e.mjd, "epoch": e.epoch,
        "layout": e.layout, "instrument": e.kind, "binning": e.binning, "pixel_scale_arcsec": pixscale,
        "seed": render.seed, "otas": list(render.otas),
        "pointing": {
            "ra_deg": e.ra, "dec_deg": e.dec,
            "axis_ra_deg": axis[0], "axis_dec_deg": axis[1],
            "pointing_error_arcsec": list(e.pointing_error),
            "rotator_offset_deg": e.rotator_offset,
            "note": "axis = pointing + canned CRVAL offset (RA offset / cos(dec_axis)) + pointing error "
                    "(dalpha*cos(delta), ddelta); every OTA's true CRVAL is the axis",
        },
        "airmass": e.airmass,
        "nominal_gain": detector.NOMINAL_GAIN,
        "read_noise_adu": detector.READ_NOISE_ADU,
        "dark_current_e_per_pixel": render.dark_electrons,
        "poisson_exact_below_e": detector.POISSON_EXACT_BELOW,
    }
    if render.psf is not None:
        psf = render.psf
        zp1 = photometry.zeropoint(e.filter, e.airmass)
        ee = lambda r_arcsec: float(psf.enclosed_energy(r_arcsec / pixscale))  # noqa: E731
        out["seeing_arcsec"] = e.seeing
        out["psf"] = {"model": "moffat", "beta": psf.beta, "fwhm_arcsec": e.seeing, "fwhm_px": psf.fwhm,
                      "alpha_px": psf.alpha}
        out["zeropoint"] = {
            "unit": "mag for 1 ADU at the nominal gain (total flux)",
            "zp0": photometry.filter_info(e.filter).zp0,
            "zp_1s": zp1,
            "zp_frame": render.zeropoint,
            "aperture_diameter_arcsec_1s": photometry.aperture_zeropoints(zp1, ee),
            "aperture_diameter_arcsec_frame": photometry.aperture_zeropoints(render.zeropoint, ee),
            "colour_term": "m_odi = m_sdss(ref_band) - (c0 + c1*colour), data/colorterms.toml [sdss]",
        }
    background = render.sky or render.illumination
    if background is not None:
        key = "sky" if render.sky is not None else "illumination"
        out[key] = {
            **background.as_dict(),
            "unit": "ADU per pixel at the nominal gain (raw cell ADU = this * nominal_gain / GAIN)",
            "coordinates": "fx, fy = (pixel + 1 - CRPIX_model/scale) * scale * 0.1125/60 arcmin, pixel 0-based "
                           "in the OTA frame, CRPIX_model = xy07 CRPIX * scale",
            "mean_per_ota": {f"{o:02d}": r.background_mean for o, r in render.otas.items()},
        }
    out["gains"] = {f"{o:02d}": detector.cell_table(r.gains) for o, r in render.otas.items()}
    out["bias_pedestal_adu"] = {f"{o:02d}": detector.cell_table(r.pedestals) for o, r in render.otas.items()}
    eff = render.effects
    out["effects"] = eff.as_dict()
    out["overscan_level_adu"] = {f"{o:02d}": detector.cell_table(r.overscan) for o, r in render.otas.items()
                                 if r.overscan is not None}
    out["cellmode"] = {f"{o:02d}": r.primary["CELLMODE"] for o, r in render.otas.items()}
    out["detector_serial"] = {f"{o:02d}": r.primary["OTA_ID"] for o, r in render.otas.items()}
    out["effects_per_ota"] = {f"{o:02d}": r.info for o, r in render.otas.items()}
    if e.bright_star is not None:
        b = e.bright_star
        out["bright_star"] = {"mag": b.mag, "ota": b.ota, "x_fullsize": b.x, "y_fullsize": b.y, "ra": b.ra,
                              "dec": b.dec, "id": -1}
    out["detector_truth"] = (f"truth/detector/{e.layout}/detector_{e.kind}_bin{e.binning}.json "
                             "(non-linearity, full well, bias structure, glow, defects, response steps per serial)")
    out["masks"] = {"file": "masks.fits", "bits": effects.MASK_BITS,
                    "note": "uint8 OTAxy.MASK images in the OTA frame: BADPIX true defects (listed in the BPM or "
                            "not), SATURATED own charge above full well, BLEED spilled charge, PERSISTENCE "
                            "persistent charge from earlier exposures, COSMIC >= 3 read noises of cosmic-ray "
                            "charge, CELL broken or video cells"}
    out["persistence_model"] = {
        "adu": "(A1 exp(-t/tau1) + A2 exp(-t/tau2)) (1 - t/window), nominal ADU per pixel, 0 <= t <= window",
        "A": list(effects.PERSISTENCE_AMPLITUDES), "tau_s": list(effects.PERSISTENCE_TAUS),
        "window_s": effects.PERSISTENCE_WINDOW,
        "where": "rows [0, top) of every column of the same cell and OTA that reached full well in an earlier "
                 "exposure; t = start of this exposure - end of the earlier one"}
    if render.sky is not None or render.illumination is not None:
        out["pupil_ghost_model"] = {f: {"r1": v[0], "r_peak": v[1], "r2": v[2], "peak_rel": v[3]}
                                    for f, v in effects.PUPIL_GHOST.items()}
    return out


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_exposure_truth(render, outdir) -> Path:
    """Write ``wcs.fits``, ``stars.fits`` (OBJECT frames) and ``exposure.json``; return the folder."""
    folder = truth_dir(outdir, render.exposure)
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["OBSID"] = render.exposure.obsid
    for ota in instrument.layout(render.exposure.layout).otas:
        if ota in render.otas:
            hdus.append(fits.ImageHDU(header=render.otas[ota].wcs_header))
    write_fits_atomic(fits.HDUList(hdus), folder / "wcs.fits")
    if render.exposure.obstype == "OBJECT":
        table = stars_table(render)
        write_fits_atomic(fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]), folder / "stars.fits")
    mask_hdus = [fits.PrimaryHDU()]
    for ota in instrument.layout(render.exposure.layout).otas:
        o = render.otas.get(ota)
        if o is not None and o.masks is not None:
            mask_hdus.append(fits.CompImageHDU(o.masks, name=f"OTA{ota:02d}.MASK", compression_type="RICE_1"))
    if len(mask_hdus) > 1:
        for name, bit in effects.MASK_BITS.items():
            mask_hdus[0].header[f"MASKB{bit.bit_length() - 1}"] = (name, f"bit value {bit}")
        write_fits_atomic(fits.HDUList(mask_hdus), folder / "masks.fits")
    text = json.dumps(exposure_truth(render), indent=1, default=_json_default, allow_nan=False)
    write_text_atomic(text + "\n", folder / "exposure.json")
    return folder

