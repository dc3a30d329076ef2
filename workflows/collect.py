"""``CollectCells(obsid)``: the final multi-extension FITS of one exposure (docs/formats.md, 'The final MEF').

The task opens its inputs, follows their provenance to list every file used, calls the composite
:func:`podisteps.io.finalmef.final_mef` (which describes the layout) and writes the result; an OTA the composite
leaves out for its pixels is logged as a warning and named in the MEF (``LOSTnn``) and the night summary.

With ``-autophotflat`` (which implies ``-photcalib``) the OTA pixels are divided by the exposure's ``PhotFlat``
around the sky level, ``(data - SKYLEVEL) / pf + SKYLEVEL`` (``SKYLEVEL`` of the photometry product), and
``CAT.ODI`` is the catalogue with the magnitudes corrected the same way (from ``AutoPhotCalib``).

The sky level, fringe and pupil-ghost scales come from ``FocalPlaneCorrections`` (docs/reduction-steps.md, 'Global sky
level'), except for an OTA subset without focal-plane corrections, where the sky is measured over the reduced OTAs'
boxes (FocalPlaneCorrections would need every OTA detrended). ``SKYLEVEL`` X, Y stay 0-based unbinned OTA
pixels under ``-softbin`` (RA, DEC locate the boxes). Image data are streamed from the memory-mapped
checkpoints when nothing changes them, so an exposure never sits in memory whole.
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack, contextmanager
from pathlib import Path

import luigi
from astropy.io import fits

from podisteps import instrument
from podisteps.errors import logger
from podisteps.io import finalmef, mef
from podisteps.io.atomic import write_text_atomic
from podisteps.io.finalmef import INHERITED_KEYS
from podisteps.io.streamed import write_fits_streamed

from .astrometry import FixWCS
from .base import FitsTarget, PodiTask
from .detrend import REDUCTION_LOG_KEYS
from .focalplane import FocalPlaneCorrections, catalog_options, image_target, image_task
from .options import MEF_FAMILIES
from .paths import checkpoint_path, night_of, out_root
from .photometry import RadialZP, photometry_task
from .saturation import exposure_record

__all__ = ["CollectCells", "INHERITED_KEYS"]

#: Provenance roles that may be podiflow products whose own inputs belong in ASSOCIATIONS.
_PRODUCT_ROLES = ("detrended", "refcat", "fixwcs")


class CollectCells(PodiTask):
    """The final MEF of one exposure, at ``output_path`` or ``<out>/<night>/<obsid>/<obsid>.fits``."""

    obsid = luigi.Parameter()
    output_path = luigi.Parameter(default="", significant=False,
                                  description="where to write the MEF (default: the out_dir tree)")
    stage = "collect"
    option_families = MEF_FAMILIES

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
            req["focalplane"] = FocalPlaneCorrections.with_options(opts, obsid=self.obsid,
                                                                   catalogs=catalog_options(opts))
        if opts.photcalib or opts.autophotflat:  # the astrometry PhotCalib used, so that it is made once
            req["photcal"] = photometry_task(self.obsid, opts)  # RadialZP with -fitradialZP
            calib = req["photcal"].requires() if isinstance(req["photcal"], RadialZP) else req["photcal"]
            req["fixwcs"] = next(t for t in luigi.task.flatten(calib.requires()) if isinstance(t, FixWCS))
            if opts.autophotflat:
                req["photflat"] = calib.requires()["photflat"]
        elif opts.fixwcs:
            req["fixwcs"] = FixWCS.with_options(opts, obsid=self.obsid)
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
        """Yield ``(opened OTA products, finalmef.ExposureProducts)``, closed afterwards."""
        inputs = self.input()
        with ExitStack() as stack:
            # read-only maps: their pages are released once read (podisteps.io.mapped), one OTA held at a time
            opened = [stack.enter_context(fits.open(image_target(t).path, memmap=True, mode="denywrite"))
                      for t in inputs["otas"].values()]
            extra = {k: stack.enter_context(fits.open(inputs[k].path))
                     for k in ("fixwcs", "photcal", "focalplane", "photflat") if k in inputs}
            provenance = {"otas": [_provenance(h[0].header) for h in opened],
                          **{k: _provenance(h[0].header) for k, h in extra.items() if k != "photflat"}}
            yield opened, finalmef.ExposureProducts(**extra, provenance=provenance)

    def build_hdulist(self, opened, products: finalmef.ExposureProducts) -> fits.HDUList:
        """The final MEF (uncompressed, data possibly memory-mapped from ``opened``) with provenance cards."""
        options = finalmef.MefOptions.of(self.reduction_options)
        masks = [fits.getdata(h.filename(), ext=2, memmap=False) for h in opened] if options.maskext else None
        hdul = finalmef.final_mef(opened, products, options=options, log_keys=REDUCTION_LOG_KEYS, masks=masks,
                                  lost=exposure_record(self.obsid).bad_otas, name=self.output().path)
        for ota, reason in _lost_here(hdul, exposure_record(self.obsid).bad_otas):
            logger.warning("%s: OTA%02d left out of the final MEF: %s", self.obsid, ota, reason)
        used = {"otas": [h.filename() for h in opened]}
        used |= {k: getattr(products, k).filename() for k in ("fixwcs", "photcal", "focalplane")
                 if getattr(products, k) is not None}
        if products.photflat is not None:
            used["photflat"] = self.input()["photflat"].path
        self.add_provenance(hdul[0].header, used)
        return hdul

    def run(self):
        with self.opened_inputs() as (opened, extra):
            self.progress(10, f"{self.obsid}: assembling {len(opened)} OTAs")
            hdul = self.build_hdulist(opened, extra)
            self.progress(60, f"{self.obsid}: writing {self.output().path}")
            write_fits_streamed(self.for_writing(hdul), self.output().path)
        record = self.identity_record()
        record.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.output().path + "\n", record)

    def for_writing(self, hdul: fits.HDUList) -> fits.HDUList:
        """``hdul`` as written: image extensions Rice-compressed with ``-fpack``."""
        if not self.reduction_options.fpack:
            return hdul
        return fits.HDUList([mef.compress_hdu(h) if isinstance(h, fits.ImageHDU) else h for h in hdul])


def _lost_here(hdul: fits.HDUList, bad_otas) -> list:
    """``(OTA, reason)`` of the OTAs the final MEF left out for their pixels (not for their raw files)."""
    known = {ota for ota, _ in bad_otas}
    return [(ota, why) for ota, why in mef.lost_otas(hdul[0].header) if ota not in known]


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
