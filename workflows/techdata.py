"""Per-cell gain and read noise of a night by photon transfer (docs/reduction-steps.md, 'Gain and read noise';
docs/masters.md, 'Gain and read noise by photon transfer').

```
TechData(night, filter, binning, flattype)   techdata_<flattype>_<FILTER>_bin<B>.<id>.fits in <work>/<night>/cals/
```

Inputs are the night's raw biases and flats of the filter (overscan subtracted, data sections). Every
consecutive pair of flats and of biases gives one photon-transfer estimate per cell
(:func:`podisteps.masters.techdata.photon_transfer`); the file holds the median over the pairs. QuickReduce used
only the first two of each; more pairs lower the noise of the estimate. A ``techdata_...fits`` link beside
the file makes the cals folder a ``-techdata``/``-cals`` folder.
"""

from __future__ import annotations

import itertools

import luigi
import numpy as np

from podisteps import instrument
from podisteps.detrend import calibrate, overscan
from podisteps.detrend.calibrate import CellNoise
from podisteps.errors import CalibrationError
from podisteps.io import rawio
from podisteps.masters import techdata

from .base import FitsTarget, PodiTask
from .calibrations import link_latest
from .paths import exposure_dir, night_index, work_root

__all__ = ["TechData"]

#: Fewest frames of each type (two make one pair).
MIN_FRAMES = 2

#: Most frames of each type read (consecutive pairs: at most MAX_FRAMES - 1 estimates per cell).
MAX_FRAMES = 5


class TechData(PodiTask):
    """The TECHDATA file (64x64 GAIN, READNOISE, READNOISE_E) of one night, filter, binning and flat type."""

    night = luigi.Parameter(description="observing night YYYYMMDD")
    filter = luigi.Parameter(description="filter of the flats")
    binning = luigi.IntParameter(default=1)
    flattype = luigi.ChoiceParameter(choices=("dflat", "tflat"), default="dflat")
    stage = "cals"
    memory_gb = 1

    def frames(self, obstype: str) -> list:
        """Night-index records of the input frames of ``obstype`` (at most :data:`MAX_FRAMES`)."""
        filt = self.filter if obstype != "BIAS" else None
        found = night_index(self.night).select(obstype=obstype, binning=self.binning, filter=filt)
        return list(found)[:MAX_FRAMES]

    def _inputs(self) -> tuple[list, list]:
        biases, flats = self.frames("BIAS"), self.frames(self.flattype.upper())
        for what, found in (("BIAS", biases), (f"{self.flattype.upper()} {self.filter}", flats)):
            if len(found) < MIN_FRAMES:
                raise CalibrationError(
                    f"techdata of night {self.night}: {len(found)} {what} frame(s) at bin{self.binning}, "
                    f"photon transfer needs at least {MIN_FRAMES}"
                )
        return biases, flats

    def external_inputs(self):
        biases, flats = self._inputs()
        return [_raw(e.obsid, ota, e.fz) for e in biases + flats for ota in e.otas]

    def output(self):
        name = calibrate.techdata_filename(self.flattype, self.filter, self.binning)[:-5]
        return FitsTarget(str(work_root() / self.night / "cals" / f"{name}.{self.identity}.fits"))

    def run(self):
        biases, flats = self._inputs()
        otas = sorted(set.intersection(*(set(e.otas) for e in biases + flats)))
        values = {}
        for i, ota in enumerate(otas):
            self.progress(100 * i / len(otas), f"techdata {self.filter} bin{self.binning}: OTA{ota:02d}")
            bias_cells = [_data_cells(_raw(e.obsid, ota, e.fz)) for e in biases]
            flat_cells = [_data_cells(_raw(e.obsid, ota, e.fz)) for e in flats]
            geo, primary = bias_cells[0][1], bias_cells[0][2]
            border = techdata.scaled_border(geo)
            for cell in instrument.CELL_IDS:
                if not instrument.cell_is_used(ota, *cell, cellmode=str(primary["CELLMODE"]),
                                               serial=str(primary["OTA_ID"]).strip(), mjd=float(primary["MJD-OBS"])):
                    continue  # broken cell: NaN in the file
                values[(ota, *cell)] = _median_noise([
                    techdata.photon_transfer(f1[0][cell], f2[0][cell], b1[0][cell], b2[0][cell], border=border)
                    for (f1, f2), (b1, b2) in zip(itertools.pairwise(flat_cells), itertools.cycle(
                        itertools.pairwise(bias_cells)))
                ])
        header = {"OBSTYPE": ("TECHDATA", "per-cell gain and read noise"), "FILTER": self.filter,
                  "BINNING": self.binning, "NIGHT": self.night, "FLATTYPE": self.flattype,
                  "NBIAS": (len(biases), "bias frames used"), "NFLAT": (len(flats), "flat frames used")}
        hdul = techdata.techdata_hdulist(values, header=header)
        raw = {kind: [_raw(e.obsid, o, e.fz) for e in found for o in otas]
               for kind, found in (("bias", biases), ("flat", flats))}
        self.add_provenance(hdul[0].header, raw)
        target = self.output()
        target.write_hdulist(hdul)
        link_latest(target.path, calibrate.techdata_filename(self.flattype, self.filter, self.binning))


def _raw(obsid: str, ota: int, fz: bool):
    return exposure_dir(obsid) / rawio.ota_filename(obsid, ota, fz=fz)


def _data_cells(path) -> tuple[dict, instrument.CellGeometry, dict]:
    """Overscan-subtracted data sections of every cell of a raw OTA file (ADU), its geometry and primary."""
    raw = rawio.read_raw_ota(path)
    ds = raw.geometry.data_section()
    cells = {c: overscan.subtract_overscan(raw.cells[c], raw.geometry)[0][ds] for c in instrument.CELL_IDS}
    return cells, raw.geometry, raw.primary


def _median_noise(estimates: list) -> CellNoise:
    """Median over pair estimates of gain, read noise and read noise in electrons (NaN where none is finite)."""
    arr = np.array([(e.gain, e.readnoise, e.readnoise_e) for e in estimates], dtype=float)
    with np.errstate(all="ignore"):
        good = np.isfinite(arr).all(axis=1)
        med = np.median(arr[good], axis=0) if good.any() else np.full(3, np.nan)
    return CellNoise(*(float(v) for v in med))
