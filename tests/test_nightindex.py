"""The observing-night rule and the night index with its on-disk cache."""

import json
import math
import os
from datetime import datetime

from podisteps.io import nightindex

from .rawfactory import write_ota


def test_observing_night_rule():
    # Kitt Peak local = UT - 7 h; the night is the date of (local - 12 h).
    assert nightindex.observing_night(datetime(2013, 3, 2, 4, 0)) == "20130301"   # 21:00 local on Mar 1
    assert nightindex.observing_night(datetime(2013, 3, 2, 12, 0)) == "20130301"  # 05:00 local, same night
    assert nightindex.observing_night(datetime(2013, 3, 2, 18, 59)) == "20130301"  # 11:59 local
    assert nightindex.observing_night(datetime(2013, 3, 2, 19, 1)) == "20130302"  # after local noon
    assert nightindex.observing_night("2013-03-02T04:00:00.5") == "20130301"
    assert nightindex.observing_night(56353.1666667) == "20130301"  # MJD of 2013-03-02T04:00
    assert nightindex.observing_night(datetime(2013, 3, 2, 4, 0), utc_offset_hours=0) == "20130301"


def _night(tmp_path):
    night = tmp_path / "raw" / "20130301"
    for obsid, mjd in (("o20130302T040000.0", 56353.1667), ("o20130302T041000.0", 56353.1736)):
        (night / obsid).mkdir(parents=True)
        for ota in (33, 34):
            write_ota(night / obsid, ota=ota, obsid=obsid, mjd=mjd)
    bad = night / "o20130302T042000.0"
    bad.mkdir()
    (bad / "o20130302T042000.0.33.fits").write_text("garbage")
    return night


def test_scan_night_records(tmp_path):
    index = nightindex.scan_night(_night(tmp_path))
    assert index.night == "20130301"
    assert [e.obsid for e in index.exposures if not e.error] == ["o20130302T040000.0", "o20130302T041000.0"]
    rec = index.by_obsid()["o20130302T040000.0"]
    assert (rec.obstype, rec.filter, rec.binning, rec.exptime, rec.expmeas) == ("OBJECT", "odi_r", 1, 30.0, 30.02)
    assert rec.otas == (33, 34) and not rec.fz
    assert math.isclose(rec.ra, 150.0) and math.isclose(rec.dec, 20.0)
    assert len(index.select(obstype="object", filter="odi_r")) == 2
    assert index.select(obstype="BIAS") == ()
    (failed,) = index.failed
    assert failed.obsid == "o20130302T042000.0" and "not a readable FITS file" in failed.error


def test_cache_is_used_and_refreshed(tmp_path):
    night = _night(tmp_path)
    cache = tmp_path / "work" / "index.json"
    first = nightindex.load_night_index(night, cache)
    assert cache.exists()
    # A tampered cache with the same signature is believed: proof that it is read, not rebuilt.
    payload = json.loads(cache.read_text())
    payload["exposures"][1]["object"] = "from cache"
    cache.write_text(json.dumps(payload))
    assert nightindex.load_night_index(night, cache).exposures[1].object == "from cache"
    # A new exposure changes the folder: the index is rebuilt and holds it.
    new = night / "o20130302T043000.0"
    new.mkdir()
    write_ota(new, ota=33, obsid=new.name, mjd=56353.1875)
    os.utime(new, ns=(1, 1))  # a distinct mtime even on coarse-grained filesystems
    third = nightindex.load_night_index(night, cache)
    assert len(third.exposures) == len(first.exposures) + 1
    assert third.by_obsid()[payload["exposures"][1]["obsid"]].object == "test field"


def test_rescan_reads_only_the_exposures_whose_files_changed(tmp_path, monkeypatch):
    night = _night(tmp_path)
    cache = tmp_path / "work" / "index.json"
    nightindex.load_night_index(night, cache)
    new = night / "o20130302T043000.0"
    new.mkdir()
    write_ota(new, ota=33, obsid=new.name, mjd=56353.1875)
    bad = night / "o20130302T042000.0" / "o20130302T042000.0.33.fits"
    bad.write_text("garbage, longer")  # the same name, another size: read again
    read = []
    monkeypatch.setattr(nightindex, "read_exposure_record",
                        lambda folder, _read=nightindex.read_exposure_record: read.append(folder.name) or _read(folder))
    index = nightindex.load_night_index(night, cache)
    assert sorted(read) == ["o20130302T042000.0", "o20130302T043000.0"]
    assert index == nightindex.scan_night(night) and len(index.exposures) == 4
    assert index.by_obsid()["o20130302T042000.0"].error.startswith(str(bad))
