"""SaturationCatalog(obsid): one catalogue per exposure holding every OTA (test-small night, test instrument)."""

import logging
import shutil

import luigi
import numpy as np
from astropy.io import fits

from podisteps.detrend.persistency import read_saturation_catalog
from podisteps.maskbits import MASK_BITS
from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import ReductionOptions
from workflows.paths import night_index
from workflows.saturation import SaturationCatalog, raw_file

NIGHT = "20131004"
T_PERSIST = 8  # simulator truth bit (docs/simulator.md)


def _science():
    return [e for e in night_index(NIGHT).exposures if e.obstype == "OBJECT"]


def _build(tasks):
    return luigi.build(tasks, local_scheduler=True, detailed_summary=True, log_level="WARNING", workers=1)


def _raw_saturated(path) -> set:
    """``(cx, cy, x, y)`` of every raw pixel >= 65535, read with astropy alone (cells named ``xyNM``)."""
    found = set()
    with fits.open(path) as hdul:
        for hdu in hdul[1:]:
            cx, cy = int(hdu.name[2]), int(hdu.name[3])
            ys, xs = np.nonzero(np.asarray(hdu.data) >= 65535)
            found.update((cx, cy, int(x), int(y)) for x, y in zip(xs, ys, strict=True))
    return found


def test_one_catalogue_holds_every_otas_saturated_pixels(small_night, podiflow_config):
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    sci = _science()[0]  # the mag-9 star saturates OTA43 (docs/simulator.md, test-small)
    task = SaturationCatalog(obsid=sci.obsid)
    assert _build([task]).status.name == "SUCCESS"
    path = task.output().path
    assert path.endswith(".fits") and f"/{sci.obsid}/satcat/{sci.obsid}.satcat." in path
    with fits.open(path) as hdul:
        catalog = read_saturation_catalog(hdul)
        inputs = [str(v) for k, v in hdul[0].header.items() if k.startswith("PFIN")]
    assert sorted(inputs) == sorted(f"raw:{raw_file(sci.obsid, ota).resolve()}" for ota in sci.otas)
    assert catalog.errors == {} and abs(catalog.mjd - sci.mjd) * 86400 < 1
    per_ota = {}
    for ota in sci.otas:
        rows = {tuple(int(v) for v in r) for r in catalog.table(ota)}
        assert rows == _raw_saturated(raw_file(sci.obsid, ota)), f"OTA{ota:02d}"
        per_ota[ota] = len(rows)
    assert set(catalog.tables) == {ota for ota, n in per_ota.items() if n}  # no empty tables written
    assert max(per_ota, key=per_ota.get) == 43 and per_ota[43] > 100  # the bright star


def test_unreadable_ota_is_recorded_and_skipped_by_a_later_exposure(small_night, podiflow_config, tmp_path,
                                                                    caplog):
    raw = tmp_path / "raw"
    shutil.copytree(small_night / "raw", raw)
    podiflow_config(raw_dir=raw, mastercals_dir=small_night / "mastercals")
    first, second = _science()[:2]
    broken = raw / NIGHT / first.obsid / f"{first.obsid}.33.fits"
    broken.write_bytes(broken.read_bytes()[:20000])
    later = {ota: DetrendOTA(obsid=second.obsid, ota=ota, options=detrend_options(ReductionOptions()))
             for ota in (33, 43)}
    with caplog.at_level(logging.WARNING, logger="podiflow"):
        assert _build([*later.values(), SaturationCatalog(obsid=first.obsid)]).status.name == "SUCCESS"
    with fits.open(SaturationCatalog(obsid=first.obsid).output().path) as hdul:
        catalog = read_saturation_catalog(hdul)
    assert f"{first.obsid}.33.fits: truncated" in catalog.error(33) and 33 not in catalog.tables
    assert len(catalog.table(43)) > 100 and catalog.error(43) is None  # the other OTAs are still listed
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{first.obsid}.33.fits: truncated" in w and "skipped" in w for w in warnings)
    assert any(w.startswith(f"{second.obsid} OTA33: persistence of") for w in warnings)
    headers = {ota: fits.getheader(task.output().path, 1) for ota, task in later.items()}
    assert headers[33]["PERSKIP"] == 1 and headers[43].get("PERSKIP", 0) == 0
    assert f"{first.obsid}.33.fits: truncated" in "".join(str(h) for h in headers[33]["HISTORY"])
    with fits.open(later[43].output().path) as hdul:  # OTA43 still masks the star's persistence
        masked = (hdul[2].data & MASK_BITS["PERSISTENCY"]) > 0
    with fits.open(small_night / "truth" / NIGHT / second.obsid / "masks.fits") as hdul:
        truth = (hdul["OTA43.MASK"].data & T_PERSIST) > 0
    assert headers[43]["NPERSIST"] >= 1 and truth.sum() > 100 and not (truth & ~masked).any()
