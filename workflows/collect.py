"""``CollectCells(obsid)``: the final multi-extension FITS of one exposure (QUICKREDUCE_SPEC.md section 4.10).

Layout: ``PRIMARY`` (inherited raw keywords, timing, almanac, filter, gain, sky, focal-plane scales, WCS and
photometry results, reduction log, pipeline version, ``-addfitskey`` keys); ``OTAxy.SCI`` float32 in the
layout's order (the astrometric solution replaces the canned WCS when it is valid); ``OTAxy.MASK`` with
``-maskext``; ``CAT.WCSREF``, ``CAT.ODI``, ``WCSCAL.CAT`` with a valid WCS; ``CAT.PHOTCALIB.RAW`` with
``-autophotflat``; ``CAT.PHOTREF``, ``CAT.PHOTCALIB`` with photometry; ``SKYLEVEL``; ``ASSOCIATIONS`` (every
file used, per step, and whether the step was applied).

With ``-autophotflat`` (which implies ``-photcalib``) the OTA pixels are divided by the exposure's ``PhotFlat``
around the sky level, ``(data - SKYLEVEL) / pf + SKYLEVEL`` (``SKYLEVEL`` of the photometry product), and
``CAT.ODI`` is the catalogue with the magnitudes corrected the same way (from ``AutoPhotCalib``).

The sky level, fringe and pupil-ghost scales come from ``FocalPlaneCorrections`` (spec section 4.2), except
for an OTA subset without focal-plane corrections, where the sky is measured over the reduced OTAs' boxes
(FocalPlaneCorrections would need every OTA detrended). ``SKYLEVEL`` X, Y stay 0-based unbinned OTA
pixels under ``-softbin`` (RA, DEC locate the boxes). Image data are streamed from the memory-mapped
checkpoints when nothing changes them, so an exposure never sits in memory whole.
"""

from __future__ import annotations

import hashlib
import math
from contextlib import ExitStack, contextmanager
from pathlib import Path

import luigi
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time

from podisteps import __version__, almanac, astrometry, instrument, mef, sanity
from podisteps.atomic import write_text_atomic
from podisteps.photflat import apply_photflat
from podisteps.background import sky_statistics
from podisteps.wcs import WCS_CARD_RE

from .astrometry import FixWCS, _table_hdu
from .base import FitsTarget, PodiTask, options_param, provenance_cards
from .detrend import REDUCTION_LOG_KEYS
from .saturation import exposure_record
from .focalplane import FOCAL_FAMILIES, FocalPlaneCorrections, image_task
from .paths import checkpoint_path, night_of, out_root
from .photometry import FAMILIES as PHOTCAL_FAMILIES
from .photometry import RadialZP, photometry_task

__all__ = ["CollectCells", "INHERITED_KEYS", "FIXWCS_FAMILIES"]

#: Raw primary keywords moved to the output primary (first OTA wins) and removed from the OTA extensions
#: (EQUINOX stays with each OTA's WCS).
INHERITED_KEYS = ("OBSID", "OBSTYPE", "OBJECT", "FILTER", "FILTERID", "FILTDSCR", "EXPTIME", "EXPMEAS",
                  "DATE-OBS", "TIME-OBS", "MJD-OBS", "TIMESYS", "RA", "DEC", "TARGRA", "TARGDEC", "TELRAOFF",
                  "TELDECOF", "AIRMASS", "ZD", "ROTSTART", "ROTEND", "TELFOCUS", "ADCMODE", "ADCANG1", "ADCANG2",
                  "SHUTOPEN", "SHUTCLOS", "WCSASTRM", "OBSERVER", "PROPID", "LSTHDR", "FLTARM1A",
                  "FLTARM1B", "FLTARM1C", "FLTARM2A", "FLTARM2B", "FLTARM2C", "FLTARM3A", "FLTARM3B",
                  "FLTARM3C", "INSTRUME", "TELESCOP", "SIMULATE", "SIMSEED")

#: Cards deleted from the OTA extensions (spec section 4.5 headers_to_delete_from_otas, plus INHERIT).
_DROP_FROM_OTAS = ("INHERIT", "CELLGAP1", "CELLGAP2", "CNAXIS1", "CNAXIS2", "NAMPS", "NEXTEND", "PRESCAN1",
                   "PRESCAN2", "OVRSCAN1", "OVRSCAN2", "IMNAXIS1", "IMNAXIS2", "EXTEND")

#: Primary cards copied from FocalPlaneCorrections (besides the sky statistics).
_FOCAL_CARDS = ("FRNG_SCL", "FRNG_STD", "PUPLGFAC")

#: Option families of the FixWCS product CollectCells reads without photometry.
FIXWCS_FAMILIES = [f for f in PHOTCAL_FAMILIES if f != "PhotCalib"]

#: Provenance roles that may be podiflow products whose own inputs belong in ASSOCIATIONS.
_PRODUCT_ROLES = ("detrended", "refcat", "fixwcs")
#: Provenance role -> ASSOCIATIONS step, per upstream product (QuickReduce's step names).
_STEP_NAMES = {"fixwcs": {"refcat": "wcs-reference", "catalogs": "catalog"},
               "photcal": {"refcat": "photcalib-reference", "catalogs": "catalog"},
               "focalplane": {"samples": "focalplane-samples"}}
_APPLIED = ("successful", "partial success", "partially failed")


def _merge_log(values: list) -> str:
    """QuickReduce's combination of per-OTA log values: a mix of success and failure is partial."""
    unique = set(values)
    if len(unique) == 1:
        return values[0]
    if {"successful", "failed"} <= unique:
        return "partially failed"
    return "successful" if "successful" in unique else sorted(unique)[0]


def _pointing(ph: fits.Header) -> tuple[float, float]:
    """Header pointing (RA hours, Dec degrees, sexagesimal or numeric) in degrees; NaN if absent."""
    try:
        c = SkyCoord(str(ph["RA"]), str(ph["DEC"]), unit=(u.hourangle, u.deg))
    except (KeyError, ValueError):
        return math.nan, math.nan
    return float(c.ra.deg), float(c.dec.deg)


def _provenance(header: fits.Header) -> list:
    """``(role, path)`` of every ``PFINnnn`` card, and of the inputs of those that are podiflow products
    (roles in ``_PRODUCT_ROLES`` whose file has a ``PFTASK`` card), inner ones first."""
    rows = []
    for key in [k for k in header if k.startswith("PFIN")]:
        role, _, path = str(header[key]).partition(":")
        if role in _PRODUCT_ROLES:
            inner = fits.getheader(path)
            rows += _provenance(inner) if "PFTASK" in inner else []
        rows.append((role, path))
    return rows


class CollectCells(PodiTask):
    """The final MEF of one exposure, at ``output_path`` or ``<out>/<night>/<obsid>/<obsid>.fits``."""

    obsid = luigi.Parameter()
    output_path = luigi.Parameter(default="", significant=False,
                                  description="where to write the MEF (default: the out_dir tree)")
    stage = "collect"

    def otas(self) -> tuple:
        """The OTAs reduced, in the layout's order, after -centralonly/-selectota/-skipota/-singleota."""
        rec = exposure_record(self.obsid)
        opts = self.reduction_options
        layout = instrument.layout_for_mjd(rec.mjd)
        otas = layout.ota_list("central") if opts.centralonly else layout.otas
        otas = [o for o in otas if o in rec.otas and o not in layout.blocked_otas(rec.filter)]
        if opts.selectota:
            otas = [o for o in otas if o in {int(v) for v in opts.selectota}]
        otas = [o for o in otas if o not in {int(v) for v in opts.skipota}]
        if opts.singleota is not None:
            otas = [o for o in otas if o == opts.singleota]
        return tuple(otas)

    def _focal_sky(self) -> bool:
        """Whether the sky comes from FocalPlaneCorrections (all OTAs reduced, or a correction is on)."""
        opts = self.reduction_options
        return bool(opts.fringe or opts.pupilghost or set(self.otas()) >= set(exposure_record(self.obsid).otas))

    def requires(self):
        opts = self.reduction_options
        req = {"otas": {ota: image_task(self.obsid, ota, opts) for ota in self.otas()}}
        if self._focal_sky():
            req["focalplane"] = FocalPlaneCorrections(obsid=self.obsid, options=options_param(opts, FOCAL_FAMILIES))
        if opts.photcalib or opts.autophotflat:  # the astrometry PhotCalib used, so that it is made once
            req["photcal"] = photometry_task(self.obsid, opts)  # RadialZP with -fitradialZP
            calib = req["photcal"].requires() if isinstance(req["photcal"], RadialZP) else req["photcal"]
            req["fixwcs"] = next(t for t in luigi.task.flatten(calib.requires()) if isinstance(t, FixWCS))
            if opts.autophotflat:
                req["photflat"] = calib.requires()["photflat"]
        elif opts.fixwcs:
            req["fixwcs"] = FixWCS(obsid=self.obsid, options=options_param(opts, FIXWCS_FAMILIES))
        return req

    def output(self):
        if self.output_path:
            return FitsTarget(self.output_path)
        return FitsTarget(str(out_root() / night_of(self.obsid) / self.obsid / f"{self.obsid}.fits"))

    def identity_record(self) -> Path:
        """``<work>/<night>/<obsid>/collect/<obsid>.collect.<identity>.<where>.done``, written after the MEF.

        The final MEF's name carries no identity, so this record says which identity the file at
        ``output().path`` (``where``: a short hash of that path) was made with.
        """
        where = hashlib.sha1(self.output().path.encode()).hexdigest()[:8]
        return checkpoint_path(self.obsid, self.stage, f"{self.identity}.{where}", suffix=".done")

    def complete(self):
        """The MEF exists and was made with this identity; one made from other inputs or options (say with a
        master borrowed from another night before the night's own was complete) is superseded and rebuilt."""
        return self.output().exists() and self.identity_record().exists()

    @contextmanager
    def opened_inputs(self):
        """Yield ``(opened OTA products, {"fixwcs"|"photcal"|"focalplane": HDUList})``, closed afterwards."""
        inputs = self.input()
        with ExitStack() as stack:
            opened = [stack.enter_context(fits.open(t.path, memmap=True)) for t in inputs["otas"].values()]
            extra = {k: stack.enter_context(fits.open(inputs[k].path))
                     for k in ("fixwcs", "photcal", "focalplane") if k in inputs}
            yield opened, extra

    def build_hdulist(self, opened, extra) -> fits.HDUList:
        """The final MEF (uncompressed, data possibly memory-mapped from ``opened``) with provenance cards."""
        hdul = self._assemble(opened, extra)
        hdul[0].header.extend(mef.integrity_cards(hdul, exposure_record(self.obsid).bad_otas))
        sanity.check_product(self.output().path, *mef.product_check_inputs(hdul))
        used = {"otas": [h.filename() for h in opened], **{k: h.filename() for k, h in extra.items()}}
        if "photflat" in self.input():
            used["photflat"] = self.input()["photflat"].path
        for key, value, comment in provenance_cards(self, used):
            hdul[0].header[key] = (value, comment)
        return hdul

    def run(self):
        with self.opened_inputs() as (opened, extra):
            self.progress(10, f"{self.obsid}: assembling {len(opened)} OTAs")
            hdul = self.build_hdulist(opened, extra)
            self.progress(60, f"{self.obsid}: writing {self.output().path}")
            self.output().write_hdulist(self.for_writing(hdul))
        record = self.identity_record()
        record.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.output().path + "\n", record)

    def for_writing(self, hdul: fits.HDUList) -> fits.HDUList:
        """``hdul`` as written: image extensions Rice-compressed with ``-fpack``."""
        if not self.reduction_options.fpack:
            return hdul
        return fits.HDUList([mef.compress_hdu(h) if isinstance(h, fits.ImageHDU) else h for h in hdul])

    # ------------------------------------------------------------------------------------------------

    def _assemble(self, opened, extra) -> fits.HDUList:
        opts = self.reduction_options
        fix, phot = extra.get("fixwcs"), extra.get("photcal")
        valid_wcs = bool(fix is not None and fix[0].header.get("WCSCAL", False))
        ph = self._primary_header(opened[0][1].header)
        binning = int(opts.softbin) if opts.softbin else 1
        fill = mef.undefined_value(prep4sex=opts.prep4sex, indefval=opts.indefval)
        sci_hdus, mask_hdus, logs, gains, boxes, headers = [], [], {}, [], [], {}
        photflat = self.input().get("photflat")
        for h in opened:
            hdr = self._ota_header(h[1].header, fix if valid_wcs else None, phot)
            for key in REDUCTION_LOG_KEYS.values():
                logs.setdefault(key, []).append(str(hdr.get(key, "not selected")))
            gains.append((float(hdr.get("GAIN", 1.3)), int(hdr.get("NGAIN", 1))))
            headers[int(hdr["OTA"])] = hdr
            boxes.append(Table(h["SKYBOXES"].data))
            boxes[-1]["OTA"] = np.full(len(boxes[-1]), int(hdr["OTA"]), np.int16)
            data = h[1].data
            if photflat is not None:  # -autophotflat: 1 everywhere without a zero point, whatever the sky
                data = apply_photflat(data, fits.getdata(photflat.path, hdr["EXTNAME"]),
                                      float(phot[0].header.get("SKYLEVEL", 0.0)))
            sci_hdus.append(self._image(data, hdr, binning, fill))
            if opts.maskext:
                mask = fits.getdata(h.filename(), ext=2, memmap=False)  # scaled uint16: not memory-mappable
                mask_hdus.append(fits.ImageHDU(mask if binning == 1 else mef.softbin_mask(mask, binning),
                                               header=fits.Header({"EXTNAME": h[2].header["EXTNAME"]})))
        for key, values in logs.items():
            ph[key] = (_merge_log(values), "reduction log")
        weight = sum(n for _, n in gains)
        ph["GAIN"] = (sum(g * n for g, n in gains) / weight if weight else -1.0, "NGAIN-weighted gain, e-/ADU")
        ph["NGAIN"] = weight
        tables = []
        if fix is not None:
            ph.update([c for c in fix[0].header.cards if not c.keyword.startswith("PF")])
            if valid_wcs:  # -autophotflat: CAT.ODI with the corrected magnitudes
                tables += [(phot if phot is not None and name in phot else fix)[name]
                           for name in ("CAT.WCSREF", "CAT.ODI", "WCSCAL.CAT")]
        if phot is not None:
            ph.update([c for c in phot[0].header.cards if not c.keyword.startswith("PF")])
            tables += [phot[name] for name in ("CAT.PHOTCALIB.RAW", "CAT.PHOTREF", "CAT.PHOTCALIB") if name in phot]
        tables = [self._table(t, binning) for t in tables]
        sky = self._skylevel(ph, boxes, extra.get("focalplane"), headers)
        self._exposure_log(ph, valid_wcs, phot)
        ph["SKYNOISE"] = (math.sqrt(8.0 ** 2 + max(ph["SKYLEVEL"], 0.0) * ph["GAIN"]) if ph["GAIN"] > 0 else -1.0,
                          "sky noise sqrt(8^2 + SKYLEVEL*GAIN), e-")
        primary = fits.PrimaryHDU(header=ph)
        return fits.HDUList([primary, *sci_hdus, *mask_hdus, *tables, sky,
                             self._associations(opened, extra, valid_wcs, ph)])

    def _primary_header(self, first: fits.Header) -> fits.Header:
        """Pipeline version, -addfitskey keys, BINNING, inherited raw keys, timing, filter and almanac."""
        opts = self.reduction_options
        ph = fits.Header()
        ph["PLVER"] = (f"podiflow {__version__}", "pipeline and version")
        ph["PIPELINE"] = ("podiflow", "reduction pipeline")
        ph["PLVERSIO"] = (__version__, "pipeline version")
        for item in opts.addfitskey:
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

    @staticmethod
    def _ota_header(header: fits.Header, fix, phot) -> fits.Header:
        """OTA header without inherited/deleted cards, with the solved WCS and the photometry cards."""
        hdr = header.copy()
        ota = int(hdr["OTA"])
        for key in INHERITED_KEYS + _DROP_FROM_OTAS:
            hdr.remove(key, ignore_missing=True, remove_all=True)
        if fix is not None:
            for key in [k for k in hdr if WCS_CARD_RE.match(k)]:
                del hdr[key]
            hdr.update(_wcs_cards(fix, ota))
        if phot is not None and f"OTA{ota:02d}.PHOT" in phot:
            hdr.update([c for c in phot[f"OTA{ota:02d}.PHOT"].header.cards if c.keyword.startswith(("FLX", "PHOT"))])
        return hdr

    @staticmethod
    def _image(data: np.ndarray, hdr: fits.Header, binning: int, fill: float) -> fits.ImageHDU:
        """The OTAxy.SCI extension: soft-binned and with undefined pixels set to ``fill`` when asked."""
        if binning > 1:
            data, hdr = mef.softbin_image(data, binning), mef.softbin_header(hdr, binning)
        if not math.isnan(fill):
            data = np.where(np.isfinite(data), data, np.float32(fill)).astype(np.float32)
        return fits.ImageHDU(data, header=hdr)

    @staticmethod
    def _table(hdu: fits.BinTableHDU, binning: int) -> fits.BinTableHDU:
        """A copy of an upstream table extension, its pixel columns divided by the soft-binning factor."""
        if binning == 1:
            return hdu.copy()
        out = fits.table_to_hdu(mef.softbin_table(Table(hdu.data), binning))
        out.header.update([c for c in hdu.header.cards if c.keyword not in out.header])
        return out

    def _skylevel(self, ph: fits.Header, boxes: list, focal, headers: dict) -> fits.BinTableHDU:
        """The SKYLEVEL table (with RA, DEC) and primary sky cards: from FocalPlaneCorrections, else from
        ``boxes`` (the reduced OTAs' sky boxes)."""
        if focal is not None:
            table = Table(focal["SKYLEVEL"].data)
            stats = {k: focal[0].header[k] for k in sky_statistics(np.array([]))}
            for key in _FOCAL_CARDS:
                ph[key] = (focal[0].header[key], focal[0].header.comments[key])
        else:
            table = vstack([b for b in boxes if len(b)]) if any(len(b) for b in boxes) else Table()
            stats = sky_statistics(np.asarray(table["INTENSITY"]) if len(table) else np.array([]))
            for key in _FOCAL_CARDS:  # no focal-plane correction without FocalPlaneCorrections
                ph[key] = (-1.0, "not done (-1)")
        for key, value in stats.items():
            ph[key] = (value, "global sky, ADU")
        return _table_hdu(_add_radec(table, headers), "SKYLEVEL",
                          [(k, v, "sky statistics, ADU") for k, v in stats.items()])

    def _exposure_log(self, ph: fits.Header, valid_wcs: bool, phot) -> None:
        """Exposure-level reduction-log keywords (spec section 4.12)."""
        opts = self.reduction_options

        def state(selected: bool, ok: bool) -> str:
            return ("successful" if ok else "failed") if selected else "not selected"

        zp = float(ph.get("PHOTZP", -99.0))
        ph["_WCSCAL"] = (state(bool(opts.fixwcs or opts.photcalib), valid_wcs), "reduction log")
        ph["_PHOTCAL"] = (state(bool(opts.photcalib or opts.autophotflat), phot is not None and 0 < zp < 50),
                          "reduction log")
        ph["_AUTOFOT"] = (state(bool(opts.autophotflat), int(ph.get("PHFSTARS", 0)) > 0), "reduction log")
        ph["_NONSDRL"] = (state(bool(opts.nonsidereal), "NSIDPMRA" in ph), "reduction log")
        ph["_FRINGE"] = (state(bool(opts.fringe), float(ph.get("FRNG_SCL", -1)) > 0), "reduction log")
        ph["_PGHOST"] = (state(bool(opts.pupilghost), float(ph.get("PUPLGFAC", -1)) > 0), "reduction log")
        ph["_SOFTBIN"] = (state(bool(opts.softbin), True), "reduction log")

    @staticmethod
    def _associations(opened, extra, valid_wcs: bool, ph: fits.Header) -> fits.BinTableHDU:
        """Every file read, per step, with whether its step was applied (the reduction log says)."""
        rows = []
        for h in opened:
            log = h[1].header
            for role, path in _provenance(h[0].header):
                key = REDUCTION_LOG_KEYS.get(role)
                rows.append((role, path, key is None or str(log.get(key, "")) in _APPLIED))
        applied = {"fixwcs": valid_wcs, "photcal": ph.get("_PHOTCAL") == "successful", "focalplane": True}
        for name, h in extra.items():
            for role, path in _provenance(h[0].header):
                rows.append((_STEP_NAMES.get(name, {}).get(role, role), path, applied[name]))
        return mef.association_table(rows)


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


def _wcs_cards(fix: fits.HDUList, ota: int) -> list:
    """The solved WCS and quality cards of one OTA from the FixWCS product."""
    hdr = fix[f"OTA{ota:02d}.WCS"].header
    return [c for c in hdr.cards if WCS_CARD_RE.match(c.keyword) or c.keyword in ("CRVAL1", "CRVAL2")
            or c.keyword.startswith(("WCS_", "WCSC"))]

