"""The final multi-extension FITS of one exposure, assembled from already-opened products (docs/formats.md, 'The final
MEF').

:func:`final_mef` is the composite ``CollectCells`` calls: per-OTA detrended (or focal-plane corrected)
products, the exposure's WCS, photometry and focal-plane products and the options in; the ``HDUList`` out.
It opens no file and knows no Luigi. Layout of the result:

``PRIMARY``
    inherited raw keywords, timing, almanac, filter, gain, sky, focal-plane scales, WCS and photometry
    results, the merged reduction log, the pipeline version, ``-addfitskey`` keys, and the integrity cards
    (``NLOSTOTA``, ``LOSTnn``, ``PERSKIP``).
``OTAxy.SCI``
    float32 in the order given (the solved WCS replaces the canned one when it is valid); soft-binned with
    ``-softbin``; undefined pixels set to the ``-indefval`` / ``-prep4sex`` value.
``OTAxy.MASK``
    with ``-maskext``.
``CAT.WCSREF``, ``CAT.ODI``, ``WCSCAL.CAT``
    with a valid WCS; ``CAT.PHOTCALIB.RAW``, ``CAT.PHOTREF``, ``CAT.PHOTCALIB`` with photometry.
``SKYLEVEL``, ``ASSOCIATIONS``
    the sky boxes used (with RA, DEC) and every file read, per step, with whether the step was applied.

An OTA whose published pixels are mostly undefined (NaN or the fill value) or whose key header values are
not finite is left out and named in ``LOSTnn``, like an OTA whose raw file is bad; the exposure fails only
when more than half of its OTAs are lost that way (then the cause is not one OTA) or an exposure-wide key
value is not finite.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time

from .. import __version__, astrometry, sanity
from ..detrend.background import sky_statistics
from ..detrend.wcs import WCS_CARD_RE
from ..instrument import almanac
from ..photometry.photflat import apply_photflat
from . import mef

__all__ = ["MefOptions", "ExposureProducts", "final_mef", "INHERITED_KEYS", "OTA_KEY_VALUES"]

#: Raw primary keywords moved to the output primary (first OTA wins) and removed from the OTA extensions
#: (EQUINOX stays with each OTA's WCS).
INHERITED_KEYS = ("OBSID", "OBSTYPE", "OBJECT", "FILTER", "FILTERID", "FILTDSCR", "EXPTIME", "EXPMEAS",
                  "DATE-OBS", "TIME-OBS", "MJD-OBS", "TIMESYS", "RA", "DEC", "TARGRA", "TARGDEC", "TELRAOFF",
                  "TELDECOF", "AIRMASS", "ZD", "ROTSTART", "ROTEND", "TELFOCUS", "ADCMODE", "ADCANG1", "ADCANG2",
                  "SHUTOPEN", "SHUTCLOS", "WCSASTRM", "OBSERVER", "PROPID", "LSTHDR", "FLTARM1A",
                  "FLTARM1B", "FLTARM1C", "FLTARM2A", "FLTARM2B", "FLTARM2C", "FLTARM3A", "FLTARM3B",
                  "FLTARM3C", "INSTRUME", "TELESCOP", "SIMULATE", "SIMSEED")

#: Cards deleted from the OTA extensions (docs/reduction-steps.md, 'Assembling the exposure'
#: headers_to_delete_from_otas, plus INHERIT).
_DROP_FROM_OTAS = ("INHERIT", "CELLGAP1", "CELLGAP2", "CNAXIS1", "CNAXIS2", "NAMPS", "NEXTEND", "PRESCAN1",
                   "PRESCAN2", "OVRSCAN1", "OVRSCAN2", "IMNAXIS1", "IMNAXIS2", "EXTEND")

#: Both of the above: no OTA extension keeps these cards.
_NOT_FROM_OTAS = frozenset(INHERITED_KEYS + _DROP_FROM_OTAS)

#: OTA header values that must be finite numbers for the OTA to be published (when present).
OTA_KEY_VALUES = ("GAIN", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2")

#: Primary cards copied from the focal-plane product (besides the sky statistics).
_FOCAL_CARDS = ("FRNG_SCL", "FRNG_STD", "PUPLGFAC")
#: Provenance role -> ASSOCIATIONS step, per exposure product (QuickReduce's step names).
_STEP_NAMES = {"fixwcs": {"refcat": "wcs-reference", "catalogs": "catalog"},
               "photcal": {"refcat": "photcalib-reference", "catalogs": "catalog"},
               "focalplane": {"samples": "focalplane-samples"}}
#: Per-OTA reduction-log values for which a step's files count as applied.
_APPLIED = ("successful", "partial success", "partially failed")
#: Exposure products in the order their files are listed in ASSOCIATIONS.
_PRODUCTS = ("fixwcs", "photcal", "focalplane")


@dataclass(frozen=True)
class MefOptions:
    """The reduction options that shape the final MEF (``podiflow options`` explains each)."""

    softbin: int | None = None
    prep4sex: bool = False
    indefval: float | None = None
    maskext: bool = False
    addfitskey: tuple = ()
    fixwcs: bool = False
    photcalib: bool = False
    autophotflat: bool = False
    nonsidereal: str | None = None
    fringe: bool = False
    pupilghost: bool = False

    @classmethod
    def of(cls, options) -> MefOptions:
        """The final-MEF options of any object with these attributes (e.g. the task's reduction options)."""
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})

    @property
    def binning(self) -> int:
        """The software-binning factor, 1 without ``-softbin``."""
        return int(self.softbin) if self.softbin else 1

    @property
    def fill(self) -> float:
        """The value of undefined pixels (NaN unless ``-indefval`` or ``-prep4sex``)."""
        return mef.undefined_value(prep4sex=self.prep4sex, indefval=self.indefval)


@dataclass
class ExposureProducts:
    """The opened exposure-wide products the final MEF reads (each optional), and where their files came from.

    Attributes
    ----------
    fixwcs, photcal, focalplane, photflat : astropy.io.fits.HDUList or None
        The astrometric solution (``WCSCAL`` in its primary), the photometric calibration, the focal-plane
        fit (``SKYLEVEL`` table, ``FRNG_SCL``...), the photometric flat (``OTAxy.SCI``, ``-autophotflat``).
    provenance : dict
        ``"otas"`` -> one list of ``(role, path)`` per OTA product (in the order of the OTAs), and
        ``"fixwcs"`` / ``"photcal"`` / ``"focalplane"`` -> the list of that product: every file read, inner
        products' inputs first.
    """

    fixwcs: fits.HDUList | None = None
    photcal: fits.HDUList | None = None
    focalplane: fits.HDUList | None = None
    photflat: fits.HDUList | None = None
    provenance: dict = field(default_factory=dict)

    @property
    def valid_wcs(self) -> bool:
        """Whether the astrometric solution is valid (``WCSCAL = T``)."""
        return bool(self.fixwcs is not None and self.fixwcs[0].header.get("WCSCAL", False))


def final_mef(otas, products: ExposureProducts, *, options: MefOptions, log_keys: dict, masks=None, lost=(),
              name: str = "final MEF") -> fits.HDUList:
    """The final MEF of one exposure.

    Parameters
    ----------
    otas : sequence of astropy.io.fits.HDUList
        Per-OTA products in the layout's order: ``PRIMARY``, ``OTAxy.SCI`` (float32, ADU, NaN undefined),
        ``OTAxy.MASK`` (uint16 bits), ``SKYBOXES`` (``X``, ``Y`` 0-based unbinned px, ``INTENSITY`` ADU).
        Image data may be memory-mapped; unchanged pixels are passed through without a copy.
    products : ExposureProducts
        The opened exposure-wide products and the provenance of everything.
    options : MefOptions
        Options that shape the MEF.
    log_keys : dict
        Reduction-log step -> keyword of the per-OTA log (``{"bias": "_BIAS", ...}``), in writing order.
    masks : sequence of numpy.ndarray, optional
        The OTAs' MASK planes (uint16, in the order of ``otas``) for ``-maskext``; default: read from ``otas``
        (a scaled uint16 extension cannot be read from a memory-mapped file: the caller reads it then).
    lost : iterable of (int, str)
        OTAs already left out (bad raw files) and why.
    name : str, optional
        What error messages call the product (e.g. its path).

    Returns
    -------
    astropy.io.fits.HDUList
        Uncompressed; the layout is the module docstring's.

    Raises
    ------
    podisteps.sanity.SanityError
        More than half the OTAs unpublishable, or an exposure-wide key value not finite.
    """
    masks = [None] * len(otas) if masks is None else masks
    rows = products.provenance.get("otas") or [[] for _ in otas]
    parts = [_ota_extensions(h, products, options, m) | {"provenance": r} for h, m, r in zip(otas, masks, rows)]
    samples = {int(p["header"]["OTA"]): mef.check_sample(p["sci"].data) for p in parts}  # read once, checked twice
    problems = {ota: _ota_problem(samples[ota], p["header"], options) for (ota, p) in zip(samples, parts)}
    bad = {ota: why for ota, why in problems.items() if why}
    if len(bad) * 2 > len(parts):  # more than half of them: not one OTA's fault
        raise sanity.SanityError(f"{name}: {len(bad)} of {len(parts)} OTAs cannot be published ("
                                 + "; ".join(f"{o:02d}: {why}" for o, why in sorted(bad.items())) + "): not published")
    hdul = _assemble([p for p in parts if int(p["header"]["OTA"]) not in bad], products, options, log_keys)
    hdul[0].header.extend(mef.integrity_cards(hdul, [*lost, *sorted(bad.items())]))
    values = mef.product_check_inputs(fits.HDUList([hdul[0]]))[1]  # the primary's key values; pixels sampled above
    sanity.check_product(name, {ota: sample for ota, sample in samples.items() if ota not in bad}, values)
    return hdul


def _ota_problem(sample: np.ndarray, hdr: fits.Header, options: MefOptions) -> str:
    """Why one OTA cannot be published ('' if it can): the sample of its pixels as written
    (:func:`podisteps.io.mef.check_sample`), the fill value counting as undefined, and its key header values."""
    return sanity.ota_problem(sample, {k: hdr[k] for k in OTA_KEY_VALUES if k in hdr}, fill=options.fill)


def _ota_extensions(h: fits.HDUList, products: ExposureProducts, options: MefOptions, mask=None) -> dict:
    """One OTA's ``sci`` (and ``mask``) extension, its output ``header`` and its ``SKYBOXES`` extension (read
    only when the sky is measured over the boxes: :func:`_sky_boxes`)."""
    hdr = _ota_header(h[1].header, products.fixwcs if products.valid_wcs else None, products.photcal)
    data = h[1].data
    if products.photflat is not None:  # -autophotflat: 1 everywhere without a zero point, whatever the sky
        data = apply_photflat(data, products.photflat[hdr["EXTNAME"]].data,
                              float(products.photcal[0].header.get("SKYLEVEL", 0.0)))
    part = {"source": h[1].header, "header": hdr, "boxes": h["SKYBOXES"],
            "sci": _image(data, hdr, options.binning, options.fill)}
    if options.maskext:
        mask = np.asarray(h[2].data if mask is None else mask)
        part["mask"] = fits.ImageHDU(mask if options.binning == 1 else mef.softbin_mask(mask, options.binning),
                                     header=fits.Header({"EXTNAME": h[2].header["EXTNAME"]}))
    return part


def _assemble(parts: list, products: ExposureProducts, options: MefOptions, log_keys: dict) -> fits.HDUList:
    """The MEF of the publishable OTAs (``parts`` of :func:`_ota_extensions`, with their ``provenance``)."""
    ph = _primary_header(parts[0]["source"] if parts else fits.Header(), options)
    _merge_ota_cards(ph, [p["header"] for p in parts], log_keys)
    tables = [_table(t, options.binning) for t in _exposure_tables(ph, products)]
    headers = {int(p["header"]["OTA"]): p["header"] for p in parts}
    sky = _skylevel(ph, [(int(p["header"]["OTA"]), p["boxes"]) for p in parts], products.focalplane, headers)
    _exposure_log(ph, options, products)
    ph["SKYNOISE"] = (math.sqrt(8.0 ** 2 + max(ph["SKYLEVEL"], 0.0) * ph["GAIN"]) if ph["GAIN"] > 0 else -1.0,
                      "sky noise sqrt(8^2 + SKYLEVEL*GAIN), e-")
    masks = [p["mask"] for p in parts if "mask" in p]
    return fits.HDUList([fits.PrimaryHDU(header=ph), *[p["sci"] for p in parts], *masks, *tables, sky,
                         _associations(parts, products, ph, log_keys)])


def _merge_ota_cards(ph: fits.Header, headers: list, log_keys: dict) -> None:
    """The merged reduction log and the NGAIN-weighted GAIN of the OTA headers, into ``ph``."""
    for key in log_keys.values():
        ph[key] = (_merge_log([str(h.get(key, "not selected")) for h in headers]), "reduction log")
    gains = [(float(h.get("GAIN", 1.3)), int(h.get("NGAIN", 1))) for h in headers]
    weight = sum(n for _, n in gains)
    ph["GAIN"] = (sum(g * n for g, n in gains) / weight if weight else -1.0, "NGAIN-weighted gain, e-/ADU")
    ph["NGAIN"] = weight


def _exposure_tables(ph: fits.Header, products: ExposureProducts) -> list:
    """The WCS and photometry tables to copy (their primary cards go into ``ph``)."""
    fix, phot = products.fixwcs, products.photcal
    tables = []
    if fix is not None:
        ph.update([c for c in fix[0].header.cards if not c.keyword.startswith("PF")])
        if products.valid_wcs:  # -autophotflat: CAT.ODI with the corrected magnitudes
            tables += [(phot if phot is not None and name in phot else fix)[name]
                       for name in ("CAT.WCSREF", "CAT.ODI", "WCSCAL.CAT")]
    if phot is not None:
        ph.update([c for c in phot[0].header.cards if not c.keyword.startswith("PF")])
        tables += [phot[name] for name in ("CAT.PHOTCALIB.RAW", "CAT.PHOTREF", "CAT.PHOTCALIB") if name in phot]
    return tables


def _merge_log(values: list) -> str:
    """QuickReduce's combination of per-OTA log values: a mix of success and failure is partial."""
    unique = set(values)
    if len(unique) == 1:
        return values[0]
    if {"successful", "failed"} <= unique:
        return "partially failed"
    return "successful" if "successful" in unique else sorted(unique)[0]


def _primary_header(first: fits.Header, options: MefOptions) -> fits.Header:
    """Pipeline version, -addfitskey keys, BINNING, inherited raw keys, timing, filter and almanac."""
    ph = fits.Header()
    ph["PLVER"] = (f"podiflow {__version__}", "pipeline and version")
    ph["PIPELINE"] = ("podiflow", "reduction pipeline")
    ph["PLVERSIO"] = (__version__, "pipeline version")
    for item in options.addfitskey:
        key, value = mef.parse_fits_key(item)
        ph[key] = (value, "added with -addfitskey")
    ph["BINNING"] = (int(first.get("CCDBIN1", 1)), "on-chip binning")
    for key in INHERITED_KEYS:
        if key in first:
            ph[key] = (first[key], first.comments[key])
    _timing(ph)
    ph.update([(k, *v) for k, v in mef.filter_keywords(str(ph.get("FILTER", ""))).items()])
    if "MJD-MID" in ph:
        ph.update([(k, *v) for k, v in almanac.almanac_keywords(ph["MJD-MID"], *_pointing(ph)).items()])
    return ph


def _pointing(ph: fits.Header) -> tuple[float, float]:
    """Header pointing (RA hours, Dec degrees, sexagesimal or numeric) in degrees; NaN if absent."""
    try:
        c = SkyCoord(str(ph["RA"]), str(ph["DEC"]), unit=(u.hourangle, u.deg))
    except (KeyError, ValueError):
        return math.nan, math.nan
    return float(c.ra.deg), float(c.dec.deg)


def _timing(ph: fits.Header) -> None:
    """``DATE-MID, TIME-MID, MJD-MID`` and ``-END`` from MJD-OBS and EXPMEAS (else EXPTIME), ms precision."""
    if "MJD-OBS" not in ph:
        return
    start = float(ph["MJD-OBS"])
    duration = float(ph.get("EXPMEAS", ph.get("EXPTIME", 0.0))) / 86400.0
    for tag, mjd in (("MID", start + duration / 2), ("END", start + duration)):
        iso = Time(mjd, format="mjd", scale="utc").isot
        ph[f"DATE-{tag}"] = (iso[:23], f"UT date at {tag.lower()} of exposure")
        ph[f"TIME-{tag}"] = (iso[11:23], f"UT time at {tag.lower()} of exposure")
        ph[f"MJD-{tag}"] = (mjd, f"MJD at {tag.lower()} of exposure")


def _ota_header(header: fits.Header, fix, phot) -> fits.Header:
    """OTA header without inherited/deleted cards, with the solved WCS and the photometry cards."""
    ota = int(header["OTA"])
    hdr = fits.Header([copy.copy(c) for c in header.cards if c.keyword not in _NOT_FROM_OTAS
                       and not (fix is not None and WCS_CARD_RE.match(c.keyword))])  # one pass, no card removal
    if fix is not None:
        hdr.update(_wcs_cards(fix, ota))
    if phot is not None and f"OTA{ota:02d}.PHOT" in phot:
        hdr.update([c for c in phot[f"OTA{ota:02d}.PHOT"].header.cards if c.keyword.startswith(("FLX", "PHOT"))])
    return hdr


def _wcs_cards(fix: fits.HDUList, ota: int) -> list:
    """The solved WCS and quality cards of one OTA from the astrometry product."""
    hdr = fix[f"OTA{ota:02d}.WCS"].header
    return [c for c in hdr.cards if WCS_CARD_RE.match(c.keyword) or c.keyword in ("CRVAL1", "CRVAL2")
            or c.keyword.startswith(("WCS_", "WCSC"))]


def _image(data: np.ndarray, hdr: fits.Header, binning: int, fill: float) -> fits.ImageHDU:
    """The OTAxy.SCI extension: soft-binned and with undefined pixels set to ``fill`` when asked."""
    if binning > 1:
        data, hdr = mef.softbin_image(data, binning), mef.softbin_header(hdr, binning)
    if not math.isnan(fill):
        data = np.where(np.isfinite(data), data, np.float32(fill)).astype(np.float32)
    return fits.ImageHDU(data, header=hdr)


def _table(hdu: fits.BinTableHDU, binning: int) -> fits.BinTableHDU:
    """An upstream table extension: as it is without ``-softbin`` (written unchanged, so not copied), else a new
    one with its pixel columns divided by the soft-binning factor."""
    if binning == 1:
        return hdu
    out = fits.table_to_hdu(mef.softbin_table(Table(hdu.data), binning))
    out.header.update([c for c in hdu.header.cards if c.keyword not in out.header])
    return out


def _skylevel(ph: fits.Header, boxes: list, focal, headers: dict) -> fits.BinTableHDU:
    """The SKYLEVEL table (with RA, DEC) and primary sky cards: from the focal-plane product, else from
    ``boxes`` (``(OTA, SKYBOXES extension)`` of the published OTAs: :func:`_sky_boxes`)."""
    if focal is not None:
        table = Table(focal["SKYLEVEL"].data)
        stats = {k: focal[0].header[k] for k in sky_statistics(np.array([]))}
        for key in _FOCAL_CARDS:
            ph[key] = (focal[0].header[key], focal[0].header.comments[key])
    else:
        table = _sky_boxes(boxes)
        stats = sky_statistics(np.asarray(table["INTENSITY"]) if len(table) else np.array([]))
        for key in _FOCAL_CARDS:  # no focal-plane correction without the focal-plane product
            ph[key] = (-1.0, "not done (-1)")
    for key, value in stats.items():
        ph[key] = (value, "global sky, ADU")
    hdu = fits.table_to_hdu(_add_radec(table, headers))
    hdu.name = "SKYLEVEL"
    for key, value in stats.items():
        hdu.header[key] = (value, "sky statistics, ADU")
    return hdu


def _sky_boxes(boxes: list) -> Table:
    """The rows of the ``(OTA, SKYBOXES extension)`` in ``boxes`` with an ``OTA`` column (int16); empty if none."""
    tables = [Table(hdu.data) for _, hdu in boxes]
    for (ota, _), table in zip(boxes, tables):
        table["OTA"] = np.full(len(table), ota, np.int16)
    return vstack([t for t in tables if len(t)]) if any(len(t) for t in tables) else Table()


def _add_radec(table: Table, headers: dict) -> Table:
    """Add ``RA``, ``DEC`` (deg) of the 0-based box centres ``X``, ``Y`` with each row's OTA header WCS."""
    ra, dec = np.full(len(table), np.nan), np.full(len(table), np.nan)
    otas = np.asarray(table["OTA"]) if len(table) else np.array([], int)
    for ota in np.unique(otas):
        rows = otas == ota
        if int(ota) in headers:
            ra[rows], dec[rows] = astrometry.header_wcs(headers[int(ota)]).all_pix2world(
                np.asarray(table["X"], float)[rows], np.asarray(table["Y"], float)[rows], 0)
    table["RA"], table["DEC"] = ra, dec
    return table


def _exposure_log(ph: fits.Header, options: MefOptions, products: ExposureProducts) -> None:
    """Exposure-level reduction-log keywords (docs/formats.md, 'Reduction log')."""

    def state(selected: bool, ok: bool) -> str:
        return ("successful" if ok else "failed") if selected else "not selected"

    zp = float(ph.get("PHOTZP", -99.0))
    log = {"_WCSCAL": state(bool(options.fixwcs or options.photcalib), products.valid_wcs),
           "_PHOTCAL": state(bool(options.photcalib or options.autophotflat),
                             products.photcal is not None and 0 < zp < 50),
           "_AUTOFOT": state(bool(options.autophotflat), int(ph.get("PHFSTARS", 0)) > 0),
           "_NONSDRL": state(bool(options.nonsidereal), "NSIDPMRA" in ph),
           "_FRINGE": state(bool(options.fringe), float(ph.get("FRNG_SCL", -1)) > 0),
           "_PGHOST": state(bool(options.pupilghost), float(ph.get("PUPLGFAC", -1)) > 0),
           "_SOFTBIN": state(bool(options.softbin), True)}
    for key, value in log.items():
        ph[key] = (value, "reduction log")


def _associations(parts: list, products: ExposureProducts, ph: fits.Header, log_keys: dict) -> fits.BinTableHDU:
    """Every file read, per step, with whether its step was applied (the reduction log says)."""
    rows = []
    for part in parts:
        for role, path in part["provenance"]:
            key = log_keys.get(role)
            rows.append((role, path, key is None or str(part["source"].get(key, "")) in _APPLIED))
    applied = {"fixwcs": products.valid_wcs, "photcal": ph.get("_PHOTCAL") == "successful", "focalplane": True}
    for name in _PRODUCTS:
        if getattr(products, name) is not None:
            rows += [(_STEP_NAMES[name].get(role, role), path, applied[name])
                     for role, path in products.provenance.get(name, ())]
    return mef.association_table(rows)
