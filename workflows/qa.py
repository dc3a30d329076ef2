"""QA tasks: ``QAPlots(obsid)``, the diagnostic plots of one exposure, and ``NightSummary(night)``.

``QAPlots`` reads the final MEF of ``CollectCells`` (tables and headers only, never the images), draws the
plots of docs/formats.md, 'QA plots' under ``-plotformat``, ``-nootalevelplots``, ``-qasubdirs``,
``-qasubdirname`` and ``-noqaplots`` (names in :mod:`podisteps.qa.plan`; with ``-autophotflat`` also
``photZP_init``, ``photZP_map_init`` and ``autophotflat``, whose map it samples from a few rows of each OTA of
the exposure's ``PhotFlat``, the flat ``CollectCells`` applied), and writes a manifest
``<stem>.qa.<id>.json`` beside the MEF listing every file: that one file is the task's output. It prints one
progress line per exposure.

``NightSummary`` requires nothing, so that it runs after a night whatever failed: it reads the night index,
the final MEFs and QA manifests that exist and the failure records (:mod:`workflows.failures`), and writes
``<out>/<night>/summary.ecsv`` and ``summary.html``. It is complete while both are newer than everything they
summarise (a stat per exposure). Run it in a second ``luigi.build`` after the night's reduction.
"""

from __future__ import annotations

import json
from pathlib import Path

import luigi
from astropy.io import fits
from astropy.table import Table

from podisteps import qa as qaplots
from podisteps.io.atomic import write_text_atomic
from podisteps.qa import nightsummary

from .base import PodiTask
from .collect import CollectCells
from .failures import failures_dir, read_failures
from .options import MEF_FAMILIES
from .paths import night_index, night_of, out_root, raw_root

__all__ = ["QAPlots", "NightSummary"]

#: The options of QAPlots itself (recorded in the manifest).
_QA_OPTIONS = ("noqaplots", "plotformat", "nootalevelplots", "qasubdirs", "qasubdirname")

#: MEF tables the plots read.
_TABLES = ("CAT.ODI", "WCSCAL.CAT", "CAT.PHOTCALIB", "CAT.PHOTCALIB.RAW", "SKYLEVEL")


def read_exposure_qa(obsid: str, mef: str, *, photflat: str | None = None
                     ) -> tuple[qaplots.ExposureQA, fits.Header]:
    """The plot inputs and the primary header of a final MEF (headers and tables only).

    Parameters
    ----------
    obsid : str
        Exposure name.
    mef : str
        The final MEF.
    photflat : str, optional
        ``-autophotflat``: the exposure's photometric flat (QuickReduce's photflat format), sampled on blocks
        (:func:`podisteps.qa.photflat_blocks`, a few rows per OTA).

    Returns
    -------
    qa : podisteps.qa.ExposureQA
    header : astropy.io.fits.Header
        The primary header.
    """
    blocks = None
    if photflat is not None:
        with fits.open(photflat) as hdul:
            blocks = qaplots.photflat_blocks(hdul)
    with fits.open(mef, memmap=True) as hdul:
        sci = {int(h.header["OTA"]): h.header for h in hdul if h.name.endswith(".SCI")}
        names = [n for n in _TABLES if n in hdul]
        tables = {n: Table(hdul[n].data) for n in names}
        qa = qaplots.exposure_qa(obsid, hdul[0].header, sci, tables, {n: hdul[n].header for n in names},
                                 photflat=blocks)
        return qa, hdul[0].header.copy()


def manifest_of(mef: str | Path) -> dict | None:
    """The newest QA manifest beside a final MEF that lists plots, else the newest (None if there is none)."""
    mef = Path(mef)
    found = sorted(mef.parent.glob(f"{qaplots.output_stem(mef)}.qa.*.json"), key=lambda p: p.stat().st_mtime)
    manifests = [json.loads(p.read_text()) for p in found]
    return next((m for m in reversed(manifests) if m["plots"]), manifests[-1] if manifests else None)


class QAPlots(PodiTask):
    """The QA plots of one exposure, beside its final MEF; output: their manifest.

    Requires ``{"mef": CollectCells}``, with ``-autophotflat`` also ``"photflat"``: the ``PhotFlat`` that
    ``CollectCells`` applied (the same task, so nothing more is built).
    """

    obsid = luigi.Parameter()
    output_path = luigi.Parameter(default="", significant=False,
                                  description="the final MEF's path, as for CollectCells (default: the out tree)")
    stage = "qa"
    option_families = (*MEF_FAMILIES, "QAPlots")

    def requires(self):
        mef = CollectCells.with_options(self.reduction_options, obsid=self.obsid, output_path=self.output_path)
        if not self.reduction_options.autophotflat:
            return {"mef": mef}
        return {"mef": mef, "photflat": mef.requires()["photflat"]}

    def output(self):
        mef = Path(self.requires()["mef"].output().path)
        return luigi.LocalTarget(str(mef.parent / f"{qaplots.output_stem(mef)}.qa.{self.identity}.json"))

    def complete(self):
        """The manifest exists and is not older than the MEF: a rebuilt MEF gets its plots redrawn."""
        manifest, mef = Path(self.output().path), Path(self.requires()["mef"].output().path)
        try:
            return manifest.stat().st_mtime_ns >= mef.stat().st_mtime_ns
        except FileNotFoundError:
            return False

    def run(self):
        opts = self.reduction_options
        inputs = self.input()
        mef = inputs["mef"].path
        photflat = inputs["photflat"].path if "photflat" in inputs and not opts.noqaplots else None
        qa, header = read_exposure_qa(self.obsid, mef, photflat=photflat)
        plots, skipped = [], {}
        if not opts.noqaplots:
            subdir = opts.qasubdirname or ("QA" if opts.qasubdirs else None)
            planned, skipped = qaplots.plan_plots(
                qa, mef, formats=opts.plotformat, ota_level=not opts.nootalevelplots, subdir=subdir,
                switches={name for name in qaplots.PLOT_OPTIONS if getattr(opts, name)})
            for i, plot in enumerate(planned):
                self.progress(100.0 * i / len(planned), f"{self.obsid}: QA plot {plot.name}"
                              + ("" if plot.ota is None else f" OTA{plot.ota:02d}"))
                result = qaplots.draw(qa, plot)
                plots.append({"name": plot.name, "ota": plot.ota, "files": result.paths, "counts": result.counts})
        manifest = {"obsid": self.obsid, "mef": mef, "photflat": photflat, "plots": plots, "skipped": skipped,
                    "options": {k: v for k, v in self.options.items() if k in _QA_OPTIONS}}
        write_text_atomic(json.dumps(manifest, indent=1), self.output().path)
        entry = night_index(night_of(self.obsid)).by_obsid()[self.obsid]
        print(nightsummary.progress_line(nightsummary.exposure_record(entry, header=header, mef=mef, plots=plots)),
              flush=True)


class NightSummary(PodiTask):
    """``<out>/<night>/summary.ecsv`` and ``summary.html``: every exposure of the night, its status and quality."""

    night = luigi.Parameter()
    refresh_s = luigi.IntParameter(default=0, significant=False,
                                   description="the page reloads itself every this many seconds (0: never)")
    stage = "summary"

    def output(self):
        folder = out_root() / self.night
        return {"ecsv": luigi.LocalTarget(str(folder / "summary.ecsv")),
                "html": luigi.LocalTarget(str(folder / "summary.html"))}

    def _newest_input(self) -> float:
        """Newest modification time of what the summary reads (stats only)."""
        paths = [raw_root() / self.night, failures_dir(self.night)]
        for entry in night_index(self.night).exposures:
            mef = _final_mef(entry.obsid)
            paths += [mef, *mef.parent.glob(f"{qaplots.output_stem(mef)}.qa.*.json")]
        return max((p.stat().st_mtime for p in paths if p.exists()), default=0.0)

    def complete(self):
        outputs = [Path(t.path) for t in self.output().values()]
        if not all(p.exists() for p in outputs):
            return False
        return min(p.stat().st_mtime for p in outputs) >= self._newest_input()

    def run(self):
        records, night_failures = exposure_records(self.night)
        out = self.output()
        nightsummary.write_summary(records, night=self.night, ecsv_path=out["ecsv"].path, html_path=out["html"].path,
                                   night_failures=night_failures, refresh_s=self.refresh_s)


def _final_mef(obsid: str) -> Path:
    """Where an exposure's final MEF is in the out tree."""
    return Path(CollectCells(obsid=obsid).output().path)


def exposure_records(night: str, obsids=None) -> tuple[list[dict], list[dict]]:
    """Summary rows of a night's exposures (all, or those in ``obsids``) and the night-wide failure records.

    Reads each exposure's final MEF header and QA manifest where they exist, and the night's failure records.
    """
    by_obsid: dict = {}
    for f in read_failures(night):
        by_obsid.setdefault(f["obsid"], []).append(f)
    records = []
    for entry in night_index(night).exposures:
        if obsids is not None and entry.obsid not in obsids:
            continue
        mef = _final_mef(entry.obsid)
        header = fits.getheader(mef, 0) if mef.exists() else None
        manifest = manifest_of(mef) if mef.exists() else None
        records.append(nightsummary.exposure_record(
            entry, header=header, mef=str(mef), mef_mtime=mef.stat().st_mtime if mef.exists() else float("nan"),
            failures=by_obsid.get(entry.obsid, []), plots=(manifest or {}).get("plots", [])))
    return records, by_obsid.get(None, [])
