"""``CollectCells(obsid)``: the final multi-extension FITS of one exposure (QUICKREDUCE_SPEC.md section 4.10).

Layout: ``PRIMARY`` (inherited raw keywords, timing, gain, WCS and photometry results, reduction log,
pipeline version); ``OTAxy.SCI`` float32 in the layout's order (the astrometric solution replaces the canned
WCS when it is valid); ``CAT.WCSREF``, ``CAT.ODI``, ``WCSCAL.CAT`` with a valid WCS; ``CAT.PHOTREF``,
``CAT.PHOTCALIB`` with photometry; ``SKYLEVEL``; ``ASSOCIATIONS`` (every file used, per step).
Image data are streamed from the memory-mapped checkpoints, so an exposure never sits in memory whole.
"""

from __future__ import annotations

import os

import luigi
import numpy as np
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time

from podisteps import __version__, astrometry, instrument
from podisteps.background import sky_statistics
from podisteps.wcs import WCS_CARD_RE

from .astrometry import FixWCS, _table_hdu
from .base import FitsTarget, PodiTask, options_param, provenance_cards
from .detrend import REDUCTION_LOG_KEYS, DetrendOTA, _record
from .paths import night_of, out_root
from .photometry import PhotCalib

__all__ = ["CollectCells", "INHERITED_KEYS"]

#: Raw primary keywords moved to the output primary (and removed from the OTA extensions).
INHERITED_KEYS = ("OBSID", "OBSTYPE", "OBJECT", "FILTER", "FILTERID", "FILTDSCR", "EXPTIME", "EXPMEAS",
                  "DATE-OBS", "TIME-OBS", "MJD-OBS", "TIMESYS", "RA", "DEC", "TARGRA", "TARGDEC", "TELRAOFF",
                  "TELDECOF", "AIRMASS", "ZD", "ROTSTART", "ROTEND", "TELFOCUS", "ADCMODE", "OBSERVER", "PROPID",
                  "LSTHDR", "EQUINOX", "FLTARM1A", "FLTARM1B", "FLTARM1C", "FLTARM2A", "FLTARM2B", "FLTARM2C",
                  "FLTARM3A", "FLTARM3B", "FLTARM3C", "INSTRUME", "TELESCOP", "SIMULATE", "SIMSEED")

#: Per-OTA raw cards that are not image keywords any more in the final product.
_DROP_FROM_OTAS = ("INHERIT",)


def _merge_log(values: list) -> str:
    """QuickReduce's combination of per-OTA log values: a mix of success and failure is partial."""
    unique = set(values)
    if len(unique) == 1:
        return values[0]
    if {"successful", "failed"} <= unique:
        return "partially failed"
    return "successful" if "successful" in unique else sorted(unique)[0]


class CollectCells(PodiTask):
    """The final MEF of one exposure, at ``output_path`` or ``<out>/<night>/<obsid>/<obsid>.fits``."""

    obsid = luigi.Parameter()
    output_path = luigi.Parameter(default="", significant=False,
                                  description="where to write the MEF (default: the out_dir tree)")
    stage = "collect"

    def otas(self) -> tuple:
        """The OTAs reduced, in the layout's order, after -centralonly/-selectota/-skipota/-singleota."""
        rec = _record(self.obsid)
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

    def requires(self):
        opts = self.reduction_options
        req = {"otas": {ota: DetrendOTA(obsid=self.obsid, ota=ota, options=options_param(opts, ["DetrendOTA"]))
                        for ota in self.otas()}}
        if opts.fixwcs or opts.photcalib:
            req["fixwcs"] = FixWCS(obsid=self.obsid, options=options_param(
                opts.replace(fixwcs=True), ["DetrendOTA", "OTACatalog", "FixWCS"]))
        if opts.photcalib:
            req["photcal"] = PhotCalib(obsid=self.obsid, options=options_param(
                opts, ["DetrendOTA", "OTACatalog", "FixWCS", "PhotCalib"]))
        return req

    def output(self):
        if self.output_path:
            return FitsTarget(self.output_path)
        return FitsTarget(str(out_root() / night_of(self.obsid) / self.obsid / f"{self.obsid}.fits"))

    def run(self):
        inputs = self.input()
        opened = [fits.open(t.path, memmap=True) for t in inputs["otas"].values()]
        extra = {k: fits.open(inputs[k].path) for k in ("fixwcs", "photcal") if k in inputs}
        try:
            self.progress(10, f"{self.obsid}: assembling {len(opened)} OTAs")
            hdul = self._assemble(opened, extra)
            used = {"otas": [t.path for t in inputs["otas"].values()],
                    **{k: inputs[k].path for k in ("fixwcs", "photcal") if k in inputs}}
            for key, value, comment in provenance_cards(self, used):
                hdul[0].header[key] = (value, comment)
            self.progress(60, f"{self.obsid}: writing {self.output().path}")
            self.output().write_hdulist(hdul)
        finally:
            for h in opened + list(extra.values()):
                h.close()

    # ------------------------------------------------------------------------------------------------

    def _assemble(self, opened, extra) -> fits.HDUList:
        fix = extra.get("fixwcs")
        phot = extra.get("photcal")
        valid_wcs = bool(fix is not None and fix[0].header.get("WCSCAL", False))
        primary = fits.PrimaryHDU()
        ph = primary.header
        ph["PLVER"] = (f"podiflow {__version__}", "pipeline and version")
        ph["PIPELINE"] = ("podiflow", "reduction pipeline")
        ph["PLVERSIO"] = (__version__, "pipeline version")
        first = opened[0][1].header
        for key in INHERITED_KEYS:
            if key in first:
                ph[key] = first[key]
        for item in self.reduction_options.addfitskey:
            key, _, value = item.partition(",")
            ph[key.strip().upper()] = value.strip().strip("'\"")
        ph["BINNING"] = (int(first.get("CCDBIN1", 1)), "on-chip binning")
        self._timing(ph)
        sci_hdus, logs, gains, boxes = [], {}, [], []
        for h in opened:
            hdr = h[1].header.copy()
            ota = int(hdr["OTA"])
            for key in INHERITED_KEYS + _DROP_FROM_OTAS:
                hdr.remove(key, ignore_missing=True, remove_all=True)
            if valid_wcs:
                for key in [k for k in hdr if WCS_CARD_RE.match(k)]:
                    del hdr[key]
                hdr.update(_wcs_cards(fix, ota))
            if phot is not None and f"OTA{ota:02d}.PHOT" in phot:
                hdr.update([c for c in phot[f"OTA{ota:02d}.PHOT"].header.cards if c.keyword.startswith(("FLX", "PHOT"))])
            for key in REDUCTION_LOG_KEYS.values():
                logs.setdefault(key, []).append(str(hdr.get(key, "not selected")))
            gains.append((float(hdr.get("GAIN", 1.3)), int(hdr.get("NGAIN", 1))))
            sky = Table(h["SKYBOXES"].data)
            sky["OTA"] = np.full(len(sky), ota, np.int16)
            if len(sky):
                ra, dec = astrometry.header_wcs(hdr).all_pix2world(np.asarray(sky["X"], float),
                                                                   np.asarray(sky["Y"], float), 0)
                sky["RA"], sky["DEC"] = ra, dec
            boxes.append(sky)
            sci_hdus.append(fits.ImageHDU(h[1].data, header=hdr))
        for key, values in logs.items():
            ph[key] = (_merge_log(values), "reduction log")
        weight = sum(n for _, n in gains)
        ph["GAIN"] = (sum(g * n for g, n in gains) / weight if weight else -1.0, "NGAIN-weighted gain, e-/ADU")
        ph["NGAIN"] = weight
        hdus = [primary, *sci_hdus]
        if fix is not None:
            ph.update([c for c in fix[0].header.cards if not c.keyword.startswith("PF")])
            if valid_wcs:
                hdus += [fix[name].copy() for name in ("CAT.WCSREF", "CAT.ODI", "WCSCAL.CAT")]
        if phot is not None:
            ph.update([c for c in phot[0].header.cards if not c.keyword.startswith("PF")])
            hdus += [phot[name].copy() for name in ("CAT.PHOTREF", "CAT.PHOTCALIB") if name in phot]
        hdus.append(self._skylevel(ph, boxes))
        hdus.append(self._associations(opened, extra))
        return fits.HDUList(hdus)

    def _timing(self, ph: fits.Header) -> None:
        if "MJD-OBS" not in ph:
            return
        start = float(ph["MJD-OBS"])
        duration = float(ph.get("EXPMEAS", ph.get("EXPTIME", 0.0))) / 86400.0
        for tag, mjd in (("MID", start + duration / 2), ("END", start + duration)):
            iso = Time(mjd, format="mjd", scale="utc").isot
            ph[f"DATE-{tag}"] = (iso[:23], f"UT date at {tag.lower()} of exposure")
            ph[f"MJD-{tag}"] = (mjd, f"MJD at {tag.lower()} of exposure")

    @staticmethod
    def _skylevel(ph: fits.Header, boxes: list) -> fits.BinTableHDU:
        table = vstack([b for b in boxes if len(b)]) if any(len(b) for b in boxes) else Table()
        stats = sky_statistics(np.asarray(table["INTENSITY"]) if len(table) else np.array([]))
        hdu = _table_hdu(table, "SKYLEVEL", [(k, v, "sky statistics, ADU") for k, v in stats.items()])
        for key, value in stats.items():
            ph.setdefault(key, value)
        return hdu

    def _associations(self, opened, extra) -> fits.BinTableHDU:
        rows = []
        for h in opened + list(extra.values()):
            hdr = h[0].header
            for key in hdr:
                if key.startswith("PFIN"):
                    role, _, path = str(hdr[key]).partition(":")
                    rows.append((role, path))
        unique = list(dict.fromkeys(rows))  # first occurrence of each (step, file), in order
        cols = [fits.Column(name="correction", format="25A", array=[r for r, _ in unique]),
                fits.Column(name="filename_full", format="375A", array=[p for _, p in unique]),
                fits.Column(name="filename", format="100A", array=[os.path.basename(p) for _, p in unique])]
        hdu = fits.BinTableHDU.from_columns(cols)
        hdu.name = "ASSOCIATIONS"
        return hdu


def _wcs_cards(fix: fits.HDUList, ota: int) -> list:
    """The solved WCS and quality cards of one OTA from the FixWCS product."""
    hdr = fix[f"OTA{ota:02d}.WCS"].header
    return [c for c in hdr.cards if WCS_CARD_RE.match(c.keyword) or c.keyword in ("CRVAL1", "CRVAL2")
            or c.keyword.startswith(("WCS_", "WCSC"))]

