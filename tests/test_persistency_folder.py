"""-persistency=DIR: QuickReduce-format <base>.saturated.fits files written to and read from a folder."""

import luigi
import pytest
from astropy.io import fits

from podisteps.maskbits import MASK_BITS
from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import ReductionOptions
from workflows.paths import night_index
from workflows.saturation import ExposureError, check_persistency_folder

NIGHT = "20131004"
T_PERSIST = 8  # simulator truth bit (docs/simulator.md)


def _detrend(obsid, persist):
    opts = ReductionOptions().replace(persistency=str(persist))
    return DetrendOTA(obsid=obsid, ota=43, options=detrend_options(opts))


def _persistency_mask(task):
    with fits.open(task.output().path) as hdul:
        return (hdul[2].data & MASK_BITS["PERSISTENCY"]) > 0, hdul[1].header.copy()


def test_catalogues_written_in_quickreduce_format_and_read_back(small_night, podiflow_config, tmp_path):
    folder = tmp_path / "persist"
    podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    first, second = [e for e in night_index(NIGHT).exposures if e.obstype == "OBJECT"][:2]
    task = _detrend(second.obsid, folder)
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    full_mask, _ = _persistency_mask(task)

    written = folder / f"{second.obsid}.saturated.fits"
    assert written.is_file() and not (folder / f"{first.obsid}.saturated.fits").exists()
    with fits.open(written) as hdul:  # docs/calibrations.md, 'Saturation catalogues': primary MJD-OBS/EXPTIME, OTAnn.SATPIX int16
        assert hdul[0].header["MJD-OBS"] == pytest.approx(second.mjd) and "EXPTIME" in hdul[0].header
        tables = [h for h in hdul[1:]]
        assert all(h.name.endswith(".SATPIX") and h.name.startswith("OTA") for h in tables)
        assert all(h.columns[c].format == "I" for h in tables for c in ("CELL_X", "CELL_Y", "X", "Y"))
        assert hdul.index_of("OTA43.SATPIX") > 0 and len(hdul["OTA43.SATPIX"].data) > 0

    # the first exposure's catalogue as QuickReduce would have left it; its raw folder gone from the night
    luigi.build([_detrend(first.obsid, folder)], local_scheduler=True, log_level="WARNING")
    assert (folder / f"{first.obsid}.saturated.fits").is_file()
    raw = tmp_path / "raw" / NIGHT
    raw.mkdir(parents=True)
    (raw / second.obsid).symlink_to(small_night / "raw" / NIGHT / second.obsid, target_is_directory=True)
    podiflow_config(raw_dir=tmp_path / "raw", mastercals_dir=small_night / "mastercals",
                    work_dir=tmp_path / "work2")
    task = _detrend(second.obsid, folder)
    assert task.requires()["persistency"] == []  # nothing earlier in this night's index
    assert [p.name for p in task.imported_catalogs()] == [f"{first.obsid}.saturated.fits"]
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    imported_mask, header = _persistency_mask(task)
    with fits.open(small_night / "truth" / NIGHT / second.obsid / "masks.fits") as hdul:
        truth = (hdul["OTA43.MASK"].data & T_PERSIST) > 0
    assert truth.sum() > 100 and not (truth & ~imported_mask).any()  # every persistent pixel, from the file
    assert not (imported_mask & ~full_mask).any()  # and nothing the DAG's own catalogues would not mask
    assert header["PERSIS01"] == f"{first.obsid}.saturated.fits"


def test_unusable_persistency_folder_fails_early(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    with pytest.raises(ExposureError, match="is a file, not a folder"):
        check_persistency_folder(str(not_a_folder))
    with pytest.raises(ExposureError, match="not a writable folder"):
        check_persistency_folder(str(tmp_path / "missing" / "deeper"))
    check_persistency_folder(str(tmp_path / "new"))  # created on the first export
    check_persistency_folder("auto")
    check_persistency_folder(None)
