"""Saturation catalogues: one per OTA in the DAG, and QuickReduce's per-exposure files in ``-persistency=DIR``.

```
SaturationCatalog(obsid, ota)    <work>/<night>/<obsid>/satcat/<obsid>.<OTA>.satcat.<id>.fits
SaturationExport(obsid)          <DIR>/<base>.saturated.fits  (QuickReduce's format, every OTA of the exposure)
```

With ``-persistency=DIR`` (a folder rather than the default ``auto``) the exposures podiflow reduces are
also written to DIR as ``<base>.saturated.fits``, and catalogues found there (any file whose name contains
``saturated.fits``, as QuickReduce scans them) whose exposure is *not* in the night index count as
earlier exposures too: a QuickReduce persistency folder, or the end of the previous night, keeps working.
Exposures that are in the night index always come from their own ``SaturationCatalog`` tasks.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits

from podisteps.detrend import persistency
from podisteps.errors import PodiflowError, logger
from podisteps.io import rawio
from podisteps.io.atomic import HDU_COUNT_CARD

from .base import CheckpointTarget, FitsTarget, PodiTask
from .paths import checkpoint_path, exposure_dir, night_index, night_of

__all__ = ["ExposureError", "SaturationCatalog", "SaturationExport", "persistency_folder",
           "check_persistency_folder", "folder_catalogs", "raw_file", "exposure_record"]


class ExposureError(PodiflowError, RuntimeError):
    """An exposure that cannot be reduced (the message names the file or folder and the problem)."""


def exposure_record(obsid: str):
    """The night-index record of ``obsid``; :class:`ExposureError` if it is absent or unreadable."""
    rec = night_index(night_of(obsid)).by_obsid().get(obsid)
    if rec is None:
        raise ExposureError(f"{exposure_dir(obsid)}: exposure {obsid} is not in the night index")
    if rec.error:
        raise ExposureError(rec.error)
    return rec


def raw_file(obsid: str, ota: int) -> Path:
    """The raw file of OTA ``ota`` of ``obsid``; :class:`ExposureError` if the exposure has none."""
    rec = exposure_record(obsid)
    if ota not in rec.otas:
        raise ExposureError(f"{exposure_dir(obsid)}: exposure {obsid} has no file for OTA {ota:02d}")
    return exposure_dir(obsid) / rawio.ota_filename(obsid, ota, fz=rec.fz)


def persistency_folder(value) -> Path | None:
    """The folder of ``-persistency=DIR`` (None for the default 'auto' or 'no')."""
    return None if value in (None, "auto") else Path(value).expanduser().resolve()


def check_persistency_folder(value) -> None:
    """Fail early (before any work) if ``-persistency=DIR`` cannot be written.

    A missing folder is fine when its parent is writable (it is created on the first export).

    Raises
    ------
    ExposureError
        Naming the folder and the problem.
    """
    folder = persistency_folder(value)
    if folder is None:
        return
    if folder.exists() and not folder.is_dir():
        raise ExposureError(f"-persistency={value}: {folder} is a file, not a folder")
    probe = folder if folder.exists() else folder.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ExposureError(f"-persistency={value}: {probe} is not a writable folder")


@functools.lru_cache(maxsize=16)
def _scan(folder: str, signature: tuple) -> tuple:
    found = []
    for name, _, _ in signature:
        path = os.path.join(folder, name)
        try:
            header = fits.getheader(path, 0)
            found.append((path, float(header["MJD-OBS"]), float(header["EXPTIME"])))
        except (OSError, KeyError, ValueError, TypeError):
            logger.warning("%s: not a saturation catalogue (unreadable, or no MJD-OBS/EXPTIME): ignored", path)
    return tuple(found)


def folder_catalogs(folder: Path) -> tuple:
    """``(path, MJD-OBS, EXPTIME)`` of every ``*saturated.fits*`` file in ``folder`` (memoised per listing)."""
    if not folder.is_dir():
        return ()
    signature = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if "saturated.fits" in entry.name and not entry.name.startswith(".") and entry.is_file():
            st = entry.stat()
            signature.append((entry.name, st.st_size, st.st_mtime_ns))
    return _scan(str(folder), tuple(signature))


class SaturationCatalog(PodiTask):
    """The saturated raw pixels (>= 65535) of one OTA, in QuickReduce's ``OTAnn.SATPIX`` layout."""

    obsid = luigi.Parameter(description="exposure, e.g. o20130301T040000.0")
    ota = luigi.IntParameter(description="OTA position, e.g. 33")
    stage = "satcat"

    def external_inputs(self):
        return [raw_file(self.obsid, self.ota)]

    def output(self):
        return CheckpointTarget(str(checkpoint_path(self.obsid, self.stage, self.identity, ota=self.ota)))

    def run(self):
        path = raw_file(self.obsid, self.ota)
        try:
            raw = rawio.read_raw_ota(path, dtype=np.uint16)
        except rawio.RawFormatError as exc:
            hdul = self.unreadable(str(exc))
        else:
            table = persistency.saturated_pixels(raw.cells)
            hdul = persistency.saturation_catalog_hdulist(raw.primary, {self.ota: table} if len(table) else {})
        self.add_provenance(hdul[0].header, {"raw": path})
        self.output().write_hdulist(hdul)

    def unreadable(self, reason: str) -> fits.HDUList:
        """An empty catalogue whose ``SATERR`` card says why the raw file could not be read.

        A later exposure's persistency masking then skips this one with a warning instead of being blocked
        by it (the exposure itself fails in its own DetrendOTA, with the same reason).
        """
        logger.warning("%s: persistency source skipped: %s", self.obsid, reason)
        rec = exposure_record(self.obsid)
        hdul = persistency.saturation_catalog_hdulist(fits.Header({"MJD-OBS": rec.mjd, "EXPTIME": rec.exptime}), {})
        hdul[0].header["SATERR"] = reason  # the raw file is unreadable: no saturated pixels known
        return hdul


class SaturationExport(PodiTask):
    """All OTAs' saturation catalogues of one exposure as QuickReduce's ``<DIR>/<base>.saturated.fits``."""

    obsid = luigi.Parameter(description="exposure, e.g. o20130301T040000.0")
    folder = luigi.Parameter(description="the -persistency folder")
    stage = "satexport"

    def requires(self):
        return {ota: SaturationCatalog(obsid=self.obsid, ota=ota) for ota in exposure_record(self.obsid).otas}

    def output(self):
        return FitsTarget(str(Path(self.folder) / persistency.saturation_catalog_name(self.obsid)))

    def run(self):
        check_persistency_folder(self.folder)
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        tables, primary = {}, None
        for ota, target in sorted(self.input().items()):
            with fits.open(target.path) as hdul:
                tables[ota] = persistency.read_saturation_catalog(hdul).table(ota)
                primary = primary if primary is not None else hdul[0].header.copy()  # the raw primary's cards
        if primary is not None:  # the catalogue's own HDU count is not the export's
            primary.remove(HDU_COUNT_CARD, ignore_missing=True)
        self.output().write_hdulist(persistency.saturation_catalog_hdulist(primary, tables))
