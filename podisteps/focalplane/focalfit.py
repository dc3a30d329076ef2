"""The focal-plane composites (docs/reduction-steps.md, 'Subtracting the focal-plane templates', 'Global sky level',
'Global fringe scale' and 'Global pupil-ghost scale'): per-OTA samples, the exposure-wide fit, the corrected OTA. Pure:
arrays, headers, tables and already-read templates in; results out; no paths, no Luigi.

- :func:`ota_samples`: the small per-OTA measurements the exposure-wide fit reads (fringe amplitudes, 64-px
  block medians for the ghost fit, sky boxes); :func:`exposure_samples` gathers every OTA's into the one
  ``FocalPlaneSamples`` product of an exposure, :func:`read_exposure_samples` reads it back for the fit.
- :func:`fit_focal_plane`: the exposure's fringe scale, pupil-ghost centre and scale and global sky, from
  those samples only (never from images), as the ``FocalPlaneCorrections`` product.
- :func:`correct_ota`: one OTA minus fringe template x ``FRNG_SCL`` and ghost template x ``PUPLGFAC``.

The departures from QuickReduce (sky over the filter's photometry OTAs after the corrections, the ghost fit
on block medians with a sky plane and a pooled centre fit) are described in ``workflows/focalplane.py`` and
docs/focalplane.md.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack

from .. import instrument
from ..detrend.background import sky_statistics
from ..errors import PodiflowError
from ..stats import block_median
from . import fringe, pupilghost

__all__ = ["NOT_DONE", "PG_BLOCK_PX", "fringe_samples", "ota_samples", "exposure_samples", "read_exposure_samples",
           "fit_focal_plane", "ghost_applies", "correct_ota"]

#: Written for a scale that was not fitted (QuickReduce's convention).
NOT_DONE = -1.0
#: Block side of the binned sky for the ghost fit, full-size bin1 px.
PG_BLOCK_PX = 64


def fringe_samples(data: np.ndarray, template, vectors, boxes: Table, *, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-vector fringe amplitudes of one OTA and the template's medians at its sky boxes.

    Parameters
    ----------
    data : numpy.ndarray
        The detrended OTA, ADU, shape ``(ny, nx)``.
    template : numpy.ndarray or None
        The fringe template's OTA (same shape), or None when the template has none for this OTA.
    vectors : list or None
        Fringe vectors of the OTA (:func:`podisteps.focalplane.fringe.fringe_vectors_from_regions`), or None.
    boxes : astropy.table.Table
        The sky boxes (``X``, ``Y`` 0-based frame px).
    scale : int
        Full-size bin1 px per frame px.

    Returns
    -------
    rows : numpy.ndarray
        ``(n_vectors, 7)``, QuickReduce's columns (:data:`podisteps.focalplane.fringe.FRINGE_COLUMNS`); empty without
        vectors or a usable template.
    at_boxes : numpy.ndarray
        The template at each sky box, ``(n_boxes,)`` (zeros without a usable template).
    """
    if template is None or template.shape != data.shape:
        return np.empty((0, len(fringe.FRINGE_COLUMNS))), np.zeros(len(boxes))
    rows = np.empty((0, len(fringe.FRINGE_COLUMNS)))
    if vectors is not None:
        rows = fringe.fringe_amplitudes(data, template, vectors, scale=scale)
    half = max(4, 60 // scale) // 2  # the DetrendOTA sky box
    at_boxes = fringe.box_medians(template, np.asarray(boxes["X"], float), np.asarray(boxes["Y"], float), half)
    return rows, np.nan_to_num(at_boxes)


def ota_samples(data: np.ndarray | None, header: fits.Header, boxes: Table, *, ota: int, scale: int, fringe_rows=None,
                pupilghost_bins: bool = False) -> fits.HDUList:
    """The focal-plane samples of one OTA.

    Parameters
    ----------
    data : numpy.ndarray or None
        The detrended OTA, float32 ADU, shape ``(ny, nx)``; read only with ``pupilghost_bins`` (may be None without).
    header : astropy.io.fits.Header
        Its header (``CRPIX1/2`` locate the optical axis; ``ROTSTART``, ``CELLMODE``, ``PGCNTR_X/Y``).
    boxes : astropy.table.Table
        Its sky boxes; gets an ``FRNG_T`` column with ``fringe_rows``.
    ota : int
        OTA number.
    scale : int
        Full-size bin1 px per frame px.
    fringe_rows : tuple of numpy.ndarray, optional
        ``(rows, at_boxes)`` of :func:`fringe_samples` when a fringe template is used.
    pupilghost_bins : bool, optional
        Add the 64-px block medians of the ghost fit.

    Returns
    -------
    astropy.io.fits.HDUList
        ``PRIMARY`` (``OTA, SCALE, AXIS_X/Y, ROTSTART, GUIDEOTA`` [``PGCNTR_X/Y``]), [``FRINGE``],
        [``PGBINS``: ``X, Y, SKY``], ``SKYBOXES``.
    """
    primary = fits.PrimaryHDU()
    ph = primary.header
    ph["OTA"] = ota
    ph["SCALE"] = (scale, "full-size bin1 px per px")
    ph["AXIS_X"] = (float(header.get("CRPIX1", math.nan)) - 1.0, "optical axis x, 0-based px")
    ph["AXIS_Y"] = (float(header.get("CRPIX2", math.nan)) - 1.0, "optical axis y, 0-based px")
    ph["ROTSTART"] = float(header.get("ROTSTART", 0.0))
    ph["GUIDEOTA"] = (instrument.is_guide_ota(str(header.get("CELLMODE", ""))), "OTA has video cells")
    for key in ("PGCNTR_X", "PGCNTR_Y"):
        if key in header:
            ph[key] = (float(header[key]), "ghost centre from the flat, px")
    hdus = [primary]
    if fringe_rows is not None:
        rows, boxes["FRNG_T"] = fringe_rows
        hdus.append(fits.BinTableHDU(Table(rows, names=fringe.FRINGE_COLUMNS), name="FRINGE"))
    if pupilghost_bins:
        values, x, y = block_median(data, max(1, PG_BLOCK_PX // scale))
        hdus.append(fits.BinTableHDU(Table([x, y, values], names=("X", "Y", "SKY")), name="PGBINS"))
    hdus.append(fits.BinTableHDU(boxes, name="SKYBOXES"))
    return fits.HDUList(hdus)


def exposure_samples(per_ota: dict) -> fits.HDUList:
    """The samples of every OTA of an exposure in one MEF (the ``FocalPlaneSamples`` layout).

    Parameters
    ----------
    per_ota : dict
        ``OTA -> HDUList`` of :func:`ota_samples`, in the exposure's OTA order (kept in the file; changed in place:
        its table extensions are renamed and moved).

    Returns
    -------
    astropy.io.fits.HDUList
        An empty ``PRIMARY`` (for the provenance), then per OTA ``OTAnn.SKYBOXES`` carrying the cards of that
        OTA's primary (``OTA, SCALE, AXIS_X/Y, ROTSTART, GUIDEOTA`` [``PGCNTR_X/Y``]), [``OTAnn.FRINGE``],
        [``OTAnn.PGBINS``].
    """
    hdus = [fits.PrimaryHDU()]
    for ota, hdul in per_ota.items():
        tables = sorted(hdul[1:], key=lambda hdu: hdu.name != "SKYBOXES")
        tables[0].header.extend(hdul[0].header.copy(strip=True).cards)
        for hdu in tables:
            hdu.name = f"OTA{ota:02d}.{hdu.name}"
        hdus += tables
    return fits.HDUList(hdus)


def read_exposure_samples(hdul: fits.HDUList) -> dict:
    """The samples of :func:`exposure_samples` as :func:`fit_focal_plane` takes them.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        An opened ``FocalPlaneSamples`` product.

    Returns
    -------
    dict
        ``OTA -> {"PRIMARY": Header, "SKYBOXES": Table, ["FRINGE": Table], ["PGBINS": Table]}`` in the file's OTA
        order; the header is the ``OTAnn.SKYBOXES`` one, with the OTA's cards.

    Raises
    ------
    podisteps.errors.PodiflowError
        If an extension is not named ``OTAnn.<table>`` (not this layout), naming the file.
    """
    samples: dict = {}
    for hdu in hdul[1:]:
        ota, _, kind = hdu.name.partition(".")
        if not (len(ota) == 5 and ota.startswith("OTA") and ota[3:].isdigit() and kind):
            raise PodiflowError(f"{hdul.filename()}: extension {hdu.name!r} is not OTAnn.<table>: not a "
                                "per-exposure FocalPlaneSamples file")
        entry = samples.setdefault(int(ota[3:]), {})
        entry[kind] = Table(hdu.data)
        if kind == "SKYBOXES":
            entry["PRIMARY"] = hdu.header.copy()
    return samples


def fit_focal_plane(samples: dict, *, ghost_template=None, layout: str, sky_otas,
                    centre_subsample: int) -> fits.HDUList:
    """The exposure-wide fringe scale, pupil-ghost fit and global sky.

    Parameters
    ----------
    samples : dict
        ``OTA -> {extension name: Table, "PRIMARY": Header}`` of :func:`ota_samples` (every OTA).
    ghost_template : object, optional
        The pupil-ghost template at the data's scale (``combined``, ``otas``, ``rotangle``, ``profile_r``,
        ``profile_v``: ``podisteps.focalplane.pupilghost.read_pupilghost_template``); None: no ghost fit.
    layout : str
        The focal-plane layout's name (the ghost centre's first guess).
    sky_otas : iterable of int
        The filter's photometry OTAs, over which the global sky is measured.
    centre_subsample : int
        Every n-th block median used in the ghost-centre search.

    Returns
    -------
    astropy.io.fits.HDUList
        ``PRIMARY`` (``FRNG_SCL, FRNG_STD, FRNG_NV, PUPLGFAC`` [``PGBGRND, PGOFFS_X/Y``], the sky statistics;
        ``-1``: not done), ``SKYLEVEL`` (``OTA, X, Y, INTENSITY, CORRECTED``), [``PGCENTRE``].
    """
    primary = fits.PrimaryHDU()
    ph = primary.header
    frng_scl, frng_std, nvec = _fringe_scale(samples)
    ph["FRNG_SCL"] = (frng_scl, "fringe scale, ADU (-1: not done)")
    ph["FRNG_STD"] = (frng_std, "std of the clipped vector scales")
    ph["FRNG_NV"] = (nvec, "fringe vectors measured")
    centres, ghost_at_boxes = {}, {}
    if ghost_template is not None:
        factor, background, offset, centres, ghost_at_boxes = _ghost(samples, ghost_template, layout,
                                                                     centre_subsample)
        ph["PUPLGFAC"] = (factor, "pupil-ghost scale, ADU (-1: not done)")
        ph["PGBGRND"] = (background, "background of the ghost fit, ADU")
        ph["PGOFFS_X"] = (offset[0], "ghost centre - optical axis, x px")
        ph["PGOFFS_Y"] = (offset[1], "ghost centre - optical axis, y px")
    else:
        ph["PUPLGFAC"] = (NOT_DONE, "pupil-ghost scale (-1: not done)")
    hdus = [primary, _sky(ph, samples, ghost_at_boxes, sky_otas)]
    if centres:
        hdus.append(fits.BinTableHDU(Table(rows=[(o, c[0], c[1]) for o, c in sorted(centres.items())],
                                           names=("OTA", "PGCNTR_X", "PGCNTR_Y"), dtype=("i2", "f8", "f8")),
                                     name="PGCENTRE"))
    return fits.HDUList(hdus)


def _fringe_scale(samples: dict) -> tuple[float, float, int]:
    """Fringe scale, its scatter (ADU) and the number of vectors, over the science OTAs' samples."""
    rows = [np.asarray(s["FRINGE"].as_array().tolist(), float).reshape(-1, len(fringe.FRINGE_COLUMNS))
            for s in samples.values() if "FRINGE" in s and not s["PRIMARY"]["GUIDEOTA"]]
    if not rows:
        return NOT_DONE, NOT_DONE, 0
    scale, std = fringe.fringe_scale(rows)
    n = sum(len(r) for r in rows)
    return (scale, std, n) if math.isfinite(scale) else (NOT_DONE, NOT_DONE, n)


def _ghost_centres(ghost: dict, template, layout: str, centre_subsample: int) -> tuple[tuple, dict]:
    """Offset of the ghost centre from the optical axis (NaN when every ghost OTA has the flat's centre) and
    the centre per ghost OTA, frame px."""
    axes = {o: (s["PRIMARY"]["AXIS_X"], s["PRIMARY"]["AXIS_Y"]) for o, s in ghost.items()}
    if all("PGCNTR_X" in s["PRIMARY"] for s in ghost.values()):
        return (math.nan, math.nan), {o: (s["PRIMARY"]["PGCNTR_X"], s["PRIMARY"]["PGCNTR_Y"]) for o, s in ghost.items()}
    first = next(iter(ghost.values()))["PRIMARY"]
    rot, scale = float(first["ROTSTART"]), int(first["SCALE"])
    pooled = [(np.asarray(s["PGBINS"]["SKY"]), np.asarray(s["PGBINS"]["X"]) - axes[o][0],
               np.asarray(s["PGBINS"]["Y"]) - axes[o][1]) for o, s in ghost.items()]
    values, x, y = (np.concatenate(a) for a in zip(*pooled))
    sub = slice(None, None, centre_subsample)
    offset = pupilghost.fit_ghost_centre(values[sub], x[sub], y[sub], template.profile_r, template.profile_v,
                                         guess=pupilghost.centre_guess(layout, rot, scale=scale),
                                         search_px=pupilghost.CENTRE_SEARCH / scale)
    return offset, {o: (axes[o][0] + offset[0], axes[o][1] + offset[1]) for o in ghost}


def _ghost(samples: dict, template, layout: str, centre_subsample: int):
    """Scale, background, centre offset, centres and the template at the sky boxes of the ghost OTAs."""
    ghost = {o: s for o, s in samples.items() if o in template.otas and "PGBINS" in s}
    if not ghost:
        return NOT_DONE, NOT_DONE, (math.nan, math.nan), {}, {}
    offset, centres = _ghost_centres(ghost, template, layout, centre_subsample)
    angle = float(next(iter(ghost.values()))["PRIMARY"]["ROTSTART"]) - template.rotangle

    def at(ota, x, y):
        return pupilghost.template_values(template.combined, np.asarray(x, float), np.asarray(y, float),
                                          centres[ota], angle=angle)

    rows = [np.column_stack([np.asarray(s["PGBINS"]["X"]) - s["PRIMARY"]["AXIS_X"],
                             np.asarray(s["PGBINS"]["Y"]) - s["PRIMARY"]["AXIS_Y"],
                             np.asarray(s["PGBINS"]["SKY"]), at(o, s["PGBINS"]["X"], s["PGBINS"]["Y"])])
            for o, s in ghost.items()]
    factor, background = pupilghost.fit_pupilghost_scale(rows)
    if not math.isfinite(factor):
        factor = background = NOT_DONE
    at_boxes = {o: at(o, s["SKYBOXES"]["X"], s["SKYBOXES"]["Y"]) for o, s in ghost.items()}
    return factor, background, offset, centres, at_boxes


def _sky(ph: fits.Header, samples: dict, ghost_at_boxes: dict, sky_otas) -> fits.BinTableHDU:
    """Global sky over ``sky_otas`` (guide OTAs left out), boxes corrected for fringe and ghost
    (docs/reduction-steps.md, 'Global sky level')."""
    frng = max(ph["FRNG_SCL"], 0.0)
    ghost = max(ph["PUPLGFAC"], 0.0)
    tables = []
    for ota in sky_otas:
        s = samples.get(ota)
        if s is None or s["PRIMARY"]["GUIDEOTA"] or not len(s["SKYBOXES"]):
            continue
        boxes = s["SKYBOXES"]
        corrected = np.asarray(boxes["INTENSITY"], float)
        if "FRNG_T" in boxes.colnames:
            corrected = corrected - frng * np.asarray(boxes["FRNG_T"], float)
        if ota in ghost_at_boxes:
            corrected = corrected - ghost * ghost_at_boxes[ota]
        tables.append(Table({"OTA": np.full(len(boxes), ota, np.int16), "X": boxes["X"], "Y": boxes["Y"],
                             "INTENSITY": boxes["INTENSITY"], "CORRECTED": corrected.astype(np.float32)}))
    table = vstack(tables) if tables else Table(names=("OTA", "X", "Y", "INTENSITY", "CORRECTED"))
    stats = sky_statistics(np.asarray(table["CORRECTED"], float))
    for key, value in stats.items():
        ph[key] = (value, "global sky after fringe and ghost, ADU")
    hdu = fits.table_to_hdu(table)
    hdu.name = "SKYLEVEL"
    for key, value in stats.items():
        hdu.header[key] = (value, "sky statistics, ADU")
    return hdu


def ghost_applies(fit: fits.Header, centres: dict, ota: int) -> bool:
    """Whether the ghost is subtracted from ``ota``: a fitted scale and a centre for that OTA."""
    return fit["PUPLGFAC"] > 0 and ota in centres


def correct_ota(sci: np.ndarray, header: fits.Header, fit: fits.Header, centres: dict, *, ota: int,
                fringe_template=None, ghost_template=None) -> tuple[np.ndarray, fits.Header, list]:
    """One OTA minus the fitted fringe and ghost (docs/reduction-steps.md, 'Subtracting the focal-plane templates').

    Parameters
    ----------
    sci : numpy.ndarray
        The detrended OTA, float32 ADU, ``(ny, nx)``; changed in place.
    header : astropy.io.fits.Header
        Its header (a copy gets the ``FRNG_SCL``, ``PUPLGFAC``, ``PGAFCTD`` [``PGCNTR_X/Y``] cards).
    fit : astropy.io.fits.Header
        The exposure's fit (:func:`fit_focal_plane` primary).
    centres : dict
        ``OTA -> (x, y)`` ghost centre, frame px (its ``PGCENTRE`` table).
    ota : int
        OTA number.
    fringe_template : numpy.ndarray, optional
        The fringe template's OTA, same shape; None: no fringe template for this OTA.
    ghost_template : object, optional
        The pupil-ghost template at the data's scale; None: none (only used when :func:`ghost_applies`).

    Returns
    -------
    sci : numpy.ndarray
    header : astropy.io.fits.Header
    applied : list of str
        ``"fringe"`` and/or ``"pupilghost"``: the templates subtracted.
    """
    header, applied = header.copy(), []
    if fringe_template is not None and fit["FRNG_SCL"] > 0:
        sci -= np.nan_to_num(fringe_template.astype(np.float32)) * np.float32(fit["FRNG_SCL"])
        applied.append("fringe")
    header["FRNG_SCL"] = (fit["FRNG_SCL"], "fringe scale subtracted (-1: none)")
    header["PGAFCTD"] = (False, "pupil ghost subtracted")
    if ghost_template is not None and ghost_applies(fit, centres, ota):
        placed = pupilghost.place_template(ghost_template.combined, sci.shape, centres[ota],
                                           angle=float(header.get("ROTSTART", 0.0)) - ghost_template.rotangle)
        sci -= placed * np.float32(fit["PUPLGFAC"])
        header["PGAFCTD"] = True
        header["PGCNTR_X"], header["PGCNTR_Y"] = (centres[ota][0], "ghost centre x, px"), (
            centres[ota][1], "ghost centre y, px")
        applied.append("pupilghost")
    header["PUPLGFAC"] = (fit["PUPLGFAC"], "pupil-ghost scale subtracted (-1: none)")
    return sci, header, applied
