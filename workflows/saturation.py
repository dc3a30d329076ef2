"""Saturation catalogues: one per exposure in the DAG, in QuickReduce's ``<base>.saturated.fits`` layout.

```
SaturationCatalog(obsid)         <work>/<night>/<obsid>/satcat/<obsid>.satcat.<id>.fits  (every OTA of the exposure)
SaturationExport(obsid)          <DIR>/<base>.saturated.fits  (a copy of the above, with -persistency=DIR)
```

One task reads the exposure's raw OTA files in turn and writes one catalogue: one ``OTAnn.SATPIX`` table per
OTA with saturated pixels, a ``SATERRnn`` card per OTA whose raw file cannot be read (a later exposure then
skips that OTA's persistence with a warning; the exposure itself fails in its own ``DetrendOTA``). A later
exposure's ``DetrendOTA`` reads only its own OTA's table from it.

With ``-persistency=DIR`` (a folder rather than the default ``auto``) the exposures podiflow reduces are
also written to DIR as ``<base>.saturated.fits``, and catalogues found there (any file whose name contains
``saturated.fits``, as QuickReduce scans them) whose exposure is *not* in the night index count as
earlier exposures too: a QuickReduce persistency folder, or the end of the previous night, keeps working.
Exposures that are in the night index always come from their own ``SaturationCatalog`` tasks.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits

from podisteps.detrend import persistency
from podisteps.errors import PodiflowError, logger
from podisteps.io import rawio
from podisteps.io.atomic import atomic_path

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


def _saturated(path: Path) -> tuple[fits.Header, np.ndarray]:
    """The primary header and saturated-pixel table of one raw OTA file.

    A plain file's saturated pixels are found on its stored words (:func:`rawio.read_raw_stored`); a ``.fz``
    file or an unusual layout is read as counts. Either raises :class:`rawio.RawFormatError` for a bad file.
    """
    stored = rawio.read_raw_stored(path)
    if stored is not None:
        return stored.primary, persistency.saturated_stored_pixels(stored.cells)
    raw = rawio.read_raw_ota(path, dtype=np.uint16)
    return raw.primary, persistency.saturated_pixels(raw.cells)


class SaturationCatalog(PodiTask):
    """The saturated raw pixels (>= 65535) of every OTA of one exposure, in QuickReduce's per-exposure layout
    (``OTAnn.SATPIX`` tables; ``SATERRnn`` for an unreadable raw file)."""

    obsid = luigi.Parameter(description="exposure, e.g. o20130301T040000.0")
    stage = "satcat"

    def external_inputs(self):
        return [raw_file(self.obsid, ota) for ota in exposure_record(self.obsid).otas]

    def output(self):
        return CheckpointTarget(str(checkpoint_path(self.obsid, self.stage, self.identity)))

    def run(self):
        paths = self.external_inputs()
        tables, errors, primary = {}, {}, None
        for ota, path in zip(exposure_record(self.obsid).otas, paths, strict=True):
            try:
                first, tables[ota] = _saturated(path)
            except rawio.RawFormatError as exc:
                logger.warning("%s: persistency source skipped: %s", self.obsid, exc)
                errors[ota] = str(exc)  # no saturated pixels known; later exposures skip this OTA
                continue
            primary = first if primary is None else primary  # the first readable OTA's cards
        hdul = persistency.saturation_catalog_hdulist(self.fallback_primary() if primary is None else primary,
                                                      tables, errors=errors)
        self.add_provenance(hdul[0].header, {"raw": paths})
        self.output().write_hdulist(hdul)

    def fallback_primary(self) -> fits.Header:
        """``MJD-OBS`` and ``EXPTIME`` from the night index, when no raw file of the exposure can be read."""
        rec = exposure_record(self.obsid)
        return fits.Header({"MJD-OBS": rec.mjd, "EXPTIME": rec.exptime})


class SaturationExport(PodiTask):
    """The exposure's saturation catalogue copied to QuickReduce's ``<DIR>/<base>.saturated.fits``.

    The checkpoint already has QuickReduce's layout (plus podiflow's provenance and ``SATERRnn`` cards,
    which QuickReduce ignores), so the export is a plain atomic copy; a separate task because the catalogue
    is shared by every set of reduction options while the folder is one of them.
    """

    obsid = luigi.Parameter(description="exposure, e.g. o20130301T040000.0")
    folder = luigi.Parameter(description="the -persistency folder")
    stage = "satexport"

    def requires(self):
        return SaturationCatalog(obsid=self.obsid)

    def output(self):
        return FitsTarget(str(Path(self.folder) / persistency.saturation_catalog_name(self.obsid)))

    def run(self):
        check_persistency_folder(self.folder)
        with atomic_path(self.output().path, durable=self.output().durable) as tmp:
            shutil.copyfile(self.input().path, tmp)
