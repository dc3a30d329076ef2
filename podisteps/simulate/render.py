"""Render one exposure: the 64 raw cells of every OTA, plus the truth behind them.

Signal model (electrons per pixel, before noise):

- BIAS: nothing; DARK: dark current; DFLAT: dome illumination (``sky.IlluminationModel``) + dark current;
  TFLAT: twilight sky (no lamp fall-off, a steeper gradient, no stars) + dark current;
- OBJECT: sky (``sky.SkyModel``) + stars + dark current. Stars are Moffat PSFs (``catalog.moffat.Moffat``) of FWHM =
  the exposure's seeing, placed at ``WCS(true header).all_world2pix(ra, dec, 0)`` of their position at the
  exposure epoch, with total flux ``10^(-0.4 (m_odi - ZP)) * EXPTIME`` ADU at the nominal gain,
  ``ZP = zp0 - k (airmass - 1)``. Light falling between cells is lost.

ADU at the nominal gain are turned into electrons with ``detector.NOMINAL_GAIN``; each cell then records
``electrons / GAIN(cell)`` plus its bias pedestal and noise (``detector.noisy_adu``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from .. import instrument
from ..catalog.moffat import Moffat
from . import detector, distortion
from . import effects as effects_mod
from . import headers, photometry, sky
from .effects import Effects
from .randomness import rng_for

__all__ = ["OTARender", "ExposureRender", "render_exposure", "cell_of_pixels", "persistence_window"]

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
    masks : numpy.ndarray
        uint8 truth mask in the OTA frame (bits ``effects.MASK_BITS``).
    overscan : numpy.ndarray
        Expected overscan level per cell after crosstalk (noise-free), ADU, (64,).
    saturation : numpy.ndarray
        Saturated columns ``(cell index, column, top)``, (n, 3).
    info : dict
        JSON-ready per-OTA truth of the effects (video cells, persistence, cosmic rays, ghost, fringes).
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
    masks: np.ndarray | None = None
    overscan: np.ndarray | None = None
    saturation: np.ndarray | None = None
    info: dict = field(default_factory=dict)


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
    effects: Effects = field(default_factory=Effects)


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


def _background_models(exposure, seed: int, *, dome_illumination: bool = True):
    """Sky model (OBJECT), dome (DFLAT) or twilight (TFLAT) illumination of an exposure, or None.

    ``dome_illumination=False`` makes dome flats uniform (no lamp fall-off, no tilt).
    """
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
        on = float(dome_illumination)
        illum = sky.IlluminationModel(level=info.dome_flat_adu, q=FLAT_FALLOFF * on, tx=float(tx) * on,
                                      ty=float(ty) * on)
    elif exposure.obstype == "TFLAT":
        # the twilight sky: as bright as a dome flat, flat but for a gradient 5x the night sky's
        tx, ty = rng_for(seed, "twilight-gradient", exposure.obsid).normal(0.0, 5 * SKY_GRADIENT_SIGMA, 2)
        illum = sky.IlluminationModel(level=info.dome_flat_adu, q=0.0, tx=float(tx), ty=float(ty))
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


def _effects_for(night, effects) -> Effects:
    if effects is None:
        return night.effects
    if isinstance(effects, Effects):
        return effects
    return night.effects.replace(**dict(effects))


def _cell_lookup(geo: instrument.CellGeometry):
    """Frame column/row -> (cell column cx or -1, offset) and frame row -> (cell row cy or -1, offset)."""
    cx_of = np.full(geo.ota_size, -1)
    xo = np.zeros(geo.ota_size, int)
    cy_of = np.full(geo.ota_size, -1)
    yo = np.zeros(geo.ota_size, int)
    for c in range(8):
        x1, y1 = geo.cell_origin(c, 7 - c)
        cx_of[x1:x1 + geo.data_nx] = c
        xo[x1:x1 + geo.data_nx] = np.arange(geo.data_nx)
        cy_of[y1:y1 + geo.data_ny] = 7 - c
        yo[y1:y1 + geo.data_ny] = np.arange(geo.data_ny)
    return cx_of, xo, cy_of, yo


_CELL_INDEX = {cid: i for i, cid in enumerate(instrument.CELL_IDS)}


def saturation_sources(night, exposure, ota: int) -> np.ndarray:
    """Saturated columns of ``ota`` in ``exposure`` as rows ``(cell index, column, top)`` (int32, (n, 3)).

    ``top`` is one more than the highest full-well row of that column: persistence in later exposures
    covers rows ``[0, top)``. Taken from the standard render of the exposure (noise and the night's
    effects on), cached in ``night.saturation_cache``; renders the exposure's OTA when not cached.
    """
    key = (exposure.obsid, int(ota))
    if key not in night.saturation_cache:
        if exposure.obstype != "OBJECT" or not night.effects.saturation:
            night.saturation_cache[key] = np.zeros((0, 3), np.int32)
        else:
            render_exposure(exposure, night, otas=[ota])
    return night.saturation_cache[key]


def persistence_window(night, exposure) -> list:
    """Earlier science exposures whose saturation can persist into ``exposure``: ``(exposure, t)``.

    ``t`` = seconds from the end of the earlier exposure to the start of this one; an earlier exposure
    counts when ``dt >= 1 s`` and ``0 <= t <= 600 s`` (QuickReduce's window, docs/reduction-steps.md, 'Saturation and
    persistency') and it has the same layout.
    """
    out = []
    for p in night.exposures:
        if p.index >= exposure.index or p.obstype != "OBJECT" or p.layout != exposure.layout:
            continue
        dt = (exposure.mjd - p.mjd) * 86400.0
        t = dt - p.exptime
        if dt >= 1.0 and 0.0 <= t <= effects_mod.PERSISTENCE_WINDOW:
            out.append((p, t))
    return out


def persistence_sources(night, exposure, ota: int) -> list:
    """Earlier exposures whose saturation persists in ``ota`` of ``exposure``: ``(exposure, t, sources)``
    (:func:`persistence_window`, the sources from :func:`saturation_sources`)."""
    out = []
    for p, t in persistence_window(night, exposure):
        src = saturation_sources(night, p, ota) if ota in p.otas else ()
        if len(src):
            out.append((p, t, src))
    return out


def render_exposure(exposure, night, *, noise: bool = True, sky_light: bool = True, bias: bool = True,
                    dark: bool = True, stars: bool = True, otas=None, effects=None) -> ExposureRender:
    """Render the raw cells of ``exposure`` and the truth behind them.

    Parameters
    ----------
    exposure : ExposureSpec
        One of ``night.exposures``.
    night : Night
        The night (seed, star population, effect switches, persistence cache).
    noise : bool, optional
        Photon and read noise (off: the expected ADU, rounded).
    sky_light : bool, optional
        Sky background of science frames and illumination of dome flats (with the ghost and fringes).
    bias : bool, optional
        Bias pedestals and bias structure (off: 0).
    dark : bool, optional
        Dark current and glow (hot defects included).
    stars : bool, optional
        Stars in science frames (the block's bright star included).
    otas : iterable of int, optional
        Render only these OTAs (default: all OTAs of the layout at the exposure's MJD).
    effects : Effects or dict, optional
        Effect switches (default: the night's ``[effects]``); a dict changes some of the night's.

    Returns
    -------
    ExposureRender
    """
    eff = _effects_for(night, effects)
    standard = noise and sky_light and bias and dark and stars and eff == night.effects
    seed = night.seed
    geo = exposure.geometry
    sky_model, illum = _background_models(exposure, seed, dome_illumination=eff.dome_illumination)
    background = (sky_model or illum) if sky_light else None
    dark_e = detector.DARK_CURRENT * geo.scale**2 * exposure.exptime if dark else 0.0
    zp = psf = None
    star = None
    if exposure.obstype == "OBJECT":
        zp = photometry.frame_zeropoint(exposure.filter, exposure.airmass, exposure.exptime)
        psf = Moffat(fwhm=exposure.seeing / (distortion.PIXEL_SCALE_DEG * 3600.0 * geo.scale))
        if stars:
            pop = night.population
            ra, dec = pop.at_epoch(exposure.epoch)
            m_odi = photometry.odi_magnitude(exposure.filter, pop.mags)
            ids, mags = pop.id, dict(pop.mags)
            b = exposure.bright_star
            if b is not None:
                ids = np.append(ids, -1)
                ra, dec, m_odi = np.append(ra, b.ra), np.append(dec, b.dec), np.append(m_odi, b.mag)
                mags = {k: np.append(v, b.mag) for k, v in mags.items()}
            star = {"id": ids, "ra": ra, "dec": dec, "m_odi": m_odi, "mags": mags,
                    "flux": 10.0 ** (-0.4 * (m_odi - zp))}
    result = ExposureRender(exposure, seed, zp, psf, sky_model, illum, dark_e, {}, eff)
    ctx = dict(exposure=exposure, night=night, eff=eff, noise=noise, bias=bias, dark=dark, background=background,
               dark_e=dark_e, psf=psf, star=star, standard=standard)
    for ota in exposure.otas if otas is None else otas:
        result.otas[ota] = _render_ota(ctx, ota)
    return result


def _render_ota(ctx: dict, ota: int) -> OTARender:
    e, night, eff = ctx["exposure"], ctx["night"], ctx["eff"]
    seed = night.seed
    geo = e.geometry
    dny, dnx = geo.data_ny, geo.data_nx
    lay = instrument.layout(e.layout)
    serial = lay.serial(ota)
    props = effects_mod.detector_props(serial, geo.kind, geo.binning)
    gains = detector.cell_gains(serial)
    pedestals = (detector.bias_pedestals(serial, seed=seed, night=e.night, obsid=e.obsid)
                 if ctx["bias"] else np.zeros(64))
    crpix = distortion.models(e.layout)[ota].crpix
    wcs_header = distortion.true_header(e, ota)
    info: dict = {}
    electrons = np.zeros((64, geo.raw_ny, geo.raw_nx), np.float32)
    data = electrons[:, :dny, :dnx]
    cellmask = np.zeros((64, dny, dnx), np.uint8)
    bits = effects_mod.MASK_BITS

    frame = None
    truth_stars = {}
    star, psf = ctx["star"], ctx["psf"]
    if star is not None:
        idx, x, y = _ota_stars(e, wcs_header, star["ra"], star["dec"], star["flux"], psf)
        frame = np.zeros((geo.ota_size, geo.ota_size), np.float32)
        for i, xs, ys in zip(idx, x, y):
            psf.render(frame, xs, ys, star["flux"][i])
        inside = (x >= -0.5) & (x < geo.ota_size - 0.5) & (y >= -0.5) & (y < geo.ota_size - 0.5)
        sel = idx[inside]
        truth_stars = {"id": star["id"][sel], "ra": star["ra"][sel], "dec": star["dec"][sel], "x": x[inside],
                       "y": y[inside], "flux_adu": star["flux"][sel], "m_odi": star["m_odi"][sel],
                       "on_cell": cell_of_pixels(geo, x[inside], y[inside]) >= 0,
                       **{b: star["mags"][b][sel] for b in star["mags"]}}

    # --- light: background (x ghost, fringes) and stars, times the flat response --------------------------
    background = ctx["background"]
    ghost = None
    if (background is not None and eff.pupil_ghost and e.filter in effects_mod.PUPIL_GHOST
            and e.obstype in ("OBJECT", "DFLAT", "TFLAT")):
        ox, oy = effects_mod.pupil_ghost_centre(e.layout, e.rotator)
        gcx, gcy = crpix[0] - 1.0 + ox, crpix[1] - 1.0 + oy  # 0-based full-size px in this OTA
        size = geo.ota_size * geo.scale
        near = math.hypot(max(0.0, abs(gcx - size / 2) - size / 2), max(0.0, abs(gcy - size / 2) - size / 2))
        far = max(math.hypot(px - gcx, py - gcy) for px in (0, size) for py in (0, size))
        r1, _, r2, _ = effects_mod.PUPIL_GHOST[e.filter]
        if near < r2 and far > r1:
            ghost = (gcx, gcy)
        info["pupil_ghost"] = {"centre_fullsize_px": [gcx, gcy], "centre_frame_px": [gcx / geo.scale,
                               gcy / geo.scale], "touches_ota": ghost is not None}
    fringe = None
    if (background is not None and eff.fringes and e.filter in effects_mod.FRINGE_AMPLITUDE
            and e.obstype == "OBJECT"):
        fringe = effects_mod.fringe_pattern(serial)
        info["fringe"] = {"amplitude_rel": effects_mod.FRINGE_AMPLITUDE[e.filter],
                          "amplitude_adu": effects_mod.FRINGE_AMPLITUDE[e.filter] * background.level}
    response = None
    if eff.flat_response:
        response = effects_mod.flat_response(serial, geo, crpix, defects=False)
    bg_sum, bg_n = 0.0, 0
    no_sky = set(effects_mod.video_cells(seed, e, ota)) if eff.video_cells else set()
    if eff.broken_cells:
        no_sky |= {_CELL_INDEX[c] for c in instrument.broken_cells(serial, e.mjd)}
    for i, (cx, cy) in enumerate(instrument.CELL_IDS):
        rows, cols = geo.target_region(cx, cy)
        if background is not None:
            fx, fy = sky.focal_plane_axes(crpix, np.arange(cols.start, cols.stop), np.arange(rows.start, rows.stop),
                                          geo.scale)
            signal = background.evaluate(fx, fy)
            if ghost is not None or fringe is not None:
                xf = (np.arange(cols.start, cols.stop) + 0.5) * geo.scale - 0.5
                yf = (np.arange(rows.start, rows.stop) + 0.5) * geo.scale - 0.5
                rel = np.ones(signal.shape, np.float32)
                if ghost is not None:
                    r = np.sqrt(((xf - ghost[0]) ** 2)[None, :] + ((yf - ghost[1]) ** 2)[:, None])
                    rel += effects_mod.pupil_ghost_profile(e.filter, r)
                if fringe is not None:
                    rel += np.float32(effects_mod.FRINGE_AMPLITUDE[e.filter]) * fringe.evaluate(xf, yf)
                signal *= rel
            if response is not None:
                signal *= response[i]
            if i not in no_sky:
                bg_sum += float(signal.sum(dtype=np.float64))
                bg_n += signal.size
            data[i] += signal
        if frame is not None:
            if response is not None:
                data[i] += frame[rows, cols] * response[i]
            else:
                data[i] += frame[rows, cols]
    del response
    if eff.bad_pixels:
        for d in props.defects:
            cellmask[d.cell, d.rows[0]:d.rows[1], d.cols[0]:d.cols[1]] |= bits["BADPIX"]
            if d.kind == "dead":
                data[d.cell, d.rows[0]:d.rows[1], d.cols[0]:d.cols[1]] *= np.float32(d.value)
    data *= np.float32(detector.NOMINAL_GAIN)

    # --- dark current, glow, hot defects ---------------------------------------------------------------------
    if ctx["dark_e"]:
        data += np.float32(ctx["dark_e"])
    if ctx["dark"] and e.exptime > 0:
        if eff.dark_glow:
            for i in range(64):
                data[i] += effects_mod.glow_map(props, geo, i) * np.float32(e.exptime)
        if eff.bad_pixels:
            for d in props.defects:
                if d.kind == "hot":
                    data[d.cell, d.rows[0]:d.rows[1], d.cols[0]:d.cols[1]] += np.float32(d.value * e.exptime)

    # --- persistence of earlier saturation ---------------------------------------------------------------------
    if eff.persistence and eff.saturation:
        applied = []
        for p, t, src in persistence_sources(night, e, ota):
            amp = effects_mod.persistence_amplitude(t)
            if amp <= 0:
                continue
            for cell, col, top in src:
                data[cell, :top, col] += np.float32(amp * detector.NOMINAL_GAIN)
                cellmask[cell, :top, col] |= bits["PERSISTENCE"]
            applied.append({"obsid": p.obsid, "t_after_end_s": t, "amplitude_adu": amp, "columns": int(len(src))})
        info["persistence"] = applied

    # --- cosmic rays -----------------------------------------------------------------------------------------
    if eff.cosmic_rays:
        rng_cr = rng_for(seed, "cosmic-rays", e.obsid, ota)
        cy_y, cx_x, charge, n = effects_mod.cosmic_rays(rng_cr, geo, e.exptime + effects_mod.COSMIC_EXTRA_TIME,
                                                       eff.cosmic_ray_rate)
        cx_of, xo, cy_of, yo = _cell_lookup(geo)
        ok = (cx_of[cx_x] >= 0) & (cy_of[cy_y] >= 0)
        cells = cx_of[cx_x[ok]] * 8 + cy_of[cy_y[ok]]  # CELL_IDS order is cx-major
        rr, cc, q = yo[cy_y[ok]], xo[cx_x[ok]], charge[ok].astype(np.float32)
        np.add.at(data, (cells, rr, cc), q)
        hit = q >= 3 * detector.READ_NOISE_ADU * detector.NOMINAL_GAIN
        cellmask[cells[hit], rr[hit], cc[hit]] |= bits["COSMIC"]
        info["cosmic_rays"] = {"events": n, "pixels": int(hit.sum())}

    # --- readout: noise, full well and bleeding, non-linearity, bias, bad cells, crosstalk, ADC -----------
    rng = rng_for(seed, "noise", e.obsid, ota) if ctx["noise"] else None
    adu = detector.noisy_adu(electrons, gains, rng)
    del electrons, data
    adata = adu[:, :dny, :dnx]
    full_any = np.zeros((64, dny, dnx), bool)
    sources = []
    if eff.saturation:
        for i in range(64):
            cap = props.satlevel[i] - pedestals[i] if ctx["bias"] else props.satlevel[i] - 1500.0
            if eff.nonlinearity:
                cap = effects_mod.nonlinear_forward(cap, props.c2[i], props.c3[i])
            res = effects_mod.bleed_columns(adata[i], cap)
            if res is None:
                continue
            full, own, spilled = res
            full_any[i] = full
            cellmask[i][own] |= bits["SATURATED"]
            cellmask[i][(full | spilled) & ~own] |= bits["BLEED"]
            cols = np.nonzero(full.any(axis=0))[0]
            tops = full.shape[0] - np.argmax(full[::-1, cols], axis=0)
            sources += [(i, int(c), int(t)) for c, t in zip(cols, tops)]
    src = np.array(sources, np.int32).reshape(-1, 3)
    if ctx["standard"]:
        night.saturation_cache[(e.obsid, int(ota))] = src
    if eff.nonlinearity:
        block = np.ascontiguousarray(adata)
        effects_mod.invert_nonlinearity_cells(block, props.c2, props.c3)
        adata[...] = block
    adu += pedestals.astype(np.float32)[:, None, None]
    if eff.bias_structure and ctx["bias"]:
        x0 = geo.overscan_cols[0]
        for i in range(64):
            row, col = effects_mod.bias_structure(props, geo, i)
            adu[i, :, :x0] += row[:, None] + col[None, :]
    adata[full_any] = np.float32(effects_mod.FULL_WELL_READOUT)
    cellmode = ["S"] * 64
    bad_rng = rng_for(seed, "bad-cells", e.obsid, ota)
    if eff.broken_cells:
        for cx, cy in sorted(instrument.broken_cells(serial, e.mjd)):
            i = _CELL_INDEX[(cx, cy)]
            adata[i] = effects_mod.broken_cell_content(bad_rng, geo, pedestals[i])
            cellmask[i] |= bits["CELL"]
    video = effects_mod.video_cells(seed, e, ota) if eff.video_cells else ()
    for i in video:
        cx, cy = instrument.CELL_IDS[i]
        adata[i] = effects_mod.video_cell_content(bad_rng, geo, pedestals[i])
        cellmode[cx + 8 * cy] = "V"
        cellmask[i] |= bits["CELL"]
    overscan = pedestals.copy()
    if eff.crosstalk:
        fwd = effects_mod.crosstalk_fwd()
        effects_mod.apply_crosstalk(adu, fwd)
        for cy in range(8):
            idx = [_CELL_INDEX[(cx, cy)] for cx in range(8)]
            overscan[idx] = fwd[cy].T @ pedestals[idx]
    np.rint(adu, out=adu)
    np.clip(adu, 0.0, 65535.0, out=adu)
    raw = adu.astype(np.uint16)
    del adu

    masks = np.zeros((geo.ota_size, geo.ota_size), np.uint8)
    for i, (cx, cy) in enumerate(instrument.CELL_IDS):
        masks[geo.target_region(cx, cy)] = cellmask[i]
    info["video_cells"] = [f"xy{instrument.CELL_IDS[i][0]}{instrument.CELL_IDS[i][1]}" for i in video]
    info["saturated_columns"] = int(len(src))
    name = f"{e.dirname}.{ota:02d}.fits"
    primary = headers.primary_header(e, ota, filename=name, seed=seed)
    primary["CELLMODE"] = "".join(cellmode)
    return OTARender(
        ota=ota,
        primary=primary,
        cells={cid: raw[i] for i, cid in enumerate(instrument.CELL_IDS)},
        cell_headers=headers.cell_headers(e, ota, gains),
        wcs_header=wcs_header,
        gains=gains,
        pedestals=pedestals,
        background_mean=bg_sum / max(bg_n, 1),
        stars=truth_stars,
        masks=masks,
        overscan=overscan,
        saturation=src,
        info=info,
    )
