"""A failed earlier exposure never blocks a later one (issue 21): its persistence is skipped with a warning
recorded in the later product, the later exposure is reduced, and the summary shows both outcomes."""

import shutil

import luigi
from astropy.io import fits
from astropy.table import Table

from podisteps.simulate import simulate_night
from workflows.night import ReduceNight
from workflows.paths import night_index, out_root
from workflows.qa import NightSummary

from .test_bad_input import A, B, NIGHT, SPEC


def test_corrupt_earlier_exposure_costs_only_itself(tmp_path, podiflow_config):
    (tmp_path / "spec.toml").write_text(SPEC)
    simulate_night(tmp_path / "spec.toml", tmp_path / "sim", seed=3)
    night = tmp_path / "raw" / NIGHT
    shutil.copytree(tmp_path / "sim" / "raw" / NIGHT, night)
    podiflow_config(raw_dir=tmp_path / "raw", mastercals_dir=tmp_path / "sim" / "mastercals", noqaplots="true")
    assert [e.obsid for e in night_index(NIGHT).select(obstype="OBJECT")] == [A, B]  # indexed while intact
    broken = night / A / f"{A}.33.fits"
    blob = broken.read_bytes()
    with open(broken, "r+b") as fh:  # corrupted in place after indexing (a disk error): the folder looks unchanged
        fh.truncate(len(blob) // 2)
    result = luigi.build([ReduceNight(night=NIGHT, options={"masters": ""})], local_scheduler=True,
                         detailed_summary=True, log_level="CRITICAL", workers=1)
    assert result.status.name == "FAILED"
    assert not (out_root() / NIGHT / A / f"{A}.fits").exists()
    with fits.open(out_root() / NIGHT / B / f"{B}.fits") as hdul:
        assert hdul[0].header["PERSKIP"] == 1
        ota33 = hdul["OTA33.SCI"].header
        assert ota33["PERSKIP"] == 1 and hdul["OTA34.SCI"].header.get("PERSKIP", 0) == 0
        skipped = [str(h) for h in ota33["HISTORY"] if "persistency source skipped" in str(h)]
        assert len(skipped) == 1 and f"{A}.33.fits: truncated" in "".join(str(h) for h in ota33["HISTORY"])
    luigi.build([NightSummary(night=NIGHT)], local_scheduler=True, log_level="CRITICAL")
    summary = Table.read(out_root() / NIGHT / "summary.ecsv")
    status = dict(zip(summary["obsid"], summary["status"]))
    assert status == {A: "failed", B: "reduced"}
    assert f"{A}.33.fits: truncated" in summary[summary["obsid"] == A][0]["error"]
    assert summary[summary["obsid"] == B][0]["error"] == "persistence of 1 unreadable earlier OTA file(s) not masked"
